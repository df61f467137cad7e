package server

import (
	"bytes"
	"context"
	"fmt"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/search"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
)

// indexVersion brings the search index of Type/id in line with its new
// current version nv (a tombstone removes every entry): the old forward
// record names the keys to delete, the new entries are extracted from the
// final JSON. Unchanged keys are left alone. It runs inside the Write that
// stores the version, so resource and index are one journal record.
func (t *txn) indexVersion(typ, id string, nv *fhir.Version) error {
	if t.reg == nil {
		return nil
	}
	var old []search.Entry
	var oldRaw []byte
	rk := search.RecordKey(typ, id)
	if b, ok, err := t.get(rk); err != nil {
		return err
	} else if ok {
		oldRaw = b
		if old, err = search.DecodeRecord(b); err != nil {
			return fmt.Errorf("fhir: search record of %s: %w", typ, err)
		}
	}
	var cur []search.Entry
	if nv != nil && !nv.Deleted() {
		es, err := t.reg.Extract(typ, nv.JSON, nv.LastUpdated)
		if err != nil {
			return fmt.Errorf("fhir: indexing a stored version: %w", fhir.ErrBadRecord)
		}
		cur = es
		if bytes.Equal(search.EncodeRecord(cur), oldRaw) {
			return nil // a reindex of an indexed version: nothing changes
		}
	}
	keys := func(es []search.Entry) map[string]bool {
		m := make(map[string]bool, len(es))
		for _, e := range es {
			if search.Indexed(e.Kind) {
				m[string(search.IndexKey(typ, id, e))] = true
			}
		}
		return m
	}
	ok, nk := keys(old), keys(cur)
	// Deterministic op order: old entries then new ones, both sorted.
	for _, e := range old {
		if k := search.IndexKey(typ, id, e); search.Indexed(e.Kind) && !nk[string(k)] {
			t.del(k)
		}
	}
	for _, e := range cur {
		if k := search.IndexKey(typ, id, e); search.Indexed(e.Kind) && !ok[string(k)] {
			t.set(k, nil)
		}
	}
	// The copies under each patient compartment the resource is in.
	var newPats map[string]bool
	var rec []byte
	if cur != nil {
		rec = search.EncodeRecord(cur)
		newPats = map[string]bool{}
		for _, pid := range t.reg.Patients(typ, id, cur) {
			newPats[pid] = true
			t.set(search.CompartmentKey(pid, typ, id), rec)
		}
	}
	if old != nil {
		for _, pid := range t.reg.Patients(typ, id, old) {
			if !newPats[pid] {
				t.del(search.CompartmentKey(pid, typ, id))
			}
		}
	}
	if cur == nil {
		if old != nil {
			t.del(rk)
		}
		return nil
	}
	t.set(rk, rec)
	return nil
}

// Reindex rewrites the search index of every current resource of typ
// (every type when typ is ""), batch resources per sequencer Write, so
// resources stored before indexing existed (or before a parameter was
// added) become searchable. Each batch is a journal record, so every
// member indexes alike. It returns how many resources were indexed.
func (s *Server) Reindex(ctx context.Context, typ string, batch int) (int, error) {
	if batch <= 0 {
		batch = 200
	}
	types := []string{typ}
	if typ == "" {
		types = s.p.Types()
	}
	reg, err := s.activeRegistry()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, ty := range types {
		var ids []string
		prefix := fhir.CurrentPrefix(ty)
		if err := s.st.Scan(fhir.Database, prefix, func(k, _ []byte) bool {
			ids = append(ids, string(k[len(prefix):]))
			return true
		}); err != nil {
			return n, err
		}
		for len(ids) > 0 {
			part := ids[:min(batch, len(ids))]
			ids = ids[len(part):]
			_, err := s.seq.Write(ctx, fhir.Database, func(v sequencer.View) ([]journal.Op, error) {
				t := newTxn(v, s.now())
				t.reg = reg
				for _, id := range part {
					cur, _, err := current(t.get, ty, id)
					if err != nil {
						return nil, err
					}
					if cur == nil {
						continue
					}
					if err := t.indexVersion(ty, id, cur); err != nil {
						return nil, err
					}
				}
				if t.empty() {
					return nil, errNothing
				}
				return t.ops()
			})
			if err != nil && err != errNothing {
				return n, err
			}
			n += len(part)
		}
	}
	return n, nil
}

var errNothing = fmt.Errorf("fhir: nothing to write")
