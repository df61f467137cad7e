package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/services/ctl"
)

// TestCtlStatusJSONMatchesMembers (issue 12, must show): `tandem ctl status
// --json` is every member's own /mirror/status, and the table shows each
// member's role, status, epoch, lag and alignment.
func TestCtlStatusJSONMatchesMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t, true)
	tr.waitFor("c async with its link up", 30*time.Second, func() bool {
		st := tr.memberStatus("c")
		return st != nil && st["status"] == "async" && st["links"] != nil
	})
	out, err := exec.Command(binary, "ctl", "status", "--json", "--cluster", tr.cluster).Output()
	if err != nil {
		t.Fatalf("ctl status --json: %v", err)
	}
	var got []ctl.MemberStatus
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("ctl status --json is not JSON: %v\n%s", err, out)
	}
	if len(got) != 3 {
		t.Fatalf("%d members, want a, b, c:\n%s", len(got), out)
	}
	// Fields that do not change on an idle tier must be equal; every field
	// the member reports must be there.
	stable := []string{"tier", "member", "role", "status", "mirror", "epoch", "pid", "started_at", "databases"}
	for _, g := range got {
		want := tr.memberStatus(g.Member)
		if g.Error != "" || want == nil {
			t.Fatalf("%s: ctl says %q, member answered %v", g.Member, g.Error, want != nil)
		}
		if g.Tier != "records" || g.URL != "https://"+mustMember(t, tr, g.Member) {
			t.Errorf("%s: tier %q url %q", g.Member, g.Tier, g.URL)
		}
		if k1, k2 := fieldNames(g.Status), fieldNames(want); k1 != k2 {
			t.Errorf("%s: ctl shows fields %s, the member reports %s", g.Member, k1, k2)
		}
		for _, k := range stable {
			if a, b := fmt.Sprint(g.Status[k]), fmt.Sprint(want[k]); a != b {
				t.Errorf("%s: %s is %s in ctl status --json, %s on the member", g.Member, k, a, b)
			}
		}
	}
	table, err := exec.Command(binary, "ctl", "status", "--cluster", tr.cluster).Output()
	if err != nil {
		t.Fatalf("ctl status: %v", err)
	}
	for _, want := range []string{"MEMBER", "ROLE", "STATUS", "EPOCH", "TRANSFER", "LAG", "ALIGNMENT", "LAST FAILOVER"} {
		if !strings.Contains(string(table), want) {
			t.Errorf("the table has no %s column:\n%s", want, table)
		}
	}
	for _, row := range []string{"a  ", "b  ", "c  "} {
		if !strings.Contains(string(table), "\n"+row) {
			t.Errorf("no row for %s:\n%s", strings.TrimSpace(row), table)
		}
	}
	t.Logf("tandem ctl status:\n%s", table)
}

func mustMember(t *testing.T, tr *tier, name string) string {
	t.Helper()
	tt, _ := tr.file.Tier("records")
	m, ok := tt.Member(name)
	if !ok {
		t.Fatalf("no member %s", name)
	}
	return m.HTTP
}

func fieldNames(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}
