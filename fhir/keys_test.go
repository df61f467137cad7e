package fhir

import "testing"

func TestParseCurrentKey(t *testing.T) {
	for _, c := range []struct {
		key     string
		typ, id string
		ok      bool
	}{
		{string(CurrentKey("Patient", "p-1")), "Patient", "p-1", true},
		{"c/Observation/abc.def", "Observation", "abc.def", true},
		{string(VersionKey("Patient", "p-1", 2)), "", "", false},
		{"c/Patient/", "", "", false},
		{"c//x", "", "", false},
		{"c/Patient/bad id", "", "", false},
		{"h/whatever", "", "", false},
	} {
		typ, id, ok := ParseCurrentKey([]byte(c.key))
		if typ != c.typ || id != c.id || ok != c.ok {
			t.Errorf("ParseCurrentKey(%q) = %q, %q, %v; want %q, %q, %v", c.key, typ, id, ok, c.typ, c.id, c.ok)
		}
	}
}
