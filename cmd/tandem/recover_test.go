package main

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/services/ctl"
	"github.com/tandemhealth/tandem/services/node"
	"github.com/tandemhealth/tandem/workflows"
	"github.com/tandemhealth/tandem/workflows/recoverlostjournal"
)

// TestRecoverLostJournalOnARealTier (issue 11): an isolated primary
// journals FHIR writes it can never acknowledge — two creates, an update,
// a delete —, the backup takes over, and the old primary rejoins with
// them in quarantine. Meanwhile one of the created ids is created again on
// the new primary. RecoverLostJournal shows the plan (3 to re-apply, 1
// conflict), refuses a wrong approval, re-applies on the right one, leaves
// the conflict alone, records the recovery beside the report and in the
// system database; both members end equal; a second run finds nothing left.
func TestRecoverLostJournalOnARealTier(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes and the embedded Temporal server")
	}
	tt := startTemporalTier(t)
	ctx := context.Background()
	patient := func(id, family string) []byte {
		return []byte(`{"resourceType":"Patient","id":"` + id + `","name":[{"family":"` + family + `"}]}`)
	}
	for _, id := range []string{"u-1", "d-1"} {
		if code, body := tt.fhirRaw("PUT", "a", "/fhir/Patient/"+id, patient(id, "Kept")); code != http.StatusCreated {
			t.Fatalf("PUT Patient/%s: %d %s", id, code, body)
		}
	}
	acked := tt.putN(ctx, "a", "before-", 5)

	tt.proxies["a->b"].cut()
	tt.proxies["b->a"].cut()
	tt.proxies["a->arbiter"].cut()
	lost := []struct{ method, id, family string }{{"PUT", "q-1", "Unacknowledged"}, {"PUT", "q-2", "Unacknowledged"}, {"PUT", "u-1", "Lost"}, {"DELETE", "d-1", ""}}
	for _, w := range lost {
		var body []byte
		if w.method == "PUT" {
			body = patient(w.id, w.family)
		}
		wctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		err := tt.client.Do(wctx, w.method, "a", "/fhir/Patient/"+w.id, body, nil)
		cancel()
		if err == nil {
			t.Fatalf("the isolated primary acknowledged %s Patient/%s", w.method, w.id)
		}
	}
	tt.waitFor("a in-trouble, b primary in epoch 2", 30*time.Second, func() bool {
		return tt.status("a") == "in-trouble" && tt.status("b") == "primary" && tt.epoch("b") == 2
	})
	tt.kill9("a")
	for _, p := range tt.proxies {
		p.heal()
	}
	// The new primary takes its own Patient/q-2 meanwhile: a conflict.
	if code, body := tt.fhirRaw("PUT", "b", "/fhir/Patient/q-2", patient("q-2", "NewPrimary")); code != http.StatusCreated {
		t.Fatalf("PUT Patient/q-2 on b: %d %s", code, body)
	}
	tt.rejoin("a", "b", acked)
	reports := tt.quarantineReports("a")
	if len(reports) != 1 || reports[0].Resources < len(lost) {
		t.Fatalf("quarantine reports on a: %+v", reports)
	}

	// a's status tells the operator, and tandem ctl quarantine lists it.
	tt.waitFor("a alerts about its quarantine report", 10*time.Second, func() bool {
		return slices.ContainsFunc(tt.alerts("a"), func(s string) bool { return strings.Contains(s, "recover-lost-journal records a") })
	})
	out := tt.mustCtl("quarantine", "a")
	if !strings.Contains(out, "not recovered") {
		t.Fatalf("tandem ctl quarantine a:\n%s", out)
	}

	t0 := time.Now()
	run, err := ctl.StartWorkflow(ctx, tt.tc, "recover-lost-journal", recoverlostjournal.Input{Tier: "records", Member: "a"})
	if err != nil {
		t.Fatal(err)
	}
	tt.waitFor("RecoverLostJournal awaiting approval", 60*time.Second, func() bool { return tt.state().Progress.State == workflows.StateWaiting })
	st := tt.state()
	what, confirm := st.Progress.Approval.What, st.Progress.Approval.Confirm
	if !strings.Contains(what, "re-apply 3 on b (create 1, update 1, delete 1)") || !strings.Contains(what, "conflicts left alone 1") || !strings.HasPrefix(confirm, "recover ") {
		t.Fatalf("plan: %q / %q\nchecks:\n%s", what, confirm, strings.Join(st.Progress.Checks, "\n"))
	}
	if _, err := ctl.ApproveWorkflow(ctx, tt.tc, "records", workflows.Approval{Confirm: strings.Replace(confirm, "apply 3", "apply 4", 1), By: "ops"}); err == nil {
		t.Fatal("a wrong plan was approved")
	}
	if code, _ := tt.fhirRaw("GET", "b", "/fhir/Patient/q-1", nil); code != http.StatusNotFound {
		t.Fatalf("Patient/q-1 on b before the approval: HTTP %d", code)
	}
	if _, err := ctl.ApproveWorkflow(ctx, tt.tc, "records", workflows.Approval{Confirm: confirm, By: "ops"}); err != nil {
		t.Fatal(err)
	}
	st = tt.waitWorkflow(60 * time.Second)
	if st.Status != "Completed" {
		t.Fatalf("RecoverLostJournal: %+v", st)
	}
	tt.saveHistory("recoverlostjournal", "recovered", run)
	t.Logf("RecoverLostJournal finished in %s; checks:\n%s", time.Since(t0).Round(time.Millisecond), strings.Join(st.Progress.Checks, "\n"))

	// On the primary: q-1 created, u-1 updated on its version 1, d-1
	// deleted, q-2 left as the new primary wrote it.
	want := map[string]struct {
		code   int
		family string
	}{"q-1": {200, "Unacknowledged"}, "u-1": {200, "Lost"}, "d-1": {410, ""}, "q-2": {200, "NewPrimary"}}
	for id, w := range want {
		code, body := tt.fhirRaw("GET", "b", "/fhir/Patient/"+id, nil)
		if code != w.code || !strings.Contains(string(body), w.family) {
			t.Fatalf("Patient/%s on b: HTTP %d %s, want %d %s", id, code, body, w.code, w.family)
		}
	}
	if code, body := tt.fhirRaw("GET", "b", "/fhir/Patient/u-1/_history/2", nil); code != http.StatusOK || !strings.Contains(string(body), "Lost") {
		t.Fatalf("Patient/u-1 version 2 on b: %d %s", code, body)
	}
	tt.waitFor("equal content after the recovery", 20*time.Second, func() bool { return tt.hash("a") == tt.hash("b") })

	// Recorded beside the report and in the system database.
	var list struct{ Reports []node.QuarantineSummary }
	if err := tt.client.Do(ctx, "GET", "a", "/admin/quarantine", nil, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Reports) != 1 || list.Reports[0].Recovery == nil || list.Reports[0].Recovery.By != "ops" || list.Reports[0].Recovery.Applied != 3 || list.Reports[0].Recovery.Conflict != 1 {
		t.Fatalf("reports on a after the recovery: %+v", list.Reports)
	}
	if rec, err := tt.systemRecord("b", workflows.RecordKey(recoverlostjournal.Name, "records", run, "done")); err != nil || rec.By != "ops" || rec.Result != "recovered" {
		t.Fatalf("RecoverLostJournal record: %+v %v", rec, err)
	}
	if out := tt.mustCtl("quarantine", "a"); !strings.Contains(out, "by ops at") || !strings.Contains(out, "3 applied, 0 present, 1 conflicts") {
		t.Fatalf("tandem ctl quarantine a after the recovery:\n%s", out)
	}

	if slices.ContainsFunc(tt.alerts("a"), func(s string) bool { return strings.Contains(s, "recover-lost-journal") }) {
		t.Fatalf("a still alerts about a recovered report: %v", tt.alerts("a"))
	}

	// A second run: nothing left to recover.
	run, err = ctl.StartWorkflow(ctx, tt.tc, "recover-lost-journal", recoverlostjournal.Input{Tier: "records", Member: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if st = tt.waitWorkflow(60 * time.Second); st.Status != "Failed" || !strings.Contains(st.Error, "not recovered yet") {
		t.Fatalf("a second RecoverLostJournal: %+v", st)
	}
	tt.saveHistory("recoverlostjournal", "nothing-left", run)
}
