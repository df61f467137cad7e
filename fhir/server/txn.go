package server

import (
	"encoding/binary"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/access"
	"github.com/tandemhealth/tandem/fhir/search"
	"github.com/tandemhealth/tandem/mirror/journal"
)

// getter reads the state a write sees (sequencer.View) or the applied state.
type getter interface {
	Get(key []byte) ([]byte, bool, error)
	// Scan calls fn for each key under prefix, in key order, until it
	// returns false.
	Scan(prefix []byte, fn func(key, value []byte) bool) error
}

// txn collects the operations of one sequencer Write and reads through them,
// so later steps of a transaction bundle see earlier ones.
type txn struct {
	v       getter
	now     time.Time
	pending map[string][]byte // nil value = delete
	reads   map[string]read   // what get found in the view, by key
	order   []string
	seq     uint64
	seqRead bool
	touched map[string]bool  // Type/id written in this txn
	idKeys  []string         // identifier-index keys set or deleted in this txn
	reg     *search.Registry // search parameters to index; nil: no search index

	// guard, when set, checks each resource a write touches (access rules).
	guard func(typ string, letter byte, body []byte) error
	// audit: keep the patient index (x/p/) and list what was written.
	audit   bool
	written []auditEntity
}

// read is a key's value in the view, or its absence (ok false).
type read struct {
	val []byte
	ok  bool
}

func newTxn(v getter, now time.Time) *txn {
	return &txn{v: v, now: now, pending: map[string][]byte{}, reads: map[string]read{}, touched: map[string]bool{}}
}

// get reads key as this transaction sees it: its own writes first, then
// the view. The view cannot change under a transaction (it runs under the
// sequencer's lock, and records sequenced earlier are in the view's
// overlay), so a key read twice (a create checks its id is free, then
// writes it) is looked up in the store once.
func (t *txn) get(key []byte) ([]byte, bool, error) {
	if val, ok := t.pending[string(key)]; ok {
		return val, val != nil, nil
	}
	if r, ok := t.reads[string(key)]; ok {
		return r.val, r.ok, nil
	}
	val, ok, err := t.v.Get(key)
	if err == nil {
		t.reads[string(key)] = read{val, ok}
	}
	return val, ok, err
}

func (t *txn) set(key, val []byte) {
	if val == nil {
		val = []byte{}
	}
	if _, ok := t.pending[string(key)]; !ok {
		t.order = append(t.order, string(key))
	}
	t.pending[string(key)] = val
}

func (t *txn) del(key []byte) {
	if _, ok := t.pending[string(key)]; !ok {
		t.order = append(t.order, string(key))
	}
	t.pending[string(key)] = nil
}

func (t *txn) empty() bool { return len(t.order) == 0 }

func (t *txn) nextSeq() (uint64, error) {
	if !t.seqRead {
		b, ok, err := t.v.Get(fhir.SeqKey)
		if err != nil {
			return 0, err
		}
		if ok && len(b) == 8 {
			t.seq = binary.BigEndian.Uint64(b)
		}
		t.seqRead = true
	}
	t.seq++
	t.set(fhir.SeqKey, binary.BigEndian.AppendUint64(nil, t.seq))
	return t.seq, nil
}

// ops returns the journal operations, in first-touch order, or a 413
// Error when they would not fit in one journal record.
func (t *txn) ops() ([]journal.Op, error) {
	ops := make([]journal.Op, 0, len(t.order))
	size := 5
	for _, k := range t.order {
		size += 9 + len(k) + len(t.pending[k])
		v := t.pending[k]
		if v == nil {
			ops = append(ops, journal.Op{Kind: journal.OpDelete, Key: []byte(k)})
		} else {
			ops = append(ops, journal.Op{Kind: journal.OpSet, Key: []byte(k), Value: v})
		}
	}
	if size > journal.MaxPayload {
		return nil, fhir.Errorf(http.StatusRequestEntityTooLarge, "too-long", "the change does not fit in one journal record")
	}
	return ops, nil
}

// current returns the current version of Type/id (a tombstone included)
// and its stored record, or nil.
func current(g func([]byte) ([]byte, bool, error), typ, id string) (*fhir.Version, []byte, error) {
	b, ok, err := g(fhir.CurrentKey(typ, id))
	if err != nil || !ok {
		return nil, nil, err
	}
	v, err := fhir.DecodeVersion(b)
	return v, b, err
}

// version returns version vid of Type/id, or nil. The current version is
// looked at first: versions only ever move from current to history.
func version(g func([]byte) ([]byte, bool, error), typ, id string, vid uint64) (*fhir.Version, error) {
	cur, _, err := current(g, typ, id)
	if err != nil || cur == nil {
		return nil, err
	}
	if cur.VersionID == vid {
		return cur, nil
	}
	if vid > cur.VersionID {
		return nil, nil
	}
	b, ok, err := g(fhir.VersionKey(typ, id, vid))
	if err != nil || !ok {
		return nil, err
	}
	return fhir.DecodeVersion(b)
}

// guardWrite applies the access guard to a write: c on a new resource, u
// on the old and the new version of an update, d on the deleted one.
func (t *txn) guardWrite(typ string, kind fhir.Kind, cur, nv *fhir.Version) error {
	live := cur != nil && !cur.Deleted()
	switch kind {
	case fhir.KindCreated:
		return t.guard(typ, access.Create, nv.JSON)
	case fhir.KindDeleted:
		if live {
			return t.guard(typ, access.Delete, cur.JSON)
		}
		return nil
	}
	if live {
		if err := t.guard(typ, access.Update, cur.JSON); err != nil {
			return err
		}
	}
	return t.guard(typ, access.Update, nv.JSON)
}

// precondition is an If-Match: a version id, or any existing version
// ("*"); or an If-None-Match "*" on an update: no live version may exist
// (create only; a deleted resource may be created again).
type precondition struct {
	set  bool
	any  bool
	vid  uint64
	none bool
}

// parseIfNoneMatch reads the If-None-Match header of an update: only "*".
func parseIfNoneMatch(h string, pre precondition) (precondition, *fhir.Error) {
	switch strings.TrimSpace(h) {
	case "":
		return pre, nil
	case "*":
		if pre.set {
			return pre, fhir.Errorf(http.StatusBadRequest, "invalid", "If-None-Match and If-Match together: send one")
		}
		return precondition{none: true}, nil
	}
	return pre, fhir.Errorf(http.StatusBadRequest, "invalid", `If-None-Match on an update must be "*" (create only if the resource does not exist)`)
}

func parseIfMatch(h, expr string) (precondition, *fhir.Error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return precondition{}, nil
	}
	if h == "*" {
		return precondition{set: true, any: true}, nil
	}
	s := strings.TrimPrefix(h, "W/")
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	vid, err := fhir.ParseVersionID(s)
	if err != nil {
		return precondition{}, fhir.Errorf(http.StatusBadRequest, "invalid", `If-Match must be a version ETag like W/"3"`, expr)
	}
	return precondition{set: true, vid: vid}, nil
}

func (p precondition) check(cur *fhir.Version) *fhir.Error {
	if p.none {
		if cur != nil && !cur.Deleted() {
			return fhir.Errorf(http.StatusPreconditionFailed, "conflict", "If-None-Match: the resource exists (version "+strconv.FormatUint(cur.VersionID, 10)+")")
		}
		return nil
	}
	if !p.set {
		return nil
	}
	if cur == nil || (p.any && cur.Deleted()) {
		return fhir.Errorf(http.StatusPreconditionFailed, "conflict", "If-Match: the resource does not exist")
	}
	if !p.any && cur.VersionID != p.vid {
		return fhir.Errorf(http.StatusPreconditionFailed, "conflict", "If-Match: version "+strconv.FormatUint(p.vid, 10)+" is not the current version")
	}
	return nil
}

// write stores a new version of Type/id: res, or a tombstone when res is
// nil. The superseded version moves to history; history and identifier
// indexes follow.
func (t *txn) write(typ, id string, kind fhir.Kind, res *fhir.Resource, pre precondition) (*fhir.Version, *fhir.Version, error) {
	ref := typ + "/" + id
	if t.touched[ref] {
		return nil, nil, fhir.Errorf(http.StatusBadRequest, "invalid", "a transaction may change a resource only once")
	}
	cur, curRaw, err := current(t.get, typ, id)
	if err != nil {
		return nil, nil, err
	}
	if ferr := pre.check(cur); ferr != nil {
		return nil, nil, ferr
	}
	t.touched[ref] = true
	vid := uint64(1)
	if cur != nil {
		vid = cur.VersionID + 1
	}
	seq, err := t.nextSeq()
	if err != nil {
		return nil, nil, err
	}
	nv := &fhir.Version{Kind: kind, VersionID: vid, LastUpdated: t.now, Seq: seq}
	if res != nil {
		nv.JSON = res.Encode(id, vid, t.now)
	}
	if t.guard != nil {
		if err := t.guardWrite(typ, kind, cur, nv); err != nil {
			return nil, nil, err
		}
	}
	if t.audit {
		e := auditEntity{typ: typ, id: id, known: true}
		if nv.JSON != nil {
			e.patients = access.Patients(typ, nv.JSON)
			t.set(patientsOfKey(typ, id), []byte(strings.Join(e.patients, ",")))
		} else if cur != nil && cur.JSON != nil {
			e.patients = access.Patients(typ, cur.JSON)
		}
		t.written = append(t.written, e)
	}
	if cur != nil {
		t.set(fhir.VersionKey(typ, id, cur.VersionID), curRaw)
	}
	t.set(fhir.CurrentKey(typ, id), fhir.EncodeVersion(nv))
	t.set(fhir.SystemHistoryKey(seq), fhir.HistoryRef(typ, id, vid, t.now))
	t.set(fhir.TypeHistoryKey(typ, seq), fhir.TypeHistoryRef(id, vid, t.now))

	var oldIDs, newIDs []fhir.Identifier
	if cur != nil {
		oldIDs = fhir.IdentifiersOf(cur.JSON)
	}
	if res != nil {
		newIDs = res.Identifiers()
	}
	if err := t.reindex(typ, id, oldIDs, newIDs); err != nil {
		return nil, nil, err
	}
	if err := t.indexVersion(typ, id, nv); err != nil {
		return nil, nil, err
	}
	return nv, cur, nil
}

// reindex moves the identifier index of Type/id from the identifiers old
// to new: one entry per (identifier, resource), so the cost of a write
// does not grow with how many resources share an identifier. A dropped
// identifier also leaves the legacy list of a store written before
// (fhir.LegacyIdentifierKey).
func (t *txn) reindex(typ, id string, old, new []fhir.Identifier) error {
	keys := func(ids []fhir.Identifier) map[string]bool {
		m := map[string]bool{}
		for _, x := range ids {
			m[string(fhir.IdentifierKey(typ, x.System, x.Value, id))] = true
			m[string(fhir.IdentifierAnyKey(typ, x.Value, id))] = true
		}
		return m
	}
	om, nm := keys(old), keys(new)
	var all []string
	for k := range om {
		if !nm[k] {
			all = append(all, k)
		}
	}
	for k := range nm {
		if !om[k] {
			all = append(all, k)
		}
	}
	sort.Strings(all) // deterministic op order
	for _, k := range all {
		t.idKeys = append(t.idKeys, k)
		if nm[k] {
			t.set([]byte(k), nil)
		} else {
			t.del([]byte(k))
		}
	}
	legacy := map[string]bool{}
	for _, x := range old {
		if !nm[string(fhir.IdentifierKey(typ, x.System, x.Value, id))] {
			legacy[string(fhir.LegacyIdentifierKey(typ, x.System, x.Value))] = true
		}
		if !nm[string(fhir.IdentifierAnyKey(typ, x.Value, id))] {
			legacy[string(fhir.LegacyIdentifierAnyKey(typ, x.Value))] = true
		}
	}
	lks := make([]string, 0, len(legacy))
	for k := range legacy {
		lks = append(lks, k)
	}
	sort.Strings(lks)
	for _, k := range lks {
		cur, ok, err := t.get([]byte(k))
		if err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		if next := fhir.WithoutID(cur, id); next == nil {
			t.del([]byte(k))
		} else if len(next) != len(cur) {
			t.set([]byte(k), next)
		}
	}
	return nil
}

// identified returns the ids indexed under an identifier-index prefix as
// this txn sees them: the entries of its view with its own changes laid
// over them, plus the ids of the legacy list.
func (t *txn) identified(prefix, legacy []byte) ([]string, error) {
	in := map[string]bool{}
	err := t.v.Scan(prefix, func(k, _ []byte) bool {
		if id := string(k[len(prefix):]); fhir.ValidID(id) {
			in[id] = true
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	for _, k := range t.idKeys {
		if id, ok := strings.CutPrefix(k, string(prefix)); ok && fhir.ValidID(id) {
			in[id] = t.pending[k] != nil
		}
	}
	b, _, err := t.get(legacy)
	if err != nil {
		return nil, err
	}
	for _, id := range fhir.IDList(b) {
		in[id] = true
	}
	var ids []string
	for id, ok := range in {
		if ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// condSearch evaluates the conditional-search subset Tandem supports (_id and
// identifier, comma = or, several parameters = and) and returns the
// matching ids, sorted. It reads through g, so inside a Write it sees every
// sequenced write.
func condSearch(t *txn, typ string, q url.Values, expr string) ([]string, *fhir.Error) {
	var result map[string]bool
	and := func(ids []string) {
		m := map[string]bool{}
		for _, id := range ids {
			if result == nil || result[id] {
				m[id] = true
			}
		}
		result = m
	}
	if len(q) == 0 {
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", "a conditional search needs at least one parameter", expr)
	}
	for name, vals := range q {
		for _, val := range vals {
			var ids []string
			for _, alt := range strings.Split(val, ",") {
				switch name {
				case "_id":
					if !fhir.ValidID(alt) {
						continue
					}
					cur, _, err := current(t.get, typ, alt)
					if err != nil {
						return nil, fhir.AsError(err)
					}
					if cur != nil && !cur.Deleted() {
						ids = append(ids, alt)
					}
				case "identifier":
					var prefix, legacy []byte
					if i := strings.IndexByte(alt, '|'); i >= 0 {
						if alt[i+1:] == "" {
							return nil, fhir.Errorf(http.StatusBadRequest, "not-supported", "identifier search needs a value (system| alone is not supported)", expr)
						}
						prefix, legacy = fhir.IdentifierPrefix(typ, alt[:i], alt[i+1:]), fhir.LegacyIdentifierKey(typ, alt[:i], alt[i+1:])
					} else {
						prefix, legacy = fhir.IdentifierAnyPrefix(typ, alt), fhir.LegacyIdentifierAnyKey(typ, alt)
					}
					found, err := t.identified(prefix, legacy)
					if err != nil {
						return nil, fhir.AsError(err)
					}
					ids = append(ids, found...)
				default:
					return nil, fhir.Errorf(http.StatusBadRequest, "not-supported", "search parameter not supported: "+safeParam(name)+" (supported: _id, identifier)", expr)
				}
			}
			and(ids)
		}
	}
	out := make([]string, 0, len(result))
	for id := range result {
		out = append(out, id)
	}
	sort.Strings(out)
	return out, nil
}

// safeParam returns a parameter name fit for an error message: parameter
// names are part of the request syntax, not content, but are bounded.
func safeParam(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == ':' || c == '.') {
			return "(invalid name)"
		}
	}
	return s
}
