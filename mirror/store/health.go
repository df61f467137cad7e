package store

import (
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// flushHealth follows Pebble's memtable flushes, which it retries on its
// own, forever, when the disk fails under it (a vanished directory, EIO):
// writes stall once the memtables are full and nothing else says so. It
// records since when flushes have been failing with no success in between.
//
// Only flushes count: a failed flush is always retried and every write
// waits on flushes, so one that keeps failing is a store that no longer
// works. A compaction that fails is logged by Pebble and may not be tried
// again for a long time on an idle store, so it says nothing about now.
type flushHealth struct {
	now func() time.Time

	mu    sync.Mutex
	since time.Time // first failed flush since the last good one
	err   error
}

// emptyTable is how Pebble reports a flush that wrote no table (every key
// in the memtable deleted): a success (Pebble's own metamorphic test
// treats it so too; the error value is not exported).
const emptyTable = "pebble: empty table"

func (h *flushHealth) flushEnd(info pebble.FlushInfo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if info.Err == nil || info.Err.Error() == emptyTable {
		h.since, h.err = time.Time{}, nil
		return
	}
	if h.since.IsZero() {
		h.since = h.now()
	}
	h.err = info.Err
}

// Failing reports since when Pebble's memtable flushes have failed with no
// success since, and the latest error; zero time and nil when they are
// not failing. Pebble retries them itself: a caller that needs the store
// to work decides how long a failure may last.
func (s *Store) Failing() (since time.Time, err error) {
	h := s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.since, h.err
}
