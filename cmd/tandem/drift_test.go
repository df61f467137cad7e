package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	configsync "github.com/tandemhealth/tandem/config-sync"
	"github.com/tandemhealth/tandem/services/ctl"
	"github.com/tandemhealth/tandem/workflows"
	"github.com/tandemhealth/tandem/workflows/applychange"
	"github.com/tandemhealth/tandem/workflows/configsyncflow"
	"github.com/tandemhealth/tandem/workflows/plannedfailover"
)

// wctl runs `tandem ctl workflow ARGS` against the test's Temporal.
func (tt *temporalTier) wctl(args ...string) string {
	tt.t.Helper()
	out, err := tt.ctlRun(append(append([]string{"workflow"}, args...), "--temporal-address", tt.address)...)
	if err != nil {
		tt.t.Fatalf("tandem ctl workflow %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// effectiveUsers lists the users member enforces, by name and enabled.
func (tt *temporalTier) effectiveUsers(member string) map[string]bool {
	var st configsync.State
	if err := tt.client.Do(context.Background(), "GET", member, "/admin/config/effective", nil, &st); err != nil {
		return nil
	}
	var us []configsync.User
	json.Unmarshal(st[configsync.Users].Doc, &us)
	out := map[string]bool{}
	for _, u := range us {
		out[u.Name] = u.Enabled
	}
	return out
}

// categoryAligned reports whether member enforces the desired category it
// holds, and that desired version.
func (tt *temporalTier) categoryAligned(member, category string) (bool, uint64) {
	var d ctl.MemberDiff
	if err := tt.client.Do(context.Background(), "GET", member, "/admin/config/diff", nil, &d); err != nil {
		return false, 0
	}
	for _, c := range d.Categories {
		if c.Category == category {
			return c.Aligned, c.DesiredVersion
		}
	}
	return false, 0
}

func (tt *temporalTier) driftCheck() configsyncflow.DriftCheckState {
	tt.t.Helper()
	d, err := configsyncflow.DescribeDriftCheck(context.Background(), tt.tc, "records")
	if err != nil {
		tt.t.Fatal(err)
	}
	return d
}

// TestConfigWorkflowsOnARealTier (issue 11): the config-sync workflows on
// the embedded Temporal server, the worker and real members.
//
//  1. The worker creates the DriftCheck schedule (60 s) at start; ctl
//     pauses it; a restarted worker leaves it paused.
//  2. ApplyChange while the backup is down: the primary enforces the new
//     roles at once; the workflow waits; the backup returns and gets them.
//  3. The end-to-end case: a user is added to the desired state while the
//     backup is down (DriftCheck paused) → the backup returns; drift is
//     reported (ctl config diff) and the failover gate refuses a
//     PlannedFailover → DriftCheck (3 s) repairs it within one interval →
//     PlannedFailover succeeds → the user is in the new primary's
//     effective state, logs in with the password through a gateway (the
//     token comes from b) and reads FHIR within the role's scopes.
//  4. A user only one member enforces is removed only after an approval.
func TestConfigWorkflowsOnARealTier(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes and the embedded Temporal server")
	}
	needTemporal(t)
	tt := startTemporalTier(t)
	ctx := context.Background()

	// 1. The worker's schedule.
	tt.waitFor("the worker's DriftCheck schedule", 30*time.Second, func() bool {
		d, err := configsyncflow.DescribeDriftCheck(ctx, tt.tc, "records")
		return err == nil && d.Every == 60*time.Second && !d.Paused
	})
	out := tt.wctl("schedule", "drift-check", "records", "--every", "60s", "--paused")
	if !strings.Contains(out, "updated tier/records/drift-check") || !tt.driftCheck().Paused {
		t.Fatalf("schedule update: %q %+v", out, tt.driftCheck())
	}
	// A worker restart (without --drift-check) keeps the operator's change.
	tt.kill9("worker")
	tt.startProc("worker", "worker", "--cluster", tt.cluster, "--temporal-address", tt.address)
	tt.waitFor("the new worker's start", 30*time.Second, func() bool {
		log, _ := os.ReadFile(filepath.Join(tt.dir, "worker.log"))
		return strings.Count(string(log), "drift check schedule exists: left as it is") == 1
	})
	if d := tt.driftCheck(); !d.Paused || d.Every != 60*time.Second {
		t.Fatalf("a worker restart changed the schedule: %+v", d)
	}

	// 2. ApplyChange with the backup down.
	tt.kill9("b")
	roles := filepath.Join(tt.dir, "roles.json")
	os.WriteFile(roles, []byte(`[{"name":"nurse","scopes":["patient/*.rs","user/Observation.cruds"]}]`), 0o600)
	t0 := time.Now()
	out = tt.wctl("start", "apply-change", "records", "roles", roles, "--deadline", "5m", "--by", "ops")
	if !strings.Contains(out, "workflow tier/records/apply-change/roles") {
		t.Fatalf("start: %q", out)
	}
	id := applychange.WorkflowID("records", "roles")
	state := func() ctl.WorkflowState {
		st, _ := ctl.GetWorkflowStateByID(ctx, tt.tc, id, "")
		return st
	}
	tt.waitFor("ApplyChange waiting for b", 60*time.Second, func() bool {
		st := state()
		return st.Progress.Step == 1 && strings.Contains(st.Progress.Message, "waiting for b:")
	})
	if ok, v := tt.categoryAligned("a", "roles"); !ok || v != 1 {
		t.Fatalf("a does not enforce roles v1 while b is down: %v %d", ok, v)
	}
	status := tt.wctl("status", "records", "apply-change", "roles")
	t.Logf("while b is down:\n%s", status)
	if !strings.Contains(status, "a enforces roles version 1") || !strings.Contains(status, "waiting for b") {
		t.Fatalf("status: %s", status)
	}
	tt.start("b")
	tt.waitFor("ApplyChange done", 90*time.Second, func() bool { return state().Closed() })
	st := state()
	if st.Status != "Completed" {
		t.Fatalf("ApplyChange: %+v", st)
	}
	if ok, v := tt.categoryAligned("b", "roles"); !ok || v != 1 {
		t.Fatalf("b does not enforce roles v1: %v %d", ok, v)
	}
	tt.saveHistoryOf("applychange", "backup-returns", id, st.RunID)
	t.Logf("ApplyChange with the backup down, then back: %s", time.Since(t0).Round(time.Millisecond))
	tt.waitFor("b backup again", 30*time.Second, func() bool { return tt.status("b") == "backup" })

	// 3. A user added while the backup is down.
	tt.kill9("b")
	tt.mustCtl("config", "user", "add", "records", "dave", "--password", "correct-horse-battery", "--role", "nurse")
	tt.mustCtl("config", "apply", "--member", "a")
	tt.start("b")
	tt.waitFor("b back, holding desired users v1 it does not enforce", 30*time.Second, func() bool {
		ok, v := tt.categoryAligned("b", "users")
		return tt.status("b") == "backup" && !ok && v == 1
	})
	diff := tt.mustCtl("config", "diff")
	t.Logf("drift reported by tandem ctl config diff:\n%s", diff)
	if !strings.Contains(diff, "user dave: missing here") {
		t.Fatalf("diff does not report the drift:\n%s", diff)
	}
	run, err := ctl.StartWorkflow(ctx, tt.tc, "planned-failover", plannedfailover.Input{Tier: "records", By: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	st = tt.waitWorkflow(60 * time.Second)
	if st.Status != "Failed" || !strings.Contains(st.Error, workflows.ErrGateRefused) || !strings.Contains(st.Error, "users: member b is not aligned") {
		t.Fatalf("PlannedFailover onto an unaligned backup: %+v", st)
	}
	tt.saveHistory("plannedfailover", "gate-refused", run)
	t.Logf("PlannedFailover refused: %s", st.Error)

	every := 3 * time.Second
	before := tt.driftCheck().Runs
	t0 = time.Now()
	tt.wctl("schedule", "drift-check", "records", "--every", every.String())
	tt.waitFor("DriftCheck repairs b", every+30*time.Second, func() bool { ok, _ := tt.categoryAligned("b", "users"); return ok })
	repaired := time.Since(t0)
	t.Logf("DriftCheck every %s: b repaired %s after the schedule was set", every, repaired.Round(time.Millisecond))
	if repaired > every+5*time.Second {
		t.Fatalf("repair took %s, more than one interval (%s) plus 5 s", repaired, every)
	}
	tt.waitFor("the repairing run to end", 30*time.Second, func() bool { return tt.driftCheck().Runs > before })
	waitIdle(t, tt)
	out = tt.wctl("status", "records", "drift-check")
	t.Logf("tandem ctl workflow status records drift-check:\n%s", out)
	// Find the scheduled run that found the drift (a later one finds none).
	found := findDriftRun(t, tt, "b", "users")
	tt.saveHistoryOf("configsyncflow", "drift-repaired", found.id, found.run)

	run, err = ctl.StartWorkflow(ctx, tt.tc, "planned-failover", plannedfailover.Input{Tier: "records", By: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	if st = tt.waitWorkflow(90 * time.Second); st.Status != "Completed" || tt.status("b") != "primary" {
		t.Fatalf("PlannedFailover after the repair: %+v (b %s)", st, tt.status("b"))
	}
	if us := tt.effectiveUsers("b"); !us["dave"] {
		t.Fatalf("dave is not an enabled user on the new primary b: %v", us)
	}
	t.Log("dave is enabled in the new primary b's effective state")
	gw := tt.startGateway("gateway", startRedis(t))
	tt.waitFor("the gateway routes to b", 10*time.Second, func() bool { p, _ := tt.gatewayView(gw); return p == "b" })
	lg := tt.login(gw, "dave", "correct-horse-battery")
	if lg.Status != 200 || lg.Member != "records/b" || lg.Scope != "patient/*.rs user/Observation.cruds" {
		t.Fatalf("dave's login through the gateway: %d from %q, scope %q, %s %s", lg.Status, lg.Member, lg.Scope, lg.Error, lg.Description)
	}
	if code, body := tt.fhirGet(gw, "/fhir/Observation", lg.AccessToken); code != 200 {
		t.Fatalf("dave (nurse) searching Observations: %d %.300s", code, body)
	}
	if code, _ := tt.fhirGet(gw, "/fhir/Patient", lg.AccessToken); code != 403 {
		t.Fatalf("dave (nurse: no Patient scope) searching Patients: %d, want 403", code)
	}
	t.Log("dave logged in through the gateway (token from b) and read /fhir/Observation; /fhir/Patient is outside his role")

	// 4. A user only one member enforces: removed only on approval. (For
	// 3 s after a takeover the new primary aligns itself with every newer
	// desired state it learns (services/node alignOnce): wait that out, or
	// b would enforce eve too.)
	time.Sleep(4 * time.Second)
	tt.wctl("schedule", "drift-check", "records", "--every", "60s", "--paused")
	waitIdle(t, tt)
	tt.mustCtl("config", "user", "add", "records", "eve", "--password", "correct-horse-battery")
	tt.mustCtl("config", "apply", "--member", "a")
	var desired configsync.State
	if err := tt.client.Do(ctx, "GET", "b", "/admin/config/desired", nil, &desired); err != nil {
		t.Fatal(err)
	}
	var us []configsync.User
	json.Unmarshal(desired[configsync.Users].Doc, &us)
	us = slices.DeleteFunc(us, func(u configsync.User) bool { return u.Name == "eve" })
	doc, _ := json.Marshal(us)
	usersFile := filepath.Join(tt.dir, "users.json")
	os.WriteFile(usersFile, doc, 0o600)
	tt.mustCtl("config", "set", "records", "users", usersFile)
	if !tt.effectiveUsers("a")["eve"] {
		t.Fatal("eve is not on a")
	}
	tt.wctl("start", "config-sync", "records", "--approval-ttl", "2m")
	csID := configsyncflow.WorkflowID("records")
	tt.waitFor("ConfigSync awaiting approval", 60*time.Second, func() bool {
		st, _ := ctl.GetWorkflowStateByID(ctx, tt.tc, csID, "")
		return st.Progress.State == workflows.StateWaiting
	})
	out = tt.wctl("status", "records", "config-sync")
	t.Logf("awaiting approval:\n%s", out)
	if !strings.Contains(out, `approve records config-sync --confirm "remove a: user eve"`) {
		t.Fatalf("status does not say how to approve:\n%s", out)
	}
	if !tt.effectiveUsers("a")["eve"] {
		t.Fatal("eve was removed before the approval")
	}
	if _, err := tt.ctlRun("workflow", "approve", "records", "config-sync", "--confirm", "remove a: user mallory", "--by", "ops", "--temporal-address", tt.address); err == nil {
		t.Fatal("a wrong approval was accepted")
	}
	tt.wctl("approve", "records", "config-sync", "--confirm", "remove a: user eve", "--by", "ops")
	tt.waitFor("ConfigSync done", 60*time.Second, func() bool {
		st, _ := ctl.GetWorkflowStateByID(ctx, tt.tc, csID, "")
		return st.Closed()
	})
	st, _ = ctl.GetWorkflowStateByID(ctx, tt.tc, csID, "")
	if st.Status != "Completed" {
		t.Fatalf("ConfigSync: %+v", st)
	}
	if us := tt.effectiveUsers("a"); us["eve"] || !us["dave"] {
		t.Fatalf("a's users after the approved removal: %v", us)
	}
	tt.saveHistoryOf("configsyncflow", "removal-approved", csID, st.RunID)
}

type runRef struct{ id, run string }

// findDriftRun finds the scheduled ConfigSync run that repaired category
// on member.
func findDriftRun(t *testing.T, tt *temporalTier, member, category string) runRef {
	t.Helper()
	ctx := context.Background()
	d, err := tt.tc.ScheduleClient().GetHandle(ctx, configsyncflow.ScheduleID("records")).Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range slices.Backward(d.Info.RecentActions) {
		w := a.StartWorkflowResult
		if w == nil {
			continue
		}
		var res configsyncflow.Result
		if err := tt.tc.GetWorkflow(ctx, w.WorkflowID, w.FirstExecutionRunID).Get(ctx, &res); err != nil {
			continue
		}
		for _, m := range res.Members {
			for _, c := range m.Categories {
				if m.Member == member && c.Category == category && c.Outcome == configsyncflow.OutcomeRepaired {
					t.Logf("scheduled run %s repaired %s %s: %d drifted, %d repaired", w.WorkflowID, member, category, res.Drifted, res.Repaired)
					return runRef{w.WorkflowID, w.FirstExecutionRunID}
				}
			}
		}
	}
	t.Fatalf("no scheduled run repaired %s on %s", category, member)
	return runRef{}
}

// waitIdle waits until the schedule's last run has closed.
func waitIdle(t testing.TB, tt *temporalTier) {
	t.Helper()
	tt.waitFor("the last DriftCheck run to end", 30*time.Second, func() bool {
		d := tt.driftCheck()
		if d.LastWorkflowID == "" {
			return true
		}
		st, err := ctl.GetWorkflowStateByID(context.Background(), tt.tc, d.LastWorkflowID, d.LastRunID)
		return err == nil && st.Closed()
	})
}

// BenchmarkSetupDriftRepair (make bench BENCH=setup, beside
// BenchmarkMirrorSetup; or BENCH=drift): drift detection-to-repair time of
// the DriftCheck schedule on a real tier. Each iteration adds a user to the
// desired state and applies it on a only, so b holds a desired state it
// does not enforce; then the schedule is triggered and the time until b
// reports the users category aligned is measured (one ConfigSync run:
// diff of every member, apply on b). Beside it, in the same run: the
// baseline (median of 11 rounds of what that run must do at least, done
// directly: GET /admin/config/diff on every member, then POST
// /admin/config/apply on b), and once, drift-to-repair with the schedule
// every 2 s, which adds the wait for the next interval.
func BenchmarkSetupDriftRepair(b *testing.B) {
	needTemporal(b)
	tt := startTemporalTier(b)
	ctx := context.Background()
	n := 0
	drift := func() {
		n++
		name := "bench-user-" + strconv.Itoa(n)
		tt.mustCtl("config", "user", "add", "records", name, "--password", "correct-horse-battery")
		if err := tt.client.Do(ctx, "POST", "a", "/admin/config/apply", nil, nil); err != nil {
			b.Fatal(err)
		}
		tt.waitFor("b holds the new desired users", 10*time.Second, func() bool {
			ok, v := tt.categoryAligned("b", "users")
			return !ok && v == uint64(n)
		})
	}
	aligned := func() bool { ok, _ := tt.categoryAligned("b", "users"); return ok }
	tt.wctl("schedule", "drift-check", "records", "--every", "1h")
	waitIdle(b, tt)

	var rounds []time.Duration
	for range 11 {
		drift()
		t0 := time.Now()
		for _, m := range []string{"a", "b"} {
			if err := tt.client.Do(ctx, "GET", m, "/admin/config/diff", nil, nil); err != nil {
				b.Fatal(err)
			}
		}
		if err := tt.client.Do(ctx, "POST", "b", "/admin/config/apply", nil, nil); err != nil {
			b.Fatal(err)
		}
		rounds = append(rounds, time.Since(t0))
		if !aligned() {
			b.Fatal("b not aligned after a direct apply")
		}
	}
	slices.Sort(rounds)
	baseline := rounds[len(rounds)/2]

	h := tt.tc.ScheduleClient().GetHandle(ctx, configsyncflow.ScheduleID("records"))
	repair := func() time.Duration {
		drift()
		waitIdle(b, tt)
		t0 := time.Now()
		if err := h.Trigger(ctx, client.ScheduleTriggerOptions{Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL}); err != nil {
			b.Fatal(err)
		}
		for !aligned() {
			if time.Since(t0) > 60*time.Second {
				b.Fatal("DriftCheck did not repair b within 60 s")
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(t0)
	}
	first := repair()
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		total += repair()
	}
	b.StopTimer()
	triggered := total / time.Duration(b.N)

	tt.wctl("schedule", "drift-check", "records", "--every", "2s")
	drift()
	t0 := time.Now()
	tt.waitFor("DriftCheck every 2s repairs b", 60*time.Second, aligned)
	scheduled := time.Since(t0)

	b.ReportMetric(float64(triggered.Microseconds())/1000, "detect-to-repair-ms")
	b.ReportMetric(float64(first.Microseconds())/1000, "first-detect-to-repair-ms")
	b.ReportMetric(float64(baseline.Microseconds())/1000, "diff+apply-round-ms")
	b.ReportMetric(float64(triggered)/float64(baseline), "repair/round")
	b.ReportMetric(float64(scheduled.Microseconds())/1000, "drift-to-repair-every-2s-ms")
	b.Logf("DriftCheck detection-to-repair %s (first %s); direct diff+apply round %s (median of 11); ratio %.0f; with the schedule every 2s, drift to repair %s",
		triggered.Round(time.Millisecond), first.Round(time.Millisecond), baseline.Round(time.Microsecond), float64(triggered)/float64(baseline), scheduled.Round(time.Millisecond))
}
