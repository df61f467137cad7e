package wire

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/tandemhealth/tandem/mirror/failover"
)

// The JSON of a message body, written and read without reflection.
//
// encoding/json took ~12% of the CPU of a mirrored write at 64 writers
// (decoding an append or an acknowledgement by reflection costs more than
// the TLS that carries it). appendMessage writes exactly the bytes
// json.Marshal writes for a failover.Message (same fields, order, omitzero,
// escaping), so members of earlier builds read them unchanged;
// decodeMessage reads what appendMessage writes, in any field order and
// spacing, and is stricter than encoding/json where encoding/json is
// lenient for no use here: field names must match exactly (not regardless
// of case), a field may appear once, only the JSON of one object with
// nothing after it, and null only for slices (json.Marshal's nil slice:
// members built before omitzero spelled every field out). Everything
// it accepts, encoding/json (with unknown fields refused) decodes to the
// same message: FuzzMessageJSON holds it to that, and TestMessageJSON
// holds appendMessage to json.Marshal for every field.

// appendMessage appends the JSON of m, as json.Marshal writes it.
func appendMessage(b []byte, m *failover.Message) []byte {
	o := object{b: append(b, '{')}
	o.uint("Type", uint64(m.Type))
	o.str("From", string(m.From))
	o.str("To", string(m.To))
	o.uint("Epoch", uint64(m.Epoch))
	o.bytes("Data", m.Data)
	if m.Entries != nil {
		o.key("Entries")
		o.b = append(o.b, '[')
		for i := range m.Entries {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			o.b = appendEntry(o.b, &m.Entries[i])
		}
		o.b = append(o.b, ']')
	}
	o.uint("PrevLSN", uint64(m.PrevLSN))
	o.uint("PrevEpoch", uint64(m.PrevEpoch))
	o.uint("Commit", uint64(m.Commit))
	o.uint("LastLSN", uint64(m.LastLSN))
	o.uint("Mode", uint64(m.Mode))
	o.uint("ModeSeq", m.ModeSeq)
	o.bool("BackupActive", m.BackupActive)
	o.bool("JournalGone", m.JournalGone)
	o.bool("Resync", m.Resync)
	o.uint("Restarts", m.Restarts)
	o.uint("Match", uint64(m.Match))
	o.bool("Reject", m.Reject)
	o.uint("Hint", uint64(m.Hint))
	o.bool("ArbiterContact", m.ArbiterContact)
	o.uint("Op", uint64(m.Op))
	if m.Seen != (failover.Version{}) {
		o.key("Seen")
		o.b = appendVersion(o.b, m.Seen)
	}
	o.uint("LSN", uint64(m.LSN))
	if m.Known != (failover.Record{}) {
		o.key("Known")
		o.b = appendRecord(o.b, &m.Known)
	}
	o.uint("Session", m.Session)
	o.bool("Reseed", m.Reseed)
	o.bool("OK", m.OK)
	if m.Record != (failover.Record{}) {
		o.key("Record")
		o.b = appendRecord(o.b, &m.Record)
	}
	o.uint("FromLSN", uint64(m.FromLSN))
	o.uint("FromEpoch", uint64(m.FromEpoch))
	o.bool("Down", m.Down)
	o.bool("Fenced", m.Fenced)
	o.bool("FullLog", m.FullLog)
	o.bool("Flag", m.Flag)
	o.bool("Up", m.Up)
	if m.Alignment.Aligned || m.Alignment.Reasons != nil {
		o.key("Alignment")
		o.b = append(o.b, `{"Aligned":`...)
		o.b = strconv.AppendBool(o.b, m.Alignment.Aligned)
		o.b = append(o.b, `,"Reasons":`...)
		if m.Alignment.Reasons == nil {
			o.b = append(o.b, "null"...)
		} else {
			o.b = append(o.b, '[')
			for i, r := range m.Alignment.Reasons {
				if i > 0 {
					o.b = append(o.b, ',')
				}
				o.b = appendString(o.b, r)
			}
			o.b = append(o.b, ']')
		}
		o.b = append(o.b, '}')
	}
	return append(o.b, '}')
}

func appendEntry(b []byte, e *failover.Entry) []byte {
	o := object{b: append(b, '{')}
	o.uint("Epoch", uint64(e.Epoch))
	o.uint("LSN", uint64(e.LSN))
	o.bool("Marker", e.Marker)
	o.uint("PrevEnd", uint64(e.PrevEnd))
	o.bytes("Data", e.Data)
	return append(o.b, '}')
}

// appendVersion and appendRecord write every field: their types carry no
// omitzero tags.
func appendVersion(b []byte, v failover.Version) []byte {
	b = append(b, `{"Epoch":`...)
	b = strconv.AppendUint(b, uint64(v.Epoch), 10)
	b = append(b, `,"Seq":`...)
	b = strconv.AppendUint(b, v.Seq, 10)
	return append(b, '}')
}

func appendRecord(b []byte, r *failover.Record) []byte {
	b = append(b, `{"Version":`...)
	b = appendVersion(b, r.Version)
	b = append(b, `,"Primary":`...)
	b = appendString(b, string(r.Primary))
	b = append(b, `,"Backup":`...)
	b = appendString(b, string(r.Backup))
	b = append(b, `,"BackupActive":`...)
	b = strconv.AppendBool(b, r.BackupActive)
	b = append(b, `,"Mode":`...)
	b = strconv.AppendUint(b, uint64(r.Mode), 10)
	b = append(b, `,"ForkLSN":`...)
	b = strconv.AppendUint(b, uint64(r.ForkLSN), 10)
	return append(b, '}')
}

// object writes the members of a JSON object, leaving out zero values
// (omitzero).
type object struct {
	b     []byte
	count int
}

func (o *object) key(k string) {
	if o.count > 0 {
		o.b = append(o.b, ',')
	}
	o.count++
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

func (o *object) uint(k string, v uint64) {
	if v != 0 {
		o.key(k)
		o.b = strconv.AppendUint(o.b, v, 10)
	}
}

func (o *object) bool(k string, v bool) {
	if v {
		o.key(k)
		o.b = append(o.b, "true"...)
	}
}

func (o *object) str(k, v string) {
	if v != "" {
		o.key(k)
		o.b = appendString(o.b, v)
	}
}

func (o *object) bytes(k string, v []byte) {
	if v != nil { // omitzero keeps an empty, non-nil slice
		o.key(k)
		o.b = append(o.b, '"')
		o.b = base64.StdEncoding.AppendEncode(o.b, v)
		o.b = append(o.b, '"')
	}
}

// appendString writes s as json.Marshal does: a string that needs no
// escaping (printable ASCII other than " \ < > &) as it is, any other
// through encoding/json itself.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// errJSON is wrapped by every decodeMessage error.
var errJSON = errors.New("message JSON")

// decodeMessage reads the JSON of a message (see appendMessage).
func decodeMessage(b []byte) (failover.Message, error) {
	var m failover.Message
	d := decoder{b: b}
	err := d.object(func(k string) error {
		switch k {
		case "Type":
			return d.uint8((*uint8)(&m.Type))
		case "From":
			return d.id(&m.From)
		case "To":
			return d.id(&m.To)
		case "Epoch":
			return d.uint64((*uint64)(&m.Epoch))
		case "Data":
			return d.bytes(&m.Data)
		case "Entries":
			if d.null() {
				return nil
			}
			m.Entries = []failover.Entry{}
			return d.array(func() error {
				m.Entries = append(m.Entries, failover.Entry{})
				return d.entry(&m.Entries[len(m.Entries)-1])
			})
		case "PrevLSN":
			return d.uint64((*uint64)(&m.PrevLSN))
		case "PrevEpoch":
			return d.uint64((*uint64)(&m.PrevEpoch))
		case "Commit":
			return d.uint64((*uint64)(&m.Commit))
		case "LastLSN":
			return d.uint64((*uint64)(&m.LastLSN))
		case "Mode":
			return d.uint8((*uint8)(&m.Mode))
		case "ModeSeq":
			return d.uint64(&m.ModeSeq)
		case "BackupActive":
			return d.bool(&m.BackupActive)
		case "JournalGone":
			return d.bool(&m.JournalGone)
		case "Resync":
			return d.bool(&m.Resync)
		case "Restarts":
			return d.uint64(&m.Restarts)
		case "Match":
			return d.uint64((*uint64)(&m.Match))
		case "Reject":
			return d.bool(&m.Reject)
		case "Hint":
			return d.uint64((*uint64)(&m.Hint))
		case "ArbiterContact":
			return d.bool(&m.ArbiterContact)
		case "Op":
			return d.uint8((*uint8)(&m.Op))
		case "Seen":
			return d.version(&m.Seen)
		case "LSN":
			return d.uint64((*uint64)(&m.LSN))
		case "Known":
			return d.record(&m.Known)
		case "Session":
			return d.uint64(&m.Session)
		case "Reseed":
			return d.bool(&m.Reseed)
		case "OK":
			return d.bool(&m.OK)
		case "Record":
			return d.record(&m.Record)
		case "FromLSN":
			return d.uint64((*uint64)(&m.FromLSN))
		case "FromEpoch":
			return d.uint64((*uint64)(&m.FromEpoch))
		case "Down":
			return d.bool(&m.Down)
		case "Fenced":
			return d.bool(&m.Fenced)
		case "FullLog":
			return d.bool(&m.FullLog)
		case "Flag":
			return d.bool(&m.Flag)
		case "Up":
			return d.bool(&m.Up)
		case "Alignment":
			return d.object(func(k string) error {
				switch k {
				case "Aligned":
					return d.bool(&m.Alignment.Aligned)
				case "Reasons":
					if d.null() {
						return nil
					}
					m.Alignment.Reasons = []string{}
					return d.array(func() error {
						s, err := d.string()
						m.Alignment.Reasons = append(m.Alignment.Reasons, s)
						return err
					})
				}
				return d.unknown(k)
			})
		}
		return d.unknown(k)
	})
	if err == nil && d.space() < len(b) {
		err = d.fail("data after the object")
	}
	return m, err
}

func (d *decoder) entry(e *failover.Entry) error {
	return d.object(func(k string) error {
		switch k {
		case "Epoch":
			return d.uint64((*uint64)(&e.Epoch))
		case "LSN":
			return d.uint64((*uint64)(&e.LSN))
		case "Marker":
			return d.bool(&e.Marker)
		case "PrevEnd":
			return d.uint64((*uint64)(&e.PrevEnd))
		case "Data":
			return d.bytes(&e.Data)
		}
		return d.unknown(k)
	})
}

func (d *decoder) version(v *failover.Version) error {
	return d.object(func(k string) error {
		switch k {
		case "Epoch":
			return d.uint64((*uint64)(&v.Epoch))
		case "Seq":
			return d.uint64(&v.Seq)
		}
		return d.unknown(k)
	})
}

func (d *decoder) record(r *failover.Record) error {
	return d.object(func(k string) error {
		switch k {
		case "Version":
			return d.version(&r.Version)
		case "Primary":
			return d.id(&r.Primary)
		case "Backup":
			return d.id(&r.Backup)
		case "BackupActive":
			return d.bool(&r.BackupActive)
		case "Mode":
			return d.uint8((*uint8)(&r.Mode))
		case "ForkLSN":
			return d.uint64((*uint64)(&r.ForkLSN))
		}
		return d.unknown(k)
	})
}

// decoder reads JSON values from b at i.
type decoder struct {
	b []byte
	i int
}

func (d *decoder) fail(what string) error {
	return fmt.Errorf("%w: %s at byte %d", errJSON, what, d.i)
}

func (d *decoder) unknown(k string) error {
	return fmt.Errorf("%w: unknown field %q", errJSON, k)
}

// space skips JSON whitespace and returns the position of the next byte.
func (d *decoder) space() int {
	for d.i < len(d.b) && (d.b[d.i] == ' ' || d.b[d.i] == '\t' || d.b[d.i] == '\n' || d.b[d.i] == '\r') {
		d.i++
	}
	return d.i
}

// next skips whitespace and consumes c, if it comes next.
func (d *decoder) next(c byte) bool {
	if d.space() < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *decoder) null() bool {
	if d.space()+4 <= len(d.b) && string(d.b[d.i:d.i+4]) == "null" && !d.literalAt(d.i+4) {
		d.i += 4
		return true
	}
	return false
}

// object reads an object, calling member for each key with the position
// at its value; a key may appear once.
func (d *decoder) object(member func(k string) error) error {
	if !d.next('{') {
		return d.fail("want an object")
	}
	if d.next('}') {
		return nil
	}
	var seen [48]string // the keys so far: known field names, at most 36 in one object
	n := 0
	for {
		k, err := d.key()
		if err != nil {
			return err
		}
		for _, s := range seen[:n] {
			if s == k {
				return fmt.Errorf("%w: field %q twice", errJSON, k)
			}
		}
		if n < len(seen) {
			seen[n] = k
			n++
		}
		if !d.next(':') {
			return d.fail("want ':'")
		}
		if err := member(k); err != nil {
			return err
		}
		if d.next('}') {
			return nil
		}
		if !d.next(',') {
			return d.fail("want ',' or '}'")
		}
	}
}

// array reads an array, calling elem with the position at each element.
func (d *decoder) array(elem func() error) error {
	if !d.next('[') {
		return d.fail("want an array")
	}
	if d.next(']') {
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		if d.next(']') {
			return nil
		}
		if !d.next(',') {
			return d.fail("want ',' or ']'")
		}
	}
}

// fieldNames are the field names of every object in a message: a key
// that is one of them is read without allocating.
var fieldNames = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Type", "From", "To", "Epoch", "Data", "Entries", "PrevLSN", "PrevEpoch", "Commit",
		"LastLSN", "Mode", "ModeSeq", "BackupActive", "JournalGone", "Resync", "Restarts", "Match", "Reject", "Hint",
		"ArbiterContact", "Op", "Seen", "LSN", "Known", "Session", "Reseed", "OK", "Record", "FromLSN", "FromEpoch",
		"Down", "Fenced", "FullLog", "Flag", "Up", "Alignment", "Aligned", "Reasons", "Marker", "PrevEnd", "Seq",
		"Version", "Primary", "Backup", "ForkLSN"} {
		m[k] = k
	}
	return m
}()

// key reads an object's key: a known field name without allocating.
func (d *decoder) key() (string, error) {
	start := d.space()
	if d.next('"') {
		for end := d.i; end < len(d.b) && end-d.i <= 16; end++ {
			if c := d.b[end]; c == '"' {
				if k, ok := fieldNames[string(d.b[d.i:end])]; ok {
					d.i = end + 1
					return k, nil
				}
				break
			} else if c == '\\' || c < 0x20 || c >= 0x80 {
				break
			}
		}
	}
	d.i = start
	return d.string()
}

// string reads a string. One with escapes or non-ASCII bytes is decoded by
// encoding/json, so it means what it meant to json.Unmarshal.
func (d *decoder) string() (string, error) {
	if !d.next('"') {
		return "", d.fail("want a string")
	}
	start := d.i - 1
	plain := true
	for ; d.i < len(d.b); d.i++ {
		switch c := d.b[d.i]; {
		case c == '"':
			d.i++
			if plain {
				return string(d.b[start+1 : d.i-1]), nil
			}
			var s string
			if err := json.Unmarshal(d.b[start:d.i], &s); err != nil {
				return "", fmt.Errorf("%w: %v", errJSON, err)
			}
			return s, nil
		case c == '\\':
			plain = false
			d.i++ // the escaped byte cannot end the string
		case c < 0x20:
			return "", d.fail("control character in a string")
		case c >= 0x80:
			plain = false
		}
	}
	return "", d.fail("unterminated string")
}

func (d *decoder) id(p *failover.ID) error {
	s, err := d.string()
	*p = failover.ID(s)
	return err
}

// bytes reads base64 (standard, padded) as encoding/json does, or null
// (left nil: a field appears once).
func (d *decoder) bytes(p *[]byte) error {
	if d.null() {
		return nil
	}
	s, err := d.string()
	if err != nil {
		return err
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("%w: %v", errJSON, err)
	}
	*p = b
	return nil
}

func (d *decoder) bool(p *bool) error {
	d.space()
	switch {
	case len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "true":
		*p, d.i = true, d.i+4
	case len(d.b)-d.i >= 5 && string(d.b[d.i:d.i+5]) == "false":
		*p, d.i = false, d.i+5
	default:
		return d.fail("want true or false")
	}
	return d.literalEnd()
}

// literalEnd checks that a number or literal is not run into letters or
// digits ("truex", "12a").
func (d *decoder) literalEnd() error {
	if d.literalAt(d.i) {
		return d.fail("bad literal")
	}
	return nil
}

// literalAt: b[i] could continue a number or literal.
func (d *decoder) literalAt(i int) bool {
	if i >= len(d.b) {
		return false
	}
	c := d.b[i]
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '-' || c == '+'
}

// uint64 reads a non-negative integer: digits, no leading zero, sign,
// fraction or exponent.
func (d *decoder) uint64(p *uint64) error {
	start := d.space()
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	digits := d.b[start:d.i]
	if len(digits) == 0 || len(digits) > 1 && digits[0] == '0' {
		return d.fail("want an unsigned integer")
	}
	if err := d.literalEnd(); err != nil {
		return err
	}
	v, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %v", errJSON, err)
	}
	*p = v
	return nil
}

func (d *decoder) uint8(p *uint8) error {
	var v uint64
	if err := d.uint64(&v); err != nil {
		return err
	}
	if v > 255 {
		return d.fail("number out of range")
	}
	*p = uint8(v)
	return nil
}
