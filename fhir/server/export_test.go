package server

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
)

// ImportTransactions is the bulk loader of the scale benchmark (test
// builds only): it stores the transaction bundles received from bundles,
// in order, without HTTP. Each bundle is prepared (entries parsed and
// validated) and carried out (conditional creates, references rewritten,
// resources, history and search indexes written by txn.write) exactly as a
// POSTed transaction, but consecutive bundles share one sequencer Write
// until their bodies reach batchBytes, so one journal record and one Pebble
// batch hold thousands of resources. Parsing runs on GOMAXPROCS goroutines
// while a batch is written; server ids are assigned in bundle order, so a
// deterministic Options.NewID gives the same store as POSTing the bundles
// one by one. No access checks, no audit. progress, when set, is called
// after each batch with the bundles and entries stored so far.
func (s *Server) ImportTransactions(ctx context.Context, bundles <-chan []byte, batchBytes int, progress func(bundles, entries int)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type job struct {
		body    []byte
		entries []*entry
		err     error
		done    chan struct{}
	}
	work := make(chan *job, 64)
	order := make(chan *job, 64)
	go func() {
		defer close(work)
		defer close(order)
		for body := range bundles {
			j := &job{body: body, done: make(chan struct{})}
			select {
			case work <- j:
			case <-ctx.Done():
				return
			}
			select {
			case order <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range runtime.GOMAXPROCS(0) {
		go func() {
			for j := range work {
				j.entries, j.err = s.prepareBundle(j.body)
				close(j.done)
			}
		}()
	}
	reg, err := s.activeRegistry()
	if err != nil {
		return err
	}
	var batch [][]*entry
	var refs []map[string]string
	size, nb, ne := 0, 0, 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := s.seq.Write(ctx, fhir.Database, func(v sequencer.View) ([]journal.Op, error) {
			t := newTxn(v, s.now())
			t.reg = reg
			for i, entries := range batch {
				if err := s.runTransaction(t, entries, refs[i], nil); err != nil {
					return nil, fmt.Errorf("bundle %d: %w", nb+i, err)
				}
			}
			return t.ops()
		})
		if err != nil {
			return err
		}
		for _, entries := range batch {
			ne += len(entries)
		}
		nb += len(batch)
		batch, refs, size = batch[:0], refs[:0], 0
		if progress != nil {
			progress(nb, ne)
		}
		return nil
	}
	for j := range order {
		<-j.done
		if j.err != nil {
			return fmt.Errorf("bundle %d: %w", nb+len(batch), j.err)
		}
		r, ferr := s.assignIDs(j.entries)
		if ferr != nil {
			return fmt.Errorf("bundle %d: %w", nb+len(batch), ferr)
		}
		batch, refs = append(batch, j.entries), append(refs, r)
		if size += len(j.body); size >= batchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return flush()
}

// prepareBundle parses a transaction bundle's entries as transaction does.
func (s *Server) prepareBundle(body []byte) ([]*entry, error) {
	var in bundleIn
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, err
	}
	if in.ResourceType != "Bundle" || in.Type != "transaction" {
		return nil, fhir.Errorf(http.StatusBadRequest, "invalid", "not a transaction Bundle")
	}
	entries := make([]*entry, len(in.Entry))
	for i := range in.Entry {
		e, ferr := s.prepare(i, &in.Entry[i])
		if ferr != nil {
			return nil, ferr
		}
		entries[i] = e
	}
	return entries, nil
}

// StoredAuditJSON is the FHIR JSON of every AuditEvent of the batch stored
// under key (~a/e/<first>) with value v, in order, as reads and searches
// serve it.
func StoredAuditJSON(key, v []byte) ([][]byte, error) {
	if len(key) < 8 {
		return nil, errAuditBatch
	}
	var out [][]byte
	err := eachStoredAudit(binary.BigEndian.Uint64(key[len(key)-8:]), v, func(e *storedAudit) bool {
		out = append(out, e.appendJSON(nil))
		return true
	})
	return out, err
}
