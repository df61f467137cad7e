package failover

import (
	"fmt"
	"slices"
)

// MemberConfig configures a Member core. Timeouts are in ticks.
type MemberConfig struct {
	ID        ID
	Peer      ID   // the other failover member (for an async: unused)
	PeerAgent ID   // the agent on the peer's host
	Arbiter   ID   // the arbiter
	Asyncs    []ID // async members the primary ships the journal to
	Failover  []ID // async only: the two failover members it accepts the journal from
	Async     bool // this member is an async (never primary, acks never count)
	// Promotable: async only, a dr member. An operator may force-promote it
	// when the failover pair is gone (DESIGN §3); it then is a primary with
	// no failover partner, shipping to Asyncs (the tier's other asyncs).
	// A reporting async is never promoted.
	Promotable bool

	QoS       Tick // missing acks/heartbeats for longer than this = lost
	Heartbeat Tick // primary heartbeat and arbiter ping interval
	Retry     Tick // resend interval for arbiter / agent requests
	MaxBatch  int  // max entries per append (0 = 64)

	// Mutations: TEST ONLY deliberate bugs (zero value = correct).
	Mutations *Mutations
}

func (c MemberConfig) withDefaults() MemberConfig {
	if c.QoS == 0 {
		c.QoS = 10
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 2
	}
	if c.Retry == 0 {
		c.Retry = 3
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 64
	}
	if c.Mutations == nil {
		c.Mutations = &Mutations{}
	}
	return c
}

// pendingReq is the member's current arbiter request. The member acts only on
// an answer whose (Op, Seen) match it.
type pendingReq struct {
	op     ArbiterOp
	seen   Version
	lsn    LSN
	sentAt Tick
	epoch  Epoch // OpPromoteDR: the highest epoch the operator's tool found
	tries  int   // OpPromoteDR: requests sent
}

// drAskTries bounds a dr member's OpPromoteDR requests: an arbiter that
// answers none of them is taken to be gone too.
const drAskTries = 10

// Member is the deterministic core of one mirror member (failover member in
// primary or backup role, or an async). It holds the journal as the core
// sees it (log) and its durable HardState; everything else is volatile and
// rebuilt after a restart.
type Member struct {
	cfg  MemberConfig
	hs   HardState
	base Base    // the journal starts after base.LSN (purged, or re-seeded there)
	log  []Entry // log[i] has LSN base.LSN+i+1; mirrors the durable journal once Ready is persisted
	now  Tick

	// volatile
	status            Status
	commit            LSN
	match             LSN // backup's durable match in our epoch
	next              LSN // next LSN to send to the backup
	asyncMatch        []LSN
	asyncNext         []LSN  // next LSN to send to each async (a window beyond asyncMatch)
	asyncHeard        []Tick // when each async last answered an append
	asyncGone         []bool // primary: this async needs records we purged (it needs a rebuild)
	peerGone          bool   // primary: the backup needs records we purged
	lastBackupAck     Tick
	lastPrimaryMsg    Tick
	lastArbiter       Tick
	lastHeartbeat     Tick
	peerArbiter       bool
	troubleSince      Tick
	aloneConsent      bool // may commit without the backup's acks
	pending           *pendingReq
	agentModeSeq      uint64 // primary: ModeSeq proposed for agent mode (0 = none)
	draining          bool
	resyncing         bool // restarted primary: takes no writes until it holds its backup's tail (see ShipsEarly)
	handoverLSN       LSN
	handoverSentAt    Tick
	agentQueryAt      Tick
	agentQuerySent    bool
	primaryLast       LSN
	primarySaysActive bool // backup: the primary's last append said our acks count
	dropped           LSN  // entries up to here have had their Data dropped (DropData)
	align             Alignment
	counters          Counters
	started           Tick

	rd Ready
}

// NewMember restarts a member from its durable state: hs, the journal's
// base (zero for a journal that starts at LSN 1; after a purge or a re-seed,
// the last LSN no longer held and its epoch) and the durable journal entries
// after it (base.LSN+1..n). Volatile state starts empty; a primary starts
// in-trouble until the backup acks or the arbiter consents again.
func NewMember(cfg MemberConfig, hs HardState, base Base, journal []Entry, now Tick) *Member {
	cfg = cfg.withDefaults()
	m := &Member{cfg: cfg, hs: hs, base: base, now: now, started: now,
		lastBackupAck: now, lastPrimaryMsg: now, lastArbiter: now - cfg.QoS - 1,
		align: Alignment{Aligned: true}}
	m.log = append([]Entry(nil), journal...)
	m.dropped = base.LSN
	m.asyncMatch = make([]LSN, len(cfg.Asyncs))
	m.asyncNext = make([]LSN, len(cfg.Asyncs))
	m.asyncHeard = make([]Tick, len(cfg.Asyncs))
	for i := range m.asyncHeard {
		m.asyncHeard[i] = now
	}
	m.asyncGone = make([]bool, len(cfg.Asyncs))
	m.next = m.lastLSN() + 1
	m.hs.Losses = append([]DataLoss(nil), hs.Losses...)
	if cfg.Async {
		if cfg.Promotable && m.hs.Role == RolePrimary {
			m.cfg.Async = false // a dr member promoted before this restart stays primary
		} else {
			m.hs.Role = RoleAsync
		}
	}
	m.troubleSince = now
	if m.hs.Role == RolePrimary && !m.hs.Fenced && !m.hs.SteppedDown && !m.hs.BackupActive && m.hs.Mode == ModeAgent {
		// the backup has promised (durably) to take over only through our agent
		m.aloneConsent = true
	}
	if m.hs.Fenced && m.hs.Asked.Valid && m.hs.Asked.Reopen {
		// fenced (by our agent, or stated gone by an operator who then
		// promoted the backup) before we learned whether the arbiter
		// granted our new epoch: the claim is given up with the role
		m.hs.Asked = TakeoverAsk{}
		m.persist()
	}
	if m.actingPrimary() && !m.cfg.Async && m.cfg.Peer != "" && m.hs.BackupActive && !cfg.Mutations.NoResync {
		// it may have shipped records it had not made durable (ShipsEarly)
		m.resyncing = true
		m.hs.Restarts++
		m.persist() // before the first append carries it
	}
	m.status = m.computeStatus()
	return m
}

// Accessors (read-only views for shells, tests and the simulation).

func (m *Member) ID() ID { return m.cfg.ID }
func (m *Member) HardState() HardState {
	hs := m.hs
	hs.Losses = append([]DataLoss(nil), m.hs.Losses...)
	return hs
}
func (m *Member) Status() Status { return m.status }
func (m *Member) Epoch() Epoch   { return m.hs.Epoch }
func (m *Member) LastLSN() LSN   { return m.lastLSN() }
func (m *Member) Commit() LSN    { return m.commit }

// DropData forgets the Data of entries up to upTo, keeping their epochs,
// LSNs and markers. The shell calls it for records durable in its journal,
// so the core's memory does not grow with the journal; entries it sends
// later without Data are filled in from the journal by the shell.
func (m *Member) DropData(upTo LSN) {
	for l := max(m.dropped, m.base.LSN) + 1; l <= min(upTo, m.lastLSN()); l++ {
		m.log[l-m.base.LSN-1].Data = nil
	}
	m.dropped = max(m.dropped, min(upTo, m.lastLSN()))
}

// PrimaryLast is, on a backup, the primary's last LSN as its latest append
// reported it: how far the primary's journal went, as far as this member
// knows (the bound of a forced promotion's loss).
func (m *Member) PrimaryLast() LSN     { return m.primaryLast }
func (m *Member) Counters() Counters   { return m.counters }
func (m *Member) Journal() []Entry     { return append([]Entry(nil), m.log...) }
func (m *Member) Base() Base           { return m.base }
func (m *Member) IsPrimary() bool      { return m.actingPrimary() }
func (m *Member) Alignment() Alignment { return m.align }

func (m *Member) lastLSN() LSN { return m.base.LSN + LSN(len(m.log)) }

// Transfer is the state of journal shipping between the failover pair as
// this member measures it (DESIGN §3 "journal transfer"): Status is
// active (the backup's acks count toward commits), caught-up (it has
// everything, its acks do not count yet), behind (Behind records short) or
// disconnected (nothing heard for longer than the QoS). An async is
// caught-up, behind or disconnected, never active. Empty on a member that
// is neither primary, backup nor async.
type Transfer struct {
	Status string
	Behind LSN
}

// Transfer measures journal shipping now.
func (m *Member) Transfer() Transfer {
	switch {
	case m.cfg.Async:
		// an async is never active: its acks never count toward a commit
		behind := m.primaryLast - min(m.primaryLast, m.lastLSN())
		switch {
		case m.now-m.lastPrimaryMsg > m.cfg.QoS:
			return Transfer{Status: "disconnected", Behind: behind}
		case behind > 0:
			return Transfer{Status: "behind", Behind: behind}
		}
		return Transfer{Status: "caught-up"}
	case m.actingPrimary():
		behind := m.lastLSN() - min(m.match, m.lastLSN())
		switch {
		case m.now-m.lastBackupAck > m.cfg.QoS:
			return Transfer{Status: "disconnected", Behind: behind}
		case m.hs.BackupActive:
			return Transfer{Status: "active", Behind: behind}
		case behind > 0:
			return Transfer{Status: "behind", Behind: behind}
		}
		return Transfer{Status: "caught-up"}
	case m.hs.Role == RoleBackup:
		behind := m.primaryLast - min(m.primaryLast, m.lastLSN())
		switch {
		case m.now-m.lastPrimaryMsg > m.cfg.QoS:
			return Transfer{Status: "disconnected", Behind: behind}
		case m.primarySaysActive:
			return Transfer{Status: "active", Behind: behind}
		case behind > 0:
			return Transfer{Status: "behind", Behind: behind}
		}
		return Transfer{Status: "caught-up"}
	}
	return Transfer{}
}

// epochAt is the epoch of the record at l: 0 for l == 0, beyond the
// journal, or below its base (purged: unknown).
func (m *Member) epochAt(l LSN) Epoch {
	switch {
	case l == 0 || l > m.lastLSN() || l < m.base.LSN:
		return 0
	case l == m.base.LSN:
		return m.base.Epoch
	}
	return m.log[l-m.base.LSN-1].Epoch
}

// ShipsEarly: the shell may send this Ready's appends to the failover
// peer before the Ready's entries are durable here, overlapping the two
// fsyncs. Only while the backup is active (durably: the hard state that
// ends it is saved only after every record queued before it is durable, so
// a primary restarted with BackupActive false holds every record its
// backup holds of its epoch) and not while resyncing. A Commit shipped
// early must not exceed what is durable here: the shell lowers it.
//
// The danger is a primary that restarts without records its backup
// already holds, then writes other records at those LSNs of the same
// epoch. A restarted primary whose backup was active therefore takes no
// writes until it has the backup's records of its epoch (Resync), or,
// with the backup silent, opens a new epoch of its own: recorded at the
// arbiter (OpReopen), or in agent-controlled mode after 2×QoS, where the
// backup promised to take over only through our agent, which fences us
// and reports our epoch from disk first.
func (m *Member) ShipsEarly() bool {
	return m.actingPrimary() && m.hs.BackupActive && !m.resyncing && m.cfg.Peer != "" && !m.cfg.Async
}

// TakesWrites: the shell may accept client writes (after the last LSN).
func (m *Member) TakesWrites() bool { return m.actingPrimary() && !m.resyncing }

// actingPrimary: durable role primary, not fenced, not stepped down.
func (m *Member) actingPrimary() bool {
	return m.hs.Role == RolePrimary && !m.hs.Fenced && !m.hs.SteppedDown && !m.hs.NeedsRebuild
}

func (m *Member) take() Ready {
	m.status = m.computeStatus()
	rd := m.rd
	m.rd = Ready{}
	return rd
}

func (m *Member) persist() {
	hs := m.hs
	hs.Losses = append([]DataLoss(nil), m.hs.Losses...)
	m.rd.HardState = &hs
}

func (m *Member) send(msg Message) {
	msg.From = m.cfg.ID
	if msg.Type == MsgArbiterReq {
		msg.Session = m.hs.ArbiterSession
	}
	if msg.Epoch == 0 {
		msg.Epoch = m.hs.Epoch
	}
	m.rd.Messages = append(m.rd.Messages, msg)
}

func (m *Member) act(a Action) { m.rd.Actions = append(m.rd.Actions, a) }

func (m *Member) event(kind, format string, args ...any) {
	m.rd.Events = append(m.rd.Events, Event{Kind: kind, Detail: fmt.Sprintf(format, args...)})
}

func (m *Member) appendEntries(es ...Entry) {
	m.log = append(m.log, es...)
	m.rd.Entries = append(m.rd.Entries, es...)
}

func (m *Member) truncate(after LSN, quarantine bool) {
	if after >= m.lastLSN() {
		return
	}
	if after < m.base.LSN {
		// the callers check first; a fork below the base cannot be bridged
		m.needsRebuild("journal would have to be cut back to %d, below its base %d", after, m.base.LSN)
		return
	}
	if quarantine {
		m.event("quarantine", "records %d..%d moved to quarantine", after+1, m.lastLSN())
	}
	m.log = m.log[:after-m.base.LSN]
	m.dropped = min(m.dropped, after)
	// entries appended earlier in this Ready beyond `after` are dropped too
	kept := m.rd.Entries[:0]
	for _, e := range m.rd.Entries {
		if e.LSN <= after {
			kept = append(kept, e)
		}
	}
	m.rd.Entries = kept
	if m.rd.Truncate == nil || m.rd.Truncate.After > after {
		m.rd.Truncate = &Truncate{After: after, Quarantine: quarantine}
	}
	if m.commit > after {
		m.commit = after
	}
	if m.match > after {
		m.match = after
	}
}

// replacedByDR: a failover member whose arbiter record of its epoch (or a
// later one) names a primary outside the pair — a dr member was promoted.
// It never takes over again and says it is waiting.
func (m *Member) replacedByDR() bool {
	k := m.hs.Known
	return !m.cfg.Async && k.Version.Epoch >= m.hs.Epoch && k.Primary != "" && k.Primary != m.cfg.ID && k.Primary != m.cfg.Peer
}

func (m *Member) computeStatus() Status {
	switch {
	case m.hs.NeedsRebuild:
		return StatusNeedsRebuild
	case m.cfg.Async:
		return StatusAsync
	case m.hs.Role == RolePrimary && m.hs.Fenced:
		return StatusWaiting
	case m.hs.Role == RolePrimary && (m.hs.SteppedDown || m.draining):
		return StatusTransition
	case m.hs.Role == RolePrimary:
		if m.resyncing || m.inTrouble() {
			return StatusInTrouble
		}
		return StatusPrimary
	case m.replacedByDR():
		return StatusWaiting
	}
	return StatusBackup
}

// inTrouble: the primary may not commit on its own authority and has no
// recent acks from an active backup.
func (m *Member) inTrouble() bool {
	if !m.actingPrimary() {
		return false
	}
	if m.hs.BackupActive {
		return m.now-m.lastBackupAck > m.cfg.QoS
	}
	return !m.aloneConsent || m.pending != nil && m.pending.op == OpBackupActive
}

// Step feeds one message to the core.
func (m *Member) Step(msg Message) Ready {
	if msg.Type == MsgInvalid || msg.Type >= msgTypeEnd {
		m.counters.UnknownType++
		m.event("reject", "unknown message type %d from %s", msg.Type, msg.From)
		return m.take()
	}
	before := m.status
	switch msg.Type {
	case MsgPropose:
		m.onPropose(msg)
	case MsgAppend:
		m.onAppend(msg)
	case MsgAppendResp:
		m.onAppendResp(msg)
	case MsgArbiterResp:
		m.onArbiterResp(msg)
	case MsgAgentResp:
		m.onAgentResp(msg)
	case MsgHandover:
		m.onHandover(msg)
	case MsgSetNoFailover, MsgPlannedFailover, MsgForcePromote, MsgSetAlignment:
		m.onOperator(msg)
	default:
		m.counters.UnknownType++
		m.event("reject", "message type %v not handled by a member (from %s)", msg.Type, msg.From)
		return m.take()
	}
	m.afterChange(before)
	return m.take()
}

// Tick advances the core's notion of time to now and runs its timers.
func (m *Member) Tick(now Tick) Ready {
	if now > m.now {
		m.now = now
	}
	before := m.status
	if !m.cfg.Async {
		if m.actingPrimary() {
			m.tickPrimary()
		} else if m.hs.Role == RolePrimary && m.hs.SteppedDown {
			m.tickSteppedDown()
		} else {
			m.tickBackup()
		}
	} else if p := m.pending; p != nil && p.op == OpPromoteDR && m.now-p.sentAt >= m.cfg.Retry {
		if p.tries >= drAskTries {
			// the arbiter does not answer: the operator's statement that the
			// failover pair is gone is the only authority left (DESIGN §3)
			m.pending = nil
			m.event("dr-promotion", "the arbiter did not answer %d requests: promoted on the operator's statement", p.tries)
			m.forcePromote(max(m.hs.Epoch, m.hs.Known.Version.Epoch, p.epoch) + 1)
		} else {
			m.askDR()
		}
	}
	m.afterChange(before)
	return m.take()
}

// afterChange advances the commit point and emits Stop/StartCommitting on
// in-trouble transitions.
func (m *Member) afterChange(before Status) {
	if m.actingPrimary() {
		m.advanceCommit()
	}
	after := m.computeStatus()
	if before != StatusInTrouble && after == StatusInTrouble {
		m.troubleSince = m.now
		m.act(Action{Kind: ActStopCommitting, Epoch: m.hs.Epoch})
		m.event("in-trouble", "epoch %d: backup acks missing, may not commit", m.hs.Epoch)
	} else if before == StatusInTrouble && after == StatusPrimary {
		m.act(Action{Kind: ActStartCommitting, Epoch: m.hs.Epoch})
		m.event("commit-resumed", "epoch %d", m.hs.Epoch)
	}
	m.status = after
}

// ---------------------------------------------------------------- primary

func (m *Member) onPropose(msg Message) {
	if !m.actingPrimary() || m.draining || m.resyncing {
		m.act(Action{Kind: ActRejectWrite, Epoch: m.hs.Epoch})
		return
	}
	e := Entry{Epoch: m.hs.Epoch, LSN: m.lastLSN() + 1, Data: append([]byte(nil), msg.Data...)}
	m.appendEntries(e)
	m.sendAppends(false)
}

// canCommitAlone: no backup ack needed. Never while a CAS that would record
// the backup active (OpBackupActive, OpArbiterMode) may still be applied.
func (m *Member) canCommitAlone() bool {
	return m.actingPrimary() && !m.hs.BackupActive && m.aloneConsent &&
		(m.pending == nil || (m.pending.op != OpBackupActive && m.pending.op != OpArbiterMode))
}

func (m *Member) advanceCommit() {
	c := m.commit
	switch {
	case m.cfg.Mutations.AckBeforeBackup:
		c = m.lastLSN() // MUTATION (a)
	case m.canCommitAlone():
		c = m.lastLSN()
	case m.match > c:
		c = m.match
	}
	if c > m.lastLSN() {
		c = m.lastLSN()
	}
	if c > m.commit {
		m.commit = c
		m.act(Action{Kind: ActAckClients, Epoch: m.hs.Epoch, UpTo: c})
	}
}

// maxInFlight bounds the append batches shipped to the backup at once.
const maxInFlight = 16

func (m *Member) sendAppends(heartbeat bool) {
	if heartbeat {
		m.next = m.match + 1
	}
	if m.cfg.Peer != "" && (m.next <= m.lastLSN() || heartbeat) {
		// Ship up to maxInFlight batches; next follows what was really sent,
		// so a backlog longer than MaxBatch is not skipped until the next
		// heartbeat (the rest goes with the next append or heartbeat).
		for i := 0; i < maxInFlight; i++ {
			msg := m.appendFor(m.cfg.Peer, m.next)
			m.send(msg)
			m.next = msg.PrevLSN + LSN(len(msg.Entries)) + 1
			if m.next > m.lastLSN() {
				break
			}
		}
	}
	for i := range m.cfg.Asyncs {
		m.sendAsync(i, heartbeat)
	}
	if heartbeat {
		m.lastHeartbeat = m.now
	}
}

// sendAsync ships the journal to async i. A heartbeat resends one batch
// from what the async last acknowledged (a probe: an async that is down
// costs one batch per heartbeat); otherwise batches are sent while fewer
// than maxInFlight batches' worth of records are unacknowledged, so an
// async that answers catches up at the speed of its acks, not one batch
// per heartbeat.
func (m *Member) sendAsync(i int, heartbeat bool) {
	a, match := m.cfg.Asyncs[i], m.asyncMatch[i]
	if heartbeat || m.asyncNext[i] <= match {
		m.asyncNext[i] = match + 1
	}
	window := LSN(maxInFlight * m.cfg.MaxBatch)
	for n := 0; n < maxInFlight; n++ {
		next := m.asyncNext[i]
		if (next > m.lastLSN() || next-match-1 >= window) && !(heartbeat && n == 0) {
			return
		}
		msg := m.appendFor(a, next)
		m.send(msg)
		m.asyncNext[i] = msg.PrevLSN + LSN(len(msg.Entries)) + 1
		if heartbeat {
			return
		}
	}
}

func (m *Member) appendFor(to ID, from LSN) Message {
	if from <= m.base.LSN {
		from = m.base.LSN + 1 // the earliest we can still send; the peer says if that is too late
	}
	if from > m.lastLSN()+1 {
		from = m.lastLSN() + 1
	}
	prev := from - 1
	end := m.lastLSN()
	if int(end-prev) > m.cfg.MaxBatch {
		end = prev + LSN(m.cfg.MaxBatch)
	}
	es := append([]Entry(nil), m.log[prev-m.base.LSN:end-m.base.LSN]...)
	mode, seq := m.hs.Mode, m.hs.ModeSeq
	if m.agentModeSeq > seq {
		mode, seq = ModeAgent, m.agentModeSeq
	}
	return Message{Type: MsgAppend, To: to, PrevLSN: prev, PrevEpoch: m.epochAt(prev), Entries: es,
		Commit: m.commit, LastLSN: m.lastLSN(), Mode: mode, ModeSeq: seq, BackupActive: m.hs.BackupActive,
		Resync: m.resyncing && to == m.cfg.Peer, Restarts: m.hs.Restarts}
}

func (m *Member) onAppendResp(msg Message) {
	fromPeer := msg.From == m.cfg.Peer
	ai := -1
	for i, a := range m.cfg.Asyncs {
		if a == msg.From {
			ai = i
		}
	}
	if !fromPeer && ai < 0 {
		m.counters.Forged++
		m.event("reject", "append response from non-member %s", msg.From)
		return
	}
	if msg.Epoch > m.hs.Epoch {
		m.adoptEpoch(msg.Epoch, "append response")
		return
	}
	if msg.Epoch < m.hs.Epoch {
		m.counters.StaleEpoch++
		return
	}
	if !m.actingPrimary() {
		return
	}
	if ai >= 0 {
		m.asyncHeard[ai] = m.now
		if msg.Reject {
			m.asyncMatch[ai] = msg.Hint
			m.asyncNext[ai] = msg.Hint + 1
			if msg.Hint < m.base.LSN {
				// it needs records we purged
				if !m.asyncGone[ai] {
					m.asyncGone[ai] = true
					m.event("peer-needs-rebuild", "async %s needs records after %d; the journal here starts after %d: it needs a rebuild", msg.From, msg.Hint, m.base.LSN)
				}
				m.sendJournalGone(msg.From)
			}
		} else {
			if msg.Match > m.asyncMatch[ai] && msg.Match <= m.lastLSN() {
				m.asyncMatch[ai] = msg.Match
			}
			m.asyncGone[ai] = false
		}
		if !m.asyncGone[ai] {
			m.sendAsync(ai, false) // refill the window (a gone async hears again at the heartbeat)
		}
		return
	}
	if msg.Restarts != m.hs.Restarts && !m.cfg.Mutations.NoRestartsEcho {
		m.counters.StaleEpoch++
		return // answers an append from before our last restart
	}
	m.lastBackupAck = m.now
	m.peerArbiter = msg.ArbiterContact
	if msg.Reject {
		if msg.Hint < m.match {
			m.match = msg.Hint
		}
		if msg.Hint < m.base.LSN {
			if !m.peerGone {
				m.peerGone = true
				m.event("peer-needs-rebuild", "backup %s needs records after %d; the journal here starts after %d: it needs a rebuild", msg.From, msg.Hint, m.base.LSN)
			}
			m.sendJournalGone(msg.From)
			return
		}
		m.next = msg.Hint + 1
		m.send(m.appendFor(m.cfg.Peer, m.next))
		m.next = m.lastLSN() + 1
		return
	}
	if msg.Match > m.match && msg.Match <= m.lastLSN() {
		m.match = msg.Match
	}
	m.peerGone = false
	if m.resyncing && msg.Resync && msg.Match == m.lastLSN() {
		m.takeResync(msg.Entries)
	}
	// entering agent mode: the backup has persisted its promise
	if m.agentModeSeq != 0 && msg.Mode == ModeAgent && msg.ModeSeq == m.agentModeSeq {
		m.hs.Mode, m.hs.ModeSeq = ModeAgent, m.agentModeSeq
		m.agentModeSeq = 0
		m.persist()
		m.event("mode", "epoch %d: agent-controlled (backup promised)", m.hs.Epoch)
	}
}

// takeResync: the backup holds entries up to our last LSN and sent what it
// holds after it of our epoch. Take them (they are records this primary
// shipped before it restarted) and ask for more; none left: take writes.
func (m *Member) takeResync(es []Entry) {
	n := 0
	for n < len(es) && es[n].Epoch == m.hs.Epoch && es[n].LSN == m.lastLSN()+LSN(n)+1 {
		n++
	}
	if n > 0 {
		m.appendEntries(es[:n]...)
		m.event("resync", "epoch %d: took %d records the backup held after our journal; now ends at %d", m.hs.Epoch, n, m.lastLSN())
		m.next = m.lastLSN() + 1
		m.send(m.appendFor(m.cfg.Peer, m.next))
		return
	}
	m.resyncing = false
	m.act(Action{Kind: ActResumeWrites, Epoch: m.hs.Epoch, UpTo: m.lastLSN()})
	m.event("resynced", "epoch %d: the backup holds nothing after LSN %d; taking writes", m.hs.Epoch, m.lastLSN())
}

func (m *Member) arbiterContact() bool { return m.now-m.lastArbiter <= m.cfg.QoS }

// sendJournalGone tells a peer that the records it needs were purged here:
// an empty append from our base, flagged. The peer decides: if its journal
// reaches our base in the same history (a late or duplicated answer made us
// think otherwise), it carries on; if not, it needs a rebuild.
func (m *Member) sendJournalGone(to ID) {
	msg := m.appendFor(to, m.base.LSN+1)
	msg.Entries = nil
	msg.JournalGone = true
	m.send(msg)
}

// PurgeableUpTo is the highest LSN this member may purge from its journal
// now (DESIGN §3 "Journal purge"). On the acting primary: what is committed,
// durably held by the backup, and by every async not in released (the
// shell's decision: asyncs disconnected longer than the retention, or
// holding more than the size cap, stop holding the journal). Elsewhere: what
// the primary confirmed committed and this member holds. A member that needs
// a rebuild purges nothing. Never below the current base.
func (m *Member) PurgeableUpTo(released []ID) LSN {
	if m.hs.NeedsRebuild {
		return m.base.LSN
	}
	up := min(m.commit, m.lastLSN())
	if m.actingPrimary() {
		if m.cfg.Peer != "" {
			up = min(up, m.match)
		}
		for i, a := range m.cfg.Asyncs {
			if !slices.Contains(released, a) {
				up = min(up, m.asyncMatch[i])
			}
		}
	}
	return max(up, m.base.LSN)
}

// Purged tells the core that the shell removed the journal's records up to
// upTo (no more than PurgeableUpTo(released) allowed): the core forgets them
// and its journal starts after upTo. Asyncs in released that still needed
// them are reported as needing a rebuild. A purge beyond what is allowed is
// refused (an event, no change).
func (m *Member) Purged(upTo LSN, released []ID) Ready {
	if upTo <= m.base.LSN {
		return m.take()
	}
	if allowed := m.PurgeableUpTo(released); upTo > allowed {
		m.event("reject", "purge up to %d refused: only %d may be purged", upTo, allowed)
		return m.take()
	}
	nb := Base{LSN: upTo, Epoch: m.epochAt(upTo)}
	m.log = slices.Clone(m.log[upTo-m.base.LSN:]) // a fresh array: the purged entries' memory goes
	m.base = nb
	m.dropped = max(m.dropped, upTo)
	m.next = max(m.next, upTo+1)
	m.event("purge", "journal now starts after %d (epoch %d)", upTo, m.base.Epoch)
	if m.actingPrimary() {
		for i, a := range m.cfg.Asyncs {
			if slices.Contains(released, a) && m.asyncMatch[i] < upTo && !m.asyncGone[i] {
				m.asyncGone[i] = true
				m.event("peer-needs-rebuild", "async %s released (it held LSN %d); the journal here now starts after %d: it needs a rebuild", a, m.asyncMatch[i], upTo)
			}
		}
	}
	return m.take()
}

// PeersNeedingRebuild lists, on the primary, the members that need records
// purged here: they answered from below our base, or were released while
// they still needed what the last purge removed.
func (m *Member) PeersNeedingRebuild() []ID {
	var out []ID
	if m.peerGone {
		out = append(out, m.cfg.Peer)
	}
	for i, a := range m.cfg.Asyncs {
		if m.asyncGone[i] {
			out = append(out, a)
		}
	}
	return out
}

// AsyncsHeard says when each async last answered an append (the tick), for
// the shell's retention decision; asyncs never heard since this core
// started count from its start.
func (m *Member) AsyncsHeard() map[ID]Tick {
	out := make(map[ID]Tick, len(m.cfg.Asyncs))
	for i, a := range m.cfg.Asyncs {
		out[a] = m.asyncHeard[i]
	}
	return out
}

// AsyncMatch is, on the primary, each async's durable match as last
// reported (0 = unknown since this core started).
func (m *Member) AsyncMatch() map[ID]LSN {
	out := make(map[ID]LSN, len(m.cfg.Asyncs))
	for i, a := range m.cfg.Asyncs {
		out[a] = m.asyncMatch[i]
	}
	return out
}

// needsRebuild records, durably, that this member cannot continue its
// journal: it acknowledges nothing, never takes over and serves no reads
// until it is re-seeded.
func (m *Member) needsRebuild(format string, args ...any) {
	if m.hs.NeedsRebuild {
		return
	}
	m.hs.NeedsRebuild = true
	m.persist()
	m.event("needs-rebuild", format, args...)
}

func (m *Member) ask(op ArbiterOp, lsn LSN) {
	m.pending = &pendingReq{op: op, seen: m.hs.Known.Version, lsn: lsn, sentAt: m.now}
	m.sendAsk()
}

// resendAsk sends the persisted ask (HardState.Asked: a takeover, or a
// reopen) again, exactly as first sent.
func (m *Member) resendAsk() {
	a := m.hs.Asked
	op := OpTakeover
	if a.Reopen {
		op = OpReopen
	}
	m.pending = &pendingReq{op: op, seen: a.At, lsn: a.LSN}
	m.sendAsk()
}

func (m *Member) sendAsk() {
	p := m.pending
	p.sentAt = m.now
	m.send(Message{Type: MsgArbiterReq, To: m.cfg.Arbiter, Op: p.op, Seen: p.seen, LSN: p.lsn, Known: m.hs.Known})
}

func (m *Member) tickPrimary() {
	if m.now-m.lastHeartbeat >= m.cfg.Heartbeat {
		m.sendAppends(true)
		if m.pending == nil && m.cfg.Peer != "" { // a promoted dr member has no pair for the arbiter to judge
			m.send(Message{Type: MsgArbiterReq, To: m.cfg.Arbiter, Op: OpRead, Known: m.hs.Known})
		}
	}
	if m.pending != nil && m.now-m.pending.sentAt >= m.cfg.Retry {
		m.sendAsk()
	}
	backupOK := m.now-m.lastBackupAck <= m.cfg.QoS
	caughtUp := backupOK && m.match >= m.lastLSN()

	if m.hs.BackupActive {
		if !backupOK && m.resyncing {
			m.reopen()
		} else if !backupOK {
			if m.hs.Mode == ModeArbiter {
				// ask the arbiter to record "backup no longer active at epoch e"
				if m.pending == nil || m.pending.op != OpBackupInactive {
					m.ask(OpBackupInactive, 0)
					m.event("ask", "epoch %d: backup no longer active (CAS on %v)", m.hs.Epoch, m.hs.Known.Version)
				}
			} else if m.now-m.lastBackupAck >= 2*m.cfg.QoS {
				// agent-controlled: the backup promised to use only our agent.
				// Abandon a pending "arbiter-controlled, backup active" CAS: its
				// answer is no longer acted on (the backup keeps its promise
				// because we never announce arbiter mode for it).
				if m.pending != nil && m.pending.op == OpArbiterMode {
					m.pending = nil
				}
				m.hs.BackupActive = false
				m.aloneConsent = true
				m.persist()
				m.event("alone", "epoch %d: agent-controlled, 2xQoS elapsed, continuing alone", m.hs.Epoch)
			}
		} else if m.hs.Mode == ModeArbiter && m.agentModeSeq == 0 && (!m.arbiterContact() || !m.peerArbiter) && m.now-m.started > m.cfg.QoS {
			// lost the arbiter (or the backup did) but keep the backup: ask for the promise
			m.agentModeSeq = m.hs.ModeSeq + 1
			m.event("mode", "epoch %d: requesting agent-controlled mode", m.hs.Epoch)
			m.send(m.appendFor(m.cfg.Peer, m.match+1))
		} else if m.hs.Mode == ModeAgent && m.arbiterContact() && m.peerArbiter && caughtUp && m.pending == nil {
			m.ask(OpArbiterMode, 0)
		}
	} else {
		if !m.aloneConsent && m.pending == nil && m.hs.Mode == ModeArbiter {
			// restarted (or consent unknown): burn any in-flight request with a fresh CAS
			m.ask(OpBackupInactive, 0)
		}
		if caughtUp && m.pending == nil && !m.draining {
			if m.hs.Mode == ModeArbiter {
				if m.arbiterContact() {
					m.ask(OpBackupActive, 0)
				}
			} else {
				m.hs.BackupActive = true
				m.aloneConsent = false
				m.persist()
				m.event("backup-active", "epoch %d: agent-controlled, backup active again", m.hs.Epoch)
			}
		}
	}
	if a := m.hs.Asked; a.Valid && a.Reopen && m.pending == nil && !m.resyncing {
		// a new epoch asked for while resyncing, its answer lost: learn it
		// (granted, we move to it; refused, the ask is dropped) before any
		// other epoch is made here (a handover)
		m.resendAsk()
	}
	if m.draining && caughtUp && m.commit >= m.lastLSN() && m.pending == nil && !m.hs.Asked.Valid {
		// planned handover: everything is on the backup and committed
		m.hs.SteppedDown = true
		m.handoverLSN = m.lastLSN()
		m.persist()
		m.act(Action{Kind: ActStopCommitting, Epoch: m.hs.Epoch})
		m.event("handover", "epoch %d: drained at %d, stepping down", m.hs.Epoch, m.handoverLSN)
		if m.hs.Mode == ModeArbiter {
			m.ask(OpHandover, m.handoverLSN)
		} else {
			m.sendHandover()
		}
	}
}

// reopen: restarted, resyncing, and the backup is silent beyond the QoS.
// Writing on in this epoch could reuse LSNs the backup holds other records
// at; a new epoch cannot. Arbiter-controlled: the arbiter records it
// (OpReopen, a CAS like every other decision). Agent-controlled: after
// 2×QoS, on our own authority, as the pair would go alone (the backup
// takes over only through our agent, which reads our epoch from disk).
func (m *Member) reopen() {
	if m.hs.Mode == ModeArbiter {
		if m.pending != nil && m.pending.op == OpReopen {
			return // asked; tickPrimary resends it
		}
		if a := m.hs.Asked; a.Valid && a.Reopen && a.Epoch == m.hs.Epoch {
			// asked before a restart, its answer unknown: the arbiter may
			// have granted it, so ask exactly that again — a new ask (a
			// later LSN, after writes made once a resync ended) would be
			// refused, and the grant never recognised as ours: both members
			// backups of an epoch whose primary never starts (found by the
			// simulation, with messages held across a restart)
			m.resendAsk()
			return
		}
		// durable before the request leaves, as a takeover's: the agent
		// then reports the next epoch if it fences us (FenceEpoch), and
		// a grant learned only after a demotion is still ours
		m.hs.Asked = TakeoverAsk{Valid: true, At: m.hs.Known.Version, Epoch: m.hs.Epoch, LSN: m.lastLSN(), Reopen: true}
		m.persist()
		m.ask(OpReopen, m.lastLSN())
		m.event("ask", "epoch %d: restarted without the backup: new epoch requested at %v after LSN %d", m.hs.Epoch, m.hs.Known.Version, m.lastLSN())
		return
	}
	if m.now-m.lastBackupAck >= 2*m.cfg.QoS {
		m.pending = nil
		m.resyncing = false
		m.promote(m.hs.Epoch+1, PromoteReopen, ModeAgent, false)
	}
}

func (m *Member) sendHandover() {
	m.handoverSentAt = m.now
	m.send(Message{Type: MsgHandover, To: m.cfg.Peer, LSN: m.handoverLSN, Mode: m.hs.Mode})
}

func (m *Member) tickSteppedDown() {
	if m.now-m.lastHeartbeat >= m.cfg.Heartbeat {
		m.lastHeartbeat = m.now
		m.send(Message{Type: MsgArbiterReq, To: m.cfg.Arbiter, Op: OpRead, Known: m.hs.Known})
	}
	if m.handoverLSN == 0 {
		m.handoverLSN = m.lastLSN()
	}
	if m.pending != nil {
		if m.now-m.pending.sentAt >= m.cfg.Retry {
			m.sendAsk()
		}
		return
	}
	if m.hs.Mode == ModeArbiter && !(m.hs.Known.Version.Epoch == m.hs.Epoch+1 && m.hs.Known.Primary == m.cfg.Peer) {
		m.ask(OpHandover, m.handoverLSN)
		return
	}
	if m.now-m.handoverSentAt >= m.cfg.Retry {
		m.sendHandover()
	}
}

// --------------------------------------------------------------- backup

func (m *Member) onAppend(msg Message) {
	if m.cfg.Async {
		ok := false
		for _, f := range m.cfg.Failover {
			ok = ok || f == msg.From
		}
		if !ok {
			m.counters.Forged++
			return
		}
	} else if msg.From != m.cfg.Peer {
		m.counters.Forged++
		m.event("reject", "append from %s, not the peer", msg.From)
		return
	}
	if msg.Epoch < m.hs.Epoch {
		m.counters.StaleEpoch++
		m.send(Message{Type: MsgAppendResp, To: msg.From, Reject: true})
		return
	}
	if msg.Epoch == m.hs.Epoch && m.actingPrimary() {
		// two primaries in one epoch cannot happen: the sender forged its role
		m.counters.Forged++
		m.event("reject", "append from %s claiming primary in our epoch %d", msg.From, msg.Epoch)
		return
	}
	if msg.Epoch == m.hs.Epoch && m.hs.Role == RolePrimary {
		return // stepped down or fenced in this epoch: wait for the next
	}
	if msg.Epoch > m.hs.Epoch {
		m.adoptEpoch(msg.Epoch, "append")
		m.hs.Mode, m.hs.ModeSeq = msg.Mode, msg.ModeSeq
		m.persist()
	}
	if msg.Restarts < m.hs.PeerRestarts {
		m.counters.StaleEpoch++
		return // from before the primary's last restart
	}
	if msg.Restarts > m.hs.PeerRestarts {
		m.hs.PeerRestarts = msg.Restarts
		m.persist()
	}
	if m.hs.Asked.Valid && m.hs.Asked.Epoch == msg.Epoch && !m.cfg.Mutations.AckAfterTakeoverAsk {
		return // asked for takeover: acknowledge nothing of the old epoch
	}
	m.lastPrimaryMsg = m.now
	m.agentQuerySent = false
	m.primaryLast = msg.LastLSN
	m.primarySaysActive = msg.BackupActive
	if m.hs.Fenced && !m.cfg.Async {
		// the primary of our epoch is talking to us: the fence did its job
		m.hs.Fenced = false
		m.persist()
	}
	if m.hs.NeedsRebuild {
		return // acknowledges nothing until re-seeded
	}
	if msg.PrevLSN < m.base.LSN {
		// we purged past where this append starts: skip what we no longer
		// hold, checking the record at our base
		skip := m.base.LSN - msg.PrevLSN
		if LSN(len(msg.Entries)) < skip {
			if msg.LastLSN < m.base.LSN && msg.Epoch == m.base.Epoch {
				// a stale append, delivered late: the primary of our base's
				// epoch wrote the records we purged, and its journal never
				// shrinks within its epoch (found by the simulation, seed
				// 1877 once asyncs were shipped a window of batches)
				return
			}
			if msg.LastLSN < m.base.LSN {
				// what we purged was committed in a history the primary's
				// journal does not reach (a forced promotion lost it)
				m.needsRebuild("the primary's journal ends at %d, before our journal's base %d", msg.LastLSN, m.base.LSN)
				return
			}
			// it does not reach our base: ask for what follows (the walk
			// back from there checks our tail, down to the base)
			m.send(Message{Type: MsgAppendResp, To: msg.From, Mode: m.hs.Mode, ModeSeq: m.hs.ModeSeq,
				ArbiterContact: m.arbiterContact(), Reject: true, Hint: min(m.lastLSN(), msg.LastLSN)})
			return
		}
		if msg.Entries[skip-1].Epoch != m.base.Epoch {
			m.needsRebuild("the primary's history differs at LSN %d, our journal's base", m.base.LSN)
			return
		}
		msg.Entries = msg.Entries[skip:]
		msg.PrevLSN, msg.PrevEpoch = m.base.LSN, m.base.Epoch
	}
	if msg.JournalGone && (msg.PrevLSN > m.lastLSN() || m.epochAt(msg.PrevLSN) != msg.PrevEpoch) {
		m.needsRebuild("the primary's journal starts after LSN %d (epoch %d); ours ends at %d: the records between were purged", msg.PrevLSN, msg.PrevEpoch, m.lastLSN())
		return
	}
	if msg.ModeSeq > m.hs.ModeSeq && !m.cfg.Async {
		// entering agent mode: persist the promise before confirming (same Ready)
		m.hs.Mode, m.hs.ModeSeq = msg.Mode, msg.ModeSeq
		m.persist()
		m.event("mode", "epoch %d: %v (seq %d)", m.hs.Epoch, msg.Mode, msg.ModeSeq)
	}
	resp := Message{Type: MsgAppendResp, To: msg.From, Mode: m.hs.Mode, ModeSeq: m.hs.ModeSeq, ArbiterContact: m.arbiterContact(), Restarts: msg.Restarts}
	if msg.PrevLSN > m.lastLSN() || m.epochAt(msg.PrevLSN) != msg.PrevEpoch {
		resp.Reject = true
		resp.Hint = min(m.lastLSN(), msg.PrevLSN-1)
		if msg.PrevLSN == 0 {
			resp.Hint = 0
		}
		m.send(resp)
		return
	}
	for i, e := range msg.Entries {
		if e.LSN <= m.lastLSN() {
			if m.epochAt(e.LSN) == e.Epoch {
				continue
			}
			m.truncate(e.LSN-1, true) // fork: our tail was never acknowledged
		}
		m.appendEntries(msg.Entries[i:]...)
		break
	}
	resp.Match = msg.PrevLSN + LSN(len(msg.Entries))
	if c := min(msg.Commit, resp.Match); c > m.commit {
		m.commit = c // known committed in this history (bounds a forced promotion's loss)
	}
	if msg.Resync && !m.cfg.Async {
		// the primary restarted: send what we hold of its epoch after what
		// it has (records it shipped before it made them durable)
		resp.Resync = true
		for l := resp.Match + 1; l <= m.lastLSN() && len(resp.Entries) < m.cfg.MaxBatch; l++ {
			e := m.log[l-m.base.LSN-1]
			if e.Epoch != msg.Epoch {
				break
			}
			resp.Entries = append(resp.Entries, e)
		}
	}
	m.send(resp)
}

// adoptEpoch: a higher epoch exists. A former primary never acts as primary
// again; it waits for the new primary as backup.
func (m *Member) adoptEpoch(e Epoch, via string) {
	wasPrimary := m.actingPrimary() || m.hs.Role == RolePrimary
	m.hs.Epoch = e
	if !m.cfg.Async {
		m.hs.Role = RoleBackup
	}
	if a := m.hs.Asked; !(a.Valid && a.Reopen && e == a.Epoch+1) {
		m.hs.Asked = TakeoverAsk{} // a reopen ask survives the epoch it may have created
	}
	m.hs.SteppedDown = false
	m.hs.Fenced = false
	m.hs.BackupActive = false
	m.hs.Restarts, m.hs.PeerRestarts = 0, 0
	// until the new primary's first append says otherwise (its seq is >= 1),
	// keep the conservative promise: take over only through the agent
	m.hs.Mode, m.hs.ModeSeq = ModeAgent, 0
	m.persist()
	m.pending = nil
	m.agentModeSeq = 0
	m.draining = false
	m.resyncing = false // a primary again only in a later epoch: nothing of this one to take back
	m.aloneConsent = false
	m.commit, m.match = 0, 0
	m.lastPrimaryMsg = m.now
	if wasPrimary {
		m.act(Action{Kind: ActDemote, Epoch: e})
		m.event("demote", "saw epoch %d via %s: rejoining as backup", e, via)
	}
}

func (m *Member) tickBackup() {
	if m.now-m.lastHeartbeat >= m.cfg.Heartbeat {
		m.lastHeartbeat = m.now
		m.send(Message{Type: MsgArbiterReq, To: m.cfg.Arbiter, Op: OpRead, Known: m.hs.Known})
	}
	if m.pending != nil && m.now-m.pending.sentAt >= m.cfg.Retry {
		m.sendAsk()
	}
	if m.hs.Asked.Valid && m.pending == nil && !m.hs.Fenced {
		m.resendAsk() // restarted with an outstanding ask
	}
	if m.now-m.lastPrimaryMsg <= m.cfg.QoS || m.hs.Role == RolePrimary {
		return
	}
	if m.hs.NoFailover || m.hs.NeedsRebuild {
		return
	}
	if !m.align.Aligned {
		if m.now-m.agentQueryAt >= m.cfg.Retry {
			m.agentQueryAt = m.now
			m.event("takeover-refused", "policy gate: %v", m.align.Reasons)
		}
		return
	}
	k := m.hs.Known
	if m.replacedByDR() {
		return // this pair is out of the tier until an operator rebuilds it
	}
	// a fenced member (forced down by its agent, or stated gone by an
	// operator) never completes an arbiter grant; only fence+tail remains
	arbiterPath := !m.hs.Fenced && m.hs.Mode == ModeArbiter && m.arbiterContact() && k.Version.Epoch == m.hs.Epoch &&
		k.Backup == m.cfg.ID && k.Primary == m.cfg.Peer && k.BackupActive
	if arbiterPath && !m.hs.Asked.Valid {
		m.hs.Asked = TakeoverAsk{Valid: true, At: k.Version, Epoch: m.hs.Epoch, LSN: m.lastLSN()}
		m.persist() // durable before the request leaves; from now on no acks for this epoch
		m.pending = &pendingReq{op: OpTakeover, seen: k.Version, lsn: m.lastLSN()}
		m.sendAsk()
		m.event("ask", "epoch %d: takeover requested at %v after LSN %d", m.hs.Epoch, k.Version, m.lastLSN())
		return
	}
	// agent path: the primary's agent must fence it and hand over its journal tail
	if !m.agentQuerySent || m.now-m.agentQueryAt >= m.cfg.Retry {
		m.agentQuerySent = true
		m.agentQueryAt = m.now
		m.send(Message{Type: MsgAgentQuery, To: m.cfg.PeerAgent, FromLSN: m.lastLSN(), FromEpoch: m.epochAt(m.lastLSN())})
	}
}

func (m *Member) onAgentResp(msg Message) {
	if msg.From != m.cfg.PeerAgent || m.cfg.Async {
		m.counters.Forged++
		m.event("reject", "agent response from %s, not the peer's agent", msg.From)
		return
	}
	if m.hs.Role == RolePrimary || m.now-m.lastPrimaryMsg <= m.cfg.QoS || m.hs.NoFailover || !m.align.Aligned || m.hs.NeedsRebuild {
		return
	}
	if !msg.Down || !msg.Fenced {
		return // agent says the primary is running: no takeover
	}
	if msg.FromLSN != m.lastLSN() || msg.FromEpoch != m.epochAt(m.lastLSN()) {
		// An answer to an older query: when it fences, the agent answers
		// every query still pending, also one a failed fence left behind
		// (perhaps from before this member last restarted). The tail after
		// that point would cut back records taken since — committed ones,
		// which the store may have applied (found by the fault suite: a
		// query from LSN 1852 answered after the member had applied 9280).
		// Ask again: the agent fences again and answers from here.
		return
	}
	// msg.Epoch is the fenced peer's epoch on disk; if it is ahead of ours,
	// its journal is still the newest history: fenced + tail is the authority.
	if !m.cfg.Mutations.NonActiveTakeover {
		if msg.FullLog {
			// the peer's whole journal, after its base (PrevLSN, PrevEpoch):
			// it must continue ours at the later of the two bases
			k := max(msg.PrevLSN, m.base.LSN)
			peerEpoch := msg.PrevEpoch
			if k > msg.PrevLSN {
				if i := int(k - msg.PrevLSN - 1); i < len(msg.Entries) {
					peerEpoch = msg.Entries[i].Epoch
				} else {
					peerEpoch = 0
				}
			}
			if k > m.lastLSN() || (k > 0 && peerEpoch != m.epochAt(k)) {
				m.event("takeover-refused", "the fenced peer's journal (after %d) does not continue ours (base %d, last %d): not a complete history", msg.PrevLSN, m.base.LSN, m.lastLSN())
				return
			}
			// Keep what both journals hold: the records up to the last LSN
			// at which both have the same epoch are the same records (one
			// primary per epoch writes them in order). Cutting back further,
			// to the base, would cut records the store may have applied.
			// When the peer's journal ends there, ours continues it: keep
			// ours whole (the peer lost what it had shipped to us).
			peerLast := msg.PrevLSN + LSN(len(msg.Entries))
			fork := k
			for l := min(m.lastLSN(), peerLast); l > k; l-- {
				if msg.Entries[l-msg.PrevLSN-1].Epoch == m.epochAt(l) {
					fork = l
					break
				}
			}
			if fork < peerLast {
				m.truncate(fork, true)
				m.appendEntries(msg.Entries[fork-msg.PrevLSN:]...)
			}
			m.event("agent-tail", "the fenced peer's journal after LSN %d received from %s (fenced, epoch %d): %d records after the fork point %d taken; journal now ends at %d",
				msg.PrevLSN, msg.From, msg.Epoch, peerLast-min(fork, peerLast), fork, m.lastLSN())
		} else {
			if msg.FromLSN > m.lastLSN() || m.epochAt(msg.FromLSN) != msg.FromEpoch {
				return // tail does not fit our journal any more; ask again
			}
			m.truncate(msg.FromLSN, true)
			m.appendEntries(msg.Entries...)
			m.event("agent-tail", "%d records after LSN %d received from %s (fenced, epoch %d); journal now ends at %d",
				len(msg.Entries), msg.FromLSN, msg.From, msg.Epoch, m.lastLSN())
		}
	}
	ne := max(m.hs.Epoch, msg.Epoch) + 1
	m.promote(ne, PromoteAgent, ModeAgent, false)
}

// promote makes this member primary in epoch ne; the epoch marker opens it.
func (m *Member) promote(ne Epoch, why PromoteReason, mode Mode, backupActive bool) {
	prevEnd := m.lastLSN()
	m.hs.Epoch = ne
	m.hs.Role = RolePrimary
	m.hs.Mode = mode
	m.hs.ModeSeq = 1 // every mode a primary announces has seq >= 1 (see adoptEpoch)
	m.hs.BackupActive = backupActive
	m.hs.Asked = TakeoverAsk{}
	m.hs.SteppedDown = false
	m.hs.Fenced = false
	m.hs.Restarts, m.hs.PeerRestarts = 0, 0
	m.persist()
	m.appendEntries(Entry{Epoch: ne, LSN: prevEnd + 1, Marker: true, PrevEnd: prevEnd})
	m.pending = nil
	m.resyncing = false
	m.agentModeSeq = 0
	m.aloneConsent = !backupActive
	m.commit, m.match = 0, 0
	m.next = prevEnd + 1
	m.lastBackupAck = m.now
	m.lastHeartbeat = m.now - m.cfg.Heartbeat
	for i := range m.asyncMatch {
		m.asyncMatch[i], m.asyncNext[i] = 0, 0
	}
	m.act(Action{Kind: ActPromote, Epoch: ne, Reason: why, UpTo: prevEnd})
	m.event("promote", "epoch %d by %v, previous epoch ends at %d", ne, why, prevEnd)
	m.sendAppends(true)
}

func (m *Member) onHandover(msg Message) {
	if msg.From != m.cfg.Peer || m.cfg.Async {
		m.counters.Forged++
		return
	}
	if msg.Epoch < m.hs.Epoch {
		m.counters.StaleEpoch++
		return
	}
	if msg.Epoch > m.hs.Epoch || m.hs.Role != RoleBackup || m.hs.NeedsRebuild {
		return
	}
	if m.lastLSN() < msg.LSN || m.epochAt(msg.LSN) != msg.Epoch && msg.LSN > 0 {
		return // we do not have everything yet; the primary retries
	}
	m.truncate(msg.LSN, true)
	// the new primary takes the pair's mode from the old primary (recorded at
	// the arbiter when arbiter-controlled)
	m.promote(m.hs.Epoch+1, PromoteHandover, msg.Mode, true)
}

// --------------------------------------------------------------- arbiter answers

func (m *Member) onArbiterResp(msg Message) {
	if msg.From == m.cfg.Arbiter && m.cfg.Async && m.cfg.Promotable {
		m.onDRArbiterResp(msg)
		return
	}
	if msg.From != m.cfg.Arbiter || m.cfg.Async {
		m.counters.Forged++
		m.event("reject", "arbiter response from %s", msg.From)
		return
	}
	if msg.Reseed {
		// the arbiter lost its disk: raise our session (durably, before the
		// report leaves) so no answer it gave before can be acted on any more
		if msg.Session == m.hs.ArbiterSession {
			m.hs.ArbiterSession++
			m.persist()
			m.send(Message{Type: MsgArbiterReq, To: m.cfg.Arbiter, Op: OpReport, Known: m.hs.Known})
			m.event("arbiter-reseed", "reported %v, session %d", m.hs.Known, m.hs.ArbiterSession)
		}
		return
	}
	if msg.Session != m.hs.ArbiterSession {
		return // an answer from an older session: possibly forgotten by the arbiter
	}
	m.lastArbiter = m.now
	rec := msg.Record
	if m.hs.Known.Version.Less(rec.Version) {
		m.hs.Known = rec
		m.persist()
	}
	cur := m.pending != nil && msg.Op == m.pending.op && msg.Seen == m.pending.seen
	if a := m.hs.Asked; a.Valid && a.Reopen && rec.Version.Epoch == a.Epoch+1 && rec.Primary == m.cfg.ID && rec.ForkLSN == a.LSN &&
		!m.hs.Fenced && !m.hs.NeedsRebuild && (m.actingPrimary() && m.hs.Epoch == a.Epoch || m.hs.Role == RoleBackup && m.hs.Epoch == a.Epoch+1) {
		// our OpReopen, recorded at the arbiter — also when it answers a
		// request still on its way when the resync ended (we may have
		// written since: the new epoch starts after all of it), or when the
		// backup told us of the epoch first (nobody else is its primary:
		// a takeover through our agent starts after FenceEpoch)
		m.pending = nil
		m.resyncing = false
		m.hs.Known = rec
		m.promote(rec.Version.Epoch, PromoteReopen, ModeArbiter, false)
		return
	}
	if rec.Version.Epoch > m.hs.Epoch {
		if rec.Primary == m.cfg.ID {
			a := m.hs.Asked
			if a.Valid && !a.Reopen && rec.Version.Epoch == a.Epoch+1 && rec.ForkLSN == a.LSN && m.hs.Role == RoleBackup && !m.hs.Fenced && !m.hs.NeedsRebuild && a.LSN >= m.base.LSN {
				// our grant, recorded at the arbiter first
				m.truncate(a.LSN, true)
				m.hs.Known = rec
				m.promote(rec.Version.Epoch, PromoteGrant, ModeArbiter, rec.BackupActive)
			}
			return // a handover naming us: we promote on the primary's MsgHandover
		}
		if m.hs.Role == RolePrimary && m.hs.SteppedDown && rec.Version.Epoch == m.hs.Epoch+1 && rec.Primary == m.cfg.Peer {
			if cur && msg.Op == OpHandover {
				m.pending = nil
				m.sendHandover()
			}
			return
		}
		m.adoptEpoch(rec.Version.Epoch, "arbiter record")
		return
	}
	if a := m.hs.Asked; a.Valid && a.At.Less(rec.Version) && (rec.Primary != m.cfg.ID || a.Reopen && rec.Version.Epoch == a.Epoch) {
		// the record moved past our request: it can never be granted
		m.hs.Asked = TakeoverAsk{}
		m.persist()
		if m.pending != nil && m.pending.op == OpTakeover {
			m.pending = nil
		}
		m.event("takeover-abandoned", "record moved to %v", rec.Version)
	}
	if !cur || m.pending == nil {
		return
	}
	p := m.pending
	mine := rec.Version.Epoch == m.hs.Epoch && rec.Primary == m.cfg.ID
	switch p.op {
	case OpBackupInactive:
		if msg.OK || (mine && !rec.BackupActive && p.seen.Less(rec.Version)) {
			m.pending = nil
			m.hs.BackupActive = false
			m.persist()
			m.aloneConsent = true
			m.event("alone", "epoch %d: arbiter recorded backup not active at %v", m.hs.Epoch, rec.Version)
		} else if mine {
			m.pending = nil
			if m.hs.BackupActive || !m.aloneConsent {
				m.ask(OpBackupInactive, 0) // retry on the version we now know
			}
		}
	case OpBackupActive:
		m.pending = nil
		if msg.OK || (mine && rec.BackupActive && p.seen.Less(rec.Version)) {
			m.hs.BackupActive = true
			m.aloneConsent = false
			m.persist()
			m.event("backup-active", "epoch %d: arbiter recorded backup active again at %v", m.hs.Epoch, rec.Version)
		}
	case OpArbiterMode:
		m.pending = nil
		if msg.OK && m.hs.BackupActive {
			m.hs.Mode = ModeArbiter
			m.hs.ModeSeq++
			m.hs.BackupActive = true
			m.aloneConsent = false
			m.persist()
			m.event("mode", "epoch %d: arbiter-controlled again at %v", m.hs.Epoch, rec.Version)
			m.send(m.appendFor(m.cfg.Peer, m.match+1))
		}
	case OpHandover:
		m.pending = nil
		if !msg.OK && mine {
			m.ask(OpHandover, p.lsn)
		}
	case OpTakeover:
		if !msg.OK && p.seen.Less(rec.Version) {
			m.pending = nil
		}
	case OpReopen:
		m.pending = nil // refused: the next tick asks again on the version we now know
	}
}

// --------------------------------------------------------------- operator

func (m *Member) onOperator(msg Message) {
	if msg.From != OperatorID {
		m.counters.Forged++
		m.event("reject", "operator command %v from %s", msg.Type, msg.From)
		return
	}
	switch msg.Type {
	case MsgSetNoFailover:
		m.hs.NoFailover = msg.Flag
		m.persist()
		m.event("no-failover", "%v", msg.Flag)
	case MsgSetAlignment:
		m.align = Alignment{Aligned: msg.Alignment.Aligned, Reasons: append([]string(nil), msg.Alignment.Reasons...)}
	case MsgPlannedFailover:
		if m.actingPrimary() && !m.draining {
			m.draining = true
			m.event("drain", "epoch %d: planned failover requested", m.hs.Epoch)
		}
	case MsgForcePromote:
		if (m.cfg.Async && !m.cfg.Promotable) || m.hs.Role == RolePrimary {
			m.event("refuse", "forced promotion of %s: only a backup or a dr member can be promoted", m.cfg.ID)
			return
		}
		if m.cfg.Async {
			// a dr member: recorded at the arbiter first when it answers
			// (askDR, onDRArbiterResp); on the operator's word alone when it
			// does not (Tick)
			if m.pending == nil {
				m.pending = &pendingReq{op: OpPromoteDR, seen: m.hs.Known.Version, lsn: m.lastLSN(), epoch: msg.Epoch}
				m.askDR()
			}
			return
		}
		if m.hs.NeedsRebuild {
			m.event("force-promote-refused", "this member needs a rebuild: its journal cannot continue the tier's history")
			return
		}
		// msg.Epoch: the highest epoch the operator's tool found in the tier
		// (arbiter record, every reachable member and agent); epochs must not repeat
		m.forcePromote(max(m.hs.Epoch, m.hs.Known.Version.Epoch, msg.Epoch) + 1)
	}
}

// forcePromote makes this backup or dr member primary of epoch ne on the
// operator's authority, recording what may be lost: everything after what
// it knows to be committed, up to the last LSN the primary reported.
func (m *Member) forcePromote(ne Epoch) {
	why := PromoteForced
	if m.cfg.Async {
		// a dr member: from now on a primary without a failover partner
		m.cfg.Async = false
		why = PromoteDR
	}
	loss := DataLoss{Epoch: ne, From: m.commit + 1, To: max(m.primaryLast, m.lastLSN()), By: OperatorID}
	m.hs.Losses = append(m.hs.Losses, loss)
	m.event("data-loss", "forced promotion to epoch %d: records %d..%d may be lost", ne, loss.From, loss.To)
	m.promote(ne, why, ModeAgent, false)
}

// askDR sends a dr member's OpPromoteDR: a compare-and-set on the record
// version it last saw, in an epoch at least the tier's.
func (m *Member) askDR() {
	p := m.pending
	p.sentAt = m.now
	p.tries++
	m.send(Message{Type: MsgArbiterReq, To: m.cfg.Arbiter, Op: OpPromoteDR, Seen: p.seen, LSN: p.lsn,
		Epoch: max(m.hs.Epoch, m.hs.Known.Version.Epoch, p.epoch), Known: m.hs.Known})
}

// onDRArbiterResp: the arbiter's answer to a dr member. It promotes only
// when the record names it primary of a higher epoch after exactly its
// last LSN (its own request, recorded); a refusal on a version it had not
// seen is retried once on that version, any other refusal ends the request.
func (m *Member) onDRArbiterResp(msg Message) {
	if msg.Reseed || msg.Session != m.hs.ArbiterSession {
		return
	}
	rec := msg.Record
	if m.hs.Known.Version.Less(rec.Version) {
		m.hs.Known = rec
		m.persist()
	}
	p := m.pending
	if p == nil || p.op != OpPromoteDR || msg.Op != OpPromoteDR {
		return
	}
	if rec.Primary == m.cfg.ID && rec.Version.Epoch > m.hs.Epoch && rec.ForkLSN == m.lastLSN() {
		m.pending = nil
		m.event("dr-promotion", "recorded at the arbiter: %v", rec)
		m.forcePromote(rec.Version.Epoch)
		return
	}
	if !msg.OK && p.seen != rec.Version && p.tries < 2 {
		p.seen = rec.Version
		m.askDR()
		return
	}
	m.pending = nil
	m.event("refuse", "dr promotion refused by the arbiter: record %v", rec)
}
