package journal

import (
	"errors"
	"fmt"
)

// ErrBadShippedRecord is wrapped by DecodeShipped errors.
var ErrBadShippedRecord = errors.New("journal: bad shipped record")

// EncodeShipped returns rec as one journal frame, checksummed exactly as a
// frame on disk (its group LSN is the record's own LSN): how a record
// travels from the primary to the other members, so that the journal's
// CRC-32C goes with it end to end.
func EncodeShipped(rec Record) ([]byte, error) {
	if err := checkRecord(rec.Type, rec.Database, rec.Payload); err != nil {
		return nil, err
	}
	if rec.LSN == 0 {
		return nil, fmt.Errorf("%w: LSN 0", ErrLSNOutOfOrder)
	}
	return appendFrame(nil, rec.Type, rec.Epoch, rec.LSN, rec.LSN, rec.Database, rec.Payload), nil
}

// DecodeShipped checks a shipped frame (length, CRC, fields) and returns
// its record. Bytes before or after the one frame are an error. Database
// and Payload alias b.
func DecodeShipped(b []byte) (Record, error) {
	f, n, ferr := decodeFrame(b)
	if ferr != nil {
		return Record{}, fmt.Errorf("%w: %s", ErrBadShippedRecord, ferr.reason)
	}
	if n != len(b) {
		return Record{}, fmt.Errorf("%w: %d bytes after the frame", ErrBadShippedRecord, len(b)-n)
	}
	return f.Record, nil
}

// CheckData reports whether a data record for database with payload could
// be journaled (database name, payload size): writers check before a record
// is given an LSN, so bad input never consumes one.
func CheckData(database string, payload []byte) error {
	return checkRecord(TypeData, database, payload)
}

// DecodeShippedPrefix decodes the shipped frame at the start of b and
// returns its record and size, for streams of frames back to back (the
// backup archive). Database and Payload alias b.
func DecodeShippedPrefix(b []byte) (Record, int, error) {
	f, n, ferr := decodeFrame(b)
	if ferr != nil {
		return Record{}, 0, fmt.Errorf("%w: %s", ErrBadShippedRecord, ferr.reason)
	}
	return f.Record, n, nil
}
