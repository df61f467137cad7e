package search

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxValueBytes bounds an indexed value; longer values are stored with the
// resource but not indexed (and so cannot be found by search).
const MaxValueBytes = 512

// Entry is one index value of one resource: a parameter and the encoded
// value (see the package doc for the encodings).
type Entry struct {
	Param string
	Kind  byte
	Value []byte
}

// Extract evaluates every supported parameter of the resource's type and
// returns its index entries, sorted and without duplicates, plus
// _lastUpdated. js is the final JSON of a stored version.
func (r *Registry) Extract(typ string, js []byte, lastUpdated time.Time) ([]Entry, error) {
	var res map[string]any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&res); err != nil {
		return nil, err
	}
	var out []Entry
	lu := lastUpdated.UnixMilli()
	out = append(out, Entry{Param: "_lastUpdated", Kind: KindDate, Value: encodeRange(lu, lu+1)})
	for code, p := range r.byType[typ] {
		if !p.Supported() {
			continue
		}
		for _, n := range p.path.Eval(res) {
			for _, v := range values(p.Kind, n) {
				if len(v) > MaxValueBytes {
					continue
				}
				out = append(out, Entry{Param: code, Kind: p.Kind, Value: v})
			}
			if p.Kind == KindReference {
				// :identifier searches Reference.identifier.
				if m, ok := n.v.(map[string]any); ok {
					if id, ok := m["identifier"].(map[string]any); ok {
						for _, v := range tokenValues(node{v: id}) {
							out = append(out, Entry{Param: code + ":identifier", Kind: KindToken, Value: v})
						}
					}
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Param != out[j].Param {
			return out[i].Param < out[j].Param
		}
		return bytes.Compare(out[i].Value, out[j].Value) < 0
	})
	dedup := out[:0]
	for i, e := range out {
		if i > 0 && e.Param == out[i-1].Param && bytes.Equal(e.Value, out[i-1].Value) {
			continue
		}
		dedup = append(dedup, e)
	}
	return dedup, nil
}

func values(kind byte, n node) [][]byte {
	switch kind {
	case KindString:
		var out [][]byte
		for _, s := range stringsOf(n.v) {
			out = append(out, EncodeString(s))
		}
		return out
	case KindToken:
		return tokenValues(n)
	case KindReference:
		return refValues(n)
	case KindURI:
		if s, ok := n.v.(string); ok && validValue(s) {
			return [][]byte{[]byte(s)}
		}
	case KindDate:
		return dateValues(n)
	case KindQuantity:
		return quantityValues(n)
	case KindNumber:
		if f, ok := number(n.v); ok {
			return [][]byte{encodeFloat(f)}
		}
	}
	return nil
}

// validValue refuses values that cannot be part of a key.
func validValue(s string) bool {
	return s != "" && len(s) <= MaxValueBytes && strings.IndexByte(s, 0) < 0 && strings.IndexByte(s, 1) < 0 && utf8.ValidString(s)
}

// stringsOf collects the strings of a string element, HumanName or Address.
func stringsOf(v any) []string {
	switch x := v.(type) {
	case string:
		if validValue(x) {
			return []string{x}
		}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, stringsOf(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for k, e := range x {
			switch k {
			case "use", "period", "extension", "id", "type":
				continue
			}
			out = append(out, stringsOf(e)...)
		}
		return out
	}
	return nil
}

// Normalize is the form strings are compared in: lower case, without
// accents on Latin letters, spaces collapsed.
func Normalize(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		r = unicode.ToLower(fold(r))
		b.WriteRune(r)
	}
	return b.String()
}

var accents = map[rune]rune{}

func init() {
	for from, to := range map[string]rune{
		"àáâãäåā": 'a', "ÀÁÂÃÄÅĀ": 'a', "çćč": 'c', "ÇĆČ": 'c', "èéêëēė": 'e', "ÈÉÊËĒĖ": 'e',
		"ìíîïī": 'i', "ÌÍÎÏĪ": 'i', "ñń": 'n', "ÑŃ": 'n', "òóôõöøō": 'o', "ÒÓÔÕÖØŌ": 'o',
		"ùúûüū": 'u', "ÙÚÛÜŪ": 'u', "ýÿ": 'y', "Ý": 'y', "šś": 's', "ŠŚ": 's', "žźż": 'z', "ŽŹŻ": 'z',
	} {
		for _, r := range from {
			accents[r] = to
		}
	}
}

func fold(r rune) rune {
	if to, ok := accents[r]; ok {
		return to
	}
	return r
}

// EncodeString is a string value: normalized form, 0x01, original.
func EncodeString(s string) []byte {
	return []byte(Normalize(s) + "\x01" + s)
}

// DecodeString splits a string value.
func DecodeString(v []byte) (norm, orig string) {
	n, o, _ := strings.Cut(string(v), "\x01")
	return n, o
}

// EncodeToken is a token value: code, 0x01, system.
func EncodeToken(system, code string) []byte { return []byte(code + "\x01" + system) }

// DecodeToken splits a token value.
func DecodeToken(v []byte) (system, code string) {
	c, s, _ := strings.Cut(string(v), "\x01")
	return s, c
}

func tokenValues(n node) [][]byte {
	var out [][]byte
	add := func(system, code string) {
		if validValue(code) && (system == "" || validValue(system)) {
			out = append(out, EncodeToken(system, code))
		}
	}
	switch x := n.v.(type) {
	case string:
		add("", x)
	case bool:
		add("", strconv.FormatBool(x))
	case json.Number:
		add("", x.String())
	case map[string]any:
		str := func(k string) string { s, _ := x[k].(string); return s }
		if cs, ok := x["coding"].([]any); ok { // CodeableConcept
			for _, c := range cs {
				if cm, ok := c.(map[string]any); ok {
					s, _ := cm["system"].(string)
					code, _ := cm["code"].(string)
					add(s, code)
				}
			}
			return out
		}
		if code := str("code"); code != "" { // Coding, Quantity
			add(str("system"), code)
			return out
		}
		if v := str("value"); v != "" { // Identifier, ContactPoint
			add(str("system"), v)
		}
	}
	return out
}

// EncodeReference is a reference value: id, 0x01, type for a Type/id
// reference; the whole reference, 0x01 for any other (canonical, absolute
// URL of an unknown form).
func EncodeReference(typ, id string) []byte { return []byte(id + "\x01" + typ) }

// DecodeReference splits a reference value.
func DecodeReference(v []byte) (typ, id string) {
	i, t, _ := strings.Cut(string(v), "\x01")
	return t, i
}

func refValues(n node) [][]byte {
	var ref string
	switch x := n.v.(type) {
	case string: // canonical, uri
		ref = x
	case map[string]any:
		ref, _ = x["reference"].(string)
	}
	if !validValue(ref) || strings.HasPrefix(ref, "#") {
		return nil
	}
	if typ, id, ok := SplitReference(ref); ok {
		return [][]byte{EncodeReference(typ, id)}
	}
	return [][]byte{EncodeReference("", ref)}
}

// Date values are ranges [lo, hi) in Unix milliseconds, each 8 bytes
// big-endian with the sign bit flipped (so they sort as numbers).

func encodeRange(lo, hi int64) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(lo)^1<<63)
	return binary.BigEndian.AppendUint64(b, uint64(hi)^1<<63)
}

// DecodeRange decodes a date value.
func DecodeRange(v []byte) (lo, hi int64, ok bool) {
	if len(v) != 16 {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(v) ^ 1<<63), int64(binary.BigEndian.Uint64(v[8:]) ^ 1<<63), true
}

const (
	minTime = math.MinInt64 / 2
	maxTime = math.MaxInt64 / 2
)

var errDate = errors.New("search: not a FHIR date")

// ParseDate parses a FHIR date, dateTime or instant into the range of
// milliseconds it covers. Without a time zone, UTC.
func ParseDate(s string) (lo, hi int64, err error) {
	layouts := []struct {
		layout string
		step   func(time.Time) time.Time
	}{
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
	}
	for _, l := range layouts {
		if len(s) == len(l.layout) {
			t, err := time.ParseInLocation(l.layout, s, time.UTC)
			if err != nil {
				return 0, 0, errDate
			}
			return t.UnixMilli(), l.step(t).UnixMilli(), nil
		}
	}
	if len(s) < 16 || s[10] != 'T' {
		return 0, 0, errDate
	}
	body, zone := s, ""
	if strings.HasSuffix(s, "Z") {
		body, zone = s[:len(s)-1], "Z"
	} else if i := strings.LastIndexAny(s[10:], "+-"); i >= 0 {
		body, zone = s[:10+i], s[10+i:]
	}
	loc := time.UTC
	if zone != "" && zone != "Z" {
		z, err := time.Parse("-07:00", zone)
		if err != nil {
			return 0, 0, errDate
		}
		_, off := z.Zone()
		loc = time.FixedZone("", off)
	}
	var step time.Duration
	var t time.Time
	switch {
	case len(body) == 16: // hh:mm
		t, err = time.ParseInLocation("2006-01-02T15:04", body, loc)
		step = time.Minute
	case len(body) == 19:
		t, err = time.ParseInLocation("2006-01-02T15:04:05", body, loc)
		step = time.Second
	case len(body) > 20 && body[19] == '.':
		t, err = time.ParseInLocation("2006-01-02T15:04:05.999999999", body, loc)
		step = time.Millisecond
	default:
		return 0, 0, errDate
	}
	if err != nil {
		return 0, 0, errDate
	}
	return t.UnixMilli(), t.Add(step).UnixMilli(), nil
}

func dateValues(n node) [][]byte {
	one := func(s string) [][]byte {
		lo, hi, err := ParseDate(s)
		if err != nil {
			return nil
		}
		return [][]byte{encodeRange(lo, hi)}
	}
	switch x := n.v.(type) {
	case string:
		return one(x)
	case map[string]any:
		if ev, ok := x["event"].([]any); ok { // Timing
			var out [][]byte
			for _, e := range ev {
				if s, ok := e.(string); ok {
					out = append(out, one(s)...)
				}
			}
			return out
		}
		start, _ := x["start"].(string)
		end, _ := x["end"].(string)
		if start == "" && end == "" {
			return nil
		}
		lo, hi := int64(minTime), int64(maxTime)
		if start != "" {
			l, _, err := ParseDate(start)
			if err != nil {
				return nil
			}
			lo = l
		}
		if end != "" {
			_, h, err := ParseDate(end)
			if err != nil {
				return nil
			}
			hi = h
		}
		return [][]byte{encodeRange(lo, hi)}
	}
	return nil
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	}
	return 0, false
}

func encodeFloat(f float64) []byte {
	u := math.Float64bits(f)
	if f < 0 {
		u = ^u
	} else {
		u |= 1 << 63
	}
	return binary.BigEndian.AppendUint64(nil, u)
}

// DecodeFloat decodes the first 8 bytes of a number or quantity value.
func DecodeFloat(v []byte) (float64, bool) {
	if len(v) < 8 {
		return 0, false
	}
	u := binary.BigEndian.Uint64(v)
	if u&(1<<63) != 0 {
		u &^= 1 << 63
	} else {
		u = ^u
	}
	return math.Float64frombits(u), true
}

// EncodeQuantity is a quantity value: the number (8 bytes), then system,
// 0x01, code, 0x01, unit.
func EncodeQuantity(f float64, system, code, unit string) []byte {
	return append(encodeFloat(f), system+"\x01"+code+"\x01"+unit...)
}

// DecodeQuantity splits a quantity value.
func DecodeQuantity(v []byte) (f float64, system, code, unit string, ok bool) {
	f, ok = DecodeFloat(v)
	if !ok {
		return
	}
	parts := strings.SplitN(string(v[8:]), "\x01", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return f, parts[0], parts[1], parts[2], true
}

func quantityValues(n node) [][]byte {
	m, ok := n.v.(map[string]any)
	if !ok {
		return nil
	}
	f, ok := number(m["value"])
	if !ok {
		return nil
	}
	s, _ := m["system"].(string)
	c, _ := m["code"].(string)
	u, _ := m["unit"].(string)
	if strings.ContainsAny(s+c+u, "\x00\x01") {
		return nil
	}
	return [][]byte{EncodeQuantity(f, s, c, u)}
}
