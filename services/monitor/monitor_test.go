package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tandemhealth/tandem/services/ctl"
)

type fakeSource struct{ sts []ctl.MemberStatus }

func (f *fakeSource) Statuses(context.Context) []ctl.MemberStatus { return f.sts }

func member(name, status string, epoch, commit float64) ctl.MemberStatus {
	return ctl.MemberStatus{Tier: "records", Member: name, Status: map[string]any{
		"status": status, "epoch": epoch, "journal": map[string]any{"commit_lsn": commit}}}
}

func TestSamplesLagFailoversAndUnreachableMembers(t *testing.T) {
	src := &fakeSource{sts: []ctl.MemberStatus{member("a", "primary", 1, 100), member("b", "backup", 1, 97), {Tier: "records", Member: "c", Error: "connection refused"}}}
	m := New(src, func(*http.Request) error { return nil })
	m.Sample(context.Background())
	st := m.State()
	if len(st.Tiers) != 1 || st.Tiers[0].Primary != "a" || st.Tiers[0].Epoch != 1 {
		t.Fatalf("state %+v", st)
	}
	if lag := st.Tiers[0].History[0].Lag; lag["b"] != 3 || lag["a"] != 0 || len(lag) != 2 {
		t.Fatalf("lag %v", lag)
	}
	// a dies; for a sample no member is primary; then b takes over in epoch
	// 2: one failover recorded, from a, and a's old state is not shown as current.
	src.sts = []ctl.MemberStatus{{Tier: "records", Member: "a", Error: "connection refused"}, member("b", "backup", 1, 100)}
	m.Sample(context.Background())
	src.sts = []ctl.MemberStatus{{Tier: "records", Member: "a", Error: "connection refused"}, member("b", "primary", 2, 120)}
	m.Sample(context.Background())
	m.Sample(context.Background())
	st = m.State()
	if fo := st.Tiers[0].Failovers; len(fo) != 1 || fo[0].Epoch != 2 || fo[0].Primary != "b" || fo[0].Before != "a" {
		t.Fatalf("failovers %+v", fo)
	}
	if st.Tiers[0].Members[0].Error == "" {
		t.Fatal("an unreachable member lost its error")
	}
	// No primary: the tier says so.
	src.sts = []ctl.MemberStatus{member("b", "waiting", 2, 120)}
	m.Sample(context.Background())
	if p := m.State().Tiers[0].Primary; p != "" {
		t.Fatalf("primary %q with no member claiming it", p)
	}
}

func TestPageAndDataNeedTheAuthCheck(t *testing.T) {
	m := New(&fakeSource{sts: []ctl.MemberStatus{member("a", "primary", 1, 5)}}, func(r *http.Request) error {
		if r.Header.Get("Authorization") != "Bearer admin" {
			return errors.New("admin token required")
		}
		return nil
	})
	m.Sample(context.Background())
	srv := httptest.NewServer(m.Handler("/monitor/"))
	defer srv.Close()
	resp0, err := http.Get(srv.URL + "/monitor/api/state")
	if err != nil {
		t.Fatal(err)
	}
	resp0.Body.Close()
	if resp0.StatusCode != http.StatusUnauthorized {
		t.Fatalf("state without a token: %d", resp0.StatusCode)
	}
	// The page sends a browser to the login form; a wrong token is refused,
	// the right one sets the cookie the page's requests then carry.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp0, err = browser.Get(srv.URL + "/monitor/")
	if err != nil {
		t.Fatal(err)
	}
	resp0.Body.Close()
	if resp0.Request.URL.Path != "/monitor/login" {
		t.Fatalf("no token: ended at %s", resp0.Request.URL.Path)
	}
	if resp0, _ = browser.PostForm(srv.URL+"/monitor/login", url.Values{"token": {"guess"}}); resp0.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", resp0.StatusCode)
	}
	resp0, err = browser.PostForm(srv.URL+"/monitor/login", url.Values{"token": {"admin"}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp0.Body)
	resp0.Body.Close()
	if resp0.Request.URL.Path != "/monitor/" || !strings.Contains(string(page), "Mirror Monitor") {
		t.Fatalf("after login: %s", resp0.Request.URL.Path)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/monitor/api/state", nil)
	req.Header.Set("Authorization", "Bearer admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st State
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Tiers[0].Primary != "a" {
		t.Fatalf("state %+v %v", st, err)
	}
	req, _ = http.NewRequest("GET", srv.URL+"/monitor/", nil)
	req.Header.Set("Authorization", "Bearer admin")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	buf := new(strings.Builder)
	if _, err := io.Copy(buf, resp2.Body); err != nil || !strings.Contains(buf.String(), "Mirror Monitor") {
		t.Fatalf("page: %v", err)
	}
}
