// Package sequencer orders the writes of a primary: one writer order per
// node, in LSN order.
//
// A write is a function that reads the current state and returns the
// key/value operations to journal. The function runs under the sequencer's
// lock and sees every write already sequenced, including those not yet
// committed, so version checks (If-Match, conditional create, idempotency
// keys) can never let two concurrent writers both win. The sequencer then
// proposes the record to its Log (the journal on a standalone node, the
// failover core on a mirror member), waits until it is committed and
// applied to the store, and only then returns to the caller.
//
// The sequencer must never let a caller see success for a record that is not
// committed and applied, and never outlives a failure of its log: after one,
// every write fails until the node builds a new sequencer (for instance
// after it is promoted again), because writes sequenced after a lost record
// may have been decided against it.
package sequencer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/store"
)

// ErrFailed is wrapped by every call after the sequencer failed.
var ErrFailed = errors.New("sequencer: stopped")

// Log takes sequenced records.
type Log interface {
	// Propose assigns the record the next LSN, in call order. It must not
	// block on I/O.
	Propose(database string, payload []byte) (Proposal, error)
}

// Proposal is one proposed record.
type Proposal interface {
	LSN() uint64
	// Wait returns nil once the record is committed: durable here and,
	// on a mirror member, on the active backup.
	Wait(ctx context.Context) error
}

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

// Scan calls fn for every key under prefix with its value, in key order,
// as of every write sequenced so far: the store's keys with the overlay's
// sets and deletes laid over them. It stops when fn returns false. Key and
// value are valid only during the call. It walks the whole overlay of the
// database (the writes sequenced but not yet applied) once.
func (v View) Scan(prefix []byte, fn func(key, value []byte) bool) error {
	over := v.s.overlay[v.db]
	var mine []string // overlay keys under prefix, sorted
	for k := range over {
		if strings.HasPrefix(k, string(prefix)) {
			mine = append(mine, k)
		}
	}
	sort.Strings(mine)
	stopped := false
	emit := func(k string) bool { // an overlay entry; false when fn stops
		if e := over[k]; !e.deleted && !fn([]byte(k), e.value) {
			stopped = true
		}
		return !stopped
	}
	i := 0
	err := v.s.st.Scan(v.db, prefix, func(key, value []byte) bool {
		for ; i < len(mine) && mine[i] < string(key); i++ {
			if !emit(mine[i]) {
				return false
			}
		}
		if i < len(mine) && mine[i] == string(key) {
			i++
			return emit(string(key)) // the overlay's value replaces the store's
		}
		if !fn(key, value) {
			stopped = true
		}
		return !stopped
	})
	if err != nil || stopped {
		return err
	}
	for ; i < len(mine); i++ {
		if !emit(mine[i]) {
			break
		}
	}
	return nil
}

// WriteFunc decides what a write does. It must not block and must not call
// the sequencer. Returning an error sequences nothing.
type WriteFunc func(v View) ([]journal.Op, error)

type overlayEntry struct {
	value   []byte
	deleted bool
	lsn     uint64
}

// Sequencer is the single writer order of a primary.
type Sequencer struct {
	log     Log
	st      *store.Store
	applier *store.Applier

	mu      sync.Mutex
	overlay map[string]map[string]overlayEntry
	err     error
	base    uint64 // writes wait until the store has applied this LSN
	gen     uint64 // incremented by Restart: a stale write's failure never stops a new reign
}

// New returns a sequencer over a log, a store and the applier that feeds
// the store from the log's committed records.
func New(log Log, st *store.Store, applier *store.Applier) *Sequencer {
	return &Sequencer{log: log, st: st, applier: applier, overlay: map[string]map[string]overlayEntry{}}
}

// Write sequences one atomic write to database db and returns its LSN once
// it is committed and applied. fn's error is returned as is, with nothing
// written. Any other error means the outcome is unknown to this node: the
// record may still be committed (by a new primary, for instance).
func (s *Sequencer) Write(ctx context.Context, db string, fn WriteFunc) (uint64, error) {
	s.mu.Lock()
	base := s.base
	s.mu.Unlock()
	if s.st.AppliedLSN() < base {
		// A new primary decides nothing before its store holds everything
		// up to its epoch marker.
		if err := s.applier.WaitApplied(ctx, base); err != nil {
			return 0, fmt.Errorf("sequencer: waiting for the store to reach LSN %d: %w", base, err)
		}
	}
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
	if err := journal.CheckData(db, payload); err != nil {
		s.mu.Unlock()
		return 0, err // bad input: nothing sequenced, the sequencer carries on
	}
	p, err := s.log.Propose(db, payload)
	if err != nil {
		s.failLocked(err)
		s.mu.Unlock()
		return 0, s.err
	}
	lsn, gen := p.LSN(), s.gen
	m := s.overlay[db]
	if m == nil {
		m = map[string]overlayEntry{}
		s.overlay[db] = m
	}
	for _, op := range ops {
		m[string(op.Key)] = overlayEntry{value: op.Value, deleted: op.Kind == journal.OpDelete, lsn: lsn}
	}
	s.mu.Unlock()

	if err := p.Wait(ctx); err != nil {
		if ctx.Err() == nil {
			s.failGen(gen, err)
		}
		return 0, fmt.Errorf("sequencer: write at LSN %d: outcome unknown: %w", lsn, err)
	}
	if err := s.applier.WaitApplied(ctx, lsn); err != nil {
		if ctx.Err() == nil {
			s.failGen(gen, err)
		}
		return 0, fmt.Errorf("sequencer: write at LSN %d committed, not yet applied: %w", lsn, err)
	}
	s.mu.Lock()
	for _, op := range ops {
		if e, ok := m[string(op.Key)]; ok && e.lsn <= lsn {
			delete(m, string(op.Key))
		}
	}
	s.mu.Unlock()
	return lsn, nil
}

// Fail stops the sequencer: every later write fails with cause. The owner
// calls it when the node stops being primary.
func (s *Sequencer) Fail(cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLocked(cause)
}

func (s *Sequencer) failGen(gen uint64, cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen == gen {
		s.failLocked(cause)
	}
}

func (s *Sequencer) failLocked(cause error) {
	if s.err == nil {
		s.err = fmt.Errorf("%w: %w", ErrFailed, cause)
		s.overlay = map[string]map[string]overlayEntry{}
	}
}

// Restart makes a failed sequencer take writes again, with an empty
// overlay, once the store has applied base: the owner calls it when the
// node becomes primary, base being its epoch marker's LSN.
func (s *Sequencer) Restart(base uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = nil
	s.base = base
	s.gen++
	s.overlay = map[string]map[string]overlayEntry{}
}

// Err reports why the sequencer stopped, or nil.
func (s *Sequencer) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// JournalLog is the Log of a standalone node: records go straight to the
// journal in epoch, and are committed once durable.
type JournalLog struct {
	J       *journal.Journal
	Epoch   uint64
	Applier *store.Applier
}

// Propose queues the record for the journal's group commit.
func (l JournalLog) Propose(db string, payload []byte) (Proposal, error) {
	p, err := l.J.Enqueue(journal.TypeData, l.Epoch, db, payload)
	if err != nil {
		return nil, err
	}
	return journalProposal{p: p, applier: l.Applier}, nil
}

type journalProposal struct {
	p       *journal.Pending
	applier *store.Applier
}

func (p journalProposal) LSN() uint64 { return p.p.LSN }

func (p journalProposal) Wait(ctx context.Context) error {
	if err := p.p.Wait(ctx); err != nil {
		return err
	}
	p.applier.SetLimit(p.p.LSN) // durable records are committed on a standalone node
	return nil
}

// NewStandalone is the sequencer of a node without a mirror partner (and of
// tests): records are committed once durable in j. The store must have
// recovered from j. Close stops the applier it starts.
func NewStandalone(j *journal.Journal, st *store.Store, epoch uint64) (s *Sequencer, close func()) {
	a := store.NewApplier(st, j)
	return New(JournalLog{J: j, Epoch: epoch, Applier: a}, st, a), a.Close
}
