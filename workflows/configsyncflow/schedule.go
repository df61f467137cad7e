package configsyncflow

// The DriftCheck schedule: client code (not workflow code), used by the
// worker at start and by `tandem ctl workflow schedule drift-check`.

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/tandemhealth/tandem/workflows"
)

// DefaultEvery is the DriftCheck interval unless configured.
const DefaultEvery = 60 * time.Second

// ScheduleID is the DriftCheck schedule of tier.
func ScheduleID(tier string) string { return "tier/" + tier + "/drift-check" }

// Schedule is a DriftCheck schedule as it should be.
type Schedule struct {
	Tier  string
	Every time.Duration // DefaultEvery when 0
	// Paused: nil keeps an existing schedule's state (a new one runs).
	Paused *bool
	// CreateOnly leaves an existing schedule as it is (a worker start
	// without an explicit interval must not undo an operator's change).
	CreateOnly bool
}

// EnsureDriftCheck creates the tier's DriftCheck schedule, or brings an
// existing one to s (interval, action, paused): idempotent, so every worker
// start and every `ctl workflow schedule` may call it. Runs never overlap:
// a round still running when the next is due makes that one skipped.
func EnsureDriftCheck(ctx context.Context, c client.Client, s Schedule) (created bool, err error) {
	if s.Every <= 0 {
		s.Every = DefaultEvery
	}
	if s.Every < time.Second {
		return false, fmt.Errorf("drift check every %s: at least 1s", s.Every)
	}
	spec := client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: s.Every}}}
	action := &client.ScheduleWorkflowAction{ID: WorkflowID(s.Tier) + "/drift-check", Workflow: Name,
		Args: []any{Input{Tier: s.Tier}}, TaskQueue: workflows.TaskQueue, WorkflowExecutionTimeout: 10 * time.Minute}
	sc := c.ScheduleClient()
	_, err = sc.Create(ctx, client.ScheduleOptions{ID: ScheduleID(s.Tier), Spec: spec, Action: action,
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, CatchupWindow: time.Minute, Paused: s.Paused != nil && *s.Paused,
		Note: "tandem DriftCheck: ConfigSync on tier " + s.Tier})
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return false, fmt.Errorf("create schedule %s: %w", ScheduleID(s.Tier), err)
	}
	if s.CreateOnly {
		return false, nil
	}
	h := sc.GetHandle(ctx, ScheduleID(s.Tier))
	err = h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
		sch := in.Description.Schedule
		sch.Spec, sch.Action = &spec, action
		if sch.Policy == nil {
			sch.Policy = &client.SchedulePolicies{}
		}
		sch.Policy.Overlap, sch.Policy.CatchupWindow = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, time.Minute
		if sch.State == nil {
			sch.State = &client.ScheduleState{}
		}
		if s.Paused != nil {
			sch.State.Paused = *s.Paused
		}
		return &client.ScheduleUpdate{Schedule: &sch}, nil
	}})
	if err != nil {
		return false, fmt.Errorf("update schedule %s: %w", ScheduleID(s.Tier), err)
	}
	return false, nil
}

// DriftCheckState is a schedule and its last run, as ctl shows it.
type DriftCheckState struct {
	ScheduleID string        `json:"schedule_id"`
	Every      time.Duration `json:"every"`
	Paused     bool          `json:"paused"`
	NextRun    time.Time     `json:"next_run,omitzero"`
	// LastWorkflowID and LastRunID name the latest ConfigSync it started.
	LastWorkflowID string `json:"last_workflow_id,omitempty"`
	LastRunID      string `json:"last_run_id,omitempty"`
	Runs           int64  `json:"runs"`
}

// DescribeDriftCheck reads the tier's schedule.
func DescribeDriftCheck(ctx context.Context, c client.Client, tier string) (DriftCheckState, error) {
	st := DriftCheckState{ScheduleID: ScheduleID(tier)}
	d, err := c.ScheduleClient().GetHandle(ctx, st.ScheduleID).Describe(ctx)
	if err != nil {
		return st, fmt.Errorf("schedule %s: %w", st.ScheduleID, err)
	}
	if sp := d.Schedule.Spec; sp != nil && len(sp.Intervals) > 0 {
		st.Every = sp.Intervals[0].Every
	}
	if d.Schedule.State != nil {
		st.Paused = d.Schedule.State.Paused
	}
	if len(d.Info.NextActionTimes) > 0 {
		st.NextRun = d.Info.NextActionTimes[0]
	}
	st.Runs = int64(d.Info.NumActions)
	if n := len(d.Info.RecentActions); n > 0 {
		if w := d.Info.RecentActions[n-1].StartWorkflowResult; w != nil {
			st.LastWorkflowID, st.LastRunID = w.WorkflowID, w.FirstExecutionRunID
		}
	}
	return st, nil
}
