package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
)

// Defaults for fields left zero.
const (
	DefaultListen           = "127.0.0.1:7480"
	DefaultPollInterval     = time.Second
	DefaultFastPollInterval = 100 * time.Millisecond
	DefaultHoldTimeout      = 15 * time.Second
	DefaultMaxBodyBytes     = 16 << 20
)

// Identity is the gateway's certificate identity toward the members.
const Identity = "gateway"

// Authenticator checks a request's credentials (a bearer token) before it
// is forwarded and names the client for rate limits. An error means 401.
// The members check the token again.
type Authenticator interface {
	Authenticate(r *http.Request) (clientID string, err error)
}

// MonitorPrefix is where the gateway serves the Mirror Monitor.
const MonitorPrefix = "/monitor/"

// MonitorInterval is how often the monitor samples every member.
const MonitorInterval = time.Second

// Monitor is a page the gateway serves and a sampling loop it runs while
// it serves (*monitor.Monitor). The page checks its own access
// (administrators only).
type Monitor interface {
	Handler(prefix string) http.Handler
	Run(ctx context.Context, interval time.Duration)
}

// Config configures a Gateway.
type Config struct {
	// Cluster is the cluster file: the tiers, their members, the CA.
	Cluster *cluster.File
	// Listen is the address clients connect to.
	Listen string
	// PlainHTTP serves plain HTTP instead of HTTPS with the gateway's
	// certificate (only behind a TLS-terminating load balancer).
	PlainHTTP bool
	// DefaultTier serves /fhir/... without a tier segment; the only tier
	// when empty and there is one.
	DefaultTier string
	// RedisURL: redis://host:port/db (single), redis-sentinel://host:port?master_name=M[&addr=...],
	// redis-cluster://host:port[?addr=...]; rediss... for TLS. Empty: no Redis
	// (no shared rate limits, events or idempotency cache).
	RedisURL string
	// NoPubSub disables publishing and subscribing topology events (polling only).
	NoPubSub bool
	// PollInterval is how often every member's status is read; FastPollInterval
	// while a tier has no proven primary.
	PollInterval, FastPollInterval time.Duration
	// HoldTimeout is how long a request is held waiting for a primary.
	HoldTimeout time.Duration
	// RateLimit is requests per second per client (in Redis); 0: none.
	RateLimit int
	// MaxBodyBytes bounds a request body (bodies are kept for retries).
	MaxBodyBytes int64
	// Authenticator checks bearer tokens; nil forwards without checking.
	Authenticator Authenticator
	// Monitor is the Mirror Monitor page, served at MonitorPrefix and
	// sampled for the gateway's lifetime; nil: not served.
	Monitor Monitor
	// TemporalAddress is the Temporal frontend (host:port) whose running
	// workflows the Mirror Monitor lists, in TemporalNamespace; empty: the
	// monitor is not connected to Temporal. The gateway only reads there
	// (list, describe, the progress query); `tandem gateway` builds the
	// monitor's client from these.
	TemporalAddress, TemporalNamespace string
	// ID names this gateway in events and logs.
	ID string
	// Log receives the gateway's log lines (never PHI, never tokens).
	Log *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// SetDefaults fills zero fields.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.FastPollInterval == 0 {
		c.FastPollInterval = DefaultFastPollInterval
	}
	if c.HoldTimeout == 0 {
		c.HoldTimeout = DefaultHoldTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.DefaultTier == "" && c.Cluster != nil && len(c.Cluster.Tiers) == 1 {
		c.DefaultTier = c.Cluster.Tiers[0].Name
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ID == "" {
		c.ID = "gateway-" + strings.ReplaceAll(c.Listen, ":", "-")
	}
}

// Validate reports every problem, each naming its flag.
func (c *Config) Validate() error {
	var errs []error
	if c.Cluster == nil {
		return errors.New("gateway: --cluster is required")
	}
	if c.DefaultTier != "" {
		if _, ok := c.Cluster.Tier(c.DefaultTier); !ok {
			errs = append(errs, fmt.Errorf("--default-tier %q is not a tier of the cluster file", c.DefaultTier))
		}
	}
	if c.PollInterval < 10*time.Millisecond || c.FastPollInterval < 10*time.Millisecond {
		errs = append(errs, errors.New("--poll and the fast poll interval must be at least 10ms"))
	}
	if c.HoldTimeout < 0 {
		errs = append(errs, errors.New("--hold must not be negative"))
	}
	if c.RateLimit < 0 {
		errs = append(errs, errors.New("--rate-limit must not be negative"))
	}
	if c.RateLimit > 0 && c.RedisURL == "" {
		errs = append(errs, errors.New("--rate-limit needs --redis (limits are shared by every gateway through Redis)"))
	}
	if c.TemporalAddress != "" {
		if _, _, err := net.SplitHostPort(c.TemporalAddress); err != nil {
			errs = append(errs, fmt.Errorf("--temporal-address %q: want host:port: %v", c.TemporalAddress, err))
		}
	}
	if c.RedisURL != "" {
		if _, err := ParseRedisURL(c.RedisURL); err != nil {
			errs = append(errs, fmt.Errorf("--redis: %w", err))
		}
	}
	return errors.Join(errs...)
}
