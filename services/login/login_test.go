package login_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	configsync "github.com/tandemhealth/tandem/config-sync"
	"github.com/tandemhealth/tandem/fhir/access"
	"github.com/tandemhealth/tandem/services/login"
)

const (
	davePassword = "correct-horse-battery"
	robotSecret  = "robot-secret-0123456789"
)

var testKey = access.Key{ID: "k1", Alg: access.HS256, Secret: []byte("a-test-secret-of-at-least-32-bytes!!")}

// state is a member's effective state: roles nurse and empty; users dave
// (nurse), ann (nurse + built-in clinician), ed (disabled), pat
// (patient-app), zed (a role defined nowhere), nobody (no roles), rob
// (nurse) with the API clients robot (allowed_scope user/Observation.cruds)
// and old-robot (disabled).
func state(t testing.TB, security string) configsync.State {
	t.Helper()
	users, err := configsync.Prepare(configsync.Users, []byte(`[
		{"name":"dave","password":"`+davePassword+`","enabled":true,"roles":["nurse"]},
		{"name":"ann","password":"`+davePassword+`","enabled":true,"roles":["nurse","clinician"]},
		{"name":"ed","password":"`+davePassword+`","enabled":false,"roles":["nurse"]},
		{"name":"pat","password":"`+davePassword+`","enabled":true,"roles":["patient-app"]},
		{"name":"zed","password":"`+davePassword+`","enabled":true,"roles":["surgeon"]},
		{"name":"nobody","password":"`+davePassword+`","enabled":true},
		{"name":"rob","password":"`+davePassword+`","enabled":true,"roles":["nurse"],"api_clients":[
			{"id":"robot","secret":"`+robotSecret+`","enabled":true,"allowed_scope":"user/Observation.cruds"},
			{"id":"old-robot","secret":"`+robotSecret+`","enabled":false}]}]`))
	if err != nil {
		t.Fatal(err)
	}
	roles, err := configsync.Prepare(configsync.Roles, []byte(`[{"name":"nurse","scopes":["patient/*.rs","user/Observation.cruds"]}]`))
	if err != nil {
		t.Fatal(err)
	}
	st := configsync.State{
		configsync.Users: {Category: configsync.Users, Version: 1, Doc: users},
		configsync.Roles: {Category: configsync.Roles, Version: 1, Doc: roles},
	}
	if security != "" {
		sec, err := configsync.Prepare(configsync.Security, []byte(security))
		if err != nil {
			t.Fatal(err)
		}
		st[configsync.Security] = configsync.Document{Category: configsync.Security, Version: 1, Doc: sec}
	}
	return st
}

// endpoint is a Handler on a fake clock, with its log and audit captured.
type endpoint struct {
	h   *login.Handler
	log *bytes.Buffer

	mu       sync.Mutex
	now      time.Time
	attempts []login.Attempt
}

func newEndpoint(t testing.TB, st configsync.State, mod ...func(*login.Config)) *endpoint {
	t.Helper()
	e := &endpoint{log: &bytes.Buffer{}, now: time.Now()}
	c := login.Config{
		Key:   testKey,
		State: func() configsync.State { return st },
		Audit: func(a login.Attempt) {
			e.mu.Lock()
			e.attempts = append(e.attempts, a)
			e.mu.Unlock()
		},
		Log: slog.New(slog.NewJSONHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now: func() time.Time {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.now
		},
		LockoutAfter: 3,
		LockoutFor:   time.Minute,
	}
	for _, m := range mod {
		m(&c)
	}
	h, err := login.New(c)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	return e
}

func (e *endpoint) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

type answer struct {
	status int
	header http.Header
	token  login.Token
	err    struct {
		Code        string `json:"error"`
		Description string `json:"error_description"`
	}
	body string
}

// post sends form to the endpoint; basic, when set, is "id:secret".
func (e *endpoint) post(t testing.TB, form url.Values, basic ...string) answer {
	t.Helper()
	req := httptest.NewRequest("POST", login.Path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) > 0 {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(basic[0])))
	}
	return e.do(t, req)
}

func (e *endpoint) do(t testing.TB, req *http.Request) answer {
	t.Helper()
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	a := answer{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &a.token); err != nil {
			t.Fatal(err)
		}
	} else if err := json.Unmarshal(rec.Body.Bytes(), &a.err); err != nil {
		t.Fatalf("error body is not JSON: %q", rec.Body.String())
	}
	return a
}

func pw(user, password string) url.Values {
	return url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}}
}

func verify(t testing.TB, tok string) *access.Principal {
	t.Helper()
	v, err := access.NewVerifier(access.Config{Keys: []access.Key{testKey}, Issuer: "tandem-test", Audience: "fhir"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("the token does not verify: %v", err)
	}
	return p
}

func scopes(p *access.Principal) []string {
	var out []string
	for _, s := range p.Scopes {
		out = append(out, s.String())
	}
	slices.Sort(out)
	return out
}

func withIssuer(c *login.Config) { c.Issuer, c.Audience = "tandem-test", "fhir" }

// TestPasswordLogin: a good password gets a token the access package
// verifies, carrying the user's roles as scopes.
func TestPasswordLogin(t *testing.T) {
	e := newEndpoint(t, state(t, ""), withIssuer)
	cases := []struct {
		user  string
		scope string // the answer's scope
		want  []string
		admin bool
	}{
		{"dave", "patient/*.rs user/Observation.cruds", []string{"patient/*.rs", "user/Observation.cruds"}, false},
		// Several roles: the union; the built-in clinician is exactly
		// access.RoleGrant's scope.
		{"ann", "fhirUser openid patient/*.rs user/*.cruds user/Observation.cruds", []string{"patient/*.rs", "user/*.cruds", "user/Observation.cruds"}, false},
	}
	for _, c := range cases {
		t.Run(c.user, func(t *testing.T) {
			a := e.post(t, pw(c.user, davePassword))
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			if a.token.TokenType != "Bearer" || a.token.ExpiresIn != int(login.DefaultTTL/time.Second) || a.token.Scope != c.scope {
				t.Fatalf("answer %+v", a.token)
			}
			if a.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("Cache-Control %q", a.header.Get("Cache-Control"))
			}
			p := verify(t, a.token.AccessToken)
			if p.Subject != c.user || p.Admin != c.admin || !slices.Equal(scopes(p), c.want) {
				t.Fatalf("principal %+v scopes %v, want %v", p, scopes(p), c.want)
			}
		})
	}
	g, _ := access.RoleGrant("clinician", "", "", time.Minute)
	for _, s := range strings.Fields(g.Scope) {
		if !strings.Contains(cases[1].scope, s) {
			t.Fatalf("ann's scope lacks the clinician role's %q", s)
		}
	}
}

// TestRefusals: every refusal has its RFC 6749 error and status, and a
// refused password says the same whether the user exists or not.
func TestRefusals(t *testing.T) {
	e := newEndpoint(t, state(t, ""), func(c *login.Config) { c.LockoutAfter = 100 })
	cases := []struct {
		name   string
		form   url.Values
		status int
		code   string
		desc   string // a part of the description
	}{
		{"wrong password", pw("dave", "Tr0ub4dor&3"), 400, "invalid_grant", "user name or password is not accepted"},
		{"disabled user", pw("ed", davePassword), 400, "invalid_grant", "user name or password is not accepted"},
		{"unknown user", pw("mallory", davePassword), 400, "invalid_grant", "user name or password is not accepted"},
		{"unknown role", pw("zed", davePassword), 400, "invalid_scope", `role "surgeon" is neither defined`},
		{"patient-app role", pw("pat", davePassword), 400, "invalid_scope", "patient-app"},
		{"no roles", pw("nobody", davePassword), 400, "invalid_scope", "has no roles"},
		{"scope not granted", func() url.Values { f := pw("dave", davePassword); f.Set("scope", "user/*.cruds"); return f }(), 400, "invalid_scope", "not granted"},
		{"bad grant type", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, 400, "unsupported_grant_type", "password or client_credentials"},
		{"no grant type", url.Values{"username": {"dave"}, "password": {davePassword}}, 400, "invalid_request", "grant_type is required"},
		{"no password", url.Values{"grant_type": {"password"}, "username": {"dave"}}, 400, "invalid_request", "username and password"},
		{"no username", url.Values{"grant_type": {"password"}, "password": {davePassword}}, 400, "invalid_request", "username and password"},
		{"repeated parameter", url.Values{"grant_type": {"password"}, "username": {"dave", "ann"}, "password": {davePassword}}, 400, "invalid_request", "more than once"},
		{"client without secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {"robot"}}, 401, "invalid_client", "required"},
		{"wrong client secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {"robot"}, "client_secret": {"nope"}}, 401, "invalid_client", "not accepted"},
		{"unknown client", url.Values{"grant_type": {"client_credentials"}, "client_id": {"ghost"}, "client_secret": {robotSecret}}, 401, "invalid_client", "not accepted"},
		{"disabled client", url.Values{"grant_type": {"client_credentials"}, "client_id": {"old-robot"}, "client_secret": {robotSecret}}, 401, "invalid_client", "not accepted"},
	}
	descs := map[string]string{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := e.post(t, c.form)
			if a.status != c.status || a.err.Code != c.code || !strings.Contains(a.err.Description, c.desc) {
				t.Fatalf("got %d %s %q, want %d %s ~%q", a.status, a.err.Code, a.err.Description, c.status, c.code, c.desc)
			}
			if c.status == 401 && a.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			descs[c.name] = a.err.Description
		})
	}
	if descs["wrong password"] != descs["unknown user"] || descs["unknown user"] != descs["disabled user"] {
		t.Fatalf("refusals differ: %q %q %q", descs["wrong password"], descs["unknown user"], descs["disabled user"])
	}

	// Not a form, parameters in the URL, not POST.
	req := httptest.NewRequest("POST", login.Path, strings.NewReader(`{"grant_type":"password"}`))
	req.Header.Set("Content-Type", "application/json")
	if a := e.do(t, req); a.status != 400 || a.err.Code != "invalid_request" {
		t.Fatalf("JSON body: %d %s", a.status, a.err.Code)
	}
	req = httptest.NewRequest("POST", login.Path+"?"+pw("dave", davePassword).Encode(), nil)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if a := e.do(t, req); a.status != 400 || a.err.Code != "invalid_request" || !strings.Contains(a.err.Description, "never in the URL") {
		t.Fatalf("query string: %d %s", a.status, a.err.Code)
	}
	if a := e.do(t, httptest.NewRequest("GET", login.Path, nil)); a.status != 405 {
		t.Fatalf("GET: %d", a.status)
	}
}

// TestUnknownUserTakesAsLong: an unknown user is compared against a dummy
// hash, so it costs a bcrypt comparison like a wrong password.
func TestUnknownUserTakesAsLong(t *testing.T) {
	e := newEndpoint(t, state(t, ""), func(c *login.Config) { c.LockoutAfter = 100 })
	fastest := func(user string) time.Duration {
		best := time.Hour
		for range 3 {
			t0 := time.Now()
			e.post(t, pw(user, "wrong-password"))
			best = min(best, time.Since(t0))
		}
		return best
	}
	known, unknown := fastest("dave"), fastest("mallory")
	t.Logf("wrong password %s, unknown user %s", known, unknown)
	if unknown < known/4 {
		t.Fatalf("an unknown user is answered in %s, a known one in %s: the time tells whether the user exists", unknown, known)
	}
}

// TestClientCredentials: HTTP Basic or form; the token carries the owner
// as subject, the client id, and the user's scopes within allowed_scope.
func TestClientCredentials(t *testing.T) {
	e := newEndpoint(t, state(t, ""), withIssuer)
	for _, how := range []string{"basic", "form"} {
		t.Run(how, func(t *testing.T) {
			f := url.Values{"grant_type": {"client_credentials"}}
			var a answer
			if how == "basic" {
				a = e.post(t, f, "robot:"+url.QueryEscape(robotSecret))
			} else {
				f.Set("client_id", "robot")
				f.Set("client_secret", robotSecret)
				a = e.post(t, f)
			}
			if a.status != 200 {
				t.Fatalf("%d %s", a.status, a.body)
			}
			p := verify(t, a.token.AccessToken)
			if p.Subject != "rob" || p.ClientID != "robot" || !slices.Equal(scopes(p), []string{"user/Observation.cruds"}) {
				t.Fatalf("principal %+v %v", p, scopes(p))
			}
		})
	}
	f := url.Values{"grant_type": {"client_credentials"}, "client_id": {"robot"}, "client_secret": {robotSecret}}
	if a := e.post(t, f, "robot:"+robotSecret); a.status != 400 || a.err.Code != "invalid_request" {
		t.Fatalf("credentials twice: %d %s", a.status, a.err.Code)
	}
}

// TestLockout: after LockoutAfter failures of a name within LockoutFor,
// even the right password is refused until LockoutFor has passed; an
// unknown name is locked the same way (so locking tells nothing); other
// names are not affected.
func TestLockout(t *testing.T) {
	e := newEndpoint(t, state(t, ""))
	for _, user := range []string{"dave", "mallory"} {
		for i := range 3 {
			if a := e.post(t, pw(user, "guess-"+string(rune('a'+i)))); a.err.Code != "invalid_grant" {
				t.Fatalf("%s attempt %d: %d %s", user, i, a.status, a.err.Code)
			}
		}
		a := e.post(t, pw(user, davePassword))
		if a.status != 400 || a.err.Code != "invalid_grant" || !strings.Contains(a.err.Description, "too many failed attempts") || a.header.Get("Retry-After") != "60" {
			t.Fatalf("%s after 3 failures: %d %s %q Retry-After %q", user, a.status, a.err.Code, a.err.Description, a.header.Get("Retry-After"))
		}
	}
	if a := e.post(t, pw("ann", davePassword)); a.status != 200 {
		t.Fatalf("another user is locked out too: %d %s", a.status, a.body)
	}
	e.advance(61 * time.Second)
	if a := e.post(t, pw("dave", davePassword)); a.status != 200 {
		t.Fatalf("dave after the lockout: %d %s", a.status, a.body)
	}
	// Failures spread wider than the window never lock.
	for range 5 {
		e.post(t, pw("dave", "wrong"))
		e.advance(40 * time.Second)
		e.post(t, pw("dave", davePassword)) // a success forgets the failures
	}
	if a := e.post(t, pw("dave", davePassword)); a.status != 200 {
		t.Fatalf("dave locked by failures a success had forgotten: %d %s", a.status, a.body)
	}
	// Clients lock the same way, with invalid_client.
	for range 3 {
		e.post(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {"robot"}, "client_secret": {"x"}})
	}
	a := e.post(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {"robot"}, "client_secret": {robotSecret}})
	if a.status != 401 || !strings.Contains(a.err.Description, "too many failed attempts") {
		t.Fatalf("client after 3 failures: %d %s", a.status, a.body)
	}
}

// TestTokenLifetime: 15 minutes by default, Config.TTL when set, never
// longer than the effective security settings' session lifetime.
func TestTokenLifetime(t *testing.T) {
	ttl := func(st configsync.State, d time.Duration) int {
		e := newEndpoint(t, st, func(c *login.Config) { c.TTL = d })
		a := e.post(t, pw("dave", davePassword))
		if a.status != 200 {
			t.Fatalf("%d %s", a.status, a.body)
		}
		return a.token.ExpiresIn
	}
	if got := ttl(state(t, ""), 0); got != 900 {
		t.Fatalf("default ttl %d", got)
	}
	if got := ttl(state(t, ""), time.Hour); got != 3600 {
		t.Fatalf("configured ttl %d", got)
	}
	if got := ttl(state(t, `{"session_lifetime_seconds": 300}`), time.Hour); got != 300 {
		t.Fatalf("ttl with a 5 min session lifetime %d", got)
	}
}

// TestNotConfigured: without a signing key the endpoint answers 501 saying
// what to configure.
func TestNotConfigured(t *testing.T) {
	e := newEndpoint(t, state(t, ""), func(c *login.Config) {
		c.Key = access.Key{}
		c.NotConfigured = "set access.signing_key in the cluster file"
	})
	a := e.post(t, pw("dave", davePassword))
	if a.status != http.StatusNotImplemented || a.err.Code != login.ErrNotConfigured || !strings.Contains(a.err.Description, "access.signing_key") {
		t.Fatalf("%d %s %q", a.status, a.err.Code, a.err.Description)
	}
	// A key that cannot sign is refused at New.
	_, err := login.New(login.Config{Key: access.Key{ID: "short", Alg: access.HS256, Secret: []byte("short")}, State: func() configsync.State { return nil }})
	if err == nil {
		t.Fatal("a 5-byte HS256 secret was accepted as a signing key")
	}
}

// TestNoSecretsInLogOrAudit: every attempt is logged and audited, and no
// password, secret, hash or token appears in either.
func TestNoSecretsInLogOrAudit(t *testing.T) {
	st := state(t, "")
	e := newEndpoint(t, st)
	good := e.post(t, pw("dave", davePassword))
	e.post(t, pw("dave", "Tr0ub4dor&3"))
	e.post(t, pw("mallory", "hunter2-hunter2"))
	e.post(t, url.Values{"grant_type": {"client_credentials"}}, "robot:"+robotSecret)
	e.post(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {"robot"}, "client_secret": {"wrong-secret-xyz"}})
	if good.status != 200 {
		t.Fatal(good.body)
	}
	var users []configsync.User
	json.Unmarshal(st[configsync.Users].Doc, &users)
	secrets := []string{davePassword, "Tr0ub4dor&3", "hunter2-hunter2", robotSecret, "wrong-secret-xyz", good.token.AccessToken, "$2a$"}
	for _, u := range users {
		secrets = append(secrets, u.PasswordHash)
	}
	audit, _ := json.Marshal(e.attempts)
	logs := e.log.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds a secret %.8s…", s)
		}
		if strings.Contains(string(audit), s) {
			t.Errorf("the audit holds a secret %.8s…", s)
		}
	}
	if n := strings.Count(logs, `"msg":"login"`); n != 5 || len(e.attempts) != 5 {
		t.Fatalf("%d log lines and %d audit records for 5 attempts:\n%s", n, len(e.attempts), logs)
	}
	want := []struct {
		user, client string
		status       int
		detail       string
	}{
		{"dave", "", 200, ""},
		{"dave", "", 400, "invalid_grant: wrong password"},
		{"mallory", "", 400, "invalid_grant: unknown user"},
		{"rob", "robot", 200, ""},
		{"rob", "robot", 401, "invalid_client: wrong secret"},
	}
	for i, w := range want {
		a := e.attempts[i]
		if a.User != w.user || a.ClientID != w.client || a.Status != w.status || a.Detail != w.detail || a.Address == "" {
			t.Errorf("attempt %d: %+v, want %+v", i, a, w)
		}
	}
	t.Logf("log:\n%s", logs)
}
