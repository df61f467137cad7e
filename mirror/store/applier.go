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

	mu     sync.Mutex
	cond   *sync.Cond
	limit  uint64
	err    error
	closed bool
	reset  bool

	done chan struct{}
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
		a.cond.Broadcast()
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
	stop := context.AfterFunc(ctx, func() {
		a.mu.Lock()
		a.cond.Broadcast()
		a.mu.Unlock()
	})
	defer stop()
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.st.AppliedLSN() < lsn {
		if a.err != nil {
			return a.err
		}
		if a.closed {
			return ErrApplierClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		a.cond.Wait()
	}
	return nil
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
		a.cond.Broadcast()
		stopped := a.err != nil
		a.mu.Unlock()
		if stopped {
			return
		}
	}
}

func (a *Applier) applyUpTo(r **journal.Reader, limit uint64) error {
	for a.st.AppliedLSN() < limit {
		if *r == nil {
			nr, err := a.j.NewReader(a.st.AppliedLSN() + 1)
			if err != nil {
				return err
			}
			*r = nr
		}
		rec, err := (*r).Next()
		if err == io.EOF {
			// The limit is ahead of the durable journal: a commit point is
			// only ever set on durable records, so this is a bug.
			return fmt.Errorf("commit point %d is beyond the durable journal (%d)", limit, a.j.DurableLSN())
		}
		if err != nil {
			return err
		}
		if err := a.st.Apply(rec); err != nil {
			return err
		}
		a.mu.Lock()
		a.cond.Broadcast()
		a.mu.Unlock()
	}
	return nil
}
