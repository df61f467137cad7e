package journal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

func TestAppendReadReopen(t *testing.T) {
	fs := vfs.NewMem()
	j := mustOpen(t, fs, Options{SegmentSize: 300})
	if j.LastLSN() != 0 || j.DurableLSN() != 0 || j.FirstLSN() != 0 {
		t.Fatalf("empty journal: last %d durable %d first %d", j.LastLSN(), j.DurableLSN(), j.FirstLSN())
	}
	var want []Record
	m, err := j.Append(context.Background(), TypeEpochMarker, 1, "", EncodeEpochMarker(0, 0))
	if err != nil || m != 1 {
		t.Fatalf("marker: %d %v", m, err)
	}
	want = append(want, Record{Type: TypeEpochMarker, Epoch: 1, LSN: 1, Payload: EncodeEpochMarker(0, 0)})
	for i := 2; i <= 40; i++ {
		p := payloadFor(i, i*3)
		if lsn := mustAppend(t, j, "fhir", p); lsn != uint64(i) {
			t.Fatalf("LSN %d, want %d", lsn, i)
		}
		want = append(want, Record{Type: TypeData, Epoch: 1, LSN: uint64(i), Database: "fhir", Payload: p})
	}
	if j.DurableLSN() != 40 || j.LastLSN() != 40 || j.FirstLSN() != 1 {
		t.Fatalf("last %d durable %d first %d", j.LastLSN(), j.DurableLSN(), j.FirstLSN())
	}
	segs := j.Segments()
	if len(segs) < 3 {
		t.Fatalf("expected rollovers, got %d segments", len(segs))
	}
	checkSegments(t, segs, 40)
	check := func(j *Journal) {
		t.Helper()
		got := readAll(t, j, 1)
		if len(got) != len(want) {
			t.Fatalf("read %d records, want %d", len(got), len(want))
		}
		for i := range want {
			if err := sameRecord(got[i], want[i]); err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
		}
	}
	check(j)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := j.Enqueue(TypeData, 1, "fhir", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Enqueue after Close: %v", err)
	}

	j = mustOpen(t, fs, Options{SegmentSize: 300})
	defer j.Close()
	if rep := j.Recovery(); rep.TruncatedBytes != 0 || rep.TruncatedSegment != "" || rep.LastLSN != 40 || rep.Segments != len(segs) {
		t.Fatalf("recovery report %+v", rep)
	}
	if j.LastLSN() != 40 || j.DurableLSN() != 40 {
		t.Fatalf("after reopen: last %d durable %d", j.LastLSN(), j.DurableLSN())
	}
	check(j)
	p := payloadFor(41, 10)
	if lsn := mustAppend(t, j, "audit", p); lsn != 41 {
		t.Fatalf("LSN after reopen %d", lsn)
	}
	want = append(want, Record{Type: TypeData, Epoch: 1, LSN: 41, Database: "audit", Payload: p})
	check(j)
}

// checkSegments checks the segment list is contiguous and ends at last.
func checkSegments(t *testing.T, segs []SegmentInfo, last uint64) {
	t.Helper()
	for i, s := range segs {
		if s.Name != segmentName(s.FirstLSN) {
			t.Fatalf("segment %d: name %s for first LSN %d", i, s.Name, s.FirstLSN)
		}
		if i > 0 && segs[i-1].LastLSN+1 != s.FirstLSN {
			t.Fatalf("segment %d starts at %d after %d", i, s.FirstLSN, segs[i-1].LastLSN)
		}
	}
	if segs[len(segs)-1].LastLSN != last {
		t.Fatalf("last segment ends at %d, want %d", segs[len(segs)-1].LastLSN, last)
	}
}

func TestEnqueueRejects(t *testing.T) {
	j := mustOpen(t, vfs.NewMem(), Options{})
	defer j.Close()
	if _, err := j.Append(context.Background(), TypeData, 5, "fhir", nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		typ     RecordType
		epoch   uint64
		db      string
		payload []byte
		want    error
	}{
		{"empty database", TypeData, 5, "", nil, ErrBadDatabase},
		{"upper case", TypeData, 5, "FHIR", nil, ErrBadDatabase},
		{"slash", TypeData, 5, "a/b", nil, ErrBadDatabase},
		{"too long", TypeData, 5, string(make([]byte, 65)), nil, ErrBadDatabase},
		{"marker with database", TypeEpochMarker, 5, "fhir", EncodeEpochMarker(1, 1), ErrBadDatabase},
		{"marker bad payload", TypeEpochMarker, 5, "", []byte{1}, ErrBadRecord},
		{"unknown type", RecordType(7), 5, "fhir", nil, ErrBadRecord},
		{"too large", TypeData, 5, "fhir", make([]byte, MaxPayload+1), ErrTooLarge},
		{"epoch regressed", TypeData, 4, "fhir", nil, ErrEpochRegressed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := j.Enqueue(tc.typ, tc.epoch, tc.db, tc.payload); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if j.LastLSN() != 1 {
		t.Fatalf("rejected records took LSNs: last %d", j.LastLSN())
	}
	// The longest legal name and the largest payload are accepted.
	name := "a-_0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop"[:MaxDatabaseName]
	if _, err := j.Append(context.Background(), TypeData, 5, name, make([]byte, MaxPayload)); err != nil {
		t.Fatal(err)
	}
}

func TestEnqueueRecord(t *testing.T) {
	j := mustOpen(t, vfs.NewMem(), Options{})
	defer j.Close()
	rec := Record{Type: TypeData, Epoch: 2, LSN: 1, Database: "fhir", Payload: []byte("x")}
	p, err := j.EnqueueRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(context.Background()); err != nil || p.LSN != 1 {
		t.Fatalf("%d %v", p.LSN, err)
	}
	for _, lsn := range []uint64{0, 1, 3} {
		rec.LSN = lsn
		if _, err := j.EnqueueRecord(rec); !errors.Is(err, ErrLSNOutOfOrder) {
			t.Fatalf("LSN %d: got %v", lsn, err)
		}
	}
	rec.LSN = 2
	if _, err := j.EnqueueRecord(rec); err != nil {
		t.Fatal(err)
	}
}

func TestStartLSN(t *testing.T) {
	fs := vfs.NewMem()
	j := mustOpen(t, fs, Options{StartLSN: 5000})
	if j.LastLSN() != 4999 {
		t.Fatalf("last %d", j.LastLSN())
	}
	if _, err := j.EnqueueRecord(Record{Type: TypeData, LSN: 5000, Database: "fhir"}); err != nil {
		t.Fatal(err)
	}
	if _, err := j.NewReader(4999); !errors.Is(err, ErrPurged) {
		t.Fatalf("reader below start: %v", err)
	}
	j.Close()
	j = mustOpen(t, fs, Options{StartLSN: 1}) // ignored: the journal exists
	defer j.Close()
	if got := readAll(t, j, 5000); len(got) != 1 || got[0].LSN != 5000 {
		t.Fatalf("got %v", got)
	}
}

func TestConcurrentAppends(t *testing.T) {
	fs := vfs.NewMem()
	j := mustOpen(t, fs, Options{SegmentSize: 4096})
	defer j.Close()
	const writers, each = 32, 50
	var mu sync.Mutex
	payloads := map[uint64][]byte{}
	var wg sync.WaitGroup
	// A reader follows the appends concurrently.
	readerDone := make(chan error, 1)
	go func() {
		r, err := j.NewReader(1)
		if err != nil {
			readerDone <- err
			return
		}
		defer r.Close()
		next := uint64(1)
		deadline := time.Now().Add(20 * time.Second)
		for next <= writers*each {
			rec, err := r.Next()
			if err == io.EOF {
				if time.Now().After(deadline) {
					readerDone <- fmt.Errorf("reader stuck at %d", next)
					return
				}
				time.Sleep(100 * time.Microsecond)
				continue
			}
			if err != nil {
				readerDone <- err
				return
			}
			if rec.LSN != next {
				readerDone <- fmt.Errorf("reader got LSN %d, want %d", rec.LSN, next)
				return
			}
			if rec.LSN > j.DurableLSN() {
				readerDone <- fmt.Errorf("reader got LSN %d beyond durable %d", rec.LSN, j.DurableLSN())
				return
			}
			next++
		}
		readerDone <- nil
	}()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				p := []byte(fmt.Sprintf("w%d-i%d", w, i))
				lsn, err := j.Append(context.Background(), TypeData, 1, "fhir", p)
				if err != nil {
					t.Error(err)
					return
				}
				if d := j.DurableLSN(); d < lsn {
					t.Errorf("Append returned LSN %d before durable (%d)", lsn, d)
				}
				mu.Lock()
				if _, dup := payloads[lsn]; dup {
					t.Errorf("LSN %d assigned twice", lsn)
				}
				payloads[lsn] = p
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	if err := <-readerDone; err != nil {
		t.Fatal(err)
	}
	lsns := make([]uint64, 0, len(payloads))
	for l := range payloads {
		lsns = append(lsns, l)
	}
	sort.Slice(lsns, func(a, b int) bool { return lsns[a] < lsns[b] })
	for i, l := range lsns {
		if l != uint64(i+1) {
			t.Fatalf("LSNs not contiguous: position %d has %d", i, l)
		}
	}
	got := readAll(t, j, 1)
	if len(got) != writers*each {
		t.Fatalf("read %d, want %d", len(got), writers*each)
	}
	for _, rec := range got {
		if string(rec.Payload) != string(payloads[rec.LSN]) {
			t.Fatalf("LSN %d payload differs", rec.LSN)
		}
	}
}

func TestReaderFromAnyLSN(t *testing.T) {
	fs := vfs.NewMem()
	j := mustOpen(t, fs, Options{SegmentSize: 200})
	defer j.Close()
	const n = 60
	for i := 1; i <= n; i++ {
		mustAppend(t, j, "fhir", payloadFor(i, 20))
	}
	if len(j.Segments()) < 5 {
		t.Fatalf("want several segments, got %d", len(j.Segments()))
	}
	for from := uint64(0); from <= n+2; from++ {
		got := readAll(t, j, from)
		start := max(from, 1)
		wantN := 0
		if start <= n {
			wantN = int(n - start + 1)
		}
		if len(got) != wantN {
			t.Fatalf("from %d: %d records, want %d", from, len(got), wantN)
		}
		for i, rec := range got {
			if rec.LSN != start+uint64(i) || string(rec.Payload) != string(payloadFor(int(rec.LSN), 20)) {
				t.Fatalf("from %d: record %d is LSN %d", from, i, rec.LSN)
			}
		}
	}
	// A reader at the end sees later appends.
	r, err := j.NewReader(n + 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("got %v, want io.EOF", err)
	}
	mustAppend(t, j, "fhir", []byte("late"))
	if rec, err := r.Next(); err != nil || string(rec.Payload) != "late" {
		t.Fatalf("got %v %v", rec, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("got %v, want io.EOF", err)
	}
}

// TestReaderNeverReadsPastDurable holds the committer between its write and
// its fsync and checks a reader does not return the written, unsynced record.
func TestReaderNeverReadsPastDurable(t *testing.T) {
	mem := vfs.NewMem()
	var armed sync.Mutex
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	var hold bool
	fs := &syncHookFS{FS: mem, hook: func(path string, after bool) {
		armed.Lock()
		h := hold
		armed.Unlock()
		if h && !after {
			entered <- struct{}{}
			<-gate
		}
	}}
	j := mustOpen(t, fs, Options{})
	defer j.Close()
	mustAppend(t, j, "fhir", []byte("one"))
	armed.Lock()
	hold = true
	armed.Unlock()
	p, err := j.Enqueue(TypeData, 1, "fhir", []byte("two"))
	if err != nil {
		t.Fatal(err)
	}
	<-entered // written, not yet synced
	got := readAll(t, j, 1)
	if len(got) != 1 || j.DurableLSN() != 1 {
		t.Fatalf("read %d records with durable %d before the fsync", len(got), j.DurableLSN())
	}
	armed.Lock()
	hold = false
	armed.Unlock()
	close(gate)
	if err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, j, 1); len(got) != 2 {
		t.Fatalf("read %d after fsync", len(got))
	}
}

func TestPurge(t *testing.T) {
	fs := vfs.NewMem()
	j := mustOpen(t, fs, Options{SegmentSize: 200})
	defer j.Close()
	for i := 1; i <= 50; i++ {
		mustAppend(t, j, "fhir", payloadFor(i, 30))
	}
	segs := j.Segments()
	if len(segs) < 4 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	// Below the second segment's first LSN: only the first segment goes.
	n, err := j.Purge(segs[1].FirstLSN)
	if err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v; want 1", n, err)
	}
	// One below the third's first LSN: the second still holds that LSN.
	if n, err := j.Purge(segs[2].FirstLSN - 1); err != nil || n != 0 {
		t.Fatalf("Purge = %d, %v; want 0", n, err)
	}
	if j.FirstLSN() != segs[1].FirstLSN {
		t.Fatalf("FirstLSN %d, want %d", j.FirstLSN(), segs[1].FirstLSN)
	}
	if _, err := j.NewReader(segs[1].FirstLSN - 1); !errors.Is(err, ErrPurged) {
		t.Fatalf("reader below FirstLSN: %v", err)
	}
	if got := readAll(t, j, segs[1].FirstLSN); len(got) != int(50-segs[1].FirstLSN+1) {
		t.Fatalf("read %d", len(got))
	}
	if names, _ := fs.List(testDir); contains(names, segs[0].Name) {
		t.Fatalf("%s still on disk", segs[0].Name)
	}
	// Purging everything keeps the active segment.
	n, err = j.Purge(1 << 62)
	if err != nil || n != len(segs)-2 {
		t.Fatalf("Purge all = %d, %v; want %d", n, err, len(segs)-2)
	}
	left := j.Segments()
	if len(left) != 1 || left[0].Name != segs[len(segs)-1].Name {
		t.Fatalf("left %v", left)
	}
	// A reader positioned before the purge fails cleanly, not with corruption.
	j2fs := vfs.NewMem()
	j2 := mustOpen(t, j2fs, Options{SegmentSize: 200})
	defer j2.Close()
	for i := 1; i <= 30; i++ {
		mustAppend(t, j2, "fhir", payloadFor(i, 30))
	}
	r, err := j2.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := j2.Purge(j2.Segments()[2].FirstLSN); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := r.Next()
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrPurged) {
			t.Fatalf("reader across a purge: %v", err)
		}
		break
	}
	// Reopen after purge: recovery starts at the first remaining segment.
	j.Close()
	j = mustOpen(t, fs, Options{SegmentSize: 200})
	defer j.Close()
	if j.FirstLSN() != left[0].FirstLSN || j.LastLSN() != 50 {
		t.Fatalf("after reopen first %d last %d", j.FirstLSN(), j.LastLSN())
	}
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// TestFsyncFailure injects an fsync error: the journal becomes unusable for
// good, the record is not acknowledged, and the fsync is not retried.
func TestFsyncFailure(t *testing.T) {
	for _, op := range []errorfs.OpKind{errorfs.OpFileSyncData, errorfs.OpFileWriteAt} {
		t.Run(fmt.Sprint(op), func(t *testing.T) {
			var fail, syncs sync.Mutex
			failing := false
			var syncCalls int
			inj := errorfs.InjectorFunc(func(o errorfs.Op) error {
				fail.Lock()
				defer fail.Unlock()
				if o.Kind == errorfs.OpFileSyncData || o.Kind == errorfs.OpFileSync {
					syncs.Lock()
					syncCalls++
					syncs.Unlock()
				}
				if failing && o.Kind == op {
					return errorfs.ErrInjected
				}
				return nil
			})
			fs := errorfs.Wrap(vfs.NewMem(), inj)
			j := mustOpen(t, fs, Options{})
			defer j.Close()
			mustAppend(t, j, "fhir", []byte("ok"))
			fail.Lock()
			failing = true
			fail.Unlock()
			p, err := j.Enqueue(TypeData, 1, "fhir", []byte("lost"))
			if err != nil {
				t.Fatal(err)
			}
			err = p.Wait(context.Background())
			if !errors.Is(err, ErrUnusable) || !errors.Is(err, errorfs.ErrInjected) {
				t.Fatalf("Wait = %v; want ErrUnusable wrapping the injected error", err)
			}
			fail.Lock()
			failing = false // the disk "recovers": the journal must not
			calls := syncCalls
			fail.Unlock()
			if !errors.Is(j.Err(), ErrUnusable) {
				t.Fatalf("Err() = %v", j.Err())
			}
			if _, err := j.Enqueue(TypeData, 1, "fhir", []byte("later")); !errors.Is(err, ErrUnusable) {
				t.Fatalf("Enqueue after failure: %v", err)
			}
			if _, err := j.Append(context.Background(), TypeData, 1, "fhir", nil); !errors.Is(err, ErrUnusable) {
				t.Fatalf("Append after failure: %v", err)
			}
			if _, err := j.Purge(100); !errors.Is(err, ErrUnusable) {
				t.Fatalf("Purge after failure: %v", err)
			}
			if j.DurableLSN() != 1 {
				t.Fatalf("durable %d after failed fsync", j.DurableLSN())
			}
			time.Sleep(10 * time.Millisecond)
			fail.Lock()
			if syncCalls != calls {
				t.Fatalf("fsync retried: %d calls after the failure, %d before", syncCalls, calls)
			}
			fail.Unlock()
			if err := j.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// TestFailureFailsQueuedWaiters: every record queued behind a failed fsync
// gets the error, not a hang.
func TestFailureFailsQueuedWaiters(t *testing.T) {
	var failing sync.Mutex
	on := false
	inj := errorfs.InjectorFunc(func(o errorfs.Op) error {
		failing.Lock()
		defer failing.Unlock()
		if on && o.Kind == errorfs.OpFileSyncData {
			time.Sleep(time.Millisecond) // let more records queue
			return errorfs.ErrInjected
		}
		return nil
	})
	j := mustOpen(t, errorfs.Wrap(vfs.NewMem(), inj), Options{})
	defer j.Close()
	failing.Lock()
	on = true
	failing.Unlock()
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := j.Append(ctx, TypeData, 1, "fhir", []byte("x"))
			if !errors.Is(err, ErrUnusable) {
				t.Errorf("Append = %v, want ErrUnusable", err)
			}
		}()
	}
	wg.Wait()
}

func TestWaitContext(t *testing.T) {
	mem := vfs.NewMem()
	gate := make(chan struct{})
	var once sync.Once
	var block bool
	var mu sync.Mutex
	fs := &syncHookFS{FS: mem, hook: func(string, bool) {
		mu.Lock()
		b := block
		mu.Unlock()
		if b {
			once.Do(func() { <-gate })
		}
	}}
	j := mustOpen(t, fs, Options{})
	mu.Lock()
	block = true
	mu.Unlock()
	p, err := j.Enqueue(TypeData, 1, "fhir", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v", err)
	}
	close(gate)
	if err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Close drains: a record enqueued before Close is durable after it.
	p2, err := j.Enqueue(TypeData, 1, "fhir", []byte("last"))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p2.Wait(context.Background()); err != nil {
		t.Fatalf("record enqueued before Close: %v", err)
	}
	if _, err := j.NewReader(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewReader after Close: %v", err)
	}
}

func TestOpenLocks(t *testing.T) {
	fs := vfs.NewMem()
	j := mustOpen(t, fs, Options{})
	defer j.Close()
	if _, err := Open(testDir, Options{FS: fs}); err == nil {
		t.Fatal("second Open of a locked journal succeeded")
	}
}

// TestGroupCommitSharesFsync holds the committer inside an fsync: Enqueue
// keeps returning at once (it never waits on I/O), and every record queued
// meanwhile is made durable by one further fsync.
func TestGroupCommitSharesFsync(t *testing.T) {
	var mu sync.Mutex
	hold := false
	entered := make(chan struct{}, 1)
	gate := make(chan struct{})
	fs := &syncHookFS{FS: vfs.NewMem(), hook: func(path string, after bool) {
		mu.Lock()
		h := hold
		hold = false
		mu.Unlock()
		if h && !after {
			entered <- struct{}{}
			<-gate
		}
	}}
	j := mustOpen(t, fs, Options{})
	defer j.Close()
	before := j.Stats()
	mu.Lock()
	hold = true
	mu.Unlock()
	first, err := j.Enqueue(TypeData, 1, "fhir", []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	const n = 50
	pend := make([]*Pending, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range pend {
			p, err := j.Enqueue(TypeData, 1, "fhir", payloadFor(i, 100))
			if err != nil {
				t.Error(err)
				return
			}
			pend[i] = p
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Enqueue blocked while the committer was in fsync")
	}
	if j.DurableLSN() != 0 || j.LastLSN() != n+1 {
		t.Fatalf("durable %d last %d while the first fsync is held", j.DurableLSN(), j.LastLSN())
	}
	close(gate)
	for _, p := range append([]*Pending{first}, pend...) {
		if err := p.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	after := j.Stats()
	if g, s := after.Groups-before.Groups, after.Syncs-before.Syncs; g != 2 || s != 2 {
		t.Fatalf("%d groups and %d fsyncs for %d records, want 2 and 2", g, s, n+1)
	}
	if after.Records-before.Records != n+1 {
		t.Fatalf("stats count %d records", after.Records-before.Records)
	}
}

// TestLoneWriterIsNotDelayed: a closed-loop writer alone never waits for a
// commit delay, however long it may be: the committer expects back only
// the writers it just released (one), and that one is already queued.
// With an hour's delay, a wait would end the test on its context.
func TestLoneWriterIsNotDelayed(t *testing.T) {
	j := mustOpen(t, vfs.NewMem(), Options{MaxCommitDelay: time.Hour})
	defer j.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := j.Stats()
	const n = 50
	for i := range n {
		if _, err := j.Append(ctx, TypeData, 1, "fhir", payloadFor(i, 100)); err != nil {
			t.Fatalf("write %d: %v (the committer waited for writers that were not coming)", i, err)
		}
	}
	if g := j.Stats().Groups - before.Groups; g != n {
		t.Fatalf("%d groups for %d lone writes, want one each", g, n)
	}
}
