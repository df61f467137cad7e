package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemhealth/tandem/fhir/server"
)

const patient = `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"42"}],"name":[{"family":"Doe","given":["Jane"]}],"gender":"female","birthDate":"1970-01-01"}`

func patientWithID(id string) []byte {
	return []byte(`{"resourceType":"Patient","id":"` + id + `","name":[{"family":"Roe"}]}`)
}

func TestCRUDLifecycle(t *testing.T) {
	n := memNode(t)

	rec := n.do(t, "POST", "/Patient", []byte(patient))
	created := wantStatus(t, rec, http.StatusCreated)
	id := created["id"].(string)
	if got, want := rec.Header().Get("Location"), "/fhir/Patient/"+id+"/_history/1"; got != want {
		t.Fatalf("Location %q, want %q", got, want)
	}
	if rec.Header().Get("ETag") != `W/"1"` || rec.Header().Get("Last-Modified") == "" {
		t.Fatalf("ETag %q Last-Modified %q", rec.Header().Get("ETag"), rec.Header().Get("Last-Modified"))
	}
	stored := rec.Body.Bytes()

	read := n.do(t, "GET", "/Patient/"+id, nil)
	wantStatus(t, read, http.StatusOK)
	if !bytes.Equal(read.Body.Bytes(), stored) {
		t.Fatal("read differs from the create response")
	}
	if !reflect.DeepEqual(withoutServerFields(tree(t, stored)), tree(t, []byte(patient))) {
		t.Fatal("stored resource is not the posted one")
	}

	upd := []byte(strings.Replace(patient, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"`+id+`"`, 1))
	upd = bytes.Replace(upd, []byte("Jane"), []byte("Janet"), 1)
	rec = n.do(t, "PUT", "/Patient/"+id, upd, "If-Match", `W/"1"`)
	wantStatus(t, rec, http.StatusOK)
	if rec.Header().Get("ETag") != `W/"2"` {
		t.Fatalf("ETag after update %q", rec.Header().Get("ETag"))
	}
	wantStatus(t, n.do(t, "PUT", "/Patient/"+id, upd, "If-Match", `W/"1"`), http.StatusPreconditionFailed)

	v1 := n.do(t, "GET", "/Patient/"+id+"/_history/1", nil)
	wantStatus(t, v1, http.StatusOK)
	if !bytes.Equal(v1.Body.Bytes(), stored) {
		t.Fatal("vread 1 differs from version 1")
	}
	wantStatus(t, n.do(t, "GET", "/Patient/"+id+"/_history/3", nil), http.StatusNotFound)

	wantStatus(t, n.do(t, "DELETE", "/Patient/"+id, nil), http.StatusNoContent)
	wantStatus(t, n.do(t, "GET", "/Patient/"+id, nil), http.StatusGone)
	wantStatus(t, n.do(t, "GET", "/Patient/"+id+"/_history/3", nil), http.StatusGone)
	wantStatus(t, n.do(t, "GET", "/Patient/"+id+"/_history/2", nil), http.StatusOK)
	// Deleting again changes nothing.
	before := n.hash(t)
	wantStatus(t, n.do(t, "DELETE", "/Patient/"+id, nil), http.StatusNoContent)
	if n.hash(t) != before {
		t.Fatal("second delete wrote something")
	}
	// Update after delete: a new version after the tombstone (If-None-Match
	// "*" allows it: no live version exists).
	rec = n.do(t, "PUT", "/Patient/"+id, upd, "If-None-Match", "*")
	wantStatus(t, rec, http.StatusCreated)
	if rec.Header().Get("ETag") != `W/"4"` {
		t.Fatalf("ETag after re-create %q", rec.Header().Get("ETag"))
	}

	h := wantStatus(t, n.do(t, "GET", "/Patient/"+id+"/_history", nil), http.StatusOK)
	if h["type"] != "history" || h["total"].(float64) != 4 {
		t.Fatalf("history %v total %v", h["type"], h["total"])
	}
	var methods []string
	for _, e := range h["entry"].([]any) {
		methods = append(methods, e.(map[string]any)["request"].(map[string]any)["method"].(string))
	}
	if want := []string{"PUT", "DELETE", "PUT", "POST"}; !reflect.DeepEqual(methods, want) {
		t.Fatalf("history methods %v, want %v (newest first)", methods, want)
	}

	// Create-on-update with a client id, create only.
	rec = n.do(t, "PUT", "/Patient/client-1", patientWithID("client-1"), "If-None-Match", "*")
	wantStatus(t, rec, http.StatusCreated)
	wantStatus(t, n.do(t, "PUT", "/Patient/client-1", patientWithID("client-1"), "If-None-Match", "*"), http.StatusPreconditionFailed)
	if rec.Header().Get("Location") != "/fhir/Patient/client-1/_history/1" {
		t.Fatalf("Location %q", rec.Header().Get("Location"))
	}
}

func TestPrefer(t *testing.T) {
	n := memNode(t)
	for _, tc := range []struct {
		prefer   string
		wantType string // "" = empty body
	}{
		{"", "Patient"},
		{"return=representation", "Patient"},
		{"return=minimal", ""},
		{"return=OperationOutcome", "OperationOutcome"},
	} {
		t.Run(tc.prefer, func(t *testing.T) {
			var hdr []string
			if tc.prefer != "" {
				hdr = []string{"Prefer", tc.prefer}
			}
			rec := n.do(t, "POST", "/Patient", []byte(patient), hdr...)
			m := wantStatus(t, rec, http.StatusCreated)
			if rec.Header().Get("Location") == "" {
				t.Fatal("no Location")
			}
			got := ""
			if m != nil {
				got = m["resourceType"].(string)
			}
			if got != tc.wantType {
				t.Fatalf("body %q, want %q", got, tc.wantType)
			}
		})
	}
}

func TestMetadata(t *testing.T) {
	n := memNode(t)
	rec := n.do(t, "GET", "/metadata", nil)
	m := wantStatus(t, rec, http.StatusOK)
	if m["resourceType"] != "CapabilityStatement" || m["fhirVersion"] != "4.0.1" {
		t.Fatalf("metadata %v %v", m["resourceType"], m["fhirVersion"])
	}
	if err := sharedParser(t).Validate(rec.Body.Bytes()); err != nil {
		t.Fatalf("CapabilityStatement is not valid R4: %v", err)
	}
}

// TestErrors: each error has its status, an OperationOutcome, and stores
// nothing.
func TestErrors(t *testing.T) {
	n := newNode(t, vfs.NewMem(), "n", server.Options{MaxBodyBytes: 4096, NewID: func() string { return "fixed" }})
	wantStatus(t, n.do(t, "PUT", "/Patient/p1", patientWithID("p1")), http.StatusCreated)
	wantStatus(t, n.do(t, "PUT", "/Patient/gone", patientWithID("gone")), http.StatusCreated)
	wantStatus(t, n.do(t, "DELETE", "/Patient/gone", nil), http.StatusNoContent)
	wantStatus(t, n.do(t, "POST", "/Patient", []byte(`{"resourceType":"Patient","identifier":[{"value":"dup"}]}`)), http.StatusCreated) // id "fixed"
	wantStatus(t, n.do(t, "PUT", "/Patient/p2", []byte(`{"resourceType":"Patient","id":"p2","identifier":[{"value":"dup"}]}`)), http.StatusCreated)
	wantStatus(t, n.do(t, "PUT", "/Patient/p5", patientWithID("p5"), "Idempotency-Key", "k1"), http.StatusCreated)

	big := `{"resourceType":"Patient","name":[{"family":"` + strings.Repeat("x", 5000) + `"}]}`
	for _, tc := range []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		expr                     string // an expected issue expression, if any
	}{
		{"invalid JSON", "POST", "/Patient", `{"resourceType":"Patient",`, nil, 400, ""},
		{"not an object", "POST", "/Patient", `[1,2]`, nil, 400, ""},
		{"unknown field", "POST", "/Patient", `{"resourceType":"Patient","nickname":"x"}`, nil, 400, "Patient.nickname"},
		{"bad code", "POST", "/Patient", `{"resourceType":"Patient","gender":"unknownish"}`, nil, 400, "Patient.gender"},
		{"missing required", "POST", "/Observation", `{"resourceType":"Observation","status":"final"}`, nil, 400, "Observation.code"},
		{"bad date", "POST", "/Patient", `{"resourceType":"Patient","birthDate":"1970-13-45"}`, nil, 400, "Patient.birthDate"},
		{"duplicate key", "POST", "/Patient", `{"resourceType":"Patient","gender":"male","gender":"female"}`, nil, 400, ""},
		{"unknown type in URL", "POST", "/Spaceship", `{"resourceType":"Spaceship"}`, nil, 404, ""},
		{"unknown type read", "GET", "/Spaceship/1", "", nil, 404, ""},
		{"type mismatch", "POST", "/Patient", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`, nil, 400, "resourceType"},
		{"unknown type in body", "POST", "/Patient", `{"resourceType":"Spaceship"}`, nil, 400, "resourceType"},
		{"too large", "POST", "/Patient", big, nil, 413, ""},
		{"media type", "POST", "/Patient", patient, []string{"Content-Type", "application/xml"}, 415, ""},
		{"empty body", "POST", "/Patient", "", nil, 400, ""},
		{"method", "PATCH", "/Patient/p1", `[]`, nil, 405, ""},
		{"method on type", "DELETE", "/Patient", "", nil, 405, ""},
		{"update without id", "PUT", "/Patient/p1", `{"resourceType":"Patient"}`, nil, 400, "id"},
		{"update id mismatch", "PUT", "/Patient/p1", string(patientWithID("p9")), nil, 400, "id"},
		{"bad id in URL", "PUT", "/Patient/a_b", `{"resourceType":"Patient","id":"a_b"}`, nil, 400, ""},
		{"stale If-Match", "PUT", "/Patient/p1", string(patientWithID("p1")), []string{"If-Match", `W/"7"`}, 412, ""},
		{"If-Match on absent", "PUT", "/Patient/p3", string(patientWithID("p3")), []string{"If-Match", `W/"1"`}, 412, ""},
		{"malformed If-Match", "PUT", "/Patient/p1", string(patientWithID("p1")), []string{"If-Match", `soon`}, 400, ""},
		{"If-None-Match on existing", "PUT", "/Patient/p1", string(patientWithID("p1")), []string{"If-None-Match", "*"}, 412, ""},
		{"If-None-Match not *", "PUT", "/Patient/p4", string(patientWithID("p4")), []string{"If-None-Match", `W/"1"`}, 400, ""},
		{"If-None-Match with If-Match", "PUT", "/Patient/p4", string(patientWithID("p4")), []string{"If-None-Match", "*", "If-Match", `W/"1"`}, 400, ""},
		{"stale If-Match delete", "DELETE", "/Patient/p1", "", []string{"If-Match", `W/"9"`}, 412, ""},
		{"read missing", "GET", "/Patient/nope", "", nil, 404, ""},
		{"read deleted", "GET", "/Patient/gone", "", nil, 410, ""},
		{"vread missing", "GET", "/Patient/p1/_history/9", "", nil, 404, ""},
		{"conditional create, many", "POST", "/Patient", patient, []string{"If-None-Exist", "identifier=dup"}, 412, ""},
		{"conditional create, unsupported param", "POST", "/Patient", patient, []string{"If-None-Exist", "name=x"}, 400, ""},
		{"server id taken", "POST", "/Patient", patient, nil, 409, ""},
		{"idempotency key reused", "POST", "/Patient", `{"resourceType":"Patient","gender":"male"}`, []string{"Idempotency-Key", "k1"}, 422, ""},
		{"unknown search parameter, strict", "GET", "/Patient?spaceship=x", "", []string{"Prefer", "handling=strict"}, 400, ""},
		{"unknown path", "GET", "/Patient/p1/$validate", "", nil, 404, ""},
		{"not a bundle at base", "POST", "", patient, nil, 400, ""},
		{"bundle type", "POST", "", `{"resourceType":"Bundle","type":"collection"}`, nil, 400, ""},
		{"transaction, invalid entry", "POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient","gender":"x"}}]}`, nil, 400, "Bundle.entry[0].resource.gender"},
		{"transaction, same resource twice", "POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient/t1"},"resource":{"resourceType":"Patient","id":"t1"}},{"request":{"method":"DELETE","url":"Patient/t1"}}]}`, nil, 400, ""},
		{"transaction, dangling urn", "POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Observation"},"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:0b8f3c1e-0000-4000-8000-000000000000"}}}]}`, nil, 400, ""},
		{"transaction, stale ifMatch rolls back", "POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient/t9"},"resource":{"resourceType":"Patient","id":"t9"}},{"request":{"method":"PUT","url":"Patient/p1","ifMatch":"W/\"5\""},"resource":{"resourceType":"Patient","id":"p1"}}]}`, nil, 412, ""},
		{"batch with Idempotency-Key", "POST", "", `{"resourceType":"Bundle","type":"batch","entry":[]}`, []string{"Idempotency-Key", "b1"}, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := n.hash(t)
			lsn := n.j.LastLSN()
			var body []byte
			if tc.body != "" || tc.method == "POST" || tc.method == "PUT" {
				body = []byte(tc.body)
			}
			m := wantStatus(t, n.do(t, tc.method, tc.path, body, tc.headers...), tc.status)
			if tc.expr != "" {
				if x := issueExpr(m); !contains(x, tc.expr) {
					t.Fatalf("issue expressions %v, want %q", x, tc.expr)
				}
			}
			if n.hash(t) != before || n.j.LastLSN() != lsn {
				t.Fatal("a failed request stored something")
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestConditionalCreate(t *testing.T) {
	n := memNode(t)
	rec := n.do(t, "POST", "/Patient", []byte(patient), "If-None-Exist", "identifier=urn:mrn|42")
	first := wantStatus(t, rec, http.StatusCreated)["id"].(string)
	for _, q := range []string{"identifier=urn:mrn|42", "identifier=42", "_id=" + first, "identifier=42&_id=" + first} {
		rec := n.do(t, "POST", "/Patient", []byte(patient), "If-None-Exist", q)
		if got := wantStatus(t, rec, http.StatusOK)["id"]; got != first {
			t.Fatalf("%s matched %v, want %s", q, got, first)
		}
	}
	// No match: other system, or _id of nothing.
	wantStatus(t, n.do(t, "POST", "/Patient", []byte(patient), "If-None-Exist", "identifier=urn:other|42"), http.StatusCreated)
	// Now two match "42" in any system.
	wantStatus(t, n.do(t, "POST", "/Patient", []byte(patient), "If-None-Exist", "identifier=42"), http.StatusPreconditionFailed)
	// Search agrees.
	s := wantStatus(t, n.do(t, "GET", "/Patient?identifier=42", nil), http.StatusOK)
	if s["total"].(float64) != 2 {
		t.Fatalf("search total %v, want 2", s["total"])
	}
	// A deleted resource no longer matches.
	wantStatus(t, n.do(t, "DELETE", "/Patient/"+first, nil), http.StatusNoContent)
	s = wantStatus(t, n.do(t, "GET", "/Patient?identifier=urn:mrn|42", nil), http.StatusOK)
	if s["total"].(float64) != 1 {
		t.Fatalf("after delete, search total %v, want 1", s["total"])
	}
}

// TestConcurrentIfMatch: many clients update one resource with the same
// If-Match; exactly one wins each version.
func TestConcurrentIfMatch(t *testing.T) {
	n := newNode(t, vfs.Default, t.TempDir(), server.Options{}) // real disk: group commit batches writers
	wantStatus(t, n.do(t, "PUT", "/Patient/race", patientWithID("race")), http.StatusCreated)
	const clients, versions = 16, 10
	for v := 1; v <= versions; v++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[int]int{}
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec := n.do(t, "PUT", "/Patient/race", patientWithID("race"), "If-Match", fmt.Sprintf(`W/"%d"`, v))
				mu.Lock()
				codes[rec.Code]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if codes[200] != 1 || codes[412] != clients-1 {
			t.Fatalf("version %d: status counts %v, want one 200 and %d 412", v, codes, clients-1)
		}
	}
	rec := n.do(t, "GET", "/Patient/race", nil)
	if rec.Header().Get("ETag") != fmt.Sprintf(`W/"%d"`, versions+1) {
		t.Fatalf("final ETag %s", rec.Header().Get("ETag"))
	}
}

// TestConcurrentConditionalCreate: of many racing conditional creates,
// exactly one creates; the others get the winner.
func TestConcurrentConditionalCreate(t *testing.T) {
	n := newNode(t, vfs.Default, t.TempDir(), server.Options{})
	const clients = 24
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	ids := map[string]bool{}
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := n.do(t, "POST", "/Patient", []byte(patient), "If-None-Exist", "identifier=urn:mrn|42")
			var m map[string]any
			json.Unmarshal(rec.Body.Bytes(), &m)
			mu.Lock()
			codes[rec.Code]++
			ids[fmt.Sprint(m["id"])] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[201] != 1 || codes[200] != clients-1 || len(ids) != 1 {
		t.Fatalf("status counts %v, ids %v: want one 201, the rest 200 with the same id", codes, ids)
	}
}

func TestIdempotencyKey(t *testing.T) {
	n := memNode(t)
	rec := n.do(t, "POST", "/Patient", []byte(patient), "Idempotency-Key", "abc")
	wantStatus(t, rec, http.StatusCreated)
	loc, body := rec.Header().Get("Location"), rec.Body.String()
	lsn := n.j.LastLSN()
	for range 3 {
		again := n.do(t, "POST", "/Patient", []byte(patient), "Idempotency-Key", "abc")
		wantStatus(t, again, http.StatusCreated)
		if again.Header().Get("Location") != loc || again.Body.String() != body {
			t.Fatal("retry did not return the first result")
		}
	}
	if n.j.LastLSN() != lsn {
		t.Fatal("a retry wrote to the journal")
	}
	wantStatus(t, n.do(t, "POST", "/Patient", []byte(`{"resourceType":"Patient"}`), "Idempotency-Key", "abc"), http.StatusUnprocessableEntity)
	s := wantStatus(t, n.do(t, "GET", "/Patient", nil), http.StatusOK)
	if len(s["entry"].([]any)) != 1 {
		t.Fatalf("%d patients, want 1", len(s["entry"].([]any)))
	}

	// Transactions: the whole response is replayed.
	tx := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1b2c3d4e-0000-4000-8000-000000000001","request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient"}}]}`)
	r1 := n.do(t, "POST", "", tx, "Idempotency-Key", "tx-1")
	wantStatus(t, r1, http.StatusOK)
	r2 := n.do(t, "POST", "", tx, "Idempotency-Key", "tx-1")
	wantStatus(t, r2, http.StatusOK)
	if r1.Body.String() != r2.Body.String() {
		t.Fatal("transaction retry returned a different response")
	}
	// PUT and DELETE too.
	p := patientWithID("idem")
	wantStatus(t, n.do(t, "PUT", "/Patient/idem", p, "Idempotency-Key", "put-1"), http.StatusCreated)
	wantStatus(t, n.do(t, "PUT", "/Patient/idem", p, "Idempotency-Key", "put-1"), http.StatusCreated)
	wantStatus(t, n.do(t, "DELETE", "/Patient/idem", nil, "Idempotency-Key", "del-1"), http.StatusNoContent)
	wantStatus(t, n.do(t, "DELETE", "/Patient/idem", nil, "Idempotency-Key", "del-1"), http.StatusNoContent)
	h := wantStatus(t, n.do(t, "GET", "/Patient/idem/_history", nil), http.StatusOK)
	if h["total"].(float64) != 2 {
		t.Fatalf("history total %v, want 2 (one PUT, one DELETE)", h["total"])
	}
}

func TestHistoryPaging(t *testing.T) {
	tick := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	n := newNode(t, vfs.NewMem(), "n", server.Options{Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		tick = tick.Add(time.Second)
		return tick
	}})
	for i := range 5 {
		wantStatus(t, n.do(t, "PUT", fmt.Sprintf("/Patient/p%d", i), patientWithID(fmt.Sprintf("p%d", i))), http.StatusCreated)
		wantStatus(t, n.do(t, "POST", "/Observation", []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"}}`)), http.StatusCreated)
	}
	collect := func(path string) []string {
		var urls []string
		for path != "" {
			b := wantStatus(t, n.do(t, "GET", path, nil), http.StatusOK)
			for _, e := range b["entry"].([]any) {
				urls = append(urls, e.(map[string]any)["fullUrl"].(string))
			}
			path = ""
			for _, l := range b["link"].([]any) {
				if l.(map[string]any)["relation"] == "next" {
					path = strings.TrimPrefix(l.(map[string]any)["url"].(string), "http://tandem.test/fhir")
				}
			}
		}
		return urls
	}
	sys := collect("/_history?_count=3")
	if len(sys) != 10 || !strings.HasSuffix(sys[1], "/Patient/p4") {
		t.Fatalf("system history %v", sys)
	}
	typ := collect("/Patient/_history?_count=2")
	if len(typ) != 5 || !strings.HasSuffix(typ[0], "/Patient/p4") || !strings.HasSuffix(typ[4], "/Patient/p0") {
		t.Fatalf("type history %v", typ)
	}
	since := collect("/_history?_count=2&_since=2026-01-01T00:00:08Z") // the last four writes, at 8..11 s (New read the clock at 1 s)
	if len(since) != 4 || !strings.HasSuffix(since[1], "/Patient/p4") {
		t.Fatalf("history since: %v", since)
	}
	if got := collect("/Patient/p4/_history?_since=2026-01-01T00:00:11Z"); len(got) != 0 {
		t.Fatalf("instance history since after the last change: %v", got)
	}
	list := collect("/Patient?_count=2")
	if len(list) != 5 || !strings.HasSuffix(list[0], "/Patient/p0") {
		t.Fatalf("type listing %v", list)
	}
}

// TestCrashKeepsAcknowledgedWrites: after a crash (only synced data
// survives), the journal replay restores every acknowledged resource,
// version and history byte for byte: the stored form is the journal's.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	mem := vfs.NewCrashableMem()
	// The root: journal.Open syncs only the immediate parent of its directory.
	n := newNode(t, mem, "", server.Options{})
	tx := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1b2c3d4e-0000-4000-8000-000000000001","request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient"}},{"request":{"method":"POST","url":"Observation"},"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:1b2c3d4e-0000-4000-8000-000000000001"}}}]}`)
	wantStatus(t, n.do(t, "POST", "", tx), http.StatusOK)
	wantStatus(t, n.do(t, "PUT", "/Patient/c1", patientWithID("c1")), http.StatusCreated)
	wantStatus(t, n.do(t, "PUT", "/Patient/c1", patientWithID("c1")), http.StatusOK)
	wantStatus(t, n.do(t, "DELETE", "/Patient/c1", nil), http.StatusNoContent)
	paths := []string{"/_history", "/Patient/c1/_history", "/Patient/c1/_history/2", "/Patient"}
	before := map[string]string{}
	for _, p := range paths {
		before[p] = n.do(t, "GET", p, nil).Body.String()
	}
	hash := n.hash(t)

	crashed := newNode(t, mem.CrashClone(vfs.CrashCloneCfg{}), "", server.Options{})
	if crashed.hash(t) != hash {
		dump := func(st interface {
			Scan(string, []byte, func(k, v []byte) bool) error
		}) map[string]string {
			m := map[string]string{}
			st.Scan("fhir", nil, func(k, v []byte) bool { m[string(k)] = string(v); return true })
			return m
		}
		a, b := dump(n.st), dump(crashed.st)
		for k, v := range a {
			if b[k] != v {
				t.Errorf("key %q: %d bytes before, %d after", k, len(v), len(b[k]))
			}
		}
		for k := range b {
			if _, ok := a[k]; !ok {
				t.Errorf("key %q only after", k)
			}
		}
		t.Fatalf("content hash differs after crash recovery; applied %d/%d journal %d/%d", n.st.AppliedLSN(), crashed.st.AppliedLSN(), n.j.LastLSN(), crashed.j.LastLSN())
	}
	for _, p := range paths {
		if got := crashed.do(t, "GET", p, nil).Body.String(); got != before[p] {
			t.Fatalf("%s after crash:\n%s\nwant\n%s", p, got, before[p])
		}
	}
	wantStatus(t, crashed.do(t, "GET", "/Patient/c1", nil), http.StatusGone)
}

// TestConcurrentIdempotentRetries: the same request with the same key, sent
// many times at once, creates one resource and every answer is the same.
func TestConcurrentIdempotentRetries(t *testing.T) {
	n := newNode(t, vfs.Default, t.TempDir(), server.Options{})
	const clients = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	locs := map[string]int{}
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := n.do(t, "POST", "/Patient", []byte(patient), "Idempotency-Key", "same")
			mu.Lock()
			locs[fmt.Sprint(rec.Code, " ", rec.Header().Get("Location"))]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(locs) != 1 {
		t.Fatalf("answers %v, want one (201 and the same Location) for all", locs)
	}
	s := wantStatus(t, n.do(t, "GET", "/Patient", nil), http.StatusOK)
	if len(s["entry"].([]any)) != 1 {
		t.Fatalf("%d patients, want 1", len(s["entry"].([]any)))
	}
}

// TestRequestIDReturned: the gateway's X-Request-Id comes back on the
// member's answer (so one id names the request in both logs); a request
// without one gets a new id.
func TestRequestIDReturned(t *testing.T) {
	n := memNode(t)
	rec := n.do(t, "GET", "/Patient/nobody", nil, "X-Request-Id", "gw-req-7")
	wantStatus(t, rec, http.StatusNotFound)
	if got := rec.Header().Get("X-Request-Id"); got != "gw-req-7" {
		t.Fatalf("X-Request-Id %q, want the one sent", got)
	}
	rec = n.do(t, "GET", "/metadata", nil)
	if got := rec.Header().Get("X-Request-Id"); len(got) != 32 {
		t.Fatalf("X-Request-Id %q, want a new 32-digit id", got)
	}
}
