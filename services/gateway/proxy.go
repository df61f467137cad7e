package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemhealth/tandem/services/requestid"
)

// Handler serves /fhir, the token endpoint /auth/token (login.go),
// /healthz, /readyz, /gateway/topology, /metrics (Prometheus,
// unauthenticated like a node's: no PHI in it) and, when configured, the
// Mirror Monitor at MonitorPrefix.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		views := g.snapshot()
		code := http.StatusOK
		for _, v := range views {
			if v.Primary == "" {
				code = http.StatusServiceUnavailable
			}
		}
		writeJSON(w, code, map[string]any{"ready": code == http.StatusOK, "tiers": views})
	})
	mux.HandleFunc("GET /gateway/topology", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, g.snapshot())
	})
	mux.Handle("GET /metrics", g.metrics.handler())
	if g.cfg.Monitor != nil {
		mux.Handle(MonitorPrefix, g.cfg.Monitor.Handler(MonitorPrefix))
	}
	fhir := g.metrics.instrument(g.serveFHIR)
	mux.HandleFunc("/fhir", fhir)
	mux.HandleFunc("/fhir/", fhir)
	login := g.metrics.instrument(g.serveLogin)
	mux.HandleFunc("POST "+loginPath, login)
	mux.HandleFunc("POST /auth/{tier}/token", login)
	return mux
}

func (g *Gateway) snapshot() []TierView {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]TierView, 0, len(g.tiers))
	for _, t := range g.tiers {
		out = append(out, g.views[t.Name])
	}
	return out
}

// route splits /fhir/{tier}/rest into the tier and the node's path.
func (g *Gateway) route(path string) (tier, nodePath string, prefixed bool) {
	rest := strings.TrimPrefix(path, "/fhir")
	seg, _, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
	if seg != "" {
		for _, t := range g.tiers {
			if t.Name == seg {
				return seg, "/fhir" + strings.TrimPrefix(rest, "/"+seg), true
			}
		}
	}
	return g.cfg.DefaultTier, path, false
}

// hop-by-hop headers are not forwarded.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func (g *Gateway) fail(w http.ResponseWriter, code int, issue, msg string) {
	w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"resourceType": "OperationOutcome",
		"issue": []map[string]string{{"severity": "error", "code": issue, "diagnostics": msg}}})
}

// clientID names the client for rate limits and the idempotency cache.
func clientID(r *http.Request, authID string) string {
	if authID != "" {
		return "auth:" + authID
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return "cert:" + r.TLS.PeerCertificates[0].Subject.CommonName
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "ip:" + host
}

// ParseMaxLag reads X-Tandem-Max-Lag: a Go duration or whole seconds.
func ParseMaxLag(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("X-Tandem-Max-Lag %q is not a duration like 5s or 500ms", s)
	}
	return d, nil
}

type target struct {
	member, url string
	epoch       uint64
	primary     bool
}

func (g *Gateway) serveFHIR(w http.ResponseWriter, r *http.Request) {
	id := requestid.Of(r)
	w.Header().Set("X-Request-Id", id)
	tier, nodePath, prefixed := g.route(r.URL.Path)
	if tier == "" {
		g.fail(w, http.StatusNotFound, "not-found", "no tier in the path (/fhir/{tier}/...) and no default tier")
		return
	}
	authID := ""
	// /metadata (the CapabilityStatement) is public, as on the members.
	if g.cfg.Authenticator != nil && strings.Trim(nodePath, "/") != "fhir/metadata" {
		var err error
		if authID, err = g.cfg.Authenticator.Authenticate(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tandem"`)
			g.fail(w, http.StatusUnauthorized, "login", "a valid bearer token is required")
			return
		}
	}
	client := clientID(r, authID)
	if g.limiter != nil {
		ok, wait, err := g.limiter.allow(r.Context(), client, g.cfg.Now())
		if err != nil {
			g.cfg.Log.Debug("rate limit not checked: Redis", "err", err)
		}
		if !ok {
			g.metrics.rateLimited.Inc()
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			g.fail(w, http.StatusTooManyRequests, "throttled", fmt.Sprintf("more than %d requests per second from this client", g.cfg.RateLimit))
			return
		}
	}
	var body []byte // kept for retries
	if r.Body != nil && r.Body != http.NoBody {
		var err error
		if body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes)); err != nil {
			g.fail(w, http.StatusRequestEntityTooLarge, "too-costly", fmt.Sprintf("request body larger than %d bytes", g.cfg.MaxBodyBytes))
			return
		}
	}
	maxLag, err := ParseMaxLag(r.Header.Get("X-Tandem-Max-Lag"))
	if err != nil {
		g.fail(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	ikey := r.Header.Get("Idempotency-Key")
	var cacheKey, fp string
	if ikey != "" && g.rdb != nil && !isRead(r.Method) {
		cacheKey = idemKey(tier, client, ikey)
		fp = fingerprint(r.Method, nodePath, r.URL.RawQuery, r.Header, body)
		if c, err := g.idem.get(r.Context(), cacheKey); err == nil && c.Fingerprint == fp {
			for k, vs := range c.Header {
				w.Header()[k] = vs
			}
			w.Header().Set("X-Tandem-Idempotent-Replay", "gateway-cache")
			g.metrics.replays.Inc()
			w.WriteHeader(c.Status)
			w.Write(c.Body)
			return
		}
	}
	g.forward(w, r, forwarding{tier: tier, nodePath: nodePath, prefixed: prefixed, body: body, id: id,
		class: classify(r.Method, nodePath, r.Header), stale: isRead(r.Method) && maxLag > 0, maxLag: maxLag,
		cacheKey: cacheKey, fp: fp, fail: g.fail})
}

// forwarding is one client request on its way to a member.
type forwarding struct {
	tier, nodePath string
	prefixed       bool
	body           []byte
	id             string
	class          retryClass
	stale          bool // may go to an async within maxLag
	maxLag         time.Duration
	cacheKey, fp   string // Idempotency-Key result cache
	// fail answers the gateway's own errors (OperationOutcome on /fhir,
	// an OAuth error on /auth).
	fail func(w http.ResponseWriter, code int, issue, msg string)
}

// forward sends f to the tier's primary (or an async), holding and
// retrying it across a failover as its retry class allows, and copies the
// answer to the client.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, f forwarding) {
	tier, nodePath, prefixed, body, id, class := f.tier, f.nodePath, f.prefixed, f.body, f.id, f.class
	// hold bounds the waiting for a primary, not an attempt: a member
	// may take as long as it needs to answer.
	hold, cancel := context.WithTimeout(r.Context(), g.cfg.HoldTimeout)
	defer cancel()
	var last string
	retry := "" // why the last attempt failed, until the next one is made
	for attempt := 1; ; attempt++ {
		tg, ok := g.pick(tier, f.stale, f.maxLag)
		if !ok {
			v, _ := g.View(tier)
			last = v.Reason
			if !g.wait(hold, g.cfg.FastPollInterval) {
				break
			}
			continue
		}
		if retry != "" {
			g.metrics.retries.WithLabelValues(retry).Inc()
			retry = ""
		}
		actx, acancel := context.WithCancel(r.Context())
		if class == retrySafe && tg.primary {
			// A safe request stuck on a member that stopped being primary
			// (stopped, partitioned) is abandoned and sent to the new one.
			// (Every path below ends the attempt with acancel.)
			stop := context.AfterFunc(g.movedCtx(tier, tg), acancel)
			cancelAttempt := acancel
			acancel = func() { stop(); cancelAttempt() }
		}
		resp, sent, err := g.send(actx, r, tg, nodePath, body, id, prefixed, tier)
		if err != nil {
			acancel()
			if r.Context().Err() != nil {
				return // the client went away
			}
			g.noteFailure(hold, tier, tg)
			last = fmt.Sprintf("member %s: %v", tg.member, errors.Unwrap(err))
			if class == retrySafe || !sent {
				retry = retryConnError
				if !g.wait(hold, 20*time.Millisecond) {
					break
				}
				continue
			}
			g.cfg.Log.Warn("request outcome unknown", "request_id", id, "tier", tier, "member", tg.member, "method", r.Method)
			f.fail(w, http.StatusBadGateway, "transient", "the member failed while handling this request; its outcome is unknown. Send writes with an Idempotency-Key so they can be retried safely")
			return
		}
		if resp.StatusCode == http.StatusServiceUnavailable && class == retrySafe && tg.primary {
			// The primary refused before doing anything (it cannot yet prove
			// it is primary, or has not committed what it holds): retry.
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			acancel()
			last = fmt.Sprintf("member %s answered 503", tg.member)
			retry = retryPrimary503
			if !g.wait(hold, 50*time.Millisecond) {
				break
			}
			continue
		}
		if resp.StatusCode >= 500 && class == retrySafe && tg.primary && g.moved(hold, tier, tg, resp.StatusCode) {
			// The member stopped being primary under us: try the new one.
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			acancel()
			last = fmt.Sprintf("member %s answered %d and is no longer primary", tg.member, resp.StatusCode)
			retry = retryPrimaryMove
			if hold.Err() != nil {
				break
			}
			continue
		}
		g.reply(w, r, resp, tg, tier, attempt, prefixed, f.cacheKey, f.fp)
		acancel()
		return
	}
	if r.Context().Err() != nil {
		return
	}
	w.Header().Set("Retry-After", "1")
	f.fail(w, http.StatusServiceUnavailable, "transient", fmt.Sprintf("no primary of tier %s answered within %s (%s)", tier, g.cfg.HoldTimeout, last))
}

// pick chooses where a request goes now.
func (g *Gateway) pick(tier string, stale bool, maxLag time.Duration) (target, bool) {
	v, ok := g.View(tier)
	if !ok {
		return target{}, false
	}
	if stale {
		if a, ok := v.ReadTarget(maxLag, g.cfg.Now()); ok {
			return target{a.Member, a.URL, v.Epoch, false}, true
		}
	}
	if v.Primary == "" {
		return target{}, false
	}
	return target{v.Primary, v.PrimaryURL, v.Epoch, true}, true
}

// wait blocks until the topology was re-read or d passed; false when the
// hold deadline passed.
func (g *Gateway) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-g.changedCh():
	case <-t.C:
	}
	return ctx.Err() == nil
}

// stillRouted re-reads the topology and reports whether tg is still where
// the gateway would send the request.
func (g *Gateway) stillRouted(ctx context.Context, tier string, tg target) bool {
	ch := g.changedCh()
	g.requestRefresh()
	select {
	case <-ch:
	case <-ctx.Done():
		return true
	}
	v, _ := g.View(tier)
	return v.Epoch == tg.epoch && v.Primary == tg.member
}

// handoverWait bounds how long a safe request answered 500 by a primary
// that still looks routed waits for the topology to move: a primary
// handing over (a planned failover's drain) answers a write it can no
// longer commit with 500 ("outcome unknown: not the primary") a moment
// before the members report the switch.
const handoverWait = 3 * time.Second

// moved reports whether tg stopped being tier's routed primary after it
// answered code: at once for any 5xx, and for a 500 also within
// handoverWait (re-reading the topology meanwhile).
func (g *Gateway) moved(ctx context.Context, tier string, tg target, code int) bool {
	if !g.stillRouted(ctx, tier, tg) {
		return true
	}
	if code != http.StatusInternalServerError {
		return false
	}
	deadline := time.Now().Add(handoverWait)
	for time.Now().Before(deadline) {
		if !g.wait(ctx, 100*time.Millisecond) {
			return false
		}
		if !g.stillRouted(ctx, tier, tg) {
			return true
		}
	}
	return false
}

func (g *Gateway) noteFailure(ctx context.Context, tier string, tg target) {
	v, _ := g.View(tier)
	if v.Primary != tg.member {
		g.requestRefresh()
		return
	}
	now := g.cfg.Now().UnixNano()
	last := g.lastSuspect.Load()
	if now-last > int64(200*time.Millisecond) && g.lastSuspect.CompareAndSwap(last, now) {
		g.suspect(ctx, tier, tg.member)
		return
	}
	g.requestRefresh()
}

// send makes one forwarding attempt. sent reports whether a connection to
// the member was established (so the request may have reached it).
func (g *Gateway) send(ctx context.Context, r *http.Request, tg target, nodePath string, body []byte, id string, prefixed bool, tier string) (*http.Response, bool, error) {
	u := tg.url + nodePath
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	// sent: some byte of this request was accepted for sending on a
	// connection to the member (then it may have reached the member).
	var conn atomic.Pointer[countingConn]
	var before int64
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if c, ok := info.Conn.(*countingConn); ok {
			before = c.written.Load()
			conn.Store(c)
		}
	}}
	sent := func() bool {
		c := conn.Load()
		return c != nil && c.written.Load() > before
	}
	out, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), r.Method, u, bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Header.Del("X-Tandem-Max-Lag")
	out.Header.Set("X-Request-Id", id)
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if prior := r.Header.Get("X-Forwarded-For"); prior != "" {
		host = prior + ", " + host
	}
	out.Header.Set("X-Forwarded-For", host)
	out.Header.Set("X-Forwarded-Host", r.Host)
	proto := "https"
	if r.TLS == nil {
		proto = "http"
	}
	out.Header.Set("X-Forwarded-Proto", proto)
	if prefixed {
		out.Header.Set("X-Forwarded-Prefix", "/fhir/"+tier)
	}
	if len(body) == 0 {
		out.Body = http.NoBody
	}
	out.ContentLength = int64(len(body))
	resp, err := g.members.Do(out)
	if err != nil {
		return nil, sent(), err
	}
	return resp, true, nil
}

// reply copies the member's answer to the client, caching an
// Idempotency-Key result for other gateways.
func (g *Gateway) reply(w http.ResponseWriter, r *http.Request, resp *http.Response, tg target, tier string, attempt int, prefixed bool, cacheKey, fp string) {
	defer resp.Body.Close()
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	if prefixed {
		for _, k := range []string{"Location", "Content-Location"} {
			if loc := h.Get(k); strings.HasPrefix(loc, "/fhir/") {
				h.Set(k, "/fhir/"+tier+strings.TrimPrefix(loc, "/fhir"))
			}
		}
	}
	h.Set("X-Tandem-Member", tier+"/"+tg.member)
	h.Set("X-Tandem-Epoch", strconv.FormatUint(tg.epoch, 10))
	if attempt > 1 {
		h.Set("X-Tandem-Attempts", strconv.Itoa(attempt))
	}
	if cacheKey == "" || resp.StatusCode < 200 || resp.StatusCode > 299 {
		w.WriteHeader(resp.StatusCode)
		copyBody(w, resp.Body)
		return
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, idemMaxBody+1))
	w.WriteHeader(resp.StatusCode)
	w.Write(b)
	if err != nil || len(b) > idemMaxBody {
		copyBody(w, resp.Body)
		return
	}
	keep := http.Header{}
	for _, k := range []string{"Content-Type", "Location", "Content-Location", "ETag", "Last-Modified"} {
		if v := h.Get(k); v != "" {
			keep.Set(k, v)
		}
	}
	// Cached off the response path: the journal holds the truth, the
	// cache only spares other gateways a trip to the primary.
	g.idem.put(cacheKey, &cachedResult{Fingerprint: fp, Status: resp.StatusCode, Header: keep, Body: b})
}

// copyBufs are the buffers answers are copied through (io.Copy would
// allocate 32 KiB for every request: neither side has ReadFrom/WriteTo).
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func copyBody(w io.Writer, r io.Reader) {
	b := copyBufs.Get().(*[]byte)
	io.CopyBuffer(w, r, *b)
	copyBufs.Put(b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
