package ctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The apply-change document is prepared in ctl: the clear-text password
// never reaches the workflow input (Temporal's history).
func TestApplyChangeInputHashesPasswords(t *testing.T) {
	f := filepath.Join(t.TempDir(), "users.json")
	os.WriteFile(f, []byte(`[{"name":"dave","password":"correct-horse-battery","enabled":true}]`), 0o600)
	in, err := applyChangeInput([]string{"apply-change", "records", "users", f}, "ops", 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(in.Doc)
	if strings.Contains(doc, "correct-horse") || !strings.Contains(doc, `"password_hash":"$2a$`) {
		t.Fatalf("document in the workflow input: %s", doc)
	}
	if in.IfVersion == nil || *in.IfVersion != 3 || in.Tier != "records" || in.Category != "users" || in.By != "ops" {
		t.Fatalf("input %+v", in)
	}
	if _, err := applyChangeInput([]string{"apply-change", "records", "config", f}, "", -1, 0); err == nil {
		t.Fatal("an unknown category was accepted")
	}
	if in, err := applyChangeInput([]string{"apply-change", "records", "roles"}, "", -1, 0); err != nil || in.Doc != nil || in.IfVersion != nil {
		t.Fatalf("without a file: %+v %v", in, err)
	}
}

func TestWorkflowTier(t *testing.T) {
	for id, want := range map[string]string{
		"tier/records/topology":              "records",
		"tier/records2/apply-change/users":   "records2",
		"tier/records/config-sync":           "records",
		"temporal-sys-tq-scanner-workflow-1": "",
		"tier/":                              "",
	} {
		if got := WorkflowTier(id); got != want {
			t.Errorf("WorkflowTier(%q) = %q, want %q", id, got, want)
		}
	}
}
