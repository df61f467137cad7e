package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/mirror/store"
)

// readAll returns every record of the journal in dir.
func readAll(t *testing.T, dir string) []journal.Record {
	t.Helper()
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.FirstLSN() != 1 {
		t.Fatalf("journal starts at LSN %d, want 1", j.FirstLSN())
	}
	r, err := j.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var recs []journal.Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return recs
		}
		if err != nil {
			t.Fatal(err)
		}
		rec.Payload = bytes.Clone(rec.Payload)
		recs = append(recs, rec)
	}
}

// checkNewTier checks the shape of a new-tier data directory: the epoch-1
// marker at LSN 1, then data records of epoch 1 in database and key order
// (each within NewTierMaxPayload unless it holds a single key), a store
// recovered to the journal's end, and nothing of the old tier.
func checkNewTier(t *testing.T, dest string, rep RestoreReport) []journal.Record {
	t.Helper()
	nt := rep.NewTier
	if nt == nil || nt.Epoch != 1 || nt.FirstLSN != 1 {
		t.Fatalf("new tier report %+v", nt)
	}
	recs := readAll(t, filepath.Join(dest, "journal"))
	first := journal.Record{Type: journal.TypeEpochMarker, Epoch: 1, LSN: 1, Payload: journal.EncodeEpochMarker(0, 0)}
	if len(recs) == 0 || fmt.Sprint(recs[0]) != fmt.Sprint(first) {
		t.Fatalf("first record %+v, want the epoch-1 marker every new member starts with", recs[0])
	}
	if uint64(len(recs)) != nt.LastLSN || len(recs)-1 != nt.DataRecords {
		t.Fatalf("journal holds %d records, report says last LSN %d, %d data records", len(recs), nt.LastLSN, nt.DataRecords)
	}
	var lastDB string
	var lastKey []byte
	keys := 0
	for i, rec := range recs[1:] {
		if rec.Type != journal.TypeData || rec.Epoch != 1 || rec.LSN != uint64(i+2) {
			t.Fatalf("record %d: type %v epoch %d LSN %d", i+2, rec.Type, rec.Epoch, rec.LSN)
		}
		ops, err := journal.DecodeOps(rec.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Payload) > NewTierMaxPayload && len(ops) != 1 {
			t.Fatalf("record %d: %d bytes in %d ops", rec.LSN, len(rec.Payload), len(ops))
		}
		if rec.Database < lastDB {
			t.Fatalf("record %d: database %s after %s", rec.LSN, rec.Database, lastDB)
		}
		if rec.Database != lastDB {
			lastDB, lastKey = rec.Database, nil
		}
		for _, op := range ops {
			if op.Kind != journal.OpSet || (lastKey != nil && bytes.Compare(op.Key, lastKey) <= 0) {
				t.Fatalf("record %d: op %v %q after %q", rec.LSN, op.Kind, op.Key, lastKey)
			}
			lastKey = op.Key
			keys++
		}
	}
	if keys != nt.Keys {
		t.Fatalf("%d keys in the journal, report says %d", keys, nt.Keys)
	}
	st, err := store.Open(filepath.Join(dest, "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.AppliedLSN() != nt.LastLSN || st.Epoch() != 1 {
		t.Fatalf("store applied %d epoch %d, journal ends at %d", st.AppliedLSN(), st.Epoch(), nt.LastLSN)
	}
	st.Close()
	for _, gone := range []string{"hardstate.json", "FENCED", "node.pid", ".source"} {
		if _, err := os.Stat(filepath.Join(dest, gone)); !os.IsNotExist(err) {
			t.Fatalf("%s exists in a new-tier directory", gone)
		}
	}
	var onDisk RestoreReport
	b, err := os.ReadFile(filepath.Join(dest, "RESTORED.json"))
	if err == nil {
		err = json.Unmarshal(b, &onDisk)
	}
	if err != nil || onDisk.NewTier == nil || *onDisk.NewTier != *nt || onDisk.LSN != rep.LSN || fmt.Sprint(onDisk.Hashes) != fmt.Sprint(rep.Hashes) {
		t.Fatalf("RESTORED.json %s (%v)", b, err)
	}
	if _, err := os.Stat(filepath.Join(dest, NewTierSeedFile)); err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestRestoreNewTierMatchesPlainRestore (issue 14): at every target the
// new-tier restore holds exactly the content of the plain restore, as a
// journal of a new tier from LSN 1, written deterministically.
func TestRestoreNewTierMatchesPlainRestore(t *testing.T) {
	dir, bs, pts := setupArchive(t)
	ctx := context.Background()
	for i, to := range []Target{{LSN: 1}, {LSN: pts[0].lsn}, {LSN: pts[3].lsn - 7}, {LSN: pts[7].lsn}, {Time: pts[9].at}, {}} {
		plain, err := Restore(ctx, bs, to, filepath.Join(dir, fmt.Sprintf("plain-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(dir, fmt.Sprintf("tier-%d", i))
		rep, err := RestoreNewTier(ctx, bs, to, dest)
		if err != nil {
			t.Fatalf("new-tier restore to %+v: %v", to, err)
		}
		if rep.LSN != plain.LSN || rep.Epoch != plain.Epoch || fmt.Sprint(rep.Hashes) != fmt.Sprint(plain.Hashes) || len(rep.Hashes) == 0 {
			t.Fatalf("target %+v: new tier LSN %d hashes %v, plain restore LSN %d hashes %v", to, rep.LSN, rep.Hashes, plain.LSN, plain.Hashes)
		}
		recs := checkNewTier(t, dest, rep)
		// Deterministic: a second restore to the same target writes the
		// same records (frames differ only in their commit-group LSN).
		again := filepath.Join(dir, fmt.Sprintf("again-%d", i))
		if _, err := RestoreNewTier(ctx, bs, to, again); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(readAll(t, filepath.Join(again, "journal"))) != fmt.Sprint(recs) {
			t.Fatalf("target %+v: two new-tier restores wrote different records", to)
		}
		// The result starts as a node and continues after the new tier's
		// last LSN, with the same content.
		m := openMember(t, dest)
		if got := m.hashes(t); fmt.Sprint(got) != fmt.Sprint(plain.Hashes) {
			t.Fatalf("reopened: %v", got)
		}
		m.write(t, rand.New(rand.NewPCG(3, 4)), 2)
		if m.st.AppliedLSN() != rep.NewTier.LastLSN+2 {
			t.Fatalf("wrote to LSN %d after a new tier ending at %d", m.st.AppliedLSN(), rep.NewTier.LastLSN)
		}
		m.close()
		t.Logf("target %+v: source LSN %d -> new tier LSNs 1-%d (%d keys in %d records)", to, rep.LSN, rep.NewTier.LastLSN, rep.NewTier.Keys, rep.NewTier.DataRecords)
	}
	if _, err := RestoreNewTier(ctx, bs, Target{}, filepath.Join(dir, "tier-0")); err == nil {
		t.Fatal("a new-tier restore over an existing directory succeeded")
	}
}

// TestRestoreNewTierBatchesLargeContent: content larger than one record is
// split at NewTierMaxPayload, a value larger than that gets a record of
// its own, and a database whose keys were all deleted still exists.
func TestRestoreNewTierBatchesLargeContent(t *testing.T) {
	dir := t.TempDir()
	m := openMember(t, filepath.Join(dir, "member"))
	ctx := context.Background()
	put := func(db string, ops ...journal.Op) {
		t.Helper()
		if _, err := m.seq.Write(ctx, db, func(sequencer.View) ([]journal.Op, error) { return ops, nil }); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(8, 8))
	for i := range 60 {
		v := make([]byte, 20<<10)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		put("fhir", journal.Op{Kind: journal.OpSet, Key: []byte(fmt.Sprintf("Patient/%03d", i)), Value: v})
	}
	put("fhir", journal.Op{Kind: journal.OpSet, Key: []byte("Binary/big"), Value: bytes.Repeat([]byte("b"), NewTierMaxPayload+1000)})
	put("scratch", journal.Op{Kind: journal.OpSet, Key: []byte("x"), Value: []byte("1")})
	put("scratch", journal.Op{Kind: journal.OpDelete, Key: []byte("x")})
	bs := Dir{Root: filepath.Join(dir, "backup")}
	a := &Archiver{Source: &Local{Member: "b", Store: m.st, Journal: m.j}, Store: bs, TempDir: dir}
	if _, err := a.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	plain, err := Restore(ctx, bs, Target{}, filepath.Join(dir, "plain"))
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "tier")
	rep, err := RestoreNewTier(ctx, bs, Target{}, dest)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rep.Hashes) != fmt.Sprint(plain.Hashes) || len(rep.Hashes) != 2 {
		t.Fatalf("new tier %v, plain %v", rep.Hashes, plain.Hashes)
	}
	recs := checkNewTier(t, dest, rep)
	// 60 × 20 KiB in 256 KiB records: 5 records, the big value alone: 1,
	// the empty database: 1.
	if rep.NewTier.DataRecords != 7 || rep.NewTier.Keys != 61 {
		t.Fatalf("%d data records, %d keys", rep.NewTier.DataRecords, rep.NewTier.Keys)
	}
	if last := recs[len(recs)-1]; last.Database != "scratch" || len(last.Payload) != journal.OpsHeaderSize {
		t.Fatalf("last record: %s, %d bytes", last.Database, len(last.Payload))
	}
}

// TestRestoreNewTierFailsWholeOnDamage: a corrupt or missing chunk fails a
// new-tier restore, names the damage and leaves no directory.
func TestRestoreNewTierFailsWholeOnDamage(t *testing.T) {
	dir, bs, pts := setupArchive(t)
	cat, err := ReadCatalog(bs)
	if err != nil {
		t.Fatal(err)
	}
	victim := cat.Chunks[3]
	chunk := filepath.Join(bs.Root, chunkBase(victim.FirstLSN, victim.LastLSN)+".chunk")
	orig, err := os.ReadFile(chunk)
	if err != nil {
		t.Fatal(err)
	}
	target := Target{LSN: cat.Snapshots[1].LSN - 1}
	for _, tc := range []struct {
		name   string
		damage func()
		names  string
	}{
		{"corrupt", func() {
			b := bytes.Clone(orig)
			b[len(b)/3] ^= 0x10
			os.WriteFile(chunk, b, 0o644)
		}, filepath.Base(chunk)},
		{"missing", func() {
			os.Remove(chunk)
			os.Remove(strings.TrimSuffix(chunk, ".chunk") + ".json")
		}, fmt.Sprintf("LSNs %d-%d are missing", victim.FirstLSN, victim.LastLSN)},
	} {
		tc.damage()
		dest := filepath.Join(dir, "r-"+tc.name)
		_, err := RestoreNewTier(context.Background(), bs, target, dest)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.names) {
			t.Fatalf("%s chunk: error %v does not name %q", tc.name, err, tc.names)
		}
		if _, serr := os.Stat(dest); !os.IsNotExist(serr) {
			t.Fatalf("%s chunk: a failed new-tier restore left %s behind", tc.name, dest)
		}
		os.WriteFile(chunk, orig, 0o644)
		writeJSON(bs, chunkBase(victim.FirstLSN, victim.LastLSN)+".json", victim)
	}
	if _, err := RestoreNewTier(context.Background(), bs, Target{LSN: pts[len(pts)-1].lsn}, filepath.Join(dir, "ok")); err != nil {
		t.Fatal(err)
	}
}
