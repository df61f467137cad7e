package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/access"
)

// baseURL is the absolute base of the server as the client addressed it.
func (s *Server) baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + s.opts.BasePath
}

// paging reads _count and _cursor; any other parameter except _format is
// refused rather than silently ignored.
func (s *Server) paging(q url.Values, allowed ...string) (count int, cursor string, ferr *fhir.Error) {
	count = s.opts.DefaultCount
	for name, vals := range q {
		switch name {
		case "_count":
			n, err := strconv.Atoi(vals[0])
			if err != nil || n < 0 {
				return 0, "", fhir.Errorf(http.StatusBadRequest, "invalid", "_count must be a non-negative integer")
			}
			count = min(n, s.opts.MaxCount)
		case "_cursor":
			cursor = vals[0]
		case "_format":
		default:
			ok := false
			for _, a := range allowed {
				ok = ok || a == name
			}
			if !ok {
				return 0, "", fhir.Errorf(http.StatusBadRequest, "not-supported", "parameter not supported here: "+safeParam(name))
			}
		}
	}
	return count, cursor, nil
}

// bundleWriter writes a Bundle around stored resource bytes, without
// re-marshalling them.
type bundleWriter struct {
	buf     bytes.Buffer
	entries int
}

func newBundle(typ string, total int, links [][2]string) *bundleWriter {
	b := &bundleWriter{}
	b.buf.WriteString(`{"resourceType":"Bundle","type":`)
	writeJSON(&b.buf, typ)
	if total >= 0 {
		b.buf.WriteString(`,"total":`)
		b.buf.WriteString(strconv.Itoa(total))
	}
	if len(links) > 0 {
		b.buf.WriteString(`,"link":[`)
		for i, l := range links {
			if i > 0 {
				b.buf.WriteByte(',')
			}
			b.buf.WriteString(`{"relation":`)
			writeJSON(&b.buf, l[0])
			b.buf.WriteString(`,"url":`)
			writeJSON(&b.buf, l[1])
			b.buf.WriteByte('}')
		}
		b.buf.WriteByte(']')
	}
	b.buf.WriteString(`,"entry":[`)
	return b
}

func writeJSON(buf *bytes.Buffer, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // strings and plain structs only
	}
	buf.Write(b)
}

// entry appends one entry; resource is raw JSON (may be nil), the other
// parts are marshalled.
func (b *bundleWriter) entry(fullURL string, resource []byte, parts ...any) {
	if b.entries > 0 {
		b.buf.WriteByte(',')
	}
	b.entries++
	b.buf.WriteByte('{')
	sep := false
	if fullURL != "" {
		b.buf.WriteString(`"fullUrl":`)
		writeJSON(&b.buf, fullURL)
		sep = true
	}
	if resource != nil {
		if sep {
			b.buf.WriteByte(',')
		}
		b.buf.WriteString(`"resource":`)
		b.buf.Write(resource)
		sep = true
	}
	for i := 0; i+1 < len(parts); i += 2 {
		if sep {
			b.buf.WriteByte(',')
		}
		writeJSON(&b.buf, parts[i])
		b.buf.WriteByte(':')
		if raw, ok := parts[i+1].(json.RawMessage); ok {
			b.buf.Write(raw)
		} else {
			writeJSON(&b.buf, parts[i+1])
		}
		sep = true
	}
	b.buf.WriteByte('}')
}

func (b *bundleWriter) bytes() []byte {
	b.buf.WriteString("]}")
	return b.buf.Bytes()
}

type entryRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type entryResponse struct {
	Status       string          `json:"status"`
	Location     string          `json:"location,omitempty"`
	ETag         string          `json:"etag,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"`
}

func statusLine(code int) string { return strconv.Itoa(code) + " " + http.StatusText(code) }

// historyEntry is one version in a history bundle.
type historyEntry struct {
	typ, id string
	v       *fhir.Version
}

func (s *Server) writeHistoryEntry(b *bundleWriter, base string, e historyEntry) {
	req := entryRequest{Method: e.v.Kind.Method(), URL: e.typ + "/" + e.id}
	status := http.StatusOK
	switch {
	case e.v.Kind == fhir.KindCreated:
		req.URL = e.typ
		status = http.StatusCreated
	case e.v.Deleted():
		status = http.StatusNoContent
	case e.v.VersionID == 1:
		status = http.StatusCreated
	}
	resp := entryResponse{Status: statusLine(status), ETag: e.v.ETag(), LastModified: fhir.FormatInstant(e.v.LastUpdated)}
	if status == http.StatusCreated {
		resp.Location = e.typ + "/" + e.id + "/_history/" + strconv.FormatUint(e.v.VersionID, 10)
	}
	b.entry(base+"/"+e.typ+"/"+e.id, e.v.JSON, "request", req, "response", resp)
}

// history is GET [type]/[id]/_history, [type]/_history and /_history,
// newest first, paged by _count and an opaque _cursor.
func (s *Server) history(w http.ResponseWriter, r *http.Request, typ, id string) {
	q := r.URL.Query()
	count, cursor, ferr := s.paging(q, "_since")
	if ferr != nil {
		s.fail(w, ferr)
		return
	}
	var since time.Time
	if v := q.Get("_since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			s.fail(w, fhir.Errorf(http.StatusBadRequest, "invalid", "_since must be an instant with a time zone"))
			return
		}
		since = t
	}
	var start uint64 // newest version (instance) or sequence number to include
	if cursor != "" {
		n, err := strconv.ParseUint(cursor, 10, 64)
		if err != nil {
			s.fail(w, fhir.Errorf(http.StatusBadRequest, "invalid", "invalid _cursor"))
			return
		}
		start = n
	}
	var entries []historyEntry
	var next uint64
	total := -1
	if id != "" {
		cur, _, err := current(s.get, typ, id)
		if err != nil {
			s.fail(w, err)
			return
		}
		if cur == nil || (s.opts.Access != nil && !access.FromContext(r.Context()).CanSee(typ, cur.JSON)) {
			s.fail(w, fhir.Errorf(http.StatusNotFound, "not-found", "resource not found"))
			return
		}
		total = int(cur.VersionID)
		if start == 0 || start > cur.VersionID {
			start = cur.VersionID
		}
		vid := start
		for ; vid >= 1 && len(entries) < count; vid-- {
			v, err := version(s.get, typ, id, vid)
			if err != nil {
				s.fail(w, err)
				return
			}
			if v == nil {
				s.fail(w, fhir.ErrBadRecord)
				return
			}
			if v.LastUpdated.Before(since) {
				vid = 0
				break
			}
			entries = append(entries, historyEntry{typ, id, v})
		}
		next = vid
	} else {
		prefix := fhir.SystemHistoryPrefix
		if typ != "" {
			prefix = fhir.TypeHistoryPrefix(typ)
		}
		type ref struct {
			ref string
			vid uint64
		}
		var refs []ref
		var scanErr error
		err := s.st.Scan(fhir.Database, prefix, func(k, v []byte) bool {
			seq := fhir.HistorySeq(k)
			if start != 0 && seq > start {
				return true
			}
			rf, vid, at, err := fhir.DecodeHistoryRef(v)
			if err != nil {
				scanErr = err
				return false
			}
			if at.Before(since) {
				return false
			}
			if len(refs) == count {
				next = seq
				return false
			}
			refs = append(refs, ref{rf, vid})
			return true
		})
		if err == nil {
			err = scanErr
		}
		if err != nil {
			s.fail(w, err)
			return
		}
		for _, rf := range refs {
			t, i := typ, rf.ref
			if typ == "" {
				j := bytes.IndexByte([]byte(rf.ref), '/')
				if j < 0 {
					s.fail(w, fhir.ErrBadRecord)
					return
				}
				t, i = rf.ref[:j], rf.ref[j+1:]
			}
			v, err := version(s.get, t, i, rf.vid)
			if err != nil || v == nil {
				s.fail(w, fhir.ErrBadRecord)
				return
			}
			entries = append(entries, historyEntry{t, i, v})
		}
	}
	base := s.baseURL(r)
	self := base + "/_history"
	switch {
	case id != "":
		self = base + "/" + typ + "/" + id + "/_history"
	case typ != "":
		self = base + "/" + typ + "/_history"
	}
	links := [][2]string{{"self", self + "?" + r.URL.RawQuery}}
	if next != 0 {
		nq := url.Values{"_count": {strconv.Itoa(count)}, "_cursor": {strconv.FormatUint(next, 10)}}
		if !since.IsZero() {
			nq.Set("_since", q.Get("_since"))
		}
		links = append(links, [2]string{"next", self + "?" + nq.Encode()})
	}
	shown := entries[:0]
	for _, e := range entries {
		if s.visibleID(r, e.typ, e.id, e.v.JSON) {
			shown = append(shown, e)
		}
	}
	if len(shown) < len(entries) && id == "" {
		total = -1
	}
	b := newBundle("history", total, links)
	for _, e := range shown {
		s.writeHistoryEntry(b, base, e)
	}
	s.send(w, &response{Status: http.StatusOK, Body: b.bytes()})
}
