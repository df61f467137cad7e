package journal

import (
	"errors"
	"fmt"
)

// Package sentinels. Operation errors wrap them with %w, so callers classify
// with errors.Is.
var (
	// ErrUnusable is wrapped by every call after a failed write or fsync. The
	// journal never retries a failed fsync: after one, the state of the file
	// on disk is unknown, so the journal stops and the member steps down.
	ErrUnusable = errors.New("journal: unusable after a failed write or fsync")
	// ErrClosed is returned by calls on a closed journal.
	ErrClosed = errors.New("journal: closed")
	// ErrPurged is returned when a reader asks for records no longer held.
	ErrPurged = errors.New("journal: records purged")
	// ErrTooLarge is returned for a payload larger than MaxPayload.
	ErrTooLarge = errors.New("journal: payload too large")
	// ErrBadDatabase is returned for a database name that is too long, has a
	// character outside [a-z0-9_-], or does not suit the record type.
	ErrBadDatabase = errors.New("journal: bad database name")
	// ErrBadRecord is returned for an unknown record type or a malformed
	// epoch-marker payload.
	ErrBadRecord = errors.New("journal: bad record")
	// ErrLSNOutOfOrder is returned by EnqueueRecord when rec.LSN is not
	// LastLSN()+1.
	ErrLSNOutOfOrder = errors.New("journal: LSN out of order")
	// ErrEpochRegressed is returned when a record's epoch is lower than the
	// epoch of the record before it.
	ErrEpochRegressed = errors.New("journal: epoch lower than the previous record's")
	// ErrFormatVersion is returned by Open for a segment written in a
	// format version this code does not know (by newer code): never
	// truncated, never treated as corruption.
	ErrFormatVersion = errors.New("journal: unsupported segment format version")
	// ErrCorrupt is matched (errors.Is) by every *CorruptionError.
	ErrCorrupt = errors.New("journal: corrupt")
	// ErrBadOps is wrapped by DecodeOps and DecodeEpochMarker errors.
	ErrBadOps = errors.New("journal: malformed payload")
)

// CorruptionError reports damage that is not a torn tail: a bad frame in a
// segment other than the last, a bad frame followed by a frame that was
// written after it was synced, a gap or a non-increasing LSN. Nothing at or
// after Offset may be applied; the database must be rebuilt.
type CorruptionError struct {
	Segment string // segment file name (base name)
	Offset  int64  // byte offset of the damaged frame or header in Segment
	Reason  string // what was wrong; never contains record contents
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("journal: corrupt segment %s at offset %d: %s", e.Segment, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

func unusable(cause error) error {
	return fmt.Errorf("%w: %w", ErrUnusable, cause)
}
