package server

import (
	"net/http"
	"strings"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/access"
)

// Authenticator turns a request's credentials into a Principal
// (*access.Verifier). A failure is a 401 *fhir.Error.
type Authenticator interface {
	Authenticate(r *http.Request) (*access.Principal, error)
}

var _ Authenticator = (*access.Verifier)(nil)

// authenticate puts the request's Principal in its context: one already
// there (the node's operator certificate) or one from the bearer token.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if access.FromContext(r.Context()) != nil {
		return r, true
	}
	p, ok := s.principal(w, r)
	if !ok {
		return r, false
	}
	return r.WithContext(access.NewContext(r.Context(), p)), true
}

// principal authenticates the bearer token of r; on failure it answers
// (401 with WWW-Authenticate) and returns false.
func (s *Server) principal(w http.ResponseWriter, r *http.Request) (*access.Principal, bool) {
	p, err := s.opts.Access.Authenticate(r)
	if err != nil {
		fe := fhir.AsError(err)
		if fe.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tandem", error="invalid_token"`)
		}
		s.fail(w, fe)
		return nil, false
	}
	return p, true
}

// interaction names the FHIR interaction of a request (as in AuditEvent
// subtype, restful-interaction) and the SMART letter it needs on typ. An
// empty typ with a letter means "on some type" (system search and
// history); letter 0 means checked elsewhere (bundles: per entry) or not
// clinical data (/metadata).
func interaction(method string, seg []string) (name, typ string, letter byte) {
	switch {
	case len(seg) == 0:
		if method == http.MethodPost {
			return "batch/transaction", "", 0
		}
		return "search-system", "", access.Search
	case seg[0] == "metadata":
		return "capabilities", "", 0
	case seg[0] == "_history":
		return "history-system", "", access.Search
	case strings.HasPrefix(seg[0], "_") || strings.HasPrefix(seg[0], "$"):
		return "operation", "", access.Search
	}
	typ = seg[0]
	switch len(seg) {
	case 1:
		if method == http.MethodPost {
			return "create", typ, access.Create
		}
		return "search-type", typ, access.Search
	case 2:
		switch {
		case seg[1] == "_history":
			return "history-type", typ, access.Search
		case seg[1] == "_search":
			return "search-type", typ, access.Search
		case strings.HasPrefix(seg[1], "$"):
			return "operation", typ, access.Search
		}
		switch method {
		case http.MethodPut, http.MethodPatch:
			return "update", typ, access.Update
		case http.MethodDelete:
			return "delete", typ, access.Delete
		}
		return "read", typ, access.Read
	case 3:
		if seg[2] == "_history" {
			return "history-instance", typ, access.Read
		}
		return "operation", typ, access.Read // [type]/[id]/$everything and the like
	}
	return "vread", typ, access.Read
}

// allow checks, before any work, that the request's Principal may perform
// letter on typ (on some type when typ is "").
func (s *Server) allow(r *http.Request, typ string, letter byte) *fhir.Error {
	if s.opts.Access == nil || letter == 0 {
		return nil
	}
	p := access.FromContext(r.Context())
	if p == nil {
		return access.Unauthorized("a bearer token is required")
	}
	if typ == "" {
		if p.AllowsAny(letter) {
			return nil
		}
		return access.Forbidden("the token's scopes do not allow this interaction")
	}
	if p.Allows(typ, letter) {
		return nil
	}
	return access.Forbidden("the token's scopes do not allow '" + string(letter) + "' on " + typ)
}

// guard is the per-resource check of a write, run inside the sequencer
// Write on the resource as stored (old) and as it will be (new): with a
// patient/ scope both must be in the token's compartment.
func (s *Server) guardFor(p *access.Principal) func(typ string, letter byte, body []byte) error {
	return func(typ string, letter byte, body []byte) error {
		if p == nil || !p.Permits(typ, letter, body) {
			return access.Forbidden("the token may not change this " + typ + " (outside its patient compartment or scopes)")
		}
		return nil
	}
}

// notVisible is the answer when a resource exists but the token may not
// see it: the same as when it does not exist, so existence does not leak.
func notVisible() *fhir.Error {
	return fhir.Errorf(http.StatusNotFound, "not-found", "resource not found")
}
