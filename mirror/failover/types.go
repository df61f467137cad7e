package failover

import (
	"fmt"
	"reflect"
	"strings"
)

// Epoch numbers the reigns of primaries. It only grows; every member and the
// arbiter persist it before use, and every message and journal record carries it.
type Epoch uint64

// LSN is a journal position. Entries are numbered 1, 2, 3, ... with no gaps;
// LSN 0 means "nothing".
type LSN uint64

// ID names a process in a tier: a failover member, an async member, the
// arbiter, an agent, the operator or a client.
type ID string

// OperatorID is the sender of operator commands (set no-failover, planned
// failover, forced promotion, arbiter seeding). The shells authenticate it.
const OperatorID ID = "operator"

// Tick is time in abstract units handed to the cores by their shells. Cores
// never read a clock; every timeout in Config is a number of ticks.
type Tick int64

// Version orders the arbiter's record: (epoch, seq), compared lexicographically.
type Version struct {
	Epoch Epoch
	Seq   uint64
}

// Less reports whether v is older than o.
func (v Version) Less(o Version) bool {
	return v.Epoch < o.Epoch || (v.Epoch == o.Epoch && v.Seq < o.Seq)
}

func (v Version) String() string { return fmt.Sprintf("(%d,%d)", v.Epoch, v.Seq) }

// Mode is the failover mode of the pair (DESIGN §3 "Who decides").
type Mode uint8

const (
	// ModeArbiter: the backup may take over with the arbiter's grant.
	ModeArbiter Mode = iota
	// ModeAgent: the backup has durably promised to take over only through
	// the primary's agent (fence + journal tail); it never asks the arbiter.
	ModeAgent
)

func (m Mode) String() string {
	if m == ModeAgent {
		return "agent-controlled"
	}
	return "arbiter-controlled"
}

// Role is the durable role of a member.
type Role uint8

const (
	RoleBackup Role = iota
	RolePrimary
	RoleAsync
)

func (r Role) String() string {
	switch r {
	case RolePrimary:
		return "primary"
	case RoleAsync:
		return "async"
	}
	return "backup"
}

// Status is the member status shown to operators (DESIGN §3 "Statuses").
type Status string

const (
	StatusPrimary    Status = "primary"
	StatusBackup     Status = "backup"
	StatusAsync      Status = "async"
	StatusInTrouble  Status = "in-trouble" // primary that may not commit
	StatusTransition Status = "transition" // draining for a planned handover, or stepped down
	StatusWaiting    Status = "waiting"    // fenced or former primary waiting for the new primary
	// StatusNeedsRebuild: the journal this member needs to catch up was
	// purged by the primary (or its history forks below what anyone still
	// holds). It acknowledges nothing, never takes over and serves no reads
	// until it is re-seeded from a snapshot (see Reseeded).
	StatusNeedsRebuild Status = "needs-rebuild"
)

// Base is where a member's journal starts: every record up to LSN was
// purged (or never held: a member re-seeded from a snapshot taken at LSN).
// Epoch is the epoch of the record at LSN, kept so that an append
// continuing from the base can still be checked. The zero Base is a journal
// that starts at LSN 1.
type Base struct {
	LSN   LSN
	Epoch Epoch
}

// Entry is one journal record as the failover core sees it. Marker entries
// open an epoch; their Data is empty and PrevEnd names the last LSN of the
// previous epoch (the fork point).
type Entry struct {
	Epoch   Epoch  `json:",omitzero"`
	LSN     LSN    `json:",omitzero"`
	Marker  bool   `json:",omitzero"`
	PrevEnd LSN    `json:",omitzero"`
	Data    []byte `json:",omitzero"`
}

// Record is the arbiter's per-tier compare-and-set register
// {epoch, seq, primary, backup, backup_active, mode}. ForkLSN is the last LSN
// of the previous epoch when the epoch was created by a grant or a handover.
type Record struct {
	Version      Version
	Primary      ID
	Backup       ID
	BackupActive bool
	Mode         Mode
	ForkLSN      LSN
}

func (r Record) String() string {
	return fmt.Sprintf("{%v primary=%s backup=%s active=%v %v fork=%d}", r.Version, r.Primary, r.Backup, r.BackupActive, r.Mode, r.ForkLSN)
}

// TakeoverAsk is the backup's durable note that it asked the arbiter for a
// takeover: while it is set the backup acknowledges nothing of epoch Epoch.
type TakeoverAsk struct {
	Valid bool
	At    Version // record version the request was a CAS on
	Epoch Epoch   // the backup's epoch when asking
	LSN   LSN     // the backup's last durable LSN: the new epoch starts after it
	// Reopen: asked by a restarted primary for a new epoch of its own
	// (OpReopen), not by a backup for a takeover. Granted, it starts after
	// the asker's whole journal (nothing of its own epoch is cut).
	Reopen bool
}

// FenceEpoch is the epoch an agent reports for a fenced member: its durable
// epoch, or the next one when it asked the arbiter to reopen in it (the
// grant may be recorded there without the member having learned it; a
// takeover through the agent must not create that epoch a second time).
func FenceEpoch(hs HardState) Epoch {
	if hs.Asked.Valid && hs.Asked.Reopen {
		return max(hs.Epoch, hs.Asked.Epoch+1)
	}
	return hs.Epoch
}

// DataLoss is an operator's recorded forced-promotion decision: journal
// records (From, To] of epoch Epoch may be lost.
type DataLoss struct {
	Epoch    Epoch // epoch created by the forced promotion
	From, To LSN   // lost range is From..To inclusive; To may be unknown (0) if no append was seen
	By       ID
}

// HardState is what a member must have fsynced before anything produced in
// the same Ready is sent. The shell stores it with the journal.
type HardState struct {
	Epoch        Epoch
	Role         Role
	Mode         Mode
	ModeSeq      uint64 // orders mode changes within an epoch
	BackupActive bool   // primary: commits need the backup's ack
	Known        Record // last arbiter record seen (CAS base; used to re-seed an arbiter)
	// ArbiterSession is raised (and persisted) before the member reports its
	// record to an arbiter that lost its disk; answers carrying an older
	// session — possibly decisions the arbiter has since forgotten — are ignored.
	ArbiterSession uint64
	Asked          TakeoverAsk
	NoFailover     bool
	SteppedDown    bool // planned handover: never commits again in Epoch
	Fenced         bool // data dir marked by the agent: never acts as primary in Epoch
	Losses         []DataLoss
	// NeedsRebuild: the primary purged the journal this member needs (or
	// its history forks below the primary's base). Cleared only by a
	// re-seed (Reseeded); until then the member never acknowledges, never
	// takes over and serves no reads.
	NeedsRebuild bool
	// Restarts (primary): how often it restarted in Epoch with its backup
	// active, each time resyncing; its appends carry it. PeerRestarts
	// (backup): the highest its primary's appends carried in Epoch. An
	// append or answer from before the primary's last restart (delayed on
	// the network, or buffered from the dead process) is stale: it could
	// carry records the restarted primary never made durable.
	Restarts     uint64
	PeerRestarts uint64
}

// Reseeded is the hard state of a member re-seeded from a snapshot that the
// primary of epoch e took: a fresh backup (or async) of e whose journal
// starts after the snapshot's LSN. It keeps only what must never go
// backwards or is the operator's: the arbiter session and last known
// record, the no-failover flag and recorded data losses. Like a member that
// learns a new epoch, it holds the conservative agent-mode promise until the
// primary's first append. A snapshot from an epoch older than the member's
// own is refused.
func Reseeded(old HardState, e Epoch, async bool) (HardState, error) {
	if e < old.Epoch {
		return old, fmt.Errorf("failover: snapshot from epoch %d is older than this member's epoch %d", e, old.Epoch)
	}
	hs := HardState{Epoch: e, Role: RoleBackup, Mode: ModeAgent, Known: old.Known, ArbiterSession: old.ArbiterSession,
		NoFailover: old.NoFailover, Losses: append([]DataLoss(nil), old.Losses...)}
	if async {
		hs.Role = RoleAsync
	}
	return hs, nil
}

// Truncate tells the shell to drop journal records after LSN After; when
// Quarantine is set they are first copied to a quarantine file with a report.
type Truncate struct {
	After      LSN
	Quarantine bool
}

// ArbiterState is the arbiter's durable state. Seeded is false after the
// arbiter lost its disk: it then answers nothing until re-seeded.
type ArbiterState struct {
	Seeded bool
	Record Record
}

// AgentState is the agent's durable state.
type AgentState struct {
	Fences     uint64 // fences performed
	LastFenced Epoch  // member's epoch at the last fence
}

// Alignment is the verdict of the policy gate on this member (filled in by the
// gate): an automatic takeover is refused unless Aligned.
type Alignment struct {
	Aligned bool
	Reasons []string
}

// Ready is the output of every Step/Tick, to be executed in this order:
// persist (HardState, Truncate, Entries, ArbiterState, AgentState — fsynced),
// then send Messages, then perform Actions, then log Events.
type Ready struct {
	HardState    *HardState
	Truncate     *Truncate
	Entries      []Entry
	ArbiterState *ArbiterState
	AgentState   *AgentState
	Messages     []Message
	Actions      []Action
	Events       []Event
}

// Empty reports whether rd holds nothing.
func (rd Ready) Empty() bool {
	return rd.HardState == nil && rd.Truncate == nil && len(rd.Entries) == 0 && rd.ArbiterState == nil &&
		rd.AgentState == nil && len(rd.Messages) == 0 && len(rd.Actions) == 0 && len(rd.Events) == 0
}

// Pipelinable: the Ready changes no hard state (saved is the one last
// persisted), truncates nothing and asks for no action but client
// acknowledgements, which commute and are bounded by the durable LSN where
// they are executed. A shell may queue its entries for the group commit and
// let its output wait for their fsync, and send its appends to the backup
// at once when the member ShipsEarly.
func (rd Ready) Pipelinable(saved HardState) bool {
	if rd.Truncate != nil || rd.HardState != nil && !reflect.DeepEqual(*rd.HardState, saved) {
		return false
	}
	for _, a := range rd.Actions {
		if a.Kind != ActAckClients {
			return false
		}
	}
	return true
}

// ActionKind is something the shell must do after persisting and sending.
type ActionKind uint8

const (
	ActPromote         ActionKind = iota + 1 // become primary in Epoch (Reason says how)
	ActDemote                                // stop being primary; serve as backup/waiting
	ActStopCommitting                        // in-trouble: acknowledge nothing
	ActStartCommitting                       // leave in-trouble
	ActAckClients                            // acknowledge client writes up to UpTo (Epoch = committing epoch)
	ActFence                                 // agent: kill the member and mark its data dir; then Step(MsgFenceDone)
	ActRejectWrite                           // a client write was refused (not primary / draining)
	ActResumeWrites                          // a restarted primary took its backup's tail: take writes after UpTo
)

func (k ActionKind) String() string {
	return [...]string{"?", "Promote", "Demote", "StopCommitting", "StartCommitting", "AckClients", "Fence", "RejectWrite", "ResumeWrites"}[k]
}

// PromoteReason says on whose authority a member became primary.
type PromoteReason uint8

const (
	PromoteGrant    PromoteReason = iota + 1 // arbiter grant, recorded there first
	PromoteAgent                             // primary's agent fenced it and handed over its journal tail
	PromoteHandover                          // planned handover from the primary
	PromoteForced                            // operator forced it; a DataLoss is recorded
	PromoteDR                                // operator promoted a dr async (failover pair gone); a DataLoss is recorded
	PromoteReopen                            // the primary restarted without its backup: a new epoch of its own (OpReopen, or agent-controlled)
)

func (r PromoteReason) String() string {
	return [...]string{"?", "arbiter-grant", "agent-fence+tail", "planned-handover", "operator-forced", "dr-promotion", "restart-reopen"}[r]
}

// Action is one instruction to the shell.
type Action struct {
	Kind   ActionKind
	Epoch  Epoch
	UpTo   LSN
	Reason PromoteReason
	Member ID // ActFence: the member to fence
}

func (a Action) String() string {
	return fmt.Sprintf("%v(e=%d upto=%d %v %s)", a.Kind, a.Epoch, a.UpTo, a.Reason, a.Member)
}

// Event is a log/metrics record emitted by a core (never PHI).
type Event struct {
	Kind   string
	Detail string
}

// Counters count rejected inputs. Rejected input never changes state.
type Counters struct {
	UnknownType uint64 // message type the core does not handle
	StaleEpoch  uint64 // message from a lower epoch
	Forged      uint64 // sender/role not allowed for this message
	Unseeded    uint64 // arbiter: requests dropped while it has no state
}

// Mutations are deliberate bugs for the simulation's self-test (TEST ONLY).
// The zero value is the correct protocol; production code never sets them.
type Mutations struct {
	AckBeforeBackup     bool // (a) primary acknowledges clients before the backup's ack
	NonActiveTakeover   bool // (b) backup takes over through the agent without the journal tail
	ArbiterForget       bool // (c) arbiter does not persist its decisions
	AckAfterTakeoverAsk bool // (d) backup still acks the old epoch after asking for takeover
	// (e) a restarted primary writes on in its epoch without first taking
	// its backup's records of that epoch (the records it shipped early);
	// the simulation's only: not in MutationNames
	NoResync bool
	// (f) the primary counts an acknowledgement of an append sent before
	// its last restart (the Restarts echo is not checked); the
	// simulation's only: not in MutationNames
	NoRestartsEcho bool
}

// MutationNames are the names ParseMutations accepts, one per switch.
var MutationNames = []string{"ack-before-backup", "non-active-takeover", "arbiter-forget", "ack-after-takeover-ask"}

// ParseMutations turns a comma-separated list of MutationNames into
// switches (TEST ONLY: real-process fault tests use it to prove their
// checkers catch each bug). An unknown name is an error.
func ParseMutations(list string) (*Mutations, error) {
	m := &Mutations{}
	for _, name := range strings.Split(list, ",") {
		switch strings.TrimSpace(name) {
		case "":
		case "ack-before-backup":
			m.AckBeforeBackup = true
		case "non-active-takeover":
			m.NonActiveTakeover = true
		case "arbiter-forget":
			m.ArbiterForget = true
		case "ack-after-takeover-ask":
			m.AckAfterTakeoverAsk = true
		default:
			return nil, fmt.Errorf("failover: unknown mutation %q (known: %s)", name, strings.Join(MutationNames, ", "))
		}
	}
	return m, nil
}
