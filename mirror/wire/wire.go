// Package wire encodes the failover cores' messages for the transport.
//
// A failover.Message travels as one transport frame: the frame's type is
// the message type, its sender and epoch are the message's, and its payload
// is the message body. The body is a version byte followed by the JSON of
// the message with its journal entries moved out into length-prefixed raw
// bytes, so journal data crosses the wire as it is, not as base64. The JSON
// leaves out every field at its zero value (failover.Message's omitzero
// tags): a message names only what its type sets, which keeps the encode
// and decode on the commit path short; a field that is absent decodes as
// zero, so bodies spelling every field out decode the same:
//
//	1 byte   body version (1)
//	4 bytes  JSON length J (big-endian), then J bytes of JSON (no entry data)
//	4 bytes  entry count N, then N × (4-byte length, bytes): each entry's Data
//
// The JSON is written and read without reflection (json.go), byte for
// byte what encoding/json writes. Decoding is strict: unknown JSON fields,
// a type or sender that disagrees with the frame, or lengths past the end
// are errors, and such a message never reaches a core.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/transport"
)

// BodyVersion is the version of the message body format.
const BodyVersion = 1

// ErrBadMessage is wrapped by every decoding error.
var ErrBadMessage = errors.New("wire: bad message")

// Encode turns m into a transport message for tier.
func Encode(tier string, m failover.Message) (transport.Message, error) {
	data := make([][]byte, len(m.Entries))
	if len(m.Entries) > 0 {
		entries := make([]failover.Entry, len(m.Entries))
		for i, e := range m.Entries {
			data[i] = e.Data
			e.Data = nil
			entries[i] = e
		}
		m.Entries = entries
	}
	size := 9 + 512 + 4*len(data) // 512: room for the JSON of any message but a long Alignment
	for _, d := range data {
		size += len(d)
	}
	body := make([]byte, 5, size)
	body[0] = BodyVersion
	body = appendMessage(body, &m)
	binary.BigEndian.PutUint32(body[1:5], uint32(len(body)-5))
	body = binary.BigEndian.AppendUint32(body, uint32(len(data)))
	for _, d := range data {
		body = binary.BigEndian.AppendUint32(body, uint32(len(d)))
		body = append(body, d...)
	}
	return transport.Message{Type: uint8(m.Type), Tier: tier, From: string(m.From), Epoch: uint64(m.Epoch), Payload: body}, nil
}

// Decode turns a transport message back into a failover message, checking
// that the frame and the body agree.
func Decode(tm transport.Message) (failover.Message, error) {
	var m failover.Message
	b := tm.Payload
	if len(b) < 5 || b[0] != BodyVersion {
		return m, fmt.Errorf("%w: missing or unknown body version", ErrBadMessage)
	}
	jl := binary.BigEndian.Uint32(b[1:5])
	b = b[5:]
	if uint64(jl) > uint64(len(b)) {
		return m, fmt.Errorf("%w: JSON length %d past the end", ErrBadMessage, jl)
	}
	m, err := decodeMessage(b[:jl])
	if err != nil {
		return m, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	b = b[jl:]
	if len(b) < 4 {
		return m, fmt.Errorf("%w: missing entry count", ErrBadMessage)
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if int(n) != len(m.Entries) {
		return m, fmt.Errorf("%w: %d entry bodies for %d entries", ErrBadMessage, n, len(m.Entries))
	}
	for i := range m.Entries {
		if len(b) < 4 {
			return m, fmt.Errorf("%w: entry %d length missing", ErrBadMessage, i)
		}
		l := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(l) > uint64(len(b)) {
			return m, fmt.Errorf("%w: entry %d length %d past the end", ErrBadMessage, i, l)
		}
		if l > 0 {
			m.Entries[i].Data = b[:l:l]
		}
		b = b[l:]
	}
	if len(b) != 0 {
		return m, fmt.Errorf("%w: %d trailing bytes", ErrBadMessage, len(b))
	}
	if uint8(m.Type) != tm.Type || string(m.From) != tm.From || uint64(m.Epoch) != tm.Epoch {
		return m, fmt.Errorf("%w: frame (type %d, from %q, epoch %d) disagrees with body (type %d, from %q, epoch %d)",
			ErrBadMessage, tm.Type, tm.From, tm.Epoch, m.Type, m.From, m.Epoch)
	}
	return m, nil
}

// EntryFromRecord is how a journal record appears to the failover core:
// an epoch marker carries the end of the previous epoch; a data record's
// Data is the record as a shipped journal frame (journal.EncodeShipped), so
// its CRC-32C travels with it to every member.
func EntryFromRecord(rec journal.Record) (failover.Entry, error) {
	e := failover.Entry{Epoch: failover.Epoch(rec.Epoch), LSN: failover.LSN(rec.LSN)}
	if rec.Type == journal.TypeEpochMarker {
		_, prevEnd, err := journal.DecodeEpochMarker(rec.Payload)
		if err != nil {
			return e, fmt.Errorf("epoch marker at LSN %d: %w", rec.LSN, err)
		}
		e.Marker, e.PrevEnd = true, failover.LSN(prevEnd)
		return e, nil
	}
	data, err := journal.EncodeShipped(rec)
	if err != nil {
		return e, err
	}
	e.Data = data
	return e, nil
}

// RecordFromEntry is the inverse of EntryFromRecord; prevEpoch is the epoch
// of the record at the marker's PrevEnd. A data entry whose frame fails its
// CRC, or names another epoch or LSN than the entry, is an error.
func RecordFromEntry(e failover.Entry, prevEpoch uint64) (journal.Record, error) {
	if e.Marker {
		return journal.Record{Type: journal.TypeEpochMarker, Epoch: uint64(e.Epoch), LSN: uint64(e.LSN),
			Payload: journal.EncodeEpochMarker(prevEpoch, uint64(e.PrevEnd))}, nil
	}
	rec, err := journal.DecodeShipped(e.Data)
	if err != nil {
		return rec, fmt.Errorf("%w: entry %d: %w", ErrBadMessage, e.LSN, err)
	}
	if rec.Epoch != uint64(e.Epoch) || rec.LSN != uint64(e.LSN) || rec.Type != journal.TypeData {
		return rec, fmt.Errorf("%w: entry (%d,%d) carries record (%d,%d)", ErrBadMessage, e.Epoch, e.LSN, rec.Epoch, rec.LSN)
	}
	return rec, nil
}

// ReadEntries reads every record of j as core entries: how a member's
// journal looks to its failover core at start, and what an agent hands over
// after fencing the member. The core holds the entries in memory, so this
// costs memory in proportion to the journal (see the mirror's design note).
func ReadEntries(j *journal.Journal) ([]failover.Entry, error) {
	r, err := j.NewReader(j.StartLSN())
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []failover.Entry
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		e, err := EntryFromRecord(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
}

// ReadJournal reads every record of j as core entries, with the base the
// journal starts after (see failover.Base). The base's epoch comes from the
// first record: an epoch marker names the epoch before it, any other record
// is in the same epoch as the one before it. A journal that starts after
// LSN 1 but holds no record (a member re-seeded and not yet caught up, or
// purged down to an empty segment) cannot say it: recorded, the base its
// shell saved when the journal's start last moved, gives it, and must name
// the LSN just before the journal's start.
func ReadJournal(j *journal.Journal, recorded *failover.Base) (failover.Base, []failover.Entry, error) {
	start := j.StartLSN()
	if start <= 1 {
		entries, err := ReadEntries(j)
		return failover.Base{}, entries, err
	}
	r, err := j.NewReader(start)
	if err != nil {
		return failover.Base{}, nil, err
	}
	defer r.Close()
	base := failover.Base{LSN: failover.LSN(start - 1)}
	var out []failover.Entry
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return base, nil, err
		}
		if len(out) == 0 {
			base.Epoch = failover.Epoch(rec.Epoch)
			if rec.Type == journal.TypeEpochMarker {
				prev, prevEnd, err := journal.DecodeEpochMarker(rec.Payload)
				if err != nil {
					return base, nil, fmt.Errorf("epoch marker at LSN %d: %w", rec.LSN, err)
				}
				if prevEnd != start-1 {
					return base, nil, fmt.Errorf("the epoch marker at LSN %d names %d, not %d, as the previous epoch's end", rec.LSN, prevEnd, start-1)
				}
				base.Epoch = failover.Epoch(prev)
			}
		}
		e, err := EntryFromRecord(rec)
		if err != nil {
			return base, nil, err
		}
		out = append(out, e)
	}
	switch {
	case len(out) > 0 && recorded != nil && recorded.LSN == base.LSN && recorded.Epoch != base.Epoch:
		return base, nil, fmt.Errorf("the journal starts after LSN %d of epoch %d, but its recorded base says epoch %d", base.LSN, base.Epoch, recorded.Epoch)
	case len(out) == 0 && (recorded == nil || recorded.LSN != base.LSN):
		return base, nil, fmt.Errorf("the journal starts at LSN %d and holds no record, and no base was recorded for it: its epoch at LSN %d is unknown", start, base.LSN)
	case len(out) == 0:
		base.Epoch = recorded.Epoch
	}
	return base, out, nil
}
