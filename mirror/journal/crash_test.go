package journal

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// crashPoint is a crash clone taken right before or right after a sync,
// with the durable LSN the journal had acknowledged at that moment.
type crashPoint struct {
	fs      *vfs.MemFS
	durable uint64
	where   string
}

// crashRecorder takes a crash clone at every sync of the FS it wraps.
type crashRecorder struct {
	mem     *vfs.MemFS
	cfg     func() vfs.CrashCloneCfg
	j       atomic.Pointer[Journal]
	floor   atomic.Uint64 // durable LSN known before j is set (recovery)
	mu      sync.Mutex
	points  []crashPoint
	enabled atomic.Bool
}

func (c *crashRecorder) fs() vfs.FS {
	return &syncHookFS{FS: c.mem, hook: func(path string, after bool) {
		if !c.enabled.Load() {
			return
		}
		durable := c.floor.Load()
		if j := c.j.Load(); j != nil {
			durable = max(durable, j.DurableLSN())
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		where := "before"
		if after {
			where = "after"
		}
		c.points = append(c.points, crashPoint{
			fs:      c.mem.CrashClone(c.cfg()),
			durable: durable,
			where:   fmt.Sprintf("%s sync #%d of %s", where, len(c.points)/2, path),
		})
	}}
}

// TestCrashAtEverySync runs concurrent appends with frequent rollovers and
// takes a crash clone right before and right after every fsync (file and
// directory). Every clone must open cleanly and replay exactly a contiguous
// prefix of what was enqueued, byte-identical, including at least every
// acknowledged record; the recovered journal must accept appends that
// survive a further crash at each of its syncs.
func TestCrashAtEverySync(t *testing.T) {
	// Small segments exercise rollover and directory syncs; larger ones let
	// a commit group span several 4 KiB blocks, so a crash clone can keep a
	// later block of an unsynced group and lose an earlier one.
	configs := []struct {
		name     string
		unsynced int
		seed     uint64
		segSize  int64
		writers  int
	}{
		{"synced-only/small-segments", 0, 0, 1024, 4},
		{"synced-only/large-segments", 0, 0, 32 << 10, 8},
		{"unsynced-50pct-seed1/small-segments", 50, 1, 1024, 4},
		{"unsynced-50pct-seed2/small-segments", 50, 2, 1024, 4},
		{"unsynced-50pct-seed3/large-segments", 50, 3, 32 << 10, 8},
		{"unsynced-50pct-seed4/large-segments", 50, 4, 32 << 10, 8},
		{"unsynced-90pct-seed5/large-segments", 90, 5, 32 << 10, 8},
		{"unsynced-100pct/small-segments", 100, 6, 1024, 4},
	}
	for _, tc := range configs {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(tc.seed, 99))
			var rngMu sync.Mutex
			cfg := func() vfs.CrashCloneCfg {
				if tc.unsynced == 0 {
					return vfs.CrashCloneCfg{}
				}
				rngMu.Lock()
				defer rngMu.Unlock()
				// Each clone gets its own RNG so clones can be taken concurrently.
				return vfs.CrashCloneCfg{UnsyncedDataPercent: tc.unsynced, RNG: rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))}
			}
			rec := &crashRecorder{mem: vfs.NewCrashableMem(), cfg: cfg}
			rec.enabled.Store(true)
			fs := rec.fs()
			j, err := Open(testDir, Options{FS: fs, SegmentSize: tc.segSize})
			if err != nil {
				t.Fatal(err)
			}
			rec.j.Store(j)

			var mu sync.Mutex
			enqueued := map[uint64]Record{}
			var wg sync.WaitGroup
			writers, each := tc.writers, 25
			if tc.segSize > 4096 {
				each = 60
			}
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					r := rand.New(rand.NewPCG(tc.seed, uint64(w)))
					// Bursts of enqueues before waiting, like a sequencer: commit
					// groups of up to writers×6 records.
					var pend []*Pending
					for i := 0; i < each; i++ {
						size := r.IntN(300)
						if r.IntN(10) == 0 {
							size = 2000 + r.IntN(3000)
						}
						payload := payloadFor(w*1000+i, size)
						db := fmt.Sprintf("db%d", w)
						mu.Lock() // hold across Enqueue so the map knows every LSN a clone can hold
						p, err := j.Enqueue(TypeData, 1, db, payload)
						if err != nil {
							mu.Unlock()
							t.Error(err)
							return
						}
						enqueued[p.LSN] = Record{Type: TypeData, Epoch: 1, LSN: p.LSN, Database: db, Payload: payload}
						mu.Unlock()
						pend = append(pend, p)
						if len(pend) < 1+r.IntN(6) && i < each-1 {
							continue
						}
						for _, p := range pend {
							if err := p.Wait(context.Background()); err != nil {
								t.Error(err)
								return
							}
						}
						pend = pend[:0]
					}
				}(w)
			}
			wg.Wait()
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			rec.enabled.Store(false)
			points := rec.points
			if len(points) < 40 {
				t.Fatalf("only %d crash points", len(points))
			}
			if tc.segSize < 4096 && len(j.Segments()) < 10 {
				t.Fatalf("only %d segments: rollover not exercised", len(j.Segments()))
			}
			expect := func(lsn uint64) (Record, bool) { r, ok := enqueued[lsn]; return r, ok }
			var st crashStats
			for i, pt := range points {
				// Recovery and the first append after it are crash-tested too,
				// on every fourth point (each nested run takes several clones).
				deep := i%4 == 0
				verifyCrashClone(t, pt, expect, deep, cfg, tc.segSize, &st)
			}
			t.Logf("%d crash points, %d nested recovery crash points, %d records; %d clones had a torn tail, %d of them with valid frames of the torn group after the tear",
				len(points), st.nested, len(enqueued), st.torn, st.tornWithLater)
			if tc.unsynced == 50 && tc.segSize > 4096 && st.tornWithLater == 0 {
				t.Errorf("no clone had valid frames after a tear: the torn-group rule was not exercised")
			}
		})
	}
}

// verifyCrashClone opens a crash clone and checks it; with deep, it also
// crash-tests recovery and one append on the clone. It returns the number
// of nested crash points checked.
type crashStats struct{ nested, torn, tornWithLater int }

func verifyCrashClone(t *testing.T, pt crashPoint, expect func(uint64) (Record, bool), deep bool, cfg func() vfs.CrashCloneCfg, segSize int64, st *crashStats) {
	t.Helper()
	var fs vfs.FS = pt.fs
	var rec *crashRecorder
	if deep {
		rec = &crashRecorder{mem: pt.fs, cfg: cfg}
		rec.floor.Store(pt.durable)
		rec.enabled.Store(true)
		fs = rec.fs()
	}
	if tornAt, ok := tornWithLaterFrame(pt.fs); ok {
		st.torn++
		if tornAt {
			st.tornWithLater++
		}
	}
	last := checkReplay(t, pt.where, fs, pt.durable, expect, segSize)
	if !deep {
		return
	}
	// Append after recovery, then crash at each sync of that run.
	j, err := Open(testDir, Options{FS: fs, SegmentSize: segSize})
	if err != nil {
		t.Fatalf("%s: reopen: %v", pt.where, err)
	}
	rec.floor.Store(last)
	rec.j.Store(j)
	extra := Record{Type: TypeData, Epoch: 1, LSN: last + 1, Database: "after", Payload: []byte(pt.where)}
	lsn, err := j.Append(context.Background(), extra.Type, extra.Epoch, extra.Database, extra.Payload)
	if err != nil || lsn != last+1 {
		t.Fatalf("%s: append after recovery: %d %v", pt.where, lsn, err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	rec.enabled.Store(false)
	expect2 := func(l uint64) (Record, bool) {
		if l == extra.LSN {
			return extra, true
		}
		return expect(l)
	}
	for _, np := range rec.points {
		np.where = pt.where + " / recovery: " + np.where
		checkReplay(t, np.where, np.fs, np.durable, expect2, segSize)
	}
	if got := checkReplay(t, pt.where+" / after append", pt.fs, last+1, expect2, segSize); got != last+1 {
		t.Fatalf("%s: after append, last %d, want %d", pt.where, got, last+1)
	}
	st.nested += len(rec.points)
}

// tornWithLaterFrame inspects the last segment of a clone without changing
// it: torn reports whether its tail is torn, later whether a valid frame
// follows the tear.
func tornWithLaterFrame(fs *vfs.MemFS) (later, torn bool) {
	names, err := fs.List(testDir)
	if err != nil {
		return false, false
	}
	var lastName string
	for _, n := range names {
		if _, ok := parseSegmentName(n); ok && n > lastName {
			lastName = n
		}
	}
	if lastName == "" {
		return false, false
	}
	f, err := fs.Open(fs.PathJoin(testDir, lastName))
	if err != nil {
		return false, false
	}
	defer f.Close()
	st, _ := f.Stat()
	fr := newFrameReader(f, st.Size())
	off := int64(SegmentHeaderSize)
	for off < st.Size() {
		_, n, ferr, err := fr.frameAt(off)
		if err != nil {
			return false, false
		}
		if ferr != nil {
			_, found, _ := fr.findFrame(off+1, 0)
			return found != nil, true
		}
		off += int64(n)
	}
	return false, false
}

// checkReplay opens fs, checks every record is exactly what was enqueued at
// its LSN, LSNs are contiguous from 1 and at least minDurable records came
// back; it returns the last LSN.
func checkReplay(t *testing.T, where string, fs vfs.FS, minDurable uint64, expect func(uint64) (Record, bool), segSize int64) uint64 {
	t.Helper()
	j, err := Open(testDir, Options{FS: fs, SegmentSize: segSize})
	if err != nil {
		t.Fatalf("%s: Open: %v", where, err)
	}
	defer j.Close()
	got, err := tryReadAll(j, 1)
	if err != nil {
		t.Fatalf("%s: replay: %v", where, err)
	}
	for i, r := range got {
		if r.LSN != uint64(i+1) {
			t.Fatalf("%s: record %d has LSN %d", where, i, r.LSN)
		}
		want, ok := expect(r.LSN)
		if !ok {
			t.Fatalf("%s: replayed LSN %d that was never enqueued", where, r.LSN)
		}
		if err := sameRecord(r, want); err != nil {
			t.Fatalf("%s: LSN %d: %v", where, r.LSN, err)
		}
	}
	last := uint64(len(got))
	if last < minDurable {
		t.Fatalf("%s: lost acknowledged records: replayed up to %d, durable was %d (recovery %+v)", where, last, minDurable, j.Recovery())
	}
	if j.LastLSN() != last || j.DurableLSN() != last {
		t.Fatalf("%s: last %d durable %d, replayed %d", where, j.LastLSN(), j.DurableLSN(), last)
	}
	return last
}
