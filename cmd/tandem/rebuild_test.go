package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPurgedAsyncNeedsRebuildAndIsReseeded (issue 5, d): an async down
// longer than the journal retention is released by the primary, which then
// purges the journal it needed; restarted, it reports needs-rebuild and
// serves no reads; `tandem ctl rebuild` re-seeds it from the primary's
// snapshot, its databases go needs-catchup -> catchup-running -> normal,
// and it ends with the primary's content and every acknowledged write.
func TestPurgedAsyncNeedsRebuildAndIsReseeded(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTierWith(t, tierOptions{async: true,
		journal: "{segment_size: 1048576, async_retention: 2s, purge_interval: 200ms}"})
	tr.waitFor("c async and caught up", 20*time.Second, func() bool {
		st := tr.memberStatus("c")
		x, _ := st["transfer"].(map[string]any)
		return st["status"] == "async" && x != nil && x["status"] == "caught-up"
	})
	acked := tr.putMany(t, "before", 20, 100)
	tr.waitFor("c holds the first writes", 10*time.Second, func() bool { return tr.hash("c") == tr.hash("a") })
	cLast := tr.journalLSN("c", "last_lsn")

	// The fault: c is down (pid gone, status unreachable).
	tr.kill9("c")
	if s := tr.status("c"); s != "unreachable" {
		t.Fatalf("c answers status %q after kill -9", s)
	}
	// Enough writes to roll several 1 MiB segments.
	for k, v := range tr.putMany(t, "while-down", 300, 16<<10) {
		acked[k] = v
	}
	// The primary released c (down > 2s) and purged what c needs.
	tr.waitFor("a purged past c's last LSN", 30*time.Second, func() bool {
		return tr.journalLSN("a", "first_lsn") > cLast+1
	})
	segs, _ := filepath.Glob(filepath.Join(tr.dir, "a", "journal", "*.journal"))
	if first := tr.journalLSN("a", "first_lsn"); len(segs) == 0 || slices.Contains(segs, filepath.Join(tr.dir, "a", "journal", fmt.Sprintf("%020d.journal", 1))) {
		t.Fatalf("a's first segment (LSN 1) is still on disk: %v (first_lsn %d)", segs, first)
	}
	t.Logf("a purged: journal starts at %d, c's last LSN was %d, %d segment files left", tr.journalLSN("a", "first_lsn"), cLast, len(segs))
	tr.waitFor("a alerts that c needs a rebuild", 10*time.Second, func() bool {
		return slices.ContainsFunc(tr.alerts("a"), func(s string) bool { return strings.Contains(s, "tandem ctl rebuild c") })
	})

	// c comes back: it cannot catch up, says so, and serves no reads.
	tr.start("c")
	tr.waitFor("c needs-rebuild", 30*time.Second, func() bool { return tr.status("c") == "needs-rebuild" })
	if _, err := tr.get("c", "before-0"); err == nil || !strings.Contains(err.Error(), "needs a rebuild") {
		t.Fatalf("a needs-rebuild member served a read: %v", err)
	}
	if !slices.ContainsFunc(tr.alerts("c"), func(s string) bool { return strings.Contains(s, "tandem ctl rebuild c") }) {
		t.Fatalf("c's status carries no alert with the command: %v", tr.alerts("c"))
	}
	// (appends queued for c before the purge may have reached it first;
	// once it needs a rebuild it takes nothing more)
	frozen := tr.journalLSN("c", "last_lsn")
	time.Sleep(time.Second)
	if last := tr.journalLSN("c", "last_lsn"); last != frozen || last >= tr.journalLSN("a", "first_lsn") {
		t.Fatalf("c appended records (last %d, was %d; a starts at %d) although it needs a rebuild", last, frozen, tr.journalLSN("a", "first_lsn"))
	}
	// A rebuild of the primary, or of a member that does not need it, is refused.
	if out, err := exec.Command(binary, "ctl", "rebuild", "a", "--cluster", tr.cluster).CombinedOutput(); err == nil || !strings.Contains(string(out), "primary") {
		t.Fatalf("rebuilding the primary was not refused: %v\n%s", err, out)
	}
	if out, err := exec.Command(binary, "ctl", "rebuild", "b", "--cluster", tr.cluster).CombinedOutput(); err == nil || !strings.Contains(string(out), "does not need a rebuild") {
		t.Fatalf("rebuilding a healthy backup was not refused: %v\n%s", err, out)
	}

	// The re-seed, with c's journal link cut so that its catch-up is seen
	// step by step: needs-catchup until the primary is heard, then
	// catchup-running, then normal.
	tr.proxies["a->c"].cut()
	var out bytes.Buffer
	cmd := exec.Command(binary, "ctl", "rebuild", "c", "--cluster", tr.cluster)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var seen []string
	var mu sync.Mutex
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() { // every database status c reports, in order
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			st := tr.memberStatus("c")
			dbs, _ := st["databases"].([]any)
			if len(dbs) == 0 || st["status"] == "needs-rebuild" {
				continue
			}
			s := fmt.Sprint(dbs[0].(map[string]any)["status"])
			mu.Lock()
			if len(seen) == 0 || seen[len(seen)-1] != s {
				seen = append(seen, s)
			}
			mu.Unlock()
		}
	}()
	tr.waitFor("c re-seeded, waiting for the primary's journal", 60*time.Second, func() bool {
		st := tr.memberStatus("c")
		dbs, _ := st["databases"].([]any)
		return st["status"] == "async" && len(dbs) > 0 && dbs[0].(map[string]any)["status"] == "needs-catchup"
	})
	// more writes while c cannot hear the primary: what it must catch up
	for k, v := range tr.putMany(t, "after-seed", 200, 4<<10) {
		acked[k] = v
	}
	aj, _ := tr.memberStatus("a")["journal"].(map[string]any)
	ackedUpTo, _ := aj["commit_lsn"].(float64) // every write above is acknowledged, so committed on a
	tr.proxies["a->c"].heal()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("tandem ctl rebuild c: %v\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("tandem ctl rebuild c did not finish:\n%s", out.String())
	}
	close(stop)
	<-watched
	t.Logf("tandem ctl rebuild c:\n%s", out.String())
	mu.Lock()
	t.Logf("c's database status, in order: %v", seen)
	if len(seen) == 0 || seen[0] != "needs-catchup" || seen[len(seen)-1] != "normal" || !slices.Contains(seen, "catchup-running") {
		t.Errorf("c's databases should go needs-catchup -> catchup-running -> normal, saw %v", seen)
	}
	mu.Unlock()
	if !strings.Contains(out.String(), "rebuilt from a") {
		t.Fatalf("ctl rebuild did not report success:\n%s", out.String())
	}
	// "Caught up" is measured: it covers what the primary had committed
	// while c could not hear it (c said normal ~200 records short once).
	var caughtUpAt float64
	if _, err := fmt.Sscanf(out.String()[strings.Index(out.String(), "caught up (applied to LSN "):], "caught up (applied to LSN %g)", &caughtUpAt); err != nil || caughtUpAt < ackedUpTo {
		t.Errorf("c said caught up at LSN %v (%v); a had committed %v before the link came back", caughtUpAt, err, ackedUpTo)
	}
	tr.waitFor("c's content equals a's", 20*time.Second, func() bool { return tr.hash("c") == tr.hash("a") })
	if s := tr.status("c"); s != "async" {
		t.Fatalf("c is %s after the rebuild", s)
	}
	tr.checkAcked("c", acked)
	if old, _ := filepath.Glob(filepath.Join(tr.dir, "c", "rebuild-old-*", "journal")); len(old) != 1 {
		t.Errorf("the replaced journal should be kept aside once: %v", old)
	}
	// it keeps following the primary
	for k, v := range tr.putMany(t, "after-rebuild", 10, 100) {
		acked[k] = v
	}
	tr.waitFor("c follows the primary after the rebuild", 20*time.Second, func() bool { return tr.hash("c") == tr.hash("a") })
	t.Logf("%d acknowledged writes, all on c; hashes equal", len(acked))
}

// putMany writes n keys prefix-i with values of size bytes to the primary a,
// four writers at once, and returns them (every one acknowledged).
func (tr *tier) putMany(t *testing.T, prefix string, n, size int) map[string]string {
	t.Helper()
	return tr.putManyTo(t, "a", prefix, n, size)
}

// putManyTo is putMany to the primary member.
func (tr *tier) putManyTo(t *testing.T, member, prefix string, n, size int) map[string]string {
	t.Helper()
	var mu sync.Mutex
	out := map[string]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				k := fmt.Sprintf("%s-%d", prefix, i)
				v := strings.Repeat(string(rune('a'+i%26)), size-len(k)) + k
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := tr.put(ctx, member, k, v)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("put %s: %w", k, err)
					return
				}
				mu.Lock()
				out[k] = v
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return out
}

// journalLSN reads one field of a member's journal status.
func (tr *tier) journalLSN(member, field string) uint64 {
	st := tr.memberStatus(member)
	j, _ := st["journal"].(map[string]any)
	v, _ := j[field].(float64)
	return uint64(v)
}

// alerts is a member's alerts list.
func (tr *tier) alerts(member string) []string {
	var out []string
	as, _ := tr.memberStatus(member)["alerts"].([]any)
	for _, a := range as {
		out = append(out, fmt.Sprint(a))
	}
	return out
}

// TestFailoverAndRejoinOverPurgedJournals: with small segments purged every
// 200 ms, the primary is killed after both members purged; the backup takes
// over from a journal that starts after its base, keeps purging within what
// its core allows, and the old primary rejoins from its own purged journal
// with every acknowledged write and equal content.
func TestFailoverAndRejoinOverPurgedJournals(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTierWith(t, tierOptions{journal: "{segment_size: 1048576, purge_interval: 200ms}"})
	acked := tr.putMany(t, "first", 200, 16<<10)
	tr.waitFor("both members purged", 20*time.Second, func() bool {
		return tr.journalLSN("a", "first_lsn") > 1 && tr.journalLSN("b", "first_lsn") > 1
	})
	t.Logf("before the failover: a starts at %d, b at %d", tr.journalLSN("a", "first_lsn"), tr.journalLSN("b", "first_lsn"))
	tr.kill9("a")
	tr.waitFor("b primary in epoch 2", 20*time.Second, func() bool { return tr.status("b") == "primary" && tr.epoch("b") == 2 })
	for k, v := range tr.putManyTo(t, "b", "second", 100, 16<<10) {
		acked[k] = v
	}
	tr.checkAcked("b", acked)
	tr.rejoin("a", "b", acked)
	for k, v := range tr.putManyTo(t, "b", "third", 100, 16<<10) {
		acked[k] = v
	}
	tr.waitFor("equal content after more writes", 20*time.Second, func() bool { return tr.hash("a") == tr.hash("b") })
	tr.waitFor("the new primary purged with its backup back", 20*time.Second, func() bool {
		return tr.journalLSN("b", "first_lsn") > tr.journalLSN("b", "last_lsn")-300
	})
	t.Logf("after: b starts at %d (last %d), a at %d", tr.journalLSN("b", "first_lsn"), tr.journalLSN("b", "last_lsn"), tr.journalLSN("a", "first_lsn"))
	tr.checkAcked("a", acked)
}

// TestArchiverHoldsTheJournal: a backup archiver that keeps fetching from
// an LSN holds the member's journal there — the member purges nothing it
// has not archived while its peer, held by no archiver, purges — and an
// archiver silent for longer than journal.async_retention is released
// (logged), after which a fetch from its LSN is refused as purged (HTTP
// 410: the archive needs a new snapshot), never answered with a gap.
func TestArchiverHoldsTheJournal(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTierWith(t, tierOptions{journal: "{segment_size: 1048576, async_retention: 3s, purge_interval: 200ms}"})
	tr.putMany(t, "before", 20, 100)
	const from = 5
	fetch := func() error {
		var out []byte
		return tr.client.Do(context.Background(), "GET", "a", fmt.Sprintf("/admin/backup/records?from=%d&max=10&archiver=test:/archive", from), nil, &out)
	}
	if err := fetch(); err != nil {
		t.Fatal(err)
	}
	// An archiver stuck at LSN 5 but alive: it asks again and again.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
				fetch()
			}
		}
	}()
	tr.putMany(t, "rolling", 300, 16<<10)
	// The fault is real: b, held by nobody, purges.
	tr.waitFor("b purged past LSN 5", 30*time.Second, func() bool { return tr.journalLSN("b", "first_lsn") > from })
	time.Sleep(time.Second) // several purge intervals on a too
	if first := tr.journalLSN("a", "first_lsn"); first > from {
		close(stop)
		t.Fatalf("a purged to first LSN %d while an archiver still needed LSN %d", first, from)
	}
	t.Logf("a holds its journal from LSN %d for the archiver (b's starts at %d)", tr.journalLSN("a", "first_lsn"), tr.journalLSN("b", "first_lsn"))

	// The archiver goes silent: released after the retention, then purged.
	close(stop)
	<-done
	tr.waitFor("a purged past LSN 5 after the archiver went silent", 30*time.Second, func() bool { return tr.journalLSN("a", "first_lsn") > from })
	if log := tailFile(filepath.Join(tr.dir, "a.log"), 400); !strings.Contains(log, "backup archiver released") || !strings.Contains(log, "test:/archive") {
		t.Fatalf("a's log does not name the released archiver:\n%s", log)
	}
	if err := fetch(); err == nil || !strings.Contains(err.Error(), "HTTP 410") {
		t.Fatalf("a fetch from a purged LSN: %v, want HTTP 410", err)
	}
}

// TestCorruptJournalMemberIsReseededOffline: a backup whose journal is
// damaged in the middle refuses to start and says where; `tandem ctl
// rebuild b --offline` on its host stages the primary's snapshot; started
// again, b installs it in place of the damaged journal, rejoins as backup
// and holds every acknowledged write.
func TestCorruptJournalMemberIsReseededOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t)
	acked := tr.putMany(t, "before", 60, 300)
	tr.waitFor("b holds the writes", 10*time.Second, func() bool { return tr.hash("b") == tr.hash("a") })
	tr.kill9("b")

	// The fault: a flipped byte in the middle of b's first segment.
	segs, _ := filepath.Glob(filepath.Join(tr.dir, "b", "journal", "*.journal"))
	if len(segs) == 0 {
		t.Fatal("b has no journal segment")
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	// In the middle of its frames: the zeros after them are space the
	// journal allocated ahead, and a byte there is no record's.
	data[len(bytes.TrimRight(data, "\x00"))/2] ^= 0xff
	if err := os.WriteFile(segs[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	tr.start("b")
	c := tr.procs["b"]
	tr.waitFor("b to refuse to start", 20*time.Second, func() bool { return c.ProcessState != nil })
	if log := tailFile(filepath.Join(tr.dir, "b.log"), 20); c.ProcessState.ExitCode() == 0 || !strings.Contains(log, "corrupt") {
		t.Fatalf("b with a damaged journal: exit %d, log:\n%s", c.ProcessState.ExitCode(), log)
	}
	for k, v := range tr.putMany(t, "while-down", 40, 300) {
		acked[k] = v
	}

	out := tr.mustCtl("rebuild", "b", "--offline")
	t.Logf("tandem ctl rebuild b --offline:\n%s", out)
	if !strings.Contains(out, "verified and staged") {
		t.Fatalf("offline re-seed output:\n%s", out)
	}
	tr.start("b")
	tr.waitFor("b backup again", 30*time.Second, func() bool { return tr.status("b") == "backup" })
	tr.waitFor("equal content", 20*time.Second, func() bool { return tr.hash("b") == tr.hash("a") })
	tr.checkAcked("b", acked)
	if rb, _ := tr.memberStatus("b")["rebuild"].(map[string]any); rb == nil || rb["state"] != "installed" || rb["source"] != "a" {
		t.Fatalf("b does not report an installed re-seed from a: %v", rb)
	}
	// A running member is never re-seeded offline.
	if out, err := tr.ctlRun("rebuild", "b", "--offline"); err == nil || !strings.Contains(err.Error(), "node runs") {
		t.Fatalf("offline re-seed of a running member: %v\n%s", err, out)
	}
}
