package ctl

import (
	"strings"
	"testing"
	"time"
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
	sts[1].Status["gate"] = map[string]any{"aligned": false, "deny": []any{"role clinician differs"}}
	sts[0].Status["gate"] = map[string]any{"aligned": true}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	last := map[string]Failover{"records/a": {At: now.Add(-90 * time.Second), Operation: "planned_failover", Target: "a"}}
	var out strings.Builder
	PrintStatusTable(&out, sts, last, now)
	got := out.String()
	for _, want := range []string{"TIER records", "primary", "backup", "behind (3 records)", "arbiter:down b:up", "down", "connection refused",
		"LAG", "ALIGNMENT", "LAST FAILOVER", "aligned", "DRIFT: role clinician differs", "planned_failover, 1m30s ago"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n"); n != 5 {
		t.Errorf("%d lines, want a title, a header and three members:\n%s", n, got)
	}
}

func TestPrintStatusLagIsBehindThePrimarysCommit(t *testing.T) {
	sts := []MemberStatus{
		{Tier: "records", Member: "a", Status: map[string]any{"status": "primary", "journal": map[string]any{"commit_lsn": 10.0}}},
		{Tier: "records", Member: "b", Status: map[string]any{"status": "backup", "journal": map[string]any{"commit_lsn": 7.0}}},
	}
	var out strings.Builder
	PrintStatusTable(&out, sts, nil, time.Now())
	lines := strings.Split(out.String(), "\n")
	for i, want := range map[int]string{2: "a", 3: "b"} {
		f := strings.Fields(lines[i])
		if f[0] != want {
			t.Fatalf("line %d: %q", i, lines[i])
		}
		lag := map[string]string{"a": "0", "b": "3"}[want]
		if f[5] != lag {
			t.Errorf("%s: lag %q, want %s:\n%s", want, f[5], lag, out.String())
		}
	}
}

func TestPrintStatusShowsAlerts(t *testing.T) {
	sts := []MemberStatus{
		{Tier: "records", Member: "a", Status: map[string]any{"status": "primary", "journal": map[string]any{"commit_lsn": 10.0},
			"alerts": []any{"member c needs a rebuild: records it needs were purged here; run: tandem ctl rebuild c"}}},
		{Tier: "records", Member: "c", Status: map[string]any{"status": "needs-rebuild", "journal": map[string]any{"commit_lsn": 3.0}}},
	}
	var out strings.Builder
	PrintStatusTable(&out, sts, nil, time.Now())
	if !strings.Contains(out.String(), "ALERT records/a: member c needs a rebuild") || !strings.Contains(out.String(), "needs-rebuild") {
		t.Fatalf("alerts not shown:\n%s", out.String())
	}
}
