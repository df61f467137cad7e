package requestid

import (
	"net/http"
	"strings"
	"testing"
)

func TestOfKeepsASaneIDAndReplacesOthers(t *testing.T) {
	for _, tc := range []struct {
		sent string
		keep bool
	}{
		{"req-1", true},
		{strings.Repeat("a", MaxLen), true},
		{strings.Repeat("a", MaxLen+1), false},
		{"", false},
		{"has space", false},
		{"line\nbreak", false},
		{"ünïcode", false},
	} {
		r, _ := http.NewRequest("GET", "/fhir/Patient/1", nil)
		if tc.sent != "" {
			r.Header[Header] = []string{tc.sent}
		}
		got := Of(r)
		if tc.keep && got != tc.sent {
			t.Errorf("%q: got %q, want it kept", tc.sent, got)
		}
		if !tc.keep && (got == tc.sent || len(got) != 32) {
			t.Errorf("%q: got %q, want a new 32-digit id", tc.sent, got)
		}
	}
}
