package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/transport"
)

// fakeMember is a member's HTTPS endpoint: /mirror/status from settable
// state, /fhir answering 201 and counting what reached it. kill closes
// its listener and connections (connection refused from then on).
type fakeMember struct {
	t    *testing.T
	name string
	role string
	addr string
	srv  *http.Server
	ln   net.Listener

	mu       sync.Mutex
	status   string
	epoch    uint64
	transfer *Transfer
	seen     []*http.Request
	// onFHIR, when set, handles /fhir instead of the default answer.
	onFHIR func(w http.ResponseWriter, r *http.Request)
	// logins counts the token requests that reached it; onLogin, when set,
	// answers them instead of the default token.
	logins  int
	onLogin func(w http.ResponseWriter, r *http.Request) bool
}

// handleFHIR makes h answer /fhir (nil: the default answer).
func (m *fakeMember) handleFHIR(h func(w http.ResponseWriter, r *http.Request)) {
	m.mu.Lock()
	m.onFHIR = h
	m.mu.Unlock()
}

func (m *fakeMember) set(status string, epoch uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status, m.epoch = status, epoch
}

func (m *fakeMember) requests() []*http.Request {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*http.Request(nil), m.seen...)
}

func (m *fakeMember) kill() {
	m.srv.Close()
}

func (m *fakeMember) serve(creds transport.Credentials) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /mirror/status", func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"member": m.name, "status": m.status, "epoch": m.epoch, "transfer": m.transfer})
	})
	mux.HandleFunc("/fhir/", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != Identity {
			http.Error(w, "not the gateway", http.StatusForbidden)
			return
		}
		m.mu.Lock()
		m.seen = append(m.seen, r)
		h := m.onFHIR
		m.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Location", "/fhir/Patient/1/_history/1")
		w.Header().Set("X-Seen-Request-Id", r.Header.Get("X-Request-Id"))
		w.Header().Set("X-Seen-Authorization", r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"resourceType":"Patient","id":"1","meta":{"source":%q}}`, m.name)
	})
	mux.HandleFunc("POST /auth/token", func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.logins++
		h := m.onLogin
		m.mu.Unlock()
		if h != nil && h(w, r) {
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"from-%s","token_type":"Bearer","expires_in":900,"scope":"","seen":{"form":%q,"type":%q,"xff":%q}}`,
			m.name, b, r.Header.Get("Content-Type"), r.Header.Get("X-Forwarded-For"))
	})
	sc := creds.ServerConfig()
	sc.ClientAuth = tls.VerifyClientCertIfGiven
	m.srv = &http.Server{Handler: mux}
	go m.srv.Serve(tls.NewListener(m.ln, sc))
}

type fixture struct {
	t       *testing.T
	file    *cluster.File
	members map[string]*fakeMember
	redis   *miniredis.Miniredis
}

// newFixture: tier "records" with a (primary, epoch 1), b (backup) and r
// (reporting async), and tier "labs" with x (primary) and y (backup).
func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	fx := &fixture{t: t, members: map[string]*fakeMember{}}
	f := &cluster.File{TLS: cluster.TLS{DevCADir: dir + "/ca"}}
	for _, tier := range []struct {
		name    string
		members [][2]string
	}{{"records", [][2]string{{"a", "failover"}, {"b", "failover"}, {"r", "reporting"}}}, {"labs", [][2]string{{"x", "failover"}, {"y", "failover"}}}} {
		ct := cluster.Tier{Name: tier.name}
		for _, nm := range tier.members {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			m := &fakeMember{t: t, name: nm[0], role: nm[1], addr: ln.Addr().String(), ln: ln, status: "backup", epoch: 1}
			if nm[1] != "failover" {
				m.status, m.transfer = "async", &Transfer{Status: "caught-up"}
			}
			fx.members[nm[0]] = m
			ct.Members = append(ct.Members, cluster.Member{Name: nm[0], Role: nm[1], HTTP: m.addr})
		}
		f.Tiers = append(f.Tiers, ct)
	}
	fx.file = f
	for _, m := range fx.members {
		creds, err := f.Credentials(m.name)
		if err != nil {
			t.Fatal(err)
		}
		m.serve(creds)
		t.Cleanup(m.kill)
	}
	fx.members["a"].set("primary", 1)
	fx.members["x"].set("primary", 1)
	fx.redis = miniredis.RunT(t)
	return fx
}

// gateway starts an in-process gateway on plain HTTP and returns its base URL.
func (fx *fixture) gateway(mod func(*Config)) (string, *Gateway) {
	fx.t.Helper()
	cfg := Config{Cluster: fx.file, PlainHTTP: true, DefaultTier: "records", RedisURL: "redis://" + fx.redis.Addr(),
		PollInterval: 50 * time.Millisecond, FastPollInterval: 20 * time.Millisecond, HoldTimeout: 5 * time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		fx.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fx.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, ln) }()
	fx.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			fx.t.Errorf("gateway: %v", err)
		}
	})
	return "http://" + ln.Addr().String(), g
}

func do(t *testing.T, method, url, body string, kv ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestRoutesToEachTiersPrimary(t *testing.T) {
	fx := newFixture(t)
	base, _ := fx.gateway(nil)
	for _, tc := range []struct {
		path, member, location string
	}{
		{"/fhir/Patient", "records/a", "/fhir/Patient/1/_history/1"},
		{"/fhir/records/Patient", "records/a", "/fhir/records/Patient/1/_history/1"},
		{"/fhir/labs/Patient", "labs/x", "/fhir/labs/Patient/1/_history/1"},
	} {
		resp, _ := do(t, "POST", base+tc.path, `{}`, "X-Request-Id", "req-1", "Authorization", "Bearer tok")
		if resp.StatusCode != 201 || resp.Header.Get("X-Tandem-Member") != tc.member || resp.Header.Get("Location") != tc.location {
			t.Errorf("%s: %d member %q location %q", tc.path, resp.StatusCode, resp.Header.Get("X-Tandem-Member"), resp.Header.Get("Location"))
		}
		if resp.Header.Get("X-Request-Id") != "req-1" || resp.Header.Get("X-Seen-Request-Id") != "req-1" {
			t.Errorf("%s: request id not propagated: %v", tc.path, resp.Header)
		}
		if resp.Header.Get("X-Seen-Authorization") != "Bearer tok" {
			t.Errorf("%s: Authorization not forwarded unchanged", tc.path)
		}
	}
	if got := fx.members["a"].requests()[1].URL.Path; got != "/fhir/Patient" {
		t.Errorf("tier segment not removed: node saw %s", got)
	}
	resp, _ := do(t, "GET", base+"/fhir/Patient/1", "")
	if id := resp.Header.Get("X-Request-Id"); len(id) != 32 {
		t.Errorf("no request id generated: %q", id)
	}
}

func TestHoldsSafeRequestsAcrossFailover(t *testing.T) {
	fx := newFixture(t)
	base, _ := fx.gateway(nil)
	if resp, _ := do(t, "GET", base+"/readyz", ""); resp.StatusCode != 200 {
		t.Fatalf("readyz %d before the failover", resp.StatusCode)
	}
	fx.members["a"].kill()
	fx.members["a"].set("down", 1)
	type result struct {
		name   string
		code   int
		member string
		epoch  string
		took   time.Duration
	}
	cases := []struct {
		name, method string
		kv           []string
	}{
		{"create with Idempotency-Key", "POST", []string{"Idempotency-Key", "k1"}},
		{"read", "GET", nil},
		{"update", "PUT", []string{"If-Match", `W/"1"`}},
		{"conditional create", "POST", []string{"If-None-Exist", "identifier=x|1"}},
		// Not safe, but every connection to a is refused: provably never sent.
		{"create without key", "POST", nil},
	}
	results := make(chan result, len(cases))
	t0 := time.Now()
	for _, tc := range cases {
		go func() {
			if tc.kv == nil && tc.method == "POST" {
				// After the gateway saw a's connections close, as after a kill.
				time.Sleep(100 * time.Millisecond)
			}
			resp, _ := do(t, tc.method, base+"/fhir/Patient", `{"resourceType":"Patient"}`, tc.kv...)
			results <- result{tc.name, resp.StatusCode, resp.Header.Get("X-Tandem-Member"), resp.Header.Get("X-Tandem-Epoch"), time.Since(t0)}
		}()
	}
	time.Sleep(400 * time.Millisecond)
	fx.members["b"].set("primary", 2)
	for range cases {
		r := <-results
		if r.code != 201 || r.member != "records/b" || r.epoch != "2" {
			t.Errorf("%s: %d from %q at epoch %q", r.name, r.code, r.member, r.epoch)
		}
		if r.took < 400*time.Millisecond {
			t.Errorf("%s answered after %s, before there was a primary", r.name, r.took)
		}
		t.Logf("%s: held %s, answered by b", r.name, r.took.Round(time.Millisecond))
	}
}

func TestUnsafeRequestWithUnknownOutcomeIsNotRetried(t *testing.T) {
	fx := newFixture(t)
	base, _ := fx.gateway(nil)
	a := fx.members["a"]
	a.handleFHIR(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		c, _, _ := w.(http.Hijacker).Hijack() // the member dies after reading the request
		c.Close()
	})
	resp, body := do(t, "POST", base+"/fhir/Patient", `{"resourceType":"Patient"}`)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "outcome is unknown") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if n := len(a.requests()); n != 1 {
		t.Fatalf("a POST without a key whose outcome is unknown was sent %d times", n)
	}
	// The same with an Idempotency-Key is retried (here until a answers).
	var calls atomic.Int32
	a.handleFHIR(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
			return
		}
		w.WriteHeader(201)
	})
	resp, _ = do(t, "POST", base+"/fhir/Patient", `{"resourceType":"Patient"}`, "Idempotency-Key", "k")
	if resp.StatusCode != 201 || calls.Load() != 2 {
		t.Fatalf("keyed retry: %d after %d calls", resp.StatusCode, calls.Load())
	}
}

func TestNoPrimaryBeforeTheHoldDeadline(t *testing.T) {
	fx := newFixture(t)
	base, _ := fx.gateway(func(c *Config) { c.HoldTimeout = 300 * time.Millisecond })
	fx.members["a"].set("in-trouble", 1)
	time.Sleep(150 * time.Millisecond)
	t0 := time.Now()
	resp, body := do(t, "GET", base+"/fhir/Patient/1", "")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if d := time.Since(t0); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("held %s, want about the 300ms hold", d)
	}
	if resp, _ := do(t, "GET", base+"/readyz", ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d with no primary", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", base+"/healthz", ""); resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
}

func TestNeverRoutesToAMemberBelowTheHighestEpoch(t *testing.T) {
	fx := newFixture(t)
	base, g := fx.gateway(func(c *Config) { c.HoldTimeout = 500 * time.Millisecond })
	fx.members["a"].set("backup", 2)
	fx.members["b"].set("primary", 2)
	waitView(t, g, "records", "b", 2)
	// b becomes unreachable; a wrongly claims primary at the old epoch.
	fx.members["b"].kill()
	fx.members["a"].set("primary", 1)
	time.Sleep(200 * time.Millisecond)
	if v, _ := g.View("records"); v.Primary != "" || v.Epoch != 2 {
		t.Fatalf("view %+v", v)
	}
	resp, _ := do(t, "POST", base+"/fhir/Patient", `{}`, "Idempotency-Key", "k")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("%d: a write went to a member below the highest epoch", resp.StatusCode)
	}
	if n := len(fx.members["a"].requests()); n != 0 {
		t.Fatalf("a received %d requests", n)
	}
}

func waitView(t *testing.T, g *Gateway, tier, primary string, epoch uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if v, _ := g.View(tier); v.Primary == primary && v.Epoch == epoch {
			return
		}
		if time.Now().After(deadline) {
			v, _ := g.View(tier)
			t.Fatalf("view %+v, want %s at %d", v, primary, epoch)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStaleReadsGoToAnAsyncWithinTheBound(t *testing.T) {
	fx := newFixture(t)
	base, _ := fx.gateway(nil)
	resp, _ := do(t, "GET", base+"/fhir/Patient/1", "", "X-Tandem-Max-Lag", "5s")
	if resp.Header.Get("X-Tandem-Member") != "records/r" {
		t.Fatalf("stale read served by %q", resp.Header.Get("X-Tandem-Member"))
	}
	if resp, _ := do(t, "GET", base+"/fhir/Patient/1", ""); resp.Header.Get("X-Tandem-Member") != "records/a" {
		t.Fatalf("fresh read served by %q", resp.Header.Get("X-Tandem-Member"))
	}
	r := fx.members["r"]
	r.mu.Lock()
	r.transfer = &Transfer{Status: "behind", BehindSeconds: 30}
	r.mu.Unlock()
	time.Sleep(150 * time.Millisecond)
	if resp, _ := do(t, "GET", base+"/fhir/Patient/1", "", "X-Tandem-Max-Lag", "5s"); resp.Header.Get("X-Tandem-Member") != "records/a" {
		t.Fatalf("read allowing 5s went to an async 30s behind: %q", resp.Header.Get("X-Tandem-Member"))
	}
	if resp, _ := do(t, "POST", base+"/fhir/Patient", "{}", "X-Tandem-Max-Lag", "1h"); resp.Header.Get("X-Tandem-Member") != "records/a" {
		t.Fatal("a write went to an async")
	}
	if resp, _ := do(t, "GET", base+"/fhir/Patient/1", "", "X-Tandem-Max-Lag", "soon"); resp.StatusCode != 400 {
		t.Fatalf("bad max lag: %d", resp.StatusCode)
	}
}

func TestRateLimitPerClientInRedis(t *testing.T) {
	fx := newFixture(t)
	base1, _ := fx.gateway(func(c *Config) { c.RateLimit = 5 })
	base2, _ := fx.gateway(func(c *Config) { c.RateLimit = 5 })
	got429 := 0
	for i := range 20 {
		base := []string{base1, base2}[i%2] // two gateways share the limit
		resp, _ := do(t, "GET", base+"/fhir/Patient/1", "")
		if resp.StatusCode == http.StatusTooManyRequests {
			got429++
			if ra := resp.Header.Get("Retry-After"); ra != "1" {
				t.Fatalf("Retry-After %q", ra)
			}
		}
	}
	// 20 requests well within two seconds: at most 10 pass, at least 10 refused.
	if got429 < 10 {
		t.Fatalf("%d of 20 refused with a limit of 5/s shared by two gateways", got429)
	}
}

func TestIdempotencyResultsCachedForOtherGateways(t *testing.T) {
	fx := newFixture(t)
	base1, _ := fx.gateway(nil)
	base2, _ := fx.gateway(nil)
	body := `{"resourceType":"Patient"}`
	r1, b1 := do(t, "POST", base1+"/fhir/Patient", body, "Idempotency-Key", "same")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) { // cached off the response path
		if len(fx.redis.Keys()) > 0 || time.Now().After(deadline) {
			break
		}
	}
	r2, b2 := do(t, "POST", base2+"/fhir/Patient", body, "Idempotency-Key", "same")
	if r1.StatusCode != 201 || r2.StatusCode != 201 || b1 != b2 || r2.Header.Get("Location") != r1.Header.Get("Location") {
		t.Fatalf("%d %s / %d %s", r1.StatusCode, b1, r2.StatusCode, b2)
	}
	if r2.Header.Get("X-Tandem-Idempotent-Replay") != "gateway-cache" {
		t.Fatal("second gateway did not answer from the cache")
	}
	if n := len(fx.members["a"].requests()); n != 1 {
		t.Fatalf("primary saw %d requests", n)
	}
	// A different request under the same key goes to the node, which decides.
	r3, _ := do(t, "POST", base2+"/fhir/Patient", `{"resourceType":"Patient","gender":"male"}`, "Idempotency-Key", "same")
	if r3.Header.Get("X-Tandem-Idempotent-Replay") != "" || len(fx.members["a"].requests()) != 2 {
		t.Fatal("a different request was answered from the cache")
	}
	// Redis gone: requests still flow.
	fx.redis.Close()
	if r, _ := do(t, "POST", base1+"/fhir/Patient", body, "Idempotency-Key", "other"); r.StatusCode != 201 {
		t.Fatalf("without Redis: %d", r.StatusCode)
	}
}

type denyAll struct{}

func (denyAll) Authenticate(*http.Request) (string, error) { return "", errors.New("no token") }

func TestAuthenticatorRefusesBeforeForwarding(t *testing.T) {
	fx := newFixture(t)
	base, _ := fx.gateway(func(c *Config) { c.Authenticator = denyAll{} })
	resp, _ := do(t, "GET", base+"/fhir/Patient/1", "", "Authorization", "Bearer bad")
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("%d", resp.StatusCode)
	}
	if n := len(fx.members["a"].requests()); n != 0 {
		t.Fatalf("forwarded %d requests", n)
	}
}

func TestTopologyEventsReachOtherGateways(t *testing.T) {
	fx := newFixture(t)
	slow := func(c *Config) { c.PollInterval = time.Hour }
	base1, g1 := fx.gateway(slow)
	_, g2 := fx.gateway(slow)
	fx.members["a"].kill()
	fx.members["b"].set("primary", 2)
	// g1 learns from a failed request; g2 only from g1's events.
	do(t, "GET", base1+"/fhir/Patient/1", "")
	waitView(t, g1, "records", "b", 2)
	waitView(t, g2, "records", "b", 2)
}

func TestLimiterLeasesNeverExceedTheSharedLimit(t *testing.T) {
	m := miniredis.RunT(t)
	o, _ := ParseRedisURL("redis://" + m.Addr())
	rdb := redis.NewUniversalClient(o)
	defer rdb.Close()
	now := time.Unix(1_000_000, 300_000_000)
	for _, limit := range []int{1, 5, 100, 1000} {
		// Three gateways, one client, one window: together at most limit.
		ls := []*limiter{newLimiter(rdb, limit), newLimiter(rdb, limit), newLimiter(rdb, limit)}
		admitted := 0
		for i := range 3 * limit {
			ok, wait, err := ls[i%3].allow(context.Background(), fmt.Sprintf("client-%d", limit), now)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				admitted++
			} else if wait != 700*time.Millisecond {
				t.Fatalf("wait %s", wait)
			}
		}
		if admitted > limit || admitted < limit*9/10 {
			t.Errorf("limit %d: %d admitted by three gateways in one window", limit, admitted)
		}
		// The next window starts afresh.
		if ok, _, _ := ls[0].allow(context.Background(), fmt.Sprintf("client-%d", limit), now.Add(time.Second)); !ok {
			t.Errorf("limit %d: refused in a new window", limit)
		}
	}
}

func TestIdempotencyCacheSharesRoundTrips(t *testing.T) {
	m := miniredis.RunT(t)
	o, _ := ParseRedisURL("redis://" + m.Addr())
	rdb := redis.NewUniversalClient(o)
	defer rdb.Close()
	c := newIdemCache(rdb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer c.close()
	const n = 200
	for i := range n {
		c.put(fmt.Sprintf("k%d", i), &cachedResult{Fingerprint: fmt.Sprint(i), Status: 201})
	}
	for deadline := time.Now().Add(5 * time.Second); len(m.Keys()) < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d results stored", len(m.Keys()), n)
		}
	}
	if ttl := m.TTL("k7"); ttl != idemTTL {
		t.Fatalf("TTL %s", ttl)
	}
	before := c.pipelines.Load()
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range 2 * n { // every stored key and as many absent ones, at once
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.get(context.Background(), fmt.Sprintf("k%d", i))
			switch {
			case i < n && (err != nil || res.Fingerprint != fmt.Sprint(i)):
				errs <- fmt.Errorf("k%d: %v %v", i, res, err)
			case i >= n && !errors.Is(err, redis.Nil):
				errs <- fmt.Errorf("k%d (absent): %v %v", i, res, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if p := c.pipelines.Load() - before; p >= 2*n {
		t.Errorf("%d lookups took %d round trips", 2*n, p)
	} else {
		t.Logf("%d concurrent lookups in %d round trips", 2*n, p)
	}
	// Redis gone: a lookup fails within its time, it does not hang.
	m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := c.get(ctx, "k1"); err == nil || ctx.Err() != nil {
		t.Fatalf("without Redis: %v (ctx %v)", err, ctx.Err())
	}
}

func TestSafeRequestHungOnAMovedPrimaryGoesToTheNewOne(t *testing.T) {
	fx := newFixture(t)
	release := make(chan struct{})
	defer close(release)
	fx.members["a"].handleFHIR(func(w http.ResponseWriter, r *http.Request) {
		select { // frozen, like a SIGSTOPped process: never answers
		case <-release:
		case <-r.Context().Done():
		}
	})
	base, g := fx.gateway(nil)
	type result struct {
		code   int
		member string
	}
	res := make(chan result, 2)
	for _, method := range []string{"GET", "PUT"} {
		go func() {
			resp, _ := do(t, method, base+"/fhir/Patient/1", `{"resourceType":"Patient","id":"1"}`)
			res <- result{resp.StatusCode, resp.Header.Get("X-Tandem-Member")}
		}()
	}
	for deadline := time.Now().Add(5 * time.Second); len(fx.members["a"].requests()) < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the requests did not reach a")
		}
	}
	// a stays reachable (its status still answers) but b takes over.
	fx.members["a"].set("backup", 1)
	fx.members["b"].set("primary", 2)
	waitView(t, g, "records", "b", 2)
	for range 2 {
		select {
		case r := <-res:
			if r.code != 201 || r.member != "records/b" {
				t.Errorf("%d from %q", r.code, r.member)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a safe request stayed on the member that stopped being primary")
		}
	}
}

// TestSafeWriteAnswered500ByAPrimaryHandingOverGoesToTheNewOne: a primary
// draining for a planned failover answers a keyed write 500 ("outcome
// unknown: not the primary") while the members still report it primary;
// the gateway waits for the switch and sends the write to the new primary
// (safe: the key makes a second attempt return the first's result). An
// unkeyed write answered 500 is passed on, never retried.
func TestSafeWriteAnswered500ByAPrimaryHandingOverGoesToTheNewOne(t *testing.T) {
	fx := newFixture(t)
	base, _ := fx.gateway(nil)
	a := fx.members["a"]
	a.handleFHIR(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception","diagnostics":"sequencer: write outcome unknown: node: not the primary"}]}`, http.StatusInternalServerError)
	})

	resp, _ := do(t, "POST", base+"/fhir/Patient", `{"resourceType":"Patient"}`)
	if resp.StatusCode != 500 || resp.Header.Get("X-Tandem-Member") != "records/a" {
		t.Fatalf("unkeyed write answered 500: gateway answered %d from %q, want a's 500 passed on", resp.StatusCode, resp.Header.Get("X-Tandem-Member"))
	}

	go func() {
		time.Sleep(500 * time.Millisecond)
		a.set("backup", 2)
		fx.members["b"].set("primary", 2)
	}()
	t0 := time.Now()
	resp, _ = do(t, "POST", base+"/fhir/Patient", `{"resourceType":"Patient"}`, "Idempotency-Key", "handover-1")
	if resp.StatusCode != 201 || resp.Header.Get("X-Tandem-Member") != "records/b" || resp.Header.Get("X-Tandem-Epoch") != "2" {
		t.Fatalf("keyed write during the handover: %d from %q epoch %q, want 201 from b in epoch 2", resp.StatusCode, resp.Header.Get("X-Tandem-Member"), resp.Header.Get("X-Tandem-Epoch"))
	}
	t.Logf("keyed write answered by b %s after a's 500", time.Since(t0).Round(time.Millisecond))
}
