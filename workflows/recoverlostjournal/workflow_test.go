package recoverlostjournal

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"

	"github.com/tandemhealth/tandem/workflows"
	"github.com/tandemhealth/tandem/workflows/tiertest"
)

var act *workflows.Admin

// a is the former primary holding the report, b the primary.
func statuses() []workflows.MemberStatus { return tiertest.Switched(2) }

func item(id, action string) workflows.RecoveryItem {
	return workflows.RecoveryItem{LostResource: workflows.LostResource{Type: "Patient", ID: id, Version: 1, Interaction: "create", SHA256: "sha-" + id}, Action: action}
}

func journal(ids ...string) workflows.LostJournal {
	lj := workflows.LostJournal{Member: "a", Report: "r1", AfterLSN: 10, FirstLSN: 11, LastLSN: 13, Other: map[string]int{"records": 1}}
	for _, id := range ids {
		lj.Lost = append(lj.Lost, workflows.LostResource{Type: "Patient", ID: id})
	}
	return lj
}

type run struct {
	env     *testsuite.TestWorkflowEnvironment
	recs    *tiertest.Records
	applied *[][]string // ids per ApplyRecovery call
	marked  *workflows.QuarantineRecovery
}

func newRun(t *testing.T, lj workflows.LostJournal, plan workflows.RecoveryPlan, outcome func(workflows.RecoveryItem) string) run {
	env := tiertest.NewEnv()
	Register(env)
	r := run{env: env, recs: &tiertest.Records{}, applied: new([][]string), marked: new(workflows.QuarantineRecovery)}
	r.recs.Mock(env, "records")
	env.OnActivity(act.TierStatus, mock.Anything, "records").Return(statuses(), nil)
	env.OnActivity(act.ReadLostJournal, mock.Anything, "records", "a", "").Return(lj, nil)
	env.OnActivity(act.PlanRecovery, mock.Anything, "records", "a", "r1", "b").Return(plan, nil)
	env.OnActivity(act.ApplyRecovery, mock.Anything, "records", "a", "r1", "b", mock.Anything, mock.Anything).Return(
		func(_ context.Context, _, _, _, _, _ string, items []workflows.RecoveryItem) ([]workflows.RecoveryOutcome, error) {
			var ids []string
			var out []workflows.RecoveryOutcome
			for _, it := range items {
				ids = append(ids, it.ID)
				out = append(out, workflows.RecoveryOutcome{Ref: it.Ref(), Action: it.Action, Outcome: outcome(it), Why: "test"})
			}
			*r.applied = append(*r.applied, ids)
			return out, nil
		})
	env.OnActivity(act.MarkRecovered, mock.Anything, "records", "a", "r1", mock.Anything).Return(
		func(_ context.Context, _, _, _ string, rec workflows.QuarantineRecovery) error {
			*r.marked = rec
			return nil
		})
	return r
}

func applied(workflows.RecoveryItem) string { return workflows.OutcomeApplied }

func TestRecoverLostJournal(t *testing.T) {
	plan := workflows.RecoveryPlan{Primary: "b", Items: []workflows.RecoveryItem{
		item("q-1", workflows.RecoverCreate), item("q-2", workflows.RecoverConflict), item("q-3", workflows.RecoverUpdate),
		item("q-4", workflows.RecoverPresent), item("q-5", workflows.RecoverNone), item("q-6", workflows.RecoverDelete)}}
	confirm := "recover r1: apply 3, conflicts 1, plan " + plan.Digest()

	t.Run("the plan is shown, a wrong approval refused, the approved items re-applied and recorded", func(t *testing.T) {
		r := newRun(t, journal("q-1", "q-2", "q-3", "q-4", "q-5", "q-6"), plan, func(it workflows.RecoveryItem) string {
			if it.ID == "q-6" {
				return workflows.OutcomeConflict // changed since the plan
			}
			return workflows.OutcomeApplied
		})
		var wrong, right error
		var shown workflows.Progress
		r.env.RegisterDelayedCallback(func() { shown = tiertest.Progress(r.env) }, 30*time.Second)
		tiertest.Approve(r.env, time.Minute, workflows.Approval{Confirm: "recover r1: apply 3, conflicts 1, plan 000000000000", By: "ops"}, &wrong)
		tiertest.Approve(r.env, 2*time.Minute, workflows.Approval{Confirm: confirm, By: "ops"}, &right)
		r.env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "a"})
		if err := r.env.GetWorkflowError(); err != nil || wrong == nil || right != nil {
			t.Fatalf("error %v; wrong approval %v; right approval %v", err, wrong, right)
		}
		if shown.State != workflows.StateWaiting || shown.Approval == nil || shown.Approval.Confirm != confirm {
			t.Fatalf("progress while waiting %+v", shown)
		}
		lines := strings.Join(shown.Checks, "\n")
		for _, want := range []string{"re-apply 3 on b (create 1, update 1, delete 1); already present 1; conflicts left alone 1; nothing to do 1",
			"create Patient/q-1", "conflict Patient/q-2", "not re-applied (kept in the report): records 1"} {
			if !strings.Contains(lines, want) {
				t.Fatalf("progress lacks %q:\n%s", want, lines)
			}
		}
		if got := fmt.Sprint(*r.applied); got != "[[q-1 q-3 q-6]]" {
			t.Fatalf("re-applied %s", got)
		}
		var res Result
		r.env.GetWorkflowResult(&res)
		if res.Applied != 2 || res.Present != 1 || res.Conflict != 2 || res.By != "ops" || res.Primary != "b" || res.Epoch != 2 {
			t.Fatalf("result %+v", res)
		}
		if r.marked.By != "ops" || r.marked.Applied != 2 || r.marked.Conflict != 2 || r.marked.Workflow == "" {
			t.Fatalf("recovery recorded on a: %+v", *r.marked)
		}
		if r.recs.Events() != "plan,done" || r.recs.All()[1].By != "ops" {
			t.Fatalf("records %s", r.recs.Events())
		}
	})
	t.Run("an approval that never comes: nothing is written, the expiry recorded", func(t *testing.T) {
		r := newRun(t, journal("q-1"), plan, applied)
		r.env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "a", ApprovalTTL: time.Minute})
		if err := r.env.GetWorkflowError(); tiertest.ErrType(err) != workflows.ErrApprovalExpired {
			t.Fatalf("error %v", err)
		}
		if len(*r.applied) != 0 || r.marked.By != "" || r.recs.Events() != "plan,approval" {
			t.Fatalf("applied %v, marked %+v, records %s", *r.applied, *r.marked, r.recs.Events())
		}
	})
	t.Run("a report already recovered is refused before any plan", func(t *testing.T) {
		lj := journal("q-1")
		lj.Recovered = "recovered by ops at 2026-11-26T20:00:00Z (…)"
		r := newRun(t, lj, plan, applied)
		r.env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "a"})
		if err := r.env.GetWorkflowError(); tiertest.ErrType(err) != workflows.ErrNotReady || !strings.Contains(err.Error(), "already recovered by ops") {
			t.Fatalf("error %v", err)
		}
		r.env.AssertNotCalled(t, "PlanRecovery", mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything)
	})
	t.Run("no primary: refused", func(t *testing.T) {
		env := tiertest.NewEnv()
		Register(env)
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return([]workflows.MemberStatus{tiertest.Member("a", "backup", 2, ""), tiertest.Member("b", "", 0, "")}, nil)
		env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "a"})
		if err := env.GetWorkflowError(); tiertest.ErrType(err) != workflows.ErrNotReady || !strings.Contains(err.Error(), "no primary") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("nothing to decide: recorded without an approval", func(t *testing.T) {
		quiet := workflows.RecoveryPlan{Primary: "b", Items: []workflows.RecoveryItem{item("q-4", workflows.RecoverPresent), item("q-5", workflows.RecoverNone)}}
		r := newRun(t, journal("q-4", "q-5"), quiet, applied)
		r.env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "a"})
		if err := r.env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if len(*r.applied) != 0 || r.marked.Present != 1 || r.recs.Events() != "plan,done" {
			t.Fatalf("applied %v, marked %+v, records %s", *r.applied, *r.marked, r.recs.Events())
		}
	})
	t.Run("many resources are re-applied in batches", func(t *testing.T) {
		big := workflows.RecoveryPlan{Primary: "b"}
		for i := range 250 {
			big.Items = append(big.Items, item(fmt.Sprintf("p-%d", i), workflows.RecoverCreate))
		}
		r := newRun(t, journal(), big, applied)
		tiertest.Approve(r.env, time.Minute, workflows.Approval{Confirm: "recover r1: apply 250, conflicts 0, plan " + big.Digest(), By: "ops"}, new(error))
		r.env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "a"})
		if err := r.env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for _, b := range *r.applied {
			sizes = append(sizes, len(b))
		}
		if fmt.Sprint(sizes) != "[100 100 50]" {
			t.Fatalf("batches %v", sizes)
		}
		if p := tiertest.Progress(r.env); !strings.Contains(strings.Join(p.Checks, "\n"), "… and 200 more") {
			t.Fatalf("progress shows every item: %d lines", len(p.Checks))
		}
	})
}
