package node

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/fhir/access"
	"github.com/tandemhealth/tandem/mirror/cluster"
)

// TestStandaloneFHIRWithTokens: a standalone node with an access section
// serves /fhir to bearer tokens only, and audits.
func TestStandaloneFHIRWithTokens(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "k1.key")
	if err := os.WriteFile(keyPath, []byte("0123456789abcdef0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Tier: "t", Member: "a", DataDir: filepath.Join(dir, "data"),
		Access: cluster.Access{Keys: []cluster.AccessKey{{KID: "k1", Alg: "HS256", Path: keyPath}}}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	srv := httptest.NewServer(n.Handler())
	defer srv.Close()
	defer n.closeFHIR(context.Background())
	_, keys, err := LoadAccess(cfg.Access)
	if err != nil {
		t.Fatal(err)
	}
	mint := func(role, patient string) string {
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
	do := func(method, path, tok, body string, want int) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/fhir+json")
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d: %.300s", method, path, resp.StatusCode, want, b)
		}
	}
	do("PUT", "/fhir/Patient/p1", mint("clinician", ""), `{"resourceType":"Patient","id":"p1"}`, http.StatusCreated)
	do("GET", "/fhir/Patient/p1", mint("patient-app", "p1"), "", http.StatusOK)
	do("GET", "/fhir/Patient/p1", mint("patient-app", "p2"), "", http.StatusNotFound)
	do("GET", "/fhir/Patient/p1", "", "", http.StatusUnauthorized)
	do("GET", "/fhir/AuditEvent?patient=p1", mint("admin", ""), "", http.StatusOK)
}
