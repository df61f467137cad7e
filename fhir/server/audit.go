package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/access"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
)

// Audit (Options.Audit). Every request that touches clinical data gets one
// FHIR R4 AuditEvent: who (token subject; client id as agent.altId), what
// (the interaction as subtype, each resource returned or changed as an
// entity, their patients as entities with role Patient), when (recorded)
// and the outcome (0 success, 4 a 4xx, 8 a 5xx; outcomeDesc the HTTP
// status). A successful write's AuditEvent is part of the same sequencer
// Write — the same journal record — as the change. Everything else (reads,
// searches, refused requests, writes that stored nothing) is buffered and
// group-committed by one Write at most AuditWindow later, and on Close.
//
// Storage, in the "fhir" database beside the resources:
//
//	A/s                          uint64 BE: the last audit sequence number
//	A/e/<seq uint64 BE>          AuditEvent JSON (id = seq in decimal)
//	A/p/<patient id>/<seq>       empty: index by patient
//	A/u/<escaped subject>/<seq>  empty: index by agent (token subject)
//	x/p/<Type>/<id>              the resource's patient ids, comma separated
//	                             (written with each version while audit is on,
//	                             so reads are indexed by patient without
//	                             parsing the resource)
//
// Administrators (access.AdminScope) search it with
// GET [base]/AuditEvent?patient=<id>&agent=<subject>&date=ge<instant>&date=lt<instant>&_count=&_cursor=
// (oldest first; all parameters optional and combined with and). Nothing
// else may write or read AuditEvent through the REST API.

// Audit key layout (part of the stored format).
var (
	auditSeqKey       = []byte("A/s")
	auditEventPrefix  = []byte("A/e/")
	auditPatientIndex = "A/p/"
	auditAgentIndex   = "A/u/"
	patientsOfPrefix  = "x/p/"
)

func patientsOfKey(typ, id string) []byte { return []byte(patientsOfPrefix + typ + "/" + id) }

// auditEntity is one resource an AuditEvent names.
type auditEntity struct {
	typ, id  string
	body     []byte   // for patients, when not known (reads without an index entry)
	patients []string // nil: look up
	known    bool
}

// auditRec is the audit record of one request, built while it runs.
type auditRec struct {
	mu          sync.Mutex
	p           *access.Principal
	interaction string
	at          time.Time
	status      int
	seen        []auditEntity
	written     bool // a write's AuditEvent is already in the journal
}

type auditKey struct{}

func auditFrom(ctx context.Context) *auditRec {
	rec, _ := ctx.Value(auditKey{}).(*auditRec)
	return rec
}

// saw records a resource leaving the server.
func (rec *auditRec) saw(typ, id string, body []byte) {
	if id == "" {
		id = idOf(typ, body)
	}
	rec.mu.Lock()
	rec.seen = append(rec.seen, auditEntity{typ: typ, id: id, body: body})
	rec.mu.Unlock()
}

func (rec *auditRec) take() []auditEntity {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.seen
	rec.seen = nil
	return out
}

// idOf reads the id of a stored resource: stored JSON always starts
// {"resourceType":"T","id":"...". Other bodies are decoded.
func idOf(typ string, body []byte) string {
	pre := `{"resourceType":"` + typ + `","id":"`
	if bytes.HasPrefix(body, []byte(pre)) {
		rest := body[len(pre):]
		if i := bytes.IndexByte(rest, '"'); i >= 0 {
			return string(rest[:i])
		}
	}
	var x struct {
		ID string `json:"id"`
	}
	json.Unmarshal(body, &x)
	return x.ID
}

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// auditLog buffers AuditEvents and group-commits them.
type auditLog struct {
	s      *Server
	window time.Duration

	mu     sync.Mutex
	buf    []*auditRec
	closed bool

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// maxAuditBuffer makes the loop flush early when this many events wait.
const maxAuditBuffer = 4096

func newAuditLog(s *Server, window time.Duration) *auditLog {
	a := &auditLog{s: s, window: window, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go a.loop()
	return a
}

func (a *auditLog) loop() {
	defer close(a.done)
	t := time.NewTicker(a.window)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			a.flush(context.Background())
			return
		case <-t.C:
		case <-a.kick:
		}
		a.flush(context.Background())
	}
}

// add buffers a finished request's record.
func (a *auditLog) add(rec *auditRec) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		a.s.opts.Logger.Error("fhir: audit event after Close not stored", "interaction", rec.interaction)
		return
	}
	a.buf = append(a.buf, rec)
	n := len(a.buf)
	a.mu.Unlock()
	if n >= maxAuditBuffer {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

// flush writes every buffered record: one sequencer Write per chunk of at
// most maxAuditChunk bytes (in practice one).
func (a *auditLog) flush(ctx context.Context) error {
	a.mu.Lock()
	recs := a.buf
	a.buf = nil
	a.mu.Unlock()
	const maxAuditChunk = 8 << 20
	var errs []error
	for len(recs) > 0 {
		var n int
		_, err := a.s.seq.Write(ctx, fhir.Database, func(v sequencer.View) ([]journal.Op, error) {
			t := newTxn(v, a.s.now())
			size := 0
			n = 0
			for n < len(recs) && (n == 0 || size < maxAuditChunk) {
				size += a.s.auditOps(t, recs[n], recs[n].status, recs[n].take(), recs[n].at)
				n++
			}
			return t.ops()
		})
		if err != nil {
			a.s.opts.Logger.Error("fhir: audit events not stored", "events", len(recs), "err", err)
			errs = append(errs, err)
			break
		}
		recs = recs[n:]
	}
	return errors.Join(errs...)
}

// Flush group-commits the buffered AuditEvents now.
func (a *auditLog) Flush(ctx context.Context) error { return a.flush(ctx) }

func (a *auditLog) close(ctx context.Context) error {
	a.once.Do(func() {
		a.mu.Lock()
		a.closed = true
		a.mu.Unlock()
		close(a.stop)
	})
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// auditOps adds one AuditEvent for rec with the given entities to t and
// returns its size in bytes.
func (s *Server) auditOps(t *txn, rec *auditRec, status int, ents []auditEntity, at time.Time) int {
	b, _, _ := t.get(auditSeqKey)
	var seq uint64
	if len(b) == 8 {
		seq = binary.BigEndian.Uint64(b)
	}
	seq++
	t.set(auditSeqKey, binary.BigEndian.AppendUint64(nil, seq))
	seqb := binary.BigEndian.AppendUint64(nil, seq)

	patients := map[string]bool{}
	for i := range ents {
		e := &ents[i]
		if !e.known {
			if pb, ok, _ := t.get(patientsOfKey(e.typ, e.id)); ok {
				if len(pb) > 0 {
					e.patients = strings.Split(string(pb), ",")
				}
			} else if e.body != nil {
				e.patients = access.Patients(e.typ, e.body)
			}
		}
		for _, p := range e.patients {
			patients[p] = true
		}
	}
	ev := auditEvent(rec, status, ents, patients, at, seq)
	t.set(append(append([]byte(nil), auditEventPrefix...), seqb...), ev)
	for p := range patients {
		t.set(append([]byte(auditPatientIndex+p+"/"), seqb...), nil)
	}
	t.set(append([]byte(auditAgentIndex+url.PathEscape(subjectOf(rec.p))+"/"), seqb...), nil)
	return len(ev) + 64*len(patients)
}

func subjectOf(p *access.Principal) string {
	if p == nil || p.Subject == "" {
		return "anonymous"
	}
	return p.Subject
}

type coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type auditRef struct {
	Reference  string `json:"reference,omitempty"`
	Identifier *struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier,omitempty"`
	Display string `json:"display,omitempty"`
}

type auditEntityOut struct {
	What auditRef `json:"what"`
	Role *coding  `json:"role,omitempty"`
}

type auditAgent struct {
	Who       auditRef `json:"who"`
	AltID     string   `json:"altId,omitempty"`
	Requestor bool     `json:"requestor"`
}

type auditEventOut struct {
	ResourceType string           `json:"resourceType"`
	ID           string           `json:"id"`
	Type         coding           `json:"type"`
	Subtype      []coding         `json:"subtype"`
	Action       string           `json:"action"`
	Recorded     string           `json:"recorded"`
	Outcome      string           `json:"outcome"`
	OutcomeDesc  string           `json:"outcomeDesc"`
	Agent        []auditAgent     `json:"agent"`
	Source       map[string]any   `json:"source"`
	Entity       []auditEntityOut `json:"entity,omitempty"`
}

// Audit subject identifier system: the token's sub claim.
const auditSubjectSystem = "urn:tandem:token-subject"

func auditEvent(rec *auditRec, status int, ents []auditEntity, patients map[string]bool, at time.Time, seq uint64) []byte {
	if status == 0 {
		status = http.StatusOK
	}
	outcome := "0"
	switch {
	case status >= 500:
		outcome = "8"
	case status >= 400:
		outcome = "4"
	}
	action := "R"
	switch rec.interaction {
	case "create":
		action = "C"
	case "update":
		action = "U"
	case "delete":
		action = "D"
	case "transaction", "batch", "operation", "batch/transaction":
		action = "E"
	}
	ev := auditEventOut{
		ResourceType: "AuditEvent",
		ID:           strconv.FormatUint(seq, 10),
		Type:         coding{System: "http://terminology.hl7.org/CodeSystem/audit-event-type", Code: "rest", Display: "RESTful Operation"},
		Subtype:      []coding{{System: "http://hl7.org/fhir/restful-interaction", Code: rec.interaction}},
		Action:       action,
		Recorded:     fhir.FormatInstant(at),
		Outcome:      outcome,
		OutcomeDesc:  strconv.Itoa(status),
		Source:       map[string]any{"observer": map[string]string{"display": "tandem"}},
	}
	ag := auditAgent{Requestor: true}
	ag.Who.Identifier = &struct {
		System string `json:"system"`
		Value  string `json:"value"`
	}{auditSubjectSystem, subjectOf(rec.p)}
	if rec.p != nil {
		ag.AltID = rec.p.ClientID
	}
	ev.Agent = []auditAgent{ag}
	for _, e := range ents {
		ev.Entity = append(ev.Entity, auditEntityOut{What: auditRef{Reference: e.typ + "/" + e.id}})
	}
	ps := make([]string, 0, len(patients))
	for p := range patients {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	for _, p := range ps {
		ev.Entity = append(ev.Entity, auditEntityOut{What: auditRef{Reference: "Patient/" + p},
			Role: &coding{System: "http://terminology.hl7.org/CodeSystem/object-role", Code: "1", Display: "Patient"}})
	}
	b, err := json.Marshal(&ev)
	if err != nil {
		panic(err) // strings only
	}
	return b
}

// auditSearch is GET [base]/AuditEvent for administrators.
func (s *Server) auditSearch(w http.ResponseWriter, r *http.Request, seg []string) {
	if r.Method != http.MethodGet || len(seg) != 1 {
		s.fail(w, fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", "AuditEvents are written by the server; administrators search them with GET AuditEvent"))
		return
	}
	if s.opts.Access != nil {
		p := access.FromContext(r.Context())
		if p == nil || !p.Admin {
			s.fail(w, access.Forbidden("searching AuditEvents needs the "+access.AdminScope+" scope"))
			return
		}
	}
	q := r.URL.Query()
	count, cursor, ferr := s.paging(q, "patient", "agent", "date")
	if ferr != nil {
		s.fail(w, ferr)
		return
	}
	var after uint64
	if cursor != "" {
		n, err := strconv.ParseUint(cursor, 10, 64)
		if err != nil {
			s.fail(w, fhir.Errorf(http.StatusBadRequest, "invalid", "invalid _cursor"))
			return
		}
		after = n
	}
	var from, to time.Time // from inclusive, to exclusive
	for _, d := range q["date"] {
		op, val := "eq", d
		if len(d) > 2 && d[0] >= 'a' && d[0] <= 'z' {
			op, val = d[:2], d[2:]
		}
		at, err := time.Parse(time.RFC3339Nano, val)
		if err != nil {
			s.fail(w, fhir.Errorf(http.StatusBadRequest, "invalid", "date must be [ge|gt|le|lt]<instant with time zone>"))
			return
		}
		switch op {
		case "ge", "gt":
			if op == "gt" {
				at = at.Add(time.Millisecond)
			}
			if at.After(from) {
				from = at
			}
		case "le", "lt", "eq":
			if op != "lt" {
				at = at.Add(time.Millisecond)
			}
			if to.IsZero() || at.Before(to) {
				to = at
			}
			if op == "eq" {
				from = at.Add(-time.Millisecond)
			}
		default:
			s.fail(w, fhir.Errorf(http.StatusBadRequest, "invalid", "date prefix must be ge, gt, le, lt or none"))
			return
		}
	}
	// Candidate sequence numbers: from the index asked for, else every event.
	var prefix []byte
	switch {
	case q.Get("patient") != "":
		prefix = []byte(auditPatientIndex + strings.TrimPrefix(q.Get("patient"), "Patient/") + "/")
	case q.Get("agent") != "":
		prefix = []byte(auditAgentIndex + url.PathEscape(q.Get("agent")) + "/")
	default:
		prefix = auditEventPrefix
	}
	agentKey := func(seqb []byte) []byte {
		return append([]byte(auditAgentIndex+url.PathEscape(q.Get("agent"))+"/"), seqb...)
	}
	var events [][]byte
	var next uint64
	var scanErr error
	err := s.st.Scan(fhir.Database, prefix, func(k, v []byte) bool {
		if len(k) < len(prefix)+8 {
			return true
		}
		seqb := k[len(prefix):]
		seq := binary.BigEndian.Uint64(seqb)
		if seq <= after {
			return true
		}
		if q.Get("patient") != "" && q.Get("agent") != "" {
			if _, ok, err := s.get(agentKey(seqb)); err != nil || !ok {
				scanErr = err
				return err == nil
			}
		}
		ev := v
		if !bytes.Equal(prefix, auditEventPrefix) {
			b, ok, err := s.get(append(append([]byte(nil), auditEventPrefix...), seqb...))
			if err != nil || !ok {
				scanErr = err
				return err == nil
			}
			ev = b
		}
		if !from.IsZero() || !to.IsZero() {
			var x struct{ Recorded time.Time }
			if json.Unmarshal(ev, &x) != nil || (!from.IsZero() && x.Recorded.Before(from)) || (!to.IsZero() && !x.Recorded.Before(to)) {
				return true
			}
		}
		if len(events) == count {
			next = seq - 1
			return false
		}
		events = append(events, bytes.Clone(ev))
		return true
	})
	if err == nil {
		err = scanErr
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	base := s.baseURL(r)
	self := base + "/AuditEvent"
	links := [][2]string{{"self", self + "?" + r.URL.RawQuery}}
	if next != 0 {
		nq := url.Values{}
		for _, k := range []string{"patient", "agent", "date"} {
			if v, ok := q[k]; ok {
				nq[k] = v
			}
		}
		nq.Set("_count", strconv.Itoa(count))
		nq.Set("_cursor", strconv.FormatUint(next, 10))
		links = append(links, [2]string{"next", self + "?" + nq.Encode()})
	}
	b := newBundle("searchset", -1, links)
	for _, ev := range events {
		b.entry(base+"/AuditEvent/"+idOf("AuditEvent", ev), ev, "search", map[string]string{"mode": "match"})
	}
	s.send(w, &response{Status: http.StatusOK, Body: b.bytes()})
}
