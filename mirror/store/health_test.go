package store

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestFailingFlushesAreReportedUntilOneSucceeds: Pebble retries a failed
// flush on its own and says nothing to its caller; Failing reports it,
// since the first failure, until a flush succeeds.
func TestFailingFlushesAreReportedUntilOneSucceeds(t *testing.T) {
	writesFail := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return errorfs.ErrInjected
		}
		return nil
	})}
	s, err := Open("s", Options{FS: errorfs.Wrap(vfs.NewMem(), writesFail), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		writesFail.Off()
		s.Close()
	}()
	clock := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s.health.mu.Lock()
	s.health.now = func() time.Time { return clock }
	s.health.mu.Unlock()
	if since, err := s.Failing(); !since.IsZero() || err != nil {
		t.Fatalf("a fresh store is failing: %v %v", since, err)
	}

	writesFail.On()
	if err := s.db.Set([]byte("k1"), []byte("v"), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.AsyncFlush(); err != nil {
		t.Fatal(err)
	}
	first := clock
	waitUntil(t, "the failed flush to be reported", func() bool { since, _ := s.Failing(); return !since.IsZero() })
	clock = clock.Add(time.Minute) // Pebble retries: the failure stays dated from the first one
	waitUntil(t, "a retried flush", func() bool {
		since, err := s.Failing()
		return since.Equal(first) && errors.Is(err, errorfs.ErrInjected)
	})

	writesFail.Off() // Pebble's own retry now succeeds
	waitUntil(t, "the failure to clear after a good flush", func() bool { since, err := s.Failing(); return since.IsZero() && err == nil })
	if got, closer, err := s.db.Get([]byte("k1")); err != nil || string(got) != "v" {
		t.Fatalf("the write made while flushes failed: %q %v", got, err)
	} else {
		closer.Close()
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAFlushThatWritesNoTableIsNotAFailure: Pebble ends a flush whose
// memtable held nothing to write with the error "pebble: empty table"; a
// member stopped for it once (found by make faults, seed 317: the node
// that had just taken over stopped 4 s later, "failed for 10s: pebble:
// empty table").
func TestAFlushThatWritesNoTableIsNotAFailure(t *testing.T) {
	h := &flushHealth{now: time.Now}
	h.flushEnd(pebble.FlushInfo{Err: errors.New(emptyTable)})
	if !h.since.IsZero() || h.err != nil {
		t.Fatalf("an empty flush counted as failing: %v %v", h.since, h.err)
	}
	h.flushEnd(pebble.FlushInfo{Err: errorfs.ErrInjected})
	if h.since.IsZero() {
		t.Fatal("a failed flush not counted")
	}
	h.flushEnd(pebble.FlushInfo{Err: errors.New(emptyTable)})
	if !h.since.IsZero() || h.err != nil {
		t.Fatalf("an empty flush after a failure did not clear it: %v %v", h.since, h.err)
	}
}
