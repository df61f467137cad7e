package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/statefile"
	"github.com/tandemhealth/tandem/services/ctl"
	"github.com/tandemhealth/tandem/services/node"
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
	// Nothing refused was stored: c and d come to hold exactly a's FHIR
	// content. (Their journals keep moving meanwhile — a journals the audit
	// events they forward — so comparing journal LSNs at one instant races.)
	tr.waitFor("c and d holding exactly the primary's FHIR content", 10*time.Second, func() bool {
		h := tr.hash("a")
		return tr.hash("c") == h && tr.hash("d") == h
	})

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

// TestFormerPrimaryQuarantinesUnacknowledgedTail (issue 5, c): the primary
// is cut off from its backup and the arbiter, so the FHIR writes it then
// journals can never commit (nobody acknowledges them); the backup takes
// over with the arbiter's grant and the old primary is killed. Restarted,
// it moves exactly that tail to a quarantine report — LSN range,
// databases, keys and the FHIR resources — and catches up as backup.
func TestFormerPrimaryQuarantinesUnacknowledgedTail(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t)
	ctx := context.Background()
	acked := tr.putN(ctx, "a", "before-", 10)
	committed := tr.commitLSN("a")

	tr.proxies["a->b"].cut()
	tr.proxies["b->a"].cut()
	tr.proxies["a->arbiter"].cut()
	// Writes the isolated primary journals but can never acknowledge.
	ids := []string{"q-1", "q-2", "q-3"}
	for _, id := range ids {
		wctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		err := tr.client.Do(wctx, "PUT", "a", "/fhir/Patient/"+id, []byte(`{"resourceType":"Patient","id":"`+id+`","name":[{"family":"Unacknowledged"}]}`), nil)
		cancel()
		if err == nil {
			t.Fatalf("the isolated primary acknowledged Patient/%s", id)
		}
	}
	if last := tr.journalLast("a"); last < committed+len(ids) {
		t.Fatalf("a journaled up to LSN %d, want the %d unacknowledged writes after %d", last, len(ids), committed)
	}
	tr.waitFor("a in-trouble, b primary in epoch 2", 30*time.Second, func() bool {
		return tr.status("a") == "in-trouble" && tr.status("b") == "primary" && tr.epoch("b") == 2
	})
	tr.kill9("a")
	for _, p := range tr.proxies {
		p.heal()
	}
	if err := tr.put(ctx, "b", "after-takeover", "v"); err != nil {
		t.Fatal(err)
	}
	acked["after-takeover"] = "v"
	tr.rejoin("a", "b", acked)

	reports := tr.quarantineReports("a")
	if len(reports) != 1 {
		t.Fatalf("%d quarantine reports on a, want 1", len(reports))
	}
	rep := reports[0]
	t.Logf("quarantine report: kept up to %d, LSN %d-%d, per database %v, %d FHIR resources", rep.AfterLSN, rep.FirstLSN, rep.LastLSN, rep.Databases, rep.Resources)
	if rep.Member != "a" || rep.Tier != "records" || rep.AfterLSN < uint64(committed) || rep.FirstLSN != rep.AfterLSN+1 || rep.LastLSN < rep.FirstLSN+uint64(len(ids))-1 {
		t.Fatalf("report range: member %s tier %s kept up to %d (committed %d), quarantined %d-%d", rep.Member, rep.Tier, rep.AfterLSN, committed, rep.FirstLSN, rep.LastLSN)
	}
	if rep.Databases["fhir"] < len(ids) || rep.Resources < len(ids) {
		t.Fatalf("report counts %v records per database and %d resources, want at least %d in fhir", rep.Databases, rep.Resources, len(ids))
	}
	found := map[string]bool{}
	for _, r := range rep.Records {
		if r.LSN < rep.FirstLSN || r.LSN > rep.LastLSN {
			t.Fatalf("record LSN %d outside the report's range", r.LSN)
		}
		keys := map[string]bool{}
		for _, op := range r.Ops {
			keys[op.Key] = true
		}
		for _, res := range r.Resources {
			if res.Type == "Patient" {
				if !keys["c/Patient/"+res.ID] || res.VersionID != 1 {
					t.Fatalf("resource %+v of LSN %d: key missing from the record's ops or wrong version", res, r.LSN)
				}
				found[res.ID] = true
			}
		}
	}
	for _, id := range ids {
		if !found[id] {
			t.Fatalf("Patient/%s is not named in the quarantine report", id)
		}
		if code, _ := tr.fhirRaw("GET", "b", "/fhir/Patient/"+id, nil); code != http.StatusNotFound {
			t.Fatalf("Patient/%s on the new primary: HTTP %d, want 404", id, code)
		}
	}
}

// commitLSN is a member's commit LSN from its status.
func (tr *tier) commitLSN(member string) int {
	st := tr.memberStatus(member)
	j, _ := st["journal"].(map[string]any)
	v, _ := j["commit_lsn"].(float64)
	return int(v)
}

// quarantineReports reads member's quarantine reports.
func (tr *tier) quarantineReports(member string) []node.QuarantineReport {
	tr.t.Helper()
	files, _ := filepath.Glob(filepath.Join(tr.dir, member, "quarantine", "*.json"))
	var out []node.QuarantineReport
	for _, f := range files {
		var rep node.QuarantineReport
		if err := statefile.Load(f, &rep); err != nil {
			tr.t.Fatalf("quarantine report %s: %v", f, err)
		}
		out = append(out, rep)
	}
	return out
}

// TestBehindBackupTakesOverWithTheAgentsTail (issue 5, b): the link
// between primary and backup is cut while the primary takes writes; the
// primary records the backup not active at the arbiter and commits alone,
// so the backup is behind for real. Then the primary is killed -9: the
// backup may take over only through the primary's agent, which fences the
// primary and hands over the journal tail; every acknowledged write is on
// the new primary. (SIGSTOP does not make a backup behind: the kernel
// keeps receiving the primary's frames into the stopped process's socket.)
func TestBehindBackupTakesOverWithTheAgentsTail(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t)
	stop := make(chan struct{})
	wait := tr.writers(4, stop)
	time.Sleep(300 * time.Millisecond)
	tr.proxies["a->b"].cut()
	tr.proxies["b->a"].cut()
	tr.waitFor("the arbiter records b not active", 15*time.Second, func() bool {
		var arb failover.ArbiterState
		return statefile.Load(filepath.Join(tr.dir, "arbiter", "records.arbiter.json"), &arb) == nil &&
			arb.Record.Version.Epoch == 1 && !arb.Record.BackupActive
	})
	if links, _ := tr.memberStatus("a")["links"].(map[string]any); links["b"] != false {
		t.Fatalf("a's link to b is not down: %v", links)
	}
	alone := tr.commitLSN("a")
	time.Sleep(time.Second)
	if grown := tr.commitLSN("a") - alone; grown < 20 {
		t.Fatalf("a committed only %d records alone: b is not behind by much", grown)
	}
	if s, e := tr.status("b"), tr.epoch("b"); s != "backup" || e != 1 {
		t.Fatalf("b took over while a was alive: %s in epoch %d", s, e)
	}
	tr.kill9("a")
	close(stop)
	acked, _ := wait()
	tr.waitFor("b primary in epoch 2", 30*time.Second, func() bool { return tr.status("b") == "primary" && tr.epoch("b") == 2 })
	if _, err := os.Stat(filepath.Join(tr.dir, "a", "FENCED")); err != nil {
		t.Fatalf("a's data directory carries no fence mark: %v", err)
	}
	// The tail came from the agent, before the promotion.
	logText, _ := os.ReadFile(filepath.Join(tr.dir, "b.log"))
	tail, promoted := -1, -1
	received := 0
	for i, line := range strings.Split(string(logText), "\n") {
		switch {
		case strings.Contains(line, `"msg":"mirror agent-tail"`) && tail < 0:
			tail = i
			var ev struct{ Detail string }
			json.Unmarshal([]byte(line), &ev)
			fmt.Sscanf(ev.Detail, "%d records", &received)
			t.Logf("b: %s", ev.Detail)
		case strings.Contains(line, `"msg":"promoted to primary"`):
			if !strings.Contains(line, `"reason":"agent-fence+tail"`) {
				t.Fatalf("b was promoted otherwise than through the agent: %s", line)
			}
		case strings.Contains(line, `"msg":"mirror promote"`) && promoted < 0: // the core's events, in its order
			promoted = i
		}
	}
	if tail < 0 || promoted < tail || received < 20 {
		t.Fatalf("b's log: agent tail at line %d with %d records, promotion at line %d; want the tail (>= 20 records) first", tail, received, promoted)
	}
	t.Logf("%d writes acknowledged; b received %d records from a's agent before taking over", len(acked), received)
	tr.checkAcked("b", acked)
	tr.proxies["a->b"].heal()
	tr.proxies["b->a"].heal()
	tr.rejoin("a", "b", acked)
}

// TestDRPromotionWithThePairGone (issue 5, f): with both failover members,
// their agents and the arbiter gone, the dr member is promoted only by the
// operator's confirmed preview and recorded statement; a reporting member
// is never promoted; the promoted member commits alone in a new epoch and
// the reporting member follows it.
func TestDRPromotionWithThePairGone(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTierWith(t, tierOptions{async: true, reporting: true})
	tr.waitFor("c and d async", 20*time.Second, func() bool { return tr.status("c") == "async" && tr.status("d") == "async" })
	ctx := context.Background()
	acked := tr.putN(ctx, "a", "k", 20)
	tr.waitFor("c and d caught up", 20*time.Second, func() bool { h := tr.hash("a"); return tr.hash("c") == h && tr.hash("d") == h })
	var out strings.Builder
	if err := ctl.Main(ctx, []string{"force-promote", "c", "--cluster", tr.cluster}, &out); err == nil || !strings.Contains(err.Error(), "failover member a answers") {
		t.Fatalf("dr promotion with the pair alive: %v", err)
	}

	for _, p := range []string{"arbiter", "agent-a", "agent-b", "a", "b"} {
		tr.kill9(p)
	}
	tr.waitFor("c disconnected from the primary", 10*time.Second, func() bool { s, _, _ := tr.transfer("c"); return s == "disconnected" })
	if s, e := tr.status("c"), tr.epoch("c"); s != "async" || e != 1 {
		t.Fatalf("c changed by itself: %s in epoch %d", s, e)
	}
	if err := ctl.Main(ctx, []string{"force-promote", "d", "--cluster", tr.cluster}, &out); err == nil || !strings.Contains(err.Error(), "never promoted") {
		t.Fatalf("promotion of the reporting member: %v", err)
	}
	out.Reset()
	err := ctl.Main(ctx, []string{"force-promote", "c", "--cluster", tr.cluster}, &out)
	if err == nil || !strings.Contains(err.Error(), "--stated-gone") || !strings.Contains(out.String(), "records that may be lost: LSN") {
		t.Fatalf("preview: %v\n%s", err, out.String())
	}
	var preview node.PromotionPreview
	if err := tr.client.Do(ctx, "GET", "c", "/admin/force-promote?tier_epoch=1", nil, &preview); err != nil {
		t.Fatal(err)
	}
	t.Logf("preview: %+v", preview)
	if !preview.NeedsStatement || preview.NewEpoch != 2 {
		t.Fatalf("preview %+v", preview)
	}
	if err := ctl.Main(ctx, []string{"force-promote", "c", "--confirm", preview.Confirm, "--cluster", tr.cluster}, &out); err == nil {
		t.Fatal("dr promotion without the operator's statement was accepted")
	}
	if s := tr.status("c"); s != "async" {
		t.Fatalf("c is %s after a refused promotion", s)
	}
	const statement = "hosts of a and b destroyed (test)"
	if err := ctl.Main(ctx, []string{"force-promote", "c", "--confirm", preview.Confirm, "--stated-gone", statement, "--cluster", tr.cluster}, &out); err != nil {
		t.Fatalf("dr promotion: %v\n%s", err, out.String())
	}
	tr.waitFor("c primary in epoch 2", 10*time.Second, func() bool { return tr.status("c") == "primary" && tr.epoch("c") == 2 })
	if log, _ := os.ReadFile(filepath.Join(tr.dir, "c.log")); !strings.Contains(string(log), "the arbiter did not answer") {
		t.Fatal("c's log does not say it was promoted without the arbiter")
	}
	var rec node.DRPromotion
	if err := statefile.Load(filepath.Join(tr.dir, "c", node.DRPromotionFile), &rec); err != nil || rec.Statement != statement || rec.Preview.Confirm != preview.Confirm {
		t.Fatalf("the statement is not recorded: %+v %v", rec, err)
	}
	var hs failover.HardState
	if err := statefile.Load(filepath.Join(tr.dir, "c", "hardstate.json"), &hs); err != nil || len(hs.Losses) != 1 ||
		uint64(hs.Losses[0].From) != preview.LossFrom || uint64(hs.Losses[0].To) != preview.LossTo {
		t.Fatalf("loss not recorded as previewed: %+v %v", hs.Losses, err)
	}
	tr.checkAcked("c", acked) // c had everything: nothing acknowledged is lost

	// The new primary commits alone; the reporting member follows it and
	// names it when it refuses a write.
	if err := tr.put(ctx, "c", "after-dr", "1"); err != nil {
		t.Fatalf("write on the promoted dr member: %v", err)
	}
	tr.waitFor("d follows c", 20*time.Second, func() bool {
		v, _ := tr.get("d", "after-dr")
		return v == "1" && tr.epoch("d") == 2 && tr.hash("d") == tr.hash("c")
	})
	code, b := tr.fhirRaw("POST", "d", "/fhir/Patient", []byte(`{"resourceType":"Patient"}`))
	if o := outcomeText(t, b); code != http.StatusMethodNotAllowed || !strings.Contains(o, "member c") {
		t.Fatalf("write on d after the promotion: %d %q", code, o)
	}
	// Restarted, c is still the primary of epoch 2.
	tr.kill9("c")
	tr.start("c")
	tr.waitFor("c primary again after restart", 20*time.Second, func() bool { return tr.status("c") == "primary" && tr.epoch("c") == 2 })
	if err := tr.put(ctx, "c", "after-restart", "1"); err != nil {
		t.Fatal(err)
	}
}

// TestDRPromotionThroughTheArbiter (issue 5, f): with the arbiter up and
// both failover members (and their agents) killed, the dr member is
// promoted only once the arbiter records it primary of a new epoch; the
// old primary, restarted, learns the epoch from the arbiter and never acts
// as primary again.
func TestDRPromotionThroughTheArbiter(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTierWith(t, tierOptions{async: true})
	tr.waitFor("c async", 20*time.Second, func() bool { return tr.status("c") == "async" })
	ctx := context.Background()
	acked := tr.putN(ctx, "a", "k", 20)
	tr.waitFor("c caught up", 20*time.Second, func() bool { return tr.hash("c") == tr.hash("a") })
	for _, p := range []string{"agent-a", "agent-b", "a", "b"} {
		tr.kill9(p)
	}
	tr.waitFor("c disconnected from the primary", 10*time.Second, func() bool { s, _, _ := tr.transfer("c"); return s == "disconnected" })
	time.Sleep(testQoS) // the arbiter has not heard from a or b for longer than the QoS
	var preview node.PromotionPreview
	if err := tr.client.Do(ctx, "GET", "c", "/admin/force-promote?tier_epoch=1", nil, &preview); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err := ctl.Main(ctx, []string{"force-promote", "c", "--confirm", preview.Confirm, "--stated-gone", "a and b lost (test)", "--cluster", tr.cluster}, &out)
	if err != nil {
		t.Fatalf("dr promotion through the arbiter: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "c is primary of epoch 2") {
		t.Fatalf("ctl output:\n%s", out.String())
	}
	if log, _ := os.ReadFile(filepath.Join(tr.dir, "c.log")); !strings.Contains(string(log), "recorded at the arbiter") {
		t.Fatal("c's log does not say the arbiter recorded the promotion")
	}
	var arb failover.ArbiterState
	if err := statefile.Load(filepath.Join(tr.dir, "arbiter", "records.arbiter.json"), &arb); err != nil || arb.Record.Primary != "c" || arb.Record.Version.Epoch != 2 {
		t.Fatalf("arbiter record %+v %v", arb.Record, err)
	}
	if s, e := tr.status("c"), tr.epoch("c"); s != "primary" || e != 2 {
		t.Fatalf("c is %s in epoch %d", s, e)
	}
	tr.checkAcked("c", acked)
	if err := tr.put(ctx, "c", "after-dr", "1"); err != nil {
		t.Fatal(err)
	}

	// The old primary comes back: the arbiter tells it about epoch 2.
	tr.start("agent-a")
	tr.start("a")
	tr.waitFor("a in epoch 2", 20*time.Second, func() bool { return tr.epoch("a") == 2 })
	time.Sleep(3 * testQoS)
	if s := tr.status("a"); s != "waiting" {
		t.Fatalf("the old primary is %s after the dr promotion, want waiting", s)
	}
	if s, e := tr.status("c"), tr.epoch("c"); s != "primary" || e != 2 {
		t.Fatalf("c is %s in epoch %d after a's return", s, e)
	}
	if err := tr.put(ctx, "a", "on-old-primary", "1"); err == nil {
		t.Fatal("the old primary took a write")
	}
}
