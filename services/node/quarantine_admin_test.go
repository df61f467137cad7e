package node

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/fhir"
)

// TestLostResourcesAreTheTailsNetChange: several versions of a resource in
// one tail are one re-apply from the version before the tail to the last
// one; a create then delete is nothing; a delete keeps its base version;
// records outside the fhir database and index keys name no resource.
func TestLostResourcesAreTheTailsNetChange(t *testing.T) {
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	set := func(typ, id string, kind fhir.Kind, vid uint64, body string) QuarantineOp {
		v := &fhir.Version{Kind: kind, VersionID: vid, LastUpdated: at, Seq: vid}
		if body != "" {
			v.JSON = []byte(body)
		}
		return QuarantineOp{Kind: "set", Key: string(fhir.CurrentKey(typ, id)), Value: fhir.EncodeVersion(v)}
	}
	rec := func(lsn uint64, db string, ops ...QuarantineOp) QuarantineRecord {
		return QuarantineRecord{LSN: lsn, Type: "data", Database: db, Ops: ops}
	}
	rep := QuarantineReport{Records: []QuarantineRecord{
		rec(11, "fhir", set("Patient", "new", fhir.KindUpdated, 1, `{"resourceType":"Patient","id":"new"}`),
			QuarantineOp{Kind: "set", Key: "i/Patient/family/x", Value: []byte("y")}),
		rec(12, "fhir", set("Patient", "upd", fhir.KindUpdated, 4, `{"resourceType":"Patient","id":"upd","active":true}`)),
		rec(13, "records", QuarantineOp{Kind: "set", Key: "c/Patient/raw", Value: []byte("not fhir")}),
		rec(14, "fhir", set("Patient", "upd", fhir.KindUpdated, 5, `{"resourceType":"Patient","id":"upd","active":false}`),
			set("Observation", "gone", fhir.KindDeleted, 3, "")),
		rec(15, "fhir", set("Patient", "brief", fhir.KindCreated, 1, `{"resourceType":"Patient","id":"brief"}`)),
		rec(16, "fhir", set("Patient", "brief", fhir.KindDeleted, 2, "")),
		rec(17, "fhir", set("Patient", "back", fhir.KindUpdated, 7, `{"resourceType":"Patient","id":"back"}`)),
	}}
	got := LostResources(rep)
	want := []LostResource{
		{Type: "Patient", ID: "new", BaseVersion: 0, Version: 1, Interaction: "create", LSN: 11, Resource: json.RawMessage(`{"resourceType":"Patient","id":"new"}`)},
		{Type: "Patient", ID: "upd", BaseVersion: 3, Version: 5, Interaction: "update", LSN: 14, Resource: json.RawMessage(`{"resourceType":"Patient","id":"upd","active":false}`)},
		{Type: "Observation", ID: "gone", BaseVersion: 2, Version: 3, Interaction: "delete", LSN: 14},
		{Type: "Patient", ID: "brief", BaseVersion: 0, Version: 2, Interaction: "none", LSN: 16},
		{Type: "Patient", ID: "back", BaseVersion: 6, Version: 7, Interaction: "update", LSN: 17, Resource: json.RawMessage(`{"resourceType":"Patient","id":"back"}`)},
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Fatalf("lost resources\n got %s\nwant %s", g, w)
	}
	if LostResources(QuarantineReport{}) != nil {
		t.Fatal("an empty report lost resources")
	}
}
