// Package mirrorsetup is the MirrorSetup workflow: the checklist that must
// pass before a tier's mirror is trusted (DESIGN §5). Today it checks what
// the members' admin APIs can show: connectivity and mutual TLS to every
// member, agent and the arbiter; every member reporting its status; the
// mirror running with both failover members active in one epoch; the
// content hash of every database equal on the primary and the backup; an
// optional approval; and it records the outcome in the mirrored system
// database. Copying users, roles and configuration, creating the mirror and
// adding databases come with the admin APIs that do them (config-sync,
// mirror lifecycle issues).
//
// Resumable: every step is an idempotent read or a record keyed by the run,
// so a worker that dies mid-run is replaced by another that replays the
// history and carries on. Deterministic code only.
package mirrorsetup

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/tandemhealth/tandem/workflows"
)

// Name is the workflow type's registered name.
const Name = "MirrorSetup"

// Input configures a run.
type Input struct {
	Tier string `json:"tier"`
	// RequireApproval adds an approval step before the result is recorded.
	RequireApproval bool          `json:"require_approval"`
	ApprovalTTL     time.Duration `json:"approval_ttl"` // default 1h
	// Wait is how long each check may take to pass (members starting,
	// the backup catching up); default 2m. Poll is the interval; default 1s.
	Wait time.Duration `json:"wait"`
	Poll time.Duration `json:"poll"`
}

// Result is the checklist's outcome.
type Result struct {
	Primary    string            `json:"primary"`
	Backup     string            `json:"backup"`
	Epoch      uint64            `json:"epoch"`
	Hashes     map[string]string `json:"hashes"` // database -> sha256 on both
	Endpoints  int               `json:"endpoints_checked"`
	ApprovedBy string            `json:"approved_by,omitempty"`
}

// Steps of the checklist, in order.
var Steps = []string{"connectivity", "status", "mirror", "hashes", "approval", "record"}

// ApprovalConfirm is the text an approver sends back for tier.
func ApprovalConfirm(tier string) string { return "mirror setup of " + tier }

// Workflow runs the checklist.
func Workflow(ctx workflow.Context, in Input) (Result, error) {
	if in.ApprovalTTL <= 0 {
		in.ApprovalTTL = time.Hour
	}
	if in.Wait <= 0 {
		in.Wait = 2 * time.Minute
	}
	if in.Poll <= 0 {
		in.Poll = time.Second
	}
	f, err := workflows.NewFlow(ctx, Name, in.Tier, Steps)
	if err != nil {
		return Result{}, err
	}
	var res Result
	var act *workflows.Admin
	actx := workflows.ActivityContext(ctx)

	// 1. Connectivity and mutual TLS to every process of the tier.
	f.Step(ctx, 0, "dialing every member, agent and the arbiter with the operator's certificate")
	deadline := workflow.Now(ctx).Add(in.Wait)
	for {
		var checks []workflows.EndpointCheck
		if err := workflow.ExecuteActivity(actx, act.CheckEndpoints, in.Tier).Get(ctx, &checks); err != nil {
			return res, f.Fail(ctx, workflows.ErrNotReady, "connectivity: "+err.Error())
		}
		var bad []string
		for _, c := range checks {
			if !c.OK {
				bad = append(bad, fmt.Sprintf("%s at %s: %s", c.Name, c.Address, c.Error))
			}
		}
		if len(bad) == 0 {
			res.Endpoints = len(checks)
			f.Check(fmt.Sprintf("connectivity and mutual TLS: %d endpoints answer", len(checks)))
			break
		}
		f.P.Message = strings.Join(bad, "; ")
		if !workflow.Now(ctx).Before(deadline) {
			return res, f.Fail(ctx, workflows.ErrNotReady, "unreachable: "+strings.Join(bad, "; "))
		}
		if err := workflow.Sleep(ctx, in.Poll); err != nil {
			return res, err
		}
	}

	// 2. Every member reports its status.
	f.Step(ctx, 1, "asking every member for its status")
	if _, err := f.PollTier(ctx, in.Wait, in.Poll, func(sts []workflows.MemberStatus) (bool, string) {
		for _, s := range sts {
			if !s.Reachable() {
				return false, fmt.Sprintf("%s reports no status: %s", s.Member, s.Error)
			}
		}
		return true, ""
	}); err != nil {
		return res, err
	}
	f.Check("every member reports its status")

	// 3. The mirror runs: one primary, one active backup, one epoch.
	f.Step(ctx, 2, "waiting for the failover pair: one primary, one active backup")
	sts, err := f.PollTier(ctx, in.Wait, in.Poll, MirrorRunning)
	if err != nil {
		return res, err
	}
	p, b, _ := workflows.Pair(sts)
	res.Primary, res.Backup, res.Epoch = p.Member, b.Member, p.Epoch
	f.Check(fmt.Sprintf("mirror running: %s primary, %s backup (active), epoch %d", p.Member, b.Member, p.Epoch))

	// 4. Same content on both failover members, database by database.
	f.Step(ctx, 3, "comparing content hashes per database")
	dbs := workflows.DatabaseNames(p)
	reps, err := f.CompareHashes(ctx, in.Wait, in.Poll, []string{p.Member, b.Member}, dbs)
	if err != nil {
		return res, err
	}
	res.Hashes = map[string]string{}
	for _, r := range reps {
		res.Hashes[r.Database] = r.SHA256
	}
	f.Check(fmt.Sprintf("content hashes equal on %s and %s for %s", p.Member, b.Member, strings.Join(dbs, ", ")))
	if err := f.Record(ctx, "checklist", "pass", "", f.P.Checks, res); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "recording the checklist: "+err.Error())
	}

	// 5. Optional approval.
	f.Step(ctx, 4, "")
	if in.RequireApproval {
		f.P.Message = "waiting for an approval"
		a, err := f.AwaitApproval(ctx, "approve the mirror of tier "+in.Tier, ApprovalConfirm(in.Tier), in.ApprovalTTL)
		if err != nil {
			f.RecordBestEffort(ctx, "approval", workflows.ApprovalOutcome(err), []string{err.Error()}, nil)
			return res, err
		}
		res.ApprovedBy = a.By
		if err := f.Record(ctx, "approval", "approved", a.By, nil, nil); err != nil {
			return res, f.Fail(ctx, workflows.ErrNotReady, "recording the approval: "+err.Error())
		}
	} else {
		f.Check("no approval required")
	}

	// 6. The outcome, in the system database.
	f.Step(ctx, 5, "recording the outcome")
	if err := f.Record(ctx, "done", "mirror ready", res.ApprovedBy, nil, res); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "recording the outcome: "+err.Error())
	}
	f.Finish(ctx, workflows.StateDone, fmt.Sprintf("tier %s is mirrored: %s primary, %s backup, epoch %d", in.Tier, p.Member, b.Member, p.Epoch))
	return res, nil
}

// MirrorRunning says whether the failover pair is one primary and one
// active backup in the same epoch, and if not, why.
func MirrorRunning(sts []workflows.MemberStatus) (bool, string) {
	p, b, ok := workflows.Pair(sts)
	if !ok {
		var parts []string
		for _, s := range sts {
			if s.Role == workflows.RoleFailover {
				parts = append(parts, fmt.Sprintf("%s is %s", s.Member, orDown(s)))
			}
		}
		return false, "no primary/backup pair: " + strings.Join(parts, ", ")
	}
	if p.Epoch != b.Epoch {
		return false, fmt.Sprintf("%s is in epoch %d, %s in epoch %d", p.Member, p.Epoch, b.Member, b.Epoch)
	}
	for _, s := range []workflows.MemberStatus{p, b} {
		if s.Transfer == nil || s.Transfer.Status != "active" {
			st := "unknown"
			if s.Transfer != nil {
				st = s.Transfer.Status
			}
			return false, fmt.Sprintf("backup %s is not active (transfer as %s sees it: %s)", b.Member, s.Member, st)
		}
	}
	return true, ""
}

func orDown(s workflows.MemberStatus) string {
	if s.Reachable() {
		return s.Status
	}
	return "unreachable"
}
