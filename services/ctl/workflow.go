package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/tandemhealth/tandem/workflows"
	"github.com/tandemhealth/tandem/workflows/mirrorsetup"
	"github.com/tandemhealth/tandem/workflows/plannedfailover"
	"github.com/tandemhealth/tandem/workflows/promoteasync"
)

const workflowUsage = `usage: tandem ctl workflow COMMAND [--temporal-address HOST:PORT] [--namespace NS] [--json]
  start mirror-setup TIER [--approval] [--approval-ttl 1h] [--watch]
  start planned-failover TIER [--by NAME] [--watch]
  start promote-async TIER MEMBER [--approval-ttl 15m] [--watch]
  status TIER [--watch]                  progress of the tier's topology workflow (the last one if none runs)
  approve TIER --confirm TEXT --by NAME  approve what the workflow waits for (status shows the text)
The topology workflows of a tier share the workflow ID tier/<TIER>/topology: one at a time.
Temporal: --temporal-address, else $TANDEM_TEMPORAL, else 127.0.0.1:7233.`

// WorkflowState is a tier's topology workflow as `ctl workflow status`
// shows it.
type WorkflowState struct {
	WorkflowID string             `json:"workflow_id"`
	RunID      string             `json:"run_id"`
	Type       string             `json:"type"`
	Status     string             `json:"status"` // Temporal's: Running, Completed, Failed, ...
	Progress   workflows.Progress `json:"progress"`
	Error      string             `json:"error,omitempty"`
}

// Closed reports whether the run has ended.
func (s WorkflowState) Closed() bool { return s.Status != "" && s.Status != "Running" }

// StartWorkflow starts kind ("mirror-setup", "planned-failover",
// "promote-async") on the tier's topology workflow ID; a second start while
// one runs is refused with what runs.
func StartWorkflow(ctx context.Context, c client.Client, kind string, input any) (runID string, err error) {
	var name, tier string
	switch in := input.(type) {
	case mirrorsetup.Input:
		name, tier = mirrorsetup.Name, in.Tier
	case plannedfailover.Input:
		name, tier = plannedfailover.Name, in.Tier
	case promoteasync.Input:
		name, tier = promoteasync.Name, in.Tier
	default:
		return "", fmt.Errorf("unknown workflow %q", kind)
	}
	id := workflows.TopologyWorkflowID(tier)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                workflows.TaskQueue,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, name, input)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		running := "a topology workflow"
		if d, derr := c.DescribeWorkflowExecution(ctx, id, ""); derr == nil {
			running = d.WorkflowExecutionInfo.GetType().GetName() + " (run " + d.WorkflowExecutionInfo.GetExecution().GetRunId() + ")"
		}
		return "", fmt.Errorf("tier %s already runs %s under %s: one topology workflow per tier at a time; see `tandem ctl workflow status %s`", tier, running, id, tier)
	}
	if err != nil {
		return "", fmt.Errorf("start %s on tier %s: %w", name, tier, err)
	}
	return run.GetRunID(), nil
}

// GetWorkflowState reads the tier's topology workflow (the running one, or
// the last one) and its progress.
func GetWorkflowState(ctx context.Context, c client.Client, tier string) (WorkflowState, error) {
	id := workflows.TopologyWorkflowID(tier)
	st := WorkflowState{WorkflowID: id}
	d, err := c.DescribeWorkflowExecution(ctx, id, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return st, fmt.Errorf("no topology workflow has run on tier %s (or its history expired)", tier)
	}
	if err != nil {
		return st, err
	}
	info := d.WorkflowExecutionInfo
	st.RunID, st.Type = info.GetExecution().GetRunId(), info.GetType().GetName()
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

// ApproveWorkflow sends the approve update; the workflow's validator
// refuses a wrong, anonymous or late approval.
func ApproveWorkflow(ctx context.Context, c client.Client, tier string, a workflows.Approval) (string, error) {
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflows.TopologyWorkflowID(tier),
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
		fmt.Fprintf(w, "  approve with: tandem ctl workflow approve %s --confirm %q --by YOUR-NAME\n", p.Tier, a.Confirm)
	}
	if st.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", st.Error)
	}
}

func workflowMain(ctx context.Context, args []string, asJSON, watch bool, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(workflowUsage)
	}
	sub := args[0]
	fs := flag.NewFlagSet("ctl workflow", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	address := fs.String("temporal-address", "", "")
	namespace := fs.String("namespace", "default", "")
	approval := fs.Bool("approval", false, "")
	ttl := fs.Duration("approval-ttl", 0, "")
	by := fs.String("by", os.Getenv("USER"), "")
	confirm := fs.String("confirm", "", "")
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
	if *address == "" {
		*address = "127.0.0.1:7233"
	}
	c, err := client.DialContext(ctx, client.Options{HostPort: *address, Namespace: *namespace, Logger: quietLogger{}})
	if err != nil {
		return fmt.Errorf("temporal at %s does not answer (is `tandem temporal` running? --temporal-address): %w", *address, err)
	}
	defer c.Close()
	follow := func(tier string) error {
		for {
			st, err := GetWorkflowState(ctx, c, tier)
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
			input = promoteasync.Input{Tier: tier, Member: pos[2], ApprovalTTL: *ttl}
		default:
			return fmt.Errorf("unknown workflow %q\n%s", kind, workflowUsage)
		}
		runID, err := StartWorkflow(ctx, c, kind, input)
		if err != nil {
			return err
		}
		if !asJSON {
			fmt.Fprintf(stdout, "started %s on tier %s: workflow %s, run %s\n", kind, tier, workflows.TopologyWorkflowID(tier), runID)
		}
		if watch || asJSON {
			return follow(tier)
		}
		return nil
	case "status":
		if len(pos) != 1 {
			return errors.New("usage: tandem ctl workflow status TIER [--watch] [--json]")
		}
		return follow(pos[0])
	case "approve":
		if len(pos) != 1 || *confirm == "" {
			return errors.New("usage: tandem ctl workflow approve TIER --confirm TEXT --by NAME (tandem ctl workflow status TIER shows the text)")
		}
		out, err := ApproveWorkflow(ctx, c, pos[0], workflows.Approval{Confirm: *confirm, By: *by})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, out)
		return nil
	}
	return fmt.Errorf("unknown workflow command %q\n%s", sub, workflowUsage)
}

// quietLogger drops the SDK's own log lines: ctl prints what matters.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
