package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigDefaults(t *testing.T) {
	c, err := LoadConfig(writeFile(t, "tier: records\nmember: a\ndata_dir: /tmp/x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || c.Role != "failover" || c.Journal.SegmentSize != DefaultSegmentSize ||
		c.LogLevel != "info" || strings.Join(c.Databases, ",") != "fhir,audit,system" {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestLoadConfigExampleFile(t *testing.T) {
	if _, err := LoadConfig("../../deploy/examples/node.yaml"); err != nil {
		t.Fatalf("the shipped example does not load: %v", err)
	}
}

// TestLoadConfigNamesTheField: every bad file fails with the field named.
func TestLoadConfigNamesTheField(t *testing.T) {
	base := "tier: records\nmember: a\ndata_dir: /tmp/x\n"
	cases := []struct{ name, body, field string }{
		{"missing tier", "member: a\ndata_dir: /d\n", "field tier"},
		{"bad member", "tier: t\nmember: A B\ndata_dir: /d\n", "field member"},
		{"bad role", base + "role: leader\n", "field role"},
		{"bad listen", base + "listen: nowhere\n", "field listen"},
		{"no data dir", "tier: t\nmember: a\n", "field data_dir"},
		{"local mirrored", base + "databases: [fhir, local]\n", "field databases[1]"},
		{"duplicate db", base + "databases: [fhir, fhir]\n", "field databases[1]"},
		{"tiny segments", base + "journal:\n  segment_size: 10\n", "field journal.segment_size"},
		{"bad level", base + "log_level: loud\n", "field log_level"},
		{"unknown key", base + "lisen: 127.0.0.1:1\n", "lisen"},
		{"wrong type", base + "journal:\n  segment_size: big\n", "segment_size"},
		{"access alg", base + "access:\n  keys:\n    - {kid: k, alg: none, path: /k}\n", "field access.keys[0].alg"},
		{"access unknown key", base + "access:\n  keys:\n    - {kid: k, alg: HS256, file: /k}\n", "field access.keys[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(writeFile(t, tc.body))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name %q", err, tc.field)
			}
		})
	}
}
