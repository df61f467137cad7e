package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// appClient trusts the cluster's CA and sends no certificate and no
// token of its own: a clinician app before it has logged in.
func (tr *tier) appClient() *http.Client {
	tr.t.Helper()
	creds, err := tr.file.Credentials("operator")
	if err != nil {
		tr.t.Fatal(err)
	}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: creds.Roots, MinVersion: tls.VersionTLS13}}}
}

// loginAnswer is what POST /auth/token answered.
type loginAnswer struct {
	Status      int
	Member      string // X-Tandem-Member, through a gateway
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// login posts a password grant to base + /auth/token (a gateway, or a
// member's https://HTTP address).
func (tr *tier) login(base, user, password string) loginAnswer {
	tr.t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}}
	resp, err := tr.appClient().Post(base+"/auth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		tr.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := loginAnswer{Status: resp.StatusCode, Member: resp.Header.Get("X-Tandem-Member")}
	if err := json.Unmarshal(b, &a); err != nil {
		tr.t.Fatalf("POST %s/auth/token: %d %q", base, resp.StatusCode, b)
	}
	return a
}

// fhirGet reads base+path with token and returns the status and body.
func (tr *tier) fhirGet(base, path, token string) (int, string) {
	tr.t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := tr.appClient().Do(req)
	if err != nil {
		tr.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (tr *tier) memberURL(name string) string {
	m, _ := tr.file.Tiers[0].Member(name)
	return "https://" + m.HTTP
}

// TestLoginThroughGatewayAcrossFailover: a user added with `tandem ctl
// config user add --password` and applied logs in through the gateway,
// reads FHIR with the token; after a planned failover the same login at
// the same address is answered by the new primary, and its token works. A
// wrong password is 400 invalid_grant; every member (the backup too)
// answers logins; the attempts are AuditEvents.
func TestLoginThroughGatewayAcrossFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t)
	base := tr.startGateway("gateway", startRedis(t))
	const password = "correct-horse-battery"
	tr.mustCtl("config", "user", "add", "records", "dave", "--password", password, "--role", "clinician")
	tr.mustCtl("config", "apply")
	for _, m := range []string{"a", "b"} {
		tr.waitFor(m+" enforces dave", 10*time.Second, func() bool { ok, v := tr.usersAligned(m); return ok && v == 1 })
	}

	// Log in through the gateway: a answers; the token reads FHIR.
	a := tr.login(base, "dave", password)
	if a.Status != 200 || a.Member != "records/a" || a.TokenType != "Bearer" || a.ExpiresIn != 900 || !strings.Contains(a.Scope, "user/*.cruds") {
		t.Fatalf("login through the gateway: %d %s %s %q %d", a.Status, a.Member, a.Error, a.Scope, a.ExpiresIn)
	}
	req, _ := http.NewRequest("PUT", base+"/fhir/Patient/login-p1", strings.NewReader(`{"resourceType":"Patient","id":"login-p1"}`))
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+a.AccessToken)
	resp, err := tr.appClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("dave's create: %d", resp.StatusCode)
	}
	if code, body := tr.fhirGet(base, "/fhir/Patient", a.AccessToken); code != 200 || !strings.Contains(body, "login-p1") {
		t.Fatalf("GET /fhir/Patient with dave's token: %d %.300s", code, body)
	}
	t.Logf("dave logged in through the gateway (answered by %s, scope %q) and read /fhir/Patient", a.Member, a.Scope)

	bad := tr.login(base, "dave", "Tr0ub4dor&3")
	if bad.Status != 400 || bad.Error != "invalid_grant" || bad.AccessToken != "" {
		t.Fatalf("wrong password through the gateway: %+v", bad)
	}
	if nobody := tr.login(base, "mallory", password); nobody.Status != 400 || nobody.Description != bad.Description {
		t.Fatalf("an unknown user is answered differently: %+v vs %+v", nobody, bad)
	}

	// The primary audits both attempts (group-committed within 1 s).
	tr.waitLoginAudit(base, "dave", 2)

	// Any member answers: the backup logs dave in with its own effective
	// state.
	if direct := tr.login(tr.memberURL("b"), "dave", password); direct.Status != 200 {
		t.Fatalf("login at the backup b: %+v", direct)
	}
	// b cannot journal: it forwards the attempt's AuditEvent to the
	// primary a, which stores it naming b.
	if body := tr.waitLoginAudit(base, "dave", 3); !strings.Contains(body, `"tandem member b"`) {
		t.Fatalf("the login at the backup b is not audited as served by b:\n%.3000s", body)
	}

	// Planned failover a -> b, then the same login at the same address.
	if err := tr.client.Do(context.Background(), "POST", "a", "/admin/planned-failover", nil, nil); err != nil {
		t.Fatal(err)
	}
	tr.waitFor("b primary, a backup, epoch 2", 30*time.Second, func() bool {
		return tr.status("b") == "primary" && tr.status("a") == "backup" && tr.epoch("b") == 2
	})
	tr.waitFor("the gateway routes to b", 10*time.Second, func() bool { p, e := tr.gatewayView(base); return p == "b" && e == 2 })
	a2 := tr.login(base, "dave", password)
	if a2.Status != 200 || a2.Member != "records/b" {
		t.Fatalf("login through the gateway after the failover: %d %s %s", a2.Status, a2.Member, a2.Error)
	}
	if code, body := tr.fhirGet(base, "/fhir/Patient/login-p1", a2.AccessToken); code != 200 {
		t.Fatalf("GET /fhir/Patient/login-p1 with the new primary's token: %d %.300s", code, body)
	}
	t.Logf("after the failover dave logged in again through the gateway (answered by %s) and read FHIR", a2.Member)

	// The same with `tandem login`, the password on stdin.
	cmd := exec.Command(binary, "login", "--gateway", base, "--user", "dave", "--cacert", filepath.Join(tr.file.TLS.DevCADir, "ca.pem"), "--json")
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.Output()
	var cli loginAnswer
	if err != nil || json.Unmarshal(out, &cli) != nil || cli.AccessToken == "" {
		t.Fatalf("tandem login: %v %q", err, out)
	}
	if code, _ := tr.fhirGet(base, "/fhir/Patient/login-p1", cli.AccessToken); code != 200 {
		t.Fatalf("tandem login's token: %d", code)
	}
	cmd = exec.Command(binary, "login", "--gateway", base, "--user", "dave", "--cacert", filepath.Join(tr.file.TLS.DevCADir, "ca.pem"))
	cmd.Stdin = strings.NewReader("Tr0ub4dor&3\n")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "invalid_grant") {
		t.Fatalf("tandem login with a wrong password: %v %q", err, out)
	}
	if bad := tr.login(base, "dave", "Tr0ub4dor&3"); bad.Status != 400 || bad.Error != "invalid_grant" {
		t.Fatalf("wrong password after the failover: %+v", bad)
	}

	// The attempts at the primaries are AuditEvents (stored by a, mirrored
	// to b, then by b).
	body := tr.waitLoginAudit(base, "dave", 4)
	for _, secret := range []string{password, "Tr0ub4dor&3", a.AccessToken, "$2a$"} {
		if strings.Contains(body, secret) {
			t.Fatalf("the audit holds a secret %.8s…", secret)
		}
	}
	t.Logf("login AuditEvents of dave through the gateway: %d", strings.Count(body, `"110122"`))
}

// waitLoginAudit waits until the AuditEvents searchable through the
// gateway hold at least n login attempts of user, one of them a wrong
// password, and returns the search's answer.
func (tr *tier) waitLoginAudit(base, user string, n int) string {
	tr.t.Helper()
	admin := tr.token("admin")
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := tr.fhirGet(base, "/fhir/AuditEvent?agent="+user, admin)
		if code == 200 && strings.Count(body, `"110122"`) >= n && strings.Contains(body, "invalid_grant: wrong password") {
			return body
		}
		if time.Now().After(deadline) {
			tr.t.Fatalf("%d login attempts of %s are not audited: %d %.2000s", n, user, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
