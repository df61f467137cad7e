// Package adddatabase is the AddDatabase workflow (DESIGN §5): an existing
// database — the store of a stopped node, or a restore, on the primary's
// host — is added to a running tier. The primary imports it through the
// journal (POST /admin/databases/{db}/import); the workflow checks the tier,
// asks once, follows the import to normal, then waits until every member
// that answers holds the source's content, and records every decision in
// the mirrored system database.
//
// It shares the tier's topology workflow ID. Deterministic code only.
package adddatabase

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/tandemhealth/tandem/workflows"
)

// Name is the workflow type's registered name.
const Name = "AddDatabase"

// Input configures a run.
type Input struct {
	Tier     string `json:"tier"`
	Database string `json:"database"`
	// SourceDir is the source store directory on the primary's host;
	// SourceDatabase its database (default: Database).
	SourceDir      string `json:"source_dir"`
	SourceDatabase string `json:"source_database,omitempty"`
	By             string `json:"by,omitempty"`
	// Wait bounds the import and the verification; default 1h. Poll is the
	// status interval; default 1s.
	Wait time.Duration `json:"wait"`
	Poll time.Duration `json:"poll"`
}

// Result is the database added.
type Result struct {
	Database     string   `json:"database"`
	Primary      string   `json:"primary"`
	Keys         int      `json:"keys"`
	FirstLSN     uint64   `json:"first_lsn"`
	LastLSN      uint64   `json:"last_lsn"`
	SourceSHA256 string   `json:"source_sha256"`
	Members      []string `json:"members"` // verified equal to the source
}

// Steps, in order.
var Steps = []string{"status", "request", "import", "verify", "record"}

// Workflow runs the import.
func Workflow(ctx workflow.Context, in Input) (Result, error) {
	if in.Wait <= 0 {
		in.Wait = time.Hour
	}
	if in.Poll <= 0 {
		in.Poll = time.Second
	}
	f, err := workflows.NewFlow(ctx, Name, in.Tier, Steps)
	if err != nil {
		return Result{}, err
	}
	var act *workflows.Admin
	res := Result{Database: in.Database}

	// 1. The primary.
	sts, err := f.ReadTier(ctx, 0)
	if err != nil {
		return res, err
	}
	var members []string
	for _, s := range sts {
		if s.Status == "primary" {
			res.Primary = s.Member
		}
		if s.Reachable() {
			members = append(members, s.Member)
		}
	}
	if res.Primary == "" {
		return res, f.Fail(ctx, workflows.ErrNotReady, "the tier has no primary: see `tandem ctl status`")
	}
	f.Check(fmt.Sprintf("%s is primary; %d members answer", res.Primary, len(members)))

	// 2. Ask the primary.
	f.Step(ctx, 1, fmt.Sprintf("asking %s to import %s as database %s", res.Primary, in.SourceDir, in.Database))
	if err := f.Record(ctx, "requested", "requested", in.By, nil, in); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "recording the request: "+err.Error())
	}
	err = workflow.ExecuteActivity(workflows.ActivityContext(ctx), act.RequestImport, in.Tier, res.Primary, in.Database, in.SourceDir, in.SourceDatabase, in.By).Get(ctx, nil)
	if err != nil {
		f.RecordBestEffort(ctx, "request", "refused", []string{err.Error()}, in)
		return res, f.Fail(ctx, workflows.ErrNotReady, "import request: "+err.Error())
	}

	// 3. The import, to normal.
	f.Step(ctx, 2, "importing through the journal")
	deadline := workflow.Now(ctx).Add(in.Wait)
	var st workflows.DatabaseImport
	for {
		if err := workflow.ExecuteActivity(workflows.ActivityContext(ctx), act.ImportState, in.Tier, res.Primary, in.Database).Get(ctx, &st); err != nil {
			f.RecordBestEffort(ctx, "import", "unreachable", []string{err.Error()}, in)
			return res, f.Fail(ctx, workflows.ErrNotReady, "import state on "+res.Primary+": "+err.Error())
		}
		if st.Error != "" {
			f.RecordBestEffort(ctx, "import", "failed", []string{st.Error}, in)
			return res, f.Fail(ctx, workflows.ErrNotReady, "import failed on "+res.Primary+": "+st.Error+" (start the workflow again to finish it)")
		}
		if st.State == "normal" {
			break
		}
		f.P.Message, f.P.Updated = fmt.Sprintf("%s: %d keys, %d bytes", st.State, st.Keys, st.Bytes), workflow.Now(ctx)
		if !workflow.Now(ctx).Before(deadline) {
			return res, f.Fail(ctx, workflows.ErrTimeout, fmt.Sprintf("import not finished within %s: %d keys so far", in.Wait, st.Keys))
		}
		if err := workflow.Sleep(ctx, in.Poll); err != nil {
			return res, err
		}
	}
	res.Keys, res.FirstLSN, res.LastLSN, res.SourceSHA256 = st.Keys, st.FirstLSN, st.LastLSN, st.SourceSHA256
	f.Check(fmt.Sprintf("imported %d keys at LSN %d-%d", st.Keys, st.FirstLSN, st.LastLSN))

	// 4. Every member that answered holds the source's content.
	f.Step(ctx, 3, "comparing every member's content with the source")
	for {
		var reps []workflows.HashReport
		if err := workflow.ExecuteActivity(workflows.ActivityContext(ctx), act.ContentHashes, in.Tier, members, []string{in.Database}).Get(ctx, &reps); err != nil {
			return res, f.Fail(ctx, workflows.ErrNotReady, "content hashes: "+err.Error())
		}
		ok, why := MatchesSource(reps, res.SourceSHA256)
		if ok {
			break
		}
		f.P.Message, f.P.Updated = why, workflow.Now(ctx)
		if !workflow.Now(ctx).Before(deadline) {
			f.RecordBestEffort(ctx, "verify", "differs", []string{why}, res)
			return res, f.Fail(ctx, workflows.ErrTimeout, "not every member holds the source's content: "+why)
		}
		if err := workflow.Sleep(ctx, in.Poll); err != nil {
			return res, err
		}
	}
	res.Members = members
	f.Check(fmt.Sprintf("%v hold the source's content (%.12s)", members, res.SourceSHA256))

	// 5. Record.
	f.Step(ctx, 4, "recording the outcome")
	if err := f.Record(ctx, "done", "added", in.By, nil, res); err != nil {
		return res, f.Fail(ctx, workflows.ErrNotReady, "recording the outcome: "+err.Error())
	}
	f.Finish(ctx, workflows.StateDone, fmt.Sprintf("database %s added: %d keys on %d members", in.Database, res.Keys, len(members)))
	return res, nil
}

// MatchesSource says whether every report carries the source's hash, and
// if not, which member differs.
func MatchesSource(reps []workflows.HashReport, source string) (bool, string) {
	for _, r := range reps {
		switch {
		case r.Error != "":
			return false, fmt.Sprintf("%s: %s", r.Member, r.Error)
		case r.SHA256 != source:
			return false, fmt.Sprintf("%s has %.12s (applied LSN %d), the source %.12s", r.Member, r.SHA256, r.AppliedLSN, source)
		}
	}
	return true, ""
}
