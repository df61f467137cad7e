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
		f, err := cluster.Load(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if len(f.Access.Keys) == 0 {
			t.Errorf("%s: no access section: the example must show how tokens are verified", p)
		}
	}
	c, err := node.LoadConfig("examples/node.yaml")
	if err != nil {
		t.Errorf("examples/node.yaml: %v", err)
	} else if len(c.Access.Keys) == 0 {
		t.Error("examples/node.yaml: no access section")
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
