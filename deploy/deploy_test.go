// Package deploy holds what operators install: systemd units and example
// cluster and node files. Its test checks that every file here still
// matches the binary's flags and the configuration schema.
package deploy

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

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
		"tandem-gateway.service": "tandem gateway --cluster /etc/tandem/cluster.yaml",
		"tandem-worker.service":  "tandem worker --cluster /etc/tandem/cluster.yaml --http",
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

// subcommands are the tandem commands deploy files may run.
var subcommands = map[string]bool{"node": true, "agent": true, "arbiter": true, "gateway": true, "temporal": true, "worker": true, "ctl": true, "backup": true}

// TestEveryDeployFileParses reads every YAML file under deploy/ (all
// documents), checks the cluster files embedded in them against the schema,
// and that every container or service runs a real tandem subcommand.
func TestEveryDeployFileParses(t *testing.T) {
	var files []string
	filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return err
	})
	if len(files) < 8 {
		t.Fatalf("only %d YAML files under deploy/", len(files))
	}
	commands := 0
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var doc map[string]any
			if err := dec.Decode(&doc); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s document %d: %v", p, i, err)
			}
			if doc["kind"] == "ConfigMap" {
				d, _ := doc["data"].(map[string]any)
				if c, ok := d["cluster.yaml"].(string); ok {
					if _, err := cluster.Parse([]byte(c)); err != nil {
						t.Errorf("%s: embedded cluster.yaml: %v", p, err)
					}
				}
			}
			walk(doc, func(args []any) {
				if len(args) == 0 {
					return
				}
				first, _ := args[0].(string)
				if !subcommands[first] {
					t.Errorf("%s runs %v: %q is not a tandem subcommand", p, args, first)
				}
				commands++
			})
		}
	}
	if commands < 10 {
		t.Fatalf("found only %d tandem commands in deploy files", commands)
	}
	if _, err := cluster.Load("compose/cluster.yaml"); err != nil {
		t.Error(err)
	}
}

// walk calls fn with every "args" (Kubernetes) or "command" (compose) list
// of a container or service running the tandem image.
func walk(v any, fn func([]any)) {
	switch x := v.(type) {
	case map[string]any:
		img, _ := x["image"].(string)
		if strings.HasPrefix(img, "tandem") {
			if a, ok := x["args"].([]any); ok {
				fn(a)
			} else if a, ok := x["command"].([]any); ok {
				fn(a)
			}
		}
		for _, c := range x {
			walk(c, fn)
		}
	case []any:
		for _, c := range x {
			walk(c, fn)
		}
	}
}
