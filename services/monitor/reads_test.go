package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/services/ctl"
	"github.com/tandemhealth/tandem/workflows"
)

// fakePrimary serves /admin/gate/log like a member: to "Bearer admin" or
// "Bearer admin2" only, oldest decision first, recording what it was sent.
type fakePrimary struct {
	srv   *httptest.Server
	hits  atomic.Int32
	mu    sync.Mutex
	auths []string
	query string
	fail  atomic.Bool // answer 500 with an error
}

func newFakePrimary(t *testing.T) *fakePrimary {
	f := &fakePrimary{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/admin/gate/log" {
			http.NotFound(w, r)
			return
		}
		f.hits.Add(1)
		f.mu.Lock()
		f.auths = append(f.auths, r.Header.Get("Authorization"))
		f.query = r.URL.RawQuery
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if a := r.Header.Get("Authorization"); a != "Bearer admin" && a != "Bearer admin2" {
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":"the admin API needs the operator's client certificate or an admin token"}`))
			return
		}
		if f.fail.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error":"system database unreadable"}`))
			return
		}
		w.Write([]byte(`{"member":"a","decisions":[
			{"at":"2025-01-01T10:00:00Z","operation":"mirror_setup","target":"b","allowed":true,"deny":[],"warn":["b has no async peer"],"policy_hash":"abcdef0123456789","evaluated_by":"a"},
			{"at":"2025-01-01T10:05:00Z","operation":"planned_failover","target":"b","allowed":false,"deny":["b is 40 records behind"],"warn":[],"policy_hash":"abcdef0123456789","evaluated_by":"a"}]}`))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakePrimary) lastAuth() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.auths) == 0 {
		return ""
	}
	return f.auths[len(f.auths)-1]
}

func adminAuth(r *http.Request) error {
	if a := r.Header.Get("Authorization"); a != "Bearer admin" && a != "Bearer admin2" {
		return errors.New("admin token required")
	}
	return nil
}

func tierAt(url string) []ctl.MemberStatus {
	a, b := member("a", "primary", 3, 100), member("b", "backup", 3, 100)
	a.URL, b.URL = url, "http://127.0.0.1:1"
	return []ctl.MemberStatus{a, b}
}

func getState(t *testing.T, c *http.Client, url, token string) (int, State) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st State
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, st
}

func TestGateLogIsReadOnlyForAnAdministratorWithItsToken(t *testing.T) {
	p := newFakePrimary(t)
	m := NewWithOptions(&fakeSource{sts: tierAt(p.srv.URL)}, adminAuth, Options{AdminHTTP: p.srv.Client()})
	m.Sample(context.Background())
	m.Sample(context.Background())
	srv := httptest.NewServer(m.Handler("/monitor/"))
	defer srv.Close()

	// The sampler never reads it, nor does a refused request.
	if code, _ := getState(t, http.DefaultClient, srv.URL+"/monitor/api/state", "guess"); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	if n := p.hits.Load(); n != 0 {
		t.Fatalf("the gate log was read %d times without an administrator's request", n)
	}

	code, st := getState(t, http.DefaultClient, srv.URL+"/monitor/api/state", "admin")
	if code != http.StatusOK {
		t.Fatalf("state: %d", code)
	}
	gl := st.Tiers[0].GateLog
	if gl == nil || gl.Error != "" || gl.Member != "a" || len(gl.Decisions) != 2 {
		t.Fatalf("gate log %+v", gl)
	}
	if p.lastAuth() != "Bearer admin" || p.query != "limit=10" {
		t.Fatalf("the primary was sent %q ?%s, want the administrator's token and limit=10", p.lastAuth(), p.query)
	}
	if d := gl.Decisions[0]; d.Operation != "planned_failover" || d.Allowed || len(d.Deny) != 1 || d.PolicyHash != "abcdef0123456789" || d.EvaluatedBy != "a" {
		t.Fatalf("newest decision first, with its messages: %+v", d)
	}
	if d := gl.Decisions[1]; d.Operation != "mirror_setup" || !d.Allowed || len(d.Warn) != 1 {
		t.Fatalf("older decision %+v", d)
	}
	if time.Since(gl.ReadAt) > time.Minute {
		t.Fatalf("read at %s", gl.ReadAt)
	}

	// A refreshing page is served from the cache.
	for range 3 {
		getState(t, http.DefaultClient, srv.URL+"/monitor/api/state", "admin")
	}
	if n := p.hits.Load(); n != 1 {
		t.Fatalf("the gate log was read %d times for 4 refreshes within the cache's life", n)
	}

	// A browser's token comes from the login cookie; another
	// administrator's read is that administrator's own.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.PostForm(srv.URL+"/monitor/login", url.Values{"token": {"admin2"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code, st = getState(t, browser, srv.URL+"/monitor/api/state", ""); code != 200 || st.Tiers[0].GateLog == nil || len(st.Tiers[0].GateLog.Decisions) != 2 {
		t.Fatalf("with the cookie: %d %+v", code, st.Tiers[0].GateLog)
	}
	if p.lastAuth() != "Bearer admin2" || p.hits.Load() != 2 {
		t.Fatalf("the cookie's token was not forwarded: %q (%d reads)", p.lastAuth(), p.hits.Load())
	}
}

func TestGateLogFailureIsShownNotStaleData(t *testing.T) {
	p := newFakePrimary(t)
	src := &fakeSource{sts: tierAt(p.srv.URL)}
	m := NewWithOptions(src, func(*http.Request) error { return nil }, Options{AdminHTTP: p.srv.Client(), CacheTTL: time.Nanosecond})
	m.Sample(context.Background())
	srv := httptest.NewServer(m.Handler("/monitor/"))
	defer srv.Close()
	state := func(token string) *GateLog {
		t.Helper()
		_, st := getState(t, http.DefaultClient, srv.URL+"/monitor/api/state", token)
		return st.Tiers[0].GateLog
	}
	if gl := state("admin"); gl.Error != "" || len(gl.Decisions) != 2 {
		t.Fatalf("gate log %+v", gl)
	}
	p.fail.Store(true)
	if gl := state("admin"); !strings.Contains(gl.Error, "system database unreadable") || !strings.Contains(gl.Error, "HTTP 500") || len(gl.Decisions) != 0 {
		t.Fatalf("a failed read: %+v", gl)
	}
	p.fail.Store(false)
	// The member refuses a token that is not an administrator's (here the
	// auth check let it through): its answer is shown.
	if gl := state("clinician"); !strings.Contains(gl.Error, "HTTP 403") || len(gl.Decisions) != 0 {
		t.Fatalf("refused: %+v", gl)
	}
	if gl := state(""); !strings.Contains(gl.Error, "no bearer token") || p.lastAuth() != "Bearer clinician" {
		t.Fatalf("no token: %+v (sent %q)", gl, p.lastAuth())
	}
	p.srv.Close()
	if gl := state("admin"); !strings.Contains(gl.Error, "a is unreachable") || len(gl.Decisions) != 0 {
		t.Fatalf("primary down: %+v", gl)
	}
	src.sts = []ctl.MemberStatus{member("a", "waiting", 3, 100)}
	m.Sample(context.Background())
	if gl := state("admin"); !strings.Contains(gl.Error, "no primary") {
		t.Fatalf("no primary: %+v", gl)
	}
}

type fakeLister struct {
	calls atomic.Int32
	list  []ctl.WorkflowState
	err   error
}

func (f *fakeLister) OpenWorkflows(context.Context) ([]ctl.WorkflowState, error) {
	f.calls.Add(1)
	return f.list, f.err
}

func TestRunningWorkflowsPerTier(t *testing.T) {
	started := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	f := &fakeLister{list: []ctl.WorkflowState{
		{WorkflowID: "tier/records/topology", Type: "PromoteAsync", Status: "Running", Started: started, Progress: workflows.Progress{
			Tier: "records", Steps: []string{"check", "approve", "promote"}, Step: 1, State: workflows.StateWaiting, Message: "waiting for an approval",
			Approval: &workflows.ApprovalRequest{Confirm: "lose 3 records", What: "promote c, losing 3 records", ExpiresAt: started.Add(15 * time.Minute)}}},
		// No progress (no worker answered the query): its tier is its ID's.
		{WorkflowID: "tier/records/config-sync", Type: "ConfigSync", Status: "Running", Started: started, Error: "progress unavailable: deadline exceeded"},
		{WorkflowID: "tier/other/topology", Type: "MirrorSetup", Status: "Running", Progress: workflows.Progress{Tier: "other"}},
	}}
	m := NewWithOptions(&fakeSource{sts: []ctl.MemberStatus{member("a", "primary", 1, 5)}}, adminAuth, Options{Workflows: f, CacheTTL: time.Nanosecond})
	m.Sample(context.Background())
	srv := httptest.NewServer(m.Handler("/monitor/"))
	defer srv.Close()
	if code, _ := getState(t, http.DefaultClient, srv.URL+"/monitor/api/state", ""); code != http.StatusUnauthorized || f.calls.Load() != 0 {
		t.Fatalf("without a token: %d, %d listings", code, f.calls.Load())
	}
	_, st := getState(t, http.DefaultClient, srv.URL+"/monitor/api/state", "admin")
	if st.Workflows == nil || !st.Workflows.Connected || st.Workflows.Error != "" || st.Workflows.ReadAt.IsZero() {
		t.Fatalf("workflows %+v", st.Workflows)
	}
	ws := st.Tiers[0].Workflows
	if len(ws) != 2 || ws[0].WorkflowID != "tier/records/topology" || ws[1].WorkflowID != "tier/records/config-sync" {
		t.Fatalf("tier records lists %+v", ws)
	}
	if a := ws[0].Progress.Approval; a == nil || ws[0].Progress.State != workflows.StateWaiting || !ws[0].Started.Equal(started) {
		t.Fatalf("the approval awaited is not shown: %+v", ws[0])
	}
	if ws[1].Error == "" {
		t.Fatal("a workflow's query error was lost")
	}

	f.err = errors.New("connection refused")
	_, st = getState(t, http.DefaultClient, srv.URL+"/monitor/api/state", "admin")
	if !st.Workflows.Connected || !strings.Contains(st.Workflows.Error, "connection refused") || len(st.Tiers[0].Workflows) != 0 {
		t.Fatalf("Temporal down: %+v, still listing %+v", st.Workflows, st.Tiers[0].Workflows)
	}

	// Without a lister: not connected, and the page says how to connect.
	m2 := New(&fakeSource{sts: []ctl.MemberStatus{member("a", "primary", 1, 5)}}, adminAuth)
	m2.Sample(context.Background())
	srv2 := httptest.NewServer(m2.Handler("/monitor/"))
	defer srv2.Close()
	if _, st = getState(t, http.DefaultClient, srv2.URL+"/monitor/api/state", "admin"); st.Workflows == nil || st.Workflows.Connected || st.Tiers[0].GateLog != nil {
		t.Fatalf("without sources: %+v %+v", st.Workflows, st.Tiers[0].GateLog)
	}
	data, _ := page.ReadFile("page.html")
	if !strings.Contains(string(data), "workflows: not connected (start the gateway with --temporal-address)") {
		t.Fatal("the page does not say how to connect the workflows")
	}
}

// Concurrent page requests share one read of the gate log.
func TestConcurrentRequestsShareOneRead(t *testing.T) {
	p := newFakePrimary(t)
	m := NewWithOptions(&fakeSource{sts: tierAt(p.srv.URL)}, adminAuth, Options{AdminHTTP: p.srv.Client()})
	m.Sample(context.Background())
	srv := httptest.NewServer(m.Handler("/monitor/"))
	defer srv.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", srv.URL+"/monitor/api/state", nil)
			req.Header.Set("Authorization", "Bearer admin")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if n := p.hits.Load(); n != 1 {
		t.Fatalf("%d reads for 8 concurrent requests", n)
	}
}
