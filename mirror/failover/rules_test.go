package failover

import (
	"strings"
	"testing"
)

// One test per row of DESIGN §3 "Failover rules" (TestRuleNN_...). Each
// asserts the expected decision explicitly.

// Row 1: backup misses acks for longer than the QoS timeout.
func TestRule01_QoSTimeout_InTroubleUntilArbiterRecordsBackupInactive(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 3)
	base := tr.acked("A", 1)
	if base != 4 {
		tr.fatalf("setup: A acked %d, want 4", base)
	}
	tr.crash("B")
	tr.cut("arb", "A", false) // the arbiter's answers do not reach A yet
	mk := tr.mark()
	tr.write("A", "x1")
	tr.run(4 * tQoS)
	if got := tr.acked("A", 1); got != base {
		tr.fatalf("A acknowledged %d without the backup's ack or a recorded decision", got)
	}
	if len(tr.actionsSince(mk, "A", ActStopCommitting)) != 1 || tr.m("A").Status() != StatusInTrouble {
		tr.fatalf("A should be in-trouble after QoS, status %v", tr.m("A").Status())
	}
	if tr.arbDisk.Record.BackupActive {
		tr.fatalf("arbiter should have recorded backup not active: %v", tr.arbDisk.Record)
	}
	tr.heal()
	tr.run(2 * tQoS)
	if got := tr.acked("A", 1); got != base+1 {
		tr.fatalf("once recorded and answered A must commit alone: acked %d want %d", got, base+1)
	}
	if tr.disk["A"].BackupActive || tr.m("A").Status() != StatusPrimary {
		tr.fatalf("A hard state should say backup inactive, status primary: %+v %v", tr.disk["A"], tr.m("A").Status())
	}
	// "backup active again": once B has caught up, recorded at the arbiter (CAS)
	tr.restart("B")
	tr.run(3 * tQoS)
	if !tr.arbDisk.Record.BackupActive || !tr.disk["A"].BackupActive || !tr.hasData("B", "x1") {
		tr.fatalf("backup active again should be recorded: rec %v A %+v", tr.arbDisk.Record, tr.disk["A"])
	}
	// from now on commits need B's acks again
	tr.crash("B")
	tr.cut("arb", "A", false)
	base = tr.acked("A", 1)
	tr.write("A", "x2")
	tr.run(3 * tQoS)
	if tr.acked("A", 1) != base {
		tr.fatalf("with the backup active again A committed without its ack")
	}
}

// Row 1, last clause: not recorded if the backup was already granted a takeover.
func TestRule01b_ArbiterRefusesBackupInactiveAfterGrant(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 2)
	tr.isolate("A")
	tr.run(3 * tQoS)
	if tr.arbDisk.Record.Version.Epoch != 2 || tr.arbDisk.Record.Primary != "B" {
		tr.fatalf("setup: B should have been granted epoch 2: %v", tr.arbDisk.Record)
	}
	before := tr.acked("A", 1)
	tr.cuts = map[[2]string]bool{{"A", "B"}: true, {"B", "A"}: true} // A reaches the arbiter again, not B
	tr.run(2 * tQoS)
	if tr.arbDisk.Record.Version.Epoch != 2 || tr.arbDisk.Record.Primary != "B" {
		tr.fatalf("arbiter record changed after the grant: %v", tr.arbDisk.Record)
	}
	if tr.acked("A", 1) != before {
		tr.fatalf("A committed after the grant")
	}
	if tr.disk["A"].Role != RoleBackup || tr.disk["A"].Epoch != 2 || len(tr.actions("A", ActDemote)) != 1 {
		tr.fatalf("A must learn epoch 2 from the refusal and demote: %+v", tr.disk["A"])
	}
}

// Row 2: primary loses the arbiter, keeps the backup -> agent-controlled mode,
// then 2xQoS alone when the backup is lost too, and back to arbiter mode.
func TestRule02_PrimaryLosesArbiter_AgentModeThen2xQoSThenArbiterModeAgain(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 2)
	tr.cut("A", "arb", true)
	tr.run(3 * tQoS)
	tr.steady("y", 2)
	if tr.disk["B"].Mode != ModeAgent || tr.disk["A"].Mode != ModeAgent {
		tr.fatalf("pair should be agent-controlled: A=%v B=%v", tr.disk["A"].Mode, tr.disk["B"].Mode)
	}
	iB := strings.Index(tr.dump(), "B event mode")
	iA := strings.Index(tr.dump(), "A event mode: epoch 1: agent-controlled (backup promised)")
	if iB < 0 || iA < 0 || iB > iA {
		tr.fatalf("backup must persist its promise before the primary switches (B at %d, A at %d)", iB, iA)
	}
	if tr.acked("A", 1) < LSN(len(tr.journal["A"])) {
		tr.fatalf("A must keep committing with the backup's acks")
	}
	// lose the backup too: wait 2xQoS, then continue alone
	tr.crash("B")
	base := tr.acked("A", 1)
	tr.write("A", "z")
	tr.run(tQoS + tQoS/2)
	if tr.acked("A", 1) != base {
		tr.fatalf("A acknowledged before 2xQoS")
	}
	tr.run(tQoS)
	if tr.acked("A", 1) != base+1 {
		tr.fatalf("after 2xQoS in agent mode A must continue alone: acked %d", tr.acked("A", 1))
	}
	// arbiter back, backup back: arbiter-controlled again, recorded at the arbiter first
	tr.restart("B")
	tr.heal()
	tr.run(6 * tQoS)
	if tr.disk["A"].Mode != ModeArbiter || tr.disk["B"].Mode != ModeArbiter {
		tr.fatalf("pair should be arbiter-controlled again: A=%v B=%v", tr.disk["A"].Mode, tr.disk["B"].Mode)
	}
	r := tr.arbDisk.Record
	if !r.BackupActive || r.Mode != ModeArbiter || r.Primary != "A" {
		tr.fatalf("arbiter should record arbiter-controlled, backup active: %v", r)
	}
	d := tr.dump()
	iArb := strings.Index(d, "arb event decision: arbiter-controlled, backup active")
	iA2 := strings.Index(d, "A event mode: epoch 1: arbiter-controlled again")
	iB2 := strings.LastIndex(d, "B event mode: epoch 1: arbiter-controlled")
	if !(iArb >= 0 && iArb < iA2 && iA2 < iB2) {
		tr.fatalf("leaving agent mode must go arbiter, then primary, then backup (%d %d %d)", iArb, iA2, iB2)
	}
}

// Row 3: primary loses backup and arbiter in arbiter-controlled mode.
func TestRule03_PrimaryLosesBackupAndArbiter_InTroubleIndefinitely(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 2)
	base := tr.acked("A", 1)
	tr.isolate("A")
	tr.write("A", "x")
	tr.run(30 * tQoS)
	if tr.acked("A", 1) != base {
		tr.fatalf("isolated primary committed: %d > %d", tr.acked("A", 1), base)
	}
	if tr.m("A").Status() != StatusInTrouble {
		tr.fatalf("A status %v, want in-trouble", tr.m("A").Status())
	}
}

// Row 4: active backup, arbiter mode, both backup and arbiter lost the primary.
func TestRule04_BackupTakesOverWithArbiterGrant(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 3)
	acked := tr.acked("A", 1)
	tr.isolate("A")
	tr.run(4 * tQoS)
	p := tr.actions("B", ActPromote)
	if len(p) != 1 || p[0].Epoch != 2 || p[0].Reason != PromoteGrant {
		tr.fatalf("B should be promoted to epoch 2 by arbiter grant: %v", p)
	}
	r := tr.arbDisk.Record
	if r.Version != (Version{2, 0}) || r.Primary != "B" || r.ForkLSN != acked {
		tr.fatalf("grant must be recorded durably at the arbiter: %v", r)
	}
	if tr.disk["B"].Epoch != 2 || tr.disk["B"].Role != RolePrimary {
		tr.fatalf("B hard state: %+v", tr.disk["B"])
	}
	if LSN(len(tr.journal["B"])) < acked || !tr.hasData("B", "w2") {
		tr.fatalf("B lacks acknowledged writes")
	}
	tr.write("B", "after")
	tr.run(4)
	if tr.acked("B", 2) != LSN(len(tr.journal["B"])) {
		tr.fatalf("B should commit alone (grant records backup not active): %d", tr.acked("B", 2))
	}
}

// Row 5: active backup loses the primary while the arbiter still sees it.
func TestRule05_NoTakeoverWhileArbiterSeesPrimary(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 2)
	tr.cut("A", "B", true)
	tr.run(10 * tQoS)
	if len(tr.actions("B", ActPromote)) != 0 {
		tr.fatalf("B took over although the arbiter still saw the primary")
	}
	if tr.arbDisk.Record.Version.Epoch != 1 || tr.arbDisk.Record.Primary != "A" {
		tr.fatalf("the arbiter must not grant while it sees the primary: %v", tr.arbDisk.Record)
	}
	// and directly: the arbiter refuses a takeover while it still hears the primary
	a := NewArbiter(ArbiterConfig{ID: "arb", Members: [2]ID{"A", "B"}, QoS: tQoS}, ArbiterState{Seeded: true, Record: genesisRec}, 0)
	a.Tick(tQoS + 5)
	a.Step(Message{Type: MsgArbiterReq, From: "A", Epoch: 1, Op: OpRead})
	rd := a.Step(Message{Type: MsgArbiterReq, From: "B", Epoch: 1, Op: OpTakeover, Seen: genesisRec.Version, LSN: 3})
	if rd.ArbiterState != nil || len(rd.Messages) != 1 || rd.Messages[0].OK || a.State().Record != genesisRec {
		tr.fatalf("arbiter granted while it sees the primary: %+v", rd)
	}
	base := tr.acked("A", 1)
	tr.write("A", "alone")
	tr.run(4)
	if tr.acked("A", 1) != base+1 || tr.arbDisk.Record.BackupActive {
		tr.fatalf("A should continue alone once the arbiter recorded the backup not active")
	}
}

// Row 6: backup loses primary and arbiter: takeover only through the primary's
// agent (fence) and after retrieving the primary's journal tail.
func TestRule06_BackupLosesPrimaryAndArbiter_TakeoverViaAgentFenceAndTail(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 2)
	// the primary commits alone with the arbiter's consent; the backup does not know
	tr.cut("A", "B", false)
	tr.run(3 * tQoS)
	tr.steady("alone", 2)
	if !tr.hasData("A", "alone1") || tr.hasData("B", "alone1") || tr.acked("A", 1) != LSN(len(tr.journal["A"])) {
		tr.fatalf("setup: A should have committed alone1 without B")
	}
	tr.crash("arb")
	tr.crash("A") // process down, host and agent up
	tr.heal()
	tr.run(6 * tQoS)
	p := tr.actions("B", ActPromote)
	if len(p) != 1 || p[0].Reason != PromoteAgent || p[0].Epoch != 2 {
		tr.fatalf("B should take over via the agent: %v", p)
	}
	if len(tr.actions("agentA", ActFence)) == 0 || !tr.disk["A"].Fenced {
		tr.fatalf("A must be fenced before the takeover")
	}
	if !tr.hasData("B", "alone0") || !tr.hasData("B", "alone1") {
		tr.fatalf("B must retrieve A's journal tail before taking over")
	}
	// a fenced member restarts as waiting, never as primary
	tr.restart("A")
	tr.run(1)
	if tr.m("A").IsPrimary() || tr.m("A").Status() != StatusWaiting {
		tr.fatalf("fenced A restarted as %v", tr.m("A").Status())
	}
}

// Row 6, other half: the agent reports the primary running -> no takeover.
func TestRule06b_AgentSaysPrimaryRunning_NoTakeover(t *testing.T) {
	g := NewAgent(AgentConfig{ID: "agentA", Member: "A", Peer: "B"}, AgentState{})
	g.Step(Message{Type: MsgMemberStatus, From: "agentA", Up: true})
	rd := g.Step(Message{Type: MsgAgentQuery, From: "B", To: "agentA", FromLSN: 3, FromEpoch: 1})
	if len(rd.Actions) != 0 || len(rd.Messages) != 1 || rd.Messages[0].Down {
		t.Fatalf("agent must answer 'up' without fencing: %+v", rd)
	}
	// B lost the primary and the arbiter: it asks A's agent, which says "running"
	b := NewMember(MemberConfig{ID: "B", Peer: "A", PeerAgent: "agentA", Arbiter: "arb", QoS: tQoS},
		HardState{Epoch: 1, Role: RoleBackup, Known: genesisRec}, Base{}, []Entry{{Epoch: 1, LSN: 1, Marker: true}}, 0)
	var q []Message
	for now := Tick(1); now <= 2*tQoS; now++ {
		for _, m := range b.Tick(now).Messages {
			if m.Type == MsgAgentQuery {
				q = append(q, m)
			}
		}
	}
	if len(q) == 0 || q[0].To != "agentA" {
		t.Fatalf("B should ask A's agent: %v", q)
	}
	rd = b.Step(Message{Type: MsgAgentResp, From: "agentA", To: "B", Epoch: 1, Down: false})
	for _, a := range rd.Actions {
		if a.Kind == ActPromote {
			t.Fatalf("B promoted although the agent said the primary runs")
		}
	}
	if b.IsPrimary() || b.HardState().Epoch != 1 {
		t.Fatalf("B state changed: %+v", b.HardState())
	}
}

// An agent answers every query pending when it fences, also one left by
// an earlier failed fence: such an answer, for a point the member's
// journal has moved past, is ignored (its tail would cut back committed
// records the store may have applied); the answer to the current query is
// taken (found by the fault suite, seed 1).
func TestAgentAnswerToAnOlderQueryIsIgnored(t *testing.T) {
	entries := []Entry{{Epoch: 1, LSN: 1, Marker: true}}
	for l := LSN(2); l <= 5; l++ {
		entries = append(entries, Entry{Epoch: 1, LSN: l, Data: []byte("x")})
	}
	b := NewMember(MemberConfig{ID: "B", Peer: "A", PeerAgent: "agentA", Arbiter: "arb", QoS: tQoS},
		HardState{Epoch: 1, Role: RoleBackup, Known: genesisRec}, Base{}, entries, 0)
	for now := Tick(1); now <= 2*tQoS; now++ {
		b.Tick(now)
	}
	tail := func(from LSN) []Entry { return append([]Entry(nil), entries[from:]...) }
	// the answer to a query from LSN 2: B has taken 3..5 since
	rd := b.Step(Message{Type: MsgAgentResp, From: "agentA", To: "B", Epoch: 1, Down: true, Fenced: true,
		FromLSN: 2, FromEpoch: 1, Entries: tail(2)})
	if rd.Truncate != nil || b.IsPrimary() {
		t.Fatalf("an answer to an older query was taken: truncate %+v, primary %v", rd.Truncate, b.IsPrimary())
	}
	// the answer to the current query (from LSN 5) is taken
	rd = b.Step(Message{Type: MsgAgentResp, From: "agentA", To: "B", Epoch: 1, Down: true, Fenced: true,
		FromLSN: 5, FromEpoch: 1, Entries: []Entry{{Epoch: 1, LSN: 6, Data: []byte("y")}}})
	if rd.Truncate != nil || !b.IsPrimary() || b.HardState().Epoch != 2 || b.Base().LSN != 0 {
		t.Fatalf("the current answer was not taken: truncate %+v, primary %v, %+v", rd.Truncate, b.IsPrimary(), b.HardState())
	}
	var promoted bool
	for _, a := range rd.Actions {
		promoted = promoted || a.Kind == ActPromote && a.UpTo == 6
	}
	if !promoted {
		t.Fatalf("no promotion after LSN 6: %+v", rd.Actions)
	}
}

// Row 7: backup not active (behind) and primary fails.
func TestRule07_NonActiveBackup_TakesOverOnlyWithMissingJournal(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 2)
	tr.cut("A", "B", false)
	tr.run(3 * tQoS)
	tr.steady("alone", 3)
	if tr.arbDisk.Record.BackupActive {
		tr.fatalf("setup: backup should be recorded not active")
	}
	// primary host down (agent too): no way to get the journal -> wait
	tr.crash("A")
	tr.crash("agentA")
	tr.heal()
	tr.run(20 * tQoS)
	if len(tr.actions("B", ActPromote)) != 0 {
		tr.fatalf("a non-active backup took over without the missing journal")
	}
	if !strings.Contains(tr.dump(), "arb event refuse: takeover by B") && tr.disk["B"].Asked.Valid {
		tr.fatalf("arbiter must refuse a non-active backup")
	}
	// agent back: journal retrieved first, then takeover
	tr.restart("agentA")
	tr.run(4 * tQoS)
	p := tr.actions("B", ActPromote)
	if len(p) != 1 || p[0].Reason != PromoteAgent || !tr.hasData("B", "alone2") {
		tr.fatalf("B should take over via the agent with the missing journal: %v", p)
	}
}

// Row 7, forced: an operator forces the non-active backup; the decision with
// the exact LSN range is recorded durably before the promotion.
func TestRule07b_ForcedPromotionRecordsDataLoss(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 2)
	tr.cut("A", "B", false)
	tr.run(3 * tQoS)
	tr.steady("alone", 3) // LSN 4..6 on A only
	tr.crash("A")
	tr.crash("agentA")
	tr.heal()
	tr.run(3 * tQoS)
	bLast := LSN(len(tr.journal["B"]))
	tr.operator("B", Message{Type: MsgForcePromote})
	tr.run(1)
	p := tr.actions("B", ActPromote)
	if len(p) != 1 || p[0].Reason != PromoteForced {
		tr.fatalf("forced promotion expected: %v", p)
	}
	l := tr.disk["B"].Losses
	if len(l) != 1 || l[0].From != bLast+1 || l[0].Epoch != 2 || l[0].By != OperatorID {
		tr.fatalf("data-loss decision not recorded: %+v (B had %d)", l, bLast)
	}
	if !strings.Contains(tr.dump(), "data-loss") {
		tr.fatalf("data-loss event not reported")
	}
}

// Row 8: all three links lost.
func TestRule08_AllLinksLost_NobodyTakesOver(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 2)
	base := tr.acked("A", 1)
	tr.isolate("A")
	tr.isolate("B")
	tr.write("A", "x")
	tr.run(30 * tQoS)
	if len(tr.actions("B", ActPromote)) != 0 || tr.arbDisk.Record.Version.Epoch != 1 {
		tr.fatalf("somebody took over with all links lost")
	}
	if tr.acked("A", 1) != base || tr.m("A").Status() != StatusInTrouble {
		tr.fatalf("A must stay in-trouble: %v acked %d", tr.m("A").Status(), tr.acked("A", 1))
	}
}

// Row 9: the former primary comes back.
func TestRule09_FormerPrimaryRejoinsNeverActsAsPrimary(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 2)
	tr.isolate("A")
	tr.write("A", "unacked") // durable on A only, never acknowledged
	tr.run(4 * tQoS)
	if len(tr.actions("B", ActPromote)) != 1 {
		tr.fatalf("setup: B should have taken over")
	}
	tr.write("B", "new")
	tr.run(3)
	tr.heal()
	mk := tr.mark()
	tr.run(4 * tQoS)
	if len(tr.actionsSince(mk, "A", ActDemote)) != 1 || tr.disk["A"].Role != RoleBackup || tr.disk["A"].Epoch != 2 {
		tr.fatalf("A must demote on seeing epoch 2: %+v", tr.disk["A"])
	}
	if len(tr.actionsSince(mk, "A", ActAckClients)) != 0 || len(tr.actionsSince(mk, "A", ActPromote)) != 0 {
		tr.fatalf("former primary acted as primary")
	}
	if tr.hasData("A", "unacked") || !strings.Contains(tr.dump(), "A event quarantine") {
		tr.fatalf("A's unacknowledged tail must be quarantined")
	}
	if !tr.hasData("A", "new") || len(tr.journal["A"]) != len(tr.journal["B"]) {
		tr.fatalf("A should catch up as backup")
	}
	tr.write("A", "refused")
	tr.run(2)
	if len(tr.actionsSince(mk, "A", ActRejectWrite)) == 0 {
		tr.fatalf("writes to the former primary must be refused")
	}
}

// Row 10: planned failover.
func TestRule10_PlannedFailover_ZeroLossHandover(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 3)
	tr.write("A", "inflight")
	tr.operator("A", Message{Type: MsgPlannedFailover})
	tr.run(3 * tQoS)
	p := tr.actions("B", ActPromote)
	if len(p) != 1 || p[0].Reason != PromoteHandover || p[0].Epoch != 2 {
		tr.fatalf("B should take over by planned handover: %v", p)
	}
	r := tr.arbDisk.Record
	if r.Version.Epoch != 2 || r.Primary != "B" || r.Backup != "A" || !r.BackupActive {
		tr.fatalf("handover must be recorded at the arbiter: %v", r)
	}
	if tr.disk["A"].Role != RoleBackup || tr.disk["A"].Epoch != 2 {
		tr.fatalf("A should be backup in epoch 2: %+v", tr.disk["A"])
	}
	if !tr.hasData("B", "inflight") || tr.acked("A", 1) < 5 {
		tr.fatalf("every write acknowledged and on B before the handover (A acked %d)", tr.acked("A", 1))
	}
	tr.write("B", "after")
	tr.run(6)
	if tr.acked("B", 2) != LSN(len(tr.journal["B"])) || !tr.hasData("A", "after") {
		tr.fatalf("B commits with A's acks after the handover")
	}
}

// Row 11: "no failover" set by an operator.
func TestRule11_NoFailoverFlag_BlocksAutomaticTakeover(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.operator("B", Message{Type: MsgSetNoFailover, Flag: true})
	tr.run(2)
	if !tr.disk["B"].NoFailover {
		tr.fatalf("flag must be persisted")
	}
	tr.isolate("A")
	tr.run(10 * tQoS)
	if len(tr.actions("B", ActPromote)) != 0 {
		tr.fatalf("B took over while no-failover was set")
	}
	tr.operator("B", Message{Type: MsgSetNoFailover, Flag: false})
	tr.run(4 * tQoS)
	if len(tr.actions("B", ActPromote)) != 1 {
		tr.fatalf("B should take over once the flag is cleared")
	}
}

// Policy gate input: a not-aligned verdict refuses automatic takeover.
func TestAlignmentVerdictRefusesAutomaticTakeover(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.operator("B", Message{Type: MsgSetAlignment, Alignment: Alignment{Aligned: false, Reasons: []string{"roles digest differs"}}})
	tr.isolate("A")
	tr.run(10 * tQoS)
	if len(tr.actions("B", ActPromote)) != 0 || !strings.Contains(tr.dump(), "roles digest differs") {
		tr.fatalf("B took over although the gate said not aligned")
	}
	tr.operator("B", Message{Type: MsgSetAlignment, Alignment: Alignment{Aligned: true}})
	tr.run(4 * tQoS)
	if len(tr.actions("B", ActPromote)) != 1 {
		tr.fatalf("B should take over once aligned")
	}
}

// Policy gate input can only forbid: an "aligned" verdict, repeated at every
// step, never lets a backup take over where the data-safety rules of §3 say
// no (arbiter still sees the primary; non-active backup without the missing
// journal).
func TestAlignmentVerdictNeverPermitsWhatDataSafetyForbids(t *testing.T) {
	aligned := Message{Type: MsgSetAlignment, Alignment: Alignment{Aligned: true}}
	t.Run("arbiter still sees the primary", func(t *testing.T) {
		tr := newTier(t)
		tr.run(4)
		tr.steady("w", 2)
		tr.cut("A", "B", true)
		for range 10 * tQoS {
			tr.operator("B", aligned)
			tr.run(1)
		}
		if len(tr.actions("B", ActPromote)) != 0 {
			tr.fatalf("an aligned verdict let B take over while the arbiter saw the primary")
		}
	})
	t.Run("non-active backup, primary host down", func(t *testing.T) {
		tr := newTier(t)
		tr.run(4)
		tr.steady("w", 2)
		tr.cut("A", "B", false)
		tr.run(3 * tQoS)
		tr.steady("alone", 3)
		tr.crash("A")
		tr.crash("agentA")
		tr.heal()
		for range 20 * tQoS {
			tr.operator("B", aligned)
			tr.run(1)
		}
		if len(tr.actions("B", ActPromote)) != 0 {
			tr.fatalf("an aligned verdict let a non-active backup take over without the missing journal")
		}
	})
}
