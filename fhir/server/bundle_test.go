package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemhealth/tandem/fhir/server"
)

func statuses(tb testing.TB, bundle map[string]any) []string {
	tb.Helper()
	var out []string
	for _, e := range bundle["entry"].([]any) {
		out = append(out, e.(map[string]any)["response"].(map[string]any)["status"].(string))
	}
	return out
}

func TestBatchEntriesAreIndependent(t *testing.T) {
	n := memNode(t)
	body := `{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient","gender":"male"}},
		{"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient","gender":"robot"}},
		{"request":{"method":"PUT","url":"Patient/b1"},"resource":{"resourceType":"Patient","id":"b1"}},
		{"request":{"method":"GET","url":"Patient/b1"}},
		{"request":{"method":"GET","url":"Patient/nope"}},
		{"request":{"method":"PUT","url":"Patient/b1","ifMatch":"W/\"5\""},"resource":{"resourceType":"Patient","id":"b1"}},
		{"request":{"method":"DELETE","url":"Patient/b1"}},
		{"request":{"method":"PATCH","url":"Patient/b1"}}
	]}`
	m := wantStatus(t, n.do(t, "POST", "", []byte(body)), http.StatusOK)
	if m["type"] != "batch-response" {
		t.Fatalf("type %v", m["type"])
	}
	got := strings.Join(statuses(t, m), ",")
	want := "201 Created,400 Bad Request,201 Created,200 OK,404 Not Found,412 Precondition Failed,204 No Content,400 Bad Request"
	if got != want {
		t.Fatalf("statuses\n got %s\nwant %s", got, want)
	}
	e1 := m["entry"].([]any)[1].(map[string]any)["response"].(map[string]any)
	if e1["outcome"].(map[string]any)["resourceType"] != "OperationOutcome" {
		t.Fatal("failed batch entry without an OperationOutcome")
	}
	// The entries that succeeded are stored: one patient left (b1 deleted).
	s := wantStatus(t, n.do(t, "GET", "/Patient", nil), http.StatusOK)
	if len(s["entry"].([]any)) != 1 {
		t.Fatalf("%d patients after the batch, want 1", len(s["entry"].([]any)))
	}
}

func TestTransactionConditionalAndReferences(t *testing.T) {
	n := memNode(t)
	wantStatus(t, n.do(t, "PUT", "/Organization/org1", []byte(`{"resourceType":"Organization","id":"org1","identifier":[{"system":"urn:npi","value":"99"}]}`)), http.StatusCreated)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000001","request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:mrn|7"},
		 "resource":{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"7"}],"managingOrganization":{"reference":"Organization?identifier=urn:npi|99"}}},
		{"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000002","request":{"method":"POST","url":"Encounter"},
		 "resource":{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000001"}}},
		{"request":{"method":"PUT","url":"Observation/o1"},
		 "resource":{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000001"},"encounter":{"reference":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000002"}}}
	]}`
	m := wantStatus(t, n.do(t, "POST", "", []byte(tx), "Prefer", "return=representation"), http.StatusOK)
	if got := strings.Join(statuses(t, m), ","); got != "201 Created,201 Created,201 Created" {
		t.Fatalf("first run statuses %s", got)
	}
	entries := m["entry"].([]any)
	pat := entries[0].(map[string]any)["resource"].(map[string]any)
	if pat["managingOrganization"].(map[string]any)["reference"] != "Organization/org1" {
		t.Fatalf("conditional reference resolved to %v", pat["managingOrganization"])
	}
	obs := entries[2].(map[string]any)["resource"].(map[string]any)
	enc := entries[1].(map[string]any)["resource"].(map[string]any)
	if obs["subject"].(map[string]any)["reference"] != "Patient/"+pat["id"].(string) ||
		obs["encounter"].(map[string]any)["reference"] != "Encounter/"+enc["id"].(string) {
		t.Fatalf("references not rewritten: %v %v", obs["subject"], obs["encounter"])
	}

	// Second run: the patient exists, so its fullUrl now means the existing
	// patient; the observation gets version 2.
	m = wantStatus(t, n.do(t, "POST", "", []byte(tx)), http.StatusOK)
	if got := strings.Join(statuses(t, m), ","); got != "200 OK,201 Created,200 OK" {
		t.Fatalf("second run statuses %s", got)
	}
	rec := n.do(t, "GET", "/Observation/o1", nil)
	wantStatus(t, rec, http.StatusOK)
	if !bytes.Contains(rec.Body.Bytes(), []byte(`"reference":"Patient/`+pat["id"].(string)+`"`)) || rec.Header().Get("ETag") != `W/"2"` {
		t.Fatalf("observation after second run: %s %s", rec.Header().Get("ETag"), rec.Body.String())
	}
	s := wantStatus(t, n.do(t, "GET", "/Patient", nil), http.StatusOK)
	if len(s["entry"].([]any)) != 1 {
		t.Fatal("conditional create inside a transaction created a second patient")
	}

	// Two entries with the same condition in one transaction create one
	// resource; references to either fullUrl point at it.
	twice := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:bbbbbbbb-0000-4000-8000-000000000001","request":{"method":"POST","url":"Practitioner","ifNoneExist":"identifier=urn:npi|5"},"resource":{"resourceType":"Practitioner","identifier":[{"system":"urn:npi","value":"5"}]}},
		{"fullUrl":"urn:uuid:bbbbbbbb-0000-4000-8000-000000000002","request":{"method":"POST","url":"Practitioner","ifNoneExist":"identifier=urn:npi|5"},"resource":{"resourceType":"Practitioner","identifier":[{"system":"urn:npi","value":"5"}]}},
		{"request":{"method":"POST","url":"Encounter"},"resource":{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},
		 "participant":[{"individual":{"reference":"urn:uuid:bbbbbbbb-0000-4000-8000-000000000001"}},{"individual":{"reference":"urn:uuid:bbbbbbbb-0000-4000-8000-000000000002"}}]}}
	]}`
	m = wantStatus(t, n.do(t, "POST", "", []byte(twice), "Prefer", "return=representation"), http.StatusOK)
	if got := strings.Join(statuses(t, m), ","); got != "201 Created,200 OK,201 Created" {
		t.Fatalf("same condition twice: statuses %s", got)
	}
	ps := wantStatus(t, n.do(t, "GET", "/Practitioner", nil), http.StatusOK)
	if len(ps["entry"].([]any)) != 1 {
		t.Fatalf("%d practitioners, want 1", len(ps["entry"].([]any)))
	}
	pid := ps["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["id"].(string)
	encJSON, _ := json.Marshal(m["entry"].([]any)[2].(map[string]any)["resource"])
	if bytes.Count(encJSON, []byte(`"Practitioner/`+pid+`"`)) != 2 {
		t.Fatalf("encounter participants: %s", encJSON)
	}

	// A conditional reference that matches nothing fails the whole transaction.
	bad := strings.Replace(tx, "urn:npi|99", "urn:npi|100", 1)
	bad = strings.Replace(bad, "urn:mrn|7", "urn:mrn|8", 1)
	before := n.hash(t)
	wantStatus(t, n.do(t, "POST", "", []byte(bad)), http.StatusPreconditionFailed)
	if n.hash(t) != before {
		t.Fatal("a failed transaction stored something")
	}
}

// FuzzTransaction: whatever is posted to the base, the answer is never a
// 5xx, and a non-2xx stores nothing.
func FuzzTransaction(f *testing.F) {
	for _, seed := range []string{
		`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient"}},{"request":{"method":"POST","url":"Observation"},"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:1"}}}]}`,
		`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"PUT","url":"Patient/a"},"resource":{"resourceType":"Patient","id":"a"}},{"request":{"method":"GET","url":"Patient/a"}}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/a"}},{"request":{"method":"POST","url":"Patient","ifNoneExist":"_id=a"},"resource":{"resourceType":"Patient"}}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient/a","ifMatch":"W/\"1\""},"resource":{"resourceType":"Patient","id":"a","managingOrganization":{"reference":"Organization?identifier=x"}}}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{}]}`,
		`{"resourceType":"Bundle"}`,
		`[]`,
	} {
		f.Add([]byte(seed))
	}
	n := newNode(f, vfs.NewMem(), "n", server.Options{MaxBodyBytes: 1 << 20})
	f.Fuzz(func(t *testing.T, body []byte) {
		lsn := n.j.LastLSN()
		rec := n.do(t, "POST", "", body)
		if rec.Code >= 500 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
		if rec.Code >= 300 {
			wantStatus(t, rec, rec.Code)
			if n.j.LastLSN() != lsn {
				t.Fatal("a refused bundle wrote to the journal")
			}
		}
	})
}

// TestResponsesAreValidR4: every Bundle and OperationOutcome the server
// writes passes google/fhir/go's validating parser.
func TestResponsesAreValidR4(t *testing.T) {
	n := memNode(t)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1b2c3d4e-0000-4000-8000-000000000001","request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient"}},{"request":{"method":"PUT","url":"Patient/v1"},"resource":{"resourceType":"Patient","id":"v1","link":[{"type":"seealso","other":{"reference":"urn:uuid:1b2c3d4e-0000-4000-8000-000000000001"}}]}},{"request":{"method":"GET","url":"Patient/v1"}}]}`
	batch := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"DELETE","url":"Patient/v1"}},{"request":{"method":"GET","url":"Patient/nope"}}]}`
	for _, tc := range []struct{ method, path, body, prefer string }{
		{"POST", "", tx, "return=representation"},
		{"POST", "", tx, "return=OperationOutcome"},
		{"POST", "", batch, ""},
		{"GET", "/_history", "", ""},
		{"GET", "/Patient/_history?_count=1", "", ""},
		{"GET", "/Patient/v1/_history", "", ""},
		{"GET", "/Patient?_count=1", "", ""},
		{"GET", "/Patient?identifier=x", "", ""},
		{"GET", "/Patient/nope", "", ""},
		{"POST", "/Patient", `{"resourceType":"Patient"}`, "return=OperationOutcome"},
	} {
		var body []byte
		if tc.body != "" {
			body = []byte(tc.body)
		}
		rec := n.do(t, tc.method, tc.path, body, "Prefer", tc.prefer)
		if err := sharedParser(t).Validate(rec.Body.Bytes()); err != nil {
			t.Errorf("%s %s (%d): response is not valid R4: %v\n%.400s", tc.method, tc.path, rec.Code, err, rec.Body.String())
		}
	}
}
