package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests run the real binary as separate processes.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tandem-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "tandem")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var temporalOnce struct {
	sync.Once
	err error
}

// needTemporal builds the embedded Temporal server's binary beside the
// test binary (where `tandem temporal` looks for it), once, and only for
// the tests that start it: linking the Temporal server takes minutes here.
func needTemporal(t testing.TB) {
	t.Helper()
	temporalOnce.Do(func() {
		out, err := exec.Command("go", "build", "-ldflags=-s -w", "-o", filepath.Join(filepath.Dir(binary), "tandem-temporal"), "../tandem-temporal").CombinedOutput()
		if err != nil {
			temporalOnce.err = fmt.Errorf("build tandem-temporal: %v\n%s", err, out)
		}
	})
	if temporalOnce.err != nil {
		t.Fatal(temporalOnce.err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// devBasePort finds a base port for `tandem dev --port`: dev listens on
// base+0 … base+122, so the whole block must be free, and it is taken below
// Linux's ephemeral range (32768+) so that other tests' outgoing
// connections and listeners on :0 cannot land in it while dev starts.
func devBasePort(t *testing.T) int {
	t.Helper()
	const span = 130
	for try := 0; try < 200; try++ {
		base := 20000 + rand.IntN(12000-span)
		free := true
		for p := base; p < base+span && free; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no free block of ports for tandem dev")
	return 0
}

func waitHTTP(t *testing.T, url string) *http.Response {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			return resp
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never answered", url)
	return nil
}

func waitExit(t *testing.T, cmd *exec.Cmd, limit time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		cmd.Process.Kill()
		t.Fatalf("%s did not stop within %s", cmd.Path, limit)
		return nil
	}
}

func TestNodeServesStatusAndStopsCleanlyOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	cfg := filepath.Join(dir, "node.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("tier: records\nmember: a\nlisten: 127.0.0.1:%d\ndata_dir: %s\n", port, filepath.Join(dir, "data"))), 0o600)

	for round := range 2 { // the second start reopens the same journal and store
		var logs bytes.Buffer
		cmd := exec.Command(binary, "node", "--config", cfg)
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		resp := waitHTTP(t, base+"/healthz")
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("healthz %d", resp.StatusCode)
		}
		resp = waitHTTP(t, base+"/mirror/status")
		var st struct {
			Tier, Member, Role, Status string
			Epoch                      uint64
			PID                        int
			Journal                    struct {
				LastLSN    uint64 `json:"last_lsn"`
				DurableLSN uint64 `json:"durable_lsn"`
			} `json:"journal"`
			Databases []struct {
				Name   string
				Status string
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if st.Tier != "records" || st.Member != "a" || st.Status != "primary" || st.Epoch != 1 || st.PID != cmd.Process.Pid {
			t.Fatalf("round %d: status %+v (pid %d)", round, st, cmd.Process.Pid)
		}
		if st.Journal.LastLSN != 1 || st.Journal.DurableLSN != 1 {
			t.Fatalf("round %d: journal %+v, want the epoch marker at LSN 1 only", round, st.Journal)
		}
		if len(st.Databases) != 3 {
			t.Fatalf("databases %+v", st.Databases)
		}

		resp = waitHTTP(t, base+"/metrics")
		metrics, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{
			`tandem_journal_durable_lsn{member="a",tier="records"} 1`,
			`tandem_store_applied_lsn{database="fhir",member="a",tier="records"} 0`,
			`tandem_healthy{member="a",tier="records"} 1`,
		} {
			if !strings.Contains(string(metrics), want) {
				t.Fatalf("metrics lack %q", want)
			}
		}

		cmd.Process.Signal(syscall.SIGTERM)
		if err := waitExit(t, cmd, 15*time.Second); err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
		var sawStopped bool
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line is not JSON: %q", line)
			}
			if rec["msg"] == "node stopped" {
				sawStopped = true
			}
		}
		if !sawStopped {
			t.Fatalf("no 'node stopped' log line:\n%s", logs.String())
		}
	}
}

func TestNodeRejectsBadConfigNamingTheField(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "node.yaml")
	os.WriteFile(cfg, []byte("tier: records\nmember: a\ndata_dir: /tmp/x\nrole: leader\n"), 0o600)
	out, err := exec.Command(binary, "node", "--config", cfg).CombinedOutput()
	if err == nil {
		t.Fatal("started with a bad role")
	}
	if !strings.Contains(string(out), "field role") {
		t.Fatalf("error does not name the field: %s", out)
	}
}

// TestDevStartsAndStopsEverything: `tandem dev` starts the arbiter, a
// failover pair and their agents, lists them in endpoints.json, answers
// through the CA it names, and on Ctrl-C stops every process.
func TestDevStartsAndStopsEverything(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	needTemporal(t)
	dir := t.TempDir()
	port := devBasePort(t)
	// A one-bundle sample for --load-sample (the Synthea set takes longer).
	sample := t.TempDir()
	if err := os.WriteFile(filepath.Join(sample, "one.json"), []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:6f1c1d2e-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	t0 := time.Now()
	cmd := exec.Command(binary, "dev", "--dir", dir, "--port", fmt.Sprint(port), "--load-sample", "--sample-dir", sample)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var ep struct {
		CA        string
		FHIR      string
		Monitor   string
		Processes []struct {
			Name, Kind, URL string
			PID             int
		}
		Tokens     map[string]string
		TemporalUI string `json:"temporal_ui"`
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		data, err := os.ReadFile(filepath.Join(dir, "endpoints.json"))
		if err == nil && json.Unmarshal(data, &ep) == nil && len(ep.Processes) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no endpoints.json; output:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	kinds := map[string]int{}
	for _, p := range ep.Processes {
		kinds[p.Kind]++
		if syscall.Kill(p.PID, 0) != nil {
			t.Fatalf("%s (pid %d) from endpoints.json is not running", p.Name, p.PID)
		}
	}
	if kinds["arbiter"] != 1 || kinds["node"] != 3 || kinds["agent"] != 2 || kinds["gateway"] != 1 || kinds["redis"] != 1 {
		t.Fatalf("processes %v, want an arbiter, three nodes (a failover pair and a DR async), two agents, a gateway and Redis", kinds)
	}
	caPEM, err := os.ReadFile(ep.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	primaries := 0
	for _, p := range ep.Processes {
		if p.Kind != "node" {
			continue
		}
		var st struct{ Status string }
		for i := 0; ; i++ {
			resp, err := client.Get(p.URL + "/mirror/status")
			if err != nil {
				t.Fatal(err)
			}
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.Status == "primary" || st.Status == "backup" || st.Status == "async" || i > 100 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if st.Status == "primary" {
			primaries++
			checkDevTokens(t, client, p.URL, ep.Tokens)
		}
	}
	if primaries != 1 {
		t.Fatalf("%d primaries", primaries)
	}
	// The arbiter's and the agents' operations endpoints (arbiter.http,
	// agent.http) with the CA alone.
	for _, ops := range []struct{ addr, series string }{
		{fmt.Sprintf("127.0.0.1:%d", port+98), `tandem_arbiter_seeded{tier="records"} 1` + "\n"},
		{fmt.Sprintf("127.0.0.1:%d", port+3), `tandem_agent_member_up{member="a",tier="records"} 1` + "\n"},
		{fmt.Sprintf("127.0.0.1:%d", port+4), `tandem_agent_member_up{member="b",tier="records"} 1` + "\n"},
		// the worker: the Temporal SDK's counters, once it has polled
		{fmt.Sprintf("127.0.0.1:%d", port+95), `namespace="default",task_queue="tandem-admin",worker_type="none",workflow_type="MirrorSetup"}`},
	} {
		var body []byte
		for i := 0; ; i++ {
			resp, err := client.Get("https://" + ops.addr + "/metrics")
			if err != nil {
				t.Fatalf("operations endpoint %s: %v", ops.addr, err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), ops.series) || i > 50 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(string(body), ops.series) {
			t.Fatalf("https://%s/metrics has no %q:\n%s", ops.addr, ops.series, body)
		}
	}
	// The Temporal Web UI dev printed lists the MirrorSetup it ran, read
	// from the embedded server.
	if ep.TemporalUI == "" || !strings.Contains(out.String(), ep.TemporalUI) {
		t.Fatalf("dev did not print the Temporal Web UI %q:\n%s", ep.TemporalUI, out.String())
	}
	for i := 0; ; i++ {
		resp, err := http.Get(ep.TemporalUI + "/api/v1/namespaces/default/workflows")
		if err != nil {
			t.Fatalf("Temporal Web UI: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && strings.Contains(string(body), `"MirrorSetup"`) {
			break
		}
		if i > 100 {
			t.Fatalf("Temporal Web UI lists no MirrorSetup workflow: HTTP %d %s", resp.StatusCode, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port+96)); err != nil || resp.StatusCode != 200 {
		t.Fatalf("Temporal server metrics: %v %+v", err, resp)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), `service_name="frontend"`) {
			t.Fatalf("Temporal server metrics have no frontend series:\n%.2000s", body)
		}
	}
	if resp, err := http.Get(ep.TemporalUI + "/"); err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("Temporal Web UI page: %v %+v", err, resp)
	} else {
		resp.Body.Close()
	}
	// FHIR through the gateway, at the base URL dev printed.
	if !strings.Contains(out.String(), ep.FHIR) || ep.FHIR == "" {
		t.Fatalf("dev did not print the gateway's FHIR base URL %q:\n%s", ep.FHIR, out.String())
	}
	req, _ := http.NewRequest("POST", ep.FHIR+"/Patient", strings.NewReader(`{"resourceType":"Patient","active":true}`))
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+ep.Tokens["clinician"])
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create through the dev gateway: HTTP %d", resp.StatusCode)
	}
	// The Mirror Monitor on the gateway: admin tokens only; it shows the
	// tier with its primary.
	if ep.Monitor == "" || !strings.Contains(out.String(), ep.Monitor+"#token=") {
		t.Fatalf("dev did not print the monitor link %q:\n%s", ep.Monitor, out.String())
	}
	for _, role := range []string{"clinician", "admin"} {
		var st struct {
			Tiers []struct{ Name, Primary string }
		}
		for i := 0; ; i++ {
			req, _ := http.NewRequest("GET", ep.Monitor+"api/state", nil)
			req.Header.Set("Authorization", "Bearer "+ep.Tokens[role])
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if role == "clinician" {
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("monitor with a clinician token: HTTP %d", resp.StatusCode)
				}
				break
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("monitor with the admin token: HTTP %d", resp.StatusCode)
			}
			if len(st.Tiers) == 1 && st.Tiers[0].Primary != "" || i > 50 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if role == "admin" && (len(st.Tiers) != 1 || st.Tiers[0].Name != "records" || st.Tiers[0].Primary == "") {
			t.Fatalf("monitor state %+v", st)
		}
	}
	// The sample was loaded through the gateway with a progress bar.
	for !strings.Contains(out.String(), "Ready.") {
		if time.Since(t0) > 4*time.Minute {
			t.Fatalf("dev never said Ready:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("dev: command to Ready in %s (cold, including MirrorSetup and the sample)", time.Since(t0).Round(100*time.Millisecond))
	if !strings.Contains(out.String(), "Loaded 1 bundles (1 resources)") || !strings.Contains(out.String(), "] 100%") {
		t.Fatalf("sample not loaded:\n%s", out.String())
	}

	cmd.Process.Signal(os.Interrupt)
	if err := waitExit(t, cmd, 30*time.Second); err != nil {
		t.Fatalf("dev exit: %v\n%s", err, out.String())
	}
	for _, p := range ep.Processes {
		for range 50 {
			if syscall.Kill(p.PID, 0) != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if syscall.Kill(p.PID, 0) == nil {
			t.Fatalf("%s (pid %d) still running after dev stopped", p.Name, p.PID)
		}
	}
	if !strings.Contains(out.String(), "ctl status") {
		t.Fatalf("dev did not print how to use it:\n%s", out.String())
	}
}

// checkDevTokens: the tokens tandem dev wrote work on the primary's /fhir
// and admin API over HTTPS without a client certificate, each within its
// role.
func checkDevTokens(t *testing.T, client *http.Client, base string, tokens map[string]string) {
	t.Helper()
	for _, role := range []string{"clinician", "patient-app", "admin"} {
		if tokens[role] == "" {
			t.Fatalf("endpoints.json has no %s token: %v", role, tokens)
		}
	}
	do := func(method, path, role, body string, want int) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/fhir+json")
		}
		if role != "" {
			req.Header.Set("Authorization", "Bearer "+tokens[role])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s as %q: %d, want %d: %.300s", method, path, role, resp.StatusCode, want, b)
		}
	}
	do("PUT", "/fhir/Patient/dev-patient", "clinician", `{"resourceType":"Patient","id":"dev-patient"}`, http.StatusCreated)
	do("PUT", "/fhir/Patient/someone-else", "clinician", `{"resourceType":"Patient","id":"someone-else"}`, http.StatusCreated)
	do("GET", "/fhir/Patient/dev-patient", "patient-app", "", http.StatusOK)
	do("GET", "/fhir/Patient/someone-else", "patient-app", "", http.StatusNotFound)
	do("PUT", "/fhir/Patient/dev-patient", "patient-app", `{"resourceType":"Patient","id":"dev-patient"}`, http.StatusForbidden)
	do("GET", "/fhir/Patient/dev-patient", "", "", http.StatusUnauthorized)
	do("GET", "/admin/hash/fhir", "admin", "", http.StatusOK)
	do("GET", "/admin/hash/fhir", "clinician", "", http.StatusForbidden)
	do("GET", "/fhir/AuditEvent?agent=dev-clinician", "admin", "", http.StatusOK)
	do("GET", "/fhir/AuditEvent", "clinician", "", http.StatusForbidden)
}

// syncBuffer is a bytes.Buffer a child process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDevStartsSeveralTiers: `tandem dev --tiers 2` starts both tiers
// behind the one gateway; a Patient written through /fhir/records2 is read
// back there and is not in the first tier; the monitor shows both tiers
// with a primary; a second start asking for another count is refused.
func TestDevStartsSeveralTiers(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	needTemporal(t)
	dir := t.TempDir()
	port := devBasePort(t)
	var out syncBuffer
	cmd := exec.Command(binary, "dev", "--dir", dir, "--port", fmt.Sprint(port), "--tiers", "2")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var ep struct {
		CA, FHIR, Monitor string
		TierFHIR          map[string]string `json:"tier_fhir"`
		Processes         []struct{ Kind string }
		Tokens            map[string]string
	}
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(out.String(), "Ready.") {
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 90s; output:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	data, err := os.ReadFile(filepath.Join(dir, "endpoints.json"))
	if err != nil || json.Unmarshal(data, &ep) != nil {
		t.Fatalf("endpoints.json: %v", err)
	}
	kinds := map[string]int{}
	for _, p := range ep.Processes {
		kinds[p.Kind]++
	}
	if kinds["node"] != 6 || kinds["agent"] != 4 || kinds["arbiter"] != 1 || kinds["gateway"] != 1 {
		t.Fatalf("processes %v, want six nodes and four agents for two tiers, one arbiter and one gateway", kinds)
	}
	if ep.TierFHIR["records2"] == "" || !strings.Contains(out.String(), ep.TierFHIR["records2"]) {
		t.Fatalf("the second tier's base URL is not printed: %v\n%s", ep.TierFHIR, out.String())
	}
	caPEM, _ := os.ReadFile(ep.CA)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	do := func(method, url, body string) int {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Authorization", "Bearer "+ep.Tokens["clinician"])
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := do("PUT", ep.TierFHIR["records2"]+"/Patient/tier-two", `{"resourceType":"Patient","id":"tier-two"}`); c != http.StatusCreated {
		t.Fatalf("PUT through /fhir/records2: HTTP %d", c)
	}
	if c := do("GET", ep.TierFHIR["records2"]+"/Patient/tier-two", ""); c != http.StatusOK {
		t.Fatalf("read back from records2: HTTP %d", c)
	}
	if c := do("GET", ep.FHIR+"/Patient/tier-two", ""); c != http.StatusNotFound {
		t.Fatalf("the first tier (the default /fhir) answers %d for the second tier's Patient, want 404", c)
	}
	var st struct {
		Tiers []struct{ Name, Primary string }
	}
	for i := 0; ; i++ {
		req, _ := http.NewRequest("GET", ep.Monitor+"api/state", nil)
		req.Header.Set("Authorization", "Bearer "+ep.Tokens["admin"])
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if len(st.Tiers) == 2 && st.Tiers[0].Primary != "" && st.Tiers[1].Primary != "" || i > 50 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(st.Tiers) != 2 || st.Tiers[0].Primary == "" || st.Tiers[1].Primary == "" {
		t.Fatalf("monitor state %+v", st)
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := waitExit(t, cmd, 30*time.Second); err != nil {
		t.Fatalf("dev did not stop cleanly: %v\n%s", err, out.String())
	}
	again, err := exec.Command(binary, "dev", "--dir", dir, "--port", fmt.Sprint(port), "--tiers", "3").CombinedOutput()
	if err == nil || !strings.Contains(string(again), "has 2 tier(s), not the 3 asked for") {
		t.Fatalf("a second start with another tier count: %v\n%s", err, again)
	}
}
