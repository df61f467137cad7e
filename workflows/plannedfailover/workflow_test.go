package plannedfailover

import (
	"context"
	"errors"
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

func newEnv() (*testsuite.TestWorkflowEnvironment, *tiertest.Records) {
	env := tiertest.NewEnv()
	Register(env)
	recs := &tiertest.Records{}
	recs.Mock(env, "records")
	return env, recs
}

// statusSequence answers TierStatus with before until the failover was
// requested and n more reads have passed, then with after.
func statusSequence(env *testsuite.TestWorkflowEnvironment, requested *bool, n int, before, after []workflows.MemberStatus) {
	reads := 0
	env.OnActivity(act.TierStatus, mock.Anything, "records").Return(func(context.Context, string) ([]workflows.MemberStatus, error) {
		if !*requested {
			return before, nil
		}
		reads++
		if reads <= n {
			return []workflows.MemberStatus{tiertest.Member("a", "transition", 1, "active"), tiertest.Member("b", "backup", 1, "active")}, nil
		}
		return after, nil
	})
}

func TestPlannedFailover(t *testing.T) {
	t.Run("hands over, verifies and records", func(t *testing.T) {
		env, recs := newEnv()
		requested := false
		statusSequence(env, &requested, 3, tiertest.Healthy(1), tiertest.Switched(2))
		env.OnActivity(act.RequestPlannedFailover, mock.Anything, "records", "a", uint64(1)).Return(func(context.Context, string, string, uint64) error {
			requested = true
			return nil
		})
		env.OnActivity(act.ContentHashes, mock.Anything, "records", []string{"b", "a"}, mock.Anything).Return(tiertest.Hashes("b", "a"), nil)
		env.ExecuteWorkflow(Name, Input{Tier: "records", By: "ops"})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var res Result
		env.GetWorkflowResult(&res)
		if res != (Result{OldPrimary: "a", NewPrimary: "b", OldEpoch: 1, NewEpoch: 2}) {
			t.Fatalf("result %+v", res)
		}
		if recs.Events() != "requested,done" {
			t.Fatalf("records %s", recs.Events())
		}
		if p := tiertest.Progress(env); p.State != workflows.StateDone {
			t.Fatalf("progress %+v", p)
		}
	})
	t.Run("a gate refusal fails at once with the gate's messages, recorded, nothing retried", func(t *testing.T) {
		env, recs := newEnv()
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(tiertest.Healthy(1), nil)
		calls := 0
		env.OnActivity(act.RequestPlannedFailover, mock.Anything, "records", "a", uint64(1)).Return(func(context.Context, string, string, uint64) error {
			calls++
			msgs := []string{"b: users not aligned with the desired state", "b: database audit missing"}
			return temporal.NewNonRetryableApplicationError("a refused the planned failover: "+strings.Join(msgs, "; "),
				workflows.ErrGateRefused, nil, workflows.GateRefusal{Member: "a", Messages: msgs})
		})
		env.ExecuteWorkflow(Name, Input{Tier: "records"})
		err := env.GetWorkflowError()
		if tiertest.ErrType(err) != workflows.ErrGateRefused || !strings.Contains(err.Error(), "users not aligned") {
			t.Fatalf("error %v", err)
		}
		var appErr *temporal.ApplicationError
		var refusal workflows.GateRefusal
		if !errors.As(err, &appErr) || appErr.Details(&refusal) != nil || len(refusal.Messages) != 2 || !appErr.NonRetryable() {
			t.Fatalf("refusal details %+v from %v", refusal, err)
		}
		if calls != 1 {
			t.Fatalf("the refused request was sent %d times", calls)
		}
		all := recs.All()
		if recs.Events() != "requested,gate" || all[1].Result != "refused" || len(all[1].Messages) != 2 {
			t.Fatalf("records %s %+v", recs.Events(), all)
		}
		if p := tiertest.Progress(env); p.State != workflows.StateRefused {
			t.Fatalf("progress %+v", p)
		}
	})
	t.Run("no pair: nothing is requested", func(t *testing.T) {
		env, recs := newEnv()
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(
			[]workflows.MemberStatus{tiertest.Member("a", "primary", 1, "disconnected"), tiertest.Member("b", "", 0, "")}, nil)
		env.ExecuteWorkflow(Name, Input{Tier: "records"})
		err := env.GetWorkflowError()
		if tiertest.ErrType(err) != workflows.ErrNotReady || recs.Events() != "" || !strings.Contains(err.Error(), "a primary (epoch 1)") {
			t.Fatalf("error %v, records %s", err, recs.Events())
		}
	})
	t.Run("a backup that has just rejoined is read again, then handed over to", func(t *testing.T) {
		env, _ := newEnv()
		reads := 0
		requested := false
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(func(context.Context, string) ([]workflows.MemberStatus, error) {
			reads++
			if reads < 3 {
				return []workflows.MemberStatus{tiertest.Member("a", "primary", 1, "disconnected"), tiertest.Member("b", "", 0, "")}, nil
			}
			if !requested {
				return tiertest.Healthy(1), nil
			}
			return tiertest.Switched(2), nil
		})
		env.OnActivity(act.ContentHashes, mock.Anything, "records", []string{"b", "a"}, mock.Anything).Return(tiertest.Hashes("b", "a"), nil)
		env.OnActivity(act.RequestPlannedFailover, mock.Anything, "records", "a", uint64(1)).Return(func(context.Context, string, string, uint64) error {
			requested = true
			return nil
		})
		env.ExecuteWorkflow(Name, Input{Tier: "records"})
		var res Result
		env.GetWorkflowResult(&res)
		if !requested || res.OldPrimary != "a" || res.NewPrimary != "b" {
			t.Fatalf("reads %d requested %v result %+v err %v", reads, requested, res, env.GetWorkflowError())
		}
	})
	t.Run("a switch that never completes times out and the timeout is recorded", func(t *testing.T) {
		env, recs := newEnv()
		requested := false
		statusSequence(env, &requested, 1<<30, tiertest.Healthy(1), nil)
		env.OnActivity(act.RequestPlannedFailover, mock.Anything, "records", "a", uint64(1)).Return(func(context.Context, string, string, uint64) error {
			requested = true
			return nil
		})
		env.ExecuteWorkflow(Name, Input{Tier: "records", Wait: 10 * time.Second})
		err := env.GetWorkflowError()
		if tiertest.ErrType(err) != workflows.ErrTimeout || !strings.Contains(err.Error(), "b is backup in epoch 1") {
			t.Fatalf("error %v", err)
		}
		if recs.Events() != "requested,switch" {
			t.Fatalf("records %s", recs.Events())
		}
	})
	t.Run("the old primary must rejoin as backup in the new epoch", func(t *testing.T) {
		ok, why := Switched([]workflows.MemberStatus{tiertest.Member("a", "waiting", 1, ""), tiertest.Member("b", "primary", 2, "")}, "a", "b", 1)
		if ok || why != "a is waiting in epoch 1" {
			t.Fatal(ok, why)
		}
		ok, _ = Switched(tiertest.Switched(2), "a", "b", 1)
		if !ok {
			t.Fatal("switched tier not recognised")
		}
	})
}
