package server_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/server"
)

// A WriteGuard refuses every write (create, update, delete, a write in a
// batch) before anything is sequenced, with its own status and message;
// reads, including the read entries of a batch, are served.
func TestWriteGuardRefusesWritesBeforeSequencing(t *testing.T) {
	var refuse atomic.Bool
	n := newNode(t, vfs.NewMem(), "n", server.Options{WriteGuard: func(context.Context) error {
		if refuse.Load() {
			return fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", "read-only member: send writes to the primary, member a")
		}
		return nil
	}})
	wantStatus(t, n.do(t, "PUT", "/Patient/p1", patientWithID("p1")), http.StatusCreated)
	refuse.Store(true)
	last := n.j.LastLSN()
	before := n.hash(t)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/Patient", patient},
		{"PUT", "/Patient/p1", string(patientWithID("p1"))},
		{"DELETE", "/Patient/p1", ""},
	} {
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		rec := n.do(t, c.method, c.path, body)
		if rec.Code != http.StatusMethodNotAllowed || !strings.Contains(rec.Body.String(), "OperationOutcome") || !strings.Contains(rec.Body.String(), "member a") {
			t.Fatalf("%s %s: %d %s", c.method, c.path, rec.Code, rec.Body.String())
		}
	}
	batch := `{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Patient/p1"}},
		{"resource":` + patient + `,"request":{"method":"POST","url":"Patient"}}]}`
	rec := n.do(t, "POST", "", []byte(batch))
	got := wantStatus(t, rec, http.StatusOK)
	entries, _ := got["entry"].([]any)
	if len(entries) != 2 || !strings.HasPrefix(entries[0].(map[string]any)["response"].(map[string]any)["status"].(string), "200") ||
		!strings.HasPrefix(entries[1].(map[string]any)["response"].(map[string]any)["status"].(string), "405") {
		t.Fatalf("batch: %s", rec.Body.String())
	}
	wantStatus(t, n.do(t, "GET", "/Patient/p1", nil), http.StatusOK)
	if n.j.LastLSN() != last || n.hash(t) != before {
		t.Fatal("a refused write reached the journal or the store")
	}
}
