package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// transfer reads a member's journal transfer status from /mirror/status.
func (tr *tier) transfer(member string) (status string, records, seconds float64) {
	st := tr.memberStatus(member)
	tf, _ := st["transfer"].(map[string]any)
	if tf == nil {
		return "", 0, 0
	}
	status, _ = tf["status"].(string)
	records, _ = tf["behind_records"].(float64)
	seconds, _ = tf["behind_seconds"].(float64)
	return status, records, seconds
}

// fhirRaw sends a FHIR request to member with the operator's certificate
// and returns the status code and body as they came.
func (tr *tier) fhirRaw(method, member, path string, body []byte) (int, []byte) {
	tr.t.Helper()
	base, err := tr.client.MemberURL(member)
	if err != nil {
		tr.t.Fatal(err)
	}
	req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
	if len(body) > 0 {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := tr.client.HTTP.Do(req)
	if err != nil {
		tr.t.Fatalf("%s %s on %s: %v", method, path, member, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestAsyncMembersCatchUpAndReportingServesReads (issue 5, a): a dr async
// killed while the pair takes writes catches up when restarted (caught-up,
// equal content at quiescence); a reporting async serves FHIR reads,
// refuses writes with an OperationOutcome that says where writes go, and
// says in /mirror/status how far behind it is.
func TestAsyncMembersCatchUpAndReportingServesReads(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTierWith(t, tierOptions{async: true, reporting: true})
	tr.waitFor("c and d async", 20*time.Second, func() bool { return tr.status("c") == "async" && tr.status("d") == "async" })
	if r := tr.memberStatus("d")["role"]; r != "reporting" {
		t.Fatalf("d's status says role %v, want reporting", r)
	}

	// The dr member down while the pair takes writes.
	stop := make(chan struct{})
	wait := tr.writers(4, stop)
	time.Sleep(300 * time.Millisecond)
	tr.kill9("c")
	if s := tr.status("c"); s != "unreachable" {
		t.Fatalf("c answers (%s) after kill -9", s)
	}
	lastBefore := tr.journalLast("a")
	time.Sleep(2 * testQoS)
	if grown := tr.journalLast("a") - lastBefore; grown < 20 {
		t.Fatalf("the primary journaled only %d records while c was down", grown)
	}
	tr.start("c")
	tr.waitFor("c caught up after restart", 20*time.Second, func() bool { s, _, _ := tr.transfer("c"); return s == "caught-up" || s == "behind" })
	time.Sleep(300 * time.Millisecond)
	close(stop)
	acked, _ := wait()
	tr.waitFor("c caught-up at quiescence", 20*time.Second, func() bool { s, _, _ := tr.transfer("c"); return s == "caught-up" })
	tr.waitFor("equal content on a, b, c and d", 20*time.Second, func() bool {
		h := tr.hash("a")
		return tr.hash("b") == h && tr.hash("c") == h && tr.hash("d") == h
	})
	tr.checkAcked("c", acked)
	t.Logf("%d acknowledged writes, all on the restarted dr member", len(acked))

	// The reporting member serves FHIR reads of what the primary wrote.
	ctx := context.Background()
	var created struct{ ID string }
	if err := tr.client.Do(ctx, "POST", "a", "/fhir/Patient", []byte(`{"resourceType":"Patient","name":[{"family":"Reporting"}]}`), &created); err != nil || created.ID == "" {
		t.Fatalf("create on the primary: %v (id %q)", err, created.ID)
	}
	var onA []byte
	if err := tr.client.Do(ctx, "GET", "a", "/fhir/Patient/"+created.ID, nil, &onA); err != nil {
		t.Fatal(err)
	}
	tr.waitFor("the patient readable on d", 10*time.Second, func() bool {
		code, b := tr.fhirRaw("GET", "d", "/fhir/Patient/"+created.ID, nil)
		return code == 200 && bytes.Equal(b, onA)
	})
	if code, b := tr.fhirRaw("GET", "d", "/fhir/Patient?family=Reporting", nil); code != 200 || !strings.Contains(string(b), created.ID) {
		t.Fatalf("search on d: %d %.300s", code, b)
	}

	// ... and refuses writes, saying where they go; nothing is stored.
	lastD := tr.journalLast("d")
	code, b := tr.fhirRaw("POST", "d", "/fhir/Patient", []byte(`{"resourceType":"Patient"}`))
	outcome := outcomeText(t, b)
	if code != http.StatusMethodNotAllowed || !strings.Contains(outcome, "reporting") || !strings.Contains(outcome, "member a") {
		t.Fatalf("write on the reporting member: HTTP %d %q, want 405 naming the primary a", code, outcome)
	}
	code, b = tr.fhirRaw("PUT", "d", "/fhir/Patient/"+created.ID, onA)
	if code != http.StatusMethodNotAllowed {
		t.Fatalf("update on the reporting member: HTTP %d %s", code, b)
	}
	// A dr member is not the primary either: 503 (it may be promoted), naming the primary.
	code, b = tr.fhirRaw("POST", "c", "/fhir/Patient", []byte(`{"resourceType":"Patient"}`))
	if outcome := outcomeText(t, b); code != http.StatusServiceUnavailable || !strings.Contains(outcome, "member a") {
		t.Fatalf("write on the dr member: HTTP %d %q", code, outcome)
	}
	if tr.journalLast("d") != lastD || tr.journalLast("a") != tr.journalLast("c") {
		t.Fatal("a refused write reached a journal")
	}

	// Behind: with its link cut, d keeps serving what it has and says for
	// how long it has heard nothing; healed, it catches up.
	tr.proxies["a->d"].cut()
	tr.waitFor("d disconnected for more than the QoS", 10*time.Second, func() bool {
		s, _, sec := tr.transfer("d")
		return s == "disconnected" && sec >= testQoS.Seconds()
	})
	if err := tr.put(ctx, "a", "while-d-cut", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.get("d", "while-d-cut"); err == nil {
		t.Fatal("d has a write made while its link was cut")
	}
	if code, _ := tr.fhirRaw("GET", "d", "/fhir/Patient/"+created.ID, nil); code != 200 {
		t.Fatalf("d stopped serving reads while behind: %d", code)
	}
	tr.proxies["a->d"].heal()
	tr.waitFor("d caught up after the cut", 20*time.Second, func() bool {
		s, rec, sec := tr.transfer("d")
		v, _ := tr.get("d", "while-d-cut")
		return s == "caught-up" && rec == 0 && sec == 0 && v == "1"
	})
}

// outcomeText is the diagnostics of an OperationOutcome body (fails the
// test when b is not one).
func outcomeText(t *testing.T, b []byte) string {
	t.Helper()
	var oo struct {
		ResourceType string
		Issue        []struct{ Code, Diagnostics string }
	}
	if err := json.Unmarshal(b, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("not an OperationOutcome: %v %.300s", err, b)
	}
	var parts []string
	for _, i := range oo.Issue {
		parts = append(parts, i.Code+": "+i.Diagnostics)
	}
	return strings.Join(parts, "; ")
}

// journalLast is a member's last journal LSN from its status (-1 unreachable).
func (tr *tier) journalLast(member string) int {
	st := tr.memberStatus(member)
	j, _ := st["journal"].(map[string]any)
	if j == nil {
		return -1
	}
	v, _ := j["last_lsn"].(float64)
	return int(v)
}
