package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/tandemhealth/tandem/mirror/journal"
)

// Applier feeds journal records to the store, in LSN order, up to a limit
// its owner raises: the commit point. On a standalone node that is the
// journal's durable LSN; on a mirror member it is what the failover core has
// committed, so a record that a later rejoin could cut off is never applied.
//
// One goroutine, owned by the Applier and stopped by Close, does the work.
type Applier struct {
	st *Store
	j  *journal.Journal

	mu      sync.Mutex
	cond    *sync.Cond // wakes the applier goroutine: a higher limit, Close
	limit   uint64
	err     error
	closed  bool
	reset   bool
	waiters []appliedWaiter // WaitApplied calls not yet answered

	done chan struct{}
}

// appliedWaiter is one WaitApplied call: ch is closed once lsn is applied
// or never will be. Each waiter is woken once, when its own record is in
// (a shared condition variable woke every waiter at every record).
type appliedWaiter struct {
	lsn uint64
	ch  chan struct{}
}

// ErrApplierClosed is returned by WaitApplied after Close.
var ErrApplierClosed = errors.New("store: applier closed")

// NewApplier starts applying j's records to st beyond st's applied LSN.
func NewApplier(st *Store, j *journal.Journal) *Applier {
	a := &Applier{st: st, j: j, limit: st.AppliedLSN(), done: make(chan struct{})}
	a.cond = sync.NewCond(&a.mu)
	go a.run()
	return a
}

// SetLimit lets the applier apply records up to lsn. The limit only grows.
func (a *Applier) SetLimit(lsn uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if lsn > a.limit {
		a.limit = lsn
		a.cond.Signal() // the applier goroutine is its only waiter
	}
}

// Limit is the current commit point.
func (a *Applier) Limit() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.limit
}

// ResetReader makes the applier reopen its journal reader: the owner calls
// it after truncating the journal above the commit point.
func (a *Applier) ResetReader() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reset = true
}

// WaitApplied returns once the store has applied lsn, or the applier's
// error (a corrupt record, a store failure) if it never will.
func (a *Applier) WaitApplied(ctx context.Context, lsn uint64) error {
	if a.st.AppliedLSN() >= lsn {
		return nil
	}
	a.mu.Lock()
	if err := a.stoppedLocked(); err != nil || a.st.AppliedLSN() >= lsn {
		a.mu.Unlock()
		return err
	}
	w := appliedWaiter{lsn: lsn, ch: make(chan struct{})}
	a.waiters = append(a.waiters, w)
	a.mu.Unlock()
	select {
	case <-w.ch:
	case <-ctx.Done():
		a.mu.Lock()
		a.dropWaiterLocked(w.ch)
		a.mu.Unlock()
		return ctx.Err()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.st.AppliedLSN() >= lsn {
		return nil
	}
	if err := a.stoppedLocked(); err != nil {
		return err
	}
	return ErrApplierClosed
}

// stoppedLocked is why the applier will apply nothing more (its error, or
// Close), or nil while it runs.
func (a *Applier) stoppedLocked() error {
	switch {
	case a.err != nil:
		return a.err
	case a.closed:
		return ErrApplierClosed
	}
	return nil
}

// wakeLocked answers the waiters whose records are applied — all of them
// once the applier has stopped.
func (a *Applier) wakeLocked() {
	applied, stopped := a.st.AppliedLSN(), a.err != nil || a.closed
	kept := a.waiters[:0]
	for _, w := range a.waiters {
		if stopped || w.lsn <= applied {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	clear(a.waiters[len(kept):])
	a.waiters = kept
}

func (a *Applier) dropWaiterLocked(ch chan struct{}) {
	for i, w := range a.waiters {
		if w.ch == ch {
			a.waiters = append(a.waiters[:i], a.waiters[i+1:]...)
			return
		}
	}
}

// Err is the error that stopped the applier, or nil.
func (a *Applier) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Close stops the applier and waits for its goroutine. It is idempotent.
func (a *Applier) Close() {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		a.cond.Broadcast()
		a.wakeLocked()
	}
	a.mu.Unlock()
	<-a.done
}

func (a *Applier) run() {
	defer close(a.done)
	var r *journal.Reader
	defer func() {
		if r != nil {
			r.Close()
		}
	}()
	for {
		a.mu.Lock()
		for !a.closed && a.st.AppliedLSN() >= a.limit {
			a.cond.Wait()
		}
		if a.closed {
			a.mu.Unlock()
			return
		}
		limit, reset := a.limit, a.reset
		a.reset = false
		a.mu.Unlock()

		if reset && r != nil {
			r.Close()
			r = nil
		}
		err := a.applyUpTo(&r, limit)

		a.mu.Lock()
		if err != nil && a.err == nil {
			a.err = fmt.Errorf("store: applier stopped: %w", err)
		}
		a.wakeLocked()
		stopped := a.err != nil
		a.mu.Unlock()
		if stopped {
			return
		}
	}
}

func (a *Applier) applyUpTo(r **journal.Reader, limit uint64) error {
	var recs []journal.Record
	for a.st.AppliedLSN() < limit {
		if *r == nil {
			nr, err := a.j.NewReader(a.st.AppliedLSN() + 1)
			if err != nil {
				return err
			}
			*r = nr
		}
		var readErr error
		recs, readErr = readBatch(*r, recs[:0], limit-a.st.AppliedLSN())
		if readErr == io.EOF {
			// The limit is ahead of the durable journal: a commit point is
			// only ever set on durable records, so this is a bug.
			return fmt.Errorf("commit point %d is beyond the durable journal (%d)", limit, a.j.DurableLSN())
		}
		_, err := a.st.ApplyBatch(recs) // what was read before a bad record too
		a.mu.Lock()
		a.wakeLocked()
		a.mu.Unlock()
		if err != nil {
			return err
		}
		if readErr != nil {
			return readErr
		}
	}
	return nil
}
