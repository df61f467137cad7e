package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/access"
)

type bundleIn struct {
	ResourceType string    `json:"resourceType"`
	Type         string    `json:"type"`
	Entry        []entryIn `json:"entry"`
}

type entryIn struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  *struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfNoneExist string `json:"ifNoneExist"`
		IfMatch     string `json:"ifMatch"`
	} `json:"request"`
}

// entry is one prepared bundle entry.
type entry struct {
	i       int
	expr    string // Bundle.entry[i]
	method  string
	typ, id string
	cond    url.Values // ifNoneExist
	pre     precondition
	res     *fhir.Resource
	fullURL string
	matched bool // conditional create found an existing resource
	out     *result
	err     *fhir.Error // batch only
}

// prepare checks an entry's request and parses its resource (the expensive
// part, done before the write lock).
func (s *Server) prepare(i int, in *entryIn) (*entry, *fhir.Error) {
	e := &entry{i: i, expr: fmt.Sprintf("Bundle.entry[%d]", i), fullURL: in.FullURL}
	if in.Request == nil {
		return e, fhir.Errorf(http.StatusBadRequest, "required", "entry.request is missing", e.expr)
	}
	e.method = in.Request.Method
	u := strings.TrimPrefix(in.Request.URL, "/")
	if strings.Contains(u, "?") {
		if e.method == http.MethodPost {
			return e, fhir.Errorf(http.StatusBadRequest, "invalid", "a create URL has no query; use ifNoneExist", e.expr+".request.url")
		}
		return e, fhir.Errorf(http.StatusBadRequest, "not-supported", "conditional update, delete and search are not supported in bundles", e.expr+".request.url")
	}
	parts := strings.Split(u, "/")
	e.typ = parts[0]
	if !s.p.IsType(e.typ) {
		return e, fhir.Errorf(http.StatusNotFound, "not-supported", "unknown resource type", e.expr+".request.url")
	}
	switch e.method {
	case http.MethodPost:
		if len(parts) != 1 {
			return e, fhir.Errorf(http.StatusBadRequest, "invalid", "a create URL is [type]", e.expr+".request.url")
		}
		if in.Request.IfNoneExist != "" {
			q, err := url.ParseQuery(strings.TrimPrefix(in.Request.IfNoneExist, "?"))
			if err != nil {
				return e, fhir.Errorf(http.StatusBadRequest, "invalid", "ifNoneExist is not a query string", e.expr+".request.ifNoneExist")
			}
			e.cond = q
		}
	case http.MethodPut, http.MethodDelete, http.MethodGet:
		if len(parts) != 2 || !fhir.ValidID(parts[1]) {
			return e, fhir.Errorf(http.StatusBadRequest, "invalid", "the URL must be [type]/[id]", e.expr+".request.url")
		}
		e.id = parts[1]
		var ferr *fhir.Error
		if e.pre, ferr = parseIfMatch(in.Request.IfMatch, e.expr+".request.ifMatch"); ferr != nil {
			return e, ferr
		}
	default:
		return e, fhir.Errorf(http.StatusBadRequest, "not-supported", "entry.request.method must be POST, PUT, DELETE or GET", e.expr+".request.method")
	}
	if e.method == http.MethodPost || e.method == http.MethodPut {
		if len(in.Resource) == 0 {
			return e, fhir.Errorf(http.StatusBadRequest, "required", "entry.resource is missing", e.expr+".resource")
		}
		res, ferr := s.parse(in.Resource, e.typ, e.id)
		if ferr != nil {
			return e, ferr.Prefix(e.expr+".resource", e.typ)
		}
		e.res = res
	}
	return e, nil
}

// allowEntry checks a bundle entry's interaction against the token.
func (s *Server) allowEntry(r *http.Request, e *entry) *fhir.Error {
	letter := access.Read
	switch e.method {
	case http.MethodPost:
		letter = access.Create
	case http.MethodPut:
		letter = access.Update
	case http.MethodDelete:
		letter = access.Delete
	}
	if ferr := s.allow(r, e.typ, letter); ferr != nil {
		return ferr.Prefix(e.expr, "")
	}
	if s.audit != nil && e.typ == "AuditEvent" && e.method != http.MethodGet {
		return fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", "AuditEvents are written by the server", e.expr+".request.url")
	}
	return nil
}

// bundle is POST [base] with a transaction or batch Bundle.
func (s *Server) bundle(w http.ResponseWriter, r *http.Request) {
	body, ferr := s.body(w, r)
	if ferr != nil {
		s.fail(w, ferr)
		return
	}
	var in bundleIn
	if err := json.Unmarshal(body, &in); err != nil {
		s.fail(w, fhir.Errorf(http.StatusBadRequest, "structure", "body is not a Bundle"))
		return
	}
	if in.ResourceType != "Bundle" {
		s.fail(w, fhir.Errorf(http.StatusBadRequest, "invalid", "only a transaction or batch Bundle can be posted to the base", "resourceType"))
		return
	}
	pref := parsePrefer(r.Header)
	if rec := auditFrom(r.Context()); rec != nil && (in.Type == "transaction" || in.Type == "batch") {
		rec.interaction = in.Type
	}
	switch in.Type {
	case "transaction":
		ik, ferr := idemFor(r, body)
		if ferr != nil {
			s.fail(w, ferr)
			return
		}
		resp, err := s.transaction(r, in.Entry, ik, pref)
		if err != nil {
			s.fail(w, err)
			return
		}
		s.send(w, resp)
	case "batch":
		if r.Header.Get("Idempotency-Key") != "" {
			s.fail(w, fhir.Errorf(http.StatusBadRequest, "not-supported", "Idempotency-Key is supported on transactions, not batches (a batch is not atomic)"))
			return
		}
		s.send(w, s.batch(r, in.Entry, pref))
	default:
		s.fail(w, fhir.Errorf(http.StatusBadRequest, "not-supported", "Bundle.type must be transaction or batch", "Bundle.type"))
	}
}

// order of processing inside a transaction (FHIR R4 3.1.0.11.2).
var methodOrder = []string{http.MethodDelete, http.MethodPost, http.MethodPut, http.MethodGet}

func (s *Server) transaction(r *http.Request, in []entryIn, ik *idem, pref prefer) (*response, error) {
	entries := make([]*entry, len(in))
	for i := range in {
		e, ferr := s.prepare(i, &in[i])
		if ferr == nil {
			ferr = s.allowEntry(r, e)
		}
		if ferr != nil {
			return nil, ferr
		}
		entries[i] = e
	}
	refs, ferr := s.assignIDs(entries)
	if ferr != nil {
		return nil, ferr
	}
	return s.commit(r.Context(), ik, func(t *txn) (*response, error) {
		visible := func(e *entry) bool { return s.visibleID(r, e.typ, e.id, e.out.ver.JSON) }
		if err := s.runTransaction(t, entries, refs, visible); err != nil {
			return nil, err
		}
		b := newBundle("transaction-response", -1, nil)
		for _, e := range entries {
			s.writeResultEntry(b, s.baseURL(r), e, pref)
		}
		return &response{Status: http.StatusOK, Body: b.bytes()}, nil
	})
}

// assignIDs gives every create of a prepared transaction a new server id
// (in entry order) and maps the fullUrls of creates and updates to
// Type/id. A resource named twice, or a fullUrl used twice, is a 400.
func (s *Server) assignIDs(entries []*entry) (map[string]string, *fhir.Error) {
	refs := map[string]string{} // fullUrl -> Type/id
	seen := map[string]bool{}   // Type/id of PUT, DELETE and GET entries
	for _, e := range entries {
		if e.method == http.MethodPost {
			e.id = s.opts.NewID()
		} else {
			if seen[e.typ+"/"+e.id] {
				return nil, fhir.Errorf(http.StatusBadRequest, "invalid", "a transaction may name a resource only once", e.expr+".request.url")
			}
			seen[e.typ+"/"+e.id] = true
		}
		if e.fullURL != "" && (e.method == http.MethodPost || e.method == http.MethodPut) {
			if _, dup := refs[e.fullURL]; dup {
				return nil, fhir.Errorf(http.StatusBadRequest, "invalid", "duplicate fullUrl in the bundle", e.expr+".fullUrl")
			}
			refs[e.fullURL] = e.typ + "/" + e.id
		}
	}
	return refs, nil
}

// runTransaction carries out prepared entries inside a Write: conditional
// creates first, then references rewritten, then every entry in the R4
// method order, its result in entry.out. visible decides whether a GET
// entry's resource may be returned (nil: always).
func (s *Server) runTransaction(t *txn, entries []*entry, refs map[string]string, visible func(*entry) bool) error {
	// Conditional creates first: a match changes what its fullUrl means.
	// Two entries with the same condition create one resource.
	firstByCond := map[string]*entry{}
	for _, e := range entries {
		if e.method != http.MethodPost || e.cond == nil {
			continue
		}
		key := e.typ + "?" + e.cond.Encode()
		if first, ok := firstByCond[key]; ok {
			e.matched, e.id = true, first.id
			if e.fullURL != "" {
				refs[e.fullURL] = e.typ + "/" + e.id
			}
			continue
		}
		firstByCond[key] = e
		ids, ferr := condSearch(t, e.typ, e.cond, e.expr+".request.ifNoneExist")
		if ferr != nil {
			return ferr
		}
		switch len(ids) {
		case 0:
		case 1:
			e.matched, e.id = true, ids[0]
			if e.fullURL != "" {
				refs[e.fullURL] = e.typ + "/" + e.id
			}
		default:
			return fhir.Errorf(http.StatusPreconditionFailed, "duplicate", fmt.Sprintf("conditional create matched %d resources", len(ids)), e.expr+".request.ifNoneExist")
		}
	}
	for _, e := range entries {
		if e.res == nil || e.matched || !e.res.HasReferences() {
			continue
		}
		err := e.res.RewriteReferences(func(ref string) (string, bool, error) {
			return s.resolveRef(t, refs, ref, e.expr+".resource")
		})
		if err != nil {
			return err
		}
	}
	for _, m := range methodOrder {
		for _, e := range entries {
			if e.method != m {
				continue
			}
			var err error
			switch m {
			case http.MethodDelete:
				e.out, err = s.doDelete(t, e.typ, e.id, e.pre)
			case http.MethodPost:
				if e.matched {
					cur, _, gerr := current(t.get, e.typ, e.id)
					e.out, err = &result{status: http.StatusOK, typ: e.typ, id: e.id, ver: cur, message: "a matching resource exists"}, gerr
				} else {
					e.out, err = s.doCreate(t, e.typ, e.id, e.res, nil, "")
				}
			case http.MethodPut:
				e.out, err = s.doUpdate(t, e.typ, e.id, e.res, e.pre)
			case http.MethodGet:
				e.out, err = s.doRead(t.get, e.typ, e.id)
				if err == nil && visible != nil && !visible(e) {
					err = notVisible()
				}
			}
			if err != nil {
				if fe, ok := err.(*fhir.Error); ok {
					return fe.Prefix(e.expr, "")
				}
				return err
			}
		}
	}
	return nil
}

// resolveRef maps a reference inside a transaction: a fullUrl of the
// bundle becomes Type/id, a conditional reference Type?query becomes the one
// resource it matches.
func (s *Server) resolveRef(t *txn, refs map[string]string, ref, expr string) (string, bool, error) {
	if to, ok := refs[ref]; ok {
		return to, true, nil
	}
	if strings.HasPrefix(ref, "urn:uuid:") || strings.HasPrefix(ref, "urn:oid:") {
		return "", false, fhir.Errorf(http.StatusBadRequest, "not-found", "reference to a fullUrl that is not in the bundle", expr)
	}
	typ, query, ok := strings.Cut(ref, "?")
	if !ok || !s.p.IsType(typ) {
		return "", false, nil
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", false, fhir.Errorf(http.StatusBadRequest, "invalid", "conditional reference is not a query", expr)
	}
	ids, ferr := condSearch(t, typ, q, expr)
	if ferr != nil {
		return "", false, ferr
	}
	if len(ids) != 1 {
		return "", false, fhir.Errorf(http.StatusPreconditionFailed, "not-found", fmt.Sprintf("conditional reference matched %d resources, want 1", len(ids)), expr)
	}
	return typ + "/" + ids[0], true, nil
}

func (s *Server) doRead(g func([]byte) ([]byte, bool, error), typ, id string) (*result, error) {
	v, _, err := current(g, typ, id)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fhir.Errorf(http.StatusNotFound, "not-found", "resource not found")
	}
	if v.Deleted() {
		return nil, fhir.Errorf(http.StatusGone, "deleted", "resource deleted")
	}
	return &result{status: http.StatusOK, typ: typ, id: id, ver: v}, nil
}

func (s *Server) writeResultEntry(b *bundleWriter, base string, e *entry, pref prefer) {
	if e.err != nil {
		b.entry("", nil, "response", entryResponse{Status: statusLine(e.err.Status), Outcome: e.err.Outcome()})
		return
	}
	o := e.out
	resp := entryResponse{Status: statusLine(o.status)}
	var res []byte
	if o.ver != nil {
		resp.ETag = o.ver.ETag()
		resp.LastModified = fhir.FormatInstant(o.ver.LastUpdated)
		if o.status == http.StatusCreated || o.status == http.StatusOK && e.method != http.MethodGet {
			resp.Location = o.typ + "/" + o.id + "/_history/" + strconv.FormatUint(o.ver.VersionID, 10)
		}
		if !o.ver.Deleted() && (e.method == http.MethodGet || pref == preferRepresentation) {
			res = o.ver.JSON
		}
	}
	if pref == preferOutcome && o.message != "" {
		resp.Outcome = fhir.OperationOutcome(fhir.Issue{Severity: "information", Code: "informational", Diagnostics: o.message})
	}
	full := ""
	if o.id != "" && o.ver != nil {
		full = base + "/" + o.typ + "/" + o.id
	}
	b.entry(full, res, "response", resp)
}

// batch runs each entry on its own: one Write per entry, failures reported
// in the entry's response.
func (s *Server) batch(r *http.Request, in []entryIn, pref prefer) *response {
	b := newBundle("batch-response", -1, nil)
	for i := range in {
		e, ferr := s.prepare(i, &in[i])
		if ferr == nil {
			ferr = s.allowEntry(r, e)
		}
		if ferr == nil {
			var err error
			e.out, err = s.batchEntry(r, e)
			if err != nil {
				ferr = fhir.AsError(err)
				if ferr.Status >= 500 {
					s.opts.Logger.Error("fhir: batch entry", "entry", i, "err", err)
				}
			}
		}
		if ferr != nil {
			e.err = ferr
		}
		s.writeResultEntry(b, s.baseURL(r), e, pref)
	}
	return &response{Status: http.StatusOK, Body: b.bytes()}
}

func (s *Server) batchEntry(r *http.Request, e *entry) (*result, error) {
	if e.method == http.MethodGet {
		out, err := s.doRead(s.get, e.typ, e.id)
		if err == nil && !s.visibleID(r, e.typ, e.id, out.ver.JSON) {
			return nil, notVisible()
		}
		return out, err
	}
	if e.method == http.MethodPost {
		e.id = s.opts.NewID()
	}
	var out *result
	_, err := s.commit(r.Context(), nil, func(t *txn) (*response, error) {
		var err error
		switch e.method {
		case http.MethodPost:
			out, err = s.doCreate(t, e.typ, e.id, e.res, e.cond, e.expr+".request.ifNoneExist")
		case http.MethodPut:
			out, err = s.doUpdate(t, e.typ, e.id, e.res, e.pre)
		case http.MethodDelete:
			out, err = s.doDelete(t, e.typ, e.id, e.pre)
		}
		if err != nil {
			return nil, err
		}
		return &response{}, nil
	})
	return out, err
}
