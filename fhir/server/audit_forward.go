package server

// AuditEvents of members that cannot write. Every member serves /fhir, but
// only the primary can journal: a backup or async serving (stale-allowed)
// reads, a member answering logins, or a primary that has just stepped
// down holds AuditEvents it cannot store itself. It forwards them to the
// primary (Options.AuditForward), which stores them in one journal record
// (StoreForwardedAudit) before answering; until then the member keeps them
// buffered and tries again at every flush. Nothing is dropped silently:
// past maxAuditBacklog the oldest are dropped with an error log.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/access"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
)

// ForwardedAudit is one AuditEvent recorded where the access happened and
// stored by the primary. It names resources and patients by id; it never
// holds resource content.
type ForwardedAudit struct {
	Subject     string            `json:"subject,omitempty"`
	ClientID    string            `json:"client_id,omitempty"`
	Interaction string            `json:"interaction"`
	At          time.Time         `json:"at"`
	Status      int               `json:"status"`
	Address     string            `json:"address,omitempty"`
	Detail      string            `json:"detail,omitempty"`
	Observer    string            `json:"observer"` // the member that served the access
	Entities    []ForwardedEntity `json:"entities,omitempty"`
}

// ForwardedEntity is one resource an AuditEvent names, with the patients
// it belongs to (resolved by the member that served it).
type ForwardedEntity struct {
	Type     string   `json:"type"`
	ID       string   `json:"id"`
	Patients []string `json:"patients,omitempty"`
}

// maxAuditBacklog bounds the AuditEvents a member keeps while it can
// neither store nor forward them (the primary unreachable for long).
const maxAuditBacklog = 1 << 20

// storeGetter reads the FHIR database of the local store (a txn's view
// outside a sequencer Write).
type storeGetter struct{ st Store }

func (g storeGetter) Get(key []byte) ([]byte, bool, error) { return g.st.Get(fhir.Database, key) }

func (g storeGetter) Scan(prefix []byte, fn func(key, value []byte) bool) error {
	return g.st.Scan(fhir.Database, prefix, fn)
}

// forwardable turns buffered records into ForwardedAudits, resolving each
// entity's patients from this member's store.
func (a *auditLog) forwardable(recs []*auditRec) []ForwardedAudit {
	t := newTxn(storeGetter{a.s.st}, a.s.now())
	out := make([]ForwardedAudit, 0, len(recs))
	for _, rec := range recs {
		f := ForwardedAudit{Interaction: rec.interaction, At: rec.at, Status: rec.status, Address: rec.address,
			Detail: rec.detail, Observer: a.s.opts.AuditObserver}
		if rec.p != nil {
			f.Subject, f.ClientID = rec.p.Subject, rec.p.ClientID
		}
		for _, e := range rec.entities() {
			ps := e.patients
			if !e.known {
				ps = a.patientsOf(t, &e)
			}
			f.Entities = append(f.Entities, ForwardedEntity{Type: e.typ, ID: e.id, Patients: ps})
		}
		out = append(out, f)
	}
	return out
}

// forward sends recs to the primary; on failure they go back to the
// buffer for the next flush.
func (a *auditLog) forward(ctx context.Context, recs []*auditRec) error {
	if err := a.s.opts.AuditForward(ctx, a.forwardable(recs)); err != nil {
		a.requeue(recs)
		a.s.opts.Logger.Warn("fhir: audit events kept here: forwarding them to the primary failed; retried at the next flush",
			"events", len(recs), "err", err)
		return err
	}
	return nil
}

// requeue puts recs back in front of the buffer, dropping the oldest
// beyond maxAuditBacklog (logged: an audit gap is an incident).
func (a *auditLog) requeue(recs []*auditRec) {
	a.mu.Lock()
	a.buf = append(recs, a.buf...)
	dropped := 0
	if len(a.buf) > maxAuditBacklog {
		dropped = len(a.buf) - maxAuditBacklog
		a.buf = a.buf[dropped:]
	}
	a.mu.Unlock()
	if dropped > 0 {
		a.s.opts.Logger.Error("fhir: AUDIT EVENTS DROPPED: this member could neither store nor forward them", "dropped", dropped, "kept", maxAuditBacklog)
	}
}

// canWrite: this member can journal its AuditEvents itself.
func (s *Server) canWrite() bool { return s.opts.CanWrite == nil || s.opts.CanWrite() }

// StoreForwardedAudit stores AuditEvents forwarded by another member in one
// journal record and returns once it is committed. Each is checked first:
// a bad one refuses the whole batch, naming it.
func (s *Server) StoreForwardedAudit(ctx context.Context, evs []ForwardedAudit) error {
	if s.audit == nil {
		return errors.New("this member does not audit (Options.Audit is off)")
	}
	recs := make([]*auditRec, 0, len(evs))
	for i, f := range evs {
		switch {
		case f.Interaction == "":
			return fmt.Errorf("events[%d].interaction: is required", i)
		case f.At.IsZero():
			return fmt.Errorf("events[%d].at: is required", i)
		case f.Status < 100 || f.Status > 599:
			return fmt.Errorf("events[%d].status: %d is not an HTTP status", i, f.Status)
		case f.Observer == "":
			return fmt.Errorf("events[%d].observer: is required (the member that served the access)", i)
		}
		rec := &auditRec{p: &access.Principal{Subject: f.Subject, ClientID: f.ClientID}, interaction: f.Interaction,
			at: f.At.UTC().Truncate(time.Millisecond), status: f.Status, address: f.Address, detail: f.Detail, observer: f.Observer}
		for j, e := range f.Entities {
			if e.Type == "" || e.ID == "" || strings.ContainsAny(e.Type+e.ID, "/,") {
				return fmt.Errorf("events[%d].entities[%d]: type and id are required and hold no '/' or ','", i, j)
			}
			rec.seen = append(rec.seen, auditEntity{typ: e.Type, id: e.ID, patients: e.Patients, known: true})
		}
		recs = append(recs, rec)
	}
	if len(recs) == 0 {
		return nil
	}
	_, err := s.seq.Write(ctx, fhir.Database, func(v sequencer.View) ([]journal.Op, error) {
		t := newTxn(v, s.now())
		b := s.beginAudit(t)
		for _, rec := range recs {
			s.addAudit(t, b, rec, rec.status, rec.entities(), rec.at)
		}
		b.finish(t)
		return t.ops()
	})
	return err
}
