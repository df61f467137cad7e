package gateway

import (
	"fmt"

	"github.com/alicebob/miniredis/v2"
)

// EmbeddedRedis is a Redis-protocol server (miniredis) listening on a real
// TCP address, for `tandem dev` and tests, where no Redis is installed. It
// keeps everything in memory and expires keys by the wall clock. It is not
// for production: use Redis, Sentinel or Cluster there.
type EmbeddedRedis struct {
	m *miniredis.Miniredis
}

// StartEmbeddedRedis listens on addr ("127.0.0.1:0" for any free port).
func StartEmbeddedRedis(addr string) (*EmbeddedRedis, error) {
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true)
	if err := m.StartAddr(addr); err != nil {
		return nil, fmt.Errorf("gateway: embedded Redis on %s: %w", addr, err)
	}
	return &EmbeddedRedis{m: m}, nil
}

// Addr is the host:port the server listens on.
func (e *EmbeddedRedis) Addr() string { return e.m.Addr() }

// URL is the --redis URL of the server.
func (e *EmbeddedRedis) URL() string { return "redis://" + e.m.Addr() }

// Close stops the server. It is idempotent.
func (e *EmbeddedRedis) Close() { e.m.Close() }
