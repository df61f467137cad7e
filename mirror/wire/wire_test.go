package wire

import (
	"bytes"
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
