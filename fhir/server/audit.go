package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/access"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/services/httpstatus"
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
//	~a/s                           uint64 BE: the last audit sequence number
//	~a/e/<first uint64 BE>         the AuditEvents of one Write, in sequence
//	                               order, compact (audit_codec.go; the i-th
//	                               one's id is first+i, in decimal); batches
//	                               stored before: one JSON per line
//	~a/p/<patient id>/<first>      index by patient: the sequence numbers
//	                               (uint64 BE each) of that batch naming it
//	~a/u/<escaped subject>/<first> index by agent (token subject), likewise
//	x/p/<Type>/<id>                the resource's patient ids, comma separated
//	                               (written with each version while audit is
//	                               on, so reads are indexed by patient without
//	                               parsing the resource)
//
// A group commit of N reads adds 1 + (patients) + (agents) keys, not 3N.
// The "~a/" prefix sorts after every other key of the database, so the
// tables that audit writes flush overlap little of the resources' key
// range.
// Administrators (access.AdminScope) search it with
// GET [base]/AuditEvent?patient=<id>&agent=<subject>&date=ge<instant>&date=lt<instant>&_count=&_cursor=
// (oldest first; all parameters optional and combined with and). Nothing
// else may write or read AuditEvent through the REST API.

// Audit key layout (part of the stored format).
var (
	auditSeqKey       = []byte("~a/s")
	auditEventPrefix  = []byte("~a/e/")
	auditPatientIndex = "~a/p/"
	auditAgentIndex   = "~a/u/"
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

	// Set by ServeHTTP: the response's status, and room for the first
	// entity seen (most requests see one).
	sw    httpstatus.Recorder
	first [1]auditEntity

	// A login attempt's record (AuditLogin): the client's network address
	// and what the token endpoint answered (an OAuth error code).
	address, detail string
	// observer is the member that served the access, for events another
	// member forwarded (StoreForwardedAudit); empty for this member's own.
	observer string
}

// loginInteraction marks a login attempt's record (AuditLogin): its
// AuditEvent is a DICOM "User Authentication" / "Login" event, not a
// RESTful interaction.
const loginInteraction = "login"

// Login is one attempt to get a token at a member's token endpoint
// (services/login), for its AuditEvent. It never holds a password, a
// secret or a hash.
type Login struct {
	// User is the user name tried (password grant) or the user owning the
	// API client (client credentials); it may name no user.
	User string
	// ClientID is the API client tried (client credentials).
	ClientID string
	// Address is the client's network address.
	Address string
	// Status is the HTTP status answered; Detail the OAuth error code or
	// the reason of a refusal (e.g. "invalid_grant: locked out").
	Status int
	Detail string
	At     time.Time
}

// AuditLogin records a login attempt, success or failure, as an
// AuditEvent (type DICOM 110114 User Authentication, subtype 110122
// Login; agent the user, altId the client, network the address; outcome
// as for requests, outcomeDesc the status and Detail), group-committed
// like a read's within AuditWindow. Without Options.Audit it does nothing.
// Like every buffered AuditEvent it is stored only by a member that can
// write (the primary); elsewhere the failed commit is logged.
func (s *Server) AuditLogin(l Login) {
	if s.audit == nil {
		return
	}
	at := l.At
	if at.IsZero() {
		at = s.now()
	}
	rec := &auditRec{p: &access.Principal{Subject: l.User, ClientID: l.ClientID}, interaction: loginInteraction,
		at: at.UTC().Truncate(time.Millisecond), status: l.Status, address: l.Address, detail: l.Detail}
	s.audit.add(rec)
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

// entities returns the entities seen, once the request is over (a
// buffered record): only the flush that took the record from the buffer
// uses them, and a flush that fails puts the record back as it is.
func (rec *auditRec) entities() []auditEntity {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.seen
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
	const p1, p2 = `{"resourceType":"`, `","id":"`
	if len(body) > len(p1)+len(typ)+len(p2) && string(body[:len(p1)]) == p1 &&
		string(body[len(p1):len(p1)+len(typ)]) == typ && string(body[len(p1)+len(typ):len(p1)+len(typ)+len(p2)]) == p2 {
		rest := body[len(p1)+len(typ)+len(p2):]
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

// auditLog buffers AuditEvents and group-commits them.
type auditLog struct {
	s      *Server
	window time.Duration

	mu     sync.Mutex
	buf    []*auditRec
	closed bool

	// pcache remembers the patients of recently audited resources, so a
	// read's AuditEvent needs no lookup of x/p/. Writes refresh it.
	pmu    sync.Mutex
	pcache map[resourceRef][]string

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// maxAuditBuffer makes the loop flush early when this many events wait.
const maxAuditBuffer = 4096

func newAuditLog(s *Server, window time.Duration) *auditLog {
	a := &auditLog{s: s, window: window, pcache: map[resourceRef][]string{}, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
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
// most maxAuditChunk bytes (in practice one). A member that cannot write
// forwards them to the primary (audit_forward.go); what can be neither
// stored nor forwarded stays buffered for the next flush.
func (a *auditLog) flush(ctx context.Context) error {
	a.mu.Lock()
	recs := a.buf
	a.buf = nil
	a.mu.Unlock()
	if len(recs) == 0 {
		return nil
	}
	forwarding := a.s.opts.AuditForward != nil
	if forwarding && !a.s.canWrite() {
		return a.forward(ctx, recs)
	}
	const maxAuditChunk = 8 << 20
	var errs []error
	for len(recs) > 0 {
		var n int
		_, err := a.s.seq.Write(ctx, fhir.Database, func(v sequencer.View) ([]journal.Op, error) {
			t := newTxn(v, a.s.now())
			b := a.s.beginAudit(t)
			// About 100 bytes an event: sized once, not grown by copying.
			b.events = make([]byte, 1, min(len(recs)*128, maxAuditChunk+4096))
			b.events[0] = auditCompact
			n = 0
			for n < len(recs) && (n == 0 || len(b.events) < maxAuditChunk) {
				a.s.addAudit(t, b, recs[n], recs[n].status, recs[n].entities(), recs[n].at)
				n++
			}
			b.finish(t)
			return t.ops()
		})
		if err != nil {
			if forwarding && !a.s.canWrite() { // stepped down: the new primary stores them
				return a.forward(ctx, recs)
			}
			a.s.opts.Logger.Error("fhir: audit events not stored yet; kept for the next flush", "events", len(recs), "err", err)
			a.requeue(recs)
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
	case <-ctx.Done():
		return ctx.Err()
	}
	a.mu.Lock()
	left := len(a.buf)
	a.mu.Unlock()
	if left > 0 {
		a.s.opts.Logger.Error("fhir: AUDIT EVENTS LOST at shutdown: they could neither be stored nor forwarded to the primary", "events", left)
		return fmt.Errorf("fhir: %d audit events could not be stored before shutdown", left)
	}
	return nil
}

// maxPatientCache bounds the patient cache (it is emptied when full).
const maxPatientCache = 1 << 18

// patientsOf returns the patients of an entity read: from the cache, the
// x/p/ index, or its body.
func (a *auditLog) patientsOf(t *txn, e *auditEntity) []string {
	ref := resourceRef{e.typ, e.id}
	a.pmu.Lock()
	ps, ok := a.pcache[ref]
	a.pmu.Unlock()
	if ok {
		return ps
	}
	if pb, found, _ := t.get(patientsOfKey(e.typ, e.id)); found {
		if len(pb) > 0 {
			ps = strings.Split(string(pb), ",")
		}
	} else if e.body != nil {
		ps = access.Patients(e.typ, e.body)
	}
	a.remember(ref, ps)
	return ps
}

// resourceRef is Type/id as a map key (no string built per lookup).
type resourceRef struct{ typ, id string }

func (a *auditLog) remember(ref resourceRef, ps []string) {
	a.pmu.Lock()
	if len(a.pcache) >= maxPatientCache {
		clear(a.pcache)
	}
	a.pcache[ref] = ps
	a.pmu.Unlock()
}

// auditBatch is the AuditEvents of one sequencer Write.
type auditBatch struct {
	first, seq uint64
	events     []byte // compact (audit_codec.go)
	enc        auditEncoder
	byPatient  map[string][]byte // patient -> sequence numbers, 8 bytes BE each
	byAgent    map[string][]byte
}

func (s *Server) beginAudit(t *txn) *auditBatch {
	b, _, _ := t.get(auditSeqKey)
	var seq uint64
	if len(b) == 8 {
		seq = binary.BigEndian.Uint64(b)
	}
	return &auditBatch{first: seq + 1, seq: seq, events: []byte{auditCompact}, byPatient: map[string][]byte{}, byAgent: map[string][]byte{}}
}

// addAudit adds one AuditEvent for rec with the given entities.
func (s *Server) addAudit(t *txn, b *auditBatch, rec *auditRec, status int, ents []auditEntity, at time.Time) {
	b.seq++
	var pbuf [4]string
	patients := pbuf[:0] // sorted, without duplicates; most events name one
	for i := range ents {
		e := &ents[i]
		if !e.known {
			e.patients = s.audit.patientsOf(t, e)
		}
		for _, p := range e.patients {
			if j, found := slices.BinarySearch(patients, p); !found {
				patients = slices.Insert(patients, j, p)
			}
		}
	}
	b.events = b.enc.appendEvent(b.events, rec, status, ents, patients, at)
	for _, p := range patients {
		b.byPatient[p] = binary.BigEndian.AppendUint64(b.byPatient[p], b.seq)
	}
	agent := url.PathEscape(subjectOf(rec.p))
	b.byAgent[agent] = binary.BigEndian.AppendUint64(b.byAgent[agent], b.seq)
}

// finish adds the batch's keys to t.
func (b *auditBatch) finish(t *txn) {
	if b.seq < b.first {
		return
	}
	t.set(auditSeqKey, binary.BigEndian.AppendUint64(nil, b.seq))
	fb := binary.BigEndian.AppendUint64(nil, b.first)
	t.set(append(append([]byte(nil), auditEventPrefix...), fb...), b.events)
	keys := make([]string, 0, len(b.byPatient)+len(b.byAgent))
	vals := map[string][]byte{}
	for p, v := range b.byPatient {
		k := auditPatientIndex + p + "/" + string(fb)
		keys, vals[k] = append(keys, k), v
	}
	for a, v := range b.byAgent {
		k := auditAgentIndex + a + "/" + string(fb)
		keys, vals[k] = append(keys, k), v
	}
	sort.Strings(keys) // deterministic op order
	for _, k := range keys {
		t.set([]byte(k), vals[k])
	}
}

// auditOps adds one AuditEvent (a batch of one) to t: a write's, in the
// write's own journal record.
func (s *Server) auditOps(t *txn, rec *auditRec, status int, ents []auditEntity, at time.Time) {
	b := s.beginAudit(t)
	s.addAudit(t, b, rec, status, ents, at)
	b.finish(t)
}

func subjectOf(p *access.Principal) string {
	if p == nil || p.Subject == "" {
		return "anonymous"
	}
	return p.Subject
}

// Audit subject identifier system: the token's sub claim.
const auditSubjectSystem = "urn:tandem:token-subject"

// appendAuditEvent appends an R4 AuditEvent to b. It is written by hand
// (no reflection): it runs once per AuditEvent a search returns. patients
// is sorted. What it writes for a stored event is part of the stored
// format's contract (audit_codec.go): batches stored as JSON hold its
// output of the time.
func appendAuditEvent(b []byte, rec *auditRec, status int, ents []auditEntity, patients []string, at time.Time, seq uint64) []byte {
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
	typ := `{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest","display":"RESTful Operation"},"subtype":[{"system":"http://hl7.org/fhir/restful-interaction","code":`
	login := rec.interaction == loginInteraction
	if login {
		typ = `{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110114","display":"User Authentication"},"subtype":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110122","display":`
	}
	switch rec.interaction {
	case "create":
		action = "C"
	case "update":
		action = "U"
	case "delete":
		action = "D"
	case "transaction", "batch", "operation", "batch/transaction", loginInteraction:
		action = "E"
	}
	b = append(b, `{"resourceType":"AuditEvent","id":"`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `","type":`...)
	b = append(b, typ...)
	if login {
		b = append(b, `"Login"`...)
	} else {
		b = appendString(b, rec.interaction)
	}
	b = append(b, `}],"action":"`...)
	b = append(b, action...)
	b = append(b, `","recorded":"`...)
	b = fhir.AppendInstant(b, at)
	b = append(b, `","outcome":"`...)
	b = append(b, outcome...)
	b = append(b, `","outcomeDesc":`...)
	if rec.detail != "" {
		b = appendString(b, strconv.Itoa(status)+" "+rec.detail)
	} else {
		b = append(b, '"')
		b = strconv.AppendInt(b, int64(status), 10)
		b = append(b, '"')
	}
	b = append(b, `,"agent":[{"who":{"identifier":{"system":"`+auditSubjectSystem+`","value":`...)
	b = appendString(b, subjectOf(rec.p))
	b = append(b, `}}`...)
	if rec.p != nil && rec.p.ClientID != "" {
		b = append(b, `,"altId":`...)
		b = appendString(b, rec.p.ClientID)
	}
	b = append(b, `,"requestor":true`...)
	if rec.address != "" {
		b = append(b, `,"network":{"address":`...)
		b = appendString(b, rec.address)
		b = append(b, `,"type":"2"}`...)
	}
	if rec.observer != "" {
		b = append(b, `}],"source":{"observer":{"display":`...)
		b = appendString(b, "tandem member ", rec.observer)
		b = append(b, `}}`...)
	} else {
		b = append(b, `}],"source":{"observer":{"display":"tandem"}}`...)
	}
	ps := patients
	if len(ents)+len(ps) > 0 {
		b = append(b, `,"entity":[`...)
		for i, e := range ents {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"what":{"reference":`...)
			b = appendString(b, e.typ, "/", e.id)
			b = append(b, `}}`...)
		}
		for i, p := range ps {
			if i > 0 || len(ents) > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"what":{"reference":`...)
			b = appendString(b, "Patient/", p)
			b = append(b, `},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1","display":"Patient"}}`...)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendString appends the concatenation of parts as one JSON string.
func appendString(b []byte, parts ...string) []byte {
	for _, s := range parts {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
				q, _ := json.Marshal(strings.Join(parts, ""))
				return append(b, q...)
			}
		}
	}
	b = append(b, '"')
	for _, s := range parts {
		b = append(b, s...)
	}
	return append(b, '"')
}

// seqSet decodes an index value: sequence numbers, 8 bytes BE each.
func seqSet(v []byte) map[uint64]bool {
	m := make(map[uint64]bool, len(v)/8)
	for i := 0; i+8 <= len(v); i += 8 {
		m[binary.BigEndian.Uint64(v[i:])] = true
	}
	return m
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
	agent := q.Get("agent")
	type auditHit struct {
		seq  uint64
		json []byte
	}
	var events []auditHit
	var next uint64
	var scanErr error
	err := s.st.Scan(fhir.Database, prefix, func(k, v []byte) bool {
		if len(k) != len(prefix)+8 {
			return true
		}
		fb := k[len(prefix):]
		batch := v
		var want map[uint64]bool // nil: every event of the batch
		if !bytes.Equal(prefix, auditEventPrefix) {
			want = seqSet(v)
			b, ok, err := s.get(append(append([]byte(nil), auditEventPrefix...), fb...))
			if err != nil || !ok {
				scanErr = err
				return err == nil
			}
			batch = b
		}
		if q.Get("patient") != "" && agent != "" {
			ab, _, err := s.get([]byte(auditAgentIndex + url.PathEscape(agent) + "/" + string(fb)))
			if err != nil {
				scanErr = err
				return false
			}
			as := seqSet(ab)
			for sq := range want {
				if !as[sq] {
					delete(want, sq)
				}
			}
		}
		err := eachStoredAudit(binary.BigEndian.Uint64(fb), batch, func(ev *storedAudit) bool {
			if ev.seq <= after || (want != nil && !want[ev.seq]) {
				return true
			}
			if !from.IsZero() || !to.IsZero() {
				at, ok := ev.recorded()
				if !ok || (!from.IsZero() && at.Before(from)) || (!to.IsZero() && !at.Before(to)) {
					return true
				}
			}
			if len(events) == count {
				next = ev.seq - 1
				return false
			}
			events = append(events, auditHit{ev.seq, ev.appendJSON(nil)})
			return true
		})
		if err != nil {
			scanErr = err
			return false
		}
		return next == 0
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
		b.entry(base+"/AuditEvent/"+strconv.FormatUint(ev.seq, 10), ev.json, "search", map[string]string{"mode": "match"})
	}
	s.send(w, &response{Status: http.StatusOK, Body: b.bytes()})
}
