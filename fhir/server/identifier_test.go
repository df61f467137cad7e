package server_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/server"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
)

// sizingSequencer passes writes through and records each journal
// record's payload size.
type sizingSequencer struct {
	*sequencer.Sequencer
	mu    sync.Mutex
	sizes []int
}

func (s *sizingSequencer) Write(ctx context.Context, db string, fn sequencer.WriteFunc) (uint64, error) {
	return s.Sequencer.Write(ctx, db, func(v sequencer.View) ([]journal.Op, error) {
		ops, err := fn(v)
		if err == nil {
			s.mu.Lock()
			s.sizes = append(s.sizes, len(journal.EncodeOps(ops)))
			s.mu.Unlock()
		}
		return ops, err
	})
}

// TestSharedIdentifierWriteCostIsConstant: creating the 300th resource
// that shares an identifier journals no more than creating the first. The
// identifier index used to be one key per identifier holding every id,
// rewritten whole by each write: write cost grew with the number of
// resources sharing it (the peer benchmark's fixed Patient, issue 13).
func TestSharedIdentifierWriteCostIsConstant(t *testing.T) {
	n := memNode(t)
	sz := &sizingSequencer{Sequencer: n.seq}
	h, err := server.New(sz, n.st, server.Options{Parser: sharedParser(t), BasePath: "/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	n.h = h
	const creates = 300
	for range creates {
		wantStatus(t, n.do(t, "POST", "/Patient", []byte(patient), "Prefer", "return=minimal"), http.StatusCreated)
	}
	if len(sz.sizes) != creates {
		t.Fatalf("%d writes, want %d", len(sz.sizes), creates)
	}
	first, last := sz.sizes[0], sz.sizes[creates-1]
	if last > first+16 { // sequence numbers may take a byte or two more
		t.Fatalf("create #%d journals %d bytes, the first %d: write cost grows with the resources sharing the identifier", creates, last, first)
	}
	// The index still finds all of them, and conditional create sees them.
	wantStatus(t, n.do(t, "POST", "/Patient", []byte(patient), "If-None-Exist", "identifier=urn:mrn|42"), http.StatusPreconditionFailed)
	wantStatus(t, n.do(t, "POST", "/Patient", []byte(patient), "If-None-Exist", "identifier=urn:mrn|43"), http.StatusCreated)
}

// TestLegacyIdentifierListStillMatches: a store written before the
// per-resource identifier entries (one '\n'-separated id list per
// identifier) still answers conditional creates, and an update that drops
// the identifier takes the id out of the legacy list too.
func TestLegacyIdentifierListStillMatches(t *testing.T) {
	n := memNode(t)
	id := wantStatus(t, n.do(t, "POST", "/Patient", []byte(patient)), http.StatusCreated)["id"].(string)
	// Rewrite its index in the old layout.
	_, err := n.seq.Write(context.Background(), fhir.Database, func(sequencer.View) ([]journal.Op, error) {
		return []journal.Op{
			{Kind: journal.OpDelete, Key: fhir.IdentifierKey("Patient", "urn:mrn", "42", id)},
			{Kind: journal.OpDelete, Key: fhir.IdentifierAnyKey("Patient", "42", id)},
			{Kind: journal.OpSet, Key: fhir.LegacyIdentifierKey("Patient", "urn:mrn", "42"), Value: []byte(id)},
			{Kind: journal.OpSet, Key: fhir.LegacyIdentifierAnyKey("Patient", "42"), Value: []byte("0-other\n" + id)},
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"identifier=urn:mrn|42", "identifier=urn:mrn|42&_id=" + id} {
		if got := wantStatus(t, n.do(t, "POST", "/Patient", []byte(patient), "If-None-Exist", q), http.StatusOK)["id"]; got != id {
			t.Fatalf("%s matched %v, want %s", q, got, id)
		}
	}
	// "0-other" (a resource that no longer exists) and id: two matches.
	wantStatus(t, n.do(t, "POST", "/Patient", []byte(patient), "If-None-Exist", "identifier=42"), http.StatusPreconditionFailed)

	// An update without the identifier removes id from both lists.
	wantStatus(t, n.do(t, "PUT", "/Patient/"+id, patientWithID(id)), http.StatusOK)
	if _, ok, _ := n.st.Get(fhir.Database, fhir.LegacyIdentifierKey("Patient", "urn:mrn", "42")); ok {
		t.Fatal("the emptied legacy list is still stored")
	}
	if b, _, _ := n.st.Get(fhir.Database, fhir.LegacyIdentifierAnyKey("Patient", "42")); string(b) != "0-other" {
		t.Fatalf("legacy any-system list %q, want only 0-other", b)
	}
	wantStatus(t, n.do(t, "POST", "/Patient", []byte(patient), "If-None-Exist", "identifier=urn:mrn|42"), http.StatusCreated)
}
