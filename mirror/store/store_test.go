package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/store"
)

// node is a journal plus a store on one filesystem, as a data node has.
type node struct {
	j  *journal.Journal
	st *store.Store
}

func openNode(tb testing.TB, fs vfs.FS, dir string) *node {
	tb.Helper()
	return openNodeSegments(tb, fs, dir, 1<<20)
}

func openNodeSegments(tb testing.TB, fs vfs.FS, dir string, segmentSize int64) *node {
	tb.Helper()
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{FS: fs, SegmentSize: segmentSize})
	if err != nil {
		tb.Fatalf("open journal: %v", err)
	}
	st, err := store.Open(filepath.Join(dir, "store"), store.Options{FS: fs})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	if _, err := st.Recover(j); err != nil {
		tb.Fatalf("recover: %v", err)
	}
	return &node{j: j, st: st}
}

// write journals ops for db, then applies the record, as the sequencer does.
func (n *node) write(tb testing.TB, db string, ops ...journal.Op) uint64 {
	tb.Helper()
	payload := journal.EncodeOps(ops)
	lsn, err := n.j.Append(context.Background(), journal.TypeData, 1, db, payload)
	if err != nil {
		tb.Fatalf("append: %v", err)
	}
	if err := n.st.Apply(journal.Record{Type: journal.TypeData, Epoch: 1, LSN: lsn, Database: db, Payload: payload}); err != nil {
		tb.Fatalf("apply %d: %v", lsn, err)
	}
	return lsn
}

func set(k, v string) journal.Op {
	return journal.Op{Kind: journal.OpSet, Key: []byte(k), Value: []byte(v)}
}

func del(k string) journal.Op { return journal.Op{Kind: journal.OpDelete, Key: []byte(k)} }

func get(tb testing.TB, st *store.Store, db, k string) (string, bool) {
	tb.Helper()
	v, ok, err := st.Get(db, []byte(k))
	if err != nil {
		tb.Fatalf("get %s/%s: %v", db, k, err)
	}
	return string(v), ok
}

func TestApplyKeepsDatabasesApart(t *testing.T) {
	n := openNode(t, vfs.NewMem(), "n")
	n.write(t, "fhir", set("Patient/1", "p1"), set("Patient/2", "p2"))
	n.write(t, "audit", set("Patient/1", "audit-entry"))
	n.write(t, "fhir", del("Patient/2"))

	if v, ok := get(t, n.st, "fhir", "Patient/1"); !ok || v != "p1" {
		t.Fatalf("fhir Patient/1 = %q %v", v, ok)
	}
	if _, ok := get(t, n.st, "fhir", "Patient/2"); ok {
		t.Fatal("deleted key still present")
	}
	if v, _ := get(t, n.st, "audit", "Patient/1"); v != "audit-entry" {
		t.Fatalf("audit Patient/1 = %q", v)
	}
	if got, want := n.st.AppliedLSN(), uint64(3); got != want {
		t.Fatalf("applied LSN %d, want %d", got, want)
	}
	if got := n.st.DatabaseLSNs(); got["fhir"] != 3 || got["audit"] != 2 {
		t.Fatalf("per-database LSNs %v", got)
	}
}

func TestApplyRejectsOutOfOrderRecords(t *testing.T) {
	n := openNode(t, vfs.NewMem(), "n")
	n.write(t, "fhir", set("a", "1"))
	for _, lsn := range []uint64{1, 3} {
		err := n.st.Apply(journal.Record{Type: journal.TypeData, Epoch: 1, LSN: lsn, Database: "fhir", Payload: journal.EncodeOps([]journal.Op{set("a", "x")})})
		if err == nil {
			t.Fatalf("record %d after applied 1 was accepted", lsn)
		}
	}
	if v, _ := get(t, n.st, "fhir", "a"); v != "1" {
		t.Fatalf("rejected record changed data: %q", v)
	}
}

func TestApplyRejectsDamagedPayloadAndChangesNothing(t *testing.T) {
	n := openNode(t, vfs.NewMem(), "n")
	n.write(t, "fhir", set("a", "1"))
	bad := journal.EncodeOps([]journal.Op{set("a", "2")})
	bad = bad[:len(bad)-1]
	if err := n.st.Apply(journal.Record{Type: journal.TypeData, Epoch: 1, LSN: 2, Database: "fhir", Payload: bad}); err == nil {
		t.Fatal("damaged payload applied")
	}
	if n.st.AppliedLSN() != 1 {
		t.Fatalf("applied LSN moved to %d", n.st.AppliedLSN())
	}
}

// TestRecoveryReplaysJournalAfterCrash: Pebble's WAL is off, so a crash loses
// the memtable; every record acknowledged by the journal must come back by
// replay, and nothing else.
func TestRecoveryReplaysJournalAfterCrash(t *testing.T) {
	for _, flushEvery := range []int{0, 7} {
		t.Run(fmt.Sprintf("flushEvery=%d", flushEvery), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			mkdirSynced(t, fs, "n")
			n := openNode(t, fs, "n")
			want := map[string]string{}
			for i := range 50 {
				k := fmt.Sprintf("k%02d", i%13)
				if i%5 == 4 {
					n.write(t, "fhir", del(k))
					delete(want, k)
				} else {
					v := fmt.Sprintf("v%d", i)
					n.write(t, "fhir", set(k, v))
					want[k] = v
				}
				if flushEvery > 0 && i%flushEvery == 0 {
					if err := n.st.Flush(); err != nil {
						t.Fatal(err)
					}
				}
			}
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
			wantHash, err := n.st.ContentHash("fhir")
			if err != nil {
				t.Fatal(err)
			}

			r := openNode(t, crashed, "n")
			if got := r.st.AppliedLSN(); got != 50 {
				t.Fatalf("after recovery applied LSN %d, want 50", got)
			}
			for k, v := range want {
				if got, ok := get(t, r.st, "fhir", k); !ok || got != v {
					t.Fatalf("%s = %q %v after recovery, want %q", k, got, ok, v)
				}
			}
			count := 0
			r.st.Scan("fhir", nil, func(k, v []byte) bool { count++; return true })
			if count != len(want) {
				t.Fatalf("%d keys after recovery, want %d", count, len(want))
			}
			gotHash, _ := r.st.ContentHash("fhir")
			if gotHash != wantHash {
				t.Fatal("content hash differs after recovery")
			}
		})
	}
}

func TestRecoveryRefusesStoreAheadOfJournal(t *testing.T) {
	fs := vfs.NewMem()
	n := openNode(t, fs, "n")
	n.write(t, "fhir", set("a", "1"))
	n.write(t, "fhir", set("b", "2"))
	n.st.Close()
	n.j.Close()
	// A journal that lost records the store applied: a different, empty journal.
	j, err := journal.Open("other-journal", journal.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	st, err := store.Open(filepath.Join("n", "store"), store.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Recover(j); err == nil {
		t.Fatal("recovery accepted a journal behind the store")
	}
}

// TestContentHashEqualOnTwoMembers: two stores fed the same records hash
// alike; one differing value changes the hash.
func TestContentHashEqualOnTwoMembers(t *testing.T) {
	a := openNode(t, vfs.NewMem(), "a")
	b := openNode(t, vfs.NewMem(), "b")
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		op := set(fmt.Sprintf("k%d", rng.IntN(40)), fmt.Sprintf("v%d", i))
		a.write(t, "fhir", op)
		b.write(t, "fhir", op)
	}
	b.st.Flush() // different physical layout, same content
	ha, _ := a.st.ContentHash("fhir")
	hb, _ := b.st.ContentHash("fhir")
	if ha != hb {
		t.Fatal("equal content, different hashes")
	}
	b.write(t, "fhir", set("k1", "different"))
	a.write(t, "fhir", set("k1", "other"))
	ha, _ = a.st.ContentHash("fhir")
	hb, _ = b.st.ContentHash("fhir")
	if ha == hb {
		t.Fatal("different content, equal hashes")
	}
	if e, _ := a.st.ContentHash("audit"); e == ha {
		t.Fatal("empty database hashes like a full one")
	}
}

func TestCheckpointHoldsItsLSN(t *testing.T) {
	dir := t.TempDir()
	n := openNode(t, vfs.Default, filepath.Join(dir, "n"))
	for i := range 20 {
		n.write(t, "fhir", set(fmt.Sprintf("k%d", i), "v"))
	}
	lsn, _, err := n.st.Checkpoint(filepath.Join(dir, "ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	n.write(t, "fhir", set("after", "checkpoint"))
	if lsn != 20 {
		t.Fatalf("checkpoint LSN %d, want 20", lsn)
	}
	c, err := store.Open(filepath.Join(dir, "ckpt"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.AppliedLSN() != 20 {
		t.Fatalf("checkpoint opens at LSN %d", c.AppliedLSN())
	}
	if _, ok := get(t, c, "fhir", "after"); ok {
		t.Fatal("checkpoint holds a write made after it")
	}
	if _, ok := get(t, c, "fhir", "k19"); !ok {
		t.Fatal("checkpoint lacks a write made before it")
	}
}

// mkdirSynced creates dir and syncs its parent, as a node does with its data
// directory, so that the directory itself survives a crash.
func mkdirSynced(tb testing.TB, fs vfs.FS, dir string) {
	tb.Helper()
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	d, err := fs.OpenDir(fs.PathDir(dir))
	if err != nil {
		tb.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		tb.Fatal(err)
	}
}

// TestPurgeNeverPassesTheFlushedLSN: the store runs without a WAL, so its
// memtable dies in a crash and recovery replays the journal after the
// store's on-disk applied LSN. Purging the journal up to what FlushDurable
// returned keeps recovery complete after a crash; purging up to the applied
// LSN alone (the memtable not flushed) would lose records — the second case
// shows the guard is needed.
func TestPurgeNeverPassesTheFlushedLSN(t *testing.T) {
	big := string(make([]byte, 2<<10)) // 7 records a 16 KiB segment
	for _, c := range []struct {
		name      string
		unflushed bool // purge up to the applied LSN without flushing
	}{{"up to the flushed LSN", false}, {"past it (the bug the guard prevents)", true}} {
		t.Run(c.name, func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			mkdirSynced(t, fs, "n")
			n := openNodeSegments(t, fs, "n", 16<<10)
			for i := range 60 {
				n.write(t, "fhir", set(fmt.Sprintf("k%02d", i), big))
			}
			flushed, err := n.st.FlushDurable()
			if err != nil || flushed != 60 {
				t.Fatalf("FlushDurable = %d, %v", flushed, err)
			}
			for i := 60; i < 120; i++ { // applied, in the memtable only
				n.write(t, "fhir", set(fmt.Sprintf("k%03d", i), big))
			}
			upTo := flushed
			if c.unflushed {
				upTo = n.st.AppliedLSN()
			}
			removed, err := n.j.Purge(upTo + 1)
			if err != nil || removed == 0 {
				t.Fatalf("purge below %d: removed %d segments, %v", upTo+1, removed, err)
			}
			if first := n.j.StartLSN(); first > upTo+1 {
				t.Fatalf("purge below %d left the journal starting at %d", upTo+1, first)
			}
			want, _ := n.st.ContentHash("fhir")
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
			j, err := journal.Open(filepath.Join("n", "journal"), journal.Options{FS: crashed, SegmentSize: 16 << 10})
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			st, err := store.Open(filepath.Join("n", "store"), store.Options{FS: crashed})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			_, err = st.Recover(j)
			if c.unflushed {
				if err == nil {
					t.Fatalf("recovery after purging unflushed records succeeded (applied %d): the test does not show the hazard", st.AppliedLSN())
				}
				t.Logf("as expected, recovery fails: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("recovery after a purge up to the flushed LSN: %v", err)
			}
			got, _ := st.ContentHash("fhir")
			if st.AppliedLSN() != 120 || got != want {
				t.Fatalf("recovered applied LSN %d (want 120), content equal %v", st.AppliedLSN(), got == want)
			}
		})
	}
}

// TestGetOfAMissingKeySkipsTablesByFilter: most reads inside a FHIR write
// are of keys that do not exist yet (a new resource's id, its first search
// record); with bloom filters such a Get passes a flushed table without
// reading its blocks.
func TestGetOfAMissingKeySkipsTablesByFilter(t *testing.T) {
	n := openNode(t, vfs.NewMem(), "n")
	for i := range 200 {
		n.write(t, "fhir", set(fmt.Sprintf("c/Patient/%04d", i), "v"))
	}
	if err := n.st.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, ok := get(t, n.st, "fhir", fmt.Sprintf("c/Patient/missing-%d", i)); ok {
			t.Fatal("a missing key was found")
		}
	}
	if v, ok := get(t, n.st, "fhir", "c/Patient/0007"); !ok || v != "v" {
		t.Fatalf("a present key: %q %v", v, ok)
	}
	if hits := store.FilterHits(n.st); hits < 50 {
		t.Fatalf("bloom filters spared %d table reads for 50 missing keys, want at least 50", hits)
	}
	// On the bottom level too, where nearly everything of a store this size
	// lives (Pebble's own Get leaves L6 filters unused).
	if err := store.CompactAll(n.st); err != nil {
		t.Fatal(err)
	}
	before := store.FilterHits(n.st)
	for i := range 50 {
		if _, ok := get(t, n.st, "fhir", fmt.Sprintf("c/Patient/gone-%d", i)); ok {
			t.Fatal("a missing key was found")
		}
	}
	if hits := store.FilterHits(n.st) - before; hits < 50 {
		t.Fatalf("after a full compaction bloom filters spared %d table reads for 50 missing keys, want at least 50", hits)
	}
	for i := range 200 {
		if v, ok := get(t, n.st, "fhir", fmt.Sprintf("c/Patient/%04d", i)); !ok || v != "v" {
			t.Fatalf("key %d after the compaction: %q %v", i, v, ok)
		}
	}
}

// TestApplyBatchAppliesAPrefixUpToABadRecord: records of several databases
// go in one batch with the metadata of the last; a record that does not
// decode stops the batch there — the records before it are applied, it and
// the ones after are not.
func TestApplyBatchAppliesAPrefixUpToABadRecord(t *testing.T) {
	n := openNode(t, vfs.NewMem(), "n")
	rec := func(lsn uint64, db string, payload []byte) journal.Record {
		return journal.Record{Type: journal.TypeData, Epoch: 2, LSN: lsn, Database: db, Payload: payload}
	}
	good := func(k, v string) []byte { return journal.EncodeOps([]journal.Op{set(k, v)}) }
	bad := good("x", "never")
	bad = bad[:len(bad)-1]

	applied, err := n.st.ApplyBatch([]journal.Record{rec(1, "fhir", good("a", "1")), rec(2, "audit", good("b", "2")), rec(3, "fhir", good("a", "3"))})
	if err != nil || applied != 3 {
		t.Fatalf("three good records: %d applied, %v", applied, err)
	}
	if got := n.st.DatabaseLSNs(); got["fhir"] != 3 || got["audit"] != 2 || n.st.AppliedLSN() != 3 || n.st.Epoch() != 2 {
		t.Fatalf("after the batch: per database %v, applied %d, epoch %d", got, n.st.AppliedLSN(), n.st.Epoch())
	}
	if v, _ := get(t, n.st, "fhir", "a"); v != "3" {
		t.Fatalf("a = %q, want the later record's 3", v)
	}

	applied, err = n.st.ApplyBatch([]journal.Record{rec(4, "fhir", good("c", "4")), rec(5, "fhir", bad), rec(6, "fhir", good("d", "6"))})
	if err == nil || applied != 1 {
		t.Fatalf("a bad second record: %d applied, %v; want 1 and an error", applied, err)
	}
	if n.st.AppliedLSN() != 4 {
		t.Fatalf("applied LSN %d, want 4 (the record before the bad one)", n.st.AppliedLSN())
	}
	if _, ok := get(t, n.st, "fhir", "d"); ok {
		t.Fatal("a record after the bad one was applied")
	}
	if applied, err := n.st.ApplyBatch([]journal.Record{rec(6, "fhir", good("d", "6"))}); err == nil || applied != 0 {
		t.Fatalf("a gap (5 missing): %d applied, %v", applied, err)
	}
}
