package wire

import (
	"bytes"
	"testing"

	"github.com/tandemhealth/tandem/mirror/failover"
)

// An append too large for one frame becomes consecutive appends that
// chain (each part's PrevLSN/PrevEpoch is the previous part's last entry),
// each within the limit, holding every entry once in order, with the same
// commit point and last LSN; other messages and small appends are untouched.
func TestEncodeSplitChainsAppendsWithinTheLimit(t *testing.T) {
	m := failover.Message{Type: failover.MsgAppend, From: "a", To: "b", Epoch: 3, PrevLSN: 9, PrevEpoch: 2, Commit: 12, LastLSN: 40, Mode: failover.ModeArbiter, ModeSeq: 1}
	for i := range 30 {
		e := failover.Entry{Epoch: 3, LSN: failover.LSN(10 + i), PrevEnd: 9, Data: bytes.Repeat([]byte{byte(i)}, 1000+100*i)}
		if i == 0 {
			e.Marker, e.Data = true, nil
		}
		m.Entries = append(m.Entries, e)
	}
	const limit = 6000
	parts, err := encodeSplit("records", m, limit)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < 2 {
		t.Fatalf("%d part(s)", len(parts))
	}
	prev, prevEpoch := m.PrevLSN, m.PrevEpoch
	var got []failover.Entry
	for i, tm := range parts {
		if len(tm.Payload) > limit {
			d, _ := Decode(tm)
			if len(d.Entries) > 1 {
				t.Fatalf("part %d: %d bytes with %d entries", i, len(tm.Payload), len(d.Entries))
			}
		}
		d, err := Decode(tm)
		if err != nil {
			t.Fatal(err)
		}
		if d.PrevLSN != prev || d.PrevEpoch != prevEpoch || d.Commit != m.Commit || d.LastLSN != m.LastLSN || d.Mode != m.Mode || d.ModeSeq != m.ModeSeq || d.Epoch != m.Epoch {
			t.Fatalf("part %d: %+v does not continue LSN %d epoch %d", i, d, prev, prevEpoch)
		}
		last := d.Entries[len(d.Entries)-1]
		prev, prevEpoch = last.LSN, last.Epoch
		got = append(got, d.Entries...)
	}
	if len(got) != len(m.Entries) {
		t.Fatalf("%d entries after the split, want %d", len(got), len(m.Entries))
	}
	for i := range got {
		if got[i].LSN != m.Entries[i].LSN || got[i].Marker != m.Entries[i].Marker || !bytes.Equal(got[i].Data, m.Entries[i].Data) {
			t.Fatalf("entry %d differs", i)
		}
	}

	small := m
	small.Entries = m.Entries[:2]
	if parts, _ := encodeSplit("records", small, limit); len(parts) != 1 {
		t.Fatalf("a small append was split into %d", len(parts))
	}
	hb := failover.Message{Type: failover.MsgAppendResp, From: "b", To: "a", Epoch: 3, Match: 5}
	if parts, _ := EncodeSplit("records", hb); len(parts) != 1 {
		t.Fatalf("a response was split into %d", len(parts))
	}
}
