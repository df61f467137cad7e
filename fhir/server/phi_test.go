package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemhealth/tandem/fhir/server"
	"github.com/tandemhealth/tandem/mirror/sequencer"
)

// lockedBuffer is a log sink shared by the servers and their audit loops.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// phi collects what must never appear in a log line or an error: patient
// names, birth dates and identifier values of the Synthea bundles.
func phi(tb testing.TB, files []string) map[string]bool {
	tb.Helper()
	out := map[string]bool{}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		var b struct {
			Entry []struct{ Resource json.RawMessage }
		}
		if err := json.Unmarshal(body, &b); err != nil {
			tb.Fatal(err)
		}
		for _, e := range b.Entry {
			var r struct {
				ResourceType string
				BirthDate    string
				Name         []struct {
					Family string
					Given  []string
				}
				Identifier []struct{ Value string }
			}
			if !bytes.Contains(e.Resource, []byte(`"resourceType":"Patient"`)) && !bytes.Contains(e.Resource, []byte(`"resourceType": "Patient"`)) {
				continue
			}
			if err := json.Unmarshal(e.Resource, &r); err != nil {
				tb.Fatal(err)
			}
			if r.BirthDate != "" {
				out[r.BirthDate] = true
			}
			for _, n := range r.Name {
				out[n.Family] = true
				for _, g := range n.Given {
					out[g] = true
				}
			}
			for _, id := range r.Identifier {
				if len(id.Value) >= 6 {
					out[id.Value] = true
				}
			}
		}
	}
	delete(out, "")
	return out
}

// failingSeq refuses every write, as a journal failure would.
type failingSeq struct{}

func (failingSeq) Write(context.Context, string, sequencer.WriteFunc) (uint64, error) {
	return 0, sequencer.ErrFailed
}

// TestNoPHIInLogsOrErrors runs a Synthea load, reads, and error cases
// (bad tokens, refusals, invalid resources carrying PHI, failed writes and
// failed audit commits) with every log line captured, then scans the log
// and every error body for the patients' names, birth dates and
// identifiers.
func TestNoPHIInLogsOrErrors(t *testing.T) {
	files := dataFiles(t, "synthea", 3)[:3]
	secrets := phi(t, files)
	if len(secrets) < 10 {
		t.Fatalf("only %d PHI strings found in the bundles", len(secrets))
	}
	var logs lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n := newNode(t, vfs.NewMem(), "n", server.Options{Access: testVerifier(t), Audit: true, Logger: logger})
	defer n.h.Close(context.Background())
	var errorBodies []string
	check := func(rec interface {
		Result() *http.Response
	}, body string) {
		if rec.Result().StatusCode >= 400 {
			errorBodies = append(errorBodies, body)
		}
	}
	admin := token(t, "loader", adminScope, "")
	l := loadSynthea(t, n, admin, files)
	clin := token(t, "dr", "user/*.rs", "")
	for _, ref := range l.refs {
		rec := n.do(t, "GET", "/"+ref, nil, "Authorization", clin)
		check(rec, rec.Body.String())
	}
	// A patient's own data, re-posted with its PHI in invalid places.
	raw, _ := os.ReadFile(files[0])
	var b struct {
		Entry []struct{ Resource json.RawMessage }
	}
	json.Unmarshal(raw, &b)
	var patient map[string]any
	for _, e := range b.Entry {
		var m map[string]any
		json.Unmarshal(e.Resource, &m)
		if m["resourceType"] == "Patient" {
			patient = m
		}
	}
	mutate := func(f func(m map[string]any)) []byte {
		m := map[string]any{}
		for k, v := range patient {
			m[k] = v
		}
		f(m)
		out, _ := json.Marshal(m)
		return out
	}
	name := patient["name"].([]any)[0].(map[string]any)["family"].(string)
	bad := [][]byte{
		mutate(func(m map[string]any) { m["birthDate"] = name }),
		mutate(func(m map[string]any) { m["gender"] = patient["birthDate"] }),
		mutate(func(m map[string]any) { m["unknownField"] = name }),
		mutate(func(m map[string]any) { m["id"] = 42 }),
		mutate(func(m map[string]any) { m["name"] = name }),
		[]byte(`{"resourceType":"Patient","name":[{"family":"` + name + `"}]`),
	}
	for _, body := range bad {
		for _, tc := range []struct{ method, path string }{{"POST", "/Patient"}, {"PUT", "/Patient/" + l.patients[0]}} {
			rec := n.do(t, tc.method, tc.path, body, "Authorization", admin)
			check(rec, rec.Body.String())
		}
		tx := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + string(body) + `,"request":{"method":"POST","url":"Patient"}}]}`)
		rec := n.do(t, "POST", "", tx, "Authorization", admin)
		check(rec, rec.Body.String())
		batch := bytes.Replace(tx, []byte(`"transaction"`), []byte(`"batch"`), 1)
		rec = n.do(t, "POST", "", batch, "Authorization", admin)
		check(rec, rec.Body.String())
	}
	// Refusals.
	for _, auth := range []string{"", "Bearer " + name, token(t, "x", "user/Observation.r", ""), token(t, "x", "patient/*.rs", "other")} {
		rec := n.do(t, "GET", "/Patient/"+l.patients[0], nil, "Authorization", auth)
		check(rec, rec.Body.String())
		rec = n.do(t, "GET", "/Patient?identifier="+l.patients[0], nil, "Authorization", auth)
		check(rec, rec.Body.String())
	}
	if err := n.h.FlushAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A server whose journal has failed: writes and audit commits fail and are logged.
	failing, err := server.New(failingSeq{}, n.st, server.Options{BasePath: "/fhir", Parser: sharedParser(t), Access: testVerifier(t), Audit: true, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	fn := &node{h: failing, st: n.st, j: n.j}
	rec := fn.do(t, "PUT", "/Patient/"+l.patients[0], mutate(func(m map[string]any) { m["id"] = l.patients[0] }), "Authorization", admin)
	check(rec, rec.Body.String())
	rec = fn.do(t, "GET", "/Patient/"+l.patients[0], nil, "Authorization", clin)
	if err := failing.FlushAudit(context.Background()); !errors.Is(err, sequencer.ErrFailed) {
		t.Fatalf("audit flush on a failed journal: %v", err)
	}
	failing.Close(context.Background())

	log := logs.String()
	if !strings.Contains(log, "audit events not stored") || !strings.Contains(log, "write outcome unknown") {
		t.Fatalf("the error cases were not logged; log:\n%s", log)
	}
	if len(errorBodies) < 20 {
		t.Fatalf("only %d error bodies", len(errorBodies))
	}
	for s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("the log contains PHI %q", s)
		}
		for _, e := range errorBodies {
			if strings.Contains(e, s) {
				t.Errorf("an error contains PHI %q: %.300s", s, e)
				break
			}
		}
	}
	t.Logf("%d PHI strings; %d bytes of log, %d error bodies scanned", len(secrets), len(log), len(errorBodies))
}
