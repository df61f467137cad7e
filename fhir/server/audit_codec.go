package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/tandemhealth/tandem/fhir/access"
)

// The stored encoding of an AuditEvent batch (the value of ~a/e/<first>).
//
// A batch is stored compact: what appendAuditEvent needs to write the
// event's JSON again, not the JSON itself (about 100 bytes an event
// instead of about 700, so a group commit journals, applies, flushes and
// compacts a seventh of the bytes). Reads and searches decode it and write
// exactly the JSON that was stored before this encoding existed.
//
//	0x01                       marker: compact (a JSON batch starts with '{')
//	per event, in sequence order (the i-th event's id is first+i):
//	  varint   recorded, in ms since the previous event's (the first's: since
//	           the Unix epoch)
//	  uvarint  HTTP status
//	  string × 6  interaction, agent (token subject, "anonymous" for none),
//	           client id, network address, detail, observer
//	  uvarint  number of entities, then each: string type, string id
//	  uvarint  number of patients (sorted), then each: string id
//
// A string is uvarint n, then n-1 bytes; n = 0 repeats the value the same
// field (the entities' types, ids and the patients each count as one
// field) had last in the batch ("" at its start), which is what most of
// an event's fields do.
//
// Batches stored before (one JSON per line, each carrying its id) are
// still read as they are.
const auditCompact = 0x01

// Fields of the "previous value" state of the compact encoding.
const (
	fInteraction = iota
	fSubject
	fClient
	fAddress
	fDetail
	fObserver
	fEntityType
	fEntityID
	fPatient
	nAuditFields
)

// auditEncoder appends compact events to a batch.
type auditEncoder struct {
	prev   [nAuditFields]string
	lastMs int64
}

func (e *auditEncoder) str(b []byte, f int, s string) []byte {
	if s == e.prev[f] {
		return append(b, 0)
	}
	e.prev[f] = s
	b = binary.AppendUvarint(b, uint64(len(s))+1)
	return append(b, s...)
}

// appendEvent appends one event (patients sorted) to b, which must start
// with the marker.
func (e *auditEncoder) appendEvent(b []byte, rec *auditRec, status int, ents []auditEntity, patients []string, at time.Time) []byte {
	ms := at.UnixMilli()
	b = binary.AppendVarint(b, ms-e.lastMs)
	e.lastMs = ms
	b = binary.AppendUvarint(b, uint64(max(status, 0)))
	client := ""
	if rec.p != nil {
		client = rec.p.ClientID
	}
	b = e.str(b, fInteraction, rec.interaction)
	b = e.str(b, fSubject, subjectOf(rec.p))
	b = e.str(b, fClient, client)
	b = e.str(b, fAddress, rec.address)
	b = e.str(b, fDetail, rec.detail)
	b = e.str(b, fObserver, rec.observer)
	b = binary.AppendUvarint(b, uint64(len(ents)))
	for i := range ents {
		b = e.str(b, fEntityType, ents[i].typ)
		b = e.str(b, fEntityID, ents[i].id)
	}
	b = binary.AppendUvarint(b, uint64(len(patients)))
	for _, p := range patients {
		b = e.str(b, fPatient, p)
	}
	return b
}

// storedAudit is one AuditEvent read back from a batch.
type storedAudit struct {
	seq uint64
	at  time.Time

	// Compact: the fields to write its JSON from.
	rec      auditRec
	p        access.Principal
	ents     []auditEntity
	patients []string

	// Stored as JSON (before the compact encoding): the line itself.
	json []byte
}

// appendJSON appends the event's FHIR R4 AuditEvent JSON to b.
func (e *storedAudit) appendJSON(b []byte) []byte {
	if e.json != nil {
		return append(b, e.json...)
	}
	return appendAuditEvent(b, &e.rec, e.rec.status, e.ents, e.patients, e.at, e.seq)
}

// recorded is the event's time (ms precision); for a JSON event it is
// parsed from the JSON.
func (e *storedAudit) recorded() (time.Time, bool) {
	if e.json == nil {
		return e.at, true
	}
	var x struct{ Recorded time.Time }
	if json.Unmarshal(e.json, &x) != nil {
		return time.Time{}, false
	}
	return x.Recorded, true
}

var errAuditBatch = errors.New("fhir: corrupt stored AuditEvent batch")

// auditDecoder reads a compact batch.
type auditDecoder struct {
	b      []byte
	prev   [nAuditFields]string
	lastMs int64
	err    bool
}

func (d *auditDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *auditDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *auditDecoder) str(f int) string {
	n := d.uvarint()
	if n == 0 {
		return d.prev[f]
	}
	if n-1 > uint64(len(d.b)) {
		d.err, d.b = true, nil
		return ""
	}
	s := string(d.b[:n-1])
	d.b = d.b[n-1:]
	d.prev[f] = s
	return s
}

// count reads a count of items each taking at least one byte.
func (d *auditDecoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err, d.b = true, nil
		return 0
	}
	return int(n)
}

// eachStoredAudit calls fn with every event of the batch stored at
// ~a/e/<first>, in order, until fn returns false. The event passed is
// reused by the next call.
func eachStoredAudit(first uint64, v []byte, fn func(*storedAudit) bool) error {
	if len(v) == 0 {
		return errAuditBatch
	}
	if v[0] != auditCompact {
		for _, line := range bytes.Split(v, []byte{'\n'}) {
			seq, err := strconv.ParseUint(idOf("AuditEvent", line), 10, 64)
			if err != nil {
				return errAuditBatch
			}
			if !fn(&storedAudit{seq: seq, json: line}) {
				return nil
			}
		}
		return nil
	}
	d := auditDecoder{b: v[1:]}
	var e storedAudit
	for seq := first; len(d.b) > 0; seq++ {
		ms := d.lastMs + d.varint()
		d.lastMs = ms
		status := d.uvarint()
		if status > 999 {
			return errAuditBatch
		}
		e = storedAudit{seq: seq, at: time.UnixMilli(ms).UTC(), ents: e.ents[:0], patients: e.patients[:0]}
		e.rec.status = int(status)
		e.rec.interaction = d.str(fInteraction)
		e.p.Subject = d.str(fSubject)
		e.p.ClientID = d.str(fClient)
		e.rec.p = &e.p
		e.rec.address = d.str(fAddress)
		e.rec.detail = d.str(fDetail)
		e.rec.observer = d.str(fObserver)
		for n := d.count(); n > 0 && !d.err; n-- {
			typ := d.str(fEntityType)
			e.ents = append(e.ents, auditEntity{typ: typ, id: d.str(fEntityID)})
		}
		for n := d.count(); n > 0 && !d.err; n-- {
			e.patients = append(e.patients, d.str(fPatient))
		}
		if d.err {
			return errAuditBatch
		}
		if !fn(&e) {
			return nil
		}
	}
	return nil
}
