// Package workflows holds what Tandem's administrators' Temporal workflows
// share: the tier's workflow ID, the task queue, the progress every
// workflow answers to its "progress" query, the approval carried by the
// "approve" update, and the activities (methods of Admin) that call the
// members' admin APIs over mutual TLS with the operator's certificate.
//
// One folder per workflow below this one (mirrorsetup, plannedfailover,
// promoteasync; applychange and configsyncflow, with the DriftCheck
// schedule, for config-sync) holds the deterministic workflow code; the
// embedded server is in temporalserver. Workflow code never does I/O, never reads the
// clock or a random source except through the workflow package, and never
// decides anything an activity measured without the measurement being in
// history. Activities are idempotent: each may run more than once.
package workflows

import (
	"fmt"
	"strings"
	"time"
)

// TaskQueue is the queue `tandem worker` polls.
const TaskQueue = "tandem-admin"

// TopologyWorkflowID is the one workflow ID shared by every workflow that
// changes a tier's topology (MirrorSetup, PlannedFailover, PromoteAsync and
// later AddDatabase, RebuildMember): Temporal runs at most one workflow per
// ID, so two of them can never run on one tier at once.
func TopologyWorkflowID(tier string) string { return "tier/" + tier + "/topology" }

// Query and update names.
const (
	QueryProgress = "progress"
	UpdateApprove = "approve"
)

// Error types of non-retryable workflow failures, for callers that match
// on them (temporal.ApplicationError.Type()).
const (
	ErrGateRefused      = "GateRefused"      // the member's policy gate refused; details: GateRefusal
	ErrApprovalExpired  = "ApprovalExpired"  // nobody approved in time
	ErrPromotionRefused = "PromotionRefused" // the member refused the forced promotion
	ErrNotReady         = "NotReady"         // the tier is not in the state the workflow needs
	ErrTimeout          = "Timeout"          // the tier did not reach the expected state in time
)

// Progress is what a workflow answers to QueryProgress.
type Progress struct {
	Workflow string    `json:"workflow"`
	Tier     string    `json:"tier"`
	Steps    []string  `json:"steps"`
	Step     int       `json:"step"` // index into Steps of the current step; len(Steps) when done
	State    string    `json:"state"`
	Message  string    `json:"message"`
	Updated  time.Time `json:"updated"`
	// Approval is set while the workflow waits for an approval.
	Approval *ApprovalRequest `json:"approval,omitempty"`
	// Checks are the results gathered so far, one line each.
	Checks []string `json:"checks,omitempty"`
}

// Progress states.
const (
	StateRunning  = "running"
	StateWaiting  = "awaiting-approval"
	StateDone     = "done"
	StateFailed   = "failed"
	StateRefused  = "refused"
	StateExpired  = "expired"
	StateCanceled = "canceled"
)

// Bar draws the progress as a bar of width characters.
func (p Progress) Bar(width int) string {
	n := len(p.Steps)
	if n == 0 {
		return ""
	}
	done := min(p.Step, n)
	filled := done * width / n
	step := "done"
	if p.Step < n {
		step = p.Steps[p.Step]
	}
	return fmt.Sprintf("[%s%s] %d/%d %s", strings.Repeat("#", filled), strings.Repeat("-", width-filled), done, n, step)
}

// ApprovalRequest is what an approver must answer.
type ApprovalRequest struct {
	// Confirm is the text the approval must carry back unchanged (for
	// PromoteAsync, the member's loss statement).
	Confirm   string    `json:"confirm"`
	ExpiresAt time.Time `json:"expires_at"`
	What      string    `json:"what"`
}

// Approval is the argument of the "approve" update.
type Approval struct {
	Confirm string `json:"confirm"`
	By      string `json:"by"`
}

// ValidateApproval is the validator shared by the workflows that wait for
// an approval: it refuses an approval when none is awaited, after the
// deadline, without an approver's name, or whose confirmation differs.
func ValidateApproval(req *ApprovalRequest, now time.Time, a Approval) error {
	switch {
	case req == nil:
		return fmt.Errorf("no approval is awaited now")
	case !now.Before(req.ExpiresAt):
		return fmt.Errorf("the approval expired at %s", req.ExpiresAt.Format(time.RFC3339))
	case strings.TrimSpace(a.By) == "":
		return fmt.Errorf("an approval names who approves (by)")
	case a.Confirm != req.Confirm:
		return fmt.Errorf("confirmation %q does not match %q", a.Confirm, req.Confirm)
	}
	return nil
}

// Record is one decision or approval written to the mirrored system
// database under Key (Temporal's own history expires; this does not).
type Record struct {
	Key        string    `json:"key"`
	Workflow   string    `json:"workflow"`
	WorkflowID string    `json:"workflow_id"`
	RunID      string    `json:"run_id"`
	Tier       string    `json:"tier"`
	Event      string    `json:"event"`
	At         time.Time `json:"at"`
	By         string    `json:"by,omitempty"`
	Result     string    `json:"result"`
	Messages   []string  `json:"messages,omitempty"`
	Detail     any       `json:"detail,omitempty"`
}

// RecordKey is the system-database key of a workflow run's event:
// workflow/<workflow>/<tier>/<run id>/<event>.
func RecordKey(workflow, tier, runID, event string) string {
	return "workflow/" + workflow + "/" + tier + "/" + runID + "/" + event
}

// MemberStatus is one member's /mirror/status as the workflows need it,
// plus whether it answered.
type MemberStatus struct {
	Member     string           `json:"member"`
	Role       string           `json:"role"`
	Status     string           `json:"status"`
	Epoch      uint64           `json:"epoch"`
	Journal    JournalStatus    `json:"journal"`
	Databases  []DatabaseStatus `json:"databases"`
	Transfer   *TransferStatus  `json:"transfer,omitempty"`
	NoFailover bool             `json:"no_failover,omitempty"`
	// Rebuild is the last re-seed the member's process fetched, if any.
	Rebuild *RebuildState `json:"rebuild,omitempty"`
	// Error is set when the member did not answer (or reports an error).
	Error string `json:"error,omitempty"`
}

// JournalStatus is the journal part of a member's status.
type JournalStatus struct {
	LastLSN   uint64 `json:"last_lsn"`
	CommitLSN uint64 `json:"commit_lsn"`
}

// DatabaseStatus is one database of a member's status.
type DatabaseStatus struct {
	Name string `json:"name"`
	// Status is normal, or needs-catchup / catchup-running on a member
	// being re-seeded.
	Status     string `json:"status"`
	AppliedLSN uint64 `json:"applied_lsn"`
}

// RebuildState is a member's re-seed as its status reports it.
type RebuildState struct {
	State  string `json:"state"` // fetching, staged, failed
	Source string `json:"source,omitempty"`
	LSN    uint64 `json:"lsn,omitempty"`
	Error  string `json:"error,omitempty"`
}

// TransferStatus is journal shipping between the failover pair.
type TransferStatus struct {
	Status        string `json:"status"`
	BehindRecords uint64 `json:"behind_records"`
}

// Reachable reports whether the member answered with a status.
func (s MemberStatus) Reachable() bool { return s.Error == "" && s.Status != "" && s.Status != "down" }

// Failover roles as the cluster file and the status name them.
const RoleFailover = "failover"

// Pair finds the failover pair in statuses: the primary and the backup.
// ok is false unless exactly one failover member is primary and the other
// is backup.
func Pair(statuses []MemberStatus) (primary, backup MemberStatus, ok bool) {
	var p, b []MemberStatus
	for _, s := range statuses {
		if s.Role != RoleFailover {
			continue
		}
		switch s.Status {
		case "primary":
			p = append(p, s)
		case "backup":
			b = append(b, s)
		}
	}
	if len(p) != 1 || len(b) != 1 {
		return MemberStatus{}, MemberStatus{}, false
	}
	return p[0], b[0], true
}

// DescribeStatuses says what each failover member reports, for an error
// message: "a primary (epoch 2), b catching-up (epoch 2)", or the error of a
// member that did not answer.
func DescribeStatuses(statuses []MemberStatus) string {
	var parts []string
	for _, s := range statuses {
		if s.Role != RoleFailover {
			continue
		}
		if s.Error != "" {
			parts = append(parts, s.Member+": "+s.Error)
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s (epoch %d)", s.Member, s.Status, s.Epoch))
	}
	return strings.Join(parts, ", ")
}

// EndpointCheck is one connectivity and TLS check.
type EndpointCheck struct {
	Name    string `json:"name"` // "a (admin API)", "arbiter"
	Address string `json:"address"`
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
}

// HashReport is the content hash of one database on one member.
type HashReport struct {
	Member     string `json:"member"`
	Database   string `json:"database"`
	SHA256     string `json:"sha256"`
	AppliedLSN uint64 `json:"applied_lsn"`
	Error      string `json:"error,omitempty"`
}

// GateRefusal is the detail of an ErrGateRefused failure: the policy
// gate's messages, as the member sent them.
type GateRefusal struct {
	Member   string   `json:"member"`
	Messages []string `json:"messages"`
}

// PromotionPreview is a member's statement of what a forced promotion
// would lose (GET /admin/force-promote).
type PromotionPreview struct {
	Member        string         `json:"member"`
	Role          string         `json:"role"`
	Status        string         `json:"status"`
	NewEpoch      uint64         `json:"new_epoch"`
	LossFrom      uint64         `json:"loss_from"`
	LossTo        uint64         `json:"loss_to"`
	HeldHere      map[string]int `json:"held_here_per_database"`
	NeverReceived uint64         `json:"never_received"`
	Confirm       string         `json:"confirm"`
	// NeedsStatement: a dr member, promoted only with the operator's
	// statement that both failover members are gone (PromoteDR).
	NeedsStatement bool `json:"needs_statement,omitempty"`
}
