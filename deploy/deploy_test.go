// Package deploy holds what operators install: systemd units and example
// cluster and node files. Its test checks that every file here still
// matches the binary's flags and the configuration schema.
package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/services/node"
)

func TestExampleFilesLoad(t *testing.T) {
	clusters, _ := filepath.Glob("examples/cluster-*.yaml")
	if len(clusters) == 0 {
		t.Fatal("no example cluster files")
	}
	for _, p := range clusters {
		if _, err := cluster.Load(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := node.LoadConfig("examples/node.yaml"); err != nil {
		t.Errorf("examples/node.yaml: %v", err)
	}
}

func TestSystemdUnitsUseRealCommands(t *testing.T) {
	units, _ := filepath.Glob("systemd/*.service")
	if len(units) < 3 {
		t.Fatalf("systemd units: %v", units)
	}
	want := map[string]string{
		"tandem-node@.service":   "tandem node --cluster /etc/tandem/cluster.yaml --member %i",
		"tandem-agent@.service":  "tandem agent --cluster /etc/tandem/cluster.yaml --member %i",
		"tandem-arbiter.service": "tandem arbiter --cluster /etc/tandem/cluster.yaml",
		"tandem-gateway.service": "tandem gateway --cluster /etc/tandem/cluster.yaml",
	}
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		cmd, ok := want[filepath.Base(u)]
		if !ok {
			t.Errorf("%s: no expectation for this unit", u)
			continue
		}
		if !strings.Contains(string(data), "ExecStart=/usr/local/bin/"+cmd) {
			t.Errorf("%s does not run %q", u, cmd)
		}
		for _, section := range []string{"[Unit]", "[Service]", "[Install]"} {
			if !strings.Contains(string(data), section) {
				t.Errorf("%s lacks %s", u, section)
			}
		}
	}
}
