package fhir_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/fhir"
)

var (
	once   sync.Once
	parser *fhir.Parser
)

func testParser(tb testing.TB) *fhir.Parser {
	tb.Helper()
	once.Do(func() {
		p, err := fhir.NewParser()
		if err != nil {
			panic(err)
		}
		parser = p
	})
	return parser
}

func TestEncodePutsServerFieldsFirst(t *testing.T) {
	p := testParser(t)
	in := `{"resourceType":"Patient","id":"old","meta":{"versionId":"9","lastUpdated":"2000-01-01T00:00:00Z","tag":[{"code":"t"}]},
	        "name":[{"family":"Doe"}], "birthDate":"1970-01-01", "_birthDate":{"extension":[{"url":"http://x","valueString":"a<b"}]}}`
	r, ferr := p.Parse([]byte(in))
	if ferr != nil {
		t.Fatal(ferr)
	}
	at := time.Date(2026, 11, 26, 10, 0, 0, 123456789, time.UTC)
	got := string(r.Encode("new", 3, at))
	want := `{"resourceType":"Patient","id":"new","meta":{"versionId":"3","lastUpdated":"2026-11-26T10:00:00.123Z","tag":[{"code":"t"}]},"name":[{"family":"Doe"}],"birthDate":"1970-01-01","_birthDate":{"extension":[{"url":"http://x","valueString":"a<b"}]}}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if ferr := p.Validate([]byte(got)); ferr != nil {
		t.Fatalf("encoded form does not validate: %v", ferr)
	}
}

func TestRewriteReferences(t *testing.T) {
	p := testParser(t)
	r, ferr := p.Parse([]byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},
		"subject":{"reference":"urn:uuid:a"},"valueQuantity":{"value":1.50},
		"contained":[{"resourceType":"Patient","id":"c","link":[{"type":"seealso","other":{"reference":"urn:uuid:a"}}]}],
		"performer":[{"reference":"#c"},{"reference":"Practitioner/1"}]}`))
	if ferr != nil {
		t.Fatal(ferr)
	}
	err := r.RewriteReferences(func(ref string) (string, bool, error) {
		if ref == "urn:uuid:a" {
			return "Patient/p1", true, nil
		}
		return "", false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	js := r.Encode("o1", 1, time.Unix(0, 0))
	if bytes.Contains(js, []byte("urn:uuid")) || bytes.Count(js, []byte(`"Patient/p1"`)) != 2 {
		t.Fatalf("rewrite: %s", js)
	}
	if !bytes.Contains(js, []byte(`"value":1.50`)) {
		t.Fatalf("decimal precision lost: %s", js)
	}
}

func TestIdentifiersAndIDLists(t *testing.T) {
	p := testParser(t)
	r, ferr := p.Parse([]byte(`{"resourceType":"Patient","identifier":[{"system":"s","value":"1"},{"value":"2"},{"system":"s"}]}`))
	if ferr != nil {
		t.Fatal(ferr)
	}
	if got, want := r.Identifiers(), []fhir.Identifier{{System: "s", Value: "1"}, {Value: "2"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("identifiers %v, want %v", got, want)
	}
	l := []byte("a\nb\nc") // a legacy identifier-index list
	if got := fhir.IDList(l); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("id list %q", got)
	}
	if got := fhir.WithoutID(l, "x"); string(got) != string(l) {
		t.Fatalf("removing an absent id changed the list: %q", got)
	}
	l = fhir.WithoutID(fhir.WithoutID(fhir.WithoutID(l, "b"), "a"), "c")
	if l != nil {
		t.Fatalf("emptied list %q", l)
	}
}

func TestVersionRecordRoundTrip(t *testing.T) {
	v := &fhir.Version{Kind: fhir.KindUpdated, VersionID: 7, LastUpdated: time.UnixMilli(1764151200123).UTC(), Seq: 99, JSON: []byte(`{"resourceType":"Patient"}`)}
	got, err := fhir.DecodeVersion(fhir.EncodeVersion(v))
	if err != nil || !reflect.DeepEqual(got, v) {
		t.Fatalf("round trip %+v %v", got, err)
	}
	for _, bad := range [][]byte{nil, {1, 1}, append([]byte{2}, make([]byte, 30)...), append([]byte{1, 9}, make([]byte, 30)...)} {
		if _, err := fhir.DecodeVersion(bad); err == nil {
			t.Fatalf("decoded a bad record %v", bad)
		}
	}
}

func TestParseErrorsLocateWithoutContent(t *testing.T) {
	p := testParser(t)
	const secret = "Zanzibar-Secret-Value"
	for _, tc := range []struct {
		body   string
		status int
		expr   string
	}{
		{`{"resourceType":"Patient","gender":"` + secret + `"}`, 400, "Patient.gender"},
		{`{"resourceType":"Patient","birthDate":"` + secret + `"}`, 400, "Patient.birthDate"},
		{`{"resourceType":"Patient","name":[{"given":["a",{"x":"` + secret + `"}]}]}`, 400, "Patient.name[0].given[1].x"},
		{`{"resourceType":"Patient","` + secret + `":1}`, 400, "Patient"}, // not key-like: not echoed
		{`{"resourceType":"Patient","nickName":1}`, 400, "Patient.nickName"},
		{`{"resourceType":"Observation","status":"final"}`, 400, "Observation.code"},
		{`{"resourceType":"NoSuchType"}`, 404, "resourceType"},
		{`{"resourceType":"Patient","id":"` + strings.Repeat("x", 65) + `"}`, 400, "id"},
		{`{"resourceType":"Patient"` + secret, 400, ""},
	} {
		_, ferr := p.Parse([]byte(tc.body))
		if ferr == nil || ferr.Status != tc.status {
			t.Fatalf("%s: error %v, want status %d", tc.body, ferr, tc.status)
		}
		oo := string(ferr.Outcome())
		if tc.expr != "" && !strings.Contains(oo, `"expression":["`+tc.expr+`"]`) {
			t.Fatalf("%s: outcome %s lacks expression %s", tc.body, oo, tc.expr)
		}
		if strings.Contains(oo+ferr.Error(), secret) {
			t.Fatalf("error leaks content: %s", oo)
		}
	}
}

// FuzzResourceBody: the body decoding path never panics; it either
// refuses with a 4xx Error, or produces a stored form that is valid JSON,
// parses again, and keeps the resource type.
func FuzzResourceBody(f *testing.F) {
	p := testParser(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		r, ferr := p.Parse(body)
		if ferr != nil {
			if ferr.Status < 400 || ferr.Status >= 500 {
				t.Fatalf("status %d for a bad body", ferr.Status)
			}
			var oo map[string]any
			if err := json.Unmarshal(ferr.Outcome(), &oo); err != nil {
				t.Fatalf("outcome is not JSON: %v", err)
			}
			return
		}
		js := r.Encode("fuzz", 2, time.Unix(1, 0))
		r2, ferr := p.Parse(js)
		if ferr != nil {
			t.Fatalf("stored form does not parse again: %v", ferr)
		}
		if r2.Type != r.Type || r2.ID != "fuzz" {
			t.Fatalf("type or id changed: %s/%s -> %s/%s", r.Type, r.ID, r2.Type, r2.ID)
		}
		if err := r.RewriteReferences(func(string) (string, bool, error) { return "Patient/x", true, nil }); err != nil {
			t.Fatalf("rewrite: %v", err)
		}
		if js := r.Encode("fuzz", 3, time.Unix(1, 0)); !json.Valid(js) {
			t.Fatalf("rewritten form is not JSON: %s", js)
		}
	})
}
