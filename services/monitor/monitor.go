// Package monitor is the Mirror Monitor: a web page (served by the gateway
// to administrators) showing each tier's members and statuses as the
// members themselves report them, journal lag over time, database states,
// alignment and failover history, the policy gate's last decisions and
// the running workflows, updated live.
//
// It shows measured state only: every value on the page comes from a
// member's /mirror/status (sampled every second); a member that does not
// answer is shown as unreachable with the error, never with its last
// known state dressed up as current.
//
// The gate log is the primary's /admin/gate/log, part of the members'
// admin API, which the gateway's certificate has no right to call. It is
// read on demand, for an administrator's request that passed the auth
// check, with that administrator's own bearer token (never a credential of
// the gateway's), and reused for CacheTTL so a refreshing page does not
// hammer the primary. A read that fails shows the error, not an older
// log. The running workflows come from Temporal (Options.Workflows), read
// the same way: only while an administrator looks, cached for CacheTTL.
//
// Access: the auth check decides (the gateway passes bearer tokens with
// the admin scope). Browsers sign in with the login form or a link whose
// URL fragment carries the token (see loginPage); the token then lives in
// an HttpOnly, SameSite=Strict cookie scoped to the page's prefix. It must
// never accept a token from a query string, nor serve state to a request
// the auth check refused.
package monitor

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/tandemhealth/tandem/services/ctl"
	"github.com/tandemhealth/tandem/services/gate"
)

//go:embed page.html
var page embed.FS

// Source reports every member's status (*ctl.Client).
type Source interface {
	Statuses(ctx context.Context) []ctl.MemberStatus
}

// HistoryLength is how many samples of lag are kept per tier (one a second).
const HistoryLength = 600

// Sample is one measurement of a tier's journal lag: records each member's
// applied journal is behind the primary's commit LSN.
type Sample struct {
	At  time.Time         `json:"at"`
	Lag map[string]uint64 `json:"lag"`
}

// Failover is an epoch change seen by the monitor.
type Failover struct {
	At      time.Time `json:"at"`
	Epoch   uint64    `json:"epoch"`
	Primary string    `json:"primary"`
	Before  string    `json:"previous_primary,omitempty"`
}

// GateLogLength is how many of the gate's last decisions the page shows
// per tier.
const GateLogLength = 10

// CacheTTL is how long a gate log or workflow list read for one page
// request is reused for the next ones.
const CacheTTL = 3 * time.Second

// ReadTimeout bounds a gate log or workflow read (a page request waits for
// it when the cache has none).
const ReadTimeout = 2 * time.Second

// WorkflowLimit bounds the running workflows listed.
const WorkflowLimit = 50

// GateDecision is one entry of a primary's gate log.
type GateDecision struct {
	gate.Decision
	EvaluatedBy string `json:"evaluated_by,omitempty"`
}

// GateLog is a tier's primary's last gate decisions, newest first, as
// read at ReadAt; or, when Error is set, why they could not be read (and
// no decisions).
type GateLog struct {
	Member    string         `json:"member,omitempty"`
	ReadAt    time.Time      `json:"read_at"`
	Decisions []GateDecision `json:"decisions"`
	Error     string         `json:"error,omitempty"`
}

// WorkflowLister lists the running workflows (TemporalWorkflows).
type WorkflowLister interface {
	OpenWorkflows(ctx context.Context) ([]ctl.WorkflowState, error)
}

// TemporalWorkflows lists the running workflows of Tandem's task queue
// through a Temporal client, with their progress (ctl.ListOpenWorkflows).
type TemporalWorkflows struct{ Client client.Client }

// OpenWorkflows implements WorkflowLister.
func (t TemporalWorkflows) OpenWorkflows(ctx context.Context) ([]ctl.WorkflowState, error) {
	return ctl.ListOpenWorkflows(ctx, t.Client, WorkflowLimit)
}

// WorkflowsState says whether the running workflows could be read; each
// tier's TierState.Workflows lists them.
type WorkflowsState struct {
	Connected bool      `json:"connected"`
	ReadAt    time.Time `json:"read_at,omitzero"`
	Error     string    `json:"error,omitempty"`
}

// TierState is what the page shows for one tier.
type TierState struct {
	Name      string             `json:"name"`
	Primary   string             `json:"primary"`
	Epoch     uint64             `json:"epoch"`
	Members   []ctl.MemberStatus `json:"members"`
	History   []Sample           `json:"history"`
	Failovers []Failover         `json:"failovers"`
	// GateLog and Workflows are read for each page request (see the
	// package documentation), not by the sampler.
	GateLog   *GateLog            `json:"gate_log,omitempty"`
	Workflows []ctl.WorkflowState `json:"workflows,omitempty"`

	lastPrimary string // the last primary seen, kept while the tier has none
}

// State is the whole page's data.
type State struct {
	SampledAt time.Time `json:"sampled_at"`
	// ServedAt is when the gateway answered: the page measures the age of
	// the sample against it, not against the browser's clock.
	ServedAt  time.Time       `json:"served_at"`
	Tiers     []TierState     `json:"tiers"`
	Workflows *WorkflowsState `json:"workflows,omitempty"`
}

// Options are a Monitor's optional sources.
type Options struct {
	// AdminHTTP reads the primaries' /admin/gate/log (the gateway's
	// client, whose certificate gives TLS but no admin right: the
	// requesting administrator's token is what the member authorizes).
	// nil: the gate log is not shown.
	AdminHTTP *http.Client
	// Workflows lists the running workflows; nil: the page says the
	// monitor is not connected to Temporal.
	Workflows WorkflowLister
	// CacheTTL is how long a read is reused; 0: the package's CacheTTL.
	CacheTTL time.Duration
}

// Monitor samples a Source and serves the page.
type Monitor struct {
	src  Source
	auth func(*http.Request) error
	opts Options

	mu    sync.Mutex
	state State
	tiers map[string]*TierState

	cache cache
}

// New returns a Monitor; auth decides who may see it (administrators) and
// must not be nil.
func New(src Source, auth func(*http.Request) error) *Monitor {
	return NewWithOptions(src, auth, Options{})
}

// NewWithOptions is New with the gate log and workflow sources.
func NewWithOptions(src Source, auth func(*http.Request) error, opts Options) *Monitor {
	if auth == nil {
		panic("monitor: an auth check is required")
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = CacheTTL
	}
	return &Monitor{src: src, auth: auth, opts: opts, tiers: map[string]*TierState{}, cache: cache{ttl: opts.CacheTTL, entries: map[string]*entry{}}}
}

// Run samples every interval until ctx ends.
func (m *Monitor) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		m.Sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample asks every member once and records the result.
func (m *Monitor) Sample(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	sts := m.src.Statuses(sctx)
	cancel()
	now := time.Now().UTC()
	byTier := map[string][]ctl.MemberStatus{}
	var order []string
	for _, s := range sts {
		if _, ok := byTier[s.Tier]; !ok {
			order = append(order, s.Tier)
		}
		byTier[s.Tier] = append(byTier[s.Tier], s)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state = State{SampledAt: now}
	for _, name := range order {
		members := byTier[name]
		ts := m.tiers[name]
		if ts == nil {
			ts = &TierState{Name: name}
			m.tiers[name] = ts
		}
		ts.Members = members
		primary, epoch, commit := "", uint64(0), uint64(0)
		for _, s := range members {
			e := num(s.Status, "epoch")
			if str(s.Status, "status") == "primary" && e >= epoch {
				primary, epoch = s.Member, e
				commit = num(sub(s.Status, "journal"), "commit_lsn")
			}
		}
		if primary != "" {
			if epoch > ts.Epoch && ts.Epoch != 0 {
				ts.Failovers = append(ts.Failovers, Failover{At: now, Epoch: epoch, Primary: primary, Before: ts.lastPrimary})
			}
			ts.Primary, ts.Epoch, ts.lastPrimary = primary, epoch, primary
			smp := Sample{At: now, Lag: map[string]uint64{}}
			for _, s := range members {
				if s.Error != "" {
					continue
				}
				applied := num(sub(s.Status, "journal"), "commit_lsn")
				if applied < commit {
					smp.Lag[s.Member] = commit - applied
				} else {
					smp.Lag[s.Member] = 0
				}
			}
			ts.History = append(ts.History, smp)
			if len(ts.History) > HistoryLength {
				ts.History = ts.History[len(ts.History)-HistoryLength:]
			}
		} else {
			ts.Primary = ""
		}
		cp := *ts
		cp.History = append([]Sample(nil), ts.History...)
		cp.Failovers = append([]Failover(nil), ts.Failovers...)
		m.state.Tiers = append(m.state.Tiers, cp)
	}
	sort.Slice(m.state.Tiers, func(i, j int) bool { return m.state.Tiers[i].Name < m.state.Tiers[j].Name })
}

// State returns the last sample.
func (m *Monitor) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// CookieName holds an administrator's bearer token for the page (set by
// the login form; HttpOnly, Secure, SameSite=Strict).
const CookieName = "tandem_admin"

// authorized runs the auth check with the token from the Authorization
// header or, for a browser, the login cookie, and returns that token.
func (m *Monitor) authorized(r *http.Request) (token string, err error) {
	if r.Header.Get("Authorization") == "" {
		if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+c.Value)
		}
	}
	if err := m.auth(r); err != nil {
		return "", err
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", nil
	}
	return strings.TrimSpace(tok), nil
}

// withReads adds to st the gate logs and running workflows, read (or
// reused from the cache) for an administrator whose token is token.
func (m *Monitor) withReads(ctx context.Context, st State, token string) State {
	st.Tiers = slices.Clone(st.Tiers) // the sample is shared: never write into it
	var wg sync.WaitGroup
	if m.opts.AdminHTTP != nil {
		for i := range st.Tiers {
			wg.Add(1)
			go func(t *TierState) {
				defer wg.Done()
				gl := m.gateLog(ctx, t, token)
				t.GateLog = &gl
			}(&st.Tiers[i])
		}
	}
	ws := &WorkflowsState{}
	if m.opts.Workflows != nil {
		ws.Connected = true
		v := m.cache.get(ctx, "workflows", func() any {
			rctx, cancel := context.WithTimeout(context.Background(), ReadTimeout)
			defer cancel()
			list, err := m.opts.Workflows.OpenWorkflows(rctx)
			return workflowRead{at: time.Now().UTC(), list: list, err: err}
		})
		if r, ok := v.(workflowRead); !ok {
			ws.Error = ctx.Err().Error()
		} else if ws.ReadAt = r.at; r.err != nil {
			ws.Error = "Temporal: " + r.err.Error()
		} else {
			for i := range st.Tiers {
				for _, w := range r.list {
					if wt := w.Progress.Tier; wt == st.Tiers[i].Name || wt == "" && ctl.WorkflowTier(w.WorkflowID) == st.Tiers[i].Name {
						st.Tiers[i].Workflows = append(st.Tiers[i].Workflows, w)
					}
				}
			}
		}
	}
	st.Workflows = ws
	wg.Wait()
	return st
}

type workflowRead struct {
	at   time.Time
	list []ctl.WorkflowState
	err  error
}

// gateLog reads tier t's primary's gate log with token (cached per tier,
// primary and token).
func (m *Monitor) gateLog(ctx context.Context, t *TierState, token string) GateLog {
	if t.Primary == "" {
		return GateLog{Error: "no primary answers: the gate log is read from the primary"}
	}
	if token == "" {
		return GateLog{Member: t.Primary, Error: "this request carries no bearer token: the gate log is read with the requesting administrator's token"}
	}
	base := ""
	for _, ms := range t.Members {
		if ms.Member == t.Primary {
			base = ms.URL
		}
	}
	sum := sha256.Sum256([]byte(token))
	key := "gate\x00" + t.Name + "\x00" + t.Primary + "\x00" + base + "\x00" + hex.EncodeToString(sum[:16])
	v := m.cache.get(ctx, key, func() any {
		rctx, cancel := context.WithTimeout(context.Background(), ReadTimeout)
		defer cancel()
		return m.readGateLog(rctx, t.Primary, base, token)
	})
	if gl, ok := v.(GateLog); ok {
		return gl
	}
	return GateLog{Member: t.Primary, ReadAt: time.Now().UTC(), Error: ctx.Err().Error()}
}

// readGateLog asks member (at base) for its last GateLogLength decisions,
// forwarding the administrator's token.
func (m *Monitor) readGateLog(ctx context.Context, member, base, token string) (gl GateLog) {
	gl.Member = member
	defer func() { gl.ReadAt = time.Now().UTC() }()
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/admin/gate/log?limit=%d", base, GateLogLength), nil)
	if err != nil {
		gl.Error = err.Error()
		return gl
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := m.opts.AdminHTTP.Do(req)
	if err != nil {
		gl.Error = fmt.Sprintf("%s is unreachable: %v", member, err)
		return gl
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		gl.Error = fmt.Sprintf("%s: %v", member, err)
		return gl
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		gl.Error = fmt.Sprintf("%s: HTTP %d: %s", member, resp.StatusCode, e.Error)
		return gl
	}
	var body struct {
		Decisions []GateDecision `json:"decisions"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		gl.Error = fmt.Sprintf("%s: unreadable gate log: %v", member, err)
		return gl
	}
	slices.Reverse(body.Decisions)
	gl.Decisions = body.Decisions[:min(len(body.Decisions), GateLogLength)]
	if gl.Decisions == nil {
		gl.Decisions = []GateDecision{}
	}
	return gl
}

// cache keeps each read for ttl; concurrent requests for a key share one
// read.
type cache struct {
	ttl     time.Duration
	mu      sync.Mutex
	entries map[string]*entry
}

type entry struct {
	ready   chan struct{}
	expires time.Time // set before ready is closed
	val     any
}

// get returns the value of key, read by read if absent or expired. A
// caller whose ctx ends while another caller's read runs gets nil.
func (c *cache) get(ctx context.Context, key string, read func() any) any {
	c.mu.Lock()
	now := time.Now()
	for k, e := range c.entries {
		select {
		case <-e.ready:
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		default:
		}
	}
	e, ok := c.entries[key]
	if !ok {
		e = &entry{ready: make(chan struct{})}
		c.entries[key] = e
		c.mu.Unlock()
		e.val = read()
		e.expires = time.Now().Add(c.ttl)
		close(e.ready)
		return e.val
	}
	c.mu.Unlock()
	select {
	case <-e.ready:
		return e.val
	case <-ctx.Done():
		return nil
	}
}

// loginPage is the sign-in form. It also signs in from a link: a token in
// the URL fragment (prefix + "#token=..."; an unauthenticated request for
// the page is redirected here and browsers keep the fragment across the
// redirect) is read by the page's script, removed from the address bar and
// history, and POSTed to the login endpoint like the form does. A fragment
// is never sent to a server, so the token does not reach access logs or
// proxies; the token is accepted only in a POST body or a header, never
// in a query string.
const loginPage = `<!doctype html><html><head><meta charset="utf-8"><title>Tandem · sign in</title>
<style>body{font:15px system-ui,sans-serif;background:#f5f6f8;display:grid;place-items:center;height:100vh;margin:0}
form{background:#fff;border:1px solid #e3e6ec;border-radius:10px;padding:24px 28px;width:420px}
textarea{width:100%;height:90px;font:12px monospace}button{margin-top:10px;padding:6px 16px}#msg{color:#d33c3c}</style></head>
<body><form method="post" action="login"><h2>Mirror Monitor</h2><p>Paste an administrator token
(<code>tandem token --role admin</code>, or <code>.tandem/dev/endpoints.json</code> in development).</p>
<textarea name="token" required></textarea><br><button type="submit">Sign in</button><p id="msg"></p></form>
<script>
(async () => {
  const m = /^#token=([A-Za-z0-9._~+\/=-]+)$/.exec(location.hash);
  if (!m) return;
  history.replaceState(null, "", location.pathname);
  const r = await fetch("login", {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: new URLSearchParams({token: m[1]})});
  if (r.ok) location.replace("./"); else document.getElementById("msg").textContent = "That token was refused: " + (await r.text());
})();
</script></body></html>`

// Handler serves the page at prefix (e.g. "/monitor/"), its data at
// prefix+"api/state" and a login form at prefix+"login".
func (m *Monitor) Handler(prefix string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"login", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Write([]byte(loginPage))
	})
	mux.HandleFunc("POST "+prefix+"login", func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimSpace(r.PostFormValue("token")) // never from the query string
		check := r.Clone(r.Context())
		check.Header.Set("Authorization", "Bearer "+tok)
		if err := m.auth(check); err != nil {
			http.Error(w, "not an administrator token: "+err.Error(), http.StatusUnauthorized)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: tok, Path: prefix, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, prefix, http.StatusSeeOther)
	})
	mux.HandleFunc("GET "+prefix+"{$}", func(w http.ResponseWriter, r *http.Request) {
		if _, err := m.authorized(r); err != nil {
			http.Redirect(w, r, prefix+"login", http.StatusSeeOther)
			return
		}
		data, _ := page.ReadFile("page.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'")
		w.Write(data)
	})
	mux.HandleFunc("GET "+prefix+"api/state", func(w http.ResponseWriter, r *http.Request) {
		token, err := m.authorized(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		st := m.withReads(r.Context(), m.State(), token)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		st.ServedAt = time.Now().UTC()
		json.NewEncoder(w).Encode(st)
	})
	return mux
}

func sub(m map[string]any, k string) map[string]any {
	v, _ := m[k].(map[string]any)
	return v
}

func str(m map[string]any, k string) string {
	v, _ := m[k].(string)
	return v
}

func num(m map[string]any, k string) uint64 {
	v, _ := m[k].(float64)
	return uint64(v)
}
