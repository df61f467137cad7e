package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/backup"
)

// TestBackupAndPointInTimeRestore (issue 14): a real tier writes for a
// while with a planned failover in between; `tandem backup --once` from
// the backup member archives after each phase; `tandem restore` to each
// recorded LSN and time gives exactly the content the primary had then.
func TestBackupAndPointInTimeRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t)
	dir := t.TempDir()
	bdir := filepath.Join(dir, "backup")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("tandem %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	type point struct {
		lsn  uint64
		at   time.Time
		hash string
	}
	var pts []point
	phase := func(from string) {
		stop := make(chan struct{})
		wait := tr.writers(4, stop)
		time.Sleep(700 * time.Millisecond)
		close(stop)
		acked, _ := wait()
		if len(acked) == 0 {
			t.Fatal("no write acknowledged")
		}
		primary, err := tr.client.Primary(context.Background(), "records")
		if err != nil {
			t.Fatal(err)
		}
		want := tr.hash(primary)
		tr.waitFor("backup member caught up", 20*time.Second, func() bool { return tr.hash(from) == want })
		run("backup", "--cluster", tr.cluster, "--member", from, "--to", bdir, "--once")
		var cat backup.Catalog
		if err := json.Unmarshal([]byte(run("ctl", "backup", "list", "--from", bdir, "--json")), &cat); err != nil {
			t.Fatal(err)
		}
		// The first run's snapshot holds everything; later runs archive.
		p := point{lsn: cat.Snapshots[len(cat.Snapshots)-1].LSN, at: cat.Snapshots[len(cat.Snapshots)-1].TakenAt, hash: want}
		if n := len(cat.Chunks); n > 0 && cat.Chunks[n-1].LastLSN > p.lsn {
			p.lsn, p.at = cat.Chunks[n-1].LastLSN, cat.Chunks[n-1].ArchivedAt
		}
		pts = append(pts, p)
		t.Logf("phase: %d writes acknowledged; backup ends at LSN %d", len(acked), p.lsn)
	}
	phase("b")
	// A planned failover: b becomes primary; archive from a, now the backup.
	if err := tr.client.Do(context.Background(), "POST", "a", "/admin/planned-failover", nil, nil); err != nil {
		t.Fatal(err)
	}
	tr.waitFor("b primary in epoch 2", 20*time.Second, func() bool { return tr.status("b") == "primary" && tr.status("a") == "backup" })
	phase("a")
	phase("a")

	out := run("ctl", "backup", "verify", "--from", bdir)
	if !strings.Contains(out, "restorable LSNs "+itoa(pts[0].lsn)+"-"+itoa(pts[2].lsn)) || strings.Contains(out, "PROBLEM") {
		t.Fatalf("verify: %s", out)
	}
	for i, p := range pts {
		for _, args := range [][]string{{"--to-lsn", itoa(p.lsn)}, {"--to-time", p.at.Add(time.Millisecond).Format(time.RFC3339Nano)}} {
			dest := filepath.Join(dir, "restore", itoa(uint64(i))+args[0])
			var rep backup.RestoreReport
			if err := json.Unmarshal([]byte(run(append([]string{"restore", "--from", bdir, "--data", dest, "--json"}, args...)...)), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.LSN != p.lsn || rep.Hashes["fhir"] != p.hash {
				t.Fatalf("restore %v: LSN %d hash %s, want LSN %d hash %s", args, rep.LSN, rep.Hashes["fhir"], p.lsn, p.hash)
			}
		}
	}
	// A damaged chunk is named by verify and stops a restore across it.
	chunks, _ := filepath.Glob(filepath.Join(bdir, "archive", "*.chunk"))
	data, err := os.ReadFile(chunks[0])
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	os.WriteFile(chunks[0], data, 0o644)
	out2, err := exec.Command(binary, "ctl", "backup", "verify", "--from", bdir).CombinedOutput()
	if err == nil || !strings.Contains(string(out2), filepath.Base(chunks[0])) {
		t.Fatalf("verify of a damaged chunk: %v\n%s", err, out2)
	}
	dest := filepath.Join(dir, "restore-damaged")
	out2, err = exec.Command(binary, "restore", "--from", bdir, "--data", dest, "--to-lsn", itoa(pts[len(pts)-1].lsn)).CombinedOutput()
	if err == nil || !strings.Contains(string(out2), filepath.Base(chunks[0])) {
		t.Fatalf("restore across a damaged chunk: %v\n%s", err, out2)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("a failed restore left its directory behind")
	}
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// TestRestoreStartsANewTier (issue 14): FHIR resources written on a tier
// are backed up and restored with --new-tier into member a's data dir of
// a new tier (its own cluster file and arbiter seed); b starts empty and
// catches up from a; both hold exactly the backup's content, reads through
// FHIR return every resource, and after a kill -9 of a the backup takes
// over with everything, including a write made on the new tier.
func TestRestoreStartsANewTier(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	bundles, _ := filepath.Glob("../../../shared/testdata/synthea/*.json")
	if len(bundles) < 2 {
		t.Skip("no Synthea bundles in ../shared/testdata")
	}
	old := startTier(t)
	want := map[string][]byte{}
	for _, path := range bundles[:2] {
		body, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var resp struct {
			Entry []struct{ Response struct{ Location string } }
		}
		if err := old.client.Do(context.Background(), "POST", "a", "/fhir", body, &resp); err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Entry {
			loc, _, _ := strings.Cut(strings.TrimPrefix(e.Response.Location, "/fhir/"), "/_history")
			var b []byte
			if err := old.client.Do(context.Background(), "GET", "a", "/fhir/"+loc, nil, &b); err != nil {
				t.Fatalf("read %s: %v", loc, err)
			}
			want[loc] = b
		}
	}
	if len(want) == 0 {
		t.Fatal("no resource written")
	}
	// Reads are audited (AuditEvents written in batches), so the content
	// moves on a little after the writes: the backup's own report is what
	// the new tier must hold.
	live := old.hash("a")
	old.waitFor("b caught up", 20*time.Second, func() bool { return old.hash("b") == live })
	dir := t.TempDir()
	bdir := filepath.Join(dir, "backup")
	if out, err := exec.Command(binary, "backup", "--cluster", old.cluster, "--member", "b", "--to", bdir, "--once").CombinedOutput(); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	restore := func(dest string, extra ...string) backup.RestoreReport {
		t.Helper()
		out, err := exec.Command(binary, append([]string{"restore", "--from", bdir, "--data", dest, "--json"}, extra...)...).Output()
		if err != nil {
			t.Fatalf("restore %v: %v\n%s", extra, err, out)
		}
		var rep backup.RestoreReport
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	plain := restore(filepath.Join(dir, "plain"))
	seed := filepath.Join(dir, "new-tier-a")
	rep := restore(seed, "--new-tier")
	hash := rep.Hashes["fhir"]
	if rep.NewTier == nil || rep.NewTier.FirstLSN != 1 || rep.NewTier.Epoch != 1 || rep.LSN != plain.LSN ||
		hash == "" || fmt.Sprint(rep.Hashes) != fmt.Sprint(plain.Hashes) {
		t.Fatalf("new-tier restore %+v (new tier %+v); plain restore LSN %d %v", rep, rep.NewTier, plain.LSN, plain.Hashes)
	}
	// The text report names both the source point and the new LSN range.
	out, err := exec.Command(binary, "restore", "--from", bdir, "--data", filepath.Join(dir, "text"), "--new-tier").CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("restored to LSN %d", rep.LSN)) ||
		!strings.Contains(string(out), fmt.Sprintf("LSNs 1-%d", rep.NewTier.LastLSN)) {
		t.Fatalf("text report: %v\n%s", err, out)
	}
	t.Logf("source LSN %d (epoch %d) -> new tier LSNs 1-%d: %d keys in %d records, %d resources", rep.LSN, rep.Epoch,
		rep.NewTier.LastLSN, rep.NewTier.Keys, rep.NewTier.DataRecords, len(want))

	tr := startTierWith(t, tierOptions{seed: map[string]string{"a": seed}})
	// b started empty: its store holds the backup's content only once it
	// has caught up from a (a member applies committed records only).
	// Nothing has been read on the new tier yet, so nothing audited.
	for _, m := range []string{"a", "b"} {
		tr.waitFor(m+" holds the backup's content", 30*time.Second, func() bool { return tr.hash(m) == hash })
	}
	if _, err := os.Stat(filepath.Join(tr.dir, "a", backup.NewTierSeedFile)); !os.IsNotExist(err) {
		t.Fatal("the new-tier seed file is still there after the member started")
	}
	for loc, w := range want {
		var b []byte
		if err := tr.readRetry("a", "/fhir/"+loc, &b); err != nil || !bytes.Equal(b, w) {
			t.Fatalf("read %s on the new tier: %v", loc, err)
		}
	}
	// The new tier takes writes, then survives the loss of its primary.
	if err := tr.put(context.Background(), "a", "after-restore", "v1"); err != nil {
		t.Fatal(err)
	}
	tr.kill9("a")
	tr.waitFor("b primary", 20*time.Second, func() bool { return tr.status("b") == "primary" })
	for loc, w := range want {
		var b []byte
		if err := tr.readRetry("b", "/fhir/"+loc, &b); err != nil || !bytes.Equal(b, w) {
			t.Fatalf("read %s on the new primary: %v", loc, err)
		}
	}
	if v, err := tr.get("b", "after-restore"); err != nil || v != "v1" {
		t.Fatalf("write made on the new tier: %q %v", v, err)
	}
}
