package rebuildmember

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"

	"github.com/tandemhealth/tandem/workflows"
	"github.com/tandemhealth/tandem/workflows/tiertest"
)

var act *workflows.Admin

// async is member c of the tier in status st, its re-seed in state rb and
// its databases in dbState.
func async(st, rb, dbState string) workflows.MemberStatus {
	s := tiertest.Member("c", st, 1, "")
	s.Role = "dr"
	if rb != "" {
		s.Rebuild = &workflows.RebuildState{State: rb, LSN: 321, Error: map[bool]string{true: "snapshot file store/000001.sst: sha256 differs"}[rb == "failed"]}
	}
	for i := range s.Databases {
		s.Databases[i].Status = dbState
	}
	return s
}

// tier answers TierStatus with the pair healthy and c going through states,
// one per call once the re-seed was requested.
func tier(requested *bool, states ...workflows.MemberStatus) func(context.Context, string) ([]workflows.MemberStatus, error) {
	i := 0
	return func(context.Context, string) ([]workflows.MemberStatus, error) {
		c := states[0]
		if *requested {
			i = min(i+1, len(states)-1)
			c = states[i]
		}
		return append(tiertest.Healthy(1), c), nil
	}
}

func TestRebuildMember(t *testing.T) {
	t.Run("a needs-rebuild member is re-seeded from the primary, followed to normal, verified and recorded", func(t *testing.T) {
		env := tiertest.NewEnv()
		Register(env)
		recs := &tiertest.Records{}
		recs.Mock(env, "records")
		requested := new(bool)
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(tier(requested,
			async("needs-rebuild", "", ""), async("needs-rebuild", "fetching", ""), async("", "", ""),
			async("async", "installed", "needs-catchup"), async("async", "installed", "catchup-running"), async("async", "installed", "normal")))
		env.OnActivity(act.RequestRebuild, mock.Anything, "records", "c", "a", false).Return(func(context.Context, string, string, string, bool) error {
			*requested = true
			return nil
		}).Once()
		env.OnActivity(act.ContentHashes, mock.Anything, "records", []string{"a", "c"}, []string{"fhir", "audit", "system"}).Return(tiertest.Hashes("a", "c"), nil)
		env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "c", By: "ops"})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var res Result
		env.GetWorkflowResult(&res)
		if res != (Result{Member: "c", Source: "a", LSN: 321, Epoch: 1}) {
			t.Fatalf("result %+v", res)
		}
		if recs.Events() != "requested,done" || recs.All()[1].By != "ops" {
			t.Fatalf("records %s", recs.Events())
		}
		p := tiertest.Progress(env)
		if p.State != workflows.StateDone || !strings.Contains(strings.Join(p.Checks, "\n"), "installed the snapshot at LSN 321") {
			t.Fatalf("progress %+v", p)
		}
	})
	t.Run("a member that needs no rebuild is refused without force, and nothing is asked", func(t *testing.T) {
		env := tiertest.NewEnv()
		Register(env)
		recs := &tiertest.Records{}
		recs.Mock(env, "records")
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(append(tiertest.Healthy(1), async("async", "", "")), nil)
		env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "c"})
		err := env.GetWorkflowError()
		if tiertest.ErrType(err) != workflows.ErrNotReady || !strings.Contains(err.Error(), "needs no re-seed") {
			t.Fatalf("error %v", err)
		}
		env.AssertNotCalled(t, "RequestRebuild", mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything)
	})
	t.Run("the primary is never re-seeded, even with force", func(t *testing.T) {
		env := tiertest.NewEnv()
		Register(env)
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(tiertest.Healthy(1), nil)
		env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "a", Force: true})
		if err := env.GetWorkflowError(); tiertest.ErrType(err) != workflows.ErrNotReady || !strings.Contains(err.Error(), "never re-seeded") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("a failed fetch ends the workflow with the member's reason, recorded", func(t *testing.T) {
		env := tiertest.NewEnv()
		Register(env)
		recs := &tiertest.Records{}
		recs.Mock(env, "records")
		requested := new(bool)
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(tier(requested,
			async("needs-rebuild", "", ""), async("needs-rebuild", "fetching", ""), async("needs-rebuild", "failed", "")))
		env.OnActivity(act.RequestRebuild, mock.Anything, "records", "c", "a", false).Return(func(context.Context, string, string, string, bool) error {
			*requested = true
			return nil
		})
		env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "c"})
		err := env.GetWorkflowError()
		if tiertest.ErrType(err) != workflows.ErrNotReady || !strings.Contains(err.Error(), "sha256 differs") {
			t.Fatalf("error %v", err)
		}
		if recs.Events() != "requested,re-seed" {
			t.Fatalf("records %s", recs.Events())
		}
		env.AssertNotCalled(t, "ContentHashes", mock.Anything, mock.Anything, mock.Anything, mock.Anything)
	})
	t.Run("a member refusing the request (409) fails without retry", func(t *testing.T) {
		env := tiertest.NewEnv()
		Register(env)
		recs := &tiertest.Records{}
		recs.Mock(env, "records")
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(append(tiertest.Healthy(1), async("needs-rebuild", "", "")), nil)
		env.OnActivity(act.RequestRebuild, mock.Anything, "records", "c", "a", false).Return(
			temporal.NewNonRetryableApplicationError("c refused the re-seed: a re-seed is already in progress", workflows.ErrNotReady, errors.New("409"))).Once()
		env.ExecuteWorkflow(Name, Input{Tier: "records", Member: "c"})
		if err := env.GetWorkflowError(); tiertest.ErrType(err) != workflows.ErrNotReady || !strings.Contains(err.Error(), "already in progress") {
			t.Fatalf("error %v", err)
		}
	})
}
