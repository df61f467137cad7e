package access

import (
	"context"
	"strings"
	"time"
)

// AdminScope grants the admin API and search of the audit store. It does
// not by itself grant access to clinical data.
const AdminScope = "system/tandem.admin"

// Permission letters of SMART v2 scopes, one per kind of interaction.
const (
	Create byte = 'c'
	Read   byte = 'r'
	Update byte = 'u'
	Delete byte = 'd'
	Search byte = 's'
)

// Scope contexts.
const (
	ContextPatient = "patient"
	ContextUser    = "user"
	ContextSystem  = "system"
)

// Scope is one parsed SMART resource scope.
type Scope struct {
	Context string // patient, user or system
	Type    string // a resource type or "*"
	Perms   string // a subset of "cruds", in that order
}

// String renders s in v2 form.
func (s Scope) String() string { return s.Context + "/" + s.Type + "." + s.Perms }

// Has reports whether s grants letter on typ.
func (s Scope) Has(typ string, letter byte) bool {
	return (s.Type == "*" || s.Type == typ) && strings.IndexByte(s.Perms, letter) >= 0
}

// ParseScope parses one SMART resource scope (v2 letters or v1
// read/write/*). Other scopes (openid, launch, AdminScope, scopes with a
// query) are not resource scopes: ok is false.
func ParseScope(s string) (sc Scope, ok bool) {
	ctx, rest, found := strings.Cut(s, "/")
	if !found || strings.ContainsAny(rest, "?/") {
		return Scope{}, false
	}
	switch ctx {
	case ContextPatient, ContextUser, ContextSystem:
	default:
		return Scope{}, false
	}
	typ, perms, found := strings.Cut(rest, ".")
	if !found || typ == "" || (typ != "*" && !isTypeName(typ)) {
		return Scope{}, false
	}
	switch perms {
	case "read":
		perms = "rs"
	case "write":
		perms = "cud"
	case "*":
		perms = "cruds"
	default:
		// v2: letters in the order c r u d s, each at most once.
		const order = "cruds"
		j := 0
		for i := 0; i < len(perms); i++ {
			k := strings.IndexByte(order[j:], perms[i])
			if k < 0 {
				return Scope{}, false
			}
			j += k + 1
		}
		if perms == "" {
			return Scope{}, false
		}
	}
	return Scope{Context: ctx, Type: typ, Perms: perms}, true
}

func isTypeName(s string) bool {
	if s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Principal is who a request acts for, as its token (or the operator's
// client certificate) says.
type Principal struct {
	Subject  string // sub
	ClientID string // client_id or azp
	Patient  string // the patient context claim: a Patient id, or ""
	Scopes   []Scope
	Admin    bool      // AdminScope was granted
	Expires  time.Time // exp of the token; zero for the operator
}

// Allows reports whether p may perform an interaction of kind letter on
// typ at all (before looking at any resource). A patient/ scope counts only
// when p has a patient context.
func (p *Principal) Allows(typ string, letter byte) bool {
	for _, s := range p.Scopes {
		if s.Has(typ, letter) && (s.Context != ContextPatient || p.Patient != "") {
			return true
		}
	}
	return false
}

// AllowsAny reports whether p may perform letter on some type (system
// history and system search, filtered per resource afterwards).
func (p *Principal) AllowsAny(letter byte) bool {
	for _, s := range p.Scopes {
		if strings.IndexByte(s.Perms, letter) >= 0 && (s.Context != ContextPatient || p.Patient != "") {
			return true
		}
	}
	return false
}

// Permits reports whether p may perform letter on the resource body of
// type typ: a user/ or system/ scope on the type suffices; a patient/ scope
// needs the resource in p's patient compartment. body may be nil (a
// deleted version): then only user/ and system/ scopes permit it.
func (p *Principal) Permits(typ string, letter byte, body []byte) bool {
	compartment := false
	for _, s := range p.Scopes {
		if !s.Has(typ, letter) {
			continue
		}
		if s.Context != ContextPatient {
			return true
		}
		compartment = compartment || p.Patient != ""
	}
	return compartment && body != nil && InCompartment(typ, body, p.Patient)
}

// CanSee reports whether a resource may leave the server for p: read or
// search permission on its type, and the compartment for patient scopes.
func (p *Principal) CanSee(typ string, body []byte) bool {
	return p.Permits(typ, Read, body) || p.Permits(typ, Search, body)
}

// PatientLimited reports whether p sees typ only through patient/ scopes
// (so every resource it touches must be in its compartment).
func (p *Principal) PatientLimited(typ string) bool {
	for _, s := range p.Scopes {
		if s.Context != ContextPatient && (s.Type == "*" || s.Type == typ) {
			return false
		}
	}
	return true
}

type ctxKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the Principal in ctx, or nil.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(ctxKey{}).(*Principal)
	return p
}

// Operator is the Principal of the operator's client certificate: every
// permission on every type, and admin.
func Operator(subject string) *Principal {
	return &Principal{Subject: subject, ClientID: "operator-certificate", Admin: true,
		Scopes: []Scope{{Context: ContextSystem, Type: "*", Perms: "cruds"}}}
}
