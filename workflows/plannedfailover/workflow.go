// Package plannedfailover is the PlannedFailover workflow (DESIGN §5): the
// primary of a tier hands its role to the backup for maintenance, with no
// loss. It checks both failover members, asks the primary to hand over
// through its admin API (POST /admin/planned-failover), where the member's
// policy gate decides; a refusal ends the workflow at once with the gate's
// messages (non-retryable, type GateRefused). Then it waits for the switch
// (the old backup primary in a higher epoch, the old primary back as its
// backup), verifies equal content, and records every decision in the
// mirrored system database.
//
// The workflow never decides whether a failover is allowed: the member's
// gate does, and its answer is in history. Deterministic code only.
package plannedfailover

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tandemhealth/tandem/workflows"
)

// Name is the workflow type's registered name.
const Name = "PlannedFailover"

// Input configures a run.
type Input struct {
	Tier string `json:"tier"`
	By   string `json:"by,omitempty"` // who asked, for the record
	// Wait bounds the switch and the verification; default 2m. Poll is the
	// status interval; default 500ms.
	Wait time.Duration `json:"wait"`
	Poll time.Duration `json:"poll"`
}

// Result is the handover that happened.
type Result struct {
	OldPrimary string `json:"old_primary"`
	NewPrimary string `json:"new_primary"`
	OldEpoch   uint64 `json:"old_epoch"`
	NewEpoch   uint64 `json:"new_epoch"`
}

// Steps, in order.
var Steps = []string{"status", "gate", "switch", "verify", "record"}

// The members' statuses are read pairReads times, pairPause apart, until
// they show one primary and one backup.
const (
	pairReads = 5
	pairPause = time.Second
)

// Workflow runs the planned failover.
func Workflow(ctx workflow.Context, in Input) (Result, error) {
	if in.Wait <= 0 {
		in.Wait = 2 * time.Minute
	}
	if in.Poll <= 0 {
		in.Poll = 500 * time.Millisecond
	}
	f, err := workflows.NewFlow(ctx, Name, in.Tier, Steps)
	if err != nil {
		return Result{}, err
	}
	var act *workflows.Admin
	var res Result

	// 1. Both failover members: one primary, one backup.
	f.Step(ctx, 0, "reading both failover members' status")
	// A member that has just rejoined (or a status read that timed out on
	// a busy host) is read again a few times before the request fails.
	var sts []workflows.MemberStatus
	var p, b workflows.MemberStatus
	for attempt := 1; ; attempt++ {
		sts = nil
		if err := workflow.ExecuteActivity(workflows.ActivityContext(ctx), act.TierStatus, in.Tier).Get(ctx, &sts); err != nil {
			return res, f.Fail(ctx, workflows.ErrNotReady, "status: "+err.Error())
		}
		var ok bool
		if p, b, ok = workflows.Pair(sts); ok {
			break
		}
		if attempt == pairReads {
			return res, f.Fail(ctx, workflows.ErrNotReady, "the tier has no primary/backup pair now ("+workflows.DescribeStatuses(sts)+"): see `tandem ctl status`")
		}
		if err := workflow.Sleep(ctx, pairPause); err != nil {
			return res, err
		}
	}
	res.OldPrimary, res.NewPrimary, res.OldEpoch = p.Member, b.Member, p.Epoch
	f.Check(fmt.Sprintf("%s primary, %s backup, epoch %d", p.Member, b.Member, p.Epoch))

	// 2. Ask the primary; its policy gate decides.
	f.Step(ctx, 1, fmt.Sprintf("asking %s to hand over to %s (the member's policy gate decides)", p.Member, b.Member))
	if err := f.Record(ctx, "requested", "requested", in.By, nil, res); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "recording the request: "+err.Error())
	}
	err = workflow.ExecuteActivity(workflows.ActivityContext(ctx), act.RequestPlannedFailover, in.Tier, p.Member, p.Epoch).Get(ctx, nil)
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == workflows.ErrGateRefused {
			var refusal workflows.GateRefusal
			_ = appErr.Details(&refusal)
			for _, m := range refusal.Messages {
				f.Check("refused: " + m)
			}
			f.RecordBestEffort(ctx, "gate", "refused", refusal.Messages, res)
			return res, f.Fail(ctx, workflows.ErrGateRefused, appErr.Message(), refusal)
		}
		f.RecordBestEffort(ctx, "gate", "error", []string{err.Error()}, res)
		return res, f.Fail(ctx, workflows.ErrNotReady, "planned failover request: "+err.Error())
	}
	f.Check(fmt.Sprintf("%s accepted the planned failover", p.Member))

	// 3. The switch: the old backup primary in a higher epoch, the old
	// primary its backup.
	f.Step(ctx, 2, fmt.Sprintf("waiting for %s to take over and %s to rejoin as backup", b.Member, p.Member))
	sts, err = f.PollTier(ctx, in.Wait, in.Poll, func(sts []workflows.MemberStatus) (bool, string) {
		return Switched(sts, p.Member, b.Member, p.Epoch)
	})
	if err != nil {
		f.RecordBestEffort(ctx, "switch", "timeout", []string{err.Error()}, res)
		return res, err
	}
	np, _, _ := workflows.Pair(sts)
	res.NewEpoch = np.Epoch
	f.Check(fmt.Sprintf("%s primary in epoch %d, %s backup", b.Member, np.Epoch, p.Member))

	// 4. Verify: equal content per database.
	f.Step(ctx, 3, "comparing content hashes per database")
	if _, err := f.CompareHashes(ctx, in.Wait, in.Poll, []string{b.Member, p.Member}, workflows.DatabaseNames(np)); err != nil {
		f.RecordBestEffort(ctx, "verify", "hashes differ", []string{err.Error()}, res)
		return res, err
	}
	f.Check("content hashes equal on both members")

	// 5. Record.
	f.Step(ctx, 4, "recording the outcome")
	if err := f.Record(ctx, "done", "handed over", in.By, nil, res); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "recording the outcome: "+err.Error())
	}
	f.Finish(ctx, workflows.StateDone, fmt.Sprintf("%s is primary in epoch %d; %s is its backup", b.Member, res.NewEpoch, p.Member))
	return res, nil
}

// Switched says whether newPrimary is primary in an epoch above oldEpoch
// with oldPrimary as its backup in the same epoch, and if not, why.
func Switched(sts []workflows.MemberStatus, oldPrimary, newPrimary string, oldEpoch uint64) (bool, string) {
	var np, op workflows.MemberStatus
	for _, s := range sts {
		switch s.Member {
		case newPrimary:
			np = s
		case oldPrimary:
			op = s
		}
	}
	switch {
	case np.Status != "primary" || np.Epoch <= oldEpoch:
		return false, fmt.Sprintf("%s is %s in epoch %d", newPrimary, orUnreachable(np), np.Epoch)
	case op.Status != "backup" || op.Epoch != np.Epoch:
		return false, fmt.Sprintf("%s is %s in epoch %d", oldPrimary, orUnreachable(op), op.Epoch)
	}
	return true, ""
}

func orUnreachable(s workflows.MemberStatus) string {
	if s.Status == "" {
		return "unreachable"
	}
	return s.Status
}
