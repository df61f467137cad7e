// Package configsyncflow is the ConfigSync workflow and the DriftCheck
// schedule that runs it (DESIGN §5): read every member's config-sync diff,
// repair what drifted by applying the desired state the tier holds
// (effective ← desired, never the other way), and report per member and
// category what was found and done.
//
// One repair needs a person: removing a user that only one member enforces
// (the desired state does not list it, and no other member has it) — it
// may be the only trace of an account someone still needs. Such a member's
// users category is left alone; its other categories are repaired. A run
// started with an ApprovalTTL then waits for an approval (the "approve"
// update, whose validator refuses a wrong, anonymous or late one) and
// applies it; a scheduled run (ApprovalTTL 0) reports it and ends.
//
// Deterministic code only; the schedule's client code is in schedule.go.
package configsyncflow

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	configsync "github.com/tandemhealth/tandem/config-sync"
	"github.com/tandemhealth/tandem/workflows"
)

// Name is the workflow type's registered name.
const Name = "ConfigSync"

// WorkflowID is the ID of a ConfigSync started by hand on tier; the
// DriftCheck schedule's runs are named after it (Temporal appends the
// scheduled time).
func WorkflowID(tier string) string { return "tier/" + tier + "/config-sync" }

// Input configures a run.
type Input struct {
	Tier string `json:"tier"`
	// ApprovalTTL > 0: wait that long for an approval of the removals that
	// need one. 0: report them and end.
	ApprovalTTL time.Duration `json:"approval_ttl,omitempty"`
	By          string        `json:"by,omitempty"`
}

// Result is what the run found and did.
type Result struct {
	Members []MemberReport `json:"members"`
	// Drifted counts the (member, category) pairs found drifted; Repaired
	// those now aligned.
	Drifted  int `json:"drifted"`
	Repaired int `json:"repaired"`
	// AwaitingApproval lists the removals left undone for want of approval
	// ("member: user name").
	AwaitingApproval []string `json:"awaiting_approval,omitempty"`
	ApprovedBy       string   `json:"approved_by,omitempty"`
}

// MemberReport is one member.
type MemberReport struct {
	Member     string           `json:"member"`
	Error      string           `json:"error,omitempty"` // did not answer: not checked
	Categories []CategoryReport `json:"categories,omitempty"`
}

// CategoryReport is one category of one member.
type CategoryReport struct {
	Category string   `json:"category"`
	Drifted  bool     `json:"drifted"`
	Changes  []string `json:"changes,omitempty"`
	// Outcome: aligned (nothing to do), repaired, failed, awaiting-approval.
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
}

// Outcomes of a category.
const (
	OutcomeAligned  = "aligned"
	OutcomeRepaired = "repaired"
	OutcomeFailed   = "failed"
	OutcomeAwaiting = "awaiting-approval"
)

// Steps, in order.
var Steps = []string{"diff", "repair", "approval", "record"}

// A member whose desired state is behind the newest one is read again
// desiredCatchUpReads times, desiredCatchUpPause apart, before it is judged.
const (
	desiredCatchUpReads = 10
	desiredCatchUpPause = 500 * time.Millisecond
)

// newestDesired is the newest desired version any member holds, per
// category: a member still behind waits for it rather than applying an
// older state.
func newestDesired(mcs []workflows.MemberConfig) map[string]uint64 {
	versions := map[string]uint64{}
	for _, m := range mcs {
		for _, c := range m.Categories {
			versions[c.Category] = max(versions[c.Category], c.DesiredVersion)
		}
	}
	return versions
}

// behind lists "member category" for every answering member whose desired
// state of a category is older than the newest.
func behind(mcs []workflows.MemberConfig, versions map[string]uint64) []string {
	var out []string
	for _, m := range mcs {
		if m.Error != "" {
			continue
		}
		for _, c := range m.Categories {
			if c.DesiredVersion < versions[c.Category] {
				out = append(out, m.Member+" "+c.Category)
			}
		}
	}
	return out
}

// Workflow runs one check-and-repair round.
func Workflow(ctx workflow.Context, in Input) (Result, error) {
	f, err := workflows.NewFlow(ctx, Name, in.Tier, Steps)
	if err != nil {
		return Result{}, err
	}
	var act *workflows.Admin
	actx := workflows.ActivityContext(ctx)
	var res Result

	// 1. Every member's diff.
	f.Step(ctx, 0, "reading every member's desired and effective state")
	// Each member judges itself against the desired state its own journal
	// has applied. A backup a moment behind the primary would call itself
	// aligned with a desired state that is already replaced (and its
	// removals would go unseen), so the diff is read again until every
	// member that answers holds the newest desired version; a member still
	// behind after that is reported, not repaired: its own diff is against
	// a replaced state, and applying the newest one could remove a user
	// without the approval a removal needs. The next round checks it again.
	var mcs []workflows.MemberConfig
	var versions map[string]uint64
	for attempt := 1; ; attempt++ {
		mcs = nil
		if err := workflow.ExecuteActivity(actx, act.ConfigStates, in.Tier).Get(ctx, &mcs); err != nil {
			return res, f.Fail(ctx, workflows.ErrNotReady, "config states: "+err.Error())
		}
		versions = newestDesired(mcs)
		if len(behind(mcs, versions)) == 0 || attempt == desiredCatchUpReads {
			break
		}
		if err := workflow.Sleep(ctx, desiredCatchUpPause); err != nil {
			return res, err
		}
	}
	held := HeldRemovals(mcs)
	type todo struct {
		i    int
		cats []string
	}
	var repairs []todo
	for _, m := range mcs {
		r := MemberReport{Member: m.Member, Error: m.Error}
		var cats []string
		for _, c := range m.Categories {
			cr := CategoryReport{Category: c.Category, Drifted: !c.Aligned, Changes: c.Changes, Outcome: OutcomeAligned}
			if m.Error == "" && c.DesiredVersion < versions[c.Category] {
				res.Drifted++
				cr.Drifted, cr.Outcome = true, OutcomeFailed
				cr.Error = fmt.Sprintf("desired state v%d here, v%d on another member: its journal has not applied it yet; the next round checks it again", c.DesiredVersion, versions[c.Category])
				f.Check(fmt.Sprintf("%s: %s %s", m.Member, c.Category, cr.Error))
			} else if !c.Aligned {
				res.Drifted++
				if c.Category == configsync.Users && len(held[m.Member]) > 0 {
					cr.Outcome = OutcomeAwaiting
				} else {
					cats = append(cats, c.Category)
				}
			}
			r.Categories = append(r.Categories, cr)
		}
		res.Members = append(res.Members, r)
		if len(cats) > 0 {
			repairs = append(repairs, todo{len(res.Members) - 1, cats})
		}
		switch {
		case m.Error != "":
			f.Check(fmt.Sprintf("%s: did not answer (%s); not checked", m.Member, m.Error))
		case len(cats) == 0 && len(held[m.Member]) == 0:
			f.Check(m.Member + ": aligned")
		default:
			for _, c := range m.Categories {
				if !c.Aligned {
					f.Check(fmt.Sprintf("%s: %s drifted: %s", m.Member, c.Category, strings.Join(c.Changes, "; ")))
				}
			}
		}
	}

	// 2. Repair what needs nobody's approval.
	f.Step(ctx, 1, fmt.Sprintf("repairing %d members", len(repairs)))
	for _, t := range repairs {
		if err := apply(ctx, f, &res, t.i, versions, t.cats); err != nil {
			return res, err
		}
	}

	// 3. Removals that need an approval.
	f.Step(ctx, 2, "")
	var awaiting []string
	for _, m := range res.Members {
		for _, u := range held[m.Member] {
			awaiting = append(awaiting, m.Member+": user "+u)
		}
	}
	if len(awaiting) > 0 {
		what := "remove users only one member enforces: " + strings.Join(awaiting, ", ")
		f.Check("needs approval: " + what)
		if in.ApprovalTTL <= 0 {
			res.AwaitingApproval = awaiting
		} else {
			a, err := f.AwaitApproval(ctx, what, ApprovalConfirm(awaiting), in.ApprovalTTL)
			if err != nil {
				res.AwaitingApproval = awaiting
				f.RecordBestEffort(ctx, "approval", workflows.ApprovalOutcome(err), []string{err.Error()}, res)
				return res, err
			}
			res.ApprovedBy = a.By
			for i, m := range res.Members {
				if len(held[m.Member]) > 0 {
					if err := apply(ctx, f, &res, i, versions, []string{configsync.Users}); err != nil {
						return res, err
					}
				}
			}
		}
	}

	// 4. Record what was found and done (a round that found nothing is
	// not recorded: the schedule runs every minute).
	f.Step(ctx, 3, "")
	if res.Drifted > 0 {
		f.P.Message = "recording the repair"
		var msgs []string
		for _, m := range res.Members {
			for _, c := range m.Categories {
				if c.Drifted {
					msgs = append(msgs, fmt.Sprintf("%s %s: %s %s", m.Member, c.Category, c.Outcome, c.Error))
				}
			}
		}
		if err := f.Record(ctx, "repair", fmt.Sprintf("%d drifted, %d repaired", res.Drifted, res.Repaired), res.ApprovedBy, msgs, res); err != nil {
			return res, f.Fail(ctx, workflows.ErrNotReady, "recording the repair: "+err.Error())
		}
	}
	msg := fmt.Sprintf("%d drifted, %d repaired", res.Drifted, res.Repaired)
	if len(res.AwaitingApproval) > 0 {
		msg += fmt.Sprintf("; %d removals await approval: tandem ctl workflow start config-sync %s --approval-ttl 15m", len(res.AwaitingApproval), in.Tier)
	}
	f.Finish(ctx, workflows.StateDone, msg)
	return res, nil
}

// apply repairs cats on member i and updates the report.
func apply(ctx workflow.Context, f *workflows.Flow, res *Result, i int, versions map[string]uint64, cats []string) error {
	var act *workflows.Admin
	m := &res.Members[i]
	var ar workflows.ApplyResult
	if err := workflow.ExecuteActivity(workflows.ActivityContext(ctx), act.ApplyConfig, f.Tier, m.Member, versions, cats).Get(ctx, &ar); err != nil {
		return f.Fail(ctx, workflows.ErrNotReady, "apply on "+m.Member+": "+err.Error())
	}
	for j := range m.Categories {
		c := &m.Categories[j]
		if !slices.Contains(cats, c.Category) {
			continue
		}
		if ar.Aligned(c.Category, versions[c.Category]) {
			c.Outcome, c.Error = OutcomeRepaired, ""
			res.Repaired++
			f.Check(fmt.Sprintf("%s: %s repaired (version %d)", m.Member, c.Category, versions[c.Category]))
			continue
		}
		c.Outcome, c.Error = OutcomeFailed, ar.Error
		for _, r := range ar.Results {
			if r.Category == c.Category && r.Error != "" {
				c.Error = r.Error
			}
		}
		f.Check(fmt.Sprintf("%s: %s not repaired: %s", m.Member, c.Category, c.Error))
	}
	return nil
}

// HeldRemovals lists, per member, the users its repair would remove that
// no other member enforces: those removals need an approval. Members that
// did not answer count as not having the user.
func HeldRemovals(mcs []workflows.MemberConfig) map[string][]string {
	out := map[string][]string{}
	for _, m := range mcs {
		for _, u := range m.Removals {
			elsewhere := false
			for _, o := range mcs {
				if o.Member != m.Member && o.Error == "" && slices.Contains(o.Users, u) {
					elsewhere = true
				}
			}
			if !elsewhere {
				out[m.Member] = append(out[m.Member], u)
			}
		}
		sort.Strings(out[m.Member])
	}
	return out
}

// ApprovalConfirm is the text an approver sends back for these removals.
func ApprovalConfirm(removals []string) string { return "remove " + strings.Join(removals, ", ") }
