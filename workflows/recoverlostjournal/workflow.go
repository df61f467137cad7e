// Package recoverlostjournal is the RecoverLostJournal workflow (DESIGN §5):
// the journal tail a former primary moved to quarantine when it rejoined
// (records it wrote but never acknowledged, absent from the tier's
// history) is looked at and, with an administrator's approval, its FHIR
// resources are re-applied on the current primary.
//
// It reads the member's quarantine report (the newest one not recovered
// yet, or the one named), plans every resource against the primary — a
// resource the primary changed since the tail's base version is a conflict
// and left alone, one it already holds is skipped — shows the plan, waits
// for an approval of exactly that plan (the "approve" update; the approval
// expires), re-applies each item with a guarded write (If-Match on the
// base version, If-None-Match "*" for a create, an Idempotency-Key per
// item), records the outcome beside the report on the member (a report is
// recovered once) and in the mirrored system database.
//
// It shares the tier's topology workflow ID. Deterministic code only.
package recoverlostjournal

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/tandemhealth/tandem/workflows"
)

// Name is the workflow type's registered name.
const Name = "RecoverLostJournal"

// Input configures a run.
type Input struct {
	Tier   string `json:"tier"`
	Member string `json:"member"`           // the member holding the report
	Report string `json:"report,omitempty"` // default: its newest report not recovered yet
	// ApprovalTTL is how long the plan may be approved; default 15m.
	ApprovalTTL time.Duration `json:"approval_ttl"`
}

// Result is what the recovery did.
type Result struct {
	Report   string                      `json:"report"`
	Primary  string                      `json:"primary"`
	Epoch    uint64                      `json:"epoch"`
	Plan     workflows.RecoveryPlan      `json:"plan"`
	Outcomes []workflows.RecoveryOutcome `json:"outcomes,omitempty"`
	By       string                      `json:"approved_by,omitempty"`
	Applied  int                         `json:"applied"`
	Present  int                         `json:"already_present"`
	Conflict int                         `json:"conflicts"`
}

// Steps, in order.
var Steps = []string{"status", "report", "plan", "approval", "re-apply", "record"}

// batch bounds the items one ApplyRecovery activity writes.
const batch = 100

// shownItems bounds the plan lines in the progress.
const shownItems = 50

// Workflow runs the recovery.
func Workflow(ctx workflow.Context, in Input) (Result, error) {
	if in.ApprovalTTL <= 0 {
		in.ApprovalTTL = 15 * time.Minute
	}
	f, err := workflows.NewFlow(ctx, Name, in.Tier, Steps)
	if err != nil {
		return Result{}, err
	}
	var act *workflows.Admin
	actx := workflows.ActivityContext(ctx)
	res := Result{Report: in.Report}

	// 1. The primary, and the member holding the report.
	sts, err := f.ReadTier(ctx, 0)
	if err != nil {
		return res, err
	}
	found := false
	for _, s := range sts {
		if s.Member == in.Member {
			found = s.Reachable()
		}
		if s.Reachable() && s.Status == "primary" {
			res.Primary, res.Epoch = s.Member, s.Epoch
		}
	}
	switch {
	case !found:
		return res, f.Fail(ctx, workflows.ErrNotReady, in.Member+" does not answer: its quarantine reports are on its disk; start it first")
	case res.Primary == "":
		return res, f.Fail(ctx, workflows.ErrNotReady, "the tier has no primary to re-apply on: see `tandem ctl status`")
	}
	f.Check(fmt.Sprintf("%s is primary in epoch %d; %s answers", res.Primary, res.Epoch, in.Member))

	// 2. The report.
	f.Step(ctx, 1, "reading "+in.Member+"'s quarantine report")
	var lj workflows.LostJournal
	if err := workflow.ExecuteActivity(actx, act.ReadLostJournal, in.Tier, in.Member, in.Report).Get(ctx, &lj); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "quarantine report: "+err.Error())
	}
	res.Report = lj.Report
	if lj.Recovered != "" {
		return res, f.Fail(ctx, workflows.ErrNotReady, fmt.Sprintf("quarantine report %s on %s was already %s", lj.Report, in.Member, lj.Recovered))
	}
	f.Check(fmt.Sprintf("report %s: LSN %d-%d after %d, %d FHIR resources", lj.Report, lj.FirstLSN, lj.LastLSN, lj.AfterLSN, len(lj.Lost)))
	if len(lj.Other) > 0 {
		f.Check(fmt.Sprintf("records outside the fhir database are not re-applied (kept in the report): %s", countList(lj.Other)))
	}

	// 3. The plan against the primary.
	f.Step(ctx, 2, "reading each resource on "+res.Primary)
	if err := workflow.ExecuteActivity(actx, act.PlanRecovery, in.Tier, in.Member, lj.Report, res.Primary).Get(ctx, &res.Plan); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "plan: "+err.Error())
	}
	p := res.Plan
	apply := p.Count(workflows.RecoverCreate) + p.Count(workflows.RecoverUpdate) + p.Count(workflows.RecoverDelete)
	summary := fmt.Sprintf("re-apply %d on %s (create %d, update %d, delete %d); already present %d; conflicts left alone %d; nothing to do %d",
		apply, res.Primary, p.Count(workflows.RecoverCreate), p.Count(workflows.RecoverUpdate), p.Count(workflows.RecoverDelete),
		p.Count(workflows.RecoverPresent), p.Count(workflows.RecoverConflict), p.Count(workflows.RecoverNone))
	f.Check(summary)
	for i, it := range p.Items {
		if i == shownItems {
			f.Check(fmt.Sprintf("… and %d more (the plan is in the workflow's result and the system database)", len(p.Items)-shownItems))
			break
		}
		f.Check(it.Line())
	}
	if err := f.Record(ctx, "plan", "planned", "", []string{summary}, res); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "recording the plan: "+err.Error())
	}

	// 4. Approval of exactly this plan, unless there is nothing to decide.
	if apply > 0 || p.Count(workflows.RecoverConflict) > 0 {
		f.Step(ctx, 3, "waiting for an approval of the plan")
		confirm := fmt.Sprintf("recover %s: apply %d, conflicts %d, plan %s", lj.Report, apply, p.Count(workflows.RecoverConflict), p.Digest())
		a, err := f.AwaitApproval(ctx, summary, confirm, in.ApprovalTTL)
		if err != nil {
			f.RecordBestEffort(ctx, "approval", workflows.ApprovalOutcome(err), []string{err.Error()}, res)
			return res, err
		}
		res.By = a.By
	} else {
		f.Step(ctx, 3, "nothing to approve: every resource is present or was created and deleted in the tail")
	}

	// 5. Re-apply, in batches.
	f.Step(ctx, 4, fmt.Sprintf("re-applying %d resources on %s", apply, res.Primary))
	var todo []workflows.RecoveryItem
	for _, it := range p.Items {
		if it.Applies() {
			todo = append(todo, it)
		}
	}
	runID := workflow.GetInfo(ctx).WorkflowExecution.RunID
	for len(todo) > 0 {
		n := min(batch, len(todo))
		var out []workflows.RecoveryOutcome
		if err := workflow.ExecuteActivity(actx, act.ApplyRecovery, in.Tier, in.Member, lj.Report, res.Primary, runID, todo[:n]).Get(ctx, &out); err != nil {
			f.RecordBestEffort(ctx, "re-apply", "failed", []string{err.Error()}, res)
			return res, f.Fail(ctx, workflows.ErrNotReady, "re-apply: "+err.Error())
		}
		res.Outcomes = append(res.Outcomes, out...)
		todo = todo[n:]
	}
	res.Present = p.Count(workflows.RecoverPresent)
	res.Conflict = p.Count(workflows.RecoverConflict)
	for _, o := range res.Outcomes {
		switch o.Outcome {
		case workflows.OutcomeApplied:
			res.Applied++
		case workflows.OutcomePresent:
			res.Present++
		default:
			res.Conflict++
			f.Check(fmt.Sprintf("conflict %s: %s", o.Ref, o.Why))
		}
	}
	done := fmt.Sprintf("report %s: %d re-applied on %s in epoch %d, %d already present, %d conflicts left alone", lj.Report, res.Applied, res.Primary, res.Epoch, res.Present, res.Conflict)
	f.Check(done)

	// 6. Record: beside the report (so it is recovered once) and in the
	// system database.
	f.Step(ctx, 5, "recording the outcome")
	rec := workflows.QuarantineRecovery{By: res.By, Workflow: runID, Primary: res.Primary, Epoch: res.Epoch,
		Applied: res.Applied, Present: res.Present, Conflict: res.Conflict, Summary: done}
	if rec.By == "" {
		rec.By = "RecoverLostJournal (nothing to approve)"
	}
	if err := workflow.ExecuteActivity(actx, act.MarkRecovered, in.Tier, in.Member, lj.Report, rec).Get(ctx, nil); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "recording the recovery on "+in.Member+": "+err.Error())
	}
	if err := f.Record(ctx, "done", "recovered", res.By, []string{done}, res); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "recording the outcome: "+err.Error())
	}
	f.Finish(ctx, workflows.StateDone, done)
	return res, nil
}

// countList is "audit 3, records 2" in a stable order.
func countList(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // map order varies between replays
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
