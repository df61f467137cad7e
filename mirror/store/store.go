// Package store keeps a data node's named databases in one Pebble instance.
//
// The journal (package mirror/journal) is the write-ahead log: Pebble's own
// WAL is off, every journal record is applied as one Pebble batch that also
// sets the database's applied LSN, and crash recovery replays the journal
// from the store's applied LSN. One fsync per group commit, not two.
//
// Key layout inside Pebble (database names are [a-z0-9_-], so 0x00 never
// appears in them):
//
//	'd' 0x00 <database> 0x00 <key>   user data of <database>
//	'm' 0x00 "applied"                8-byte big-endian LSN: every journal record up to it is applied
//	'm' 0x00 "epoch"                  8-byte big-endian epoch of the last applied record
//	'm' 0x00 "db" 0x00 <database>     8-byte big-endian LSN of the last record applied to <database>
//
// The store must never apply a journal record twice, out of LSN order, or in
// part, and never writes anything that is not in the journal.
package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemhealth/tandem/mirror/journal"
)

// ErrOutOfOrder is returned when a record is applied with an LSN that does
// not follow the store's applied LSN.
var ErrOutOfOrder = errors.New("store: journal record out of LSN order")

// ErrClosed is returned by calls on a closed store.
var ErrClosed = errors.New("store: closed")

var (
	metaApplied = []byte("m\x00applied")
	metaEpoch   = []byte("m\x00epoch")
	metaDBPref  = []byte("m\x00db\x00")
)

// Options configure a Store.
type Options struct {
	// FS is the filesystem Pebble runs on; nil means the real disk.
	FS vfs.FS
	// Logger receives Pebble's errors (and its notices at debug level);
	// nil means slog.Default().
	Logger *slog.Logger
	// CacheSize is the size in bytes of Pebble's block cache; 0 means
	// DefaultCacheSize. Pebble charges its memtables to this cache, so it
	// must be well above MemTableSize × 2 for any block to stay cached.
	CacheSize int64
}

// DefaultCacheSize is the block cache of a store that sets none: 128 MiB.
// Pebble's own default (8 MiB) is used up by the memtables it charges to
// the cache (4 MiB each, the mutable one and one flushing), so with it no
// block stayed cached and every read went to the file (found profiling
// issue #8's audit read overhead). The memory is taken as blocks are read,
// not up front.
const DefaultCacheSize = 256 << 20

// MemTableSize is the size of each Pebble memtable: 32 MiB (Pebble's
// default is 4 MiB; CockroachDB runs 64 MiB). Keys of new resources are
// random (UUIDs), so every flushed table overlaps all of the base level and
// each L0 compaction rewrites it: larger, fewer flushes rewrite it fewer
// times per byte written. Pebble starts small and grows to this size.
const MemTableSize = 32 << 20

// Records put in one store batch at most (the applier, recovery): a group
// commit's records go in together, a long replay in bounded pieces.
const (
	maxBatchRecords = 256
	maxBatchBytes   = 4 << 20
)

// Store is a node's Pebble-backed set of named databases.
type Store struct {
	mu      sync.RWMutex // guards applied state and serialises Apply with Checkpoint
	db      *pebble.DB
	applied uint64
	epoch   uint64
	perDB   map[string]uint64
	closed  bool
	health  *flushHealth
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	cacheSize := opts.CacheSize
	if cacheSize <= 0 {
		cacheSize = DefaultCacheSize
	}
	health := &flushHealth{now: time.Now}
	po := &pebble.Options{
		FS:            fs,
		DisableWAL:    true,
		Logger:        pebbleLogger{log: logger},
		CacheSize:     cacheSize,
		EventListener: &pebble.EventListener{FlushEnd: health.flushEnd},
	}
	// Bloom filters on every level (later levels inherit L0's): most point
	// reads of a write are of keys that do not exist yet (a new resource's
	// id, its first search record, a disabled-parameter list never set), and
	// without a filter each such Get searched every L0 table and level.
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	po.MemTableSize = MemTableSize
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	s := &Store{db: db, perDB: map[string]uint64{}, health: health}
	if err := s.loadMeta(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) loadMeta() error {
	var err error
	if s.applied, err = s.getUint(metaApplied); err != nil {
		return err
	}
	if s.epoch, err = s.getUint(metaEpoch); err != nil {
		return err
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: metaDBPref, UpperBound: prefixEnd(metaDBPref)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		v := it.Value()
		if len(v) != 8 {
			return fmt.Errorf("store: corrupt applied LSN for database %q", it.Key()[len(metaDBPref):])
		}
		s.perDB[string(it.Key()[len(metaDBPref):])] = binary.BigEndian.Uint64(v)
	}
	return it.Error()
}

func (s *Store) getUint(key []byte) (uint64, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: read %q: %w", key, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("store: corrupt meta key %q (%d bytes)", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// AppliedLSN is the LSN up to which every journal record has been applied.
func (s *Store) AppliedLSN() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

// Epoch is the epoch of the last applied record.
func (s *Store) Epoch() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.epoch
}

// DatabaseLSNs returns, per database that has received a record, the LSN
// of the last record applied to it.
func (s *Store) DatabaseLSNs() map[string]uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]uint64, len(s.perDB))
	for k, v := range s.perDB {
		out[k] = v
	}
	return out
}

// DatabaseLSN is the LSN of the last record applied to database db, 0 when
// none was: a reader that cached something derived from db can tell
// whether it may have changed without reading it again.
func (s *Store) DatabaseLSN(db string) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.perDB[db]
}

// Apply applies one journal record atomically together with the applied
// LSN. rec.LSN must be AppliedLSN()+1; a record at or below the applied LSN
// is an error too, so that replay bugs cannot hide.
func (s *Store) Apply(rec journal.Record) error {
	_, err := s.ApplyBatch([]journal.Record{rec})
	return err
}

// ApplyBatch applies consecutive journal records in one Pebble batch, the
// applied LSN and per-database LSNs written once for all of them: records
// of a group commit cost one batch commit and three metadata keys, not
// three per record. recs[0].LSN must be AppliedLSN()+1 and the LSNs
// consecutive. A record that does not decode, or out of order, is an
// error; the records before it are applied (the count says how many), none
// after.
func (s *Store) ApplyBatch(recs []journal.Record) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	decoded := make([][]journal.Op, 0, len(recs))
	size := 0
	var bad error
	for i, rec := range recs {
		if rec.LSN != s.applied+1+uint64(i) {
			bad = fmt.Errorf("%w: applied %d, got %d", ErrOutOfOrder, s.applied+uint64(i), rec.LSN)
			break
		}
		var ops []journal.Op
		if rec.Type == journal.TypeData {
			var err error
			if ops, err = journal.DecodeOps(rec.Payload); err != nil {
				bad = fmt.Errorf("store: record %d: %w", rec.LSN, err)
				break
			}
		}
		decoded = append(decoded, ops)
		size += batchSize(rec.Database, ops)
	}
	if len(decoded) > 0 {
		if err := s.commitRecords(recs[:len(decoded)], decoded, size); err != nil {
			return 0, err
		}
	}
	return len(decoded), bad
}

// commitRecords writes decoded records and the metadata after them in one
// batch. Sized up front: a batch grown by doubling copies a large record
// (an audit group commit is megabytes) several times.
func (s *Store) commitRecords(recs []journal.Record, decoded [][]journal.Op, size int) error {
	b := s.db.NewBatchWithSize(size)
	defer b.Close()
	lastOf := map[string]uint64{}
	for i, rec := range recs {
		if rec.Type != journal.TypeData {
			continue
		}
		for _, op := range decoded[i] {
			k := dataKey(rec.Database, op.Key)
			var err error
			switch op.Kind {
			case journal.OpSet:
				err = b.Set(k, op.Value, nil)
			case journal.OpDelete:
				err = b.Delete(k, nil)
			default:
				err = fmt.Errorf("store: record %d: unknown op kind %d", rec.LSN, op.Kind)
			}
			if err != nil {
				return err
			}
		}
		lastOf[rec.Database] = rec.LSN
	}
	for db, lsn := range lastOf {
		if err := b.Set(dbMetaKey(db), u64(lsn), nil); err != nil {
			return err
		}
	}
	last := recs[len(recs)-1]
	if err := b.Set(metaApplied, u64(last.LSN), nil); err != nil {
		return err
	}
	if err := b.Set(metaEpoch, u64(last.Epoch), nil); err != nil {
		return err
	}
	// NoSync: the journal already made the records durable.
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("store: apply records %d-%d: %w", recs[0].LSN, last.LSN, err)
	}
	s.applied = last.LSN
	s.epoch = last.Epoch
	for db, lsn := range lastOf {
		s.perDB[db] = lsn
	}
	return nil
}

// Recover replays every durable journal record after the applied LSN and
// returns how many it applied. A corrupt record stops recovery with the
// journal's error: nothing after it is applied.
func (s *Store) Recover(j *journal.Journal) (int, error) {
	from := s.AppliedLSN() + 1
	if last := j.DurableLSN(); last < from-1 {
		return 0, fmt.Errorf("store: applied LSN %d is ahead of the journal (durable LSN %d): the journal lost records this store has applied", from-1, last)
	}
	if j.DurableLSN() < from {
		return 0, nil
	}
	r, err := j.NewReader(from)
	if err != nil {
		return 0, fmt.Errorf("store: recover from LSN %d: %w", from, err)
	}
	defer r.Close()
	n := 0
	var recs []journal.Record
	for {
		var readErr error
		recs, readErr = readBatch(r, recs[:0], math.MaxUint64)
		applied, err := s.ApplyBatch(recs)
		n += applied
		switch {
		case err != nil:
			return n, err
		case readErr == io.EOF:
			return n, nil
		case readErr != nil:
			return n, fmt.Errorf("store: recover: %w", readErr)
		}
	}
}

// readBatch appends to recs the next records of r, at most count of them,
// maxBatchRecords or about maxBatchBytes: the records of one store batch.
// err is the reader's (io.EOF at the journal's end); recs then holds what
// was read before it.
func readBatch(r *journal.Reader, recs []journal.Record, count uint64) ([]journal.Record, error) {
	size := 0
	for uint64(len(recs)) < count && len(recs) < maxBatchRecords && size < maxBatchBytes {
		rec, err := r.Next()
		if err != nil {
			return recs, err
		}
		recs = append(recs, rec)
		size += len(rec.Payload)
	}
	return recs, nil
}

// Get reads key from database db as of the last applied record.
//
// It seeks an iterator with the bloom filters of every level in use, where
// Pebble's own Get skips them on the bottom level (L6), which on a store of
// this size holds nearly everything: most reads inside a write are of keys
// that do not exist yet, and without the filter each of them read an index
// and a data block (often not cached, the table freshly compacted).
// BenchmarkStoreGet (make bench BENCH=StoreGet) measures both beside each
// other: a missing key ~3 µs against Pebble's 4–12 µs; a present key about
// the same once cached, slower cold.
func (s *Store) Get(db string, key []byte) ([]byte, bool, error) {
	k := dataKey(db, key)
	it, err := s.db.NewIter(&pebble.IterOptions{UseL6Filters: true})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	// The comparer's prefix is the whole key: a match is k itself.
	if !it.SeekPrefixGE(k) || !bytes.Equal(it.Key(), k) {
		return nil, false, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, false, err
	}
	return bytes.Clone(v), true, nil
}

// Scan calls fn for every key of db that starts with prefix, in key order,
// until fn returns false.
func (s *Store) Scan(db string, prefix []byte, fn func(key, value []byte) bool) error {
	lo := dataKey(db, prefix)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	defer it.Close()
	skip := len(dataKey(db, nil))
	for it.First(); it.Valid(); it.Next() {
		if !fn(it.Key()[skip:], it.Value()) {
			break
		}
	}
	return it.Error()
}

// ContentHash is a SHA-256 over every key and value of db in key order. Two
// members holding the same data have the same hash; the applied LSN and
// other metadata are not part of it.
func (s *Store) ContentHash(db string) ([32]byte, error) {
	h := sha256.New()
	var n [8]byte
	err := s.Scan(db, nil, func(k, v []byte) bool {
		binary.BigEndian.PutUint64(n[:], uint64(len(k)))
		h.Write(n[:])
		h.Write(k)
		binary.BigEndian.PutUint64(n[:], uint64(len(v)))
		h.Write(n[:])
		h.Write(v)
		return true
	})
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, err
}

// Databases lists the databases that have received at least one record.
func (s *Store) Databases() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.perDB))
	for k := range s.perDB {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Checkpoint writes a consistent copy of the whole store to destDir (which
// must not exist) and returns the LSN it holds: a snapshot for re-seeding a
// member or a backup, to be followed by the journal after that LSN. It
// also returns the epoch of the record at that LSN.
func (s *Store) Checkpoint(destDir string) (lsn, epoch uint64, err error) {
	s.mu.Lock() // no Apply between flush and checkpoint
	defer s.mu.Unlock()
	if s.closed {
		return 0, 0, ErrClosed
	}
	// With the WAL off, only flushed data is in sstables: flush first.
	if err := s.db.Flush(); err != nil {
		return 0, 0, fmt.Errorf("store: checkpoint flush: %w", err)
	}
	if err := s.db.Checkpoint(destDir); err != nil {
		return 0, 0, fmt.Errorf("store: checkpoint to %s: %w", destDir, err)
	}
	return s.applied, s.epoch, nil
}

// Compactions reports how many compactions Pebble is running. A bulk load
// leaves compactions behind; they compete with reads for CPU and disk.
func (s *Store) Compactions() int64 { return s.db.Metrics().Compact.NumInProgress }

// Flush writes the memtable to sstables, shortening the next recovery.
func (s *Store) Flush() error { return s.db.Flush() }

// FlushDurable flushes the store and returns an LSN that is durable in it:
// the records up to it are in sstables and survive a crash without the
// journal. With the WAL off, recovery replays the journal after the store's
// applied LSN, so the journal may be purged up to this LSN and never beyond
// it (see TestPurgeNeverPassesTheFlushedLSN).
func (s *Store) FlushDurable() (uint64, error) {
	lsn := s.AppliedLSN() // applied before the flush starts: in the flushed memtable
	if err := s.db.Flush(); err != nil {
		return 0, fmt.Errorf("store: flush: %w", err)
	}
	return lsn, nil
}

// Close flushes and closes the store. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	ferr := s.db.Flush()
	cerr := s.db.Close()
	if ferr != nil {
		return fmt.Errorf("store: flush on close: %w", ferr)
	}
	return cerr
}

// batchSize is the size of the Pebble batch that applies ops to db with
// the meta keys: per operation a kind byte, two varint lengths, the key
// with its database prefix and the value.
func batchSize(db string, ops []journal.Op) int {
	const header, perOp, meta = 12, 1 + 2*binary.MaxVarintLen32, 3 * (1 + 2*binary.MaxVarintLen32 + 32)
	n := header + meta + len(db)
	for _, op := range ops {
		n += perOp + 3 + len(db) + len(op.Key) + len(op.Value)
	}
	return n
}

func dataKey(db string, key []byte) []byte {
	k := make([]byte, 0, 3+len(db)+len(key))
	k = append(k, 'd', 0)
	k = append(k, db...)
	k = append(k, 0)
	return append(k, key...)
}

func dbMetaKey(db string) []byte {
	return append(bytes.Clone(metaDBPref), db...)
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// pebbleLogger routes Pebble's messages into slog: notices at debug
// level, errors at error level; fatal errors stop the process.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...interface{}) {
	l.log.Debug("pebble", "msg_detail", fmt.Sprintf(format, args...))
}
func (l pebbleLogger) Errorf(format string, args ...interface{}) {
	l.log.Error("pebble", "msg_detail", fmt.Sprintf(format, args...))
}
func (l pebbleLogger) Fatalf(format string, args ...interface{}) {
	l.log.Error("pebble fatal", "msg_detail", fmt.Sprintf(format, args...))
	panic(fmt.Sprintf("pebble: "+format, args...))
}
