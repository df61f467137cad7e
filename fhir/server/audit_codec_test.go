package server

import (
	"bytes"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/fhir/access"
)

// auditCodecCases are AuditEvents of every kind the server writes: reads
// naming resources and their patients, a write, refusals, an anonymous
// request, logins with address and detail, an event forwarded from
// another member, text that JSON escapes, and fields repeating and
// changing from one event to the next (the compact encoding's "same as
// before").
func auditCodecCases() []struct {
	rec      auditRec
	ents     []auditEntity
	patients []string
} {
	at := time.Date(2025, 3, 1, 10, 0, 0, 123e6, time.UTC)
	dr := &access.Principal{Subject: "dr", ClientID: "ehr-app"}
	return []struct {
		rec      auditRec
		ents     []auditEntity
		patients []string
	}{
		{auditRec{p: dr, interaction: "read", at: at, status: 200},
			[]auditEntity{{typ: "Observation", id: "0b6c9a8e-1f2d-4c3b-9a8e-7d6c5b4a3f21"}}, []string{"p-1"}},
		{auditRec{p: dr, interaction: "read", at: at, status: 200},
			[]auditEntity{{typ: "Observation", id: "0b6c9a8e-1f2d-4c3b-9a8e-7d6c5b4a3f22"}}, []string{"p-1"}},
		{auditRec{p: dr, interaction: "read", at: at.Add(-time.Second), status: 200},
			[]auditEntity{{typ: "Patient", id: "p-1"}}, []string{"p-1"}},
		{auditRec{p: dr, interaction: "search-type", at: at.Add(time.Hour), status: 0},
			[]auditEntity{{typ: "Condition", id: "c1"}, {typ: "Condition", id: "c2"}, {typ: "Encounter", id: "e1"}}, []string{"p-1", "p-2"}},
		{auditRec{p: &access.Principal{Subject: "loader", ClientID: "loader-app"}, interaction: "transaction", at: at, status: 200},
			[]auditEntity{{typ: "Patient", id: "p-3"}}, []string{"p-3"}},
		{auditRec{p: dr, interaction: "update", at: at, status: 200}, []auditEntity{{typ: "Patient", id: "p-3"}}, []string{"p-3"}},
		{auditRec{p: dr, interaction: "delete", at: at, status: 200}, []auditEntity{{typ: "Patient", id: "p-3"}}, nil},
		{auditRec{p: dr, interaction: "create", at: at, status: 201}, nil, nil},
		{auditRec{p: &access.Principal{Subject: "dr-c"}, interaction: "read", at: at, status: 403}, nil, nil},
		{auditRec{interaction: "read", at: at, status: 401}, nil, nil},
		{auditRec{p: &access.Principal{}, interaction: "operation", at: at, status: 500}, nil, nil},
		{auditRec{p: &access.Principal{Subject: "dave"}, interaction: loginInteraction, at: at, status: 200, address: "10.0.0.7"}, nil, nil},
		{auditRec{p: &access.Principal{Subject: "dave", ClientID: "lab-robot"}, interaction: loginInteraction, at: at, status: 400,
			address: "10.0.0.8", detail: "invalid_grant: wrong password"}, nil, nil},
		{auditRec{p: dr, interaction: "read", at: at, status: 200, observer: "b"},
			[]auditEntity{{typ: "Observation", id: "o1"}}, []string{"p-1"}},
		{auditRec{p: &access.Principal{Subject: "Zoë \"the\" <admin>\\\n", ClientID: "ü"}, interaction: "batch/transaction", at: time.Unix(0, 0), status: 200,
			observer: "c"}, []auditEntity{{typ: "Patient", id: "ä"}}, []string{"ä"}},
		{auditRec{p: dr, interaction: "history-instance", at: time.Date(1969, 12, 31, 23, 59, 59, 999e6, time.UTC), status: 404}, nil, nil},
	}
}

// TestAuditCompactSameJSON: a batch stored compact decodes to exactly the
// AuditEvent JSON the same events were stored as before the compact
// encoding (one JSON per line), and batches stored that way are still
// read as they are.
func TestAuditCompactSameJSON(t *testing.T) {
	const first = 41
	var legacy [][]byte
	compact := []byte{auditCompact}
	var enc auditEncoder
	cases := auditCodecCases()
	for i := range cases {
		c := &cases[i]
		legacy = append(legacy, appendAuditEvent(nil, &c.rec, c.rec.status, c.ents, c.patients, c.rec.at, uint64(first+i)))
		compact = enc.appendEvent(compact, &c.rec, c.rec.status, c.ents, c.patients, c.rec.at)
	}
	read := func(v []byte) [][]byte {
		t.Helper()
		var out [][]byte
		if err := eachStoredAudit(first, v, func(e *storedAudit) bool {
			out = append(out, e.appendJSON(nil))
			if at, ok := e.recorded(); !ok || !at.Equal(cases[len(out)-1].rec.at) {
				t.Fatalf("event %d: recorded %v, %v", len(out)-1, at, ok)
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for name, got := range map[string][][]byte{"compact": read(compact), "JSON": read(bytes.Join(legacy, []byte{'\n'}))} {
		if len(got) != len(legacy) {
			t.Fatalf("%s: %d events, want %d", name, len(got), len(legacy))
		}
		for i := range got {
			if !bytes.Equal(got[i], legacy[i]) {
				t.Fatalf("%s event %d:\n got %s\nwant %s", name, i, got[i], legacy[i])
			}
		}
	}
	if len(compact)*4 > len(bytes.Join(legacy, []byte{'\n'})) {
		t.Fatalf("compact batch %d bytes, JSON %d: not compact", len(compact), len(bytes.Join(legacy, nil)))
	}
	t.Logf("%d events: compact %d bytes, JSON %d", len(legacy), len(compact), len(bytes.Join(legacy, []byte{'\n'})))
}

// FuzzStoredAudit guards the decoder of stored AuditEvent batches: any
// value decodes or fails without panicking, and a compact batch that
// decodes, encoded again, decodes to the same JSON.
func FuzzStoredAudit(f *testing.F) {
	var enc auditEncoder
	compact := []byte{auditCompact}
	var legacy [][]byte
	cases := auditCodecCases()
	for i := range cases {
		c := &cases[i]
		compact = enc.appendEvent(compact, &c.rec, c.rec.status, c.ents, c.patients, c.rec.at)
		legacy = append(legacy, appendAuditEvent(nil, &c.rec, c.rec.status, c.ents, c.patients, c.rec.at, uint64(i+1)))
	}
	f.Add(uint64(1), compact)
	f.Add(uint64(1), bytes.Join(legacy, []byte{'\n'}))
	f.Add(uint64(7), []byte{auditCompact, 0, 0})
	f.Add(uint64(0), []byte{auditCompact, 0x80})
	f.Fuzz(func(t *testing.T, first uint64, v []byte) {
		var got [][]byte
		var again []byte
		var enc auditEncoder
		if len(v) > 0 && v[0] == auditCompact {
			again = []byte{auditCompact}
		}
		err := eachStoredAudit(first, v, func(e *storedAudit) bool {
			got = append(got, e.appendJSON(nil))
			if again != nil {
				again = enc.appendEvent(again, &e.rec, e.rec.status, e.ents, e.patients, e.at)
			}
			return true
		})
		if err != nil || again == nil {
			return
		}
		var back [][]byte
		if err := eachStoredAudit(first, again, func(e *storedAudit) bool {
			back = append(back, e.appendJSON(nil))
			return true
		}); err != nil {
			t.Fatalf("re-encoded batch: %v", err)
		}
		if len(back) != len(got) {
			t.Fatalf("re-encoded batch: %d events, want %d", len(back), len(got))
		}
		for i := range got {
			if !bytes.Equal(back[i], got[i]) {
				t.Fatalf("event %d:\n got %s\nwant %s", i, back[i], got[i])
			}
		}
	})
}
