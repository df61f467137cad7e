package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/server"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/mirror/store"
)

var (
	parserOnce sync.Once
	parser     *fhir.Parser
)

// sharedParser builds the R4 parser once per test binary.
func sharedParser(tb testing.TB) *fhir.Parser {
	tb.Helper()
	parserOnce.Do(func() {
		p, err := fhir.NewParser()
		if err != nil {
			panic(err)
		}
		parser = p
	})
	return parser
}

// node is one data node: journal, store, sequencer and the FHIR handler.
type node struct {
	h   *server.Server
	st  *store.Store
	j   *journal.Journal
	seq *sequencer.Sequencer
}

// newNode starts a node on fs (vfs.NewMem() or vfs.Default) in dir.
func newNode(tb testing.TB, fs vfs.FS, dir string, opts server.Options) *node {
	tb.Helper()
	return newNodeCache(tb, fs, dir, opts, 0)
}

// newNodeCache is newNode with a store block cache of cacheSize bytes (0:
// store.DefaultCacheSize).
func newNodeCache(tb testing.TB, fs vfs.FS, dir string, opts server.Options, cacheSize int64) *node {
	tb.Helper()
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{FS: fs})
	if err != nil {
		tb.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "store"), store.Options{FS: fs, CacheSize: cacheSize})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := st.Recover(j); err != nil {
		tb.Fatal(err)
	}
	// The lead changed the sequencer API: NewStandalone wires journal, applier and store.
	seq, stopApplier := sequencer.NewStandalone(j, st, 1)
	tb.Cleanup(func() { stopApplier(); st.Close(); j.Close() })
	if opts.Parser == nil {
		opts.Parser = sharedParser(tb)
	}
	if opts.BasePath == "" {
		opts.BasePath = "/fhir"
	}
	h, err := server.New(seq, st, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return &node{h: h, st: st, j: j, seq: seq}
}

func memNode(tb testing.TB) *node {
	tb.Helper()
	return newNode(tb, vfs.NewMem(), "n", server.Options{})
}

// do sends one request; headers are name, value pairs.
func (n *node) do(tb testing.TB, method, path string, body []byte, headers ...string) *httptest.ResponseRecorder {
	tb.Helper()
	var rd *bytes.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	} else {
		rd = bytes.NewReader(nil)
	}
	req := httptest.NewRequest(method, "http://tandem.test/fhir"+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	n.h.ServeHTTP(rec, req)
	return rec
}

// hash is the content hash of the fhir database.
func (n *node) hash(tb testing.TB) [32]byte {
	tb.Helper()
	h, err := n.st.ContentHash(fhir.Database)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// wantStatus checks the status, and that every error is an OperationOutcome.
func wantStatus(tb testing.TB, rec *httptest.ResponseRecorder, status int) map[string]any {
	tb.Helper()
	if rec.Code != status {
		tb.Fatalf("status %d, want %d; body %.600s", rec.Code, status, rec.Body.String())
	}
	if rec.Body.Len() == 0 {
		if status >= 400 {
			tb.Fatalf("status %d without an OperationOutcome", status)
		}
		return nil
	}
	if ct := rec.Header().Get("Content-Type"); ct != server.ContentType {
		tb.Fatalf("Content-Type %q", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		tb.Fatalf("body is not JSON: %v", err)
	}
	if status >= 400 {
		if m["resourceType"] != "OperationOutcome" {
			tb.Fatalf("error body is a %v, want OperationOutcome", m["resourceType"])
		}
		if is, _ := m["issue"].([]any); len(is) == 0 {
			tb.Fatal("OperationOutcome without issues")
		}
	}
	return m
}

// tree decodes JSON keeping numbers exact.
func tree(tb testing.TB, b []byte) map[string]any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("not JSON: %v", err)
	}
	return m
}

// withoutServerFields drops what the server sets: id, meta.versionId,
// meta.lastUpdated (and meta when nothing else is left).
func withoutServerFields(m map[string]any) map[string]any {
	delete(m, "id")
	if meta, ok := m["meta"].(map[string]any); ok {
		delete(meta, "versionId")
		delete(meta, "lastUpdated")
		if len(meta) == 0 {
			delete(m, "meta")
		}
	}
	return m
}

func issueExpr(m map[string]any) []string {
	var out []string
	is, _ := m["issue"].([]any)
	for _, x := range is {
		e, _ := x.(map[string]any)["expression"].([]any)
		for _, s := range e {
			out = append(out, s.(string))
		}
	}
	return out
}

// doReader sends one request with a body reader; headers are name, value pairs.
func (n *node) doReader(tb testing.TB, method, path string, body io.Reader, headers ...string) *httptest.ResponseRecorder {
	tb.Helper()
	req := httptest.NewRequest(method, "http://tandem.test/fhir"+path, body)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	n.h.ServeHTTP(rec, req)
	return rec
}
