package main

import (
	"context"
	"encoding/json"
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
