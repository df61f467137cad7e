package configsync

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"sync"

	"github.com/tandemhealth/tandem/mirror/statefile"
)

// SystemDatabase is the mirrored database that holds the desired state.
const SystemDatabase = "system"

// DesiredKey is the key of a category's desired document in the system database.
func DesiredKey(category string) []byte { return []byte("configsync/desired/" + category) }

// Getter reads the mirrored system database (store.Store satisfies it).
type Getter interface {
	Get(db string, key []byte) ([]byte, bool, error)
}

// State is one document per category.
type State map[string]Document

// ReadDesired reads every category's desired document; a category never
// set is version 0 with an empty document.
func ReadDesired(g Getter) (State, error) {
	st := State{}
	for _, c := range Categories {
		v, ok, err := g.Get(SystemDatabase, DesiredKey(c))
		if err != nil {
			return nil, fmt.Errorf("configsync: read desired %s: %w", c, err)
		}
		d := Document{Category: c}
		if ok {
			if err := json.Unmarshal(v, &d); err != nil {
				return nil, fmt.Errorf("%w: desired %s in the system database: %v", ErrBadDocument, c, err)
			}
		}
		st[c] = d
	}
	return st, nil
}

// Digests returns the digest of every category of st.
func (st State) Digests() (map[string]string, error) {
	out := map[string]string{}
	for _, c := range Categories {
		d, err := Digest(c, st[c].Doc)
		if err != nil {
			return nil, err
		}
		out[c] = d
	}
	return out, nil
}

// Local is a member's effective state: one checksummed file under its data
// directory, replaced atomically (never mirrored).
type Local struct {
	path string
	mu   sync.Mutex
	st   State
}

// OpenLocal opens (or creates empty) the effective state under dir.
func OpenLocal(dir string) (*Local, error) {
	l := &Local{path: filepath.Join(dir, "effective.json"), st: State{}}
	var st State
	switch err := statefile.Load(l.path, &st); {
	case errors.Is(err, statefile.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("configsync: effective state: %w", err)
	default:
		l.st = st
	}
	for _, c := range Categories {
		if _, ok := l.st[c]; !ok {
			l.st[c] = Document{Category: c}
		}
	}
	return l, nil
}

// State returns a copy of the effective state.
func (l *Local) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := State{}
	for k, v := range l.st {
		out[k] = v
	}
	return out
}

// Host is what a member can actually load, checked before a category is
// applied. A nil field is not checked.
type Host struct {
	// CAFingerprint is the SHA-256 (hex) of the CA this member trusts.
	CAFingerprint string
}

// CategoryResult is the outcome of Apply for one category.
type CategoryResult struct {
	Category   string `json:"category"`
	Result     string `json:"result"` // unchanged, applied, failed, skipped
	FromDigest string `json:"from_digest"`
	ToDigest   string `json:"to_digest"`
	Version    uint64 `json:"version"`
	Error      string `json:"error,omitempty"`
}

// Apply makes the effective state equal to desired, category by category,
// in one durable replacement of the file. A category this host cannot load
// is left as it was and reported failed; the others are applied. Applying
// twice changes nothing the second time.
func (l *Local) Apply(desired State, h Host) ([]CategoryResult, error) {
	return l.ApplyOnly(desired, h, nil)
}

// ApplyOnly is Apply restricted to the categories in only (every category
// when only is empty); the others are left as they are and reported
// "skipped". A workflow uses it to repair one category of a member while
// another waits for an approval.
func (l *Local) ApplyOnly(desired State, h Host, only []string) ([]CategoryResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := State{}
	for k, v := range l.st {
		next[k] = v
	}
	var out []CategoryResult
	changed := false
	for _, c := range Categories {
		from, err := Digest(c, l.st[c].Doc)
		if err != nil {
			return nil, err
		}
		to, err := Digest(c, desired[c].Doc)
		if err != nil {
			return nil, err
		}
		r := CategoryResult{Category: c, FromDigest: from, ToDigest: to, Version: desired[c].Version}
		switch {
		case len(only) > 0 && !slices.Contains(only, c):
			r.Result = "skipped"
		case from == to:
			r.Result = "unchanged"
			if l.st[c].Version != desired[c].Version {
				next[c] = desired[c]
				changed = true
			}
		default:
			if err := h.check(c, desired[c].Doc); err != nil {
				r.Result, r.Error = "failed", err.Error()
			} else {
				r.Result = "applied"
				next[c] = desired[c]
				changed = true
			}
		}
		out = append(out, r)
	}
	if changed {
		if err := statefile.Save(l.path, next); err != nil {
			return nil, fmt.Errorf("configsync: save effective state: %w", err)
		}
		l.st = next
	}
	return out, nil
}

// Check reports, per category, what this host could not load of desired;
// categories it could load are absent. It changes nothing.
func (h Host) Check(desired State) map[string]string {
	out := map[string]string{}
	for _, c := range Categories {
		if err := h.check(c, desired[c].Doc); err != nil {
			out[c] = err.Error()
		}
	}
	return out
}

func (h Host) check(category string, doc json.RawMessage) error {
	if category != Security || len(doc) == 0 {
		return nil
	}
	var s SecuritySettings
	if err := json.Unmarshal(doc, &s); err != nil {
		return fmt.Errorf("%w: security: %v", ErrBadDocument, err)
	}
	if s.TLS.CAFingerprint != "" && h.CAFingerprint != "" && s.TLS.CAFingerprint != h.CAFingerprint {
		return fmt.Errorf("security: tls.ca_fingerprint %s… is not this member's CA (%s…): it cannot load this TLS setting; install that CA or correct the desired state",
			s.TLS.CAFingerprint[:12], h.CAFingerprint[:min(12, len(h.CAFingerprint))])
	}
	return nil
}

// CategoryDiff is one category of Diff.
type CategoryDiff struct {
	Category         string   `json:"category"`
	Aligned          bool     `json:"aligned"`
	DesiredVersion   uint64   `json:"desired_version"`
	DesiredDigest    string   `json:"desired_digest"`
	EffectiveVersion uint64   `json:"effective_version"`
	EffectiveDigest  string   `json:"effective_digest"`
	Changes          []string `json:"changes,omitempty"` // what apply would change; no secrets
}

// Diff compares effective with desired, category by category.
func Diff(desired, effective State) ([]CategoryDiff, error) {
	var out []CategoryDiff
	for _, c := range Categories {
		dd, err := Digest(c, desired[c].Doc)
		if err != nil {
			return nil, err
		}
		ed, err := Digest(c, effective[c].Doc)
		if err != nil {
			return nil, err
		}
		d := CategoryDiff{Category: c, Aligned: dd == ed, DesiredVersion: desired[c].Version, DesiredDigest: dd,
			EffectiveVersion: effective[c].Version, EffectiveDigest: ed}
		if !d.Aligned {
			d.Changes = changes(c, desired[c].Doc, effective[c].Doc)
		}
		out = append(out, d)
	}
	return out, nil
}

// changes lists item by item what differs, by name only: never a secret.
func changes(category string, desired, effective json.RawMessage) []string {
	items := func(doc json.RawMessage) map[string]string {
		m := map[string]string{}
		c, err := Canonical(category, doc)
		if err != nil {
			return m
		}
		var list []map[string]any
		if json.Unmarshal(c, &list) != nil {
			m["settings"] = string(c)
			return m
		}
		for _, it := range list {
			b, _ := json.Marshal(it)
			m[fmt.Sprint(it["name"])] = string(b)
		}
		return m
	}
	want, have := items(desired), items(effective)
	var out []string
	kind := map[string]string{Users: "user", Roles: "role", Security: "security"}[category]
	for name, w := range want {
		h, ok := have[name]
		switch {
		case !ok && category == Security:
			out = append(out, "settings differ")
		case !ok:
			out = append(out, fmt.Sprintf("%s %s: missing here", kind, name))
		case h != w && category == Users:
			out = append(out, userChange(name, w, h))
		case h != w:
			out = append(out, fmt.Sprintf("%s %s: differs", kind, name))
		}
	}
	for name := range have {
		if _, ok := want[name]; !ok && category != Security {
			out = append(out, fmt.Sprintf("%s %s: here but not desired (would be removed)", kind, name))
		}
	}
	sort.Strings(out)
	return out
}

func userChange(name, want, have string) string {
	var w, h User
	json.Unmarshal([]byte(want), &w)
	json.Unmarshal([]byte(have), &h)
	var what []string
	if w.Enabled != h.Enabled {
		what = append(what, fmt.Sprintf("enabled %v here, %v desired", h.Enabled, w.Enabled))
	}
	if w.PasswordHash != h.PasswordHash {
		what = append(what, "password differs")
	}
	if fmt.Sprint(w.Roles) != fmt.Sprint(h.Roles) {
		what = append(what, fmt.Sprintf("roles %v here, %v desired", h.Roles, w.Roles))
	}
	if fmt.Sprint(w.Clients) != fmt.Sprint(h.Clients) {
		what = append(what, "api clients differ")
	}
	if len(what) == 0 {
		what = append(what, "differs")
	}
	s := "user " + name + ": " + what[0]
	for _, x := range what[1:] {
		s += "; " + x
	}
	return s
}
