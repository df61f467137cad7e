package node_test

import (
	"context"
	"fmt"
	"github.com/tandemhealth/tandem/services/opshttp/opstest"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tandemhealth/tandem/fhir/access"
	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/services/node"
)

type want struct {
	name   string
	labels []string
	value  float64
}

func check(t *testing.T, who string, fams map[string]*dto.MetricFamily, wants ...want) {
	t.Helper()
	for _, w := range wants {
		if got := opstest.Value(t, fams, w.name, w.labels...); got != w.value {
			t.Errorf("%s: %s%v = %v, want %v", who, w.name, w.labels, got, w.value)
		}
	}
}

// TestStandaloneMetricsCountCommitsAndFHIRRequests: on a standalone node,
// N writes are N observations of tandem_commit_seconds, and each FHIR
// request is timed under its interaction and status class, with no id in
// /metrics.
func TestStandaloneMetricsCountCommitsAndFHIRRequests(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "k1.key")
	if err := os.WriteFile(keyPath, []byte("0123456789abcdef0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	acc := cluster.Access{Keys: []cluster.AccessKey{{KID: "k1", Alg: "HS256", Path: keyPath}}}
	cfg := node.Config{Tier: "t", Member: "solo", DataDir: filepath.Join(dir, "data"), Access: acc}
	cfg.SetDefaults()
	n, err := node.Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	srv := httptest.NewServer(n.Handler())
	defer srv.Close()
	defer node.CloseFHIR(context.Background(), n) // AuditEvents are written before the store closes

	const writes = 7
	for i := range writes {
		if _, err := n.Sequencer().Write(context.Background(), "fhir", func(sequencer.View) ([]journal.Op, error) {
			return []journal.Op{{Kind: journal.OpSet, Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	_, m := opstest.Scrape(t, srv.Client(), srv.URL+"/metrics")
	check(t, "solo", m,
		want{"tandem_commit_seconds", []string{"outcome", "ok"}, writes},
		want{"tandem_commit_seconds", []string{"outcome", "error"}, 0})

	_, keys, err := node.LoadAccess(acc)
	if err != nil {
		t.Fatal(err)
	}
	token := func(role, patient string) string {
		g, err := access.RoleGrant(role, "", patient, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := access.Mint(keys[0], g)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, r := range []struct {
		method, path, token string
		want                int
	}{
		{"PUT", "/fhir/Patient/pid-secret", token("clinician", ""), http.StatusCreated},
		{"GET", "/fhir/Patient/pid-secret", token("patient-app", "pid-secret"), http.StatusOK},
		{"GET", "/fhir/Patient/pid-secret", "", http.StatusUnauthorized},
		{"GET", "/fhir/Patient?name=Doe", token("clinician", ""), http.StatusOK},
	} {
		req, _ := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader(`{"resourceType":"Patient","id":"pid-secret"}`))
		req.Header.Set("Content-Type", "application/fhir+json")
		if r.token != "" {
			req.Header.Set("Authorization", "Bearer "+r.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != r.want {
			t.Fatalf("%s %s: %d, want %d", r.method, r.path, resp.StatusCode, r.want)
		}
	}
	text, m := opstest.Scrape(t, srv.Client(), srv.URL+"/metrics")
	check(t, "solo", m,
		want{"tandem_fhir_request_seconds", []string{"interaction", "update", "code", "2xx"}, 1},
		want{"tandem_fhir_request_seconds", []string{"interaction", "read", "code", "2xx"}, 1},
		want{"tandem_fhir_request_seconds", []string{"interaction", "read", "code", "4xx"}, 1},
		want{"tandem_fhir_request_seconds", []string{"interaction", "search-type", "code", "2xx"}, 1})
	if got := opstest.Value(t, m, "tandem_commit_seconds", "outcome", "ok"); got <= writes {
		t.Errorf("commits %v after the FHIR update, want more than %d", got, writes)
	}
	for _, secret := range []string{"pid-secret", "Doe", "Patient"} {
		if strings.Contains(text, secret) {
			t.Errorf("/metrics contains %q", secret)
		}
	}
}

// TestMirrorMetricsFollowTheTier: on a mirrored tier (arbiter and two
// members in this process, real sockets), the primary's commit histogram
// counts its writes, both members' mirror metrics say what /mirror/status
// says, the policy gate's refusals and approvals are counted, and a planned
// failover counts one promotion of the backup.
func TestMirrorMetricsFollowTheTier(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f, members, stop := startTier(t, t.TempDir(), quiet)
	defer stop()
	creds, err := f.Credentials(node.AdminIdentity)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: creds.ClientConfig("")}}
	a, b := "https://"+f.Tiers[0].Members[0].HTTP, "https://"+f.Tiers[0].Members[1].HTTP
	do := func(method, url, body string, want int) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d: %.300s", method, url, resp.StatusCode, want, got)
		}
	}

	const writes = 5
	for i := range writes {
		do("PUT", fmt.Sprintf("%s/admin/kv/fhir/k%d", a, i), "v", http.StatusOK)
	}
	_, m := opstest.Scrape(t, c, a+"/metrics")
	check(t, "a", m,
		want{"tandem_commit_seconds", []string{"outcome", "ok"}, writes},
		want{"tandem_mirror_status", []string{"status", "primary"}, 1},
		want{"tandem_mirror_status", []string{"status", "backup"}, 0},
		want{"tandem_mirror_transfer_status", []string{"status", "active"}, 1},
		want{"tandem_mirror_transfer_status", []string{"status", "disconnected"}, 0},
		want{"tandem_mirror_lag_records", nil, 0},
		want{"tandem_mirror_behind_seconds", nil, 0},
		want{"tandem_mirror_commit_lsn", nil, opstest.Value(t, m, "tandem_journal_last_lsn")},
		want{"tandem_failovers_total", []string{"reason", "planned-handover"}, 0})
	// Group commit, measured: every write made durable, in no more groups
	// than records and with one fdatasync per group at least.
	groups, records := opstest.Value(t, m, "tandem_journal_commit_groups_total"), opstest.Value(t, m, "tandem_journal_records_durable_total")
	if groups < 1 || records < writes || groups > records || opstest.Value(t, m, "tandem_journal_fdatasyncs_total") < groups {
		t.Errorf("journal counters: %v groups, %v records, %v fdatasyncs after %d writes", groups, records, opstest.Value(t, m, "tandem_journal_fdatasyncs_total"), writes)
	}

	do("PUT", a+"/fhir/Patient/pid-secret", `{"resourceType":"Patient","id":"pid-secret"}`, http.StatusCreated)
	do("GET", a+"/fhir/Patient/pid-secret", "", http.StatusOK)
	text, m := opstest.Scrape(t, c, a+"/metrics")
	check(t, "a", m,
		want{"tandem_fhir_request_seconds", []string{"interaction", "update", "code", "2xx"}, 1},
		want{"tandem_fhir_request_seconds", []string{"interaction", "read", "code", "2xx"}, 1})
	if strings.Contains(text, "pid-secret") {
		t.Error("/metrics contains the resource id")
	}

	// The backup's gate approves an automatic takeover onto it (re-evaluated
	// every 200 ms).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, m = opstest.Scrape(t, c, b+"/metrics")
		if opstest.Value(t, m, "tandem_gate_decisions_total", "decision", "allow", "kind", "automatic_failover") > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b counted no automatic_failover approval")
		}
	}
	check(t, "b", m,
		want{"tandem_mirror_status", []string{"status", "backup"}, 1},
		want{"tandem_mirror_transfer_status", []string{"status", "active"}, 1},
		want{"tandem_gate_decisions_total", []string{"decision", "refuse", "kind", "automatic_failover"}, 0})

	// A policy that does not load refuses the planned failover; the shipped
	// one allows it, and b is promoted.
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "gate.rego"), []byte("package tandem.gate\nthis is not rego\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := members[0].UsePolicyDir(broken); err == nil {
		t.Fatal("a broken policy loaded")
	}
	do("POST", a+"/admin/planned-failover", "", http.StatusConflict)
	if err := members[0].UsePolicyDir("../gate/policies"); err != nil {
		t.Fatal(err)
	}
	do("POST", a+"/admin/planned-failover", "", http.StatusAccepted)
	_, m = opstest.Scrape(t, c, a+"/metrics")
	check(t, "a", m,
		want{"tandem_gate_decisions_total", []string{"decision", "refuse", "kind", "planned_failover"}, 1},
		want{"tandem_gate_decisions_total", []string{"decision", "allow", "kind", "planned_failover"}, 1})
	for deadline := time.Now().Add(20 * time.Second); members[1].Status().Status != "primary"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("b did not take over: %s", members[1].Status().Status)
		}
	}
	_, m = opstest.Scrape(t, c, b+"/metrics")
	check(t, "b", m,
		want{"tandem_failovers_total", []string{"reason", "planned-handover"}, 1},
		want{"tandem_failovers_total", []string{"reason", "arbiter-grant"}, 0},
		want{"tandem_mirror_status", []string{"status", "primary"}, 1},
		want{"tandem_mirror_status", []string{"status", "backup"}, 0})
	_, m = opstest.Scrape(t, c, a+"/metrics")
	check(t, "a", m, want{"tandem_failovers_total", []string{"reason", "planned-handover"}, 0})
}
