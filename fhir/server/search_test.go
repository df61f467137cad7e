package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/search"
	"github.com/tandemhealth/tandem/fhir/server"
)

// synthea is the Synthea data loaded through the server, and the input
// resources with the ids the server gave them: what the tests' expected
// results are computed from, by plain scans of the input.
type synthea struct {
	n        *node
	patients []string                 // Patient ids
	byType   map[string][]*searchData // input resources by type
	patOf    map[string]string        // Patient id -> its bundle's patient fullUrl
	bundleOf map[string][]*searchData // Patient id -> every resource of its bundle
}

type searchData struct {
	typ, id string
	res     map[string]any
	refs    map[string]string // its bundle's fullUrl -> Type/id (fullUrls repeat across bundles)
}

var (
	syntheaOnce sync.Once
	syntheaData *synthea
)

// loadSyntheaIndexed loads the Synthea bundles (3 in -short mode) once per test
// binary into one node.
func loadSyntheaIndexed(t *testing.T) *synthea {
	t.Helper()
	syntheaOnce.Do(func() {
		d := &synthea{n: memNode(processTB{t}), byType: map[string][]*searchData{}, patOf: map[string]string{}, bundleOf: map[string][]*searchData{}}
		for _, f := range dataFiles(t, "synthea", 3) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rec := d.n.do(t, "POST", "", body, "Prefer", "return=minimal")
			resp := wantStatus(t, rec, http.StatusOK)
			var in struct {
				Entry []struct {
					FullURL  string         `json:"fullUrl"`
					Resource map[string]any `json:"resource"`
				} `json:"entry"`
			}
			if err := json.Unmarshal(body, &in); err != nil {
				t.Fatal(err)
			}
			var all []*searchData
			patient := ""
			refs := map[string]string{}
			for i, e := range resp["entry"].([]any) {
				loc := e.(map[string]any)["response"].(map[string]any)["location"].(string)
				parts := strings.Split(loc, "/")
				l := &searchData{typ: parts[0], id: parts[1], res: in.Entry[i].Resource, refs: refs}
				refs[in.Entry[i].FullURL] = l.typ + "/" + l.id
				d.byType[l.typ] = append(d.byType[l.typ], l)
				all = append(all, l)
				if l.typ == "Patient" {
					patient = l.id
					d.patients = append(d.patients, l.id)
					d.patOf[l.id] = in.Entry[i].FullURL
				}
			}
			d.bundleOf[patient] = all
		}
		syntheaData = d
	})
	if syntheaData == nil {
		t.Fatal("Synthea data did not load")
	}
	return syntheaData
}

// processTB keeps a node for the whole test binary: its Cleanup is never
// run (the memory file system goes with the process).
type processTB struct{ testing.TB }

func (processTB) Cleanup(func()) {}

// ref maps an input reference (urn:uuid:...) of l to the stored Type/id.
func (l *searchData) ref(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["reference"].(string)
	return l.refs[s]
}

// searchAll runs a search and follows next links, returning the match ids
// in order, the include refs and the number of pages.
func searchAll(t *testing.T, n *node, path string, headers ...string) (matches []string, includes []string, pages int) {
	t.Helper()
	for path != "" {
		rec := n.do(t, "GET", path, nil, headers...)
		b := wantStatus(t, rec, http.StatusOK)
		pages++
		if pages > 10000 {
			t.Fatal("paging does not end")
		}
		entries, _ := b["entry"].([]any)
		for _, e := range entries {
			em := e.(map[string]any)
			mode := em["search"].(map[string]any)["mode"]
			res, _ := em["resource"].(map[string]any)
			switch mode {
			case "match":
				matches = append(matches, res["id"].(string))
			case "include":
				includes = append(includes, res["resourceType"].(string)+"/"+res["id"].(string))
			}
		}
		path = ""
		links, _ := b["link"].([]any)
		for _, l := range links {
			lm := l.(map[string]any)
			if lm["relation"] == "next" {
				u, err := url.Parse(lm["url"].(string))
				if err != nil {
					t.Fatal(err)
				}
				path = strings.TrimPrefix(u.Path, "/fhir") + "?" + u.RawQuery
			}
		}
	}
	return matches, includes, pages
}

func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	g := append([]string(nil), got...)
	w := append([]string(nil), want...)
	sort.Strings(g)
	sort.Strings(w)
	for i := 1; i < len(g); i++ {
		if g[i] == g[i-1] {
			t.Fatalf("%s: %s returned twice", what, g[i])
		}
	}
	if strings.Join(g, ",") != strings.Join(w, ",") {
		t.Fatalf("%s: got %d %v, want %d %v", what, len(g), trim(g), len(w), trim(w))
	}
}

func trim(s []string) []string {
	if len(s) > 8 {
		return append(s[:8:8], "...")
	}
	return s
}

func codings(v any) [][2]string {
	m, _ := v.(map[string]any)
	cs, _ := m["coding"].([]any)
	var out [][2]string
	for _, c := range cs {
		cm := c.(map[string]any)
		s, _ := cm["system"].(string)
		code, _ := cm["code"].(string)
		out = append(out, [2]string{s, code})
	}
	return out
}

func instant(t *testing.T, s string) time.Time {
	t.Helper()
	x, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("input date %q: %v", s, err)
	}
	return x
}

func TestSearchObservationsByPatientAndLOINC(t *testing.T) {
	d := loadSyntheaIndexed(t)
	codes := []string{"8302-2", "29463-7", "39156-5", "2339-0"}
	checked := 0
	for _, p := range d.patients {
		for _, code := range codes {
			var want []string
			for _, o := range d.byType["Observation"] {
				if o.ref(o.res["subject"]) != "Patient/"+p {
					continue
				}
				for _, c := range codings(o.res["code"]) {
					if c == [2]string{"http://loinc.org", code} {
						want = append(want, o.id)
						break
					}
				}
			}
			got, _, _ := searchAll(t, d.n, "/Observation?patient="+p+"&code=http://loinc.org|"+code+"&_count=7")
			sameSet(t, "Observation "+code, got, want)
			// Bare code, and the patient as Patient/id.
			got, _, _ = searchAll(t, d.n, "/Observation?subject=Patient/"+p+"&code="+code)
			sameSet(t, "Observation bare "+code, got, want)
			checked += len(want)
		}
	}
	if checked == 0 {
		t.Fatal("no observation matched at all: the test data changed?")
	}
	t.Logf("%d patients x %d LOINC codes: %d observations found as expected", len(d.patients), len(codes), checked)
}

func TestSearchConditionsByOnsetRange(t *testing.T) {
	d := loadSyntheaIndexed(t)
	lo, hi := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)
	var want []string
	perPatient := map[string][]string{}
	for _, c := range d.byType["Condition"] {
		s, ok := c.res["onsetDateTime"].(string)
		if !ok {
			continue
		}
		if at := instant(t, s); !at.Before(lo) && at.Before(hi) {
			want = append(want, c.id)
			p := strings.TrimPrefix(c.ref(c.res["subject"]), "Patient/")
			perPatient[p] = append(perPatient[p], c.id)
		}
	}
	got, _, _ := searchAll(t, d.n, "/Condition?onset-date=ge2010-01-01&onset-date=lt2015-01-01&_count=10")
	sameSet(t, "Conditions 2010-2014", got, want)
	for _, p := range d.patients {
		got, _, _ := searchAll(t, d.n, "/Condition?patient="+p+"&onset-date=ge2010&onset-date=lt2015")
		sameSet(t, "Conditions of a patient", got, perPatient[p])
	}
	t.Logf("%d conditions with onset in [2010, 2015)", len(want))
}

func TestSearchEncountersByDateAndType(t *testing.T) {
	d := loadSyntheaIndexed(t)
	from := time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)
	const checkup = "185349003"
	total := 0
	for _, p := range d.patients {
		var want, wantAll []string
		for _, e := range d.byType["Encounter"] {
			if e.ref(e.res["subject"]) != "Patient/"+p {
				continue
			}
			period, _ := e.res["period"].(map[string]any)
			end, _ := period["end"].(string)
			if end != "" && instant(t, end).Before(from) {
				continue
			}
			wantAll = append(wantAll, e.id)
			types, _ := e.res["type"].([]any)
			for _, ty := range types {
				for _, c := range codings(ty) {
					if c == [2]string{"http://snomed.info/sct", checkup} {
						want = append(want, e.id)
					}
				}
			}
		}
		got, _, _ := searchAll(t, d.n, "/Encounter?patient="+p+"&date=ge2015-01-01&type=http://snomed.info/sct|"+checkup)
		sameSet(t, "check-up encounters since 2015", got, want)
		got, _, _ = searchAll(t, d.n, "/Encounter?patient="+p+"&date=ge2015-01-01&_sort=-date&_count=5")
		sameSet(t, "encounters since 2015", got, wantAll)
		// Newest first.
		starts := map[string]string{}
		for _, e := range d.byType["Encounter"] {
			starts[e.id] = e.res["period"].(map[string]any)["start"].(string)
		}
		for i := 1; i < len(got); i++ {
			if instant(t, starts[got[i]]).After(instant(t, starts[got[i-1]])) {
				t.Fatalf("_sort=-date: %s before %s", starts[got[i-1]], starts[got[i]])
			}
		}
		total += len(want)
	}
	t.Logf("%d check-up encounters since 2015", total)
}

func TestSearchMedicationRequestsByStatus(t *testing.T) {
	d := loadSyntheaIndexed(t)
	for _, status := range []string{"active", "stopped"} {
		var want []string
		for _, m := range d.byType["MedicationRequest"] {
			if m.res["status"] == status {
				want = append(want, m.id)
			}
		}
		got, _, _ := searchAll(t, d.n, "/MedicationRequest?status="+status+"&_count=3")
		sameSet(t, "MedicationRequest "+status, got, want)
		got, _, _ = searchAll(t, d.n, "/MedicationRequest?status:not="+status)
		if len(got) != len(d.byType["MedicationRequest"])-len(want) {
			t.Fatalf("status:not=%s: %d, want %d", status, len(got), len(d.byType["MedicationRequest"])-len(want))
		}
		t.Logf("MedicationRequest status=%s: %d", status, len(want))
	}
	req := strings.NewReader("status=active&_count=1000")
	rec := d.n.doReader(t, "POST", "/MedicationRequest/_search", req, "Content-Type", "application/x-www-form-urlencoded")
	b := wantStatus(t, rec, http.StatusOK)
	entries, _ := b["entry"].([]any)
	var want int
	for _, m := range d.byType["MedicationRequest"] {
		if m.res["status"] == "active" {
			want++
		}
	}
	if len(entries) != want {
		t.Fatalf("POST _search: %d entries, want %d", len(entries), want)
	}
}

func TestSearchIncludePractitioner(t *testing.T) {
	d := loadSyntheaIndexed(t)
	for _, p := range d.patients {
		want := map[string]bool{}
		var encs []string
		for _, e := range d.byType["Encounter"] {
			if e.ref(e.res["subject"]) != "Patient/"+p {
				continue
			}
			encs = append(encs, e.id)
			parts, _ := e.res["participant"].([]any)
			for _, x := range parts {
				if r := e.ref(x.(map[string]any)["individual"]); strings.HasPrefix(r, "Practitioner/") {
					want[r] = true
				}
			}
		}
		var wantList []string
		for r := range want {
			wantList = append(wantList, r)
		}
		got, inc, _ := searchAll(t, d.n, "/Encounter?patient="+p+"&_include=Encounter:participant&_count=1000")
		sameSet(t, "encounters", got, encs)
		sameSet(t, "included practitioners", inc, wantList)
		if len(wantList) == 0 {
			t.Fatal("no practitioner to include: the test data changed?")
		}
		// And back: the practitioner's encounters of all patients include this one's.
		_, inc, _ = searchAll(t, d.n, "/Practitioner?_id="+strings.TrimPrefix(wantList[0], "Practitioner/")+"&_revinclude=Encounter:participant")
		if len(inc) == 0 {
			t.Fatal("_revinclude found no encounter")
		}
	}
}

func TestSearchEverything(t *testing.T) {
	d := loadSyntheaIndexed(t)
	var comp struct {
		Resource []struct {
			Code  string   `json:"code"`
			Param []string `json:"param"`
		} `json:"resource"`
	}
	raw, err := os.ReadFile(testdata + "/search-parameters/CompartmentDefinition-patient.json")
	if err != nil {
		t.Skip(err)
	}
	json.Unmarshal(raw, &comp)
	inCompartment := map[string]bool{}
	for _, r := range comp.Resource {
		inCompartment[r.Code] = len(r.Param) > 0
	}
	for _, p := range d.patients {
		want := []string{"Patient/" + p}
		urn := d.patOf[p]
		for _, l := range d.bundleOf[p] {
			if l.typ == "Patient" || !inCompartment[l.typ] {
				continue
			}
			b, _ := json.Marshal(l.res)
			if strings.Contains(string(b), `"reference":"`+urn+`"`) {
				want = append(want, l.typ+"/"+l.id)
			}
		}
		var got []string
		path := "/Patient/" + p + "/$everything?_count=200"
		for path != "" {
			rec := d.n.do(t, "GET", path, nil)
			b := wantStatus(t, rec, http.StatusOK)
			for _, e := range b["entry"].([]any) {
				res := e.(map[string]any)["resource"].(map[string]any)
				got = append(got, res["resourceType"].(string)+"/"+res["id"].(string))
			}
			path = ""
			for _, l := range b["link"].([]any) {
				if l.(map[string]any)["relation"] == "next" {
					u, _ := url.Parse(l.(map[string]any)["url"].(string))
					path = strings.TrimPrefix(u.Path, "/fhir") + "?" + u.RawQuery
				}
			}
		}
		sameSet(t, "$everything", got, want)
		t.Logf("Patient/%s/$everything: %d resources", p, len(got))
	}
}

func TestSearchPagingWithConcurrentWrites(t *testing.T) {
	d := loadSyntheaIndexed(t)
	p := d.patients[0]
	var want []string
	for _, o := range d.byType["Observation"] {
		if o.ref(o.res["subject"]) == "Patient/"+p {
			want = append(want, o.id)
		}
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		i := 0
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			// New matching observations, and updates of existing ones.
			obs := fmt.Sprintf(`{"resourceType":"Observation","status":"final","code":{"text":"x%d"},"subject":{"reference":"Patient/%s"}}`, i, p)
			if rec := d.n.do(t, "POST", "/Observation", []byte(obs)); rec.Code != http.StatusCreated {
				done <- fmt.Errorf("create: %d", rec.Code)
				return
			}
			id := want[i%len(want)]
			rec := d.n.do(t, "GET", "/Observation/"+id, nil)
			var m map[string]any
			json.Unmarshal(rec.Body.Bytes(), &m)
			m["status"] = "amended"
			b, _ := json.Marshal(m)
			if rec := d.n.do(t, "PUT", "/Observation/"+id, b); rec.Code != http.StatusOK {
				done <- fmt.Errorf("update: %d %s", rec.Code, rec.Body.String())
				return
			}
			i++
		}
	}()
	got, _, pages := searchAll(t, d.n, "/Observation?patient="+p+"&_count=5")
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	for id, n := range seen {
		if n > 1 {
			t.Fatalf("%s seen %d times", id, n)
		}
	}
	for _, id := range want {
		if seen[id] != 1 {
			t.Fatalf("%s seen %d times, want once", id, seen[id])
		}
	}
	t.Logf("%d pages, %d pre-existing observations each seen once, %d created during paging also seen", pages, len(want), len(got)-len(want))
}

func TestSearchControls(t *testing.T) {
	d := loadSyntheaIndexed(t)
	n := len(d.byType["Condition"]) // no other test writes Conditions
	rec := d.n.do(t, "GET", "/Condition?_summary=count", nil)
	b := wantStatus(t, rec, http.StatusOK)
	if fmt.Sprint(b["total"]) != fmt.Sprint(n) || b["entry"] != nil && len(b["entry"].([]any)) != 0 {
		t.Fatalf("_summary=count: total %v entries %v, want %d and none", b["total"], b["entry"], n)
	}
	rec = d.n.do(t, "GET", "/Condition?_total=accurate&_count=2", nil)
	b = wantStatus(t, rec, http.StatusOK)
	if fmt.Sprint(b["total"]) != fmt.Sprint(n) || len(b["entry"].([]any)) != 2 {
		t.Fatalf("_total=accurate: total %v, %d entries", b["total"], len(b["entry"].([]any)))
	}
	rec = d.n.do(t, "GET", "/Condition?_count=0", nil)
	b = wantStatus(t, rec, http.StatusOK)
	if fmt.Sprint(b["total"]) != fmt.Sprint(n) || b["entry"] != nil && len(b["entry"].([]any)) != 0 {
		t.Fatalf("_count=0: total %v entries %v", b["total"], b["entry"])
	}
	// Lenient (default): unknown parameters ignored and reported.
	rec = d.n.do(t, "GET", "/Patient?spaceship=x&_count=1", nil)
	b = wantStatus(t, rec, http.StatusOK)
	entries := b["entry"].([]any)
	last := entries[len(entries)-1].(map[string]any)
	if last["search"].(map[string]any)["mode"] != "outcome" || last["resource"].(map[string]any)["resourceType"] != "OperationOutcome" {
		t.Fatalf("lenient: no outcome entry: %v", last)
	}
	wantStatus(t, d.n.do(t, "GET", "/Patient?spaceship=x", nil, "Prefer", "handling=strict"), http.StatusBadRequest)
	wantStatus(t, d.n.do(t, "GET", "/Patient?_cursor=!!", nil), http.StatusBadRequest)
	// :missing, :exact, :contains on Patient names.
	var fam string
	for _, p := range d.byType["Patient"] {
		fam = p.res["name"].([]any)[0].(map[string]any)["family"].(string)
		break
	}
	for _, q := range []string{"family=" + fam, "family:exact=" + fam, "family:contains=" + strings.ToLower(fam[1:]), "family=" + strings.ToUpper(fam[:3])} {
		got, _, _ := searchAll(t, d.n, "/Patient?"+q)
		if len(got) == 0 {
			t.Fatalf("Patient?%s found nothing", q)
		}
	}
	got, _, _ := searchAll(t, d.n, "/Patient?family:exact="+strings.ToUpper(fam))
	if len(got) != 0 {
		t.Fatal(":exact is case-insensitive")
	}
	got, _, _ = searchAll(t, d.n, "/Patient?general-practitioner:missing=true&birthdate:missing=false")
	if len(got) == 0 {
		t.Fatal(":missing found nothing")
	}
	// _lastUpdated and _id.
	got, _, _ = searchAll(t, d.n, "/Patient?_lastUpdated=gt2000-01-01&_sort=-_lastUpdated&_id="+d.patients[0])
	if len(got) != 1 {
		t.Fatalf("_lastUpdated+_id: %v", got)
	}
}

func TestCapabilityStatementSearchParams(t *testing.T) {
	n := memNode(t)
	b := wantStatus(t, n.do(t, "GET", "/metadata", nil), http.StatusOK)
	rest := b["rest"].([]any)[0].(map[string]any)
	found := false
	for _, r := range rest["resource"].([]any) {
		rm := r.(map[string]any)
		if rm["type"] != "Observation" {
			continue
		}
		found = true
		names := map[string]bool{}
		for _, p := range rm["searchParam"].([]any) {
			names[p.(map[string]any)["name"].(string)] = true
		}
		for _, want := range []string{"code", "patient", "date", "value-quantity", "_id", "_lastUpdated"} {
			if !names[want] {
				t.Errorf("Observation searchParam lacks %s", want)
			}
		}
		if names["code-value-quantity"] {
			t.Error("a composite parameter is reported supported")
		}
		t.Logf("Observation: %s", rm["documentation"])
	}
	if !found {
		t.Fatal("no Observation in the CapabilityStatement")
	}
}

// TestReindex: resources stored by a server that indexed nothing (as
// before search existed) become searchable after Reindex, and a second
// Reindex changes nothing.
func TestReindex(t *testing.T) {
	empty, err := search.Parse(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := newNode(t, vfs.NewMem(), "n", server.Options{Search: empty})
	for i := range 5 {
		body := fmt.Sprintf(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},"subject":{"reference":"Patient/p%d"}}`, i%2)
		wantStatus(t, n.do(t, "POST", "/Observation", []byte(body)), http.StatusCreated)
	}
	n.st.Scan(fhir.Database, []byte("x/"), func(k, _ []byte) bool {
		t.Fatalf("index key before reindexing: %q", k)
		return false
	})
	full, err := server.New(n.seq, n.st, server.Options{BasePath: "/fhir", Parser: sharedParser(t)})
	if err != nil {
		t.Fatal(err)
	}
	count, err := full.Reindex(context.Background(), "Observation", 2)
	if err != nil || count != 5 {
		t.Fatalf("reindexed %d, %v", count, err)
	}
	n.h = full
	got, _, _ := searchAll(t, n, "/Observation?code=8302-2")
	if len(got) != 5 {
		t.Fatalf("found %d after reindexing, want 5", len(got))
	}
	got, _, _ = searchAll(t, n, "/Observation?patient=p1")
	if len(got) != 2 {
		t.Fatalf("patient p1: %d, want 2", len(got))
	}
	before := n.j.LastLSN()
	if _, err := full.Reindex(context.Background(), "", 100); err != nil {
		t.Fatal(err)
	}
	if n.j.LastLSN() != before {
		t.Fatal("a second reindex wrote something")
	}
}

// TestIndexFollowsUpdatesAndDeletes: an update moves a resource between
// results, a delete removes it, and no index key of it is left behind.
func TestIndexFollowsUpdatesAndDeletes(t *testing.T) {
	n := memNode(t)
	put := func(status string) {
		body := `{"resourceType":"MedicationRequest","id":"m1","status":"` + status + `","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/p1"}}`
		rec := n.do(t, "PUT", "/MedicationRequest/m1", []byte(body))
		if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
			t.Fatalf("put: %d %s", rec.Code, rec.Body.String())
		}
	}
	count := func(q string) int {
		got, _, _ := searchAll(t, n, q)
		return len(got)
	}
	put("active")
	if count("/MedicationRequest?status=active") != 1 || count("/MedicationRequest?patient=p1&status=active") != 1 {
		t.Fatal("not found as active")
	}
	put("stopped")
	if count("/MedicationRequest?status=active") != 0 || count("/MedicationRequest?patient=p1&status=stopped") != 1 {
		t.Fatal("update not reflected")
	}
	wantStatus(t, n.do(t, "DELETE", "/MedicationRequest/m1", nil), http.StatusNoContent)
	if count("/MedicationRequest?status=stopped") != 0 || count("/MedicationRequest?patient=p1") != 0 || count("/MedicationRequest") != 0 {
		t.Fatal("delete not reflected")
	}
	for _, prefix := range []string{"x/", "r/", "p/"} {
		n.st.Scan(fhir.Database, []byte(prefix), func(k, _ []byte) bool {
			if !strings.Contains(string(k), "/_lastUpdated") {
				t.Errorf("index key left after delete: %q", k)
			}
			return true
		})
	}
}

// TestDisabledSearchParams: disabling a parameter (a setting in the
// mirrored system database) removes its index keys through a journaled
// reindex, reports it as not applied and drops it from /metadata;
// enabling it again brings everything back.
func TestDisabledSearchParams(t *testing.T) {
	n := memNode(t)
	for i := range 3 {
		body := fmt.Sprintf(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}]},"subject":{"reference":"Patient/p%d"}}`, i)
		wantStatus(t, n.do(t, "POST", "/Observation", []byte(body)), http.StatusCreated)
	}
	codeKeys := func() int {
		k := 0
		n.st.Scan(fhir.Database, []byte("x/Observation/code\x00"), func([]byte, []byte) bool { k++; return true })
		return k
	}
	hasCode := func() bool {
		b := wantStatus(t, n.do(t, "GET", "/metadata", nil), http.StatusOK)
		for _, r := range b["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
			if r.(map[string]any)["type"] == "Observation" {
				for _, p := range r.(map[string]any)["searchParam"].([]any) {
					if p.(map[string]any)["name"] == "code" {
						return true
					}
				}
			}
		}
		return false
	}
	if codeKeys() != 3 || !hasCode() {
		t.Fatalf("before: %d code keys", codeKeys())
	}
	if _, err := n.h.SetDisabledSearchParams(context.Background(), []string{"Observation.code"}); err != nil {
		t.Fatal(err)
	}
	if codeKeys() != 0 || hasCode() {
		t.Fatalf("disabled: %d code keys left, in metadata %v", codeKeys(), hasCode())
	}
	wantStatus(t, n.do(t, "GET", "/Observation?code=8302-2", nil, "Prefer", "handling=strict"), http.StatusBadRequest)
	if got, _, _ := searchAll(t, n, "/Observation?patient=p1"); len(got) != 1 {
		t.Fatalf("other parameters still work: %v", got)
	}
	if _, err := n.h.SetDisabledSearchParams(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := searchAll(t, n, "/Observation?code=http://loinc.org|8302-2"); len(got) != 3 || codeKeys() != 3 || !hasCode() {
		t.Fatalf("enabled again: %d found, %d keys", len(got), codeKeys())
	}
	if _, err := n.h.SetDisabledSearchParams(context.Background(), []string{"Observation.nonsense"}); err == nil {
		t.Fatal("an unknown parameter was accepted")
	}
}
