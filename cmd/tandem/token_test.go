package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/services/node"
)

// TestTokenCommand: tandem token mints a token the cluster's keys verify,
// with the role's scopes and the patient context.
func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k.key")
	os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef0123\n"), 0o600)
	data, err := os.ReadFile("../../deploy/examples/cluster-dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(data), "access:")
	clusterFile := filepath.Join(dir, "cluster.yaml")
	body := string(data[:i]) + "access:\n  issuer: tandem-test\n  keys:\n    - {kid: k, alg: HS256, path: " + key + "}\n"
	if err := os.WriteFile(clusterFile, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := cluster.Load(clusterFile)
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := node.LoadAccess(f.Access)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runToken([]string{"--cluster", clusterFile, "--role", "patient-app", "--patient", "p7", "--ttl", "5m"}, &out); err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if p.Patient != "p7" || p.Admin || len(p.Scopes) != 1 || p.Scopes[0].String() != "patient/*.rs" {
		t.Fatalf("principal %+v", p)
	}
	out.Reset()
	if err := runToken([]string{"--cluster", clusterFile, "--role", "admin"}, &out); err != nil {
		t.Fatal(err)
	}
	if p, err = v.Verify(strings.TrimSpace(out.String())); err != nil || !p.Admin {
		t.Fatalf("admin token: %+v %v", p, err)
	}
	for _, args := range [][]string{
		{"--cluster", clusterFile, "--role", "patient-app"},
		{"--cluster", clusterFile, "--role", "root"},
		{"--cluster", clusterFile, "--role", "admin", "--kid", "nope"},
		{"--role", "admin"},
	} {
		if err := runToken(args, &out); err == nil {
			t.Errorf("tandem token %v: accepted", args)
		}
	}
}
