package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The primary ships appends to an active backup before its own fsync
// (issue 4), so a primary killed mid-write may come back without records
// its backup already holds. These tests restart it for real: it must take
// those records back from the backup before it writes again (resync), or,
// with the backup gone too, continue in a new epoch of its own (reopen).

// TestRestartedPrimaryResyncsWithItsBackup: "no failover" keeps the backup
// from taking over; the primary is killed under writes and started again.
// It is primary of the same epoch again only after the resync, every
// acknowledged write is on both members, their content is equal and the
// backup set aside no acknowledged write.
func TestRestartedPrimaryResyncsWithItsBackup(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t)
	tr.setNoFailover()
	stop := make(chan struct{})
	wait := tr.writers(8, stop)
	time.Sleep(700 * time.Millisecond)
	tr.kill9("a")
	tr.start("a")
	tr.waitFor("a primary of epoch 1 again", 30*time.Second, func() bool { return tr.status("a") == "primary" && tr.epoch("a") == 1 })
	time.Sleep(500 * time.Millisecond) // writes continue after the resync
	close(stop)
	acked, failed := wait()
	t.Logf("%d writes acknowledged, %d failed attempts", len(acked), failed)
	if len(acked) < 50 {
		t.Fatalf("only %d writes acknowledged: the test did not write under load", len(acked))
	}
	logText := memberLog(t, tr, "a")
	if !strings.Contains(logText, "mirror resynced") {
		t.Fatalf("a took writes again without a resync; its log:\n%s", tail(logText, 40))
	}
	taken := 0
	for _, m := range regexp.MustCompile(`took (\d+) records the backup held`).FindAllStringSubmatch(logText, -1) {
		n, _ := strconv.Atoi(m[1])
		taken += n
	}
	t.Logf("a took %d records back from b that it had shipped before its fsync", taken)
	if s, e := tr.status("b"), tr.epoch("b"); s != "backup" || e != 1 {
		t.Fatalf("b is %s in epoch %d: expected the backup of epoch 1", s, e)
	}
	tr.waitFor("equal content", 20*time.Second, func() bool { return tr.hash("a") == tr.hash("b") })
	tr.checkAcked("a", acked)
	tr.checkAcked("b", acked)
	tr.checkQuarantine("b", acked)
}

// TestPrimaryRestartedWithoutItsBackupReopens: both members die at once
// (a rack's power); only the primary comes back. It cannot learn what its
// backup holds, so it asks the arbiter for a new epoch and continues alone
// in it; the backup, started later, rejoins that epoch with equal content
// and every acknowledged write.
func TestPrimaryRestartedWithoutItsBackupReopens(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t)
	stop := make(chan struct{})
	wait := tr.writers(8, stop)
	time.Sleep(700 * time.Millisecond)
	tr.kill9("a")
	tr.kill9("b")
	close(stop)
	acked, _ := wait()
	if len(acked) < 50 {
		t.Fatalf("only %d writes acknowledged: the test did not write under load", len(acked))
	}
	tr.start("a")
	tr.waitFor("a primary of a new epoch", 30*time.Second, func() bool { return tr.status("a") == "primary" && tr.epoch("a") == 2 })
	if logText := memberLog(t, tr, "a"); !strings.Contains(logText, "restart-reopen") {
		t.Fatalf("a is primary of epoch 2, but not by reopening; its log:\n%s", tail(logText, 40))
	}
	after := tr.putN(context.Background(), "a", "alone-", 20)
	for k, v := range after {
		acked[k] = v
	}
	tr.rejoin("b", "a", acked)
}

func memberLog(t *testing.T, tr *tier, member string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tr.dir, member+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}
