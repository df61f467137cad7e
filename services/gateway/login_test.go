package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type loginAnswer struct {
	AccessToken string `json:"access_token"`
	Error       string `json:"error"`
	Seen        struct{ Form, Type, XFF string }
}

func postLogin(t *testing.T, url string) (*http.Response, loginAnswer) {
	t.Helper()
	resp, body := do(t, "POST", url, "grant_type=password&username=dave&password=pw", "Content-Type", "application/x-www-form-urlencoded")
	var a loginAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	return resp, a
}

// TestLoginGoesToThePrimary: POST /auth/token needs no bearer token and
// reaches the default tier's primary unchanged (/auth/{tier}/token another
// tier's); an unknown tier is a 404 in the OAuth shape.
func TestLoginGoesToThePrimary(t *testing.T) {
	fx := newFixture(t)
	base, _ := fx.gateway(func(c *Config) { c.Authenticator = denyAll{} })
	resp, a := postLogin(t, base+"/auth/token")
	if resp.StatusCode != 200 || a.AccessToken != "from-a" || resp.Header.Get("X-Tandem-Member") != "records/a" {
		t.Fatalf("%d %+v member %q", resp.StatusCode, a, resp.Header.Get("X-Tandem-Member"))
	}
	if a.Seen.Form != "grant_type=password&username=dave&password=pw" || a.Seen.Type != "application/x-www-form-urlencoded" || a.Seen.XFF != "127.0.0.1" {
		t.Fatalf("the member saw %+v", a.Seen)
	}
	if resp, a := postLogin(t, base+"/auth/labs/token"); resp.StatusCode != 200 || a.AccessToken != "from-x" {
		t.Fatalf("labs: %d %+v", resp.StatusCode, a)
	}
	if resp, a := postLogin(t, base+"/auth/nope/token"); resp.StatusCode != 404 || a.Error != "invalid_request" {
		t.Fatalf("unknown tier: %d %+v", resp.StatusCode, a)
	}
	if resp, _ := do(t, "GET", base+"/auth/token", ""); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /auth/token: %d", resp.StatusCode)
	}
}

// TestLoginHeldAcrossFailover: a login is safe to retry: while the tier
// has no primary it is held, a 503 is retried, and the new primary
// answers it.
func TestLoginHeldAcrossFailover(t *testing.T) {
	fx := newFixture(t)
	base, _ := fx.gateway(nil)
	fx.members["a"].kill()
	fx.members["a"].set("down", 1)
	var refused atomic.Int32
	fx.members["b"].onLogin = func(w http.ResponseWriter, r *http.Request) bool {
		if refused.Load() < 2 { // a new primary that cannot prove itself yet
			refused.Add(1)
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		fx.members["b"].set("primary", 2)
	}()
	t0 := time.Now()
	resp, a := postLogin(t, base+"/auth/token")
	if resp.StatusCode != 200 || a.AccessToken != "from-b" || resp.Header.Get("X-Tandem-Epoch") != "2" {
		t.Fatalf("%d %+v", resp.StatusCode, a)
	}
	if took := time.Since(t0); took < 300*time.Millisecond || refused.Load() != 2 {
		t.Fatalf("answered after %s with %d refusals retried", took, refused.Load())
	}
	t.Logf("login held %s, %s attempts", time.Since(t0).Round(time.Millisecond), resp.Header.Get("X-Tandem-Attempts"))
}

// TestLoginNoPrimaryIsAnOAuthError: when no primary answers within the
// hold, the client gets 503 in the token endpoint's shape.
func TestLoginNoPrimaryIsAnOAuthError(t *testing.T) {
	fx := newFixture(t)
	base, _ := fx.gateway(func(c *Config) { c.HoldTimeout = 300 * time.Millisecond })
	fx.members["a"].set("backup", 1)
	resp, a := postLogin(t, base+"/auth/token")
	if resp.StatusCode != 503 || a.Error != "temporarily_unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d %+v", resp.StatusCode, a)
	}
	if !strings.Contains(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
}
