package server

import (
	"bytes"
	"context"
	"net/http"
	"sort"
	"strings"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/search"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
)

// activeRegistry is the search registry minus the parameters disabled in
// the mirrored system database (search.DisabledKey), rebuilt only when
// that list changes. The list is read again only when the system database
// has applied a record since it was last read (every request asked the
// store for it before).
func (s *Server) activeRegistry() (*search.Registry, error) {
	lsn := s.st.DatabaseLSN(search.DisabledDatabase) // before the read: a change after it moves the LSN
	s.regMu.Lock()
	if s.active != nil && s.activeLSN == lsn {
		reg := s.active
		s.regMu.Unlock()
		return reg, nil
	}
	s.regMu.Unlock()
	raw, _, err := s.st.Get(search.DisabledDatabase, search.DisabledKey)
	if err != nil {
		return nil, err
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if s.active != nil && bytes.Equal(raw, s.activeRaw) {
		s.activeLSN = lsn
		return s.active, nil
	}
	reg := s.reg
	if len(raw) > 0 {
		reg = s.reg.Without(strings.Split(string(raw), "\n"))
	}
	s.active, s.activeRaw, s.activeLSN = reg, raw, lsn
	s.activeMeta = capabilityStatement(s.p.Types(), reg, s.started)
	return reg, nil
}

// metadata is the CapabilityStatement for the active parameters.
func (s *Server) metadata() ([]byte, error) {
	if _, err := s.activeRegistry(); err != nil {
		return nil, err
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	return s.activeMeta, nil
}

// SetDisabledSearchParams stores the list of disabled search parameters
// ("Type.code") in the mirrored system database, then reindexes the types
// whose parameters changed (journaled batches), so their index keys are
// removed or written on every member alike. It returns how many resources
// were reindexed.
func (s *Server) SetDisabledSearchParams(ctx context.Context, params []string) (int, error) {
	for _, p := range params {
		typ, code, ok := strings.Cut(p, ".")
		if !ok || s.reg.Param(typ, code) == nil || strings.HasPrefix(code, "_") {
			return 0, fhir.Errorf(http.StatusBadRequest, "invalid", "not a search parameter of the form Type.code: "+safeParam(p))
		}
	}
	list := append([]string(nil), params...)
	sort.Strings(list)
	old, _, err := s.st.Get(search.DisabledDatabase, search.DisabledKey)
	if err != nil {
		return 0, err
	}
	val := []byte(strings.Join(list, "\n"))
	_, err = s.seq.Write(ctx, search.DisabledDatabase, func(v sequencer.View) ([]journal.Op, error) {
		if len(val) == 0 {
			return []journal.Op{{Kind: journal.OpDelete, Key: search.DisabledKey}}, nil
		}
		return []journal.Op{{Kind: journal.OpSet, Key: search.DisabledKey, Value: val}}, nil
	})
	if err != nil {
		return 0, err
	}
	types := map[string]bool{}
	for _, p := range append(list, strings.Split(string(old), "\n")...) {
		if typ, _, ok := strings.Cut(p, "."); ok {
			types[typ] = true
		}
	}
	n := 0
	for typ := range types {
		k, err := s.Reindex(ctx, typ, 0)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
