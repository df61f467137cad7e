package ctl

import (
	"strings"
	"testing"
)

func TestPrintStatusShowsEveryMemberAndTheDownOnes(t *testing.T) {
	sts := []MemberStatus{
		{Tier: "records", Member: "a", Status: map[string]any{"role": "failover", "status": "primary", "epoch": 2.0,
			"journal": map[string]any{"last_lsn": 10.0, "commit_lsn": 10.0}, "mode": "arbiter-controlled",
			"transfer": map[string]any{"status": "active", "behind_records": 0.0}, "links": map[string]any{"b": true, "arbiter": false}}},
		{Tier: "records", Member: "b", Status: map[string]any{"role": "failover", "status": "backup", "epoch": 2.0,
			"journal": map[string]any{"last_lsn": 7.0, "commit_lsn": 7.0}, "transfer": map[string]any{"status": "behind", "behind_records": 3.0}}},
		{Tier: "records", Member: "c", Error: "dial tcp 127.0.0.1:1: connection refused"},
	}
	var out strings.Builder
	PrintStatus(&out, sts)
	got := out.String()
	for _, want := range []string{"TIER records", "primary", "backup", "behind (3 records)", "arbiter:down b:up", "down", "connection refused"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n"); n != 5 {
		t.Errorf("%d lines, want a title, a header and three members:\n%s", n, got)
	}
}
