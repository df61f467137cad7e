// Package promoteasync is the PromoteAsync workflow (DESIGN §5): a
// disaster-recovery promotion of a backup whose primary is gone. It reads
// the member's exact loss statement (GET /admin/force-promote), waits for
// an approval through the "approve" update — whose validator refuses an
// approval that does not carry that statement back unchanged, names nobody,
// or comes after the approval expired — then sends the forced promotion
// with the approved statement (the member refuses it if its state changed),
// waits for the member to be primary in the new epoch, and records the
// preview, the approver and the outcome in the mirrored system database on
// the new primary.
//
// Deterministic code only.
package promoteasync

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tandemhealth/tandem/workflows"
)

// Name is the workflow type's registered name.
const Name = "PromoteAsync"

// Input configures a run.
type Input struct {
	Tier   string `json:"tier"`
	Member string `json:"member"` // the member to promote
	// ApprovalTTL is how long the loss statement may be approved; default
	// 15m. After it the workflow fails (ApprovalExpired) and a new run
	// reads a fresh statement.
	ApprovalTTL time.Duration `json:"approval_ttl"`
	Wait        time.Duration `json:"wait"` // bound on the promotion taking effect; default 1m
	Poll        time.Duration `json:"poll"` // default 500ms
	// StatedGone: promoting a dr member needs the operator's statement that
	// both failover members are gone (recorded on the member).
	StatedGone string `json:"stated_gone,omitempty"`
}

// Result is the promotion that happened.
type Result struct {
	Preview    workflows.PromotionPreview `json:"preview"`
	ApprovedBy string                     `json:"approved_by"`
	TierEpoch  uint64                     `json:"tier_epoch"`
}

// Steps, in order.
var Steps = []string{"status", "preview", "approval", "promote", "verify", "record"}

// Workflow runs the promotion.
func Workflow(ctx workflow.Context, in Input) (Result, error) {
	if in.ApprovalTTL <= 0 {
		in.ApprovalTTL = 15 * time.Minute
	}
	if in.Wait <= 0 {
		in.Wait = time.Minute
	}
	if in.Poll <= 0 {
		in.Poll = 500 * time.Millisecond
	}
	f, err := workflows.NewFlow(ctx, Name, in.Tier, Steps)
	if err != nil {
		return Result{}, err
	}
	var act *workflows.Admin
	actx := workflows.ActivityContext(ctx)
	var res Result

	// 1. The highest epoch anyone reachable knows, so the new one is new.
	f.Step(ctx, 0, "reading every member's status")
	var sts []workflows.MemberStatus
	if err := workflow.ExecuteActivity(actx, act.TierStatus, in.Tier).Get(ctx, &sts); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "status: "+err.Error())
	}
	found := false
	for _, s := range sts {
		if s.Reachable() {
			res.TierEpoch = max(res.TierEpoch, s.Epoch)
		}
		if s.Member == in.Member {
			found = s.Reachable()
		}
		if s.Reachable() && s.Status == "primary" && s.Member != in.Member {
			return res, f.Fail(ctx, workflows.ErrNotReady, fmt.Sprintf("%s is primary and answers: use PlannedFailover, not a forced promotion", s.Member))
		}
	}
	if !found {
		return res, f.Fail(ctx, workflows.ErrNotReady, in.Member+" does not answer")
	}
	f.Check(fmt.Sprintf("highest epoch in the tier: %d", res.TierEpoch))

	// 2. The exact loss statement.
	f.Step(ctx, 1, "reading what the promotion would lose")
	if err := workflow.ExecuteActivity(actx, act.PromotionPreview, in.Tier, in.Member, res.TierEpoch).Get(ctx, &res.Preview); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "preview: "+err.Error())
	}
	p := res.Preview
	loss := fmt.Sprintf("promote %s to epoch %d; records that may be lost: LSN %d to %d (held here per database: %v; never received here: %d)",
		in.Member, p.NewEpoch, p.LossFrom, p.LossTo, p.HeldHere, p.NeverReceived)
	if p.NeedsStatement {
		// A dr member: only with the failover pair gone, on the operator's statement.
		if strings.TrimSpace(in.StatedGone) == "" {
			return res, f.Fail(ctx, workflows.ErrNotReady, in.Member+" is a dr member: start the workflow with the operator's statement that both failover members are gone (stated_gone)")
		}
		for _, s := range sts {
			if s.Role == "failover" && s.Reachable() {
				return res, f.Fail(ctx, workflows.ErrNotReady, fmt.Sprintf("failover member %s answers (%s): a dr member is promoted only when the failover pair is gone", s.Member, s.Status))
			}
		}
		loss += fmt.Sprintf("; %s is a dr member: the pair may have written beyond LSN %d; operator's statement: %q", in.Member, p.LossTo, in.StatedGone)
	}
	f.Check(loss)

	// 3. Approval of exactly that statement, before it expires.
	f.Step(ctx, 2, "waiting for an approval of the loss statement")
	a, err := f.AwaitApproval(ctx, loss, p.Confirm, in.ApprovalTTL)
	if err != nil {
		// Nothing was changed. The record is best effort: with the primary
		// gone, no member may take it.
		f.RecordBestEffort(ctx, "approval", workflows.ApprovalOutcome(err), []string{err.Error()}, res)
		return res, err
	}
	res.ApprovedBy = a.By

	// 4. The forced promotion with the approved statement.
	f.Step(ctx, 3, "promoting "+in.Member)
	if p.NeedsStatement {
		err = workflow.ExecuteActivity(actx, act.PromoteDR, in.Tier, in.Member, res.TierEpoch, a.Confirm, in.StatedGone, p.NewEpoch).Get(ctx, nil)
	} else {
		err = workflow.ExecuteActivity(actx, act.ForcePromote, in.Tier, in.Member, res.TierEpoch, a.Confirm, p.NewEpoch).Get(ctx, nil)
	}
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == workflows.ErrPromotionRefused {
			return res, f.Fail(ctx, workflows.ErrPromotionRefused, appErr.Message())
		}
		return res, f.Fail(ctx, workflows.ErrNotReady, "promotion: "+err.Error())
	}

	// 5. The member is primary in the new epoch.
	f.Step(ctx, 4, fmt.Sprintf("waiting for %s to be primary in epoch %d", in.Member, p.NewEpoch))
	if _, err := f.PollTier(ctx, in.Wait, in.Poll, func(sts []workflows.MemberStatus) (bool, string) {
		for _, s := range sts {
			if s.Member == in.Member {
				if s.Status == "primary" && s.Epoch >= p.NewEpoch {
					return true, ""
				}
				return false, fmt.Sprintf("%s is %s in epoch %d", s.Member, s.Status, s.Epoch)
			}
		}
		return false, in.Member + " not in the status"
	}); err != nil {
		return res, err
	}
	f.Check(fmt.Sprintf("%s is primary in epoch %d", in.Member, p.NewEpoch))

	// 6. The decision, on the new primary.
	f.Step(ctx, 5, "recording the decision")
	if err := f.Record(ctx, "decision", "promoted", a.By, []string{loss}, res); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "recording the decision: "+err.Error())
	}
	f.Finish(ctx, workflows.StateDone, fmt.Sprintf("%s is primary in epoch %d (approved by %s)", in.Member, p.NewEpoch, a.By))
	return res, nil
}
