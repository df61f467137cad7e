// Package tiertest holds what workflow tests share: member statuses for a
// tier in a given shape (as the TierStatus activity reports them) and the
// replay of recorded histories. Test code only.
package tiertest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/tandemhealth/tandem/workflows"
)

// Member is one failover member in status st ("primary", "backup",
// "transition", "" for unreachable) at epoch, with transfer status tr.
func Member(name, st string, epoch uint64, tr string) workflows.MemberStatus {
	s := workflows.MemberStatus{Member: name, Role: workflows.RoleFailover, Status: st, Epoch: epoch,
		Databases: []workflows.DatabaseStatus{{Name: "fhir"}, {Name: "audit"}, {Name: "system"}}}
	if st == "" {
		s.Error = "dial tcp: connection refused"
	}
	if tr != "" {
		s.Transfer = &workflows.TransferStatus{Status: tr}
	}
	return s
}

// Healthy is a: primary, b: backup, both active, in epoch.
func Healthy(epoch uint64) []workflows.MemberStatus {
	return []workflows.MemberStatus{Member("a", "primary", epoch, "active"), Member("b", "backup", epoch, "active")}
}

// Switched is b: primary, a: backup in epoch.
func Switched(epoch uint64) []workflows.MemberStatus {
	return []workflows.MemberStatus{Member("a", "backup", epoch, "active"), Member("b", "primary", epoch, "active")}
}

// Hashes reports equal hashes for every database on members.
func Hashes(members ...string) []workflows.HashReport {
	var out []workflows.HashReport
	for _, m := range members {
		for _, db := range []string{"fhir", "audit", "system"} {
			out = append(out, workflows.HashReport{Member: m, Database: db, SHA256: "sha-" + db, AppliedLSN: 7})
		}
	}
	return out
}

// Endpoints reports every endpoint of a two-member tier reachable.
func Endpoints() []workflows.EndpointCheck {
	var out []workflows.EndpointCheck
	for _, n := range []string{"a (admin API)", "a (mirror)", "agent-a", "b (admin API)", "b (mirror)", "agent-b", "arbiter"} {
		out = append(out, workflows.EndpointCheck{Name: n, Address: "127.0.0.1:1", OK: true})
	}
	return out
}

// Records collects what a workflow wrote to the system database.
type Records struct {
	mu   sync.Mutex
	recs []workflows.Record
}

var act *workflows.Admin

// Mock answers the WriteRecord activity for tier by collecting the record.
func (r *Records) Mock(env *testsuite.TestWorkflowEnvironment, tier string) {
	env.OnActivity(act.WriteRecord, mock.Anything, tier, mock.Anything).Return(func(_ context.Context, _ string, rec workflows.Record) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.recs = append(r.recs, rec)
		return nil
	})
}

// Events lists the recorded events, comma-separated, in order.
func (r *Records) Events() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		out = append(out, rec.Event)
	}
	return strings.Join(out, ",")
}

// All returns the records.
func (r *Records) All() []workflows.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]workflows.Record(nil), r.recs...)
}

// NewEnv is a test environment with the activities registered and the
// SDK's logging silenced.
func NewEnv() *testsuite.TestWorkflowEnvironment {
	s := &testsuite.WorkflowTestSuite{}
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(act)
	return env
}

// ErrType is the type of the application error in err's chain, or "".
func ErrType(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Type()
	}
	return ""
}

// Approve sends the approve update at mock time at; a rejection by the
// validator lands in *rejected.
func Approve(env *testsuite.TestWorkflowEnvironment, at time.Duration, a workflows.Approval, rejected *error) {
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(workflows.UpdateApprove, "", &testsuite.TestUpdateCallback{
			OnReject:   func(err error) { *rejected = err },
			OnAccept:   func() {},
			OnComplete: func(any, error) {},
		}, a)
	}, at)
}

// Progress queries the workflow's progress.
func Progress(env *testsuite.TestWorkflowEnvironment) workflows.Progress {
	var p workflows.Progress
	if v, err := env.QueryWorkflow(workflows.QueryProgress); err == nil {
		v.Get(&p)
	}
	return p
}
