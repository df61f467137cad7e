package server

import (
	"net/http"

	"github.com/tandemhealth/tandem/fhir/access"
)

// visible reports whether the request may see one stored resource (its
// final JSON). Every resource body that leaves the server — read, vread,
// history, search matches, _include, _revinclude, $everything, bundle
// entries — passes through here, so access rules (SMART scopes, the patient
// compartment) are enforced in one place. A resource that is visible is
// also recorded in the request's AuditEvent. Without Options.Access every
// resource is visible.
func (s *Server) visible(r *http.Request, typ string, body []byte) bool {
	return s.visibleID(r, typ, "", body)
}

// visibleID is visible for a resource whose id is known (a deleted
// version has no body to read it from).
func (s *Server) visibleID(r *http.Request, typ, id string, body []byte) bool {
	if s.opts.Access != nil {
		p := access.FromContext(r.Context())
		if p == nil || !p.CanSee(typ, body) {
			return false
		}
	}
	if rec := auditFrom(r.Context()); rec != nil {
		rec.saw(typ, id, body)
	}
	return true
}
