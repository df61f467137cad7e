package journal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// The constants in this file are the on-disk format (see the package doc).
// Changing any of them is a format change and needs a new FormatVersion.
const (
	// FormatVersion is the segment format version written in every header.
	FormatVersion = 1
	// segmentMagic opens every segment file.
	segmentMagic = "TNDMJRNL"
	// SegmentHeaderSize is the size of a segment header: magic (8), format
	// version (4), first LSN (8), header CRC (4).
	SegmentHeaderSize = 24
	// frameHeaderSize is the size of a frame's length and CRC fields.
	frameHeaderSize = 8
	// frameFixedBody is the size of a frame body without the database name
	// and payload bytes: type (1), epoch (8), LSN (8), group LSN (8),
	// database length (1), payload length (4).
	frameFixedBody = 30
	// MaxDatabaseName is the longest database name, in bytes.
	MaxDatabaseName = 64
	// MaxPayload is the largest record payload, in bytes.
	MaxPayload = 64 << 20
	// maxFrameBody bounds a frame body; checked before anything is allocated.
	maxFrameBody = frameFixedBody + MaxDatabaseName + MaxPayload
	// MaxFrameSize is the largest frame on disk.
	MaxFrameSize = frameHeaderSize + maxFrameBody

	// segmentSuffix ends every segment file name; the name before it is the
	// segment's first LSN as 20 decimal digits.
	segmentSuffix  = ".journal"
	segmentNameLen = 20 + len(segmentSuffix)
	tmpSuffix      = ".tmp"
	lockName       = "LOCK"

	// PayloadVersion is the first byte of an EncodeOps payload.
	PayloadVersion = 1
	// MaxKey is the longest key in an Op.
	MaxKey = 64 << 10
	// epochMarkerVersion is the first byte of an epoch-marker payload.
	epochMarkerVersion = 1
	epochMarkerSize    = 1 + 8 + 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// RecordType is the kind of a journal record.
type RecordType uint8

const (
	// TypeData carries EncodeOps(...) for one database: one transaction.
	TypeData RecordType = 1
	// TypeEpochMarker begins an epoch; payload = EncodeEpochMarker(prevEpoch,
	// prevLastLSN); Database "".
	TypeEpochMarker RecordType = 2
)

func (t RecordType) String() string {
	switch t {
	case TypeData:
		return "data"
	case TypeEpochMarker:
		return "epoch-marker"
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// Record is one journal record: one atomic transaction of one database, or
// an epoch marker.
type Record struct {
	Type     RecordType
	Epoch    uint64
	LSN      uint64 // assigned by the journal on Enqueue; must be LastLSN()+1 on EnqueueRecord
	Database string // <= MaxDatabaseName bytes, [a-z0-9_-]; "" for an epoch marker
	Payload  []byte // <= MaxPayload bytes
}

// segmentName is the file name of the segment whose first LSN is first.
func segmentName(first uint64) string {
	return fmt.Sprintf("%020d%s", first, segmentSuffix)
}

// parseSegmentName returns the first LSN named by a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	if len(name) != segmentNameLen || !strings.HasSuffix(name, segmentSuffix) {
		return 0, false
	}
	digits := name[:20]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || v == 0 {
		return 0, false
	}
	return v, true
}

// encodeSegmentHeader returns the header of a segment whose first LSN is first.
func encodeSegmentHeader(first uint64) []byte {
	b := make([]byte, SegmentHeaderSize)
	copy(b, segmentMagic)
	binary.LittleEndian.PutUint32(b[8:], FormatVersion)
	binary.LittleEndian.PutUint64(b[12:], first)
	binary.LittleEndian.PutUint32(b[20:], crc32.Checksum(b[:20], castagnoli))
	return b
}

// decodeSegmentHeader checks a segment header and returns its first LSN.
func decodeSegmentHeader(b []byte) (uint64, error) {
	if len(b) < SegmentHeaderSize {
		return 0, fmt.Errorf("short header (%d bytes)", len(b))
	}
	if string(b[:8]) != segmentMagic {
		return 0, fmt.Errorf("bad magic")
	}
	if got, want := binary.LittleEndian.Uint32(b[20:]), crc32.Checksum(b[:20], castagnoli); got != want {
		return 0, fmt.Errorf("header checksum mismatch")
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != FormatVersion {
		return 0, fmt.Errorf("%w %d", ErrFormatVersion, v)
	}
	first := binary.LittleEndian.Uint64(b[12:])
	if first == 0 {
		return 0, fmt.Errorf("first LSN 0")
	}
	return first, nil
}

// frame is a decoded frame: a record and the first LSN of the commit group
// it was written in.
type frame struct {
	Record
	group uint64
}

// frameSize is the on-disk size of a frame for a record.
func frameSize(database string, payload []byte) int {
	return frameHeaderSize + frameFixedBody + len(database) + len(payload)
}

// appendFrame appends the frame for a record to dst. The record must have
// been validated.
func appendFrame(dst []byte, typ RecordType, epoch, lsn, group uint64, database string, payload []byte) []byte {
	start := len(dst)
	body := frameFixedBody + len(database) + len(payload)
	var h [frameHeaderSize + frameFixedBody - 5]byte // up to the database length
	binary.LittleEndian.PutUint32(h[0:], uint32(body))
	// h[4:8] is the CRC, filled in below.
	h[8] = byte(typ)
	binary.LittleEndian.PutUint64(h[9:], epoch)
	binary.LittleEndian.PutUint64(h[17:], lsn)
	binary.LittleEndian.PutUint64(h[25:], group)
	dst = append(dst, h[:]...)
	dst = append(dst, byte(len(database)))
	dst = append(dst, database...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, payload...)
	f := dst[start:]
	binary.LittleEndian.PutUint32(f[4:], crcFrame(f))
	return dst
}

// crcFrame is the CRC of a whole frame: its length field and its body.
func crcFrame(f []byte) uint32 {
	return crc32.Update(crc32.Checksum(f[0:4], castagnoli), castagnoli, f[frameHeaderSize:])
}

// frameError is why bytes at an offset are not a frame. incomplete means the
// bytes end before the frame does (a tail cut short).
type frameError struct {
	reason     string
	incomplete bool
}

func (e *frameError) Error() string { return e.reason }

// frameBodyLen checks the length field at the start of b (len(b) >= 4).
func frameBodyLen(b []byte) (int, *frameError) {
	n := binary.LittleEndian.Uint32(b)
	if n < frameFixedBody || n > maxFrameBody {
		return 0, &frameError{reason: fmt.Sprintf("frame length %d out of range", n)}
	}
	return int(n), nil
}

// decodeFrame decodes the frame at the start of b and returns it and its
// size. Database and Payload alias b.
func decodeFrame(b []byte) (frame, int, *frameError) {
	if len(b) < frameHeaderSize {
		return frame{}, 0, &frameError{reason: "incomplete frame header", incomplete: true}
	}
	n, ferr := frameBodyLen(b)
	if ferr != nil {
		return frame{}, 0, ferr
	}
	size := frameHeaderSize + n
	if len(b) < size {
		return frame{}, 0, &frameError{reason: fmt.Sprintf("incomplete frame: %d of %d bytes", len(b), size), incomplete: true}
	}
	f := b[:size]
	if crcFrame(f) != binary.LittleEndian.Uint32(f[4:]) {
		return frame{}, 0, &frameError{reason: "frame checksum mismatch"}
	}
	body := f[frameHeaderSize:]
	var fr frame
	fr.Type = RecordType(body[0])
	fr.Epoch = binary.LittleEndian.Uint64(body[1:])
	fr.LSN = binary.LittleEndian.Uint64(body[9:])
	fr.group = binary.LittleEndian.Uint64(body[17:])
	dbLen := int(body[25])
	if dbLen > MaxDatabaseName || 26+dbLen+4 > len(body) {
		return frame{}, 0, &frameError{reason: fmt.Sprintf("database length %d out of range", dbLen)}
	}
	fr.Database = string(body[26 : 26+dbLen])
	rest := body[26+dbLen:]
	pl := binary.LittleEndian.Uint32(rest)
	if int64(pl) != int64(len(rest)-4) {
		return frame{}, 0, &frameError{reason: fmt.Sprintf("payload length %d does not match frame length", pl)}
	}
	fr.Payload = rest[4:]
	if err := checkRecord(fr.Type, fr.Database, fr.Payload); err != nil {
		return frame{}, 0, &frameError{reason: err.Error()}
	}
	if fr.LSN == 0 || fr.group == 0 || fr.group > fr.LSN {
		return frame{}, 0, &frameError{reason: fmt.Sprintf("bad LSN %d or group %d", fr.LSN, fr.group)}
	}
	return fr, size, nil
}

// checkRecord validates what a record must satisfy to be journaled.
func checkRecord(typ RecordType, database string, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(payload))
	}
	switch typ {
	case TypeData:
		if database == "" {
			return fmt.Errorf("%w: empty name for a data record", ErrBadDatabase)
		}
	case TypeEpochMarker:
		if database != "" {
			return fmt.Errorf("%w: an epoch marker has no database", ErrBadDatabase)
		}
		if _, _, err := DecodeEpochMarker(payload); err != nil {
			return fmt.Errorf("%w: %w", ErrBadRecord, err)
		}
		return nil
	default:
		return fmt.Errorf("%w: unknown type %d", ErrBadRecord, typ)
	}
	if len(database) > MaxDatabaseName {
		return fmt.Errorf("%w: %d bytes", ErrBadDatabase, len(database))
	}
	for i := 0; i < len(database); i++ {
		c := database[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: character at index %d", ErrBadDatabase, i)
		}
	}
	return nil
}

// OpKind is the kind of a key/value operation.
type OpKind uint8

const (
	OpSet    OpKind = 1 // set Key to Value
	OpDelete OpKind = 2 // delete Key; Value must be empty
)

// Op is one key/value operation of a data record.
type Op struct {
	Kind       OpKind
	Key, Value []byte
}

// EncodeOps encodes operations as a TypeData payload:
//
//	version (1 byte, = PayloadVersion) | count (uint32 LE) | count × op
//	op = kind (1) | key length (uint32 LE) | key | [OpSet only: value length (uint32 LE) | value]
//
// It does not validate: DecodeOps rejects what it cannot accept, so callers
// keep keys <= MaxKey and values <= MaxPayload.
func EncodeOps(ops []Op) []byte {
	n := OpsHeaderSize
	for _, op := range ops {
		n += EncodedOpSize(op)
	}
	b := make([]byte, 0, n)
	b = append(b, PayloadVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ops)))
	for _, op := range ops {
		b = append(b, byte(op.Kind))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(op.Key)))
		b = append(b, op.Key...)
		if op.Kind == OpSet {
			b = binary.LittleEndian.AppendUint32(b, uint32(len(op.Value)))
			b = append(b, op.Value...)
		}
	}
	return b
}

// OpsHeaderSize is the size of an EncodeOps payload holding no op: version
// (1) and count (4).
const OpsHeaderSize = 1 + 4

// EncodedOpSize is how many bytes op adds to an EncodeOps payload, so a
// caller can bound a payload before encoding it.
func EncodedOpSize(op Op) int {
	n := 1 + 4 + len(op.Key)
	if op.Kind == OpSet {
		n += 4 + len(op.Value)
	}
	return n
}

// DecodeOps decodes an EncodeOps payload. It is strict: an unknown version,
// an unknown kind, a length past the end, a key over MaxKey, a value over
// MaxPayload or trailing bytes are errors (wrapping ErrBadOps). Keys and
// values alias b.
func DecodeOps(b []byte) ([]Op, error) {
	if len(b) < 5 {
		return nil, fmt.Errorf("%w: ops payload of %d bytes", ErrBadOps, len(b))
	}
	if b[0] != PayloadVersion {
		return nil, fmt.Errorf("%w: unknown ops payload version %d", ErrBadOps, b[0])
	}
	count := binary.LittleEndian.Uint32(b[1:])
	rest := b[5:]
	const minOp = 1 + 4
	if uint64(count) > uint64(len(rest)/minOp) {
		return nil, fmt.Errorf("%w: %d ops cannot fit in %d bytes", ErrBadOps, count, len(rest))
	}
	ops := make([]Op, 0, count)
	field := func(max uint32, what string) ([]byte, error) {
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: op %d: %s length past the end", ErrBadOps, len(ops), what)
		}
		n := binary.LittleEndian.Uint32(rest)
		if n > max {
			return nil, fmt.Errorf("%w: op %d: %s of %d bytes", ErrBadOps, len(ops), what, n)
		}
		if uint64(n) > uint64(len(rest)-4) {
			return nil, fmt.Errorf("%w: op %d: %s past the end", ErrBadOps, len(ops), what)
		}
		v := rest[4 : 4+n : 4+n]
		rest = rest[4+n:]
		return v, nil
	}
	for i := uint32(0); i < count; i++ {
		if len(rest) < 1 {
			return nil, fmt.Errorf("%w: op %d past the end", ErrBadOps, i)
		}
		op := Op{Kind: OpKind(rest[0])}
		rest = rest[1:]
		if op.Kind != OpSet && op.Kind != OpDelete {
			return nil, fmt.Errorf("%w: op %d: unknown kind %d", ErrBadOps, i, op.Kind)
		}
		var err error
		if op.Key, err = field(MaxKey, "key"); err != nil {
			return nil, err
		}
		if op.Kind == OpSet {
			if op.Value, err = field(MaxPayload, "value"); err != nil {
				return nil, err
			}
		}
		ops = append(ops, op)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadOps, len(rest))
	}
	return ops, nil
}

// EncodeEpochMarker encodes an epoch-marker payload:
// version (1 byte, = 1) | prevEpoch (uint64 LE) | prevLastLSN (uint64 LE).
func EncodeEpochMarker(prevEpoch, prevLastLSN uint64) []byte {
	b := make([]byte, epochMarkerSize)
	b[0] = epochMarkerVersion
	binary.LittleEndian.PutUint64(b[1:], prevEpoch)
	binary.LittleEndian.PutUint64(b[9:], prevLastLSN)
	return b
}

// DecodeEpochMarker decodes an EncodeEpochMarker payload.
func DecodeEpochMarker(b []byte) (prevEpoch, prevLastLSN uint64, err error) {
	if len(b) != epochMarkerSize {
		return 0, 0, fmt.Errorf("%w: epoch marker of %d bytes", ErrBadOps, len(b))
	}
	if b[0] != epochMarkerVersion {
		return 0, 0, fmt.Errorf("%w: unknown epoch marker version %d", ErrBadOps, b[0])
	}
	return binary.LittleEndian.Uint64(b[1:]), binary.LittleEndian.Uint64(b[9:]), nil
}

// ValidateDatabase reports whether name can name a database in a data
// record (1–MaxDatabaseName of a-z, 0-9, '_' and '-').
func ValidateDatabase(name string) error { return checkRecord(TypeData, name, nil) }
