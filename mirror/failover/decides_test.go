package failover

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// One test per clause of DESIGN §3 "Who decides" (TestWhoNN_...).

// Committing needs two of three: backup's acks, or the arbiter's recorded
// consent, or (agent mode) the backup's durable promise.
func TestWho01_CommitNeedsBackupAckOrArbiterConsentOrPromise(t *testing.T) {
	// (1) with the backup's acks
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 2)
	if tr.acked("A", 1) != 3 {
		tr.fatalf("commit with backup acks: acked %d", tr.acked("A", 1))
	}
	// (0) neither acks nor consent: nothing
	tr.crash("B")
	tr.crash("arb")
	tr.write("A", "x")
	tr.run(20 * tQoS)
	if tr.acked("A", 1) != 3 {
		tr.fatalf("committed with neither backup nor arbiter")
	}
	// (2) the arbiter's recorded consent
	tr.restart("arb")
	tr.run(4 * tQoS)
	if tr.acked("A", 1) != 4 || tr.arbDisk.Record.BackupActive {
		tr.fatalf("commit with arbiter consent: acked %d rec %v", tr.acked("A", 1), tr.arbDisk.Record)
	}
	// (3) agent mode: the promise (covered in detail by TestRule02)
	tr2 := newTier(t)
	tr2.run(4)
	tr2.cut("A", "arb", true)
	tr2.run(3 * tQoS)
	tr2.crash("B")
	tr2.write("A", "p")
	tr2.run(3 * tQoS)
	if tr2.disk["A"].Mode != ModeAgent || tr2.acked("A", 1) != 2 {
		tr2.fatalf("agent mode: commit on the backup's promise after 2xQoS: mode %v acked %d", tr2.disk["A"].Mode, tr2.acked("A", 1))
	}
}

// Taking over needs the arbiter's grant or the primary's fenced agent plus its
// journal: with neither, no takeover.
func TestWho02_TakeoverNeedsGrantOrFencedAgentAndJournal(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 2)
	tr.crash("arb")
	tr.isolate("A") // agent on A's host unreachable as well
	tr.run(30 * tQoS)
	if len(tr.actions("B", ActPromote)) != 0 {
		tr.fatalf("B took over with neither grant nor fenced agent")
	}
}

// The arbiter's record is a CAS register versioned by (epoch, seq); each
// decision is a CAS on the version the asker last saw.
func TestWho03_ArbiterDecisionIsCASOnSeenVersion(t *testing.T) {
	a := NewArbiter(ArbiterConfig{ID: "arb", Members: [2]ID{"A", "B"}, QoS: tQoS}, ArbiterState{Seeded: true, Record: genesisRec}, 0)
	rd := a.Step(Message{Type: MsgArbiterReq, From: "A", Epoch: 1, Op: OpBackupInactive, Seen: Version{1, 7}})
	if rd.ArbiterState != nil || len(rd.Messages) != 1 || rd.Messages[0].OK || a.State().Record != genesisRec {
		t.Fatalf("CAS on a wrong version must fail without change: %+v", rd)
	}
	rd = a.Step(Message{Type: MsgArbiterReq, From: "A", Epoch: 1, Op: OpBackupInactive, Seen: Version{1, 0}})
	if !rd.Messages[0].OK || a.State().Record.Version != (Version{1, 1}) || a.State().Record.BackupActive {
		t.Fatalf("CAS on the current version must apply: %+v", a.State())
	}
	rd = a.Step(Message{Type: MsgArbiterReq, From: "A", Epoch: 1, Op: OpBackupActive, Seen: Version{1, 1}})
	if !rd.Messages[0].OK || !a.State().Record.BackupActive || a.State().Record.Version != (Version{1, 2}) {
		t.Fatalf("backup active again: %+v", a.State())
	}
}

// Every decision is fsynced before the answer: the Ready carries the new state
// to persist together with the reply (persist comes first by contract).
func TestWho04_ArbiterPersistsBeforeAnswering(t *testing.T) {
	a := NewArbiter(ArbiterConfig{ID: "arb", Members: [2]ID{"A", "B"}, QoS: tQoS}, ArbiterState{Seeded: true, Record: genesisRec}, 0)
	a.Tick(5 * tQoS) // the arbiter has lost A
	a.Step(Message{Type: MsgArbiterReq, From: "B", Epoch: 1, Op: OpRead})
	rd := a.Step(Message{Type: MsgArbiterReq, From: "B", Epoch: 1, Op: OpTakeover, Seen: genesisRec.Version, LSN: 9})
	if rd.ArbiterState == nil || rd.ArbiterState.Record.Version != (Version{2, 0}) || rd.ArbiterState.Record.Primary != "B" || rd.ArbiterState.Record.ForkLSN != 9 {
		t.Fatalf("grant must be persisted in the same Ready: %+v", rd.ArbiterState)
	}
	if len(rd.Messages) != 1 || !rd.Messages[0].OK {
		t.Fatalf("grant reply missing: %+v", rd.Messages)
	}
	// test-only mutation (c) drops the persist: the switch works
	b := NewArbiter(ArbiterConfig{ID: "arb", Members: [2]ID{"A", "B"}, QoS: tQoS, Mutations: &Mutations{ArbiterForget: true}}, ArbiterState{Seeded: true, Record: genesisRec}, 0)
	if rd := b.Step(Message{Type: MsgArbiterReq, From: "A", Epoch: 1, Op: OpBackupInactive, Seen: genesisRec.Version}); rd.ArbiterState != nil {
		t.Fatalf("mutation ArbiterForget should skip the persist")
	}
}

// An arbiter that lost its disk answers nothing (only a challenge asking for
// the member's record) and never grants until re-seeded from both members'
// records (or by the operator). A member raises its arbiter session durably
// before reporting, so an answer the arbiter gave before losing its disk (and
// has forgotten) can never be acted on.
func TestWho05_EmptyArbiterAnswersNothingUntilReseeded(t *testing.T) {
	a := NewArbiter(ArbiterConfig{ID: "arb", Members: [2]ID{"A", "B"}, QoS: tQoS}, ArbiterState{}, 0)
	a.Tick(5 * tQoS)
	newer := genesisRec
	newer.Version = Version{2, 0}
	newer.Primary, newer.Backup = "B", "A"
	rd := a.Step(Message{Type: MsgArbiterReq, From: "B", Epoch: 1, Op: OpTakeover, Seen: genesisRec.Version, Known: genesisRec})
	if rd.ArbiterState != nil || a.State().Seeded || len(rd.Messages) != 1 || !rd.Messages[0].Reseed || rd.Messages[0].OK || rd.Messages[0].Record != (Record{}) {
		t.Fatalf("empty arbiter must not answer (only challenge): %+v", rd)
	}
	if a.Counters().Unseeded != 1 {
		t.Fatalf("unseeded requests must be counted")
	}
	rd = a.Step(Message{Type: MsgArbiterReq, From: "A", Epoch: 1, Op: OpReport, Known: genesisRec, Session: 1})
	if len(rd.Messages) != 0 || rd.ArbiterState != nil || a.State().Seeded {
		t.Fatalf("seeded from one member's record: %+v", rd)
	}
	rd = a.Step(Message{Type: MsgArbiterReq, From: "B", Epoch: 2, Op: OpReport, Known: newer, Session: 1})
	if len(rd.Messages) != 0 || rd.ArbiterState == nil || rd.ArbiterState.Record != newer {
		t.Fatalf("re-seed from both members must take the newest record: %+v", rd)
	}
	rd = a.Step(Message{Type: MsgArbiterReq, From: "B", Epoch: 2, Op: OpRead, Session: 1})
	if len(rd.Messages) != 1 || rd.Messages[0].Record != newer || rd.Messages[0].Session != 1 {
		t.Fatalf("seeded arbiter should answer: %+v", rd)
	}
	// member side: challenge -> persist raised session, then report
	m := primaryA()
	rd = m.Step(Message{Type: MsgArbiterResp, From: "arb", To: "A", Op: OpRead, Reseed: true})
	if rd.HardState == nil || rd.HardState.ArbiterSession != 1 || len(rd.Messages) != 1 || rd.Messages[0].Op != OpReport || rd.Messages[0].Session != 1 {
		t.Fatalf("member must persist the raised session before reporting: %+v", rd)
	}
	// an old-session answer (given before the disk loss) is ignored
	m.Tick(3 * tQoS) // in trouble, asking
	before := snapOf(m)
	rd = m.Step(Message{Type: MsgArbiterResp, From: "arb", To: "A", Epoch: 2, Op: OpBackupInactive, Seen: genesisRec.Version, OK: true,
		Record: Record{Version: Version{2, 1}, Primary: "A", Backup: "B"}, Session: 0})
	if rd.HardState != nil || len(rd.Actions) != 0 || m.HardState().Known != before.hs.Known {
		t.Fatalf("acted on an answer from an older arbiter session: %+v", rd)
	}
	// operator seeding
	o := NewArbiter(ArbiterConfig{ID: "arb", Members: [2]ID{"A", "B"}}, ArbiterState{}, 0)
	if rd := o.Step(Message{Type: MsgArbiterSeed, From: "A", Record: newer}); rd.ArbiterState != nil || o.Counters().Forged != 1 {
		t.Fatalf("only the operator may seed")
	}
	if rd := o.Step(Message{Type: MsgArbiterSeed, From: OperatorID, Record: newer}); rd.ArbiterState == nil || !o.State().Seeded {
		t.Fatalf("operator seed failed")
	}
}

// The primary acts only on the answer to its current request (matching
// (epoch, seq) it CASed on), never on a stale one.
func TestWho06_PrimaryActsOnlyOnAnswerToCurrentRequest(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.crash("B")
	tr.cut("A", "arb", true)
	tr.write("A", "x")
	tr.run(3 * tQoS) // in trouble; its request (CAS on (1,0)) gets no answer
	a := tr.m("A")
	stale := Record{Version: Version{1, 5}, Primary: "A", Backup: "B", BackupActive: false}
	mk := tr.mark()
	// an OK answering some other request (seen (1,3)) must be ignored
	tr.process("A", a.Step(Message{Type: MsgArbiterResp, From: "arb", To: "A", Epoch: 1, Op: OpBackupInactive, Seen: Version{1, 3}, OK: true, Record: stale}))
	tr.process("A", a.Step(Message{Type: MsgArbiterResp, From: "arb", To: "A", Epoch: 1, Op: OpBackupActive, Seen: Version{1, 0}, OK: true, Record: stale}))
	if !tr.disk["A"].BackupActive || len(tr.actionsSince(mk, "A", ActAckClients)) != 0 || a.Status() != StatusInTrouble {
		tr.fatalf("A acted on an answer to another request")
	}
	// the answer to its current request is acted on
	cur := Record{Version: Version{1, 1}, Primary: "A", Backup: "B", BackupActive: false}
	tr.process("A", a.Step(Message{Type: MsgArbiterResp, From: "arb", To: "A", Epoch: 1, Op: OpBackupInactive, Seen: Version{1, 0}, OK: true, Record: cur}))
	if tr.disk["A"].BackupActive || len(tr.actionsSince(mk, "A", ActAckClients)) != 1 {
		tr.fatalf("A should act on the answer to its current request")
	}
}

// Entering agent mode: the backup records its promise durably first, the
// primary switches only after the backup confirms.
func TestWho07_EnterAgentMode_BackupPromisesFirst(t *testing.T) {
	b := NewMember(MemberConfig{ID: "B", Peer: "A", PeerAgent: "agentA", Arbiter: "arb", QoS: tQoS},
		HardState{Epoch: 1, Role: RoleBackup, Known: genesisRec}, Base{}, []Entry{{Epoch: 1, LSN: 1, Marker: true}}, 0)
	rd := b.Step(Message{Type: MsgAppend, From: "A", To: "B", Epoch: 1, PrevLSN: 1, PrevEpoch: 1, Mode: ModeAgent, ModeSeq: 1})
	if rd.HardState == nil || rd.HardState.Mode != ModeAgent || rd.HardState.ModeSeq != 1 {
		t.Fatalf("backup must persist the promise: %+v", rd.HardState)
	}
	if len(rd.Messages) != 1 || rd.Messages[0].Mode != ModeAgent || rd.Messages[0].ModeSeq != 1 {
		t.Fatalf("confirmation must travel in the same Ready (sent after the persist): %+v", rd.Messages)
	}
	// a stale arbiter-mode append (lower seq) cannot undo the promise
	rd = b.Step(Message{Type: MsgAppend, From: "A", To: "B", Epoch: 1, PrevLSN: 1, PrevEpoch: 1, Mode: ModeArbiter, ModeSeq: 0})
	if b.HardState().Mode != ModeAgent {
		t.Fatalf("stale append reverted the promise")
	}
	// primary: switches only after confirmation
	tr := newTier(t)
	tr.run(4)
	tr.cut("A", "arb", true)
	tr.cut("B", "A", false) // confirmations do not arrive
	tr.run(3 * tQoS)
	if tr.disk["B"].Mode != ModeAgent || tr.disk["A"].Mode != ModeArbiter {
		tr.fatalf("primary switched before confirmation: A=%v B=%v", tr.disk["A"].Mode, tr.disk["B"].Mode)
	}
}

// Leaving agent mode: only while the backup is active; the primary CASes at
// the arbiter first, switches after, then tells the backup (see TestRule02
// for the ordering across the tier).
func TestWho08_LeaveAgentMode_OnlyWithActiveBackupArbiterFirst(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.cut("A", "arb", true)
	tr.run(3 * tQoS)
	tr.crash("B")
	tr.run(3 * tQoS) // A alone in agent mode, backup not active
	tr.heal()
	tr.run(4 * tQoS)
	if tr.disk["A"].Mode != ModeAgent || strings.Contains(tr.dump(), "arbiter-controlled, backup active") {
		tr.fatalf("left agent mode without an active backup")
	}
	tr.restart("B")
	tr.run(6 * tQoS)
	if tr.disk["A"].Mode != ModeArbiter || tr.disk["B"].Mode != ModeArbiter || !tr.arbDisk.Record.BackupActive {
		tr.fatalf("should be back in arbiter mode once the backup is active: A=%v B=%v rec=%v", tr.disk["A"].Mode, tr.disk["B"].Mode, tr.arbDisk.Record)
	}
}

// A backup that asked for takeover stops acknowledging the old epoch at once.
func TestWho09_BackupStopsAckingOldEpochAfterAsking(t *testing.T) {
	b := NewMember(MemberConfig{ID: "B", Peer: "A", PeerAgent: "agentA", Arbiter: "arb", QoS: tQoS},
		HardState{Epoch: 1, Role: RoleBackup, Known: genesisRec}, Base{}, []Entry{{Epoch: 1, LSN: 1, Marker: true}}, 0)
	b.Step(Message{Type: MsgArbiterResp, From: "arb", To: "B", Epoch: 1, Op: OpRead, OK: true, Record: genesisRec})
	var ask *Ready
	for now := Tick(1); now <= 2*tQoS && ask == nil; now++ {
		if now%2 == 0 {
			b.Step(Message{Type: MsgArbiterResp, From: "arb", To: "B", Epoch: 1, Op: OpRead, OK: true, Record: genesisRec})
		}
		rd := b.Tick(now)
		for _, m := range rd.Messages {
			if m.Op == OpTakeover {
				ask = &rd
			}
		}
	}
	if ask == nil || ask.HardState == nil || !ask.HardState.Asked.Valid {
		t.Fatalf("the ask must be persisted before it is sent: %+v", ask)
	}
	rd := b.Step(Message{Type: MsgAppend, From: "A", To: "B", Epoch: 1, PrevLSN: 1, PrevEpoch: 1, Entries: []Entry{{Epoch: 1, LSN: 2, Data: []byte("late")}}})
	if len(rd.Messages) != 0 || len(rd.Entries) != 0 || b.LastLSN() != 1 {
		t.Fatalf("backup acked the old epoch after asking: %+v", rd)
	}
}

// Epochs fence everything: a member rejects anything from a lower epoch.
func TestEpochs_LowerEpochRejectedByEveryCore(t *testing.T) {
	b := NewMember(MemberConfig{ID: "B", Peer: "A", PeerAgent: "agentA", Arbiter: "arb", QoS: tQoS},
		HardState{Epoch: 3, Role: RoleBackup}, Base{}, []Entry{{Epoch: 3, LSN: 1, Marker: true}}, 0)
	before := b.HardState()
	rd := b.Step(Message{Type: MsgAppend, From: "A", To: "B", Epoch: 2, PrevLSN: 1, PrevEpoch: 3, Entries: []Entry{{Epoch: 2, LSN: 2}}})
	if b.Counters().StaleEpoch != 1 || len(rd.Entries) != 0 || rd.HardState != nil || b.LastLSN() != 1 || b.HardState().Epoch != before.Epoch {
		t.Fatalf("stale append changed state: %+v", rd)
	}
	if len(rd.Messages) != 1 || !rd.Messages[0].Reject || rd.Messages[0].Epoch != 3 {
		t.Fatalf("stale sender should learn the current epoch: %+v", rd.Messages)
	}
	a := NewArbiter(ArbiterConfig{ID: "arb", Members: [2]ID{"A", "B"}}, ArbiterState{Seeded: true, Record: Record{Version: Version{3, 0}, Primary: "B", Backup: "A"}}, 0)
	rd = a.Step(Message{Type: MsgArbiterReq, From: "A", Epoch: 2, Op: OpBackupInactive, Seen: Version{3, 0}})
	if a.Counters().StaleEpoch != 1 || rd.ArbiterState != nil || rd.Messages[0].OK || a.State().Record.Version != (Version{3, 0}) {
		t.Fatalf("arbiter accepted a stale epoch: %+v", rd)
	}
}

// The package imports nothing beyond the standard library (DESIGN §2).
func TestImportsOnlyStdlib(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		af, err := parser.ParseFile(fset, f, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		n++
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			first := strings.Split(p, "/")[0]
			if strings.Contains(first, ".") || p == "C" {
				t.Errorf("%s imports non-stdlib package %q", f, p)
			}
		}
	}
	if n == 0 {
		t.Fatal("no source files found")
	}
}

// Leaving agent mode races with losing the backup: once the primary continues
// alone (2xQoS), the pending "arbiter-controlled, backup active" CAS is
// abandoned and a late OK for it is not acted on.
func TestWho08b_LateArbiterModeAnswerAfterGoingAloneIgnored(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.cut("A", "arb", true)
	tr.run(3 * tQoS)
	if tr.disk["A"].Mode != ModeAgent {
		tr.fatalf("setup: agent mode expected")
	}
	tr.heal()
	var req *pendingReq
	for range 4 * tQoS {
		tr.run(1)
		if p := tr.m("A").pending; p != nil && p.op == OpArbiterMode {
			req = p
			break
		}
	}
	if req == nil {
		tr.fatalf("setup: A should ask to leave agent mode")
	}
	seen := req.seen
	tr.cut("arb", "A", false) // the answer will come late
	tr.crash("B")
	tr.write("A", "alone")
	tr.run(3 * tQoS)
	if tr.disk["A"].BackupActive || !tr.hasData("A", "alone") || tr.acked("A", 1) != LSN(len(tr.journal["A"])) {
		tr.fatalf("setup: A should continue alone after 2xQoS")
	}
	a := tr.m("A")
	rec := Record{Version: Version{1, seen.Seq + 1}, Primary: "A", Backup: "B", BackupActive: true, Mode: ModeArbiter}
	tr.process("A", a.Step(Message{Type: MsgArbiterResp, From: "arb", To: "A", Epoch: 1, Op: OpArbiterMode, Seen: seen, OK: true, Record: rec, Session: a.hs.ArbiterSession}))
	if tr.disk["A"].Mode != ModeAgent || tr.disk["A"].BackupActive {
		tr.fatalf("A acted on the late answer to an abandoned request: %+v", tr.disk["A"])
	}
}
