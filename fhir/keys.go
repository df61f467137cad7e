package fhir

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Database is the mirrored database that holds clinical data.
const Database = "fhir"

// VersionFormat is the format byte of a Version record.
const VersionFormat = 1

// Kind says how a version came to be.
type Kind uint8

// Kinds of versions (part of the stored format).
const (
	KindCreated Kind = 1 // POST
	KindUpdated Kind = 2 // PUT (also create-on-update)
	KindDeleted Kind = 3 // DELETE: a tombstone
)

// Method is the HTTP method that made a version of this kind.
func (k Kind) Method() string {
	switch k {
	case KindCreated:
		return "POST"
	case KindDeleted:
		return "DELETE"
	default:
		return "PUT"
	}
}

const versionHeader = 26

// ErrBadRecord is returned for a stored record that cannot be decoded.
var ErrBadRecord = errors.New("fhir: malformed stored record")

// Version is one stored version of a resource.
type Version struct {
	Kind        Kind
	VersionID   uint64
	LastUpdated time.Time // millisecond precision, UTC
	Seq         uint64
	JSON        []byte // final JSON; nil for a tombstone
}

// Deleted reports whether v is a tombstone.
func (v *Version) Deleted() bool { return v.Kind == KindDeleted }

// ETag is the weak ETag of the version, W/"<vid>".
func (v *Version) ETag() string { return `W/"` + strconv.FormatUint(v.VersionID, 10) + `"` }

// EncodeVersion returns the stored record of v.
func EncodeVersion(v *Version) []byte {
	b := make([]byte, versionHeader, versionHeader+len(v.JSON))
	b[0] = VersionFormat
	b[1] = byte(v.Kind)
	binary.BigEndian.PutUint64(b[2:], v.VersionID)
	binary.BigEndian.PutUint64(b[10:], uint64(v.LastUpdated.UnixMilli()))
	binary.BigEndian.PutUint64(b[18:], v.Seq)
	return append(b, v.JSON...)
}

// DecodeVersion decodes a stored record. JSON aliases b.
func DecodeVersion(b []byte) (*Version, error) {
	if len(b) < versionHeader || b[0] != VersionFormat || b[1] < 1 || b[1] > 3 {
		return nil, ErrBadRecord
	}
	v := &Version{
		Kind:        Kind(b[1]),
		VersionID:   binary.BigEndian.Uint64(b[2:]),
		LastUpdated: time.UnixMilli(int64(binary.BigEndian.Uint64(b[10:]))).UTC(),
		Seq:         binary.BigEndian.Uint64(b[18:]),
	}
	if len(b) > versionHeader {
		v.JSON = b[versionHeader:]
	}
	return v, nil
}

func inv(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, ^n) }

// CurrentKey is the key of the current version of Type/id.
func CurrentKey(typ, id string) []byte { return []byte("c/" + typ + "/" + id) }

// ParseCurrentKey is the inverse of CurrentKey: the type and id of a
// current-version key; ok is false for any other key.
func ParseCurrentKey(key []byte) (typ, id string, ok bool) {
	rest, found := strings.CutPrefix(string(key), "c/")
	if !found {
		return "", "", false
	}
	typ, id, found = strings.Cut(rest, "/")
	if !found || typ == "" || !ValidID(id) {
		return "", "", false
	}
	return typ, id, true
}

// CurrentPrefix is the prefix of every current version of a type (the type index).
func CurrentPrefix(typ string) []byte { return []byte("c/" + typ + "/") }

// VersionKey is the key of an older version of Type/id.
func VersionKey(typ, id string, vid uint64) []byte {
	return append(VersionPrefix(typ, id), inv(vid)...)
}

// VersionPrefix is the prefix of every older version of Type/id, newest first.
func VersionPrefix(typ, id string) []byte { return []byte("v/" + typ + "/" + id + "/") }

// SeqKey holds the last history sequence number.
var SeqKey = []byte("s")

// SystemHistoryPrefix is the prefix of the system history, newest first.
var SystemHistoryPrefix = []byte("h/")

// SystemHistoryKey is the system-history key of sequence number seq.
func SystemHistoryKey(seq uint64) []byte { return append([]byte("h/"), inv(seq)...) }

// TypeHistoryPrefix is the prefix of the history of a type, newest first.
func TypeHistoryPrefix(typ string) []byte { return []byte("t/" + typ + "/") }

// TypeHistoryKey is the type-history key of sequence number seq.
func TypeHistoryKey(typ string, seq uint64) []byte {
	return append(TypeHistoryPrefix(typ), inv(seq)...)
}

// HistorySeq decodes the sequence number at the end of a history key.
func HistorySeq(key []byte) uint64 {
	if len(key) < 8 {
		return 0
	}
	return ^binary.BigEndian.Uint64(key[len(key)-8:])
}

// HistoryRef is the value of a system-history key: which version it names
// and when it was written.
func HistoryRef(typ, id string, vid uint64, t time.Time) []byte {
	return TypeHistoryRef(typ+"/"+id, vid, t)
}

// TypeHistoryRef is the value of a type-history key.
func TypeHistoryRef(id string, vid uint64, t time.Time) []byte {
	b := binary.BigEndian.AppendUint64([]byte(id+"\x00"), vid)
	return binary.BigEndian.AppendUint64(b, uint64(t.UnixMilli()))
}

// DecodeHistoryRef decodes a HistoryRef or TypeHistoryRef into its
// reference part ("Type/id" or "id"), version and lastUpdated.
func DecodeHistoryRef(b []byte) (string, uint64, time.Time, error) {
	i := bytes.IndexByte(b, 0)
	if i < 0 || len(b) != i+17 {
		return "", 0, time.Time{}, ErrBadRecord
	}
	ms := int64(binary.BigEndian.Uint64(b[i+9:]))
	return string(b[:i]), binary.BigEndian.Uint64(b[i+1:]), time.UnixMilli(ms).UTC(), nil
}

// IdentifierKey is the identifier-index entry of id under an exact
// (system, value): one key per resource, empty value, so a write touches
// only its own entries however many resources share the identifier.
func IdentifierKey(typ, system, value, id string) []byte {
	return append(IdentifierPrefix(typ, system, value), id...)
}

// IdentifierPrefix is the prefix of the identifier-index entries of an
// exact (system, value); what follows it in a key is the id.
func IdentifierPrefix(typ, system, value string) []byte {
	return []byte("i/" + typ + "/" + system + "\x00" + value + "\x00")
}

// IdentifierAnyKey is the identifier-index entry of id under value in any
// system.
func IdentifierAnyKey(typ, value, id string) []byte {
	return append(IdentifierAnyPrefix(typ, value), id...)
}

// IdentifierAnyPrefix is the prefix of the identifier-index entries of
// value in any system.
func IdentifierAnyPrefix(typ, value string) []byte { return []byte("j/" + typ + "/" + value + "\x00") }

// LegacyIdentifierKey and LegacyIdentifierAnyKey are the identifier index
// of stores written before the per-resource entries: one key per
// identifier holding every id ('\n'-separated, sorted), rewritten whole by
// each write, so its cost grew with the number of resources sharing the
// identifier. Nothing adds to them any more; lookups still read them and
// writes that drop an identifier remove the id from them.
func LegacyIdentifierKey(typ, system, value string) []byte {
	return []byte("n/" + typ + "/" + system + "\x00" + value)
}

// LegacyIdentifierAnyKey: see LegacyIdentifierKey.
func LegacyIdentifierAnyKey(typ, value string) []byte { return []byte("m/" + typ + "/" + value) }

// IdempotencyKey is the key holding the result of an Idempotency-Key.
func IdempotencyKey(hexDigest string) []byte { return []byte("k/" + hexDigest) }

// IDList decodes a legacy identifier-index value.
func IDList(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\n")
}

// WithoutID returns the id list b without id; nil when it becomes empty.
func WithoutID(b []byte, id string) []byte {
	ids := IDList(b)
	i := sort.SearchStrings(ids, id)
	if i == len(ids) || ids[i] != id {
		return b
	}
	ids = append(ids[:i], ids[i+1:]...)
	if len(ids) == 0 {
		return nil
	}
	return []byte(strings.Join(ids, "\n"))
}

// ParseVersionID parses a decimal version id.
func ParseVersionID(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 || s[0] == '0' || s[0] == '+' {
		return 0, fmt.Errorf("fhir: bad version id")
	}
	return n, nil
}

// ValidID reports whether s is a valid FHIR id.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
