package mirrorsetup

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/tandemhealth/tandem/workflows"
	"github.com/tandemhealth/tandem/workflows/tiertest"
)

var act *workflows.Admin

// records collects what the workflow wrote to the system database.
type records struct {
	mu   sync.Mutex
	keys []string
	recs []workflows.Record
}

func (r *records) mock(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(act.WriteRecord, mock.Anything, "records", mock.Anything).Return(func(_ context.Context, _ string, rec workflows.Record) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.keys = append(r.keys, rec.Event)
		r.recs = append(r.recs, rec)
		return nil
	})
}

func (r *records) events() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.keys, ",")
}

func newEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *records) {
	t.Helper()
	s := &testsuite.WorkflowTestSuite{}
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(act)
	env.RegisterWorkflowWithOptions(Workflow, workflowOptions())
	return env, &records{}
}

// healthyTier mocks a tier that passes every check.
func healthyTier(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(act.CheckEndpoints, mock.Anything, "records").Return(tiertest.Endpoints(), nil)
	env.OnActivity(act.TierStatus, mock.Anything, "records").Return(tiertest.Healthy(1), nil)
	env.OnActivity(act.ContentHashes, mock.Anything, "records", []string{"a", "b"}, []string{"fhir", "audit", "system"}).Return(tiertest.Hashes("a", "b"), nil)
}

func appErrType(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Type()
	}
	return ""
}

func TestMirrorSetup(t *testing.T) {
	t.Run("a healthy tier passes and the outcome is recorded", func(t *testing.T) {
		env, recs := newEnv(t)
		healthyTier(env)
		recs.mock(env)
		env.ExecuteWorkflow(Name, Input{Tier: "records"})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var res Result
		env.GetWorkflowResult(&res)
		if res.Primary != "a" || res.Backup != "b" || res.Epoch != 1 || res.Hashes["fhir"] != "sha-fhir" || res.Endpoints != 7 {
			t.Fatalf("result %+v", res)
		}
		if got := recs.events(); got != "checklist,done" {
			t.Fatalf("records %s", got)
		}
		if k := recs.recs[1].Key; !strings.HasPrefix(k, "workflow/MirrorSetup/records/") || !strings.HasSuffix(k, "/done") {
			t.Fatalf("record key %s", k)
		}
		var p workflows.Progress
		v, err := env.QueryWorkflow(workflows.QueryProgress)
		if err != nil {
			t.Fatal(err)
		}
		v.Get(&p)
		if p.State != workflows.StateDone || p.Step != len(Steps) {
			t.Fatalf("progress %+v", p)
		}
	})
	t.Run("waits for the backup to become active", func(t *testing.T) {
		env, recs := newEnv(t)
		env.OnActivity(act.CheckEndpoints, mock.Anything, "records").Return(tiertest.Endpoints(), nil)
		calls := 0
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(func(context.Context, string) ([]workflows.MemberStatus, error) {
			calls++
			if calls < 5 {
				return []workflows.MemberStatus{tiertest.Member("a", "primary", 1, "behind"), tiertest.Member("b", "backup", 1, "behind")}, nil
			}
			return tiertest.Healthy(1), nil
		})
		env.OnActivity(act.ContentHashes, mock.Anything, "records", mock.Anything, mock.Anything).Return(tiertest.Hashes("a", "b"), nil)
		recs.mock(env)
		env.ExecuteWorkflow(Name, Input{Tier: "records"})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if calls < 5 {
			t.Fatalf("status read %d times", calls)
		}
	})
	t.Run("an unreachable arbiter fails the checklist after the wait, nothing recorded", func(t *testing.T) {
		env, recs := newEnv(t)
		checks := tiertest.Endpoints()
		checks[len(checks)-1] = workflows.EndpointCheck{Name: "arbiter", Address: "127.0.0.1:9", Error: "connection refused"}
		env.OnActivity(act.CheckEndpoints, mock.Anything, "records").Return(checks, nil)
		recs.mock(env)
		env.ExecuteWorkflow(Name, Input{Tier: "records", Wait: 10 * time.Second})
		err := env.GetWorkflowError()
		if appErrType(err) != workflows.ErrNotReady || !strings.Contains(err.Error(), "arbiter at 127.0.0.1:9") {
			t.Fatalf("error %v", err)
		}
		if recs.events() != "" {
			t.Fatalf("recorded %s", recs.events())
		}
	})
	t.Run("no primary/backup pair times out", func(t *testing.T) {
		env, recs := newEnv(t)
		env.OnActivity(act.CheckEndpoints, mock.Anything, "records").Return(tiertest.Endpoints(), nil)
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(
			[]workflows.MemberStatus{tiertest.Member("a", "primary", 1, "disconnected"), tiertest.Member("b", "waiting", 1, "")}, nil)
		recs.mock(env)
		env.ExecuteWorkflow(Name, Input{Tier: "records", Wait: 5 * time.Second})
		err := env.GetWorkflowError()
		if appErrType(err) != workflows.ErrTimeout || !strings.Contains(err.Error(), "b is waiting") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("different content fails the checklist", func(t *testing.T) {
		env, recs := newEnv(t)
		env.OnActivity(act.CheckEndpoints, mock.Anything, "records").Return(tiertest.Endpoints(), nil)
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(tiertest.Healthy(1), nil)
		h := tiertest.Hashes("a", "b")
		h[len(h)-1].SHA256 = "other"
		env.OnActivity(act.ContentHashes, mock.Anything, "records", mock.Anything, mock.Anything).Return(h, nil)
		recs.mock(env)
		env.ExecuteWorkflow(Name, Input{Tier: "records", Wait: 5 * time.Second})
		err := env.GetWorkflowError()
		if appErrType(err) != workflows.ErrTimeout || !strings.Contains(err.Error(), "database system differs") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestMirrorSetupApproval(t *testing.T) {
	approve := func(env *testsuite.TestWorkflowEnvironment, at time.Duration, a workflows.Approval, rejected *error) {
		env.RegisterDelayedCallback(func() {
			env.UpdateWorkflow(workflows.UpdateApprove, "", &testsuite.TestUpdateCallback{
				OnReject:   func(err error) { *rejected = err },
				OnAccept:   func() {},
				OnComplete: func(any, error) {},
			}, a)
		}, at)
	}
	t.Run("the right approval in time completes it", func(t *testing.T) {
		env, recs := newEnv(t)
		healthyTier(env)
		recs.mock(env)
		var wrong, right error
		var waiting workflows.Progress
		env.RegisterDelayedCallback(func() {
			v, _ := env.QueryWorkflow(workflows.QueryProgress)
			v.Get(&waiting)
		}, time.Minute)
		approve(env, 2*time.Minute, workflows.Approval{Confirm: "mirror setup of other", By: "ops"}, &wrong)
		approve(env, 3*time.Minute, workflows.Approval{Confirm: ApprovalConfirm("records")}, &wrong)
		approve(env, 4*time.Minute, workflows.Approval{Confirm: ApprovalConfirm("records"), By: "ops"}, &right)
		env.ExecuteWorkflow(Name, Input{Tier: "records", RequireApproval: true, ApprovalTTL: 10 * time.Minute})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if waiting.State != workflows.StateWaiting || waiting.Approval == nil || waiting.Approval.Confirm != "mirror setup of records" {
			t.Fatalf("progress while waiting: %+v", waiting)
		}
		if wrong == nil || !strings.Contains(wrong.Error(), "names who approves") || right != nil {
			t.Fatalf("validator: wrong=%v right=%v", wrong, right)
		}
		var res Result
		env.GetWorkflowResult(&res)
		if res.ApprovedBy != "ops" || recs.events() != "checklist,approval,done" {
			t.Fatalf("result %+v, records %s", res, recs.events())
		}
	})
	t.Run("a wrong confirmation is rejected by the validator", func(t *testing.T) {
		env, recs := newEnv(t)
		healthyTier(env)
		recs.mock(env)
		var wrong error
		approve(env, time.Minute, workflows.Approval{Confirm: "mirror setup of other", By: "ops"}, &wrong)
		env.ExecuteWorkflow(Name, Input{Tier: "records", RequireApproval: true, ApprovalTTL: 5 * time.Minute})
		if wrong == nil || !strings.Contains(wrong.Error(), "does not match") {
			t.Fatalf("validator let a wrong confirmation through: %v", wrong)
		}
		if appErrType(env.GetWorkflowError()) != workflows.ErrApprovalExpired {
			t.Fatalf("error %v", env.GetWorkflowError())
		}
	})
	t.Run("the approval expires and the expiry is recorded", func(t *testing.T) {
		env, recs := newEnv(t)
		healthyTier(env)
		recs.mock(env)
		env.ExecuteWorkflow(Name, Input{Tier: "records", RequireApproval: true, ApprovalTTL: 10 * time.Minute})
		if appErrType(env.GetWorkflowError()) != workflows.ErrApprovalExpired {
			t.Fatalf("error %v", env.GetWorkflowError())
		}
		if recs.events() != "checklist,approval" || recs.recs[1].Result != "expired" {
			t.Fatalf("records %s", recs.events())
		}
	})
}

func TestValidateApproval(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	req := &workflows.ApprovalRequest{Confirm: "epoch 3, loss 5-9", ExpiresAt: now.Add(time.Minute)}
	for _, tc := range []struct {
		name string
		req  *workflows.ApprovalRequest
		now  time.Time
		a    workflows.Approval
		want string
	}{
		{"right", req, now, workflows.Approval{Confirm: "epoch 3, loss 5-9", By: "ops"}, ""},
		{"none awaited", nil, now, workflows.Approval{Confirm: "x", By: "ops"}, "no approval is awaited"},
		{"expired", req, now.Add(time.Minute), workflows.Approval{Confirm: "epoch 3, loss 5-9", By: "ops"}, "expired"},
		{"nobody", req, now, workflows.Approval{Confirm: "epoch 3, loss 5-9"}, "names who approves"},
		{"wrong text", req, now, workflows.Approval{Confirm: "epoch 3, loss 5-8", By: "ops"}, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := workflows.ValidateApproval(tc.req, tc.now, tc.a)
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
