package fhir

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// decodeObjectByTokens is the json.Decoder-based decodeObject that the byte
// scanner replaced, kept as the oracle FuzzDecodeObject compares it with.
func decodeObjectByTokens(b []byte) ([]member, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	var ms []member
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key := tok.(string)
		if seen[key] {
			return nil, false
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, false
		}
		ms = append(ms, member{key: key, raw: buf.Bytes()})
	}
	if _, err := dec.Token(); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return ms, true
}

func sameMembers(a, b []member) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].key != b[i].key || !bytes.Equal(a[i].raw, b[i].raw) {
			return false
		}
	}
	return true
}

// FuzzDecodeObject: the byte scanner accepts exactly the bodies the token
// decoder accepted, and splits them into the same members (keys decoded the
// same way, values compacted the same way).
func FuzzDecodeObject(f *testing.F) {
	for _, s := range []string{
		`{}`, ` { "a" : 1 , "b" : [1, {"c": "}]"}] } `, `{"a":"x\"y\\","b":null,"c":true,"d":-1.5e3}`,
		`{"\u00e9":1,"é":2}`, `{"a\"b":{"c":[[],{}]}}`, `{"a":1,}`, `{"a":1}{}`, `[1]`, `{"a":1,"a":2}`, "{\"\xff\":1}",
		`{"a":"\ud800"}`, `{"a" 1}`, `"x"`, ``, `{"a":[1,2]]}`,
	} {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob("../../shared/testdata/fhir-r4-examples/*.json")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ferr := decodeObject(b)
		want, ok := decodeObjectByTokens(b)
		if (ferr == nil) != ok {
			t.Fatalf("accepted by the scanner: %v, by the token decoder: %v (%v)", ferr == nil, ok, ferr)
		}
		if ok && !sameMembers(got, want) {
			t.Fatalf("members differ:\nscanner %q\ndecoder %q", got, want)
		}
	})
}
