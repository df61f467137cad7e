package search

import (
	"bytes"
	"os"
	"testing"
	"time"
)

// TestEmbeddedDefinitionsAreTheSharedOnes checks the embedded copies
// against the shared test data, when present.
func TestEmbeddedDefinitionsAreTheSharedOnes(t *testing.T) {
	for name, got := range map[string][]byte{
		"SearchParameter-r4.ndjson":          SearchParameterFile,
		"CompartmentDefinition-patient.json": CompartmentFile,
	} {
		want, err := os.ReadFile("../../../shared/testdata/search-parameters/" + name)
		if err != nil {
			t.Skipf("shared test data not present: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("embedded %s differs from the shared file", name)
		}
	}
}

func mustLoad(tb testing.TB) *Registry {
	tb.Helper()
	r, err := Load()
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func TestCompileSubset(t *testing.T) {
	for _, src := range []string{
		"Condition.onset.as(dateTime) | Condition.onset.as(Period)",
		"(Observation.value as Quantity) | (Observation.value as SampledData)",
		"Encounter.participant.individual.where(resolve() is Practitioner)",
		"Patient.deceased.exists() and Patient.deceased != false",
		"OrganizationAffiliation.telecom.where(system='email')",
		"Bundle.entry[0].resource",
		"QuestionnaireResponse.item.where(hasExtension('http://x')).answer.value.ofType(Reference)",
	} {
		if _, err := Compile(src); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}
	for _, src := range []string{"Patient.name.select(given)", "a +", "x.where(", "'open"} {
		if _, err := Compile(src); err == nil {
			t.Errorf("%s compiled", src)
		}
	}
}

func TestExtract(t *testing.T) {
	r := mustLoad(t)
	obs := []byte(`{"resourceType":"Observation","id":"o1","status":"final",
	 "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
	 "code":{"coding":[{"system":"http://loinc.org","code":"8302-2"}],"text":"Body Height"},
	 "subject":{"reference":"Patient/p1"},"effectiveDateTime":"2011-10-14T23:37:54+00:00",
	 "valueQuantity":{"value":180.5,"unit":"cm","system":"http://unitsofmeasure.org","code":"cm"}}`)
	es, err := r.Extract("Observation", obs, time.UnixMilli(1000))
	if err != nil {
		t.Fatal(err)
	}
	has := func(param string, v []byte) bool {
		for _, e := range Of(es, param) {
			if bytes.Equal(e.Value, v) {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		param string
		v     []byte
	}{
		{"code", EncodeToken("http://loinc.org", "8302-2")},
		{"status", EncodeToken("", "final")},
		{"patient", EncodeReference("Patient", "p1")},
		{"subject", EncodeReference("Patient", "p1")},
		{"value-quantity", EncodeQuantity(180.5, "http://unitsofmeasure.org", "cm", "cm")},
	} {
		if !has(c.param, c.v) {
			t.Errorf("no %s entry %q in %v", c.param, c.v, es)
		}
	}
	if len(Of(es, "date")) != 1 {
		t.Errorf("date entries: %v", Of(es, "date"))
	}
	q := r.ParseQuery("Observation", map[string][]string{
		"code": {"http://loinc.org|8302-2"}, "date": {"ge2011-10-14"}, "value-quantity": {"gt180|http://unitsofmeasure.org|cm"},
		"patient": {"p1"}, "status:not": {"cancelled"}, "bogus": {"x"},
	})
	if len(q.Ignored) != 1 {
		t.Errorf("ignored: %v", q.Ignored)
	}
	for _, term := range q.Terms {
		if !term.Match("o1", es) {
			t.Errorf("%s:%s does not match", term.Param.Code, term.Modifier)
		}
	}
	q = r.ParseQuery("Observation", map[string][]string{"date": {"lt2011-10-14"}})
	if q.Terms[0].Match("o1", es) {
		t.Error("date lt matched")
	}
}

func TestParseDate(t *testing.T) {
	for _, c := range []struct {
		in     string
		lo, hi string
	}{
		{"2011", "2011-01-01T00:00:00Z", "2012-01-01T00:00:00Z"},
		{"2011-02", "2011-02-01T00:00:00Z", "2011-03-01T00:00:00Z"},
		{"2011-02-03T04:05:06+01:00", "2011-02-03T03:05:06Z", "2011-02-03T03:05:07Z"},
		{"2011-02-03T04:05:06.123Z", "2011-02-03T04:05:06.123Z", "2011-02-03T04:05:06.124Z"},
	} {
		lo, hi, err := ParseDate(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		wl, _ := time.Parse(time.RFC3339Nano, c.lo)
		wh, _ := time.Parse(time.RFC3339Nano, c.hi)
		if lo != wl.UnixMilli() || hi != wh.UnixMilli() {
			t.Errorf("%s: [%v, %v)", c.in, time.UnixMilli(lo).UTC(), time.UnixMilli(hi).UTC())
		}
	}
}

func TestReferenceIdentifierAndModifiers(t *testing.T) {
	r := mustLoad(t)
	enc := []byte(`{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},
	 "subject":{"identifier":{"system":"urn:mrn","value":"123"}},
	 "participant":[{"individual":{"reference":"http://other.example/fhir/Practitioner/d1"}}],
	 "period":{"start":"2015-03-01T10:00:00Z"}}`)
	es, err := r.Extract("Encounter", enc, time.UnixMilli(0))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q    map[string][]string
		want bool
	}{
		{map[string][]string{"subject:identifier": {"urn:mrn|123"}}, true},
		{map[string][]string{"subject:identifier": {"urn:mrn|999"}}, false},
		{map[string][]string{"practitioner": {"Practitioner/d1"}}, true},
		{map[string][]string{"participant:Practitioner": {"d1"}}, true},
		{map[string][]string{"subject:missing": {"true"}}, true}, // no literal reference
		{map[string][]string{"class": {"AMB"}}, true},
		{map[string][]string{"class:not": {"AMB"}}, false},
		{map[string][]string{"date": {"ge2015-03-01"}}, true},  // open-ended period
		{map[string][]string{"date": {"sa2015-02-28"}}, true},  // starts after
		{map[string][]string{"date": {"eb2015-03-01"}}, false}, // does not end before
	} {
		q := r.ParseQuery("Encounter", c.q)
		if len(q.Ignored) > 0 || len(q.Terms) != 1 {
			t.Fatalf("%v: ignored %v", c.q, q.Ignored)
		}
		if got := q.Terms[0].Match("e1", es); got != c.want {
			t.Errorf("%v: %v, want %v", c.q, got, c.want)
		}
	}
}

// TestRebase: entries decoded from a buffer (with spare capacity, as an
// iterator's memory has) and rebased on a copy equal the entries decoded
// from the copy, and no longer change with the buffer.
func TestRebase(t *testing.T) {
	es := []Entry{
		{Param: "_lastUpdated", Kind: KindDate, Value: []byte("0123456789abcdef")},
		{Param: "code", Kind: KindToken, Value: []byte("http://loinc.org|8302-2")},
		{Param: "code", Kind: KindToken, Value: nil},
		{Param: "status", Kind: KindToken, Value: []byte("final")},
	}
	rec := EncodeRecord(es)
	buf := append(append(make([]byte, 0, len(rec)+64), rec...), "spare"...)[:len(rec)]
	got, err := DecodeRecord(buf)
	if err != nil {
		t.Fatal(err)
	}
	own := bytes.Clone(buf)
	Rebase(got, buf, own)
	for i := range buf {
		buf[i] = 'X'
	}
	want, err := DecodeRecord(own)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Param != want[i].Param || got[i].Kind != want[i].Kind || !bytes.Equal(got[i].Value, want[i].Value) || !bytes.Equal(got[i].Value, es[i].Value) {
			t.Fatalf("entry %d: %q %q, want %q", i, got[i].Param, got[i].Value, es[i].Value)
		}
	}
}
