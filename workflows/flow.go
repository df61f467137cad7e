package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// The helpers below run inside workflow code: deterministic only.

// Flow is a running workflow's progress, its approval slot and its record
// writer. NewFlow registers the progress query and the approve update.
type Flow struct {
	P        Progress
	Tier     string
	approval *Approval
}

// a nil *Admin names the activities for ExecuteActivity.
var act *Admin

// NewFlow starts tracking a workflow named name on tier with steps.
func NewFlow(ctx workflow.Context, name, tier string, steps []string) (*Flow, error) {
	f := &Flow{Tier: tier, P: Progress{Workflow: name, Tier: tier, Steps: steps, State: StateRunning, Updated: workflow.Now(ctx)}}
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (Progress, error) { return f.P, nil }); err != nil {
		return nil, err
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateApprove,
		func(ctx workflow.Context, a Approval) (string, error) {
			f.approval = &a
			return "approved by " + a.By, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, a Approval) error {
			if f.approval != nil {
				return errors.New("already approved by " + f.approval.By)
			}
			return ValidateApproval(f.P.Approval, workflow.Now(ctx), a)
		}})
	return f, err
}

// Step moves to step i with a message.
func (f *Flow) Step(ctx workflow.Context, i int, msg string) {
	f.P.Step, f.P.Message, f.P.Updated = i, msg, workflow.Now(ctx)
	workflow.GetLogger(ctx).Info("step", "step", f.stepName(), "message", msg)
}

func (f *Flow) stepName() string {
	if f.P.Step < len(f.P.Steps) {
		return f.P.Steps[f.P.Step]
	}
	return "done"
}

// Check adds one result line.
func (f *Flow) Check(line string) { f.P.Checks = append(f.P.Checks, line) }

// Finish ends the flow in state with a message.
func (f *Flow) Finish(ctx workflow.Context, state, msg string) {
	f.P.State, f.P.Message, f.P.Updated, f.P.Approval = state, msg, workflow.Now(ctx), nil
	if state == StateDone {
		f.P.Step = len(f.P.Steps)
	}
}

// Fail ends the flow as failed (or refused/expired, by the error's type)
// and returns a non-retryable workflow error of that type.
func (f *Flow) Fail(ctx workflow.Context, errType, msg string, details ...any) error {
	state := StateFailed
	switch errType {
	case ErrGateRefused, ErrPromotionRefused:
		state = StateRefused
	case ErrApprovalExpired:
		state = StateExpired
	}
	f.Finish(ctx, state, msg)
	return temporal.NewNonRetryableApplicationError(msg, errType, nil, details...)
}

// Activity options: short attempts, retried with backoff. Activities that
// may legitimately fail for a while (no primary yet) are retried up to
// MaximumAttempts; the workflows poll for state themselves.
func ActivityContext(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2,
			MaximumInterval: 10 * time.Second, MaximumAttempts: 10},
	})
}

// ReadTier is a workflow's first step: every member's status (TierStatus),
// or the run failed with ErrNotReady when the activity gives up.
func (f *Flow) ReadTier(ctx workflow.Context, step int) ([]MemberStatus, error) {
	f.Step(ctx, step, "reading the tier's status")
	var sts []MemberStatus
	if err := workflow.ExecuteActivity(ActivityContext(ctx), act.TierStatus, f.Tier).Get(ctx, &sts); err != nil {
		return nil, f.Fail(ctx, ErrNotReady, "status: "+err.Error())
	}
	return sts, nil
}

// Record writes an event of this run to the mirrored system database.
func (f *Flow) Record(ctx workflow.Context, event, result, by string, messages []string, detail any) error {
	info := workflow.GetInfo(ctx)
	rec := Record{Key: RecordKey(f.P.Workflow, f.Tier, info.WorkflowExecution.RunID, event),
		Workflow: f.P.Workflow, WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID,
		Tier: f.Tier, Event: event, At: workflow.Now(ctx), By: by, Result: result, Messages: messages, Detail: detail}
	err := workflow.ExecuteActivity(ActivityContext(ctx), act.WriteRecord, f.Tier, rec).Get(ctx, nil)
	if err == nil {
		f.Check(fmt.Sprintf("recorded %s in the system database (%s)", event, rec.Key))
	}
	return err
}

// RecordBestEffort records on a failure path: a tier without a primary
// cannot take the record, and the failure itself must still be returned.
func (f *Flow) RecordBestEffort(ctx workflow.Context, event, result string, messages []string, detail any) {
	ctx, _ = workflow.NewDisconnectedContext(ctx)
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 3},
	})
	info := workflow.GetInfo(ctx)
	rec := Record{Key: RecordKey(f.P.Workflow, f.Tier, info.WorkflowExecution.RunID, event),
		Workflow: f.P.Workflow, WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID,
		Tier: f.Tier, Event: event, At: workflow.Now(ctx), Result: result, Messages: messages, Detail: detail}
	if err := workflow.ExecuteActivity(ctx, act.WriteRecord, f.Tier, rec).Get(ctx, nil); err != nil {
		f.Check("could not record " + event + ": " + err.Error())
	} else {
		f.Check(fmt.Sprintf("recorded %s in the system database (%s)", event, rec.Key))
	}
}

// ApprovalOutcome names how a failed approval step ended, for the record.
func ApprovalOutcome(err error) string {
	if temporal.IsCanceledError(err) {
		return "canceled"
	}
	return "expired"
}

// AwaitApproval asks for an approval carrying confirm, valid for ttl, and
// waits for it through the approve update (whose validator refuses a wrong
// or late one). It returns ErrApprovalExpired when nobody approved in time.
func (f *Flow) AwaitApproval(ctx workflow.Context, what, confirm string, ttl time.Duration) (Approval, error) {
	f.P.Approval = &ApprovalRequest{Confirm: confirm, ExpiresAt: workflow.Now(ctx).Add(ttl), What: what}
	f.P.State, f.P.Updated = StateWaiting, workflow.Now(ctx)
	ok, err := workflow.AwaitWithTimeout(ctx, ttl, func() bool { return f.approval != nil })
	if err != nil {
		f.Finish(ctx, StateCanceled, "canceled while waiting for an approval")
		return Approval{}, err
	}
	f.P.Approval = nil
	if !ok {
		return Approval{}, f.Fail(ctx, ErrApprovalExpired, fmt.Sprintf("nobody approved within %s", ttl))
	}
	f.P.State = StateRunning
	f.Check("approved by " + f.approval.By)
	return *f.approval, nil
}

// PollTier reads the tier's status every interval until done says so, or
// fails with ErrTimeout after limit. done returns whether the state is
// reached and, if not, why (shown in the progress).
func (f *Flow) PollTier(ctx workflow.Context, limit, interval time.Duration, done func([]MemberStatus) (bool, string)) ([]MemberStatus, error) {
	deadline := workflow.Now(ctx).Add(limit)
	for {
		var sts []MemberStatus
		if err := workflow.ExecuteActivity(ActivityContext(ctx), act.TierStatus, f.Tier).Get(ctx, &sts); err != nil {
			return nil, err
		}
		ok, why := done(sts)
		if ok {
			return sts, nil
		}
		f.P.Message, f.P.Updated = why, workflow.Now(ctx)
		if !workflow.Now(ctx).Before(deadline) {
			return sts, f.Fail(ctx, ErrTimeout, fmt.Sprintf("%s: not reached within %s: %s", f.stepName(), limit, why))
		}
		if err := workflow.Sleep(ctx, interval); err != nil {
			return nil, err
		}
	}
}

// HashesEqual compares content hashes per database across members.
func HashesEqual(reports []HashReport) (bool, string) {
	byDB := map[string]HashReport{}
	for _, r := range reports {
		if r.Error != "" {
			return false, fmt.Sprintf("%s/%s: %s", r.Member, r.Database, r.Error)
		}
		first, ok := byDB[r.Database]
		if !ok {
			byDB[r.Database] = r
			continue
		}
		if first.SHA256 != r.SHA256 {
			return false, fmt.Sprintf("database %s differs: %s has %.12s (LSN %d), %s has %.12s (LSN %d)",
				r.Database, first.Member, first.SHA256, first.AppliedLSN, r.Member, r.SHA256, r.AppliedLSN)
		}
	}
	return true, ""
}

// DatabaseNames lists the databases a member reports.
func DatabaseNames(s MemberStatus) []string {
	var out []string
	for _, d := range s.Databases {
		out = append(out, d.Name)
	}
	return out
}

// CompareHashes reads the hashes of databases on members every interval
// until they are equal per database, or fails with ErrTimeout after limit.
func (f *Flow) CompareHashes(ctx workflow.Context, limit, interval time.Duration, members, databases []string) ([]HashReport, error) {
	deadline := workflow.Now(ctx).Add(limit)
	for {
		var reps []HashReport
		if err := workflow.ExecuteActivity(ActivityContext(ctx), act.ContentHashes, f.Tier, members, databases).Get(ctx, &reps); err != nil {
			return nil, err
		}
		ok, why := HashesEqual(reps)
		if ok {
			return reps, nil
		}
		f.P.Message, f.P.Updated = why, workflow.Now(ctx)
		if !workflow.Now(ctx).Before(deadline) {
			return reps, f.Fail(ctx, ErrTimeout, fmt.Sprintf("content hashes not equal within %s: %s", limit, why))
		}
		if err := workflow.Sleep(ctx, interval); err != nil {
			return nil, err
		}
	}
}
