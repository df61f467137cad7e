package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/store"
)

// TestAddExistingDatabaseUnderWrites (issue 5, e): a database that exists
// outside the tier — the store of a stopped standalone node, 6 MB in 4,000
// keys — is added to the running tier (failover pair and a DR async) while
// clients write to it; every member ends with the source's content, every
// acknowledged write is there, and adding it twice is refused.
func TestAddExistingDatabaseUnderWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t, true)
	tr.waitFor("c async", 20*time.Second, func() bool { return tr.status("c") == "async" })

	srcDir, want := sourceStore(t, "labs", 40)

	stop := make(chan struct{})
	collect := tr.writers(4, stop)
	time.Sleep(300 * time.Millisecond)
	before, _ := tr.memberStatus("a")["journal"].(map[string]any)
	out, err := tr.ctlRun("add-database", "records", "labs", "--from", srcDir)
	if err != nil {
		close(stop)
		t.Fatalf("add-database: %v\n%s", err, out)
	}
	after, _ := tr.memberStatus("a")["journal"].(map[string]any)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	acked, failed := collect()
	t.Logf("tandem ctl add-database:\n%s", out)
	if !strings.Contains(out, "database labs added: 4000 keys") {
		t.Fatalf("add-database output:\n%s", out)
	}
	for _, m := range []string{"a", "b", "c"} {
		var h struct{ SHA256 string }
		tr.waitFor("labs on "+m+" equal to the source", 30*time.Second, func() bool {
			return tr.client.Do(context.Background(), "GET", m, "/admin/hash/labs", nil, &h) == nil && h.SHA256 == want
		})
		found := false
		for _, d := range tr.memberStatus(m)["databases"].([]any) {
			if db := d.(map[string]any); db["name"] == "labs" {
				found = db["status"] == "normal"
			}
		}
		if !found {
			t.Fatalf("%s does not list labs as normal: %v", m, tr.memberStatus(m)["databases"])
		}
	}
	// The writes went on meanwhile, in the same journal.
	if len(acked) == 0 || after["last_lsn"].(float64)-before["last_lsn"].(float64) < 20 {
		t.Fatalf("no writes went on during the import: %d acked, journal %v -> %v", len(acked), before["last_lsn"], after["last_lsn"])
	}
	for _, m := range []string{"a", "b"} {
		tr.checkAcked(m, acked)
	}
	t.Logf("labs (4000 keys) added under writes: %d writes acknowledged meanwhile (%d failed attempts), every member equal to the source %.12s", len(acked), failed, want)

	if out, err := tr.ctlRun("add-database", "records", "labs", "--from", srcDir); err == nil || !strings.Contains(err.Error(), "already added") {
		t.Fatalf("adding labs twice: %v\n%s", err, out)
	}
	if out, err := tr.ctlRun("add-database", "records", "fhir", "--from", srcDir); err == nil || !strings.Contains(err.Error(), "own databases") {
		t.Fatalf("importing over fhir: %v\n%s", err, out)
	}
}

// sourceStore writes an existing database db of batches×100 keys (about
// 1.2 KB each) through the store's own apply path, as a stopped standalone
// node leaves it, and returns its directory and content hash.
func sourceStore(t *testing.T, db string, batches int) (dir, sha string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "store")
	src, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for batch := range batches {
		var ops []journal.Op
		for i := 0; i < 100; i++ {
			k := fmt.Sprintf("result/%04d-%03d", batch, i)
			ops = append(ops, journal.Op{Kind: journal.OpSet, Key: []byte(k), Value: []byte(strings.Repeat(k, 80))})
		}
		rec := journal.Record{Type: journal.TypeData, Epoch: 1, LSN: uint64(batch + 1), Database: db, Payload: journal.EncodeOps(ops)}
		if err := src.Apply(rec); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := src.ContentHash(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, hex.EncodeToString(sum[:])
}

// TestPrimaryStopsCleanlyDuringAnImport: the import runs under the node's
// lifetime. SIGTERM of the primary while it imports a database stops the
// import's writes before the journal and the store close: the process
// exits 0 within the shutdown bound, its log says the import failed and can
// be run again, and it says it stopped.
func TestPrimaryStopsCleanlyDuringAnImport(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t)
	srcDir, _ := sourceStore(t, "labs", 300)
	body := []byte(`{"source_dir":"` + srcDir + `","by":"test"}`)
	if err := tr.client.Do(context.Background(), "POST", "a", "/admin/databases/labs/import", body, nil); err != nil {
		t.Fatal(err)
	}
	tr.waitFor("the import writing", 20*time.Second, func() bool {
		for _, d := range tr.memberStatus("a")["databases"].([]any) {
			if db := d.(map[string]any); db["name"] == "labs" {
				return true
			}
		}
		return false
	})
	c := tr.procs["a"]
	c.Process.Signal(syscall.SIGTERM)
	t0 := time.Now()
	tr.waitFor("a to exit", 20*time.Second, func() bool { return c.ProcessState != nil })
	log, _ := os.ReadFile(filepath.Join(tr.dir, "a.log"))
	if code := c.ProcessState.ExitCode(); code != 0 || !strings.Contains(string(log), `"node stopped"`) {
		t.Fatalf("a exited with %d after SIGTERM mid-import; log tail:\n%s", code, tailString(string(log), 3000))
	}
	if !strings.Contains(string(log), "database import failed; run it again") {
		t.Fatalf("a's log does not report the interrupted import:\n%s", tailString(string(log), 3000))
	}
	t.Logf("a stopped %s after SIGTERM during the import", time.Since(t0).Round(time.Millisecond))
}

// TestPrimaryWhoseDataDirectoryVanishesStepsDown: a primary whose data
// directory is removed under it (a dead disk, a wrong rm) could go on
// acknowledging writes into files that no longer have a name and keep its
// role, heartbeats and the gateway's traffic. It notices within seconds,
// stops by itself saying why, and the backup takes over with every
// acknowledged write; started again on an empty data directory (a new
// disk) it rejoins as backup with the primary's content. (Before, such a
// member ran on; and after SIGTERM its clean shutdown hung on Pebble's
// retried flushes.)
func TestPrimaryWhoseDataDirectoryVanishesStepsDown(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t)
	stop := make(chan struct{})
	wait := tr.writers(8, stop)
	time.Sleep(700 * time.Millisecond)
	c := tr.procs["a"]
	if err := os.RemoveAll(filepath.Join(tr.dir, "a")); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	tr.waitFor("a to stop by itself", 30*time.Second, func() bool { return c.ProcessState != nil })
	stopped := time.Since(t0)
	log, _ := os.ReadFile(filepath.Join(tr.dir, "a.log"))
	if c.ProcessState.ExitCode() == 0 || !strings.Contains(string(log), "storage failed") {
		t.Fatalf("a exited %d without saying its storage failed:\n%s", c.ProcessState.ExitCode(), tailString(string(log), 3000))
	}
	t.Logf("a stopped %s after its data directory was removed", stopped.Round(time.Millisecond))
	acked := tr.tookOverUnderWrites("b", 30*time.Second, stop, wait)
	// The operator replaces the disk and starts a again on an empty data
	// directory: it comes back as b's backup with b's content.
	tr.rejoin("a", "b", acked)
}
