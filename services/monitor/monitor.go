// Package monitor is the Mirror Monitor: a web page (served by the gateway
// to administrators) showing each tier's members and statuses as the
// members themselves report them, journal lag over time, database states,
// alignment and failover history, updated live.
//
// It shows measured state only: every value on the page comes from a
// member's /mirror/status (sampled every second); a member that does not
// answer is shown as unreachable with the error, never with its last
// known state dressed up as current.
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
	"embed"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tandemhealth/tandem/services/ctl"
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

// TierState is what the page shows for one tier.
type TierState struct {
	Name      string             `json:"name"`
	Primary   string             `json:"primary"`
	Epoch     uint64             `json:"epoch"`
	Members   []ctl.MemberStatus `json:"members"`
	History   []Sample           `json:"history"`
	Failovers []Failover         `json:"failovers"`

	lastPrimary string // the last primary seen, kept while the tier has none
}

// State is the whole page's data.
type State struct {
	SampledAt time.Time `json:"sampled_at"`
	// ServedAt is when the gateway answered: the page measures the age of
	// the sample against it, not against the browser's clock.
	ServedAt time.Time   `json:"served_at"`
	Tiers    []TierState `json:"tiers"`
}

// Monitor samples a Source and serves the page.
type Monitor struct {
	src  Source
	auth func(*http.Request) error

	mu    sync.Mutex
	state State
	tiers map[string]*TierState
}

// New returns a Monitor; auth decides who may see it (administrators) and
// must not be nil.
func New(src Source, auth func(*http.Request) error) *Monitor {
	if auth == nil {
		panic("monitor: an auth check is required")
	}
	return &Monitor{src: src, auth: auth, tiers: map[string]*TierState{}}
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
// header or, for a browser, the login cookie.
func (m *Monitor) authorized(r *http.Request) error {
	if r.Header.Get("Authorization") == "" {
		if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+c.Value)
		}
	}
	return m.auth(r)
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
		if err := m.authorized(r); err != nil {
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
		if err := m.authorized(r); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		st := m.State()
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
