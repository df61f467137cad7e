package server_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/fhir/access"
	"github.com/tandemhealth/tandem/fhir/server"
)

// A member that cannot write (a backup or async serving reads) forwards
// its AuditEvents to the primary, which stores them in its journal naming
// the member; while forwarding fails they are kept and sent again, never
// lost or doubled.
func TestAuditOfAMemberThatCannotWriteReachesThePrimary(t *testing.T) {
	primary := accessNode(t)
	admin := token(t, "admin", access.AdminScope, "")
	writer := token(t, "loader", "user/*.cruds", "")
	rec := primary.do(t, "PUT", "/Patient/p1", []byte(`{"resourceType":"Patient","id":"p1","active":true}`), "Authorization", writer)
	wantStatus(t, rec, http.StatusCreated)
	rec = primary.do(t, "PUT", "/Observation/o1", []byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`), "Authorization", writer)
	wantStatus(t, rec, http.StatusCreated)
	if err := primary.h.FlushAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := len(allAudit(t, primary))

	// The replica: the same data (here the same store), but it cannot write.
	var failing atomic.Bool
	failing.Store(true)
	var forwards atomic.Int32
	replica, err := server.New(primary.seq, primary.st, server.Options{BasePath: "/fhir", Parser: sharedParser(t), Access: testVerifier(t), Audit: true,
		AuditWindow: time.Hour, AuditObserver: "c", CanWrite: func() bool { return false },
		AuditForward: func(ctx context.Context, evs []server.ForwardedAudit) error {
			forwards.Add(1)
			if failing.Load() {
				return errors.New("primary unreachable")
			}
			return primary.h.StoreForwardedAudit(ctx, evs)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close(context.Background())
	rn := &node{h: replica, st: primary.st, j: primary.j, seq: primary.seq}
	clin := token(t, "dr-who", "user/*.rs", "")
	wantStatus(t, rn.do(t, "GET", "/Observation/o1", nil, "Authorization", clin), http.StatusOK)
	wantStatus(t, rn.do(t, "GET", "/Patient/p1", nil, "Authorization", token(t, "nobody", "user/Observation.r", "")), http.StatusForbidden)

	if err := replica.FlushAudit(context.Background()); err == nil || forwards.Load() != 1 {
		t.Fatalf("flush with the primary unreachable: %v after %d forwards", err, forwards.Load())
	}
	if n := len(allAudit(t, primary)); n != before {
		t.Fatalf("%d AuditEvents stored while forwarding failed, want %d", n, before)
	}
	failing.Store(false)
	if err := replica.FlushAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := replica.FlushAudit(context.Background()); err != nil || forwards.Load() != 2 {
		t.Fatalf("an empty flush forwarded again: %v, %d forwards", err, forwards.Load())
	}
	evs, raws := allAuditRaw(t, primary)
	if len(evs) != before+2 {
		t.Fatalf("%d AuditEvents, want %d (the two accesses on the replica, once each)", len(evs), before+2)
	}
	read, refused := evs[before], evs[before+1]
	if read.Agent[0].Who.Identifier.Value != "dr-who" || strings.Join(read.refs(), ",") != "Observation/o1" ||
		strings.Join(read.patients(), ",") != "p1" || read.Outcome != "0" {
		t.Fatalf("forwarded read: %s", raws[before])
	}
	if refused.Agent[0].Who.Identifier.Value != "nobody" || refused.Outcome != "4" {
		t.Fatalf("forwarded refusal: %s", raws[before+1])
	}
	if !bytes.Contains(raws[before], []byte(`"observer":{"display":"tandem member c"}`)) {
		t.Fatalf("forwarded event does not name the member that served it: %s", raws[before])
	}
	// Searchable by patient on the primary like its own.
	rec = primary.do(t, "GET", "/AuditEvent?patient=p1", nil, "Authorization", admin)
	wantStatus(t, rec, http.StatusOK)
	if !strings.Contains(rec.Body.String(), "tandem member c") {
		t.Fatalf("search by patient misses the forwarded read:\n%s", rec.Body.String())
	}

	// Bad input is refused whole, naming the field.
	err = primary.h.StoreForwardedAudit(context.Background(), []server.ForwardedAudit{{Interaction: "read", At: time.Now(), Status: 200, Observer: "c",
		Entities: []server.ForwardedEntity{{Type: "Patient", ID: "a/b"}}}})
	if err == nil || !strings.Contains(err.Error(), "events[0].entities[0]") {
		t.Fatalf("bad forwarded entity: %v", err)
	}
	if n := len(allAudit(t, primary)); n != before+2 {
		t.Fatalf("a refused batch stored %d events", n-before-2)
	}
}
