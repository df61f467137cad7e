package search

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sort"
)

// RecordFormat is the format byte of a forward record.
const RecordFormat = 1

// ErrBadRecord is returned for a forward record that cannot be decoded.
var ErrBadRecord = errors.New("search: malformed forward record")

// RecordKey is the key of the forward record of Type/id.
func RecordKey(typ, id string) []byte { return []byte("r/" + typ + "/" + id) }

// RecordPrefix is the prefix of every forward record of a type.
func RecordPrefix(typ string) []byte { return []byte("r/" + typ + "/") }

// Indexed reports whether entries of this kind get an inverted-index key
// (equality and prefix searches); the others are matched from the forward
// record only.
func Indexed(kind byte) bool {
	return kind == KindString || kind == KindToken || kind == KindReference || kind == KindURI
}

// ParamPrefix is the prefix of the inverted index of one parameter.
func ParamPrefix(typ, param string) []byte { return []byte("x/" + typ + "/" + param + "\x00") }

// IndexKey is the inverted-index key of one entry of Type/id.
func IndexKey(typ, id string, e Entry) []byte {
	k := ParamPrefix(typ, e.Param)
	k = append(k, e.Value...)
	k = append(k, 0)
	return append(k, id...)
}

// IDOfIndexKey returns the id at the end of an inverted-index key.
func IDOfIndexKey(k []byte) string {
	i := bytes.LastIndexByte(k, 0)
	if i < 0 {
		return ""
	}
	return string(k[i+1:])
}

// EncodeRecord is the forward record of a resource's entries (sorted by
// Extract).
func EncodeRecord(es []Entry) []byte {
	b := []byte{RecordFormat}
	for _, e := range es {
		b = binary.AppendUvarint(b, uint64(len(e.Param)))
		b = append(b, e.Param...)
		b = append(b, e.Kind)
		b = binary.AppendUvarint(b, uint64(len(e.Value)))
		b = append(b, e.Value...)
	}
	return b
}

// DecodeRecord decodes a forward record. Values alias b.
func DecodeRecord(b []byte) ([]Entry, error) {
	if len(b) == 0 || b[0] != RecordFormat {
		return nil, ErrBadRecord
	}
	b = b[1:]
	out := make([]Entry, 0, len(b)/24+1)
	prev := ""
	field := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, false
		}
		v := b[k : k+int(n)]
		b = b[k+int(n):]
		return v, true
	}
	for len(b) > 0 {
		p, ok := field()
		if !ok || len(b) == 0 {
			return nil, ErrBadRecord
		}
		kind := b[0]
		b = b[1:]
		v, ok := field()
		if !ok {
			return nil, ErrBadRecord
		}
		if string(p) != prev { // entries are sorted: one string per parameter
			prev = string(p)
		}
		out = append(out, Entry{Param: prev, Kind: kind, Value: v})
	}
	return out, nil
}

// Rebase points the values of es, decoded from b, at the same bytes of c,
// a copy of b: entries decoded from an iterator's memory are kept without
// decoding the record again. A value sliced from b starts cap(b)-cap(v)
// bytes into it.
func Rebase(es []Entry, b, c []byte) {
	for i, e := range es {
		off := cap(b) - cap(e.Value)
		es[i].Value = c[off : off+len(e.Value) : off+len(e.Value)]
	}
}

// Of returns the entries of one parameter (es sorted by parameter).
func Of(es []Entry, param string) []Entry {
	lo, hi := 0, len(es)
	for lo < hi {
		m := (lo + hi) / 2
		if es[m].Param < param {
			lo = m + 1
		} else {
			hi = m
		}
	}
	j := lo
	for j < len(es) && es[j].Param == param {
		j++
	}
	return es[lo:j]
}

// CompartmentKey is the copy of the forward record of Type/id kept under
// patient pid's compartment, so a patient-scoped search lists its
// candidates, with their entries, in one prefix scan.
func CompartmentKey(pid, typ, id string) []byte { return []byte("p/" + pid + "/" + typ + "/" + id) }

// CompartmentPrefix is the prefix of every resource of typ in patient
// pid's compartment ("" typ: every type).
func CompartmentPrefix(pid, typ string) []byte {
	if typ == "" {
		return []byte("p/" + pid + "/")
	}
	return []byte("p/" + pid + "/" + typ + "/")
}

// Patients returns the ids of the patients in whose compartment a
// resource of typ with these entries is (CompartmentDefinition-patient):
// the patients its compartment parameters reference, and a Patient itself.
func (r *Registry) Patients(typ, id string, es []Entry) []string {
	var out []string
	if typ == "Patient" {
		out = append(out, id)
	}
	for _, p := range r.compartment[typ] {
		for _, e := range Of(es, p) {
			if t, pid := DecodeReference(e.Value); t == "Patient" && validID(pid) {
				out = append(out, pid)
			}
		}
	}
	sort.Strings(out)
	dedup := out[:0]
	for i, p := range out {
		if i == 0 || p != out[i-1] {
			dedup = append(dedup, p)
		}
	}
	return dedup
}

func validID(s string) bool {
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
