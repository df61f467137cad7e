// Package sequencer orders the writes of a primary: one writer order per
// node, in LSN order.
//
// A write is a function that reads the current state and returns the
// key/value operations to journal. The function runs under the sequencer's
// lock and sees every write already sequenced, including those not yet
// durable, so version checks (If-Match, conditional create, idempotency
// keys) can never let two concurrent writers both win. The sequencer then
// waits for the journal's group commit, applies the record to the store in
// LSN order, and only then returns to the caller.
//
// The sequencer must never let a caller see success for a record that is not
// durable in the journal and applied to the store, and never applies records
// out of LSN order.
package sequencer

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/store"
)

// ErrFailed is wrapped by every call after the journal or the store failed;
// the node must step down and be recovered from its journal.
var ErrFailed = errors.New("sequencer: failed, the node must restart and recover")

// View is the state a write function sees: the store plus every write
// sequenced before it.
type View struct {
	s  *Sequencer
	db string
}

// Get returns the value of key as of every write sequenced so far.
func (v View) Get(key []byte) ([]byte, bool, error) {
	if e, ok := v.s.overlay[v.db][string(key)]; ok {
		if e.deleted {
			return nil, false, nil
		}
		return e.value, true, nil
	}
	return v.s.st.Get(v.db, key)
}

// WriteFunc decides what a write does. It must not block and must not call
// the sequencer. Returning an error sequences nothing.
type WriteFunc func(v View) ([]journal.Op, error)

type overlayEntry struct {
	value   []byte
	deleted bool
	lsn     uint64
}

type queued struct {
	rec journal.Record
	ops []journal.Op
}

// Sequencer is the single writer order of a node.
type Sequencer struct {
	j  *journal.Journal
	st *store.Store

	mu      sync.Mutex // sequencing: overlay, queue, epoch
	epoch   uint64
	overlay map[string]map[string]overlayEntry
	queue   []queued // sequenced, not yet applied, in LSN order
	err     error

	applyMu sync.Mutex // one applier at a time, in LSN order
}

// New returns a sequencer writing in epoch over a journal and a store that
// has already recovered (its applied LSN equals the journal's last LSN).
func New(j *journal.Journal, st *store.Store, epoch uint64) (*Sequencer, error) {
	if st.AppliedLSN() != j.LastLSN() {
		return nil, fmt.Errorf("sequencer: store applied LSN %d != journal last LSN %d: recover the store first", st.AppliedLSN(), j.LastLSN())
	}
	return &Sequencer{j: j, st: st, epoch: epoch, overlay: map[string]map[string]overlayEntry{}}, nil
}

// Epoch returns the epoch new records are written in.
func (s *Sequencer) Epoch() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// Write sequences one atomic write to database db and returns its LSN once
// it is durable and applied. fn's error is returned as is, with nothing
// written.
func (s *Sequencer) Write(ctx context.Context, db string, fn WriteFunc) (uint64, error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return 0, s.err
	}
	ops, err := fn(View{s: s, db: db})
	if err != nil {
		s.mu.Unlock()
		return 0, err
	}
	payload := journal.EncodeOps(ops)
	p, err := s.j.Enqueue(journal.TypeData, s.epoch, db, payload)
	if err != nil {
		s.mu.Unlock()
		if errors.Is(err, journal.ErrUnusable) {
			s.fail(err)
		}
		return 0, err
	}
	rec := journal.Record{Type: journal.TypeData, Epoch: s.epoch, LSN: p.LSN, Database: db, Payload: payload}
	s.queue = append(s.queue, queued{rec: rec, ops: ops})
	m := s.overlay[db]
	if m == nil {
		m = map[string]overlayEntry{}
		s.overlay[db] = m
	}
	for _, op := range ops {
		m[string(op.Key)] = overlayEntry{value: op.Value, deleted: op.Kind == journal.OpDelete, lsn: p.LSN}
	}
	s.mu.Unlock()

	if err := p.Wait(ctx); err != nil {
		if errors.Is(err, journal.ErrUnusable) {
			s.fail(err)
		}
		// A cancelled wait does not un-sequence the write: it may still
		// become durable. The caller must treat the outcome as unknown.
		return 0, fmt.Errorf("sequencer: write at LSN %d: outcome unknown: %w", p.LSN, err)
	}
	if err := s.applyDurable(p.LSN); err != nil {
		return 0, err
	}
	return p.LSN, nil
}

// applyDurable applies, in LSN order, every queued record that is durable,
// at least up to lsn.
func (s *Sequencer) applyDurable(lsn uint64) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	for s.st.AppliedLSN() < lsn {
		s.mu.Lock()
		if s.err != nil {
			s.mu.Unlock()
			return s.err
		}
		q := s.queue[0]
		s.mu.Unlock()
		if q.rec.LSN > s.j.DurableLSN() {
			return fmt.Errorf("sequencer: LSN %d not durable while %d is: %w", q.rec.LSN, lsn, ErrFailed)
		}
		rec := q.rec
		if err := s.st.Apply(rec); err != nil {
			s.fail(err)
			return s.err
		}
		s.mu.Lock()
		s.queue = s.queue[1:]
		m := s.overlay[rec.Database]
		for _, op := range q.ops {
			if e, ok := m[string(op.Key)]; ok && e.lsn == rec.LSN {
				delete(m, string(op.Key))
			}
		}
		s.mu.Unlock()
	}
	return nil
}

func (s *Sequencer) fail(cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = fmt.Errorf("%w: %w", ErrFailed, cause)
	}
}

// Err reports why the sequencer stopped, or nil.
func (s *Sequencer) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
