package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/transport"
)

func samples() []failover.Message {
	return []failover.Message{
		{Type: failover.MsgAppend, From: "a", To: "b", Epoch: 3, PrevLSN: 9, PrevEpoch: 2, Commit: 9, LastLSN: 11,
			Entries: []failover.Entry{{Epoch: 3, LSN: 10, Data: []byte("record ten")}, {Epoch: 3, LSN: 11, Marker: true, PrevEnd: 9}}},
		{Type: failover.MsgAppendResp, From: "b", To: "a", Epoch: 3, Match: 11},
		{Type: failover.MsgArbiterReq, From: "a", To: "arbiter", Epoch: 3, Op: failover.OpBackupInactive,
			Seen: failover.Version{Epoch: 3, Seq: 4}, Known: failover.Record{Primary: "a", Backup: "b"}},
		{Type: failover.MsgArbiterResp, From: "arbiter", To: "a", Epoch: 3, OK: true,
			Record: failover.Record{Version: failover.Version{Epoch: 3, Seq: 5}, Primary: "a", Backup: "b"}},
		{Type: failover.MsgSetAlignment, From: "operator", To: "b", Alignment: failover.Alignment{Aligned: false, Reasons: []string{"users differ"}}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range samples() {
		tm, err := Encode("records", m)
		if err != nil {
			t.Fatal(err)
		}
		// Through a real frame, as on the wire.
		frame, err := transport.AppendFrame(nil, tm)
		if err != nil {
			t.Fatal(err)
		}
		tm2, _, err := transport.DecodeFrame(frame)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(tm2)
		if err != nil {
			t.Fatalf("%v: %v", m.Type, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip of %v:\n got %+v\nwant %+v", m.Type, got, m)
		}
	}
}

func TestEntryDataTravelsRaw(t *testing.T) {
	data := bytes.Repeat([]byte{0xAB}, 4096)
	tm, _ := Encode("t", failover.Message{Type: failover.MsgAppend, From: "a", Entries: []failover.Entry{{LSN: 1, Data: data}}})
	if !bytes.Contains(tm.Payload, data) {
		t.Fatal("entry data is not carried as raw bytes")
	}
	if len(tm.Payload) > len(data)+1024 { // the JSON header is under 1 KiB
		t.Fatalf("payload %d bytes for %d bytes of data", len(tm.Payload), len(data))
	}
}

// TestZeroFieldsStayOffTheWire: the JSON of a message names only the
// fields it sets (a backup's acknowledgement is a handful of them, not the
// forty of every message type), so the commit path's encode and decode
// stay small (issue 4: they were 45 µs per hop).
func TestZeroFieldsStayOffTheWire(t *testing.T) {
	for _, m := range samples() {
		tm, err := Encode("records", m)
		if err != nil {
			t.Fatal(err)
		}
		js := tm.Payload[5 : 5+binary.BigEndian.Uint32(tm.Payload[1:5])]
		for _, unset := range []string{`"Known"`, `"Alignment"`, `"FullLog"`, `"Data"`} {
			if m.Type != failover.MsgArbiterReq && m.Type != failover.MsgSetAlignment && bytes.Contains(js, []byte(unset)) {
				t.Errorf("%v: zero field %s encoded: %s", m.Type, unset, js)
			}
		}
	}
	ack, _ := Encode("records", samples()[1])
	if len(ack.Payload) > 100 {
		t.Errorf("an acknowledgement takes %d bytes: %s", len(ack.Payload), ack.Payload)
	}
}

// TestDecodesEveryFieldSpelledOut: a body that spells out every zero
// field, as members before zero fields were left out wrote them, decodes
// to the same message (a mixed-version pair still understands each other).
func TestDecodesEveryFieldSpelledOut(t *testing.T) {
	for _, m := range samples() {
		tm, err := Encode("records", m)
		if err != nil {
			t.Fatal(err)
		}
		// The JSON again, with every field spelled out.
		full, err := json.Marshal(reflectAllFields(m))
		if err != nil {
			t.Fatal(err)
		}
		jl := binary.BigEndian.Uint32(tm.Payload[1:5])
		body := append([]byte{BodyVersion}, binary.BigEndian.AppendUint32(nil, uint32(len(full)))...)
		body = append(body, full...)
		body = append(body, tm.Payload[5+jl:]...)
		tm.Payload = body
		got, err := Decode(tm)
		if err != nil {
			t.Fatalf("%v: %v\n%s", m.Type, err, full)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("%v:\n got %+v\nwant %+v", m.Type, got, m)
		}
	}
}

// reflectAllFields is m as a map of every top-level field by name (entry
// data left out, as Encode does), zero or not.
func reflectAllFields(m failover.Message) map[string]any {
	out := map[string]any{}
	v := reflect.ValueOf(m)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		val := v.Field(i).Interface()
		if f.Name == "Entries" && m.Entries != nil {
			var es []map[string]any
			for _, e := range m.Entries {
				es = append(es, map[string]any{"Epoch": e.Epoch, "LSN": e.LSN, "Marker": e.Marker, "PrevEnd": e.PrevEnd, "Data": nil})
			}
			val = es
		}
		out[f.Name] = val
	}
	return out
}

func TestDecodeRefusesDisagreementAndDamage(t *testing.T) {
	m := samples()[0]
	good, _ := Encode("t", m)
	cases := map[string]func(tm *transport.Message){
		"sender differs": func(tm *transport.Message) { tm.From = "b" },
		"type differs":   func(tm *transport.Message) { tm.Type++ },
		"epoch differs":  func(tm *transport.Message) { tm.Epoch = 1 },
		"bad version":    func(tm *transport.Message) { tm.Payload[0] = 9 },
		"truncated":      func(tm *transport.Message) { tm.Payload = tm.Payload[:len(tm.Payload)-3] },
		"trailing":       func(tm *transport.Message) { tm.Payload = append(tm.Payload, 0) },
		"unknown field": func(tm *transport.Message) {
			tm.Payload = bytes.Replace(tm.Payload, []byte(`"Commit"`), []byte(`"Commix"`), 1)
		},
		"entry count off": func(tm *transport.Message) { tm.Payload[len(tm.Payload)-4-len("record ten")-4-4-1] ^= 1 },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			tm := good
			tm.Payload = bytes.Clone(good.Payload)
			mutate(&tm)
			if _, err := Decode(tm); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range samples() {
		tm, _ := Encode("t", m)
		f.Add(tm.Type, tm.From, tm.Epoch, tm.Payload)
	}
	f.Fuzz(func(t *testing.T, typ uint8, from string, epoch uint64, payload []byte) {
		m, err := Decode(transport.Message{Type: typ, Tier: "t", From: from, Epoch: epoch, Payload: payload})
		if err != nil {
			return
		}
		if _, err := Encode("t", m); err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
	})
}
