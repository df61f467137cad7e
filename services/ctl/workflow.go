package ctl

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	configsync "github.com/tandemhealth/tandem/config-sync"
	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/services/worker"
	"github.com/tandemhealth/tandem/workflows"
	"github.com/tandemhealth/tandem/workflows/adddatabase"
	"github.com/tandemhealth/tandem/workflows/applychange"
	"github.com/tandemhealth/tandem/workflows/configsyncflow"
	"github.com/tandemhealth/tandem/workflows/mirrorsetup"
	"github.com/tandemhealth/tandem/workflows/plannedfailover"
	"github.com/tandemhealth/tandem/workflows/promoteasync"
	"github.com/tandemhealth/tandem/workflows/rebuildmember"
	"github.com/tandemhealth/tandem/workflows/recoverlostjournal"
)

const workflowUsage = `usage: tandem ctl workflow COMMAND [--temporal-address HOST:PORT] [--namespace NS] [--json]
  start mirror-setup TIER [--approval] [--approval-ttl 1h] [--watch]
  start planned-failover TIER [--by NAME] [--watch]
  start promote-async TIER MEMBER [--approval-ttl 15m] [--stated-gone TEXT] [--watch]   (--stated-gone: a dr member)
  start add-database TIER DATABASE --from /abs/store [--source-db NAME] [--by NAME] [--watch]
                                         import an existing database (a stopped node's store/, on the primary's
                                         host) through the journal; verify every member holds its content
  start rebuild-member TIER MEMBER [--force] [--by NAME] [--watch]
                                         re-seed a needs-rebuild member (--force: any backup or async) from a
                                         snapshot of the primary, follow it to normal, verify equal content
  start recover-lost-journal TIER MEMBER [--report NAME] [--approval-ttl 15m] [--watch]
                                         re-apply the FHIR resources of MEMBER's quarantine report (the newest
                                         not recovered; tandem ctl quarantine lists them) on the primary, after
                                         an approval of the plan; resources the primary changed since are left alone
  start apply-change TIER CATEGORY [FILE] [--if-version N] [--deadline 30m] [--by NAME] [--watch]
                                         FILE becomes the desired users|roles|security (passwords are hashed
                                         here, never sent to Temporal); without FILE the current desired state
                                         is applied; members that are down get it when they return
  start config-sync TIER [--approval-ttl 15m] [--watch]
                                         diff every member and repair drift; with --approval-ttl it waits for an
                                         approval of removals of users only one member has
  schedule drift-check TIER [--every 60s] [--paused]
                                         create or update the tier's DriftCheck schedule (runs config-sync)
  status TIER [apply-change CATEGORY | config-sync | drift-check] [--watch]
                                         progress of the tier's topology workflow (the last one if none runs),
                                         or of that config workflow (drift-check: the schedule and its last run)
  approve TIER [config-sync] --confirm TEXT --by NAME
                                         approve what the workflow waits for (status shows the text)
The topology workflows of a tier share the workflow ID tier/<TIER>/topology: one at a time.
Config workflows have their own IDs: tier/<TIER>/apply-change/<CATEGORY>, tier/<TIER>/config-sync.
Temporal: --temporal-address, else $TANDEM_TEMPORAL, else the cluster file's temporal.address (with
--cluster FILE or $TANDEM_CLUSTER; its TLS and API key are used too), else 127.0.0.1:7233.`

// WorkflowState is a tier's topology workflow as `ctl workflow status`
// shows it.
type WorkflowState struct {
	WorkflowID string             `json:"workflow_id"`
	RunID      string             `json:"run_id"`
	Type       string             `json:"type"`
	Status     string             `json:"status"` // Temporal's: Running, Completed, Failed, ...
	Started    time.Time          `json:"started"`
	Progress   workflows.Progress `json:"progress"`
	Error      string             `json:"error,omitempty"`
}

// Closed reports whether the run has ended.
func (s WorkflowState) Closed() bool { return s.Status != "" && s.Status != "Running" }

// StartWorkflow starts kind ("mirror-setup", "planned-failover",
// "promote-async", "rebuild-member", "add-database" on the tier's
// topology workflow ID; "apply-change",
// "config-sync" on their own); a second start while one runs under the
// same ID is refused with what runs.
func StartWorkflow(ctx context.Context, c client.Client, kind string, input any) (runID string, err error) {
	var name, tier, id string
	switch in := input.(type) {
	case mirrorsetup.Input:
		name, tier = mirrorsetup.Name, in.Tier
	case plannedfailover.Input:
		name, tier = plannedfailover.Name, in.Tier
	case promoteasync.Input:
		name, tier = promoteasync.Name, in.Tier
	case rebuildmember.Input:
		name, tier = rebuildmember.Name, in.Tier
	case adddatabase.Input:
		name, tier = adddatabase.Name, in.Tier
	case recoverlostjournal.Input:
		name, tier = recoverlostjournal.Name, in.Tier
	case applychange.Input:
		name, tier, id = applychange.Name, in.Tier, applychange.WorkflowID(in.Tier, in.Category)
	case configsyncflow.Input:
		name, tier, id = configsyncflow.Name, in.Tier, configsyncflow.WorkflowID(in.Tier)
	default:
		return "", fmt.Errorf("unknown workflow %q", kind)
	}
	what := "one topology workflow per tier at a time"
	if id == "" {
		id = workflows.TopologyWorkflowID(tier)
	} else {
		what = "one at a time under this ID"
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                workflows.TaskQueue,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, name, input)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		running := "a workflow"
		if d, derr := c.DescribeWorkflowExecution(ctx, id, ""); derr == nil {
			running = d.WorkflowExecutionInfo.GetType().GetName() + " (run " + d.WorkflowExecutionInfo.GetExecution().GetRunId() + ")"
		}
		return "", fmt.Errorf("tier %s already runs %s under %s: %s; see `tandem ctl workflow status %s`", tier, running, id, what, tier)
	}
	if err != nil {
		return "", fmt.Errorf("start %s on tier %s: %w", name, tier, err)
	}
	return run.GetRunID(), nil
}

// GetWorkflowState reads the tier's topology workflow (the running one, or
// the last one) and its progress.
func GetWorkflowState(ctx context.Context, c client.Client, tier string) (WorkflowState, error) {
	return GetWorkflowStateByID(ctx, c, workflows.TopologyWorkflowID(tier), "")
}

// GetWorkflowStateByID reads the workflow id (run runID, or the latest when
// empty) and its progress.
func GetWorkflowStateByID(ctx context.Context, c client.Client, id, runID string) (WorkflowState, error) {
	st := WorkflowState{WorkflowID: id}
	d, err := c.DescribeWorkflowExecution(ctx, id, runID)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return st, fmt.Errorf("no workflow %s has run (or its history expired)", id)
	}
	if err != nil {
		return st, err
	}
	info := d.WorkflowExecutionInfo
	st.RunID, st.Type = info.GetExecution().GetRunId(), info.GetType().GetName()
	st.Started = info.GetStartTime().AsTime().UTC()
	st.Status = strings.TrimPrefix(info.GetStatus().String(), "WORKFLOW_EXECUTION_STATUS_")
	st.Status = strings.ToUpper(st.Status[:1]) + strings.ToLower(st.Status[1:])
	v, err := c.QueryWorkflow(ctx, id, st.RunID, workflows.QueryProgress)
	if err != nil {
		st.Error = "progress unavailable: " + err.Error()
	} else if err := v.Get(&st.Progress); err != nil {
		st.Error = err.Error()
	}
	if st.Closed() && st.Status != "Completed" {
		run := c.GetWorkflow(ctx, id, st.RunID)
		if err := run.Get(ctx, nil); err != nil {
			st.Error = err.Error()
		}
	}
	return st, nil
}

// OpenWorkflowsQuery selects the running workflows of Tandem's task queue.
const OpenWorkflowsQuery = "ExecutionStatus = 'Running' AND TaskQueue = '" + workflows.TaskQueue + "'"

// ListOpenWorkflows reads every running workflow of Tandem's task queue
// (at most limit, newest first) and the progress of each, as
// GetWorkflowStateByID reads it. A workflow whose progress query fails
// (no worker answers) is listed with the error.
func ListOpenWorkflows(ctx context.Context, c client.Client, limit int) ([]WorkflowState, error) {
	var execs []*workflowpb.WorkflowExecutionInfo
	var token []byte
	for len(execs) < limit {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: OpenWorkflowsQuery, PageSize: int32(limit), NextPageToken: token})
		if err != nil {
			return nil, err
		}
		execs = append(execs, resp.GetExecutions()...)
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	execs = execs[:min(len(execs), limit)]
	// The progress queries run at once: one that waits for a busy or
	// absent worker does not delay the others.
	out := make([]WorkflowState, len(execs))
	var wg sync.WaitGroup
	for i, e := range execs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := GetWorkflowStateByID(ctx, c, e.GetExecution().GetWorkflowId(), e.GetExecution().GetRunId())
			if err != nil {
				st.Type, st.Status, st.Error = e.GetType().GetName(), "Running", err.Error()
				st.RunID, st.Started = e.GetExecution().GetRunId(), e.GetStartTime().AsTime().UTC()
			}
			out[i] = st
		}()
	}
	wg.Wait()
	return out, nil
}

// WorkflowTier is the tier a workflow ID names (tier/<TIER>/...), or "".
func WorkflowTier(id string) string {
	rest, ok := strings.CutPrefix(id, "tier/")
	if !ok {
		return ""
	}
	tier, _, _ := strings.Cut(rest, "/")
	return tier
}

// ApproveWorkflow sends the approve update; the workflow's validator
// refuses a wrong, anonymous or late approval.
func ApproveWorkflow(ctx context.Context, c client.Client, tier string, a workflows.Approval) (string, error) {
	return ApproveWorkflowID(ctx, c, workflows.TopologyWorkflowID(tier), a)
}

// ApproveWorkflowID sends the approve update to workflow id.
func ApproveWorkflowID(ctx context.Context, c client.Client, id string, a workflows.Approval) (string, error) {
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id,
		UpdateName:   workflows.UpdateApprove,
		Args:         []any{a},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return "", fmt.Errorf("approval refused: %w", err)
	}
	var out string
	if err := h.Get(ctx, &out); err != nil {
		return "", fmt.Errorf("approval refused: %w", err)
	}
	return out, nil
}

// PrintWorkflowState writes the state for people.
func PrintWorkflowState(w io.Writer, st WorkflowState) {
	p := st.Progress
	fmt.Fprintf(w, "%s  %s  (%s, run %s)\n", st.WorkflowID, st.Type, st.Status, st.RunID)
	if len(p.Steps) > 0 {
		fmt.Fprintf(w, "  %s  %s\n", p.Bar(30), p.State)
	}
	if p.Message != "" {
		fmt.Fprintf(w, "  %s\n", p.Message)
	}
	for _, c := range p.Checks {
		fmt.Fprintf(w, "  ✓ %s\n", c)
	}
	if a := p.Approval; a != nil {
		fmt.Fprintf(w, "  waiting for approval until %s: %s\n", a.ExpiresAt.Format(time.RFC3339), a.What)
		flow := ""
		if st.Type == configsyncflow.Name {
			flow = " config-sync"
		}
		fmt.Fprintf(w, "  approve with: tandem ctl workflow approve %s%s --confirm %q --by YOUR-NAME\n", p.Tier, flow, a.Confirm)
	}
	if st.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", st.Error)
	}
}

func workflowMain(ctx context.Context, args []string, clusterPath string, asJSON, watch bool, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(workflowUsage)
	}
	sub := args[0]
	fs := flag.NewFlagSet("ctl workflow", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	address := fs.String("temporal-address", "", "")
	namespace := fs.String("namespace", "", "")
	approval := fs.Bool("approval", false, "")
	ttl := fs.Duration("approval-ttl", 0, "")
	by := fs.String("by", os.Getenv("USER"), "")
	confirm := fs.String("confirm", "", "")
	statedGone := fs.String("stated-gone", "", "")
	ifVersion := fs.Int64("if-version", -1, "")
	deadline := fs.Duration("deadline", 0, "")
	every := fs.Duration("every", 0, "")
	paused := fs.Bool("paused", false, "")
	force := fs.Bool("force", false, "")
	from := fs.String("from", "", "")
	report := fs.String("report", "", "")
	sourceDB := fs.String("source-db", "", "")
	var pos []string
	rest := args[1:]
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return fmt.Errorf("%v\n%s", err, workflowUsage)
		}
		rest = fs.Args()
		if len(rest) > 0 {
			pos, rest = append(pos, rest[0]), rest[1:]
		}
	}
	if *address == "" {
		*address = os.Getenv("TANDEM_TEMPORAL")
	}
	// TLS, an API key, and address and namespace defaults come from the
	// cluster file's temporal section when one is named.
	var tcfg cluster.Temporal
	if clusterPath == "" {
		clusterPath = os.Getenv("TANDEM_CLUSTER")
	}
	if clusterPath != "" {
		f, err := cluster.Load(clusterPath)
		if err != nil {
			return err
		}
		tcfg = f.Temporal
	}
	opts, err := worker.ClientOptions(tcfg, *address, *namespace)
	if err != nil {
		return err
	}
	opts.Logger = quietLogger{}
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return fmt.Errorf("temporal at %s does not answer (is `tandem temporal` running? --temporal-address, or temporal.address in the cluster file): %w", opts.HostPort, err)
	}
	defer c.Close()
	// idOf names the workflow `status` and `approve` address: the topology
	// workflow, or the config workflow named after the tier.
	idOf := func(pos []string) (id, runID string, err error) {
		tier := pos[0]
		switch {
		case len(pos) == 1:
			return workflows.TopologyWorkflowID(tier), "", nil
		case pos[1] == "config-sync" && len(pos) == 2:
			return configsyncflow.WorkflowID(tier), "", nil
		case pos[1] == "apply-change" && len(pos) == 3:
			return applychange.WorkflowID(tier, pos[2]), "", nil
		case pos[1] == "drift-check" && len(pos) == 2:
			d, err := configsyncflow.DescribeDriftCheck(ctx, c, tier)
			if err != nil {
				return "", "", err
			}
			if !asJSON {
				next := "none"
				if !d.NextRun.IsZero() {
					next = d.NextRun.Format(time.RFC3339)
				}
				fmt.Fprintf(stdout, "%s: every %s, paused %v, %d runs, next %s\n", d.ScheduleID, d.Every, d.Paused, d.Runs, next)
			}
			if d.LastWorkflowID == "" {
				return "", "", fmt.Errorf("%s has not run yet", d.ScheduleID)
			}
			return d.LastWorkflowID, d.LastRunID, nil
		}
		return "", "", errors.New(workflowUsage)
	}
	follow := func(id, runID string) error {
		for {
			st, err := GetWorkflowStateByID(ctx, c, id, runID)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				enc.Encode(st)
			} else {
				if watch {
					fmt.Fprint(stdout, "\033[H\033[2J")
				}
				PrintWorkflowState(stdout, st)
			}
			if !watch || st.Closed() {
				if st.Closed() && st.Status != "Completed" {
					return fmt.Errorf("%s %s: %s", st.Type, strings.ToLower(st.Status), st.Error)
				}
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
	switch sub {
	case "start":
		if len(pos) < 2 {
			return errors.New(workflowUsage)
		}
		kind, tier := pos[0], pos[1]
		var input any
		switch kind {
		case "mirror-setup":
			input = mirrorsetup.Input{Tier: tier, RequireApproval: *approval, ApprovalTTL: *ttl}
		case "planned-failover":
			input = plannedfailover.Input{Tier: tier, By: *by}
		case "promote-async":
			if len(pos) != 3 {
				return errors.New("usage: tandem ctl workflow start promote-async TIER MEMBER")
			}
			input = promoteasync.Input{Tier: tier, Member: pos[2], ApprovalTTL: *ttl, StatedGone: *statedGone}
		case "add-database":
			if len(pos) != 3 || *from == "" {
				return errors.New("usage: tandem ctl workflow start add-database TIER DATABASE --from /abs/path/to/store [--source-db NAME]")
			}
			input = adddatabase.Input{Tier: tier, Database: pos[2], SourceDir: *from, SourceDatabase: *sourceDB, By: *by}
		case "rebuild-member":
			if len(pos) != 3 {
				return errors.New("usage: tandem ctl workflow start rebuild-member TIER MEMBER [--force]")
			}
			input = rebuildmember.Input{Tier: tier, Member: pos[2], Force: *force, By: *by}
		case "recover-lost-journal":
			if len(pos) != 3 {
				return errors.New("usage: tandem ctl workflow start recover-lost-journal TIER MEMBER [--report NAME] [--approval-ttl 15m]")
			}
			input = recoverlostjournal.Input{Tier: tier, Member: pos[2], Report: *report, ApprovalTTL: *ttl}
		case "apply-change":
			in, err := applyChangeInput(pos, *by, *ifVersion, *deadline)
			if err != nil {
				return err
			}
			input = in
		case "config-sync":
			input = configsyncflow.Input{Tier: tier, ApprovalTTL: *ttl, By: *by}
		default:
			return fmt.Errorf("unknown workflow %q\n%s", kind, workflowUsage)
		}
		runID, err := StartWorkflow(ctx, c, kind, input)
		if err != nil {
			return err
		}
		id := workflows.TopologyWorkflowID(tier)
		switch in := input.(type) {
		case applychange.Input:
			id = applychange.WorkflowID(tier, in.Category)
		case configsyncflow.Input:
			id = configsyncflow.WorkflowID(tier)
		}
		if !asJSON {
			fmt.Fprintf(stdout, "started %s on tier %s: workflow %s, run %s\n", kind, tier, id, runID)
		}
		if watch || asJSON {
			return follow(id, runID)
		}
		return nil
	case "status":
		if len(pos) == 0 {
			return errors.New("usage: tandem ctl workflow status TIER [apply-change CATEGORY | config-sync | drift-check] [--watch] [--json]")
		}
		id, runID, err := idOf(pos)
		if err != nil {
			return err
		}
		return follow(id, runID)
	case "schedule":
		if len(pos) != 2 || pos[0] != "drift-check" {
			return errors.New("usage: tandem ctl workflow schedule drift-check TIER [--every 60s] [--paused]")
		}
		created, err := configsyncflow.EnsureDriftCheck(ctx, c, configsyncflow.Schedule{Tier: pos[1], Every: *every, Paused: paused})
		if err != nil {
			return err
		}
		verb := "updated"
		if created {
			verb = "created"
		}
		fmt.Fprintf(stdout, "%s %s: ConfigSync every %s (paused %v)\n", verb, configsyncflow.ScheduleID(pos[1]), cmp.Or(*every, configsyncflow.DefaultEvery), *paused)
		return nil
	case "approve":
		if len(pos) == 0 || *confirm == "" {
			return errors.New("usage: tandem ctl workflow approve TIER [config-sync] --confirm TEXT --by NAME (tandem ctl workflow status TIER shows the text)")
		}
		id, _, err := idOf(pos)
		if err != nil {
			return err
		}
		out, err := ApproveWorkflowID(ctx, c, id, workflows.Approval{Confirm: *confirm, By: *by})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, out)
		return nil
	}
	return fmt.Errorf("unknown workflow command %q\n%s", sub, workflowUsage)
}

// applyChangeInput reads `start apply-change TIER CATEGORY [FILE]`: the
// document is prepared here (passwords and secrets bcrypt-hashed), so no
// clear text reaches Temporal's history.
func applyChangeInput(pos []string, by string, ifVersion int64, deadline time.Duration) (applychange.Input, error) {
	if len(pos) < 3 || len(pos) > 4 {
		return applychange.Input{}, errors.New("usage: tandem ctl workflow start apply-change TIER CATEGORY [FILE] [--if-version N] [--deadline 30m]")
	}
	in := applychange.Input{Tier: pos[1], Category: pos[2], By: by, Deadline: deadline}
	if !configsync.KnownCategory(in.Category) {
		return in, configsync.ErrUnknownCategory
	}
	if len(pos) == 4 {
		raw, err := os.ReadFile(pos[3])
		if err != nil {
			return in, err
		}
		if in.Doc, err = configsync.Prepare(in.Category, raw); err != nil {
			return in, err
		}
	}
	if ifVersion >= 0 {
		v := uint64(ifVersion)
		in.IfVersion = &v
	}
	return in, nil
}

// quietLogger drops the SDK's own log lines: ctl prints what matters.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
