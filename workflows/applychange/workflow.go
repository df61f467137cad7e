// Package applychange is the ApplyChange workflow (DESIGN §5): an
// administrator's change to one config-sync category (users, roles or
// security) written as the tier's desired state on the primary, then
// applied to every member. A member that is down, or still behind the new
// desired version, is tried again with a growing backoff until it reports
// that it enforces that version (its effective digest equals the desired
// one), so a member that returns gets the change; the whole is bounded by
// a deadline, after which the workflow fails (Timeout) naming the members
// that never aligned — the DriftCheck schedule keeps repairing them.
//
// The document arrives prepared (bcrypt hashes, never a clear-text
// password): it is in this workflow's history. Deterministic code only.
package applychange

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/tandemhealth/tandem/workflows"
)

// Name is the workflow type's registered name.
const Name = "ApplyChange"

// WorkflowID is the workflow ID of a change to category on tier: one change
// per category and tier at a time.
func WorkflowID(tier, category string) string {
	return "tier/" + tier + "/apply-change/" + category
}

// Input configures a run.
type Input struct {
	Tier     string `json:"tier"`
	Category string `json:"category"`
	// Doc is the new desired document, prepared (configsync.Prepare). Empty:
	// nothing is written; the current desired state is applied everywhere.
	Doc json.RawMessage `json:"doc,omitempty"`
	// IfVersion makes the write a compare-and-set on that desired version.
	IfVersion *uint64 `json:"if_version,omitempty"`
	By        string  `json:"by,omitempty"`
	// Deadline bounds the wait for every member; default 30m. Backoff is
	// the first wait before a member is tried again (default 1s), doubled up
	// to MaxBackoff (default 30s).
	Deadline   time.Duration `json:"deadline"`
	Backoff    time.Duration `json:"backoff"`
	MaxBackoff time.Duration `json:"max_backoff"`
}

// Result is the change and where it is enforced.
type Result struct {
	Category string        `json:"category"`
	Version  uint64        `json:"version"`
	Digest   string        `json:"digest"`
	Primary  string        `json:"primary"`
	Written  bool          `json:"written"`
	Members  []MemberApply `json:"members"`
}

// MemberApply is one member's progress.
type MemberApply struct {
	Member   string `json:"member"`
	Aligned  bool   `json:"aligned"`
	Attempts int    `json:"attempts"`
	Result   string `json:"result,omitempty"` // applied, unchanged (already enforced)
	Error    string `json:"error,omitempty"`  // the last reason it is not aligned
}

// Steps, in order.
var Steps = []string{"desired", "apply", "record"}

// Workflow runs the change.
func Workflow(ctx workflow.Context, in Input) (Result, error) {
	if in.Deadline <= 0 {
		in.Deadline = 30 * time.Minute
	}
	if in.Backoff <= 0 {
		in.Backoff = time.Second
	}
	if in.MaxBackoff <= 0 {
		in.MaxBackoff = 30 * time.Second
	}
	f, err := workflows.NewFlow(ctx, Name, in.Tier, Steps)
	if err != nil {
		return Result{}, err
	}
	var act *workflows.Admin
	actx := workflows.ActivityContext(ctx)
	res := Result{Category: in.Category}
	deadline := workflow.Now(ctx).Add(in.Deadline)

	// 1. The desired state, on the primary.
	f.Step(ctx, 0, "writing desired "+in.Category+" on the primary")
	var ch workflows.DesiredChange
	if err := workflow.ExecuteActivity(actx, act.PutDesired, in.Tier, in.Category, in.Doc, in.IfVersion).Get(ctx, &ch); err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == workflows.ErrConflict {
			return res, f.Fail(ctx, workflows.ErrConflict, appErr.Message())
		}
		return res, f.Fail(ctx, workflows.ErrNotReady, "desired state: "+err.Error())
	}
	res.Version, res.Digest, res.Primary, res.Written = ch.Version, ch.Digest, ch.Primary, in.Doc != nil && !ch.Unchanged
	if res.Written {
		f.Check(fmt.Sprintf("desired %s is version %d on %s (digest %.12s)", in.Category, ch.Version, ch.Primary, ch.Digest))
	} else {
		f.Check(fmt.Sprintf("desired %s already is version %d (digest %.12s): applying it", in.Category, ch.Version, ch.Digest))
	}

	// 2. Every member enforces it; the ones that are down get it when they
	// return, until the deadline.
	f.Step(ctx, 1, "applying to every member")
	var sts []workflows.MemberStatus
	if err := workflow.ExecuteActivity(actx, act.TierStatus, in.Tier).Get(ctx, &sts); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "members: "+err.Error())
	}
	for _, s := range sts {
		res.Members = append(res.Members, MemberApply{Member: s.Member})
	}
	versions := map[string]uint64{in.Category: ch.Version}
	wait := in.Backoff
	for {
		for i := range res.Members {
			m := &res.Members[i]
			if m.Aligned {
				continue
			}
			m.Attempts++
			var ar workflows.ApplyResult
			if err := workflow.ExecuteActivity(actx, act.ApplyConfig, in.Tier, m.Member, versions, []string{in.Category}).Get(ctx, &ar); err != nil {
				return res, f.Fail(ctx, workflows.ErrNotReady, "apply on "+m.Member+": "+err.Error())
			}
			if ar.Aligned(in.Category, ch.Version) {
				m.Aligned, m.Error = true, ""
				for _, r := range ar.Results {
					if r.Category == in.Category {
						m.Result = r.Result
					}
				}
				f.Check(fmt.Sprintf("%s enforces %s version %d (%s, attempt %d)", m.Member, in.Category, ch.Version, m.Result, m.Attempts))
				continue
			}
			m.Error = ar.Error
			for _, r := range ar.Results {
				if r.Category == in.Category && r.Error != "" {
					m.Error = r.Error
				}
			}
			if m.Error == "" {
				m.Error = "not aligned yet"
			}
		}
		pending := pendingMembers(res.Members)
		if len(pending) == 0 {
			break
		}
		f.P.Message, f.P.Updated = fmt.Sprintf("waiting for %s (next try in %s)", strings.Join(pending, "; "), wait), workflow.Now(ctx)
		left := deadline.Sub(workflow.Now(ctx))
		if left <= 0 {
			msg := fmt.Sprintf("%s version %d not enforced everywhere within %s: %s", in.Category, ch.Version, in.Deadline, strings.Join(pending, "; "))
			f.RecordBestEffort(ctx, "deadline", "not aligned", pending, res)
			return res, f.Fail(ctx, workflows.ErrTimeout, msg, res)
		}
		if err := workflow.Sleep(ctx, min(wait, left)); err != nil {
			return res, err
		}
		wait = min(2*wait, in.MaxBackoff)
	}

	// 3. The outcome, in the system database.
	f.Step(ctx, 2, "recording the change")
	if err := f.Record(ctx, "done", "applied", in.By, f.P.Checks, res); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "recording the change: "+err.Error())
	}
	f.Finish(ctx, workflows.StateDone, fmt.Sprintf("%s version %d enforced by every member", in.Category, ch.Version))
	return res, nil
}

func pendingMembers(ms []MemberApply) []string {
	var out []string
	for _, m := range ms {
		if !m.Aligned {
			out = append(out, m.Member+": "+m.Error)
		}
	}
	sort.Strings(out)
	return out
}
