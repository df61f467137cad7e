package workflows

import "testing"

func TestProgressBar(t *testing.T) {
	steps := []string{"connectivity", "status", "mirror", "hashes"}
	for _, tc := range []struct {
		step int
		want string
	}{
		{0, "[----------] 0/4 connectivity"},
		{2, "[#####-----] 2/4 mirror"},
		{4, "[##########] 4/4 done"},
	} {
		if got := (Progress{Steps: steps, Step: tc.step}).Bar(10); got != tc.want {
			t.Errorf("step %d: %q, want %q", tc.step, got, tc.want)
		}
	}
}

func TestPair(t *testing.T) {
	p, b, ok := Pair([]MemberStatus{
		{Member: "a", Role: RoleFailover, Status: "primary"},
		{Member: "b", Role: RoleFailover, Status: "backup"},
		{Member: "c", Role: "dr", Status: "async"},
	})
	if !ok || p.Member != "a" || b.Member != "b" {
		t.Fatal(p, b, ok)
	}
	if _, _, ok := Pair([]MemberStatus{{Member: "a", Role: RoleFailover, Status: "primary"}, {Member: "b", Role: RoleFailover, Status: "primary"}}); ok {
		t.Fatal("two primaries make a pair")
	}
}
