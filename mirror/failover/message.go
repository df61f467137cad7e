package failover

import "fmt"

// MsgType identifies a message. Zero and unknown values are rejected.
type MsgType uint8

const (
	MsgInvalid MsgType = iota
	// client -> member
	MsgPropose // a client write: Data
	// primary -> backup / async
	MsgAppend // journal records after (PrevLSN, PrevEpoch); also the heartbeat
	// backup / async -> primary
	MsgAppendResp // durable match LSN (or Reject with Hint)
	// member -> arbiter
	MsgArbiterReq // Op, Seen, LSN, Known
	// arbiter -> member
	MsgArbiterResp // OK, Record, Op and Seen of the request it answers
	// member -> peer's agent
	MsgAgentQuery // is your member down? fence it and give me the tail after (FromLSN, FromEpoch)
	// agent -> member
	MsgAgentResp // Down, Fenced, Epoch (member's on-disk epoch), Entries (tail), FullLog (then PrevLSN/PrevEpoch: the journal's base)
	// shell -> agent, after executing ActFence: the member's durable journal
	// (Entries after its base PrevLSN, of epoch PrevEpoch) and epoch
	MsgFenceDone
	// shell -> agent: the member process is up / down (Up)
	MsgMemberStatus
	// primary -> backup: take over at Epoch+1, you have everything up to LSN
	MsgHandover
	// operator -> member / arbiter
	MsgSetNoFailover   // Flag
	MsgPlannedFailover // to the primary
	MsgForcePromote    // to the backup; records a DataLoss
	MsgSetAlignment    // policy gate verdict: Alignment
	MsgArbiterSeed     // operator re-seeds an empty arbiter with Record
	msgTypeEnd
)

var msgTypeNames = [...]string{"Invalid", "Propose", "Append", "AppendResp", "ArbiterReq", "ArbiterResp",
	"AgentQuery", "AgentResp", "FenceDone", "MemberStatus", "Handover", "SetNoFailover", "PlannedFailover",
	"ForcePromote", "SetAlignment", "ArbiterSeed"}

func (t MsgType) String() string {
	if int(t) < len(msgTypeNames) {
		return msgTypeNames[t]
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// ArbiterOp is the operation of an arbiter request. Every op but OpRead is a
// compare-and-set on Seen, the record version the asker last saw.
type ArbiterOp uint8

const (
	OpRead           ArbiterOp = iota + 1 // read the record (also the liveness ping)
	OpBackupInactive                      // primary: "backup no longer active at epoch e"
	OpBackupActive                        // primary: "backup active again"
	OpTakeover                            // backup: grant me epoch e+1, starting after LSN
	OpArbiterMode                         // primary: "arbiter-controlled, backup active" (leaving agent mode)
	OpHandover                            // primary: planned handover to the backup at epoch e+1 after LSN
	OpReport                              // member -> empty arbiter: my Known record, after a Reseed challenge
	OpPromoteDR                           // dr member, on the operator's command: record me primary of epoch e+1 after LSN (the pair gone)
	OpReopen                              // restarted primary whose backup is silent: record me primary of epoch e+1 after LSN, backup not active
)

func (o ArbiterOp) String() string {
	if int(o) >= 10 {
		return fmt.Sprintf("op(%d)", uint8(o))
	}
	return [...]string{"?", "read", "backup-inactive", "backup-active", "takeover", "arbiter-mode", "handover", "report", "promote-dr", "reopen"}[o]
}

// Message is the one envelope for all cores. Only the fields meaningful for
// Type are set.
type Message struct {
	Type  MsgType `json:",omitzero"`
	From  ID      `json:",omitzero"`
	To    ID      `json:",omitzero"`
	Epoch Epoch   `json:",omitzero"` // sender's epoch

	// MsgPropose, MsgAppend, MsgAgentResp, MsgFenceDone; MsgAppendResp to a Resync
	Data    []byte  `json:",omitzero"`
	Entries []Entry `json:",omitzero"`

	// MsgAppend
	PrevLSN      LSN    `json:",omitzero"`
	PrevEpoch    Epoch  `json:",omitzero"`
	Commit       LSN    `json:",omitzero"`
	LastLSN      LSN    `json:",omitzero"` // primary's last LSN
	Mode         Mode   `json:",omitzero"`
	ModeSeq      uint64 `json:",omitzero"`
	BackupActive bool   `json:",omitzero"`
	// JournalGone: the receiver needs records at or below PrevLSN (the
	// sender's base, with PrevEpoch its epoch) that the sender purged; if
	// its own journal does not reach that base in the same history, it
	// needs a rebuild (HardState.NeedsRebuild).
	JournalGone bool `json:",omitzero"`
	// Resync (primary -> backup, and echoed): the primary restarted and may
	// have shipped records it did not make durable before it stopped. The
	// backup answers with its own records of the primary's epoch after
	// Match (Entries); the primary takes them before it writes again.
	Resync bool `json:",omitzero"`
	// Restarts: the primary's HardState.Restarts (MsgAppend), echoed in the
	// answer (MsgAppendResp); see HardState.
	Restarts uint64 `json:",omitzero"`

	// MsgAppendResp
	Match          LSN  `json:",omitzero"`
	Reject         bool `json:",omitzero"`
	Hint           LSN  `json:",omitzero"`
	ArbiterContact bool `json:",omitzero"`

	// MsgArbiterReq / MsgArbiterResp
	Op    ArbiterOp `json:",omitzero"`
	Seen  Version   `json:",omitzero"`
	LSN   LSN       `json:",omitzero"` // OpTakeover / OpHandover: last LSN of the old epoch; MsgHandover too
	Known Record    `json:",omitzero"` // request: the member's last known record (re-seeding)
	// Session: the member's arbiter session, echoed in the answer. A member
	// ignores answers from an older session (see HardState.ArbiterSession).
	Session uint64 `json:",omitzero"`
	Reseed  bool   `json:",omitzero"` // answer from an arbiter without state: "report your record"
	OK      bool   `json:",omitzero"`
	Record  Record `json:",omitzero"`

	// MsgAgentQuery / MsgAgentResp
	FromLSN   LSN   `json:",omitzero"`
	FromEpoch Epoch `json:",omitzero"`
	Down      bool  `json:",omitzero"`
	Fenced    bool  `json:",omitzero"`
	FullLog   bool  `json:",omitzero"`

	// MsgSetNoFailover, MsgMemberStatus
	Flag bool `json:",omitzero"`
	Up   bool `json:",omitzero"`
	// MsgSetAlignment
	Alignment Alignment `json:",omitzero"`
}

func (m Message) String() string {
	s := fmt.Sprintf("%s %s->%s e=%d", m.Type, m.From, m.To, m.Epoch)
	switch m.Type {
	case MsgAppend:
		s += fmt.Sprintf(" prev=(%d,%d) n=%d commit=%d mode=%v/%d", m.PrevLSN, m.PrevEpoch, len(m.Entries), m.Commit, m.Mode, m.ModeSeq)
		if m.JournalGone {
			s += " journal-gone"
		}
	case MsgAppendResp:
		s += fmt.Sprintf(" match=%d reject=%v hint=%d", m.Match, m.Reject, m.Hint)
	case MsgArbiterReq:
		s += fmt.Sprintf(" op=%v seen=%v lsn=%d", m.Op, m.Seen, m.LSN)
	case MsgArbiterResp:
		s += fmt.Sprintf(" op=%v seen=%v ok=%v rec=%v sess=%d reseed=%v", m.Op, m.Seen, m.OK, m.Record, m.Session, m.Reseed)
	case MsgAgentQuery:
		s += fmt.Sprintf(" from=(%d,%d)", m.FromLSN, m.FromEpoch)
	case MsgAgentResp:
		s += fmt.Sprintf(" down=%v fenced=%v n=%d full=%v base=(%d,%d)", m.Down, m.Fenced, len(m.Entries), m.FullLog, m.PrevLSN, m.PrevEpoch)
	case MsgHandover:
		s += fmt.Sprintf(" lsn=%d", m.LSN)
	}
	return s
}
