// Package rebuildmember is the RebuildMember workflow (DESIGN §5): a member
// that is needs-rebuild (the journal it needs was purged) — or, with Force,
// any backup or async — is re-seeded from a snapshot of the tier's primary
// and catches up. The member does the work through its admin API (POST
// /admin/rebuild: fetch, verify, install, catch up); the workflow checks
// the tier first, asks once, follows the member's databases through
// needs-catchup → catchup-running → normal, verifies equal content with the
// primary and records every decision in the mirrored system database.
//
// It shares the tier's topology workflow ID: it never runs beside a
// failover or a promotion. Deterministic code only.
package rebuildmember

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/tandemhealth/tandem/workflows"
)

// Name is the workflow type's registered name.
const Name = "RebuildMember"

// Input configures a run.
type Input struct {
	Tier   string `json:"tier"`
	Member string `json:"member"`
	// Force re-seeds a member that does not need it (its journal is intact).
	Force bool   `json:"force,omitempty"`
	By    string `json:"by,omitempty"` // who asked, for the record
	// Wait bounds the re-seed and the verification; default 30m. Poll is
	// the status interval; default 1s.
	Wait time.Duration `json:"wait"`
	Poll time.Duration `json:"poll"`
}

// Result is the re-seed that happened.
type Result struct {
	Member string `json:"member"`
	Source string `json:"source"` // the primary the snapshot came from
	LSN    uint64 `json:"lsn"`    // the snapshot's LSN
	Epoch  uint64 `json:"epoch"`
}

// Steps, in order.
var Steps = []string{"status", "request", "re-seed", "verify", "record"}

// Workflow runs the re-seed.
func Workflow(ctx workflow.Context, in Input) (Result, error) {
	if in.Wait <= 0 {
		in.Wait = 30 * time.Minute
	}
	if in.Poll <= 0 {
		in.Poll = time.Second
	}
	f, err := workflows.NewFlow(ctx, Name, in.Tier, Steps)
	if err != nil {
		return Result{}, err
	}
	var act *workflows.Admin
	res := Result{Member: in.Member}

	// 1. The member and the primary.
	sts, err := f.ReadTier(ctx, 0)
	if err != nil {
		return res, err
	}
	m, p, why := Check(sts, in.Member, in.Force)
	if why != "" {
		return res, f.Fail(ctx, workflows.ErrNotReady, why)
	}
	res.Source, res.Epoch = p.Member, p.Epoch
	f.Check(fmt.Sprintf("%s is %s; %s is primary in epoch %d", m.Member, m.Status, p.Member, p.Epoch))

	// 2. Ask the member.
	f.Step(ctx, 1, fmt.Sprintf("asking %s to re-seed from %s", m.Member, p.Member))
	if err := f.Record(ctx, "requested", "requested", in.By, nil, res); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "recording the request: "+err.Error())
	}
	err = workflow.ExecuteActivity(workflows.ActivityContext(ctx), act.RequestRebuild, in.Tier, m.Member, p.Member, in.Force).Get(ctx, nil)
	if err != nil {
		f.RecordBestEffort(ctx, "request", "refused", []string{err.Error()}, res)
		return res, f.Fail(ctx, workflows.ErrNotReady, "re-seed request: "+err.Error())
	}
	f.Check(fmt.Sprintf("%s is fetching a snapshot from %s", m.Member, p.Member))

	// 3. Installed, caught up: every database normal again.
	f.Step(ctx, 2, fmt.Sprintf("waiting for %s to install the snapshot and catch up", m.Member))
	var failed string
	sts, err = f.PollTier(ctx, in.Wait, in.Poll, func(sts []workflows.MemberStatus) (bool, string) {
		ok, why, fail := Reseeded(sts, m.Member)
		failed = fail
		return ok || fail != "", why
	})
	if err != nil {
		f.RecordBestEffort(ctx, "re-seed", "timeout", []string{err.Error()}, res)
		return res, err
	}
	if failed != "" {
		f.RecordBestEffort(ctx, "re-seed", "failed", []string{failed}, res)
		return res, f.Fail(ctx, workflows.ErrNotReady, m.Member+": re-seed failed, nothing installed: "+failed)
	}
	for _, s := range sts {
		if s.Member == m.Member && s.Rebuild != nil {
			res.LSN = s.Rebuild.LSN
		}
	}
	f.Check(fmt.Sprintf("%s installed the snapshot at LSN %d and caught up", m.Member, res.LSN))

	// 4. Equal content with the primary.
	f.Step(ctx, 3, "comparing content hashes per database")
	if _, err := f.CompareHashes(ctx, in.Wait, in.Poll, []string{p.Member, m.Member}, workflows.DatabaseNames(p)); err != nil {
		f.RecordBestEffort(ctx, "verify", "hashes differ", []string{err.Error()}, res)
		return res, err
	}
	f.Check(fmt.Sprintf("content hashes equal on %s and %s", p.Member, m.Member))

	// 5. Record.
	f.Step(ctx, 4, "recording the outcome")
	if err := f.Record(ctx, "done", "re-seeded", in.By, nil, res); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "recording the outcome: "+err.Error())
	}
	f.Finish(ctx, workflows.StateDone, fmt.Sprintf("%s re-seeded from %s at LSN %d and caught up", m.Member, p.Member, res.LSN))
	return res, nil
}

// Check finds member and the primary in sts and says why a re-seed cannot
// start ("" when it can).
func Check(sts []workflows.MemberStatus, member string, force bool) (m, p workflows.MemberStatus, why string) {
	found := false
	for _, s := range sts {
		if s.Member == member {
			m, found = s, true
		}
		if s.Status == "primary" {
			p = s
		}
	}
	switch {
	case !found:
		return m, p, fmt.Sprintf("no member %q in the tier", member)
	case m.Error != "" || m.Status == "" || m.Status == "down":
		return m, p, fmt.Sprintf("%s does not answer (%s): start its process first; it re-seeds from a running primary", member, m.Error)
	case m.Status == "primary":
		return m, p, fmt.Sprintf("%s is the primary: a primary is never re-seeded (hand the role over first: planned-failover)", member)
	case p.Member == "":
		return m, p, "the tier has no primary to take a snapshot from: see `tandem ctl status`"
	case m.Status != "needs-rebuild" && !force:
		return m, p, fmt.Sprintf("%s is %s and catches up from the primary's journal: it needs no re-seed (force one with --force)", member, m.Status)
	}
	return m, p, ""
}

// Reseeded says whether member has installed a re-seed and every database
// is normal again (ok), why not yet, or why it failed (fail).
func Reseeded(sts []workflows.MemberStatus, member string) (ok bool, why, fail string) {
	for _, s := range sts {
		if s.Member != member {
			continue
		}
		switch {
		case s.Error != "":
			return false, member + " restarting or unreachable: " + s.Error, ""
		case s.Rebuild != nil && s.Rebuild.State == "failed":
			return false, "", s.Rebuild.Error
		case s.Rebuild == nil || s.Rebuild.State != "installed":
			state := "not started"
			if s.Rebuild != nil {
				state = s.Rebuild.State
			}
			return false, fmt.Sprintf("%s: re-seed %s", member, state), ""
		}
		for _, d := range s.Databases {
			if d.Status != "" && d.Status != "normal" {
				return false, fmt.Sprintf("%s: database %s %s (applied LSN %d)", member, d.Name, d.Status, d.AppliedLSN), ""
			}
		}
		if s.Status != "backup" && s.Status != "async" {
			return false, fmt.Sprintf("%s is %s", member, s.Status), ""
		}
		return true, "", ""
	}
	return false, member + " is not in the tier's status", ""
}
