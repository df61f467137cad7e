package configsyncflow

import (
	"context"
	"reflect"
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

// member is a member's config state: users lists what it enforces;
// drifted names its categories that differ from desired v3/v5/v1.
func member(name string, users []string, removals []string, drifted ...string) workflows.MemberConfig {
	m := workflows.MemberConfig{Member: name, Users: users, Removals: removals}
	for _, c := range []struct {
		name string
		v    uint64
	}{{"users", 3}, {"roles", 5}, {"security", 1}} {
		cc := workflows.ConfigCategory{Category: c.name, Aligned: true, DesiredVersion: c.v, DesiredDigest: "d-" + c.name, EffectiveDigest: "d-" + c.name, EffectiveVersion: c.v}
		for _, d := range drifted {
			if d == c.name {
				cc.Aligned, cc.EffectiveDigest, cc.EffectiveVersion = false, "old", c.v-1
				cc.Changes = []string{c.name + " item: differs"}
			}
		}
		m.Categories = append(m.Categories, cc)
	}
	return m
}

var versions = map[string]uint64{"users": 3, "roles": 5, "security": 1}

func ok(member string, cats ...string) workflows.ApplyResult {
	r := workflows.ApplyResult{Member: member}
	for _, c := range configsync.Categories {
		res := "skipped"
		for _, x := range cats {
			if x == c {
				res = "applied"
			}
		}
		r.Results = append(r.Results, configsync.CategoryResult{Category: c, Result: res, Version: versions[c]})
	}
	return r
}

type applies struct{ got []string }

// mockApply answers every apply as applied and notes member:categories.
func (a *applies) mock(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(act.ApplyConfig, mock.Anything, "records", mock.Anything, versions, mock.Anything).Return(
		func(_ context.Context, _, m string, _ map[string]uint64, cats []string) (workflows.ApplyResult, error) {
			a.got = append(a.got, m+":"+strings.Join(cats, "+"))
			return ok(m, cats...), nil
		})
}

func newEnv(states ...workflows.MemberConfig) (*testsuite.TestWorkflowEnvironment, *tiertest.Records, *applies) {
	env := tiertest.NewEnv()
	Register(env)
	recs := &tiertest.Records{}
	recs.Mock(env, "records")
	env.OnActivity(act.ConfigStates, mock.Anything, "records").Return(states, nil)
	a := &applies{}
	a.mock(env)
	return env, recs, a
}

func TestConfigSync(t *testing.T) {
	t.Run("nothing drifted: nothing applied, nothing recorded", func(t *testing.T) {
		env, recs, a := newEnv(member("a", []string{"dave"}, nil), member("b", []string{"dave"}, nil))
		env.ExecuteWorkflow(Name, Input{Tier: "records"})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var res Result
		env.GetWorkflowResult(&res)
		if res.Drifted != 0 || len(a.got) != 0 || recs.Events() != "" {
			t.Fatalf("result %+v applies %v records %s", res, a.got, recs.Events())
		}
	})
	t.Run("drift found on b (users, roles) is repaired there only, reported and recorded", func(t *testing.T) {
		env, recs, a := newEnv(member("a", []string{"dave"}, nil), member("b", nil, nil, "users", "roles"))
		env.ExecuteWorkflow(Name, Input{Tier: "records"})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var res Result
		env.GetWorkflowResult(&res)
		if !reflect.DeepEqual(a.got, []string{"b:users+roles"}) || res.Drifted != 2 || res.Repaired != 2 {
			t.Fatalf("applies %v result %+v", a.got, res)
		}
		b := res.Members[1]
		if b.Categories[0].Outcome != OutcomeRepaired || b.Categories[1].Outcome != OutcomeRepaired || b.Categories[2].Outcome != OutcomeAligned ||
			b.Categories[0].Changes[0] != "users item: differs" {
			t.Fatalf("b's report %+v", b)
		}
		if recs.Events() != "repair" || recs.All()[0].Result != "2 drifted, 2 repaired" {
			t.Fatalf("records %s %+v", recs.Events(), recs.All())
		}
	})
	t.Run("a member that does not answer is reported, the others repaired", func(t *testing.T) {
		env, _, a := newEnv(member("a", nil, nil, "security"), workflows.MemberConfig{Member: "b", Error: "connection refused"})
		env.ExecuteWorkflow(Name, Input{Tier: "records"})
		var res Result
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		env.GetWorkflowResult(&res)
		if !reflect.DeepEqual(a.got, []string{"a:security"}) || res.Members[1].Error != "connection refused" {
			t.Fatalf("applies %v result %+v", a.got, res)
		}
		p := tiertest.Progress(env)
		if !strings.Contains(strings.Join(p.Checks, "\n"), "b: did not answer (connection refused); not checked") {
			t.Fatalf("progress %+v", p)
		}
	})
	t.Run("a failed apply is reported, not hidden", func(t *testing.T) {
		env := tiertest.NewEnv()
		Register(env)
		(&tiertest.Records{}).Mock(env, "records")
		env.OnActivity(act.ConfigStates, mock.Anything, "records").Return([]workflows.MemberConfig{member("a", nil, nil), member("b", nil, nil, "security")}, nil)
		failed := workflows.ApplyResult{Member: "b", Error: "HTTP 409: ...", Results: []configsync.CategoryResult{{Category: "security", Result: "failed", Error: "security: tls.ca_fingerprint … is not this member's CA"}}}
		env.OnActivity(act.ApplyConfig, mock.Anything, "records", "b", versions, []string{"security"}).Return(failed, nil)
		env.ExecuteWorkflow(Name, Input{Tier: "records"})
		var res Result
		env.GetWorkflowResult(&res)
		if c := res.Members[1].Categories[2]; c.Outcome != OutcomeFailed || !strings.Contains(c.Error, "not this member's CA") || res.Repaired != 0 {
			t.Fatalf("report %+v", res)
		}
	})
}

func TestConfigSyncRemovalNeedsApproval(t *testing.T) {
	// b enforces eve, whom the desired state does not list and no other
	// member has; b's roles drifted too. a enforces mallory, not desired,
	// but so does b: that removal needs no approval.
	states := []workflows.MemberConfig{
		member("a", []string{"dave", "mallory"}, []string{"mallory"}, "users"),
		member("b", []string{"dave", "eve", "mallory"}, []string{"eve", "mallory"}, "users", "roles"),
	}
	confirm := "remove b: user eve"
	t.Run("HeldRemovals: only a user no other member has", func(t *testing.T) {
		if got := HeldRemovals(states); !reflect.DeepEqual(got, map[string][]string{"b": {"eve"}}) {
			t.Fatalf("%v", got)
		}
	})
	t.Run("a scheduled run repairs the rest and reports the removal", func(t *testing.T) {
		env, recs, a := newEnv(states...)
		env.ExecuteWorkflow(Name, Input{Tier: "records"})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var res Result
		env.GetWorkflowResult(&res)
		if !reflect.DeepEqual(a.got, []string{"a:users", "b:roles"}) || !reflect.DeepEqual(res.AwaitingApproval, []string{"b: user eve"}) {
			t.Fatalf("applies %v, result %+v", a.got, res)
		}
		if res.Members[1].Categories[0].Outcome != OutcomeAwaiting || res.Drifted != 3 || res.Repaired != 2 {
			t.Fatalf("b's report %+v", res.Members[1])
		}
		if p := tiertest.Progress(env); p.State != workflows.StateDone || !strings.Contains(p.Message, "1 removals await approval") {
			t.Fatalf("progress %+v", p)
		}
		if recs.Events() != "repair" {
			t.Fatalf("records %s", recs.Events())
		}
	})
	t.Run("a run with an approval TTL waits; the validator refuses a wrong approval; the right one removes", func(t *testing.T) {
		env, recs, a := newEnv(states...)
		var shown workflows.Progress
		env.RegisterDelayedCallback(func() { shown = tiertest.Progress(env) }, time.Minute)
		var wrong, right error
		tiertest.Approve(env, 2*time.Minute, workflows.Approval{Confirm: "remove b: user mallory", By: "ops"}, &wrong)
		tiertest.Approve(env, 3*time.Minute, workflows.Approval{Confirm: confirm, By: "ops"}, &right)
		env.ExecuteWorkflow(Name, Input{Tier: "records", ApprovalTTL: 10 * time.Minute})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if shown.State != workflows.StateWaiting || shown.Approval == nil || shown.Approval.Confirm != confirm {
			t.Fatalf("progress while waiting %+v", shown)
		}
		if wrong == nil || right != nil {
			t.Fatalf("validator: wrong %v, right %v", wrong, right)
		}
		var res Result
		env.GetWorkflowResult(&res)
		if !reflect.DeepEqual(a.got, []string{"a:users", "b:roles", "b:users"}) || res.ApprovedBy != "ops" || res.Repaired != 3 || len(res.AwaitingApproval) != 0 {
			t.Fatalf("applies %v result %+v", a.got, res)
		}
		if recs.Events() != "repair" || recs.All()[0].By != "ops" {
			t.Fatalf("records %s", recs.Events())
		}
	})
	t.Run("nobody approves in time: ApprovalExpired, eve stays, recorded", func(t *testing.T) {
		env, recs, a := newEnv(states...)
		env.ExecuteWorkflow(Name, Input{Tier: "records", ApprovalTTL: 5 * time.Minute})
		if tiertest.ErrType(env.GetWorkflowError()) != workflows.ErrApprovalExpired {
			t.Fatalf("error %v", env.GetWorkflowError())
		}
		if !reflect.DeepEqual(a.got, []string{"a:users", "b:roles"}) || recs.Events() != "approval" || recs.All()[0].Result != "expired" {
			t.Fatalf("applies %v records %s", a.got, recs.Events())
		}
	})
}

func TestConfigSyncActivityFailure(t *testing.T) {
	env := tiertest.NewEnv()
	Register(env)
	env.OnActivity(act.ConfigStates, mock.Anything, "records").Return(nil, temporal.NewNonRetryableApplicationError("no tier", workflows.ErrNotReady, nil))
	env.ExecuteWorkflow(Name, Input{Tier: "records"})
	if tiertest.ErrType(env.GetWorkflowError()) != workflows.ErrNotReady {
		t.Fatalf("error %v", env.GetWorkflowError())
	}
}

// behindOn is m with the users category's desired state one version older
// than the tier's newest (its journal has not applied it yet), judged by
// its own replaced state: aligned, no removals seen.
func behindOn(m workflows.MemberConfig) workflows.MemberConfig {
	m.Categories[0].DesiredVersion--
	return m
}

func TestConfigSyncWaitsForAMemberBehindTheNewestDesiredState(t *testing.T) {
	t.Run("a catches up on the third read: its removal is seen and waits for approval", func(t *testing.T) {
		env := tiertest.NewEnv()
		Register(env)
		(&tiertest.Records{}).Mock(env, "records")
		reads := 0
		env.OnActivity(act.ConfigStates, mock.Anything, "records").Return(
			func(context.Context, string) ([]workflows.MemberConfig, error) {
				reads++
				if reads < 3 {
					return []workflows.MemberConfig{behindOn(member("a", []string{"dave", "eve"}, nil)), member("b", []string{"dave"}, nil)}, nil
				}
				return []workflows.MemberConfig{member("a", []string{"dave", "eve"}, []string{"eve"}, "users"), member("b", []string{"dave"}, nil)}, nil
			})
		a := &applies{}
		a.mock(env)
		env.ExecuteWorkflow(Name, Input{Tier: "records"})
		var res Result
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		env.GetWorkflowResult(&res)
		if reads != 3 || !reflect.DeepEqual(res.AwaitingApproval, []string{"a: user eve"}) || len(a.got) != 0 {
			t.Fatalf("reads %d applies %v result %+v", reads, a.got, res)
		}
	})
	t.Run("a member still behind after every read is reported, never repaired", func(t *testing.T) {
		env, _, a := newEnv(behindOn(member("a", []string{"dave", "eve"}, nil)), member("b", []string{"dave"}, nil))
		env.ExecuteWorkflow(Name, Input{Tier: "records"})
		var res Result
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		env.GetWorkflowResult(&res)
		c := res.Members[0].Categories[0]
		if len(a.got) != 0 || res.Drifted != 1 || c.Outcome != OutcomeFailed || !strings.Contains(c.Error, "desired state v2 here, v3 on another member") {
			t.Fatalf("applies %v result %+v", a.got, res)
		}
	})
}
