package promoteasync

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/tandemhealth/tandem/workflows"
	"github.com/tandemhealth/tandem/workflows/tiertest"
)

var act *workflows.Admin

var preview = workflows.PromotionPreview{Member: "b", Role: "backup", Status: "backup", NewEpoch: 2, LossFrom: 41, LossTo: 45,
	HeldHere: map[string]int{"fhir": 3}, NeverReceived: 2, Confirm: "epoch 2, loss 41-45"}

// primaryGone is a tier whose primary does not answer.
func primaryGone(env *testsuite.TestWorkflowEnvironment, promoted *bool) {
	env.OnActivity(act.TierStatus, mock.Anything, "records").Return(func(context.Context, string) ([]workflows.MemberStatus, error) {
		if *promoted {
			return []workflows.MemberStatus{tiertest.Member("a", "", 0, ""), tiertest.Member("b", "primary", 2, "")}, nil
		}
		return []workflows.MemberStatus{tiertest.Member("a", "", 0, ""), tiertest.Member("b", "backup", 1, "disconnected")}, nil
	})
	env.OnActivity(act.PromotionPreview, mock.Anything, "records", "b", uint64(1)).Return(preview, nil)
}

func newEnv() (*testsuite.TestWorkflowEnvironment, *tiertest.Records, *bool) {
	env := tiertest.NewEnv()
	Register(env)
	recs := &tiertest.Records{}
	recs.Mock(env, "records")
	promoted := new(bool)
	primaryGone(env, promoted)
	return env, recs, promoted
}

func TestPromoteAsync(t *testing.T) {
	t.Run("the exact loss is shown, approved and promoted, and the decision recorded", func(t *testing.T) {
		env, recs, promoted := newEnv()
		env.OnActivity(act.ForcePromote, mock.Anything, "records", "b", uint64(1), "epoch 2, loss 41-45", uint64(2)).Return(
			func(context.Context, string, string, uint64, string, uint64) error { *promoted = true; return nil })
		var shown workflows.Progress
		env.RegisterDelayedCallback(func() { shown = tiertest.Progress(env) }, time.Minute)
		var wrong, right error
		tiertest.Approve(env, 2*time.Minute, workflows.Approval{Confirm: "epoch 2, loss 41-44", By: "dr-lead"}, &wrong)
		tiertest.Approve(env, 3*time.Minute, workflows.Approval{Confirm: "epoch 2, loss 41-45", By: "dr-lead"}, &right)
		env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "b"})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if shown.State != workflows.StateWaiting || shown.Approval == nil || shown.Approval.Confirm != preview.Confirm ||
			!strings.Contains(shown.Approval.What, "LSN 41 to 45") || !strings.Contains(shown.Approval.What, "never received here: 2") {
			t.Fatalf("the loss was not shown while waiting: %+v", shown)
		}
		if wrong == nil || !strings.Contains(wrong.Error(), "does not match") || right != nil {
			t.Fatalf("validator: wrong=%v right=%v", wrong, right)
		}
		var res Result
		env.GetWorkflowResult(&res)
		if res.ApprovedBy != "dr-lead" || res.Preview.Confirm != preview.Confirm {
			t.Fatalf("result %+v", res)
		}
		all := recs.All()
		if recs.Events() != "decision" || all[0].By != "dr-lead" || !strings.Contains(all[0].Messages[0], "LSN 41 to 45") {
			t.Fatalf("records %+v", all)
		}
	})
	t.Run("the approval expires: nothing is promoted (a late approval is refused by the validator: TestValidateApproval)", func(t *testing.T) {
		env, recs, _ := newEnv()
		env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "b", ApprovalTTL: 15 * time.Minute})
		if tiertest.ErrType(env.GetWorkflowError()) != workflows.ErrApprovalExpired {
			t.Fatalf("error %v", env.GetWorkflowError())
		}
		env.AssertNotCalled(t, "ForcePromote", mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything)
		if recs.Events() != "approval" || recs.All()[0].Result != "expired" {
			t.Fatalf("records %s", recs.Events())
		}
		if p := tiertest.Progress(env); p.State != workflows.StateExpired {
			t.Fatalf("progress %+v", p)
		}
	})
	t.Run("the member refuses a statement that changed: fails without retry", func(t *testing.T) {
		env, recs, _ := newEnv()
		calls := 0
		env.OnActivity(act.ForcePromote, mock.Anything, "records", "b", uint64(1), preview.Confirm, uint64(2)).Return(
			func(context.Context, string, string, uint64, string, uint64) error {
				calls++
				return temporal.NewNonRetryableApplicationError("b refused the promotion: confirmation does not match the current preview", workflows.ErrPromotionRefused, nil)
			})
		var rejected error
		tiertest.Approve(env, time.Minute, workflows.Approval{Confirm: preview.Confirm, By: "dr-lead"}, &rejected)
		env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "b"})
		if tiertest.ErrType(env.GetWorkflowError()) != workflows.ErrPromotionRefused || calls != 1 || rejected != nil {
			t.Fatalf("error %v, calls %d, rejected %v", env.GetWorkflowError(), calls, rejected)
		}
		if recs.Events() != "" {
			t.Fatalf("records %s", recs.Events())
		}
	})
	t.Run("a primary that answers is not force-promoted over", func(t *testing.T) {
		env := tiertest.NewEnv()
		Register(env)
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(tiertest.Healthy(1), nil)
		env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "b"})
		err := env.GetWorkflowError()
		if tiertest.ErrType(err) != workflows.ErrNotReady || !strings.Contains(err.Error(), "use PlannedFailover") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestPromoteAsyncCanceledWhileWaiting(t *testing.T) {
	env, recs, _ := newEnv()
	env.RegisterDelayedCallback(env.CancelWorkflow, 5*time.Minute)
	env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "b"})
	if !temporal.IsCanceledError(env.GetWorkflowError()) {
		t.Fatalf("error %v", env.GetWorkflowError())
	}
	// The record is written from a disconnected context: cancellation
	// does not stop it.
	if recs.Events() != "approval" || recs.All()[0].Result != "canceled" {
		t.Fatalf("records %s %+v", recs.Events(), recs.All())
	}
	if p := tiertest.Progress(env); p.State != workflows.StateCanceled {
		t.Fatalf("progress %+v", p)
	}
}

// A dr member (DESIGN §3): promoted only with the operator's statement and
// the failover pair gone, through the PromoteDR activity (which carries
// the statement to the member).
func TestPromoteAsyncDRMember(t *testing.T) {
	drPreview := workflows.PromotionPreview{Member: "c", Role: "async", Status: "async", NewEpoch: 2, LossFrom: 46, LossTo: 45,
		HeldHere: map[string]int{}, Confirm: "epoch 2, loss 46-45", NeedsStatement: true}
	env := func(pairAnswers bool, promoted *bool) *testsuite.TestWorkflowEnvironment {
		env := tiertest.NewEnv()
		Register(env)
		recs := &tiertest.Records{}
		recs.Mock(env, "records")
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(func(context.Context, string) ([]workflows.MemberStatus, error) {
			c := tiertest.Member("c", "async", 1, "disconnected")
			c.Role = "dr"
			a := tiertest.Member("a", "", 0, "")
			if pairAnswers {
				a = tiertest.Member("a", "in-trouble", 1, "")
			}
			if *promoted {
				c.Status, c.Epoch = "primary", 2
			}
			return []workflows.MemberStatus{a, tiertest.Member("b", "", 0, ""), c}, nil
		})
		env.OnActivity(act.PromotionPreview, mock.Anything, "records", "c", uint64(1)).Return(drPreview, nil)
		return env
	}
	t.Run("without the operator's statement nothing is promoted", func(t *testing.T) {
		e := env(false, new(bool))
		e.ExecuteWorkflow(Name, Input{Tier: "records", Member: "c"})
		if err := e.GetWorkflowError(); tiertest.ErrType(err) != workflows.ErrNotReady || !strings.Contains(err.Error(), "stated_gone") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("with a failover member answering nothing is promoted", func(t *testing.T) {
		e := env(true, new(bool))
		e.ExecuteWorkflow(Name, Input{Tier: "records", Member: "c", StatedGone: "site lost"})
		if err := e.GetWorkflowError(); tiertest.ErrType(err) != workflows.ErrNotReady || !strings.Contains(err.Error(), "failover member a answers") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("statement, approval, promotion", func(t *testing.T) {
		promoted := new(bool)
		e := env(false, promoted)
		e.OnActivity(act.PromoteDR, mock.Anything, "records", "c", uint64(1), drPreview.Confirm, "site lost", uint64(2)).Return(
			func(context.Context, string, string, uint64, string, string, uint64) error {
				*promoted = true
				return nil
			})
		var approved error
		tiertest.Approve(e, time.Minute, workflows.Approval{Confirm: drPreview.Confirm, By: "dr-lead"}, &approved)
		e.ExecuteWorkflow(Name, Input{Tier: "records", Member: "c", StatedGone: "site lost"})
		if err := e.GetWorkflowError(); err != nil || approved != nil || !*promoted {
			t.Fatalf("error %v, approval %v, promoted %v", err, approved, *promoted)
		}
	})
}
