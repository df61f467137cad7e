// Package server is Tandem's FHIR R4 REST API (JSON, application/fhir+json):
// create, read, vread, update (with create-on-update), versioned delete,
// conditional create, If-Match, Prefer, instance/type/system history, a
// search (fhir/search: parameters from the R4 definitions, indexes written
// in the same journal record as the resource, paging, includes,
// Patient/$everything), batch and atomic transaction bundles,
// Idempotency-Key, and /metadata. Every write is one sequencer Write (one
// journal record) on the "fhir" database; reads come from the store. The
// storage layout is documented in package fhir.
//
// With Options.Access every request but /metadata needs a bearer token
// (package access): the interaction's SMART letter is checked before any
// work (access.go), every resource leaving the server passes visible
// (visible.go), and every write is checked against the token's patient
// compartment inside its sequencer Write. With Options.Audit every access
// to clinical data gets an AuditEvent (audit.go): a write's in its own
// journal record, the rest group-committed within AuditWindow; so does
// every login attempt a member's token endpoint hands to AuditLogin.
//
// The handler must never write outside the sequencer, never store anything
// for a request that fails (but its AuditEvent), never re-marshal a stored
// resource on a read, never let a resource out without visible, and never
// put resource content (PHI) in an error, a log line or an OperationOutcome
// beyond the location of the problem.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/access"
	"github.com/tandemhealth/tandem/fhir/search"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"

	"github.com/tandemhealth/tandem/services/requestid"
)

// ContentType is the media type of every response body.
const ContentType = "application/fhir+json; charset=utf-8"

// Sequencer is the writer order the server writes through
// (*sequencer.Sequencer).
type Sequencer interface {
	Write(ctx context.Context, db string, fn sequencer.WriteFunc) (uint64, error)
}

// Store is what the server reads (*store.Store).
type Store interface {
	Get(db string, key []byte) ([]byte, bool, error)
	Scan(db string, prefix []byte, fn func(key, value []byte) bool) error
	// DatabaseLSN is the LSN of the last record applied to db (0: none).
	DatabaseLSN(db string) uint64
}

var _ Sequencer = (*sequencer.Sequencer)(nil)

// Options configure a Server. Zero values mean the defaults.
type Options struct {
	// BasePath is where the handler is mounted (e.g. "/fhir"). It is removed
	// from request paths when present and prefixed to Location headers and
	// bundle links.
	BasePath string
	// MaxBodyBytes bounds a request body; larger ones get 413. Default 16 MiB.
	MaxBodyBytes int64
	// DefaultCount and MaxCount bound history and search pages (50, 1000).
	DefaultCount, MaxCount int
	// Now is the clock for meta.lastUpdated; default time.Now.
	Now func() time.Time
	// NewID makes server-assigned ids; default a random UUID.
	NewID func() string
	// Logger receives internal errors (never resource content); default slog.Default().
	Logger *slog.Logger
	// Parser is a shared parser; default a new one.
	Parser *fhir.Parser
	// Access, when set, authenticates every request but /metadata (bearer
	// tokens, package access) and enforces SMART scopes per interaction and
	// per resource. Nil means no checks. A Principal already in the request
	// context (the node's operator certificate) is used as it is.
	Access Authenticator
	// ReadBarrier, when set, runs before every read (GET, HEAD, POST
	// _search); an error refuses the read with 503. A mirror member's
	// primary uses it to make reads linearizable (node.ReadBarrier).
	ReadBarrier func(ctx context.Context) error
	// WriteGuard, when set, runs before every write is sequenced; an error
	// refuses the write before anything is stored (a *fhir.Error keeps its
	// status and code, anything else is a 503). A mirror member that is not
	// the primary uses it to say where writes go (node.fhirWriteGuard).
	WriteGuard func(ctx context.Context) error
	// Audit writes an AuditEvent for every access to clinical data (see
	// audit.go); AuditWindow bounds how long a read's event waits for its
	// group commit (default 500ms, at most 1s). Close flushes.
	Audit       bool
	AuditWindow time.Duration
	// CanWrite reports whether this member can journal now (a mirror's
	// primary); nil means always. AuditForward, when set, sends the
	// AuditEvents of a member that cannot write to the primary, which
	// stores them (StoreForwardedAudit) before answering; AuditObserver
	// names this member in them.
	CanWrite      func() bool
	AuditForward  func(ctx context.Context, events []ForwardedAudit) error
	AuditObserver string
	// Search holds the search parameters that are indexed; default the
	// embedded R4 definitions (search.Load).
	Search *search.Registry
}

// Server is the FHIR REST handler.
type Server struct {
	seq     Sequencer
	st      Store
	opts    Options
	p       *fhir.Parser
	reg     *search.Registry // every parameter of the definitions
	meta    []byte           // CapabilityStatement of reg
	started time.Time        // the CapabilityStatement's date

	regMu      sync.Mutex
	active     *search.Registry // reg minus the disabled parameters
	activeRaw  []byte           // the disabled list it was built from
	activeLSN  uint64           // the system database's LSN when that list was read
	activeMeta []byte           // its CapabilityStatement

	audit *auditLog // nil when Options.Audit is off
}

var _ http.Handler = (*Server)(nil)

// New returns a Server writing through seq and reading from st.
func New(seq Sequencer, st Store, opts Options) (*Server, error) {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 16 << 20
	}
	if opts.DefaultCount <= 0 {
		opts.DefaultCount = 50
	}
	if opts.MaxCount <= 0 {
		opts.MaxCount = 1000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.NewID == nil {
		opts.NewID = newUUID
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.BasePath = strings.TrimRight(opts.BasePath, "/")
	p := opts.Parser
	if p == nil {
		var err error
		if p, err = fhir.NewParser(); err != nil {
			return nil, err
		}
	}
	reg := opts.Search
	if reg == nil {
		var err error
		if reg, err = defaultRegistry(); err != nil {
			return nil, err
		}
	}
	s := &Server{seq: seq, st: st, opts: opts, p: p, reg: reg, started: opts.Now()}
	s.meta = capabilityStatement(p.Types(), reg, s.started)
	if opts.Audit {
		if opts.AuditWindow <= 0 || opts.AuditWindow > time.Second {
			opts.AuditWindow = 500 * time.Millisecond
		}
		s.opts.AuditWindow = opts.AuditWindow
		s.audit = newAuditLog(s, opts.AuditWindow)
	}
	return s, nil
}

// FlushAudit group-commits the buffered AuditEvents now (tests, shutdown).
func (s *Server) FlushAudit(ctx context.Context) error {
	if s.audit == nil {
		return nil
	}
	return s.audit.Flush(ctx)
}

// Close stops the audit loop after a last group commit. It is idempotent;
// requests after Close are served but their read AuditEvents are not stored
// (and that is logged).
func (s *Server) Close(ctx context.Context) error {
	if s.audit == nil {
		return nil
	}
	return s.audit.close(ctx)
}

func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (s *Server) get(key []byte) ([]byte, bool, error) { return s.st.Get(fhir.Database, key) }

func (s *Server) now() time.Time { return s.opts.Now().UTC().Truncate(time.Millisecond) }

// response is what an interaction answers; it is also what an
// Idempotency-Key stores.
type response struct {
	Status       int    `json:"status"`
	Location     string `json:"location,omitempty"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
	Body         []byte `json:"body,omitempty"`
	Fingerprint  string `json:"fp,omitempty"`
}

func (s *Server) send(w http.ResponseWriter, r *response) {
	h := w.Header()
	if r.Location != "" {
		h.Set("Location", r.Location)
	}
	if r.ETag != "" {
		h.Set("ETag", r.ETag)
	}
	if r.LastModified != "" {
		h.Set("Last-Modified", r.LastModified)
	}
	if r.Body != nil {
		h.Set("Content-Type", ContentType)
		h.Set("Content-Length", strconv.Itoa(len(r.Body)))
	}
	w.WriteHeader(r.Status)
	if r.Body != nil {
		w.Write(r.Body)
	}
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	fe := fhir.AsError(err)
	if fe.Status >= 500 {
		var own *fhir.Error
		if !errors.As(err, &own) {
			s.opts.Logger.Error("fhir: internal error", "err", err, "request_id", w.Header().Get(requestid.Header))
		}
	}
	s.send(w, &response{Status: fe.Status, Body: fe.Outcome()})
}

// segments splits a request path below the base path.
func (s *Server) segments(path string) []string {
	if s.opts.BasePath != "" && (path == s.opts.BasePath || strings.HasPrefix(path, s.opts.BasePath+"/")) {
		path = path[len(s.opts.BasePath):]
	}
	path = strings.Trim(path, "/")
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}

// Interaction names the FHIR interaction r asks for, as its AuditEvent
// does ("read", "vread", "update", "search-type", "history-instance",
// "batch/transaction", "capabilities", "operation", ...). It is derived
// from the method and the shape of the path alone, never from an id or
// the query, so it is safe as a metrics label.
func (s *Server) Interaction(r *http.Request) string {
	name, _, _ := interaction(r.Method, s.segments(r.URL.Path))
	return name
}

// ServeHTTP routes a FHIR REST request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The gateway's id, or a new one: returned to the client and logged
	// with any internal error, so one id finds a request in every log.
	w.Header().Set(requestid.Header, requestid.Of(r))
	seg := s.segments(r.URL.Path)
	name, ityp, letter := interaction(r.Method, seg)
	if len(seg) > 0 && seg[0] == "AuditEvent" && s.audit != nil {
		if s.opts.Access != nil {
			var ok bool
			if r, ok = s.authenticate(w, r); !ok {
				return
			}
		}
		s.auditSearch(w, r, seg)
		return
	}
	if s.audit != nil && name != "capabilities" {
		// One allocation for the record, its status recorder and its first
		// entity, and one copy of the request for both the audit record and
		// the principal (audit costs a read little beyond its event).
		ctx := r.Context()
		rec := &auditRec{p: access.FromContext(ctx), interaction: name, at: s.now()}
		rec.seen = rec.first[:0]
		rec.sw.ResponseWriter = w
		w = &rec.sw
		defer func() {
			rec.mu.Lock()
			rec.status = rec.sw.Status
			rec.sw.ResponseWriter = nil // the buffered record keeps no connection alive
			pending := !rec.written || len(rec.seen) > 0
			rec.mu.Unlock()
			if pending {
				s.audit.add(rec)
			}
		}()
		if s.opts.Access != nil && rec.p == nil {
			p, ok := s.principal(w, r)
			if !ok {
				return
			}
			rec.p = p
			ctx = access.NewContext(ctx, p)
		}
		r = r.WithContext(context.WithValue(ctx, auditKey{}, rec))
	} else if s.opts.Access != nil && name != "capabilities" {
		var ok bool
		if r, ok = s.authenticate(w, r); !ok {
			return
		}
	}
	if ferr := s.allow(r, ityp, letter); ferr != nil {
		s.fail(w, ferr)
		return
	}
	if s.opts.ReadBarrier != nil && isRead(r.Method, seg) {
		if err := s.opts.ReadBarrier(r.Context()); err != nil {
			w.Header().Set("Retry-After", "1")
			s.fail(w, fhir.Errorf(http.StatusServiceUnavailable, "transient", err.Error()))
			return
		}
	}
	allow := func(methods ...string) bool {
		for _, m := range methods {
			if r.Method == m {
				return true
			}
		}
		w.Header().Set("Allow", strings.Join(methods, ", "))
		s.fail(w, fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", "method not allowed here"))
		return false
	}
	switch {
	case len(seg) == 0:
		if allow(http.MethodPost) {
			s.bundle(w, r)
		}
		return
	case len(seg) == 1 && seg[0] == "metadata":
		if allow(http.MethodGet) {
			meta, err := s.metadata()
			if err != nil {
				s.fail(w, err)
				return
			}
			s.send(w, &response{Status: http.StatusOK, Body: meta})
		}
		return
	case len(seg) == 1 && seg[0] == "_history":
		if allow(http.MethodGet) {
			s.history(w, r, "", "")
		}
		return
	}
	typ := seg[0]
	if !s.p.IsType(typ) {
		s.fail(w, fhir.Errorf(http.StatusNotFound, "not-supported", "unknown resource type or path"))
		return
	}
	if len(seg) > 1 && !strings.HasPrefix(seg[1], "_") && !fhir.ValidID(seg[1]) {
		s.fail(w, fhir.Errorf(http.StatusBadRequest, "invalid", "invalid resource id in the URL"))
		return
	}
	switch {
	case len(seg) == 1:
		if allow(http.MethodGet, http.MethodPost) {
			if r.Method == http.MethodGet {
				s.search(w, r, typ, r.URL.Query())
			} else {
				s.create(w, r, typ)
			}
		}
	case len(seg) == 2 && seg[1] == "_search":
		if allow(http.MethodPost) {
			s.searchPost(w, r, typ)
		}
	case len(seg) == 3 && typ == "Patient" && seg[2] == "$everything":
		if allow(http.MethodGet) {
			s.everything(w, r, seg[1])
		}
	case len(seg) == 2 && seg[1] == "_history":
		if allow(http.MethodGet) {
			s.history(w, r, typ, "")
		}
	case len(seg) == 2 && !strings.HasPrefix(seg[1], "_"):
		if allow(http.MethodGet, http.MethodPut, http.MethodDelete) {
			switch r.Method {
			case http.MethodGet:
				s.read(w, r, typ, seg[1], 0)
			case http.MethodPut:
				s.update(w, r, typ, seg[1])
			default:
				s.delete(w, r, typ, seg[1])
			}
		}
	case len(seg) == 3 && seg[2] == "_history":
		if allow(http.MethodGet) {
			s.history(w, r, typ, seg[1])
		}
	case len(seg) == 4 && seg[2] == "_history":
		if allow(http.MethodGet) {
			vid, err := fhir.ParseVersionID(seg[3])
			if err != nil {
				s.fail(w, fhir.Errorf(http.StatusNotFound, "not-found", "no such version"))
				return
			}
			s.read(w, r, typ, seg[1], vid)
		}
	default:
		s.fail(w, fhir.Errorf(http.StatusNotFound, "not-supported", "unknown path"))
	}
}

// body reads a request body within the size limit, after checking its
// media type.
func (s *Server) body(w http.ResponseWriter, r *http.Request) ([]byte, *fhir.Error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/fhir+json" && mt != "application/json" && mt != "application/json+fhir") {
			return nil, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "Content-Type must be application/fhir+json")
		}
	}
	if r.ContentLength > s.opts.MaxBodyBytes {
		return nil, tooLarge(s.opts.MaxBodyBytes)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(s.opts.MaxBodyBytes)
		}
		return nil, fhir.Errorf(http.StatusBadRequest, "structure", "could not read the request body")
	}
	if len(b) == 0 {
		return nil, fhir.Errorf(http.StatusBadRequest, "required", "request body is empty")
	}
	return b, nil
}

func tooLarge(n int64) *fhir.Error {
	return fhir.Errorf(http.StatusRequestEntityTooLarge, "too-long", fmt.Sprintf("request body exceeds %d bytes", n))
}

// prefer is the return preference of a request.
type prefer int

const (
	preferDefault prefer = iota
	preferMinimal
	preferRepresentation
	preferOutcome
)

func parsePrefer(h http.Header) prefer {
	for _, v := range h.Values("Prefer") {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			switch strings.ToLower(part) {
			case "return=minimal":
				return preferMinimal
			case "return=representation":
				return preferRepresentation
			case "return=operationoutcome":
				return preferOutcome
			}
		}
	}
	return preferDefault
}

// result is the outcome of one interaction on one resource.
type result struct {
	status  int
	typ, id string
	ver     *fhir.Version // the version created, matched or read; nil for a no-op delete
	message string        // for Prefer: return=OperationOutcome
}

func (s *Server) location(typ, id string, vid uint64) string {
	return s.opts.BasePath + "/" + typ + "/" + id + "/_history/" + strconv.FormatUint(vid, 10)
}

// render turns a result into an HTTP response under a preference.
func (s *Server) render(res *result, pref prefer) *response {
	out := &response{Status: res.status}
	if res.ver != nil {
		out.ETag = res.ver.ETag()
		out.LastModified = res.ver.LastUpdated.Format(http.TimeFormat)
		if res.status == http.StatusCreated {
			out.Location = s.location(res.typ, res.id, res.ver.VersionID)
		}
	}
	switch {
	case pref == preferOutcome:
		out.Body = fhir.OperationOutcome(fhir.Issue{Severity: "information", Code: "informational", Diagnostics: res.message})
	case pref == preferMinimal || res.ver == nil || res.ver.Deleted() || res.status == http.StatusNoContent:
		if res.status == http.StatusOK && res.ver != nil && res.ver.Deleted() {
			out.Status = http.StatusNoContent
		}
	default:
		out.Body = res.ver.JSON
	}
	return out
}

// idem is an Idempotency-Key on a write.
type idem struct {
	key         []byte // storage key
	fingerprint string
}

func idemFor(r *http.Request, body []byte) (*idem, *fhir.Error) {
	k := r.Header.Get("Idempotency-Key")
	if k == "" {
		return nil, nil
	}
	if len(k) > 255 {
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", "Idempotency-Key longer than 255 characters")
	}
	kh := sha256.Sum256([]byte(k))
	h := sha256.New()
	io.WriteString(h, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+"\n")
	for _, name := range []string{"If-Match", "If-None-Match", "If-None-Exist"} {
		io.WriteString(h, name+": "+r.Header.Get(name)+"\n")
	}
	if p := access.FromContext(r.Context()); p != nil {
		// A key replays only for the same token subject and client.
		io.WriteString(h, "principal: "+p.Subject+"\x00"+p.ClientID+"\n")
	}
	h.Write(body)
	return &idem{key: fhir.IdempotencyKey(hex.EncodeToString(kh[:])), fingerprint: hex.EncodeToString(h.Sum(nil))}, nil
}

// replay is returned by a WriteFunc to answer without writing: a stored
// Idempotency-Key result or an interaction that changes nothing.
type replay struct{ resp *response }

func (r *replay) Error() string { return "fhir: replay" }

// commit runs fn as one sequencer Write: the idempotency check, the
// interaction, and the storing of its result under the key, all together.
func (s *Server) commit(ctx context.Context, id *idem, fn func(t *txn) (*response, error)) (*response, error) {
	var out *response
	if s.opts.WriteGuard != nil {
		if err := s.opts.WriteGuard(ctx); err != nil {
			var fe *fhir.Error
			if errors.As(err, &fe) {
				return nil, fe
			}
			return nil, fhir.Errorf(http.StatusServiceUnavailable, "transient", err.Error())
		}
	}
	reg, err := s.activeRegistry()
	if err != nil {
		return nil, err
	}
	var rec *auditRec
	if s.audit != nil {
		rec = auditFrom(ctx)
	}
	var seen, written []auditEntity
	_, err = s.seq.Write(ctx, fhir.Database, func(v sequencer.View) ([]journal.Op, error) {
		t := newTxn(v, s.now())
		t.reg = reg
		if s.opts.Access != nil {
			t.guard = s.guardFor(access.FromContext(ctx))
		}
		t.audit = s.audit != nil
		if id != nil {
			b, ok, err := t.get(id.key)
			if err != nil {
				return nil, err
			}
			if ok {
				var prev response
				if err := json.Unmarshal(b, &prev); err != nil {
					return nil, fmt.Errorf("fhir: idempotency record: %w", fhir.ErrBadRecord)
				}
				if prev.Fingerprint != id.fingerprint {
					return nil, fhir.Errorf(http.StatusUnprocessableEntity, "business-rule", "Idempotency-Key was already used for a different request")
				}
				prev.Fingerprint = ""
				return nil, &replay{&prev}
			}
		}
		resp, err := fn(t)
		if err != nil {
			return nil, err
		}
		out = resp
		if id != nil {
			rec := *resp
			rec.Fingerprint = id.fingerprint
			b, err := json.Marshal(&rec)
			if err != nil {
				return nil, err
			}
			t.set(id.key, b)
		}
		if t.empty() {
			return nil, &replay{resp}
		}
		if rec != nil {
			// The write's AuditEvent, in the same journal record as the change.
			seen = rec.take()
			written = t.written
			s.auditOps(t, rec, resp.Status, append(append([]auditEntity(nil), seen...), t.written...), t.now)
		}
		return t.ops()
	})
	var rp *replay
	switch {
	case errors.As(err, &rp):
		return rp.resp, nil
	case err == nil:
		if rec != nil {
			rec.written = true
			for _, e := range written {
				s.audit.remember(resourceRef{e.typ, e.id}, e.patients)
			}
		}
		return out, nil
	}
	if rec != nil && len(seen) > 0 {
		rec.mu.Lock()
		rec.seen = append(seen, rec.seen...)
		rec.mu.Unlock()
	}
	var fe *fhir.Error
	if errors.As(err, &fe) {
		return nil, fe
	}
	if errors.Is(err, sequencer.ErrFailed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		s.opts.Logger.Error("fhir: write outcome unknown", "err", err)
		return nil, fhir.Errorf(http.StatusServiceUnavailable, "transient", "the write may or may not have been stored; retry with the same Idempotency-Key")
	}
	return nil, err
}

// create is POST [type].
func (s *Server) create(w http.ResponseWriter, r *http.Request, typ string) {
	body, ferr := s.body(w, r)
	if ferr != nil {
		s.fail(w, ferr)
		return
	}
	res, ferr := s.parse(body, typ, "")
	if ferr != nil {
		s.fail(w, ferr)
		return
	}
	var cond url.Values
	if h := r.Header.Get("If-None-Exist"); h != "" {
		q, err := url.ParseQuery(strings.TrimPrefix(h, "?"))
		if err != nil {
			s.fail(w, fhir.Errorf(http.StatusBadRequest, "invalid", "If-None-Exist is not a query string"))
			return
		}
		cond = q
	}
	id, ferr := idemFor(r, body)
	if ferr != nil {
		s.fail(w, ferr)
		return
	}
	newID := s.opts.NewID()
	pref := parsePrefer(r.Header)
	resp, err := s.commit(r.Context(), id, func(t *txn) (*response, error) {
		out, err := s.doCreate(t, typ, newID, res, cond, "If-None-Exist")
		if err != nil {
			return nil, err
		}
		return s.render(out, pref), nil
	})
	if err != nil {
		s.fail(w, err)
		return
	}
	s.send(w, resp)
}

// parse validates body as a resource of type typ (and id, when given).
func (s *Server) parse(body []byte, typ, id string) (*fhir.Resource, *fhir.Error) {
	res, ferr := s.p.ParseAs(body, typ)
	if ferr != nil {
		return nil, ferr
	}
	if id != "" && res.ID != id {
		if res.ID == "" {
			return nil, fhir.Errorf(http.StatusBadRequest, "required", "an update needs the resource id in the body", "id")
		}
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", "id in the body does not match the URL", "id")
	}
	return res, nil
}

func (s *Server) doCreate(t *txn, typ, id string, res *fhir.Resource, cond url.Values, expr string) (*result, error) {
	if cond != nil {
		ids, ferr := condSearch(t, typ, cond, expr)
		if ferr != nil {
			return nil, ferr
		}
		switch len(ids) {
		case 0:
		case 1:
			cur, _, err := current(t.get, typ, ids[0])
			if err != nil {
				return nil, err
			}
			if t.guard != nil && cur != nil && t.guard(typ, access.Read, cur.JSON) != nil {
				return nil, access.Forbidden("a matching resource exists that the token may not read")
			}
			return &result{status: http.StatusOK, typ: typ, id: ids[0], ver: cur, message: "a matching resource exists; nothing created"}, nil
		default:
			return nil, fhir.Errorf(http.StatusPreconditionFailed, "duplicate", fmt.Sprintf("conditional create matched %d resources", len(ids)), expr)
		}
	}
	if cur, _, err := current(t.get, typ, id); err != nil {
		return nil, err
	} else if cur != nil {
		return nil, fhir.Errorf(http.StatusConflict, "conflict", "server-assigned id already in use")
	}
	v, _, err := t.write(typ, id, fhir.KindCreated, res, precondition{})
	if err != nil {
		return nil, err
	}
	return &result{status: http.StatusCreated, typ: typ, id: id, ver: v, message: "created"}, nil
}

func (s *Server) doUpdate(t *txn, typ, id string, res *fhir.Resource, pre precondition) (*result, error) {
	v, prev, err := t.write(typ, id, fhir.KindUpdated, res, pre)
	if err != nil {
		return nil, err
	}
	if prev == nil || prev.Deleted() {
		return &result{status: http.StatusCreated, typ: typ, id: id, ver: v, message: "created"}, nil
	}
	return &result{status: http.StatusOK, typ: typ, id: id, ver: v, message: "updated"}, nil
}

func (s *Server) doDelete(t *txn, typ, id string, pre precondition) (*result, error) {
	cur, _, err := current(t.get, typ, id)
	if err != nil {
		return nil, err
	}
	if cur == nil || cur.Deleted() {
		if pre.set && (cur == nil || pre.any || pre.vid != cur.VersionID) {
			return nil, pre.check(nil)
		}
		return &result{status: http.StatusNoContent, typ: typ, id: id, message: "nothing to delete"}, nil
	}
	v, _, err := t.write(typ, id, fhir.KindDeleted, nil, pre)
	if err != nil {
		return nil, err
	}
	return &result{status: http.StatusNoContent, typ: typ, id: id, ver: v, message: "deleted"}, nil
}

// update is PUT [type]/[id].
func (s *Server) update(w http.ResponseWriter, r *http.Request, typ, id string) {
	body, ferr := s.body(w, r)
	if ferr != nil {
		s.fail(w, ferr)
		return
	}
	pre, ferr := parseIfMatch(r.Header.Get("If-Match"), "")
	if ferr == nil {
		pre, ferr = parseIfNoneMatch(r.Header.Get("If-None-Match"), pre)
	}
	if ferr != nil {
		s.fail(w, ferr)
		return
	}
	res, ferr := s.parse(body, typ, id)
	if ferr != nil {
		s.fail(w, ferr)
		return
	}
	ik, ferr := idemFor(r, body)
	if ferr != nil {
		s.fail(w, ferr)
		return
	}
	pref := parsePrefer(r.Header)
	resp, err := s.commit(r.Context(), ik, func(t *txn) (*response, error) {
		out, err := s.doUpdate(t, typ, id, res, pre)
		if err != nil {
			return nil, err
		}
		return s.render(out, pref), nil
	})
	if err != nil {
		s.fail(w, err)
		return
	}
	s.send(w, resp)
}

// delete is DELETE [type]/[id].
func (s *Server) delete(w http.ResponseWriter, r *http.Request, typ, id string) {
	pre, ferr := parseIfMatch(r.Header.Get("If-Match"), "")
	if ferr != nil {
		s.fail(w, ferr)
		return
	}
	ik, ferr := idemFor(r, nil)
	if ferr != nil {
		s.fail(w, ferr)
		return
	}
	pref := parsePrefer(r.Header)
	resp, err := s.commit(r.Context(), ik, func(t *txn) (*response, error) {
		out, err := s.doDelete(t, typ, id, pre)
		if err != nil {
			return nil, err
		}
		if pref == preferOutcome {
			return s.render(out, pref), nil
		}
		return s.render(out, preferMinimal), nil
	})
	if err != nil {
		s.fail(w, err)
		return
	}
	s.send(w, resp)
}

// read is GET [type]/[id] (vid 0) and GET [type]/[id]/_history/[vid].
func (s *Server) read(w http.ResponseWriter, r *http.Request, typ, id string, vid uint64) {
	var v *fhir.Version
	var err error
	if vid == 0 {
		v, _, err = current(s.get, typ, id)
	} else {
		v, err = version(s.get, typ, id, vid)
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	if v == nil {
		s.fail(w, fhir.Errorf(http.StatusNotFound, "not-found", "resource not found"))
		return
	}
	if v.Deleted() {
		if s.opts.Access != nil && !access.FromContext(r.Context()).CanSee(typ, nil) {
			s.fail(w, notVisible())
			return
		}
		w.Header().Set("ETag", v.ETag())
		s.fail(w, fhir.Errorf(http.StatusGone, "deleted", "resource deleted"))
		return
	}
	if !s.visibleID(r, typ, id, v.JSON) {
		s.fail(w, notVisible())
		return
	}
	s.send(w, &response{Status: http.StatusOK, ETag: v.ETag(), LastModified: v.LastUpdated.Format(http.TimeFormat), Body: v.JSON})
}

// isRead reports whether a request only reads clinical data.
func isRead(method string, seg []string) bool {
	switch method {
	case http.MethodGet, http.MethodHead:
		return len(seg) == 0 || seg[0] != "metadata"
	case http.MethodPost:
		return len(seg) == 2 && seg[1] == "_search"
	}
	return false
}
