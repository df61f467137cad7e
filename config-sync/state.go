package configsync

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// The categories, in the order they are shown.
const (
	Users    = "users"
	Roles    = "roles"
	Security = "security"
)

// Categories lists every category of state config-sync keeps aligned.
var Categories = []string{Users, Roles, Security}

// ErrBadDocument means a document does not parse or fails validation.
var ErrBadDocument = errors.New("configsync: bad document")

// ErrUnknownCategory means a category name config-sync does not know.
var ErrUnknownCategory = errors.New("configsync: unknown category (users, roles or security)")

// User is one person or service account that may log in.
type User struct {
	Name string `json:"name"`
	// Password is accepted only on input and replaced by PasswordHash
	// (bcrypt) before the document is stored; it is never stored.
	Password     string      `json:"password,omitempty"`
	PasswordHash string      `json:"password_hash,omitempty"`
	Enabled      bool        `json:"enabled"`
	Roles        []string    `json:"roles,omitempty"`
	Clients      []APIClient `json:"api_clients,omitempty"`
}

// APIClient is a machine client of a user (client credentials).
type APIClient struct {
	ID           string `json:"id"`
	Secret       string `json:"secret,omitempty"` // input only, like User.Password
	SecretHash   string `json:"secret_hash,omitempty"`
	Enabled      bool   `json:"enabled"`
	AllowedScope string `json:"allowed_scope,omitempty"`
}

// Role grants SMART-style scopes (e.g. "patient/*.rs", "user/Observation.cruds")
// and admin rights (e.g. "config", "failover").
type Role struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes,omitempty"`
	Admin  []string `json:"admin,omitempty"`
}

// SecuritySettings are the tier's security settings.
type SecuritySettings struct {
	PasswordPolicy PasswordPolicy `json:"password_policy"`
	// SessionLifetimeSeconds bounds a login session; 0 means the default (8 h).
	SessionLifetimeSeconds int   `json:"session_lifetime_seconds,omitempty"`
	Audit                  Audit `json:"audit"`
	TLS                    TLS   `json:"tls"`
}

// PasswordPolicy says what a password must be.
type PasswordPolicy struct {
	MinLength     int  `json:"min_length,omitempty"`
	RequireDigit  bool `json:"require_digit,omitempty"`
	RequireSymbol bool `json:"require_symbol,omitempty"`
	MaxAgeDays    int  `json:"max_age_days,omitempty"`
}

// Audit settings.
type Audit struct {
	// ReadWindowMillis bounds how long a read's AuditEvent may wait for its
	// group commit (DESIGN §4: at most 1000).
	ReadWindowMillis int  `json:"read_window_ms,omitempty"`
	LogReads         bool `json:"log_reads,omitempty"`
}

// TLS settings. CAFingerprint (SHA-256 of the CA certificate, hex) must be
// the CA the member actually trusts: a member whose CA differs cannot apply
// it. CertFile and KeyFile are host-specific and left out of the digest.
type TLS struct {
	MinVersion    string `json:"min_version,omitempty"` // "1.2" or "1.3"
	CAFingerprint string `json:"ca_fingerprint,omitempty"`
	CertFile      string `json:"cert_file,omitempty"`
	KeyFile       string `json:"key_file,omitempty"`
}

var (
	nameRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$`)
	scopeRe = regexp.MustCompile(`^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|[cruds]+)$`)
	hexRe   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Document is the desired or effective state of one category, versioned.
type Document struct {
	Category string          `json:"category"`
	Version  uint64          `json:"version"`
	Doc      json.RawMessage `json:"doc"`
}

// Prepare parses a category document sent by an operator, validates it,
// hashes any clear-text password or secret (bcrypt) and returns the document
// as stored. Entries are sorted by name.
func Prepare(category string, raw []byte) (json.RawMessage, error) {
	switch category {
	case Users:
		var us []User
		if err := strictUnmarshal(raw, &us); err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for i := range us {
			u := &us[i]
			if !nameRe.MatchString(u.Name) {
				return nil, fmt.Errorf("%w: users[%d].name %q must be 1-128 of A-Z a-z 0-9 . _ @ -", ErrBadDocument, i, u.Name)
			}
			if seen[u.Name] {
				return nil, fmt.Errorf("%w: user %q is listed twice", ErrBadDocument, u.Name)
			}
			seen[u.Name] = true
			if u.Password != "" {
				h, err := bcrypt.GenerateFromPassword([]byte(u.Password), bcrypt.DefaultCost)
				if err != nil {
					return nil, fmt.Errorf("%w: user %q: password: %v", ErrBadDocument, u.Name, err)
				}
				u.PasswordHash, u.Password = string(h), ""
			}
			if u.PasswordHash != "" {
				if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
					return nil, fmt.Errorf("%w: user %q: password_hash is not a bcrypt hash", ErrBadDocument, u.Name)
				}
			}
			for j := range u.Clients {
				c := &u.Clients[j]
				if !nameRe.MatchString(c.ID) {
					return nil, fmt.Errorf("%w: user %q: api_clients[%d].id %q is not a valid id", ErrBadDocument, u.Name, j, c.ID)
				}
				if c.Secret != "" {
					h, err := bcrypt.GenerateFromPassword([]byte(c.Secret), bcrypt.DefaultCost)
					if err != nil {
						return nil, fmt.Errorf("%w: client %q: secret: %v", ErrBadDocument, c.ID, err)
					}
					c.SecretHash, c.Secret = string(h), ""
				}
			}
			u.Roles = sortedUnique(u.Roles)
			sort.Slice(u.Clients, func(a, b int) bool { return u.Clients[a].ID < u.Clients[b].ID })
		}
		sort.Slice(us, func(a, b int) bool { return us[a].Name < us[b].Name })
		return json.Marshal(nonNil(us))
	case Roles:
		var rs []Role
		if err := strictUnmarshal(raw, &rs); err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for i := range rs {
			r := &rs[i]
			if !nameRe.MatchString(r.Name) {
				return nil, fmt.Errorf("%w: roles[%d].name %q is not a valid name", ErrBadDocument, i, r.Name)
			}
			if seen[r.Name] {
				return nil, fmt.Errorf("%w: role %q is listed twice", ErrBadDocument, r.Name)
			}
			seen[r.Name] = true
			for _, s := range r.Scopes {
				if !scopeRe.MatchString(s) {
					return nil, fmt.Errorf("%w: role %q: scope %q is not a SMART v2 scope (e.g. patient/Observation.rs)", ErrBadDocument, r.Name, s)
				}
			}
			r.Scopes, r.Admin = sortedUnique(r.Scopes), sortedUnique(r.Admin)
		}
		sort.Slice(rs, func(a, b int) bool { return rs[a].Name < rs[b].Name })
		return json.Marshal(nonNil(rs))
	case Security:
		var s SecuritySettings
		if err := strictUnmarshal(raw, &s); err != nil {
			return nil, err
		}
		switch s.TLS.MinVersion {
		case "", "1.2", "1.3":
		default:
			return nil, fmt.Errorf("%w: tls.min_version %q must be 1.2 or 1.3", ErrBadDocument, s.TLS.MinVersion)
		}
		s.TLS.CAFingerprint = strings.ToLower(strings.ReplaceAll(s.TLS.CAFingerprint, ":", ""))
		if s.TLS.CAFingerprint != "" && !hexRe.MatchString(s.TLS.CAFingerprint) {
			return nil, fmt.Errorf("%w: tls.ca_fingerprint must be the SHA-256 of the CA certificate (64 hex digits)", ErrBadDocument)
		}
		if s.Audit.ReadWindowMillis < 0 || s.Audit.ReadWindowMillis > 1000 {
			return nil, fmt.Errorf("%w: audit.read_window_ms %d must be 0..1000", ErrBadDocument, s.Audit.ReadWindowMillis)
		}
		if s.SessionLifetimeSeconds < 0 || s.PasswordPolicy.MinLength < 0 || s.PasswordPolicy.MaxAgeDays < 0 {
			return nil, fmt.Errorf("%w: negative numbers are not allowed", ErrBadDocument)
		}
		return json.Marshal(s)
	}
	return nil, ErrUnknownCategory
}

// Canonical returns the canonical form of a stored category document: host-
// specific fields dropped, secrets reduced to a SHA-256 of their hash, lists
// sorted. An empty doc is the empty state of its category.
func Canonical(category string, doc json.RawMessage) ([]byte, error) {
	if len(doc) == 0 || string(doc) == "null" {
		switch category {
		case Users, Roles:
			doc = json.RawMessage("[]")
		case Security:
			doc = json.RawMessage("{}")
		default:
			return nil, ErrUnknownCategory
		}
	}
	switch category {
	case Users:
		var us []User
		if err := json.Unmarshal(doc, &us); err != nil {
			return nil, fmt.Errorf("%w: users: %v", ErrBadDocument, err)
		}
		for i := range us {
			u := &us[i]
			u.Password, u.PasswordHash = "", secretDigest(u.PasswordHash)
			u.Roles = sortedUnique(u.Roles)
			for j := range u.Clients {
				c := &u.Clients[j]
				c.Secret, c.SecretHash = "", secretDigest(c.SecretHash)
			}
			sort.Slice(u.Clients, func(a, b int) bool { return u.Clients[a].ID < u.Clients[b].ID })
		}
		sort.Slice(us, func(a, b int) bool { return us[a].Name < us[b].Name })
		return json.Marshal(nonNil(us))
	case Roles:
		var rs []Role
		if err := json.Unmarshal(doc, &rs); err != nil {
			return nil, fmt.Errorf("%w: roles: %v", ErrBadDocument, err)
		}
		for i := range rs {
			rs[i].Scopes, rs[i].Admin = sortedUnique(rs[i].Scopes), sortedUnique(rs[i].Admin)
		}
		sort.Slice(rs, func(a, b int) bool { return rs[a].Name < rs[b].Name })
		return json.Marshal(nonNil(rs))
	case Security:
		var s SecuritySettings
		if err := json.Unmarshal(doc, &s); err != nil {
			return nil, fmt.Errorf("%w: security: %v", ErrBadDocument, err)
		}
		s.TLS.CertFile, s.TLS.KeyFile = "", "" // host-specific
		return json.Marshal(s)
	}
	return nil, ErrUnknownCategory
}

// Digest is the hex SHA-256 of a document's canonical form.
func Digest(category string, doc json.RawMessage) (string, error) {
	c, err := Canonical(category, doc)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

func secretDigest(h string) string {
	if h == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(h))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func sortedUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	sort.Strings(out)
	return slices.Compact(out)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func strictUnmarshal(raw []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadDocument, err)
	}
	return nil
}

// KnownCategory reports whether c is a category name.
func KnownCategory(c string) bool { return slices.Contains(Categories, c) }
