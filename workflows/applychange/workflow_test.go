package applychange

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	configsync "github.com/tandemhealth/tandem/config-sync"
	"github.com/tandemhealth/tandem/workflows"
	"github.com/tandemhealth/tandem/workflows/tiertest"
)

var act *workflows.Admin

var doc = json.RawMessage(`[{"name":"dave","password_hash":"$2a$10$abcdefghijklmnopqrstuu","enabled":true}]`)

// applied answers an apply of users at version v.
func applied(member string, v uint64, result string) workflows.ApplyResult {
	return workflows.ApplyResult{Member: member, Results: []configsync.CategoryResult{{Category: "users", Result: result, Version: v},
		{Category: "roles", Result: "skipped"}, {Category: "security", Result: "skipped"}}}
}

func down(member string) workflows.ApplyResult {
	return workflows.ApplyResult{Member: member, Error: "Post https://" + member + "/admin/config/apply: connection refused"}
}

// newEnv is a tier a (primary), b whose desired users go to version 4; b
// answers its applies with bAnswers in turn (the last one repeats).
func newEnv(t *testing.T, bAnswers ...workflows.ApplyResult) (*testsuite.TestWorkflowEnvironment, *tiertest.Records, *int) {
	t.Helper()
	env := tiertest.NewEnv()
	Register(env)
	recs := &tiertest.Records{}
	recs.Mock(env, "records")
	env.OnActivity(act.PutDesired, mock.Anything, "records", "users", doc, mock.Anything).Return(
		workflows.DesiredChange{Category: "users", Version: 4, Digest: "d4", Primary: "a"}, nil)
	env.OnActivity(act.TierStatus, mock.Anything, "records").Return(tiertest.Healthy(1), nil)
	want := map[string]uint64{"users": 4}
	env.OnActivity(act.ApplyConfig, mock.Anything, "records", "a", want, []string{"users"}).Return(applied("a", 4, "applied"), nil)
	calls := new(int)
	env.OnActivity(act.ApplyConfig, mock.Anything, "records", "b", want, []string{"users"}).Return(
		func(context.Context, string, string, map[string]uint64, []string) (workflows.ApplyResult, error) {
			r := bAnswers[min(*calls, len(bAnswers)-1)]
			*calls++
			return r, nil
		})
	return env, recs, calls
}

func TestApplyChange(t *testing.T) {
	t.Run("every member answers: written once, applied everywhere, recorded", func(t *testing.T) {
		env, recs, calls := newEnv(t, applied("b", 4, "applied"))
		env.ExecuteWorkflow(Name, Input{Tier: "records", Category: "users", Doc: doc, By: "ops"})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var res Result
		env.GetWorkflowResult(&res)
		if res.Version != 4 || !res.Written || len(res.Members) != 2 || !res.Members[0].Aligned || !res.Members[1].Aligned || *calls != 1 {
			t.Fatalf("result %+v, b applies %d", res, *calls)
		}
		if recs.Events() != "done" || recs.All()[0].By != "ops" {
			t.Fatalf("records %s", recs.Events())
		}
	})
	t.Run("the backup is down: tried again with backoff until it returns, progress shows why", func(t *testing.T) {
		env, recs, calls := newEnv(t, down("b"), down("b"), down("b"), applied("b", 4, "applied"))
		var waiting workflows.Progress
		env.RegisterDelayedCallback(func() { waiting = tiertest.Progress(env) }, 1500*time.Millisecond)
		env.ExecuteWorkflow(Name, Input{Tier: "records", Category: "users", Doc: doc, Backoff: time.Second, MaxBackoff: 4 * time.Second})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if waiting.State != workflows.StateRunning || waiting.Step != 1 || !strings.Contains(waiting.Message, "b: Post") ||
			!strings.Contains(waiting.Message, "connection refused") {
			t.Fatalf("progress while b is down: %+v", waiting)
		}
		var res Result
		env.GetWorkflowResult(&res)
		if *calls != 4 || res.Members[1].Attempts != 4 || !res.Members[1].Aligned || res.Members[0].Attempts != 1 {
			t.Fatalf("b applies %d, result %+v", *calls, res)
		}
		if recs.Events() != "done" {
			t.Fatalf("records %s", recs.Events())
		}
	})
	t.Run("a member still behind (409) is tried again, not counted aligned", func(t *testing.T) {
		behind := workflows.ApplyResult{Member: "b", Error: "HTTP 409: member b holds desired users version 3, the tier is at 4: it is behind"}
		env, _, calls := newEnv(t, behind, applied("b", 4, "unchanged"))
		env.ExecuteWorkflow(Name, Input{Tier: "records", Category: "users", Doc: doc})
		if err := env.GetWorkflowError(); err != nil || *calls != 2 {
			t.Fatalf("error %v, b applies %d", err, *calls)
		}
	})
	t.Run("the deadline passes with b still down: Timeout naming b, recorded", func(t *testing.T) {
		env, recs, calls := newEnv(t, down("b"))
		env.ExecuteWorkflow(Name, Input{Tier: "records", Category: "users", Doc: doc, Deadline: 2 * time.Minute})
		err := env.GetWorkflowError()
		if tiertest.ErrType(err) != workflows.ErrTimeout || !strings.Contains(err.Error(), "b: Post") {
			t.Fatalf("error %v", err)
		}
		// 1s, 2s, 4s, 8s, 16s, then every 30s: about 9 tries in 2 minutes.
		if *calls < 6 || *calls > 12 {
			t.Fatalf("b was tried %d times in 2 minutes", *calls)
		}
		if recs.Events() != "deadline" || recs.All()[0].Messages[0] == "" {
			t.Fatalf("records %s %+v", recs.Events(), recs.All())
		}
		if p := tiertest.Progress(env); p.State != workflows.StateFailed {
			t.Fatalf("progress %+v", p)
		}
	})
	t.Run("the desired state moved on (compare-and-set): fails at once, nothing applied", func(t *testing.T) {
		env := tiertest.NewEnv()
		Register(env)
		v := uint64(2)
		env.OnActivity(act.PutDesired, mock.Anything, "records", "users", doc, &v).Return(workflows.DesiredChange{},
			temporal.NewNonRetryableApplicationError("desired users changed meanwhile: at version 3, not 2", workflows.ErrConflict, nil))
		env.ExecuteWorkflow(Name, Input{Tier: "records", Category: "users", Doc: doc, IfVersion: &v})
		if tiertest.ErrType(env.GetWorkflowError()) != workflows.ErrConflict {
			t.Fatalf("error %v", env.GetWorkflowError())
		}
		env.AssertNotCalled(t, "ApplyConfig", mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything)
	})
}
