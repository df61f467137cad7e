package sequencer_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/mirror/store"
)

// open starts a sequencer over a journal and store in dir on fs.
func open(tb testing.TB, fs vfs.FS, dir string) (*sequencer.Sequencer, *journal.Journal, *store.Store) {
	tb.Helper()
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{FS: fs})
	if err != nil {
		tb.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "store"), store.Options{FS: fs})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := st.Recover(j); err != nil {
		tb.Fatal(err)
	}
	a := store.NewApplier(st, j)
	s := sequencer.New(sequencer.JournalLog{J: j, Epoch: 1, Applier: a}, st, a)
	tb.Cleanup(func() { a.Close(); st.Close(); j.Close() })
	return s, j, st
}

var errConflict = errors.New("version conflict")

// updateIfVersion is an If-Match write: it succeeds only if the key's
// current version is want, and bumps it.
func updateIfVersion(key string, want int) sequencer.WriteFunc {
	return func(v sequencer.View) ([]journal.Op, error) {
		cur, ok, err := v.Get([]byte(key))
		if err != nil {
			return nil, err
		}
		have := 0
		if ok {
			have, _ = strconv.Atoi(string(cur))
		}
		if have != want {
			return nil, fmt.Errorf("%w: have %d, want %d", errConflict, have, want)
		}
		return []journal.Op{{Kind: journal.OpSet, Key: []byte(key), Value: []byte(strconv.Itoa(want + 1))}}, nil
	}
}

// createIfAbsent is a conditional create.
func createIfAbsent(key, value string) sequencer.WriteFunc {
	return func(v sequencer.View) ([]journal.Op, error) {
		_, ok, err := v.Get([]byte(key))
		if err != nil {
			return nil, err
		}
		if ok {
			return nil, errConflict
		}
		return []journal.Op{{Kind: journal.OpSet, Key: []byte(key), Value: []byte(value)}}, nil
	}
}

// TestConcurrentIfMatchExactlyOneWinsPerVersion: many goroutines race
// If-Match updates on one key, each trying every version in turn. Exactly
// one writer wins each version, and the final version equals the number of
// wins — no lost update, no double win, even though the group commit keeps
// many writes sequenced but not yet durable.
func TestConcurrentIfMatchExactlyOneWinsPerVersion(t *testing.T) {
	// The real disk, so that group commit really batches concurrent writers.
	s, j, st := open(t, vfs.Default, t.TempDir())
	const writers, versions = 32, 40
	var mu sync.Mutex
	winners := map[int][]int{} // version -> writers that won it
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ver := range versions {
				_, err := s.Write(context.Background(), "fhir", updateIfVersion("Patient/1", ver))
				if err == nil {
					mu.Lock()
					winners[ver] = append(winners[ver], w)
					mu.Unlock()
				} else if !errors.Is(err, errConflict) {
					t.Errorf("writer %d version %d: %v", w, ver, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for ver := range versions {
		if n := len(winners[ver]); n != 1 {
			t.Errorf("version %d had %d winners %v, want exactly 1", ver, n, winners[ver])
		}
	}
	v, ok, err := st.Get("fhir", []byte("Patient/1"))
	if err != nil || !ok || string(v) != strconv.Itoa(versions) {
		t.Fatalf("final version %q %v %v, want %d", v, ok, err, versions)
	}
	if st.AppliedLSN() != j.DurableLSN() {
		t.Fatalf("applied %d != durable %d after all writers returned", st.AppliedLSN(), j.DurableLSN())
	}
}

// TestConcurrentConditionalCreate: of many writers creating the same keys,
// exactly one wins each key.
func TestConcurrentConditionalCreate(t *testing.T) {
	s, _, st := open(t, vfs.NewMem(), "n")
	const writers, keys = 16, 25
	wins := make([]int, keys)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				_, err := s.Write(context.Background(), "fhir", createIfAbsent(fmt.Sprintf("k%d", k), strconv.Itoa(w)))
				if err == nil {
					mu.Lock()
					wins[k]++
					mu.Unlock()
				} else if !errors.Is(err, errConflict) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for k, n := range wins {
		if n != 1 {
			t.Errorf("key k%d created %d times", k, n)
		}
	}
	if got := st.AppliedLSN(); got != keys+0 {
		t.Fatalf("applied LSN %d, want %d records (one per key)", got, keys)
	}
}

func TestRejectedWriteJournalsNothing(t *testing.T) {
	s, j, _ := open(t, vfs.NewMem(), "n")
	before := j.LastLSN()
	_, err := s.Write(context.Background(), "fhir", updateIfVersion("x", 5))
	if !errors.Is(err, errConflict) {
		t.Fatalf("err %v, want conflict", err)
	}
	if j.LastLSN() != before {
		t.Fatal("a rejected write reached the journal")
	}
}

func TestWriteReturnsOnlyWhenDurableAndApplied(t *testing.T) {
	s, j, st := open(t, vfs.NewMem(), "n")
	lsn, err := s.Write(context.Background(), "fhir", createIfAbsent("a", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if j.DurableLSN() < lsn || st.AppliedLSN() < lsn {
		t.Fatalf("returned LSN %d with durable %d applied %d", lsn, j.DurableLSN(), st.AppliedLSN())
	}
}

// TestJournalFailureStopsTheSequencer: after the log fails, no write
// succeeds, and writes decided against the overlay are not kept.
func TestFailStopsEveryLaterWrite(t *testing.T) {
	s, j, _ := open(t, vfs.NewMem(), "n")
	if _, err := s.Write(context.Background(), "fhir", createIfAbsent("a", "1")); err != nil {
		t.Fatal(err)
	}
	s.Fail(errors.New("stepped down"))
	before := j.LastLSN()
	if _, err := s.Write(context.Background(), "fhir", createIfAbsent("b", "1")); !errors.Is(err, sequencer.ErrFailed) {
		t.Fatalf("write after Fail: %v", err)
	}
	if j.LastLSN() != before {
		t.Fatal("a write reached the journal after Fail")
	}
}

// TestBadInputDoesNotStopTheSequencer: a bad database name is refused and
// changes nothing; the next write goes through.
func TestBadInputDoesNotStopTheSequencer(t *testing.T) {
	s, j, _ := open(t, vfs.NewMem(), "n")
	before := j.LastLSN()
	if _, err := s.Write(context.Background(), "Bad Name", createIfAbsent("a", "1")); !errors.Is(err, journal.ErrBadDatabase) {
		t.Fatalf("bad database: %v", err)
	}
	if j.LastLSN() != before {
		t.Fatal("bad input consumed an LSN")
	}
	if _, err := s.Write(context.Background(), "fhir", createIfAbsent("a", "1")); err != nil {
		t.Fatalf("write after bad input: %v", err)
	}
}

// heldLog is a JournalLog whose proposals are not committed until release
// is closed, so their writes stay in the sequencer's overlay.
type heldLog struct {
	sequencer.JournalLog
	proposed chan uint64
	release  chan struct{}
}

func (l heldLog) Propose(db string, payload []byte) (sequencer.Proposal, error) {
	p, err := l.JournalLog.Propose(db, payload)
	if err == nil {
		l.proposed <- p.LSN()
	}
	return heldProposal{p, l.release}, err
}

type heldProposal struct {
	sequencer.Proposal
	release chan struct{}
}

func (p heldProposal) Wait(ctx context.Context) error {
	<-p.release
	return p.Proposal.Wait(ctx)
}

// TestViewScanSeesSequencedWrites: a prefix scan inside a write sees the
// store with every write sequenced but not yet committed laid over it
// (sets, replaced values, deletes), in key order, and stops when asked.
func TestViewScanSeesSequencedWrites(t *testing.T) {
	fs := vfs.NewMem()
	j, err := journal.Open("j", journal.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open("s", store.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	a := store.NewApplier(st, j)
	defer func() { a.Close(); st.Close(); j.Close() }()
	log := heldLog{JournalLog: sequencer.JournalLog{J: j, Epoch: 1, Applier: a}, proposed: make(chan uint64, 4), release: make(chan struct{})}
	s := sequencer.New(log, st, a)
	set := func(kv ...string) sequencer.WriteFunc {
		return func(sequencer.View) ([]journal.Op, error) {
			var ops []journal.Op
			for i := 0; i < len(kv); i += 2 {
				if kv[i+1] == "-" {
					ops = append(ops, journal.Op{Kind: journal.OpDelete, Key: []byte(kv[i])})
				} else {
					ops = append(ops, journal.Op{Kind: journal.OpSet, Key: []byte(kv[i]), Value: []byte(kv[i+1])})
				}
			}
			return ops, nil
		}
	}
	close(log.release) // the first write is committed and applied
	if _, err := s.Write(context.Background(), "fhir", set("p/a", "1", "p/b", "2", "p/c", "3", "q/x", "9", "o/z", "8")); err != nil {
		t.Fatal(err)
	}
	<-log.proposed
	log.release = make(chan struct{})
	s = sequencer.New(log, st, a)
	done := make(chan error)
	go func() {
		_, err := s.Write(context.Background(), "fhir", set("p/b", "20", "p/c", "-", "p/d", "4", "p/0", "0", "q/y", "7"))
		done <- err
	}()
	<-log.proposed // sequenced, held uncommitted
	if st.AppliedLSN() != 1 {
		t.Fatalf("applied LSN %d, want 1: the second write must still be in the overlay", st.AppliedLSN())
	}
	errSeen := errors.New("seen")
	scan := func(limit int) []string {
		var got []string
		_, err := s.Write(context.Background(), "fhir", func(v sequencer.View) ([]journal.Op, error) {
			err := v.Scan([]byte("p/"), func(k, val []byte) bool {
				got = append(got, string(k)+"="+string(val))
				return len(got) < limit
			})
			if err != nil {
				return nil, err
			}
			return nil, errSeen
		})
		if !errors.Is(err, errSeen) {
			t.Fatal(err)
		}
		return got
	}
	if got, want := fmt.Sprint(scan(100)), "[p/0=0 p/a=1 p/b=20 p/d=4]"; got != want {
		t.Fatalf("scan %s, want %s", got, want)
	}
	for limit, want := range map[int]string{1: "[p/0=0]", 2: "[p/0=0 p/a=1]", 3: "[p/0=0 p/a=1 p/b=20]"} {
		if got := fmt.Sprint(scan(limit)); got != want {
			t.Fatalf("scan stopping after %d: %s, want %s", limit, got, want)
		}
	}
	close(log.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(scan(100)), "[p/0=0 p/a=1 p/b=20 p/d=4]"; got != want {
		t.Fatalf("scan after commit %s, want %s", got, want)
	}
}
