package store

import (
	"errors"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// backgroundHealth follows Pebble's background work — memtable flushes
// and compactions — which it retries on its own, forever, when the disk
// fails under it (a vanished directory, EIO): writes then stall once the
// memtables are full and nothing else says so. It records since when
// each kind of work has been failing without a success in between.
type backgroundHealth struct {
	now func() time.Time

	mu          sync.Mutex
	flushSince  time.Time // first failed flush since the last good one
	flushErr    error
	compactFrom time.Time // same for compactions
	compactErr  error
}

func (h *backgroundHealth) flushEnd(info pebble.FlushInfo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.flushSince, h.flushErr = h.next(h.flushSince, info.Err)
}

func (h *backgroundHealth) compactionEnd(info pebble.CompactionInfo) {
	if errors.Is(info.Err, pebble.ErrCancelledCompaction) {
		return // cancelled on purpose (an excise, a close): not a failure
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.compactFrom, h.compactErr = h.next(h.compactFrom, info.Err)
}

// next is the failing-since time after a piece of work ended with err.
func (h *backgroundHealth) next(since time.Time, err error) (time.Time, error) {
	if err == nil {
		return time.Time{}, nil
	}
	if since.IsZero() {
		since = h.now()
	}
	return since, err
}

// Failing reports since when Pebble's background flushes or compactions
// have failed with no success since, and the latest error; zero time and
// nil when they are not failing. Pebble retries them itself: a caller that
// needs the store to work decides how long a failure may last.
func (s *Store) Failing() (since time.Time, err error) {
	h := s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case !h.flushSince.IsZero() && (h.compactFrom.IsZero() || h.flushSince.Before(h.compactFrom)):
		return h.flushSince, h.flushErr
	case !h.compactFrom.IsZero():
		return h.compactFrom, h.compactErr
	}
	return time.Time{}, nil
}
