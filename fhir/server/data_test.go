package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"

	"github.com/tandemhealth/tandem/fhir"
)

const testdata = "../../../shared/testdata"

// dataFiles lists a testdata folder; in -short mode only the first few.
func dataFiles(tb testing.TB, dir string, short int) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(testdata, dir, "*.json"))
	if err != nil || len(files) == 0 {
		tb.Skipf("no test data in %s", dir)
	}
	sort.Strings(files)
	if testing.Short() && len(files) > short {
		files = files[:short]
	}
	return files
}

// rewriteTree replaces Reference.reference values found in refs, the
// test's own implementation of what the server must do.
func rewriteTree(v any, refs map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" {
				if to, ok := refs[s]; ok {
					x[k] = to
				}
				continue
			}
			rewriteTree(e, refs)
		}
	case []any:
		for _, e := range x {
			rewriteTree(e, refs)
		}
	}
}

// TestSyntheaTransactions loads every Synthea bundle as one transaction:
// every entry is created, every urn:uuid reference is rewritten to the
// assigned Type/id, each stored resource reads back byte-equal to what a
// GET returns and semantically equal to the input.
func TestSyntheaTransactions(t *testing.T) {
	n := memNode(t)
	var bundles, resources int
	for _, f := range dataFiles(t, "synthea", 2) {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rec := n.do(t, "POST", "", body)
		resp := wantStatus(t, rec, http.StatusOK)
		if resp["type"] != "transaction-response" {
			t.Fatalf("%s: response type %v", filepath.Base(f), resp["type"])
		}
		var in struct {
			Entry []struct {
				FullURL  string          `json:"fullUrl"`
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatal(err)
		}
		out := resp["entry"].([]any)
		if len(out) != len(in.Entry) {
			t.Fatalf("%s: %d response entries for %d entries", filepath.Base(f), len(out), len(in.Entry))
		}
		refs := map[string]string{}
		locs := make([]string, len(out))
		for i, e := range out {
			r := e.(map[string]any)["response"].(map[string]any)
			if r["status"] != "201 Created" {
				t.Fatalf("%s entry %d: status %v", filepath.Base(f), i, r["status"])
			}
			loc := r["location"].(string) // Type/id/_history/1
			locs[i] = loc
			refs[in.Entry[i].FullURL] = strings.Join(strings.Split(loc, "/")[:2], "/")
		}
		for i, e := range in.Entry {
			ref := refs[e.FullURL]
			rec := n.do(t, "GET", "/"+ref, nil)
			wantStatus(t, rec, http.StatusOK)
			typ, id, _ := strings.Cut(ref, "/")
			raw, ok, err := n.st.Get(fhir.Database, fhir.CurrentKey(typ, id))
			if err != nil || !ok {
				t.Fatalf("%s: stored %v %v", ref, ok, err)
			}
			v, err := fhir.DecodeVersion(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(v.JSON, rec.Body.Bytes()) {
				t.Fatalf("%s: GET is not the stored bytes", ref)
			}
			if bytes.Contains(rec.Body.Bytes(), []byte(`"reference":"urn:uuid:`)) {
				t.Fatalf("%s (entry %d): a urn:uuid reference was not rewritten", ref, i)
			}
			want := tree(t, e.Resource)
			rewriteTree(want, refs)
			if got := tree(t, rec.Body.Bytes()); !reflect.DeepEqual(withoutServerFields(got), withoutServerFields(want)) {
				t.Fatalf("%s (entry %d): stored resource differs from the input", ref, i)
			}
			if !strings.HasPrefix(locs[i], ref+"/_history/1") {
				t.Fatalf("location %s for %s", locs[i], ref)
			}
			resources++
		}
		bundles++
	}
	t.Logf("Synthea: %d transaction bundles, %d resources created and read back", bundles, resources)
}

// TestExamplesRoundTrip posts every official R4 example to its type: what
// google/fhir/go's validating parser accepts must be created and read back
// semantically equal; what it rejects must be a 4xx OperationOutcome.
func TestExamplesRoundTrip(t *testing.T) {
	oracle, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	n := memNode(t)
	var accepted, rejected []string
	for _, f := range dataFiles(t, "fhir-r4-examples", 25) {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		typ := fhir.PeekType(body)
		_, oerr := oracle.Unmarshal(body)
		before := n.j.LastLSN()
		rec := n.do(t, "POST", "/"+typ, body)
		if oerr != nil {
			if rec.Code < 400 || rec.Code >= 500 {
				t.Errorf("%s: rejected by google/fhir/go but got %d", name, rec.Code)
				continue
			}
			m := wantStatus(t, rec, rec.Code)
			if n.j.LastLSN() != before {
				t.Errorf("%s: a rejected resource stored something", name)
			}
			rejected = append(rejected, name+" "+strings.Join(issueExpr(m), ","))
			continue
		}
		m := wantStatus(t, rec, http.StatusCreated)
		read := n.do(t, "GET", "/"+typ+"/"+m["id"].(string), nil)
		wantStatus(t, read, http.StatusOK)
		if !reflect.DeepEqual(withoutServerFields(tree(t, read.Body.Bytes())), withoutServerFields(tree(t, body))) {
			t.Errorf("%s: read back differs from the input", name)
		}
		if _, err := oracle.Unmarshal(read.Body.Bytes()); err != nil {
			t.Errorf("%s: stored JSON no longer parses: %v", name, err)
		}
		accepted = append(accepted, name)
	}
	t.Logf("R4 examples: %d accepted and read back, %d rejected with 4xx OperationOutcome", len(accepted), len(rejected))
	for _, r := range rejected {
		t.Logf("  rejected: %s", r)
	}
}
