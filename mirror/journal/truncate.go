package journal

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrBusy is returned by TruncateAfter while records are still being
// written: the caller waits for them (Pending.Wait) first.
var ErrBusy = errors.New("journal: records are still being written")

// TruncateAfter removes every record after lsn: a member rejoining after a
// fork cuts its unacknowledged tail back to the fork point (having copied
// it to a quarantine report first). Later segments are removed, the segment
// holding lsn+1 is cut at that frame (its valid prefix rewritten and renamed
// over it, as for a torn tail), and the directory is synced before it
// returns. The caller must not append concurrently and must have waited for
// every pending record; readers positioned beyond lsn must be reopened.
func (j *Journal) TruncateAfter(lsn uint64) error {
	// The epoch of the last kept record, read before the lock (records are
	// immutable and the caller appends nothing meanwhile).
	if lsn >= j.LastLSN() {
		return nil
	}
	var keptEpoch uint64
	if lsn > 0 {
		r, err := j.NewReader(lsn)
		if err != nil {
			return fmt.Errorf("journal: truncate after %d: %w", lsn, err)
		}
		rec, err := r.Next()
		r.Close()
		if err != nil {
			return fmt.Errorf("journal: truncate after %d: read record %d: %w", lsn, lsn, err)
		}
		keptEpoch = rec.Epoch
	}

	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	if j.closed {
		return ErrClosed
	}
	if lsn >= j.lastLSN {
		return nil
	}
	if j.queue != nil || j.durable.Load() != j.lastLSN {
		return ErrBusy
	}
	// With nothing queued and everything durable the committer is idle and
	// cannot take a new group while we hold j.mu: the files are ours.
	k := len(j.segs) - 1
	for k > 0 && j.segs[k].first > lsn+1 {
		k--
	}
	seg := j.segs[k]
	if seg.first > lsn+1 {
		return fmt.Errorf("%w: truncate after %d, but the journal starts at %d", ErrPurged, lsn, seg.first)
	}
	off, err := j.frameOffset(seg, lsn+1)
	if err != nil {
		return err
	}
	if err := j.active.Close(); err != nil {
		return j.failLocked(fmt.Errorf("close active segment: %w", err))
	}
	j.active = nil
	for i := len(j.segs) - 1; i > k; i-- {
		if err := j.fs.Remove(j.fs.PathJoin(j.dir, j.segs[i].name)); err != nil {
			return j.failLocked(fmt.Errorf("remove segment %s: %w", j.segs[i].name, err))
		}
	}
	if err := j.truncate(seg.name, off, true); err != nil { // syncs the directory too
		return j.failLocked(fmt.Errorf("cut segment %s at offset %d: %w", seg.name, off, err))
	}
	f, err := j.fs.OpenReadWrite(j.fs.PathJoin(j.dir, seg.name), vfs.WriteCategoryUnspecified)
	if err != nil {
		return j.failLocked(fmt.Errorf("reopen segment %s: %w", seg.name, err))
	}
	j.active = f
	j.activeSize = off
	j.activeRecords = lsn >= seg.first
	j.preallocated = 0
	j.segs = j.segs[:k+1]
	seg.last = lsn
	seg.synced = off
	j.lastLSN = lsn
	j.lastEpoch = keptEpoch
	j.durable.Store(lsn)
	return nil
}

// frameOffset finds the byte offset of the frame holding lsn in seg.
func (j *Journal) frameOffset(seg *segment, lsn uint64) (int64, error) {
	f, err := j.fs.Open(j.fs.PathJoin(j.dir, seg.name))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fr := newFrameReader(f, seg.synced)
	off := int64(SegmentHeaderSize)
	for off < seg.synced {
		fm, n, ferr, err := fr.frameAt(off)
		if err != nil {
			return 0, err
		}
		if ferr != nil {
			return 0, &CorruptionError{Segment: seg.name, Offset: off, Reason: ferr.reason}
		}
		if fm.LSN == lsn {
			return off, nil
		}
		off += int64(n)
	}
	if lsn == seg.last+1 {
		return off, nil
	}
	return 0, fmt.Errorf("journal: LSN %d not found in segment %s", lsn, seg.name)
}

// failLocked makes the journal unusable after a failed truncation: its
// files are in an unknown state. j.mu held.
func (j *Journal) failLocked(cause error) error {
	if j.err == nil {
		j.err = unusable(cause)
	}
	return j.err
}
