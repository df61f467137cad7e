package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tandemhealth/tandem/fhir/access"
	"github.com/tandemhealth/tandem/fhir/server"
)

var testKey = access.Key{ID: "test-1", Alg: access.HS256, Secret: []byte("test-secret-test-secret-test-secret")}

func testVerifier(tb testing.TB) *access.Verifier {
	tb.Helper()
	v, err := access.NewVerifier(access.Config{Keys: []access.Key{testKey}})
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// token mints a bearer header value for scope (and patient context).
func token(tb testing.TB, subject, scope, patient string) string {
	tb.Helper()
	tok, err := access.Mint(testKey, access.Grant{Subject: subject, ClientID: subject + "-app", Scope: scope, Patient: patient, TTL: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	return "Bearer " + tok
}

// accessNode is a node with access checks and audit on.
func accessNode(tb testing.TB) *node {
	tb.Helper()
	n := newNode(tb, vfs.NewMem(), "n", server.Options{Access: testVerifier(tb), Audit: true})
	tb.Cleanup(func() { n.h.Close(context.Background()) })
	return n
}

// loaded is a Synthea load: every created resource as Type/id, and which
// patient each bundle was about.
type loaded struct {
	refs     []string // Type/id
	patients []string // Patient ids, one per bundle
	byType   map[string][]string
}

func loadSynthea(tb testing.TB, n *node, auth string, files []string) *loaded {
	tb.Helper()
	l := &loaded{byType: map[string][]string{}}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		rec := n.do(tb, "POST", "", body, "Authorization", auth)
		resp := wantStatus(tb, rec, http.StatusOK)
		for _, e := range resp["entry"].([]any) {
			loc := e.(map[string]any)["response"].(map[string]any)["location"].(string)
			parts := strings.Split(loc, "/")
			ref := parts[0] + "/" + parts[1]
			l.refs = append(l.refs, ref)
			l.byType[parts[0]] = append(l.byType[parts[0]], parts[1])
			if parts[0] == "Patient" {
				l.patients = append(l.patients, parts[1])
			}
		}
	}
	return l
}

const adminScope = "system/*.cruds " + access.AdminScope

func entryRefs(tb testing.TB, body []byte) []string {
	tb.Helper()
	var b struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			} `json:"resource"`
			Response struct{ Status string } `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, e := range b.Entry {
		if e.Resource.ResourceType != "" {
			out = append(out, e.Resource.ResourceType+"/"+e.Resource.ID)
		}
	}
	return out
}

// TestScopesHideObservations: a token without Observation read sees no
// Observation through any interaction that returns resources.
func TestScopesHideObservations(t *testing.T) {
	n := accessNode(t)
	l := loadSynthea(t, n, token(t, "loader", adminScope, ""), dataFiles(t, "synthea", 1)[:1])
	obs := l.byType["Observation"][0]
	clin := token(t, "dr-a", "user/Patient.rs user/Encounter.rs user/Condition.rs", "")
	get := func(path string) *httptest.ResponseRecorder { return n.do(t, "GET", path, nil, "Authorization", clin) }

	for _, path := range []string{"/Observation/" + obs, "/Observation/" + obs + "/_history/1", "/Observation/" + obs + "/_history",
		"/Observation", "/Observation?_id=" + obs, "/Observation/_history"} {
		rec := get(path)
		wantStatus(t, rec, http.StatusForbidden)
	}
	// System history is allowed (s on some type) but carries no Observation.
	rec := get("/_history?_count=1000")
	wantStatus(t, rec, http.StatusOK)
	for _, ref := range entryRefs(t, rec.Body.Bytes()) {
		if strings.HasPrefix(ref, "Observation/") {
			t.Fatalf("system history shows %s", ref)
		}
	}
	if !strings.Contains(rec.Body.String(), `"Patient/`) {
		t.Fatal("system history shows no Patient at all")
	}
	// Batch and transaction GET entries.
	bundle := func(typ string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"` + typ + `","entry":[{"request":{"method":"GET","url":"Observation/` + obs + `"}},{"request":{"method":"GET","url":"Patient/` + l.patients[0] + `"}}]}`)
	}
	rb := n.do(t, "POST", "", bundle("batch"), "Authorization", clin)
	wantStatus(t, rb, http.StatusOK)
	if refs := entryRefs(t, rb.Body.Bytes()); len(refs) != 1 || refs[0] != "Patient/"+l.patients[0] {
		t.Fatalf("batch returned %v", refs)
	}
	if !strings.Contains(rb.Body.String(), `"403 Forbidden"`) {
		t.Fatal("batch Observation entry not refused")
	}
	wantStatus(t, n.do(t, "POST", "", bundle("transaction"), "Authorization", clin), http.StatusForbidden)
	// The same token may read the Patient, but no Observation reaches it
	// through _include, _revinclude or $everything either.
	wantStatus(t, n.do(t, "GET", "/Patient/"+l.patients[0], nil, "Authorization", clin), http.StatusOK)
	p := l.patients[0]
	for _, path := range []string{
		"/Patient?_id=" + p + "&_revinclude=Observation:patient&_revinclude=Encounter:patient",
		"/Encounter?patient=" + p + "&_revinclude=Observation:encounter",
		"/Patient/" + p + "/$everything?_count=1000",
	} {
		rec := get(path)
		wantStatus(t, rec, http.StatusOK)
		refs := entryRefs(t, rec.Body.Bytes())
		var others int
		for _, ref := range refs {
			if strings.HasPrefix(ref, "Observation/") {
				t.Fatalf("%s shows %s", path, ref)
			}
			if !strings.HasPrefix(ref, "Patient/") {
				others++
			}
		}
		if others == 0 {
			t.Fatalf("%s returned nothing but the Patient (%v): the test would not notice a leak", path, refs)
		}
	}
	// The admin token does see the Observations the same way: the
	// checks above can fail.
	rec = n.do(t, "GET", "/Patient/"+p+"/$everything?_count=1000", nil, "Authorization", token(t, "loader", adminScope, ""))
	wantStatus(t, rec, http.StatusOK)
	if !strings.Contains(rec.Body.String(), `"resourceType":"Observation"`) {
		t.Fatal("$everything with every scope shows no Observation")
	}
	// An _include from Observation needs Observation search: refused.
	wantStatus(t, get("/Observation?patient="+p+"&_include=Observation:patient"), http.StatusForbidden)
}

// TestPatientTokenSeesOnlyItsCompartment loads two patients and reads with
// a patient-app token for the first.
func TestPatientTokenSeesOnlyItsCompartment(t *testing.T) {
	n := accessNode(t)
	l := loadSynthea(t, n, token(t, "loader", adminScope, ""), dataFiles(t, "synthea", 2)[:2])
	me, other := l.patients[0], l.patients[1]
	app := token(t, "patient-"+me, "patient/*.rs launch/patient openid", me)

	wantStatus(t, n.do(t, "GET", "/Patient/"+me, nil, "Authorization", app), http.StatusOK)
	wantStatus(t, n.do(t, "GET", "/Patient/"+other, nil, "Authorization", app), http.StatusNotFound)
	wantStatus(t, n.do(t, "GET", "/Patient/"+other+"/_history", nil, "Authorization", app), http.StatusNotFound)

	inMine := func(ref string) bool {
		typ, id, _ := strings.Cut(ref, "/")
		rec := n.do(t, "GET", "/"+ref, nil, "Authorization", token(t, "loader", adminScope, ""))
		wantStatus(t, rec, http.StatusOK)
		return access.InCompartment(typ, rec.Body.Bytes(), me) || (typ == "Patient" && id == me)
	}
	var mine, theirs int
	for _, ref := range l.refs {
		rec := n.do(t, "GET", "/"+ref, nil, "Authorization", app)
		switch {
		case inMine(ref):
			wantStatus(t, rec, http.StatusOK)
			mine++
		default:
			wantStatus(t, rec, http.StatusNotFound)
			theirs++
		}
	}
	if mine == 0 || theirs == 0 {
		t.Fatalf("mine %d, theirs %d: the data does not exercise both", mine, theirs)
	}
	for _, path := range []string{"/Observation?_count=1000", "/Encounter?_count=1000", "/_history?_count=1000", "/Observation/_history?_count=1000", "/Patient"} {
		rec := n.do(t, "GET", path, nil, "Authorization", app)
		wantStatus(t, rec, http.StatusOK)
		refs := entryRefs(t, rec.Body.Bytes())
		if len(refs) == 0 {
			t.Fatalf("%s: nothing visible", path)
		}
		for _, ref := range refs {
			if !inMine(ref) {
				t.Fatalf("%s shows %s outside the patient's compartment", path, ref)
			}
		}
	}
}

// TestPatientTokenWritesStayInCompartment: creates, updates and deletes by
// a patient-scoped token must land in its own compartment.
func TestPatientTokenWritesStayInCompartment(t *testing.T) {
	n := accessNode(t)
	admin := token(t, "loader", adminScope, "")
	for _, id := range []string{"me", "other"} {
		wantStatus(t, n.do(t, "PUT", "/Patient/"+id, []byte(`{"resourceType":"Patient","id":"`+id+`"}`), "Authorization", admin), http.StatusCreated)
	}
	app := token(t, "app", "patient/Observation.cruds patient/Patient.r", "me")
	obs := func(p string) []byte {
		return []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + p + `"}}`)
	}
	wantStatus(t, n.do(t, "POST", "/Observation", obs("me"), "Authorization", app), http.StatusCreated)
	wantStatus(t, n.do(t, "POST", "/Observation", obs("other"), "Authorization", app), http.StatusForbidden)
	wantStatus(t, n.do(t, "PUT", "/Observation/x1", append(obs("other")[:len(obs("other"))-1], `,"id":"x1"}`...), "Authorization", app), http.StatusForbidden)
	wantStatus(t, n.do(t, "PUT", "/Patient/me", []byte(`{"resourceType":"Patient","id":"me"}`), "Authorization", app), http.StatusForbidden) // no u on Patient
	tx := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:a","resource":` + string(obs("me")) + `,"request":{"method":"POST","url":"Observation"}},
		{"fullUrl":"urn:uuid:b","resource":` + string(obs("other")) + `,"request":{"method":"POST","url":"Observation"}}]}`)
	wantStatus(t, n.do(t, "POST", "", tx, "Authorization", app), http.StatusForbidden)
	// A user-scoped write moves other's Observation; the app may not delete it.
	rec := n.do(t, "PUT", "/Observation/x2", append(obs("other")[:len(obs("other"))-1], `,"id":"x2"}`...), "Authorization", admin)
	wantStatus(t, rec, http.StatusCreated)
	wantStatus(t, n.do(t, "DELETE", "/Observation/x2", nil, "Authorization", app), http.StatusForbidden)
	wantStatus(t, n.do(t, "PUT", "/Observation/x2", append(obs("me")[:len(obs("me"))-1], `,"id":"x2"}`...), "Authorization", app), http.StatusForbidden)
	// Refused writes changed nothing: x2 is at version 1, x1 does not
	// exist, and only two Observations exist.
	rec = n.do(t, "GET", "/Observation/x2", nil, "Authorization", admin)
	wantStatus(t, rec, http.StatusOK)
	if rec.Header().Get("ETag") != `W/"1"` {
		t.Fatalf("x2 changed: ETag %s", rec.Header().Get("ETag"))
	}
	wantStatus(t, n.do(t, "GET", "/Observation/x1", nil, "Authorization", admin), http.StatusNotFound)
	if refs := entryRefs(t, n.do(t, "GET", "/Observation", nil, "Authorization", admin).Body.Bytes()); len(refs) != 2 {
		t.Fatalf("Observations %v, want 2", refs)
	}
}

// TestTokensRefused: missing, expired, wrongly signed, unknown kid and
// alg=none tokens get 401 with WWW-Authenticate and an OperationOutcome.
func TestTokensRefused(t *testing.T) {
	n := accessNode(t)
	wantStatus(t, n.do(t, "PUT", "/Patient/p", []byte(`{"resourceType":"Patient","id":"p"}`), "Authorization", token(t, "a", adminScope, "")), http.StatusCreated)
	mintWith := func(k access.Key, g access.Grant) string {
		tok, err := access.Mint(k, g)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	g := access.Grant{Subject: "x", Scope: "system/*.cruds", TTL: time.Hour}
	expired := g
	expired.Now = time.Now().Add(-2 * time.Hour)
	wrong := testKey
	wrong.Secret = []byte("some-other-secret-some-other-secret")
	unknown := testKey
	unknown.ID = "nobody"
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "x", "scope": "system/*.cruds", "exp": time.Now().Add(time.Hour).Unix()})
	none.Header["kid"] = testKey.ID
	noneTok, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	cases := map[string]string{
		"missing":        "",
		"not bearer":     "Basic eDp5",
		"expired":        mintWith(testKey, expired),
		"wrongly signed": mintWith(wrong, g),
		"unknown kid":    mintWith(unknown, g),
		"alg none":       "Bearer " + noneTok,
	}
	for name, auth := range cases {
		t.Run(name, func(t *testing.T) {
			var rec *httptest.ResponseRecorder
			if auth == "" {
				rec = n.do(t, "GET", "/Patient/p", nil)
			} else {
				rec = n.do(t, "GET", "/Patient/p", nil, "Authorization", auth)
			}
			wantStatus(t, rec, http.StatusUnauthorized)
			if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("WWW-Authenticate %q", rec.Header().Get("WWW-Authenticate"))
			}
			if bytes.Contains(rec.Body.Bytes(), []byte(`"id":"p"`)) {
				t.Fatal("resource content in a refusal")
			}
		})
	}
	// /metadata needs no token.
	wantStatus(t, n.do(t, "GET", "/metadata", nil), http.StatusOK)
	// Audit search needs the admin scope.
	wantStatus(t, n.do(t, "GET", "/AuditEvent", nil, "Authorization", token(t, "dr", "user/*.cruds", "")), http.StatusForbidden)
	wantStatus(t, n.do(t, "GET", "/AuditEvent", nil, "Authorization", token(t, "ad", access.AdminScope, "")), http.StatusOK)
}

// TestIdempotencyKeyIsPerPrincipal: another token reusing a key gets a
// 422, not the first caller's stored response.
func TestIdempotencyKeyIsPerPrincipal(t *testing.T) {
	n := accessNode(t)
	body := []byte(`{"resourceType":"Patient","active":true}`)
	a := token(t, "a", "user/Patient.cruds", "")
	b := token(t, "b", "user/Patient.cruds", "")
	wantStatus(t, n.do(t, "POST", "/Patient", body, "Authorization", a, "Idempotency-Key", "k1"), http.StatusCreated)
	wantStatus(t, n.do(t, "POST", "/Patient", body, "Authorization", a, "Idempotency-Key", "k1"), http.StatusCreated)
	wantStatus(t, n.do(t, "POST", "/Patient", body, "Authorization", b, "Idempotency-Key", "k1"), http.StatusUnprocessableEntity)
}
