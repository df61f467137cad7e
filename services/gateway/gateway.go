package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemhealth/tandem/mirror/cluster"
)

// statusTimeout bounds one read of a member's /mirror/status.
const statusTimeout = 500 * time.Millisecond

// Gateway is one running gateway.
type Gateway struct {
	cfg   Config
	tiers []cluster.Tier
	// members is the client toward members (FHIR and status), with the
	// gateway's certificate, verifying the members' against the cluster CA.
	members   *http.Client
	transport *http.Transport
	serverTLS *tls.Config
	rdb       redis.UniversalClient
	limiter   *limiter   // nil: no rate limit
	idem      *idemCache // nil: no Redis
	metrics   *metrics

	mu      sync.Mutex
	views   map[string]TierView
	known   map[string]knownPrimary // the last primary each tier was routed to
	changed chan struct{}           // closed and replaced after every refresh
	kick    chan struct{}

	lastSuspect atomic.Int64 // unix nanos of the last "suspect" event published

	closeOnce sync.Once
}

// New checks cfg and prepares a gateway; Run serves it.
func New(cfg Config) (*Gateway, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	creds, err := cfg.Cluster.Credentials(Identity)
	if err != nil {
		return nil, fmt.Errorf("gateway: credentials for identity %q: %w", Identity, err)
	}
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 15 * time.Second}
	clientTLS := creds.ClientConfig("")
	tr := &http.Transport{
		// The gateway does the TLS handshake itself so that it can count
		// the request bytes written on each connection: a request of which
		// no byte was written provably never reached a member.
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := clientTLS.Clone()
			if tc.ServerName == "" {
				tc.ServerName, _, _ = net.SplitHostPort(addr)
			}
			conn := tls.Client(raw, tc)
			hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if err := conn.HandshakeContext(hctx); err != nil {
				raw.Close()
				return nil, err
			}
			return &countingConn{Conn: conn}, nil
		},
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     60 * time.Second,
	}
	g := &Gateway{
		cfg:       cfg,
		tiers:     cfg.Cluster.Tiers,
		transport: tr,
		members:   &http.Client{Transport: tr},
		views:     map[string]TierView{},
		known:     map[string]knownPrimary{},
		changed:   make(chan struct{}),
		kick:      make(chan struct{}, 1),
	}
	if !cfg.PlainHTTP {
		sc := creds.ServerConfig()
		sc.ClientAuth = tls.VerifyClientCertIfGiven
		g.serverTLS = sc
	}
	if cfg.RedisURL != "" {
		o, _ := ParseRedisURL(cfg.RedisURL)
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = time.Second, 500*time.Millisecond, 500*time.Millisecond
		o.MaxRetries = 1
		redis.SetLogger(redisLog{cfg.Log})
		g.rdb = redis.NewUniversalClient(o)
		g.idem = newIdemCache(g.rdb, cfg.Log)
		if cfg.RateLimit > 0 {
			g.limiter = newLimiter(g.rdb, cfg.RateLimit)
		}
	}
	for _, t := range g.tiers {
		g.views[t.Name] = TierView{Tier: t.Name, Reason: "not read yet"}
	}
	g.metrics = newMetrics(g)
	return g, nil
}

// Run serves until ctx is cancelled, then shuts down: in-flight requests
// finish (up to 10 s), the poller and the subscriber stop.
func (g *Gateway) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway: listen on %s (--listen): %w", g.cfg.Listen, err)
	}
	return g.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	defer g.Close()
	if g.serverTLS != nil {
		ln = tls.NewListener(ln, g.serverTLS)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	g.refresh(ctx) // know the topology before the first request
	wg.Add(1)
	go func() { defer wg.Done(); g.pollLoop(ctx) }()
	if g.cfg.Monitor != nil {
		wg.Add(1)
		go func() { defer wg.Done(); g.cfg.Monitor.Run(ctx, MonitorInterval) }()
	}
	if g.rdb != nil && !g.cfg.NoPubSub {
		wg.Add(1)
		go func() { defer wg.Done(); g.subscribe(ctx) }()
	}
	srv := &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	scheme := "https"
	if g.serverTLS == nil {
		scheme = "http"
	}
	g.cfg.Log.Info("gateway serving", "addr", ln.Addr().String(), "scheme", scheme, "default_tier", g.cfg.DefaultTier,
		"redis", g.rdb != nil, "pubsub", g.rdb != nil && !g.cfg.NoPubSub, "hold", g.cfg.HoldTimeout.String())
	var runErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		runErr = fmt.Errorf("gateway: http server: %w", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) && runErr == nil {
		runErr = err
	}
	cancel()
	wg.Wait()
	g.cfg.Log.Info("gateway stopped")
	return runErr
}

// Close releases the Redis client and idle member connections. It is
// idempotent.
func (g *Gateway) Close() error {
	var err error
	g.closeOnce.Do(func() {
		g.transport.CloseIdleConnections()
		if g.idem != nil {
			g.idem.close()
		}
		if g.rdb != nil {
			err = g.rdb.Close()
		}
	})
	return err
}

// View returns the current view of a tier.
func (g *Gateway) View(tier string) (TierView, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.views[tier]
	return v, ok
}

// knownPrimary is the last primary a tier was routed to; moved is
// cancelled when another one (or the same member at another epoch) is.
type knownPrimary struct {
	member string
	epoch  uint64
	moved  context.Context
	cancel context.CancelFunc
}

// movedCtx is done once the tier's primary is no longer tg: another
// member or epoch is routed to (not while the tier has no primary).
func (g *Gateway) movedCtx(tier string, tg target) context.Context {
	g.mu.Lock()
	defer g.mu.Unlock()
	if k := g.known[tier]; k.moved != nil && k.member == tg.member && k.epoch == tg.epoch {
		return k.moved
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func (g *Gateway) changedCh() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

// requestRefresh asks the poll loop to re-read now (coalesced).
func (g *Gateway) requestRefresh() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// pollLoop re-reads every member on a timer, faster while a tier has no
// primary, and at once when asked.
func (g *Gateway) pollLoop(ctx context.Context) {
	for {
		interval := g.cfg.PollInterval
		g.mu.Lock()
		for _, v := range g.views {
			if v.Primary == "" {
				interval = g.cfg.FastPollInterval
			}
		}
		g.mu.Unlock()
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-g.kick:
			t.Stop()
		}
		g.refresh(ctx)
	}
}

// refresh reads every member of every tier, decides, and wakes every
// request waiting for a change.
func (g *Gateway) refresh(ctx context.Context) {
	type polled struct {
		tier string
		i    int
		st   MemberStatus
	}
	results := map[string][]MemberStatus{}
	ch := make(chan polled)
	n := 0
	for _, t := range g.tiers {
		results[t.Name] = make([]MemberStatus, len(t.Members))
		for i, m := range t.Members {
			n++
			go func() { ch <- polled{t.Name, i, g.readStatus(ctx, m)} }()
		}
	}
	for range n {
		p := <-ch
		results[p.tier][p.i] = p.st
	}
	now := g.cfg.Now()
	var events []event
	g.mu.Lock()
	for _, t := range g.tiers {
		old := g.views[t.Name]
		v := Decide(t.Name, results[t.Name], old.Epoch)
		if v.Primary != "" && v.Primary == old.Primary && v.Epoch == old.Epoch {
			v.Since = old.Since
		} else if v.Primary != "" {
			v.Since = now
		}
		if v.Primary != old.Primary || v.Epoch != old.Epoch {
			g.cfg.Log.Info("topology changed", "tier", t.Name, "primary", v.Primary, "epoch", v.Epoch, "was_primary", old.Primary, "was_epoch", old.Epoch, "reason", v.Reason)
			if old.Reason != "not read yet" {
				g.metrics.topology.WithLabelValues(t.Name).Inc()
			}
			if v.Primary != "" && old.Reason != "not read yet" {
				events = append(events, event{Kind: "changed", Tier: t.Name, Epoch: v.Epoch, Primary: v.Primary, From: g.cfg.ID})
			}
		}
		g.views[t.Name] = v
		if k := g.known[t.Name]; v.Primary != "" && (v.Primary != k.member || v.Epoch != k.epoch) {
			if k.moved != nil {
				k.cancel()
			}
			moved, cancel := context.WithCancel(context.Background())
			g.known[t.Name] = knownPrimary{member: v.Primary, epoch: v.Epoch, moved: moved, cancel: cancel}
		}
	}
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
	for _, e := range events {
		g.publish(ctx, e)
	}
}

func (g *Gateway) readStatus(ctx context.Context, m cluster.Member) MemberStatus {
	st := MemberStatus{Member: m.Name, Role: m.Role, URL: "https://" + m.HTTP}
	// Short: a stopped member must not slow the re-reads that find its
	// successor.
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, st.URL+"/mirror/status", nil)
	resp, err := g.members.Do(req)
	st.PolledAt = g.cfg.Now()
	if err != nil {
		st.Err = "unreachable"
		return st
	}
	defer resp.Body.Close()
	var body struct {
		Status   string    `json:"status"`
		Epoch    uint64    `json:"epoch"`
		Transfer *Transfer `json:"transfer"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		st.Err = fmt.Sprintf("status answered HTTP %d", resp.StatusCode)
		return st
	}
	st.Status, st.Epoch, st.Transfer = body.Status, body.Epoch, body.Transfer
	return st
}

func (g *Gateway) publish(ctx context.Context, e event) {
	if g.rdb == nil || g.cfg.NoPubSub {
		return
	}
	b, _ := json.Marshal(e)
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := g.rdb.Publish(ctx, eventChannel, b).Err(); err != nil {
		g.cfg.Log.Warn("topology event not published", "kind", e.Kind, "tier", e.Tier, "err", err)
	}
}

// subscribe re-reads the topology on every event from another gateway.
// go-redis resubscribes after a lost connection; events missed meanwhile
// are covered by polling.
func (g *Gateway) subscribe(ctx context.Context) {
	ps := g.rdb.Subscribe(ctx, eventChannel)
	defer ps.Close()
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			var e event
			if json.Unmarshal([]byte(m.Payload), &e) != nil || e.From == g.cfg.ID {
				continue
			}
			g.cfg.Log.Debug("topology event", "kind", e.Kind, "tier", e.Tier, "from", e.From)
			g.requestRefresh()
		}
	}
}

// suspect is called when forwarding to a tier's primary failed: re-read
// now and tell the other gateways.
func (g *Gateway) suspect(ctx context.Context, tier, member string) {
	g.requestRefresh()
	go g.publish(context.WithoutCancel(ctx), event{Kind: "suspect", Tier: tier, Primary: member, From: g.cfg.ID})
}

// redisLog sends go-redis's own messages (reconnects) to the gateway's log
// at debug level: Redis trouble is reported where it changes behaviour.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.Debug("redis: " + fmt.Sprintf(format, v...))
}

// countingConn counts the bytes the kernel accepted for sending after the
// TLS handshake: the request bytes of the connection's requests.
type countingConn struct {
	net.Conn
	written atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	return n, err
}
