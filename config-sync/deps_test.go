package configsync

import (
	"os/exec"
	"strings"
	"testing"
)

// config-sync is a core: it must not depend on services, the failover core
// or the network layers (DESIGN §2: dependencies point one way).
func TestDependenciesPointOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		for _, bad := range []string{"/services/", "/mirror/failover", "/mirror/transport", "/fhir/", "net/http"} {
			if strings.Contains(p, bad) || p == strings.TrimPrefix(bad, "/") {
				t.Errorf("configsync depends on %s", p)
			}
		}
	}
}
