package backup

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/mirror/store"
)

// member is a standalone store + journal + sequencer on disk.
type member struct {
	j     *journal.Journal
	st    *store.Store
	seq   *sequencer.Sequencer
	close func()
}

func openMember(t testing.TB, dir string) *member {
	t.Helper()
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{SegmentSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recover(j); err != nil {
		t.Fatal(err)
	}
	seq, stop := sequencer.NewStandalone(j, st, 1)
	m := &member{j: j, st: st, seq: seq}
	m.close = func() { stop(); st.Close(); j.Close() }
	t.Cleanup(func() { m.close() })
	return m
}

// write makes n random writes (sets and deletes over two databases).
func (m *member) write(t testing.TB, rng *rand.Rand, n int) {
	t.Helper()
	for range n {
		db := []string{"fhir", "system"}[rng.IntN(2)]
		key := []byte(fmt.Sprintf("k%03d", rng.IntN(300)))
		var op journal.Op
		if rng.IntN(5) == 0 {
			op = journal.Op{Kind: journal.OpDelete, Key: key}
		} else {
			op = journal.Op{Kind: journal.OpSet, Key: key, Value: []byte(fmt.Sprintf("v%d-%s", rng.Uint64(), strings.Repeat("x", rng.IntN(200))))}
		}
		if _, err := m.seq.Write(context.Background(), db, func(sequencer.View) ([]journal.Op, error) { return []journal.Op{op}, nil }); err != nil {
			t.Fatal(err)
		}
	}
}

func (m *member) hashes(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, db := range m.st.Databases() {
		h, err := m.st.ContentHash(db)
		if err != nil {
			t.Fatal(err)
		}
		out[db] = hex.EncodeToString(h[:])
	}
	return out
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { c.t = c.t.Add(time.Second); return c.t }

type point struct {
	lsn    uint64
	at     time.Time
	hashes map[string]string
}

// history writes in rounds, archiving after each, and returns the points
// (LSN, archive time, content hashes measured on the live store).
func history(t *testing.T, m *member, a *Archiver, c *clock) []point {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	if _, err := a.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	var pts []point
	for round := range 12 {
		m.write(t, rng, 40+rng.IntN(60))
		if round == 5 {
			if _, err := a.Snapshot(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.ArchiveOnce(ctx); err != nil {
			t.Fatal(err)
		}
		cat, err := ReadCatalog(a.Store)
		if err != nil {
			t.Fatal(err)
		}
		last := cat.Chunks[len(cat.Chunks)-1]
		if last.LastLSN != m.st.AppliedLSN() {
			t.Fatalf("archive ends at %d, store at %d", last.LastLSN, m.st.AppliedLSN())
		}
		pts = append(pts, point{lsn: last.LastLSN, at: last.ArchivedAt, hashes: m.hashes(t)})
	}
	return pts
}

func TestRestoreToEveryPointMatchesExactly(t *testing.T) {
	dir := t.TempDir()
	m := openMember(t, filepath.Join(dir, "member"))
	c := &clock{t: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)}
	bs := Dir{Root: filepath.Join(dir, "backup")}
	a := &Archiver{Source: &Local{Member: "b", Store: m.st, Journal: m.j}, Store: bs, Now: c.now, MaxRecords: 37, TempDir: dir}
	pts := history(t, m, a, c)

	cat, err := ReadCatalog(bs)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.Snapshots) != 2 || len(cat.Chunks) < 12 {
		t.Fatalf("catalog: %d snapshots, %d chunks", len(cat.Snapshots), len(cat.Chunks))
	}
	rep, err := Verify(bs)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify: %v %+v", err, rep.Problems)
	}
	ctx := context.Background()
	for i, p := range pts {
		for _, to := range []Target{{LSN: p.lsn}, {Time: p.at}, {Time: p.at.Add(500 * time.Millisecond)}} {
			dest := filepath.Join(dir, fmt.Sprintf("restore-%d-%d-%d", i, to.LSN, to.Time.UnixNano()))
			got, err := Restore(ctx, bs, to, dest)
			if err != nil {
				t.Fatalf("restore to %+v: %v", to, err)
			}
			if got.LSN != p.lsn {
				t.Fatalf("restore to %+v reached LSN %d, want %d", to, got.LSN, p.lsn)
			}
			if fmt.Sprint(got.Hashes) != fmt.Sprint(p.hashes) {
				t.Fatalf("restore to %+v: hashes %v, live store had %v", to, got.Hashes, p.hashes)
			}
			os.RemoveAll(dest)
		}
	}
	// A time before the first archive but after the first snapshot restores
	// the snapshot alone; one before every snapshot is refused.
	if _, err := Restore(ctx, bs, Target{Time: cat.Snapshots[0].TakenAt.Add(-time.Hour)}, filepath.Join(dir, "early")); err == nil {
		t.Fatal("restore to a time before the first snapshot succeeded")
	}
	// LSNs inside chunks, checked against a second member replaying the same
	// journal up to that LSN.
	for _, lsn := range []uint64{1, 2, pts[3].lsn - 5, pts[7].lsn + 1, pts[len(pts)-1].lsn} {
		dest := filepath.Join(dir, fmt.Sprintf("mid-%d", lsn))
		got, err := Restore(ctx, bs, Target{LSN: lsn}, dest)
		if err != nil {
			t.Fatalf("restore to LSN %d: %v", lsn, err)
		}
		if want := replayTo(t, m.j, lsn, filepath.Join(dir, fmt.Sprintf("replay-%d", lsn))); fmt.Sprint(got.Hashes) != fmt.Sprint(want) {
			t.Fatalf("LSN %d: restored %v, replayed %v", lsn, got.Hashes, want)
		}
		// The result starts as a standalone node and continues after lsn.
		r := openMember(t, dest)
		if r.st.AppliedLSN() != lsn || r.j.LastLSN() != lsn {
			t.Fatalf("restored member: store %d journal %d, want %d", r.st.AppliedLSN(), r.j.LastLSN(), lsn)
		}
		r.write(t, rand.New(rand.NewPCG(3, 4)), 3)
		if r.st.AppliedLSN() != lsn+3 {
			t.Fatalf("restored member wrote to LSN %d", r.st.AppliedLSN())
		}
	}
	if _, err := Restore(ctx, bs, Target{LSN: pts[len(pts)-1].lsn + 1}, filepath.Join(dir, "beyond")); err == nil {
		t.Fatal("restore beyond the archive succeeded")
	}
}

// replayTo applies the live journal up to lsn into a fresh store: an
// independent way to know the content at lsn.
func replayTo(t *testing.T, j *journal.Journal, lsn uint64, dir string) map[string]string {
	t.Helper()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := j.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for st.AppliedLSN() < lsn {
		rec, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Apply(rec); err != nil {
			t.Fatal(err)
		}
	}
	m := &member{st: st}
	return m.hashes(t)
}

func setupArchive(t *testing.T) (string, Dir, []point) {
	dir := t.TempDir()
	m := openMember(t, filepath.Join(dir, "member"))
	c := &clock{t: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)}
	bs := Dir{Root: filepath.Join(dir, "backup")}
	a := &Archiver{Source: &Local{Member: "b", Store: m.st, Journal: m.j}, Store: bs, Now: c.now, MaxRecords: 50, TempDir: dir}
	return dir, bs, history(t, m, a, c)
}

func TestCorruptOrMissingDataIsNamedAndNeverRestoredPartially(t *testing.T) {
	dir, bs, pts := setupArchive(t)
	cat, err := ReadCatalog(bs)
	if err != nil {
		t.Fatal(err)
	}
	end := pts[len(pts)-1].lsn
	victim := cat.Chunks[3]
	chunk := filepath.Join(bs.Root, chunkBase(victim.FirstLSN, victim.LastLSN)+".chunk")
	orig, err := os.ReadFile(chunk)
	if err != nil {
		t.Fatal(err)
	}
	big := cat.Snapshots[0].Files[0]
	for _, f := range cat.Snapshots[0].Files {
		if f.Size > big.Size {
			big = f
		}
	}
	snapFile := filepath.Join(bs.Root, snapshotDir(cat.Snapshots[0].LSN), "files", big.Name)
	origSnap, err := os.ReadFile(snapFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		damage func()
		names  string
	}{
		{"flipped byte in a chunk", func() {
			b := append([]byte(nil), orig...)
			b[len(b)/2] ^= 0x40
			os.WriteFile(chunk, b, 0o644)
		}, filepath.Base(chunk)},
		{"truncated chunk", func() { os.WriteFile(chunk, orig[:len(orig)-7], 0o644) }, filepath.Base(chunk)},
		{"missing chunk", func() {
			os.Remove(chunk)
			os.Remove(strings.TrimSuffix(chunk, ".chunk") + ".json")
		}, fmt.Sprintf("LSNs %d-%d are missing", victim.FirstLSN, victim.LastLSN)},
		{"chunk file gone, manifest left", func() { os.Remove(chunk) }, filepath.Base(chunk)},
		{"flipped byte in a snapshot file", func() {
			b := append([]byte(nil), origSnap...)
			b[len(b)-1] ^= 1
			os.WriteFile(snapFile, b, 0o644)
		}, big.Name},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.damage()
			defer func() {
				os.WriteFile(chunk, orig, 0o644)
				writeJSON(bs, chunkBase(victim.FirstLSN, victim.LastLSN)+".json", victim)
				os.WriteFile(snapFile, origSnap, 0o644)
			}()
			rep, err := Verify(bs)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) == 0 || !strings.Contains(fmt.Sprint(rep.Problems), tc.names) {
				t.Fatalf("verify did not name %q: %+v", tc.names, rep.Problems)
			}
			// A restore across the damage (from the first snapshot) fails,
			// names it and leaves nothing.
			dest := filepath.Join(dir, "r-"+strings.ReplaceAll(tc.name, " ", "-"))
			_, err = Restore(context.Background(), bs, Target{LSN: cat.Snapshots[1].LSN - 1}, dest)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.names) {
				t.Fatalf("restore error %v does not name %q", err, tc.names)
			}
			if _, serr := os.Stat(dest); !os.IsNotExist(serr) {
				t.Fatalf("a failed restore left %s behind", dest)
			}
		})
	}
	// Undamaged again: restores.
	if _, err := Restore(context.Background(), bs, Target{LSN: end}, filepath.Join(dir, "ok")); err != nil {
		t.Fatal(err)
	}
}

func TestArchivingStopsAtAFork(t *testing.T) {
	dir := t.TempDir()
	m := openMember(t, filepath.Join(dir, "member"))
	c := &clock{t: time.Now()}
	bs := Dir{Root: filepath.Join(dir, "backup")}
	a := &Archiver{Source: &Local{Member: "a", Store: m.st, Journal: m.j}, Store: bs, Now: c.now, TempDir: dir}
	if _, err := a.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.write(t, rand.New(rand.NewPCG(1, 1)), 20)
	if _, err := a.ArchiveOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Another member whose history differs from LSN 1 on (a forced
	// promotion elsewhere): same LSNs, other records.
	other := openMember(t, filepath.Join(dir, "other"))
	other.write(t, rand.New(rand.NewPCG(9, 9)), 30)
	a.Source = &Local{Member: "dr", Store: other.st, Journal: other.j}
	n, err := a.ArchiveOnce(context.Background())
	if !errors.Is(err, ErrForked) || n != 0 {
		t.Fatalf("archived %d records from a forked source, err %v", n, err)
	}
	// Uncommitted records are never archived.
	m2 := &Local{Member: "a", Store: m.st, Journal: m.j, Committed: func() uint64 { return 10 }}
	frames, err := m2.Records(context.Background(), 1, 100)
	if err != nil || len(frames) != 10 {
		t.Fatalf("records up to commit point 10: %d, %v", len(frames), err)
	}
}

func TestPruneKeepsWhatTheNewestSnapshotsNeed(t *testing.T) {
	dir, bs, pts := setupArchive(t)
	before, _ := ReadCatalog(bs)
	s, c, err := Prune(bs, 1)
	if err != nil || s != 1 || c == 0 {
		t.Fatalf("prune: %d snapshots %d chunks, %v", s, c, err)
	}
	after, _ := ReadCatalog(bs)
	if len(after.Snapshots) != 1 || after.Snapshots[0].LSN != before.Snapshots[1].LSN {
		t.Fatalf("kept snapshots %+v", after.Snapshots)
	}
	if rep, err := Verify(bs); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify after prune: %v %+v", err, rep.Problems)
	}
	last := pts[len(pts)-1]
	got, err := Restore(context.Background(), bs, Target{LSN: last.lsn}, filepath.Join(dir, "after-prune"))
	if err != nil || fmt.Sprint(got.Hashes) != fmt.Sprint(last.hashes) {
		t.Fatalf("restore after prune: %v %v", err, got.Hashes)
	}
	if _, err := Restore(context.Background(), bs, Target{LSN: pts[0].lsn}, filepath.Join(dir, "pruned-point")); err == nil {
		t.Fatal("restored to a point whose snapshot was pruned")
	}
}

func TestRunArchivesContinuouslyAndSnapshotsPeriodically(t *testing.T) {
	dir := t.TempDir()
	m := openMember(t, filepath.Join(dir, "member"))
	bs := Dir{Root: filepath.Join(dir, "backup")}
	c := &clock{t: time.Now()} // one second per call: a snapshot every few rounds
	a := &Archiver{Source: &Local{Member: "b", Store: m.st, Journal: m.j}, Store: bs, Now: c.now, TempDir: dir}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, 10*time.Millisecond, 5*time.Second) }()
	rng := rand.New(rand.NewPCG(7, 7))
	for range 10 {
		m.write(t, rng, 20)
		time.Sleep(15 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cat, err := ReadCatalog(bs)
		if err != nil {
			t.Fatal(err)
		}
		if cat.ArchivedLSN() == m.st.AppliedLSN() && len(cat.Snapshots) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive at %d, store at %d, %d snapshots", cat.ArchivedLSN(), m.st.AppliedLSN(), len(cat.Snapshots))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(bs); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("verify: %v %+v", err, rep.Problems)
	}
}
