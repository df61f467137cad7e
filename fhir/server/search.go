package server

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/search"
)

var (
	registryOnce sync.Once
	registry     *search.Registry
	registryErr  error
)

// defaultRegistry is the embedded R4 definitions, parsed once per process.
func defaultRegistry() (*search.Registry, error) {
	registryOnce.Do(func() { registry, registryErr = search.Load() })
	return registry, registryErr
}

// candidate is one resource that matched every term, with its forward
// record entries and sort key.
type candidate struct {
	id  string
	es  []search.Entry
	key [][]byte // per sort key; nil = no value
}

// strictHandling reports Prefer: handling=strict.
func strictHandling(h http.Header) bool {
	for _, v := range h.Values("Prefer") {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), "handling=strict") {
				return true
			}
		}
	}
	return false
}

// searchPost is POST [type]/_search with a form body (and maybe a query).
func (s *Server) searchPost(w http.ResponseWriter, r *http.Request, typ string) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		s.fail(w, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "POST _search takes application/x-www-form-urlencoded"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		s.fail(w, fhir.Errorf(http.StatusBadRequest, "invalid", "the form body could not be parsed"))
		return
	}
	s.search(w, r, typ, r.Form)
}

// search is GET [type] and POST [type]/_search.
func (s *Server) search(w http.ResponseWriter, r *http.Request, typ string, params url.Values) {
	reg, err := s.activeRegistry()
	if err != nil {
		s.fail(w, err)
		return
	}
	q := reg.ParseQuery(typ, params)
	if len(q.Ignored) > 0 && strictHandling(r.Header) {
		e := &fhir.Error{Status: http.StatusBadRequest}
		for _, m := range q.Ignored {
			e.Issues = append(e.Issues, fhir.Issue{Severity: "error", Code: "not-supported", Diagnostics: "search parameter not applied: " + m})
		}
		s.fail(w, e)
		return
	}
	count := s.opts.DefaultCount
	if q.Count >= 0 {
		count = min(q.Count, s.opts.MaxCount)
	}
	if count == 0 {
		q.SummaryOnly = true // _count=0: the total alone
	}
	if len(q.Sort) == 0 {
		q.Sort = []search.SortKey{{Param: "_id", Kind: search.KindToken}}
	}
	var after *candidate
	if q.Cursor != "" {
		c, err := decodeCursor(q.Cursor, len(q.Sort))
		if err != nil {
			s.fail(w, fhir.Errorf(http.StatusBadRequest, "invalid", "invalid _cursor"))
			return
		}
		after = c
	}
	// Without totals, a default-ordered scan can stop after the page.
	limit := -1
	if !q.Total && !q.SummaryOnly && len(q.Sort) == 1 && q.Sort[0].Param == "_id" && !q.Sort[0].Desc {
		limit = count + 1
	}
	cands, err := s.candidates(q, after, limit)
	if err != nil {
		s.fail(w, err)
		return
	}
	base := s.baseURL(r)
	type hit struct {
		c *candidate
		v *fhir.Version
	}
	var hits []hit
	var next *candidate
	total := -1
	visibleTotal := 0
	for _, c := range cands {
		if len(hits) == count && next == nil && !q.Total && !q.SummaryOnly {
			next = hits[len(hits)-1].c
			break
		}
		v, _, err := current(s.get, typ, c.id)
		if err != nil {
			s.fail(w, err)
			return
		}
		if v == nil || v.Deleted() || !s.visible(r, typ, v.JSON) {
			continue
		}
		visibleTotal++
		if len(hits) < count && !q.SummaryOnly {
			hits = append(hits, hit{c, v})
		} else if next == nil && len(hits) > 0 {
			next = hits[len(hits)-1].c
		}
	}
	if next == nil && limit > 0 && len(cands) >= limit {
		// The scan stopped early and invisible candidates left the page
		// short: the next page starts after the last one looked at.
		next = cands[len(cands)-1]
	}
	if q.Total || q.SummaryOnly || (after == nil && next == nil) {
		total = visibleTotal
	}
	self := base + "/" + typ
	links := [][2]string{{"self", self + "?" + params.Encode()}}
	if next != nil {
		nq := url.Values{}
		for k, v := range params {
			if k != "_cursor" {
				nq[k] = v
			}
		}
		nq.Set("_count", strconv.Itoa(count))
		nq.Set("_cursor", encodeCursor(next))
		links = append(links, [2]string{"next", self + "?" + nq.Encode()})
	}
	b := newBundle("searchset", total, links)
	seen := map[string]bool{}
	for _, h := range hits {
		seen[typ+"/"+h.c.id] = true
		b.entry(base+"/"+typ+"/"+h.c.id, h.v.JSON, "search", map[string]string{"mode": "match"})
	}
	if !q.SummaryOnly {
		if err := s.includes(r, b, base, q, hits2cands(hits, func(h hit) *candidate { return h.c }), seen); err != nil {
			s.fail(w, err)
			return
		}
	}
	if len(q.Ignored) > 0 {
		var issues []fhir.Issue
		for _, m := range q.Ignored {
			issues = append(issues, fhir.Issue{Severity: "warning", Code: "not-supported", Diagnostics: "search parameter ignored: " + m})
		}
		b.entry("", fhir.OperationOutcome(issues...), "search", map[string]string{"mode": "outcome"})
	}
	s.send(w, &response{Status: http.StatusOK, Body: b.bytes()})
}

func hits2cands[T any](hs []T, f func(T) *candidate) []*candidate {
	out := make([]*candidate, len(hs))
	for i, h := range hs {
		out[i] = f(h)
	}
	return out
}

// candidates lists the resources matching every term of q that sort after
// the cursor, in sort order. The most selective indexed term (by rank)
// lists candidates by prefix scans; every term is then checked against the
// candidate's forward record. Without such a term, the type's forward
// records are scanned. limit > 0 lets a scan in id order stop early.
func (s *Server) candidates(q *search.Query, after *candidate, limit int) ([]*candidate, error) {
	typ := q.Type
	var driver *search.Term
	var ids []string
	for _, t := range q.Terms {
		if t.Param.Code == "_id" && t.Modifier == "" && t.Missing == nil {
			driver = t
			for _, v := range t.Values {
				ids = append(ids, v.Code)
			}
			break
		}
		if t.Drivable() && (driver == nil || t.Rank() < driver.Rank()) {
			driver = t
		}
	}
	// A patient-scoped term on a compartment parameter: the compartment's
	// copies of the forward records are the candidates, in one scan.
	var pid string
	if driver == nil || ids == nil {
		for _, t := range q.Terms {
			if t.Param.Kind != search.KindReference || t.Modifier != "" || t.Missing != nil || len(t.Values) != 1 || t.Values[0].RefType != "Patient" {
				continue
			}
			// Every R4 "patient" parameter selects a subset of a compartment
			// parameter's references (checked over the definitions when this
			// was written); the terms are still checked on every candidate.
			if t.Param.Code == "patient" && len(s.reg.PatientParams(typ)) > 0 {
				pid = t.Values[0].RefID
			}
			for _, p := range s.reg.PatientParams(typ) {
				if p == t.Param.Code {
					pid = t.Values[0].RefID
				}
			}
			if typ == "Patient" && t.Param.Code == "link" {
				pid = ""
			}
			if pid != "" {
				break
			}
		}
	}
	var out []*candidate
	// keep checks a forward record; raw may be the iterator's memory, so
	// it is copied only when the candidate is kept.
	var needles [][][]byte
	for _, t := range q.Terms {
		if n := t.Needles(); n != nil {
			needles = append(needles, n)
		}
	}
	keep := func(id string, raw []byte, owned bool) error {
	terms:
		for _, alts := range needles {
			for _, n := range alts {
				if bytes.Contains(raw, n) {
					continue terms
				}
			}
			return nil
		}
		es, err := search.DecodeRecord(raw)
		if err != nil {
			return err
		}
		for _, t := range q.Terms {
			if !t.Match(id, es) {
				return nil
			}
		}
		if !owned {
			search.Rebase(es, raw, bytes.Clone(raw))
		}
		c := &candidate{id: id, es: es, key: make([][]byte, len(q.Sort))}
		for i, k := range q.Sort {
			if v, ok := search.SortValue(k, id, es); ok {
				c.key[i] = v
			}
		}
		if after != nil && compareCandidates(q.Sort, c, after) <= 0 {
			return nil
		}
		out = append(out, c)
		return nil
	}
	if driver == nil || pid != "" {
		var scanErr error
		prefix := search.RecordPrefix(typ)
		if pid != "" {
			prefix = search.CompartmentPrefix(pid, typ)
		}
		err := s.st.Scan(fhir.Database, prefix, func(k, v []byte) bool {
			if err := keep(string(k[len(prefix):]), v, false); err != nil {
				scanErr = err
				return false
			}
			return limit <= 0 || len(out) < limit
		})
		if err == nil {
			err = scanErr
		}
		if err != nil {
			return nil, err
		}
	} else {
		if ids == nil {
			set := map[string]bool{}
			for _, p := range driver.Prefixes(typ) {
				if err := s.st.Scan(fhir.Database, p, func(k, _ []byte) bool {
					set[search.IDOfIndexKey(k)] = true
					return true
				}); err != nil {
					return nil, err
				}
			}
			for id := range set {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		for i, id := range ids {
			if i > 0 && ids[i-1] == id {
				continue
			}
			b, ok, err := s.get(search.RecordKey(typ, id))
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			if err := keep(id, b, true); err != nil {
				return nil, err
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return compareCandidates(q.Sort, out[i], out[j]) < 0 })
	return out, nil
}

// compareCandidates orders by the sort keys (values missing last, in either
// direction), then by id.
func compareCandidates(keys []search.SortKey, a, b *candidate) int {
	for i, k := range keys {
		av, bv := a.key[i], b.key[i]
		switch {
		case av == nil && bv == nil:
			continue
		case av == nil:
			return 1
		case bv == nil:
			return -1
		}
		c := bytes.Compare(av, bv)
		if k.Desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return strings.Compare(a.id, b.id)
}

// The cursor is the sort key and id of the last entry of a page:
// per sort key a flag (0 missing, 1 present) and uvarint length-prefixed
// value, then the id; base64url without padding.
func encodeCursor(c *candidate) string {
	var b []byte
	for _, k := range c.key {
		if k == nil {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	b = append(b, c.id...)
	return base64.RawURLEncoding.EncodeToString(b)
}

var errCursor = errors.New("fhir: bad cursor")

func decodeCursor(s string, nkeys int) (*candidate, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errCursor
	}
	c := &candidate{key: make([][]byte, nkeys)}
	for i := range nkeys {
		if len(b) == 0 {
			return nil, errCursor
		}
		flag := b[0]
		b = b[1:]
		if flag == 0 {
			continue
		}
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, errCursor
		}
		c.key[i] = b[k : k+int(n)]
		b = b[k+int(n):]
	}
	c.id = string(b)
	if !fhir.ValidID(c.id) {
		return nil, errCursor
	}
	return c, nil
}

// includes adds _include and _revinclude entries (one level) for the
// page's matches; seen holds Type/id already in the bundle.
func (s *Server) includes(r *http.Request, b *bundleWriter, base string, q *search.Query, page []*candidate, seen map[string]bool) error {
	add := func(typ, id string) error {
		ref := typ + "/" + id
		if seen[ref] || !s.p.IsType(typ) || !fhir.ValidID(id) {
			return nil
		}
		seen[ref] = true
		v, _, err := current(s.get, typ, id)
		if err != nil {
			return err
		}
		if v == nil || v.Deleted() || !s.visible(r, typ, v.JSON) {
			return nil
		}
		b.entry(base+"/"+ref, v.JSON, "search", map[string]string{"mode": "include"})
		return nil
	}
	for _, inc := range q.Include {
		for _, c := range page {
			for _, e := range search.Of(c.es, inc.Param) {
				typ, id := search.DecodeReference(e.Value)
				if typ == "" || (inc.Target != "" && typ != inc.Target) {
					continue
				}
				if err := add(typ, id); err != nil {
					return err
				}
			}
		}
	}
	for _, inc := range q.RevInclude {
		for _, c := range page {
			prefix := append(search.ParamPrefix(inc.Source, inc.Param), search.EncodeReference(q.Type, c.id)...)
			prefix = append(prefix, 0)
			var ids []string
			if err := s.st.Scan(fhir.Database, prefix, func(k, _ []byte) bool {
				ids = append(ids, search.IDOfIndexKey(k))
				return true
			}); err != nil {
				return err
			}
			for _, id := range ids {
				if err := add(inc.Source, id); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// everything is GET Patient/[id]/$everything: the patient and every
// resource in its compartment (CompartmentDefinition-patient; the p/ keys
// written with each resource), in
// (type, id) order, paged by _count and an opaque _cursor (the last
// Type/id). Resources the compartment's resources merely reference
// (practitioners, organizations) are not added.
func (s *Server) everything(w http.ResponseWriter, r *http.Request, id string) {
	q := r.URL.Query()
	count, cursor, ferr := s.paging(q, "_since", "_type")
	if ferr != nil {
		s.fail(w, ferr)
		return
	}
	if q.Get("_since") != "" || q.Get("_type") != "" {
		s.fail(w, fhir.Errorf(http.StatusBadRequest, "not-supported", "$everything: _since and _type are not supported"))
		return
	}
	pv, _, err := current(s.get, "Patient", id)
	if err != nil {
		s.fail(w, err)
		return
	}
	if pv == nil || pv.Deleted() || !s.visible(r, "Patient", pv.JSON) {
		s.fail(w, fhir.Errorf(http.StatusNotFound, "not-found", "resource not found"))
		return
	}
	refs := map[string]bool{"Patient/" + id: true}
	prefix := search.CompartmentPrefix(id, "")
	if err := s.st.Scan(fhir.Database, prefix, func(k, _ []byte) bool {
		refs[string(k[len(prefix):])] = true
		return true
	}); err != nil {
		s.fail(w, err)
		return
	}
	all := make([]string, 0, len(refs))
	for ref := range refs {
		if cursor == "" || ref > cursor {
			all = append(all, ref)
		}
	}
	sort.Strings(all)
	base := s.baseURL(r)
	b := &bundleWriter{}
	var entries []struct {
		ref string
		js  []byte
	}
	next := ""
	for _, ref := range all {
		if len(entries) == count {
			next = entries[len(entries)-1].ref
			break
		}
		typ, rid, _ := strings.Cut(ref, "/")
		v, _, err := current(s.get, typ, rid)
		if err != nil {
			s.fail(w, err)
			return
		}
		if v == nil || v.Deleted() || !s.visible(r, typ, v.JSON) {
			continue
		}
		entries = append(entries, struct {
			ref string
			js  []byte
		}{ref, v.JSON})
	}
	self := base + "/Patient/" + id + "/$everything"
	links := [][2]string{{"self", self + "?" + r.URL.RawQuery}}
	if next != "" {
		nq := url.Values{"_count": {strconv.Itoa(count)}, "_cursor": {next}}
		links = append(links, [2]string{"next", self + "?" + nq.Encode()})
	}
	total := -1
	if cursor == "" && next == "" {
		total = len(entries)
	}
	b = newBundle("searchset", total, links)
	for _, e := range entries {
		b.entry(base+"/"+e.ref, e.js, "search", map[string]string{"mode": "match"})
	}
	s.send(w, &response{Status: http.StatusOK, Body: b.bytes()})
}
