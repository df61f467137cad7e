package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"

	"github.com/tandemhealth/tandem/services/ctl"
	"github.com/tandemhealth/tandem/services/worker"
	"github.com/tandemhealth/tandem/workflows"
	"github.com/tandemhealth/tandem/workflows/adddatabase"
	"github.com/tandemhealth/tandem/workflows/mirrorsetup"
	"github.com/tandemhealth/tandem/workflows/plannedfailover"
	"github.com/tandemhealth/tandem/workflows/promoteasync"
	"github.com/tandemhealth/tandem/workflows/rebuildmember"
)

var updateHistories = flag.Bool("update-histories", false, "rewrite the workflows' replay histories in workflows/*/testdata from this run")

// temporalTier is a real tier plus `tandem temporal` and `tandem worker`
// processes, and a Temporal client.
type temporalTier struct {
	*tier
	address string
	tc      client.Client
}

func startTemporalTier(t testing.TB) *temporalTier {
	t.Helper()
	needTemporal(t)
	tr := startTier(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	tt := &temporalTier{tier: tr, address: fmt.Sprintf("127.0.0.1:%d", port)}
	tt.startProc("temporal", "temporal", "--data", filepath.Join(tr.dir, "temporal"), "--port", fmt.Sprint(port))
	tt.startProc("worker", "worker", "--cluster", tr.cluster, "--temporal-address", tt.address)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if tt.tc, err = worker.Dial(ctx, tt.address, "default", nil, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tt.tc.Close)
	return tt
}

func (tt *temporalTier) startProc(name string, args ...string) {
	tt.t.Helper()
	logf, err := os.OpenFile(filepath.Join(tt.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		tt.t.Fatal(err)
	}
	c := exec.Command(binary, args...)
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		tt.t.Fatal(err)
	}
	go func() { c.Wait(); logf.Close() }()
	tt.procs[name] = c
}

func (tt *temporalTier) state() ctl.WorkflowState {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, _ := ctl.GetWorkflowState(ctx, tt.tc, "records")
	return st
}

// waitWorkflow waits for the tier's topology workflow to close and returns
// its final state.
func (tt *temporalTier) waitWorkflow(limit time.Duration) ctl.WorkflowState {
	tt.t.Helper()
	var st ctl.WorkflowState
	tt.waitFor("the workflow to finish", limit, func() bool { st = tt.state(); return st.Closed() })
	return st
}

// saveHistory writes the run's history to the workflow's testdata folder
// for its replay test (only with -update-histories).
func (tt *temporalTier) saveHistory(folder, name, runID string) {
	tt.t.Helper()
	tt.saveHistoryOf(folder, name, workflows.TopologyWorkflowID("records"), runID)
}

// saveHistoryOf is saveHistory for the workflow id.
func (tt *temporalTier) saveHistoryOf(folder, name, id, runID string) {
	tt.t.Helper()
	if !*updateHistories {
		return
	}
	ctx := context.Background()
	it := tt.tc.GetWorkflowHistory(ctx, id, runID, false, 0)
	h := &historypb.History{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			tt.t.Fatal(err)
		}
		h.Events = append(h.Events, e)
	}
	data, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		tt.t.Fatal(err)
	}
	path := filepath.Join("..", "..", "workflows", folder, "testdata", name+".json")
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		tt.t.Fatal(err)
	}
	tt.t.Logf("wrote %s (%d events)", path, len(h.Events))
}

// systemRecord reads a workflow record from member's system database.
func (tt *temporalTier) systemRecord(member, key string) (workflows.Record, error) {
	var v []byte
	var rec workflows.Record
	if err := tt.client.Do(context.Background(), "GET", member, "/admin/kv/system/"+key, nil, &v); err != nil {
		return rec, err
	}
	return rec, json.Unmarshal(v, &rec)
}

// TestWorkflowsOnARealTier (issue 11): the embedded Temporal server, the
// worker and real members. MirrorSetup runs on a fresh tier; the worker is
// killed with -9 while the workflow waits for its approval, and a new
// worker carries it to the end; the result is recorded in the mirrored
// system database (read back from both members). While it runs, a second
// topology workflow on the tier is refused. Then PlannedFailover hands the
// tier over end to end, and PromoteAsync, with the new primary, its agent
// and the arbiter gone, shows the loss, refuses a wrong approval and
// promotes on the right one.
func TestWorkflowsOnARealTier(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes and the embedded Temporal server")
	}
	needTemporal(t)
	tt := startTemporalTier(t)
	ctx := context.Background()
	if err := tt.put(ctx, "a", "Patient/1", `{"resourceType":"Patient"}`); err != nil {
		t.Fatal(err)
	}

	// An approval nobody gives expires: the workflow fails, typed.
	t0 := time.Now()
	run, err := ctl.StartWorkflow(ctx, tt.tc, "mirror-setup", mirrorsetup.Input{Tier: "records", RequireApproval: true, ApprovalTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st := tt.waitWorkflow(60 * time.Second)
	if st.Status != "Failed" || st.Progress.State != workflows.StateExpired || !strings.Contains(st.Error, workflows.ErrApprovalExpired) {
		t.Fatalf("expired approval: %+v", st)
	}
	tt.saveHistory("mirrorsetup", "approval-expired", run)
	t.Logf("MirrorSetup with an expiring approval: failed as expected after %s", time.Since(t0).Round(time.Millisecond))

	// MirrorSetup, the worker killed halfway.
	t0 = time.Now()
	run, err = ctl.StartWorkflow(ctx, tt.tc, "mirror-setup", mirrorsetup.Input{Tier: "records", RequireApproval: true, ApprovalTTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	tt.waitFor("MirrorSetup awaiting approval", 60*time.Second, func() bool { return tt.state().Progress.State == workflows.StateWaiting })
	t.Logf("MirrorSetup checklist passed in %s", time.Since(t0).Round(time.Millisecond))
	if _, err := ctl.StartWorkflow(ctx, tt.tc, "planned-failover", plannedfailover.Input{Tier: "records"}); err == nil ||
		!strings.Contains(err.Error(), "already runs MirrorSetup") {
		t.Fatalf("a second topology workflow on the tier: %v", err)
	}
	tt.kill9("worker")
	tt.startProc("worker", "worker", "--cluster", tt.cluster, "--temporal-address", tt.address)
	if _, err := ctl.ApproveWorkflow(ctx, tt.tc, "records", workflows.Approval{Confirm: "mirror setup of other", By: "ops"}); err == nil {
		t.Fatal("a wrong approval was accepted")
	}
	approveCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := ctl.ApproveWorkflow(approveCtx, tt.tc, "records", workflows.Approval{Confirm: mirrorsetup.ApprovalConfirm("records"), By: "ops"}); err != nil {
		t.Fatalf("approval through the restarted worker: %v", err)
	}
	st = tt.waitWorkflow(60 * time.Second)
	if st.Status != "Completed" || st.Progress.State != workflows.StateDone {
		t.Fatalf("MirrorSetup after a worker crash: %+v", st)
	}
	tt.saveHistory("mirrorsetup", "worker-killed-approved", run)
	key := workflows.RecordKey(mirrorsetup.Name, "records", run, "done")
	tt.waitFor("the record mirrored to b", 10*time.Second, func() bool { _, err := tt.systemRecord("b", key); return err == nil })
	for _, m := range []string{"a", "b"} {
		rec, err := tt.systemRecord(m, key)
		if err != nil || rec.Result != "mirror ready" || rec.By != "ops" {
			t.Fatalf("record on %s: %+v %v", m, rec, err)
		}
	}
	t.Logf("MirrorSetup with a worker crash finished in %s", time.Since(t0).Round(time.Millisecond))

	// PlannedFailover end to end.
	t0 = time.Now()
	run, err = ctl.StartWorkflow(ctx, tt.tc, "planned-failover", plannedfailover.Input{Tier: "records", By: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	st = tt.waitWorkflow(90 * time.Second)
	if st.Status != "Completed" {
		t.Fatalf("PlannedFailover: %+v", st)
	}
	if tt.status("b") != "primary" || tt.status("a") != "backup" || tt.epoch("b") != 2 || tt.epoch("a") != 2 {
		t.Fatalf("after PlannedFailover: a %s/%d, b %s/%d", tt.status("a"), tt.epoch("a"), tt.status("b"), tt.epoch("b"))
	}
	tt.saveHistory("plannedfailover", "handover", run)
	// Written on the new primary b; a, now its backup, applies it a moment later.
	doneKey := workflows.RecordKey(plannedfailover.Name, "records", run, "done")
	tt.waitFor("the PlannedFailover record mirrored to a", 10*time.Second, func() bool { _, err := tt.systemRecord("a", doneKey); return err == nil })
	if rec, err := tt.systemRecord("a", doneKey); err != nil || rec.Result != "handed over" {
		t.Fatalf("PlannedFailover record on a: %+v %v", rec, err)
	}
	if v, err := tt.get("b", "Patient/1"); err != nil || !strings.Contains(v, "Patient") {
		t.Fatalf("data on the new primary: %q %v", v, err)
	}
	t.Logf("PlannedFailover finished in %s", time.Since(t0).Round(time.Millisecond))

	// RebuildMember: a needs no re-seed, so it is refused; forced, a is
	// re-seeded from b's snapshot, catches up and ends equal.
	run, err = ctl.StartWorkflow(ctx, tt.tc, "rebuild-member", rebuildmember.Input{Tier: "records", Member: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if st = tt.waitWorkflow(60 * time.Second); st.Status != "Failed" || !strings.Contains(st.Error, "needs no re-seed") {
		t.Fatalf("RebuildMember of a healthy backup without force: %+v", st)
	}
	tt.saveHistory("rebuildmember", "refused", run)
	t0 = time.Now()
	if err := tt.put(ctx, "b", "Patient/2", `{"resourceType":"Patient"}`); err != nil {
		t.Fatal(err)
	}
	run, err = ctl.StartWorkflow(ctx, tt.tc, "rebuild-member", rebuildmember.Input{Tier: "records", Member: "a", Force: true, By: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	st = tt.waitWorkflow(120 * time.Second)
	if st.Status != "Completed" || tt.status("a") != "backup" {
		t.Fatalf("RebuildMember: %+v; a is %s", st, tt.status("a"))
	}
	tt.saveHistory("rebuildmember", "reseeded", run)
	var ast map[string]any
	if err := tt.client.Do(ctx, "GET", "a", "/mirror/status", nil, &ast); err != nil {
		t.Fatal(err)
	}
	if rb, _ := ast["rebuild"].(map[string]any); rb == nil || rb["state"] != "installed" || rb["source"] != "b" {
		t.Fatalf("a does not report an installed re-seed from b: %v", ast["rebuild"])
	}
	if rec, err := tt.systemRecord("b", workflows.RecordKey(rebuildmember.Name, "records", run, "done")); err != nil || rec.Result != "re-seeded" || rec.By != "ops" {
		t.Fatalf("RebuildMember record: %+v %v", rec, err)
	}
	if v, err := tt.get("a", "Patient/2"); err != nil || !strings.Contains(v, "Patient") {
		t.Fatalf("a after the re-seed: %q %v", v, err)
	}
	t.Logf("RebuildMember (forced) finished in %s; checks: %s", time.Since(t0).Round(time.Millisecond), strings.Join(st.Progress.Checks, "; "))

	// AddDatabase: an existing database on the primary's host (here the
	// same machine) imported into the running tier, on both members.
	t0 = time.Now()
	srcDir, srcSHA := sourceStore(t, "labs", 10)
	run, err = ctl.StartWorkflow(ctx, tt.tc, "add-database", adddatabase.Input{Tier: "records", Database: "labs", SourceDir: srcDir, By: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	st = tt.waitWorkflow(120 * time.Second)
	if st.Status != "Completed" {
		t.Fatalf("AddDatabase: %+v", st)
	}
	tt.saveHistory("adddatabase", "added", run)
	for _, m := range []string{"a", "b"} {
		var h struct{ SHA256 string }
		if err := tt.client.Do(ctx, "GET", m, "/admin/hash/labs", nil, &h); err != nil || h.SHA256 != srcSHA {
			t.Fatalf("labs on %s: %s %v, want the source's %s", m, h.SHA256, err, srcSHA)
		}
	}
	t.Logf("AddDatabase finished in %s; checks: %s", time.Since(t0).Round(time.Millisecond), strings.Join(st.Progress.Checks, "; "))

	// PromoteAsync: b (now primary), its agent and the arbiter gone.
	tt.kill9("agent-b")
	tt.kill9("arbiter")
	tt.kill9("b")
	time.Sleep(3 * testQoS)
	if s := tt.status("a"); s != "backup" {
		t.Fatalf("a is %s with no primary, arbiter or agent", s)
	}
	run, err = ctl.StartWorkflow(ctx, tt.tc, "promote-async", promoteasync.Input{Tier: "records", Member: "a"})
	if err != nil {
		t.Fatal(err)
	}
	tt.waitFor("PromoteAsync awaiting approval", 60*time.Second, func() bool { return tt.state().Progress.State == workflows.StateWaiting })
	st = tt.state()
	want := st.Progress.Approval.Confirm
	if !strings.HasPrefix(want, "epoch 3, loss ") || !strings.Contains(st.Progress.Approval.What, "records that may be lost") {
		t.Fatalf("loss statement: %+v", st.Progress.Approval)
	}
	if _, err := ctl.ApproveWorkflow(ctx, tt.tc, "records", workflows.Approval{Confirm: "epoch 3, loss 1-1", By: "dr"}); err == nil {
		t.Fatal("a wrong loss statement was approved")
	}
	if s := tt.status("a"); s != "backup" {
		t.Fatalf("a is %s after a refused approval", s)
	}
	if _, err := ctl.ApproveWorkflow(ctx, tt.tc, "records", workflows.Approval{Confirm: want, By: "dr"}); err != nil {
		t.Fatal(err)
	}
	st = tt.waitWorkflow(60 * time.Second)
	if st.Status != "Completed" || tt.status("a") != "primary" || tt.epoch("a") != 3 {
		t.Fatalf("PromoteAsync: %+v; a %s/%d", st, tt.status("a"), tt.epoch("a"))
	}
	tt.saveHistory("promoteasync", "promoted", run)
	if rec, err := tt.systemRecord("a", workflows.RecordKey(promoteasync.Name, "records", run, "decision")); err != nil || rec.By != "dr" {
		t.Fatalf("PromoteAsync record: %+v %v", rec, err)
	}
}

// TestTemporalRestartsOnItsFile: `tandem temporal` stops cleanly on SIGTERM
// and a second start reuses its SQLite file (a completed workflow is still
// there); a file another server version wrote is refused.
func TestTemporalRestartsOnItsFile(t *testing.T) {
	if testing.Short() {
		t.Skip("the embedded Temporal server")
	}
	needTemporal(t)
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	start := func() *exec.Cmd {
		c := exec.Command(binary, "temporal", "--data", dir, "--port", fmt.Sprint(port))
		logf, _ := os.OpenFile(filepath.Join(dir, "temporal.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		c.Stdout, c.Stderr = logf, logf
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		// Killed and reaped before the data directory is removed: a server
		// still dying can create files under it while RemoveAll runs.
		t.Cleanup(func() { c.Process.Kill(); c.Wait(); logf.Close() })
		return c
	}
	t0 := time.Now()
	c := start()
	ctx := context.Background()
	tc, err := worker.Dial(ctx, addr, "default", nil, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first start (schema created) answered in %s", time.Since(t0).Round(time.Millisecond))
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "restart-probe", TaskQueue: "nobody"}, "Nothing")
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.TerminateWorkflow(ctx, "restart-probe", run.GetRunID(), "probe"); err != nil {
		t.Fatal(err)
	}
	tc.Close()
	c.Process.Signal(syscall.SIGTERM)
	if err := waitExit(t, c, 30*time.Second); err != nil {
		t.Fatalf("temporal did not exit cleanly on SIGTERM: %v", err)
	}
	t0 = time.Now()
	start()
	if tc, err = worker.Dial(ctx, addr, "default", nil, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	t.Logf("second start (file reused) answered in %s", time.Since(t0).Round(time.Millisecond))
	d, err := tc.DescribeWorkflowExecution(ctx, "restart-probe", run.GetRunID())
	if err != nil {
		t.Fatalf("the workflow of the first start is gone: %v", err)
	}
	if s := d.WorkflowExecutionInfo.GetStatus(); s != enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED {
		t.Fatalf("status %s", s)
	}
	tc.Close()

	// A file written by another server version is refused, not migrated.
	c2 := exec.Command(binary, "temporal", "--data", dir, "--port", fmt.Sprint(freePort(t)))
	if err := os.WriteFile(filepath.Join(dir, "temporal.version"), []byte("v1.0.0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := c2.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "written by Temporal server v1.0.0") {
		t.Fatalf("a file of another server version was used: %v\n%s", err, out)
	}
}

// BenchmarkMirrorSetup (make bench BENCH=setup): the time of a MirrorSetup
// run on a real tier, beside a baseline measured in the same run: one
// status round over every member (what the checklist does several times).
func BenchmarkMirrorSetup(b *testing.B) {
	needTemporal(b)
	tt := startTemporalTier(b)
	ctx := context.Background()
	// Baseline: the median of 21 status rounds.
	var rounds []time.Duration
	for range 21 {
		t0 := time.Now()
		for _, s := range tt.client.Statuses(ctx) {
			if s.Error != "" {
				b.Fatalf("%s: %s", s.Member, s.Error)
			}
		}
		rounds = append(rounds, time.Since(t0))
	}
	slices.Sort(rounds)
	baseline := rounds[len(rounds)/2]
	// The first run on a fresh worker and server, reported apart.
	t0 := time.Now()
	run, err := ctl.StartWorkflow(ctx, tt.tc, "mirror-setup", mirrorsetup.Input{Tier: "records"})
	if err != nil {
		b.Fatal(err)
	}
	if err := tt.tc.GetWorkflow(ctx, workflows.TopologyWorkflowID("records"), run).Get(ctx, nil); err != nil {
		b.Fatal(err)
	}
	first := time.Since(t0)
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		t0 := time.Now()
		run, err := ctl.StartWorkflow(ctx, tt.tc, "mirror-setup", mirrorsetup.Input{Tier: "records"})
		if err != nil {
			b.Fatal(err)
		}
		if err := tt.tc.GetWorkflow(ctx, workflows.TopologyWorkflowID("records"), run).Get(ctx, nil); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
	}
	b.StopTimer()
	setup := total / time.Duration(b.N)
	b.ReportMetric(float64(setup.Microseconds())/1000, "setup-ms")
	b.ReportMetric(float64(first.Microseconds())/1000, "first-setup-ms")
	b.ReportMetric(float64(baseline.Microseconds())/1000, "status-round-ms")
	b.ReportMetric(float64(setup)/float64(baseline), "setup/status-round")
	b.Logf("MirrorSetup %s (first run on a fresh worker %s); one status round over %d members %s (median of 21); ratio %.0f",
		setup.Round(time.Millisecond), first.Round(time.Millisecond), len(tt.file.Tiers[0].Members), baseline.Round(time.Microsecond), float64(setup)/float64(baseline))
}
