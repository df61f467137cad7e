// Package opshttp serves the operations endpoints of the processes that
// have no other HTTP surface, the arbiter and the agents: GET /healthz for
// process supervisors and load balancers and GET /metrics for Prometheus.
//
// The listener speaks TLS with the process's cluster certificate; a client
// certificate is verified when one is given but not required, like a
// member's health endpoints, so a scraper needs only the cluster CA. Nothing
// served here changes state or carries PHI.
package opshttp

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health is what /healthz answers: OK false gives 503. Detail is shown as
// is (measured state, e.g. per-tier records); it must hold no secrets.
type Health struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
	Detail any    `json:"detail,omitempty"`
}

// Server is a running operations endpoint.
type Server struct {
	srv  *http.Server
	addr net.Addr
	done chan error
}

// Listen starts serving /healthz (from health, called per request) and
// /metrics (from reg) on addr with TLS config tc; field names the cluster
// file field of addr for the error message.
func Listen(addr, field string, tc *tls.Config, reg *prometheus.Registry, health func() Health, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("operations endpoint: listen on %s (field %s): %w", addr, field, err)
	}
	tc = tc.Clone()
	tc.ClientAuth = tls.VerifyClientCertIfGiven
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		h := health()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !h.OK {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(h)
	})
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, addr: ln.Addr(), done: make(chan error, 1)}
	go func() {
		err := s.srv.Serve(tls.NewListener(ln, tc))
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr is the address served.
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops serving, letting requests in flight finish for up to 2 s.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	return errors.Join(err, <-s.done)
}

// Loop tracks when a process's owning loop last turned, for /healthz: a
// loop that has not turned for LoopStall is reported unhealthy.
type Loop struct{ last atomic.Int64 }

// LoopStall is how long a loop may go without a turn and still be healthy.
const LoopStall = 5 * time.Second

// NewLoop starts tracking, as if the loop had just turned.
func NewLoop() *Loop {
	l := &Loop{}
	l.Turned()
	return l
}

// Turned notes a turn of the loop.
func (l *Loop) Turned() { l.last.Store(time.Now().UnixNano()) }

// Health is OK while the loop (named who, e.g. "the arbiter's loop") turns,
// with detail either way.
func (l *Loop) Health(who string, detail any) Health {
	if since := time.Since(time.Unix(0, l.last.Load())); since > LoopStall {
		return Health{OK: false, Reason: who + " has not turned for " + since.Round(time.Millisecond).String(), Detail: detail}
	}
	return Health{OK: true, Detail: detail}
}

// Flag is a boolean as a Prometheus value: 1 or 0.
func Flag(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
