package access_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/access"
)

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func keys(t *testing.T) (hs, rs, es access.Key) {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hs = access.Key{ID: "hs-1", Alg: access.HS256, Secret: []byte("0123456789abcdef0123456789abcdef")}
	rs = access.Key{ID: "rs-1", Alg: access.RS256, Public: &rk.PublicKey, Private: rk}
	es = access.Key{ID: "es-1", Alg: access.ES256, Public: &ek.PublicKey, Private: ek}
	return
}

func verifier(t *testing.T, ks ...access.Key) *access.Verifier {
	t.Helper()
	v, err := access.NewVerifier(access.Config{Keys: ks, Issuer: "tandem", Audience: "fhir", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func grant(scope string) access.Grant {
	return access.Grant{Subject: "dr-who", ClientID: "ehr", Scope: scope, Issuer: "tandem", Audience: "fhir", TTL: time.Hour, Now: now}
}

func mint(t *testing.T, k access.Key, g access.Grant) string {
	t.Helper()
	tok, err := access.Mint(k, g)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVerifyAcceptsEveryAlgorithmAndRotation(t *testing.T) {
	hs, rs, es := keys(t)
	v := verifier(t, hs, rs, es)
	for _, k := range []access.Key{hs, rs, es} {
		t.Run(k.Alg, func(t *testing.T) {
			g := grant("user/Observation.rs patient/*.read openid system/tandem.admin")
			g.Patient = "p1"
			p, err := v.Verify(mint(t, k, g))
			if err != nil {
				t.Fatal(err)
			}
			if p.Subject != "dr-who" || p.ClientID != "ehr" || p.Patient != "p1" || !p.Admin || len(p.Scopes) != 2 {
				t.Fatalf("principal %+v", p)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	hs, rs, es := keys(t)
	v := verifier(t, hs, rs)
	other := hs
	other.Secret = []byte("another-secret-another-secret-xx")
	unknown := hs
	unknown.ID = "hs-unknown"
	tamper := func(tok string) string {
		parts := strings.Split(tok, ".")
		parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","scope":"system/*.cruds","exp":9999999999}`))
		return strings.Join(parts, ".")
	}
	algNone := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "mallory", "scope": "system/*.cruds", "exp": now.Add(time.Hour).Unix(), "iss": "tandem", "aud": "fhir"})
		tok.Header["kid"] = "hs-1"
		s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Algorithm confusion: HS256 signed with the RSA public key's bytes, under the RSA kid.
	confusion := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "mallory", "exp": now.Add(time.Hour).Unix(), "iss": "tandem", "aud": "fhir"})
		tok.Header["kid"] = "rs-1"
		s, err := tok.SignedString([]byte("whatever-the-public-key-bytes-are"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	expired := grant("user/*.rs")
	expired.Now = now.Add(-2 * time.Hour)
	future := grant("user/*.rs")
	future.Now = now.Add(time.Hour)
	skewed := grant("user/*.rs")
	skewed.Now = now.Add(-time.Hour - 10*time.Second) // expired 10s ago: inside the leeway
	wrongIss := grant("user/*.rs")
	wrongIss.Issuer = "evil"
	wrongAud := grant("user/*.rs")
	wrongAud.Audience = "other"
	cases := []struct {
		name string
		tok  string
		ok   bool
	}{
		{"valid", mint(t, hs, grant("user/*.rs")), true},
		{"inside the leeway", mint(t, hs, skewed), true},
		{"expired", mint(t, hs, expired), false},
		{"not yet valid", mint(t, hs, future), false},
		{"wrongly signed", mint(t, other, grant("user/*.rs")), false},
		{"unknown kid", mint(t, unknown, grant("user/*.rs")), false},
		{"untrusted key type", mint(t, es, grant("user/*.rs")), false},
		{"tampered payload", tamper(mint(t, rs, grant("patient/*.rs"))), false},
		{"alg none", algNone(), false},
		{"alg confusion", confusion(), false},
		{"wrong issuer", mint(t, hs, wrongIss), false},
		{"wrong audience", mint(t, hs, wrongAud), false},
		{"garbage", "not.a.token", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := v.Verify(c.tok)
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			fe := fhir.AsError(err)
			if fe.Status != http.StatusUnauthorized {
				t.Fatalf("status %d", fe.Status)
			}
			if strings.Contains(err.Error(), c.tok) {
				t.Fatal("the error carries the token")
			}
		})
	}
}

func TestAuthenticateNeedsBearer(t *testing.T) {
	hs, _, _ := keys(t)
	v := verifier(t, hs)
	r := httptest.NewRequest("GET", "/fhir/Patient", nil)
	if _, err := v.Authenticate(r); fhir.AsError(err).Status != 401 {
		t.Fatalf("no header: %v", err)
	}
	r.Header.Set("Authorization", "Basic abc")
	if _, err := v.Authenticate(r); fhir.AsError(err).Status != 401 {
		t.Fatalf("basic: %v", err)
	}
	r.Header.Set("Authorization", "bearer "+mint(t, hs, grant("user/*.rs")))
	if _, err := v.Authenticate(r); err != nil {
		t.Fatal(err)
	}
}

func TestParseScope(t *testing.T) {
	cases := []struct {
		in   string
		want string // "" = not a resource scope
	}{
		{"patient/Observation.rs", "patient/Observation.rs"},
		{"user/*.cruds", "user/*.cruds"},
		{"system/Patient.r", "system/Patient.r"},
		{"patient/*.read", "patient/*.rs"},
		{"user/Encounter.write", "user/Encounter.cud"},
		{"user/*.*", "user/*.cruds"},
		{"patient/Observation.sr", ""}, // out of order
		{"patient/Observation.rr", ""},
		{"patient/Observation.rs?category=laboratory", ""},
		{"patient/Observation.", ""},
		{"clinic/Observation.r", ""},
		{"openid", ""},
		{"launch/patient", ""},
		{access.AdminScope, ""},
		{"user/observation.r", ""},
	}
	for _, c := range cases {
		sc, ok := access.ParseScope(c.in)
		got := ""
		if ok {
			got = sc.String()
		}
		if got != c.want {
			t.Errorf("ParseScope(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestPermits(t *testing.T) {
	obs := func(patient string) []byte {
		return []byte(`{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/` + patient + `"}}`)
	}
	sc := func(ss ...string) []access.Scope {
		var out []access.Scope
		for _, s := range ss {
			x, ok := access.ParseScope(s)
			if !ok {
				t.Fatalf("scope %q", s)
			}
			out = append(out, x)
		}
		return out
	}
	pat := &access.Principal{Subject: "app", Patient: "p1", Scopes: sc("patient/*.rs", "patient/Observation.c")}
	clin := &access.Principal{Subject: "dr", Scopes: sc("user/Patient.rs", "user/Encounter.cruds")}
	noPatient := &access.Principal{Subject: "app", Scopes: sc("patient/*.rs")}
	cases := []struct {
		name   string
		p      *access.Principal
		typ    string
		letter byte
		body   []byte
		want   bool
	}{
		{"own observation", pat, "Observation", access.Read, obs("p1"), true},
		{"other's observation", pat, "Observation", access.Read, obs("p2"), false},
		{"own patient", pat, "Patient", access.Read, []byte(`{"resourceType":"Patient","id":"p1"}`), true},
		{"other patient", pat, "Patient", access.Read, []byte(`{"resourceType":"Patient","id":"p2"}`), false},
		{"outside any compartment", pat, "Practitioner", access.Read, []byte(`{"resourceType":"Practitioner","id":"x"}`), false},
		{"create own", pat, "Observation", access.Create, obs("p1"), true},
		{"update not granted", pat, "Observation", access.Update, obs("p1"), false},
		{"tombstone", pat, "Observation", access.Read, nil, false},
		{"absolute reference", pat, "Observation", access.Read, []byte(`{"subject":{"reference":"https://x.org/fhir/Patient/p1"}}`), true},
		{"clinician no Observation", clin, "Observation", access.Read, obs("p1"), false},
		{"clinician Patient", clin, "Patient", access.Read, []byte(`{"id":"p9"}`), true},
		{"clinician tombstone", clin, "Encounter", access.Delete, nil, true},
		{"patient scope without patient claim", noPatient, "Observation", access.Read, obs("p1"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.p.Permits(c.typ, c.letter, c.body); got != c.want {
				t.Fatalf("Permits = %v, want %v", got, c.want)
			}
		})
	}
	if !pat.Allows("Observation", access.Search) || clin.Allows("Observation", access.Search) || noPatient.Allows("Observation", access.Read) {
		t.Fatal("Allows")
	}
}

func TestPatientsOfEncounterParticipant(t *testing.T) {
	body := []byte(`{"resourceType":"Claim","patient":{"reference":"Patient/a"},"provider":{"reference":"Patient/zz"},"payee":{"party":{"reference":"Patient/b"}}}`)
	got := access.Patients("Claim", body)
	if len(got) != 2 || got[0] != "a" && got[1] != "a" {
		t.Fatalf("Patients = %v", got)
	}
	for _, id := range got {
		if id == "zz" {
			t.Fatal("a reference outside the compartment elements counted")
		}
	}
}
