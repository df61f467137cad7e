package failover

import (
	"strings"
	"testing"
)

// A primary may ship appends to an active backup before its own fsync
// (ShipsEarly). These tests stand for its crash in between: the records
// the backup acknowledged are cut from the primary's disk journal before
// it restarts.

// shippedThenLost writes v through A, lets B make it durable, then
// crashes A and takes v off A's disk: A shipped it before its fsync.
func shippedThenLost(tr *tier, v string) {
	tr.t.Helper()
	tr.write("A", v)
	tr.run(3)
	if !tr.hasData("B", v) {
		tr.fatalf("setup: B should hold %q", v)
	}
	tr.crash("A")
	j := tr.journal["A"]
	if string(j[len(j)-1].Data) != v {
		tr.fatalf("setup: %q is not A's last record", v)
	}
	tr.journal["A"] = j[:len(j)-1]
}

func TestResync01_RestartedPrimaryTakesTheBackupsRecordsBeforeWriting(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 3)
	if !tr.m("A").ShipsEarly() {
		tr.fatalf("a primary with an active backup ships early")
	}
	shippedThenLost(tr, "lost-here")
	restarts := tr.disk["A"].Restarts
	mk := tr.mark()
	tr.restart("A")
	if tr.m("A").TakesWrites() || tr.m("A").ShipsEarly() || tr.m("A").Status() != StatusInTrouble {
		tr.fatalf("a restarted primary takes no writes and ships nothing early before its resync: %v", tr.m("A").Status())
	}
	tr.write("A", "too-early")
	tr.run(1)
	if tr.disk["A"].Restarts != restarts+1 {
		tr.fatalf("the restart is counted durably before the first append: %d", tr.disk["A"].Restarts)
	}
	if len(tr.actions("A", ActRejectWrite)) == 0 || tr.hasData("A", "too-early") {
		tr.fatalf("a write before the resync must be refused")
	}
	tr.run(6)
	if !tr.hasData("A", "lost-here") || !strings.Contains(tr.dump(), "A event resync: epoch 1: took 1 records") {
		tr.fatalf("A must take back the record it shipped before its fsync")
	}
	if r := tr.actionsSince(mk, "A", ActResumeWrites); len(r) != 1 || r[0].UpTo != tr.last("A") || !tr.m("A").TakesWrites() {
		tr.fatalf("A takes writes after its whole journal once resynced: %v", r)
	}
	tr.write("A", "after")
	tr.run(4)
	if !tr.hasData("B", "after") || tr.acked("A", 1) != tr.last("A") || tr.m("A").Epoch() != 1 {
		tr.fatalf("A writes on in epoch 1 with B's acks: acked %d of %d", tr.acked("A", 1), tr.last("A"))
	}
	for i, e := range tr.journal["A"] {
		if string(e.Data) != string(tr.journal["B"][i].Data) {
			tr.fatalf("journals differ at LSN %d", e.LSN)
		}
	}
}

func TestResync02_StaleAppendFromBeforeTheRestartIsDropped(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 3)
	old := tr.disk["A"].Restarts
	tr.crash("A")
	tr.restart("A")
	tr.run(6) // resynced; B has seen the new restart count
	last := tr.last("B")
	// an append the dead process had on the wire, carrying a record it
	// never made durable, arrives now
	tr.inject(Message{Type: MsgAppend, From: "A", To: "B", Epoch: 1, PrevLSN: last, PrevEpoch: 1,
		Entries: []Entry{{Epoch: 1, LSN: last + 1, Data: []byte("ghost")}}, Commit: last + 1, LastLSN: last + 1,
		Mode: ModeArbiter, ModeSeq: 1, BackupActive: true, Restarts: old})
	tr.run(1)
	if tr.hasData("B", "ghost") {
		tr.fatalf("B took a record from before the primary's restart")
	}
	// and an acknowledgement B sent the dead process does not count now
	tr.write("A", "new")
	tr.inject(Message{Type: MsgAppendResp, From: "B", To: "A", Epoch: 1, Match: last + 1, Restarts: old})
	mk := tr.mark()
	tr.run(1)
	for _, a := range tr.actionsSince(mk, "A", ActAckClients) {
		if a.UpTo > tr.last("B") {
			tr.fatalf("A acknowledged %d on an answer to the dead process", a.UpTo)
		}
	}
}

func TestResync03_WithoutItsBackupTheRestartedPrimaryReopens(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 3)
	shippedThenLost(tr, "lost-here")
	tr.crash("B")
	tr.restart("A")
	tr.run(tQoS + 4)
	a := tr.disk["A"]
	if p := tr.actions("A", ActPromote); len(p) != 1 || p[0].Reason != PromoteReopen || a.Epoch != 2 || a.BackupActive {
		tr.fatalf("A must continue alone in a new epoch recorded at the arbiter: %v %+v", p, a)
	}
	if rec := tr.arbDisk.Record; rec.Version.Epoch != 2 || rec.Primary != "A" || rec.BackupActive {
		tr.fatalf("the arbiter records A primary of epoch 2, backup not active: %v", rec)
	}
	tr.write("A", "alone")
	tr.run(2)
	if tr.acked("A", 2) != tr.last("A") {
		tr.fatalf("A commits alone in epoch 2")
	}
	tr.restart("B")
	tr.run(4 * tQoS)
	if tr.hasData("B", "lost-here") || !tr.hasData("B", "alone") || tr.disk["B"].Epoch != 2 {
		tr.fatalf("B cuts the record A lost and follows epoch 2")
	}
	if !strings.Contains(tr.dump(), "B event quarantine") {
		tr.fatalf("the record B cut is quarantined, not dropped")
	}
}

func TestResync04_AgentControlledRestartReopensAfterTwiceTheQoS(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 2)
	tr.isolate("arb")
	tr.run(3 * tQoS)
	if tr.disk["A"].Mode != ModeAgent || !tr.disk["A"].BackupActive {
		tr.fatalf("setup: the pair should run agent-controlled: %+v", tr.disk["A"])
	}
	tr.crash("B")
	tr.crash("A")
	tr.restart("A")
	tr.run(tQoS)
	if len(tr.actions("A", ActPromote)) != 0 {
		tr.fatalf("not before 2xQoS: the backup may still answer")
	}
	tr.run(tQoS + 2)
	if p := tr.actions("A", ActPromote); len(p) != 1 || p[0].Reason != PromoteReopen || tr.disk["A"].Epoch != 2 {
		tr.fatalf("A opens epoch 2 on its own, agent-controlled: %v", p)
	}
}

func TestResync05_FenceReportsTheEpochAReopenMayHaveCreated(t *testing.T) {
	hs := HardState{Epoch: 3, Role: RolePrimary, Asked: TakeoverAsk{Valid: true, Epoch: 3, LSN: 9, Reopen: true}}
	if FenceEpoch(hs) != 4 {
		t.Fatalf("FenceEpoch = %d: the agent must report the epoch the arbiter may have granted", FenceEpoch(hs))
	}
	hs.Asked.Reopen = false
	if FenceEpoch(hs) != 3 {
		t.Fatalf("a takeover ask is the backup's: FenceEpoch = %d", FenceEpoch(hs))
	}
	// fenced before it learned the answer: the claim goes with the role
	m := NewMember(MemberConfig{ID: "A", Peer: "B", PeerAgent: "agentB", Arbiter: "arb", QoS: tQoS},
		HardState{Epoch: 3, Role: RolePrimary, Fenced: true, Asked: TakeoverAsk{Valid: true, Epoch: 3, LSN: 9, Reopen: true}}, Base{}, nil, 0)
	if m.HardState().Asked.Valid {
		t.Fatalf("a fenced member keeps no reopen claim")
	}
}

func TestArbiterReopenOnlyForTheRecordedPrimaryOfItsEpoch(t *testing.T) {
	rec := Record{Version: Version{Epoch: 3, Seq: 2}, Primary: "A", Backup: "B", BackupActive: true, Mode: ModeArbiter}
	for _, c := range []struct {
		name string
		req  Message
		ok   bool
	}{
		{"the primary", Message{From: "A", Epoch: 3, Seen: rec.Version, LSN: 40}, true},
		{"the backup", Message{From: "B", Epoch: 3, Seen: rec.Version, LSN: 40}, false},
		{"an old epoch", Message{From: "A", Epoch: 2, Seen: rec.Version, LSN: 40}, false},
		{"a stale version", Message{From: "A", Epoch: 3, Seen: Version{Epoch: 3, Seq: 1}, LSN: 40}, false},
	} {
		a := NewArbiter(ArbiterConfig{ID: "arb", Members: [2]ID{"A", "B"}, QoS: tQoS}, ArbiterState{Seeded: true, Record: rec}, 0)
		c.req.Type, c.req.To, c.req.Op = MsgArbiterReq, "arb", OpReopen
		rd := a.Step(c.req)
		if len(rd.Messages) != 1 || rd.Messages[0].OK != c.ok {
			t.Fatalf("%s: answer %v, want ok=%v", c.name, rd.Messages, c.ok)
		}
		if !c.ok {
			if rd.ArbiterState != nil {
				t.Fatalf("%s: a refused reopen changed the record", c.name)
			}
			continue
		}
		got := rd.ArbiterState.Record
		want := Record{Version: Version{Epoch: 4}, Primary: "A", Backup: "B", BackupActive: false, Mode: ModeArbiter, ForkLSN: 40}
		if got != want || rd.Messages[0].Record != want {
			t.Fatalf("%s: recorded %v, want %v (persisted before the answer)", c.name, got, want)
		}
	}
}

func TestResync06_AResyncEndsWithItsEpoch(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 2)
	tr.crash("A")
	tr.run(4 * tQoS)
	if p := tr.actions("B", ActPromote); len(p) != 1 || p[0].Reason != PromoteGrant {
		tr.fatalf("setup: B should have taken over by the arbiter's grant: %v", p)
	}
	hs := tr.disk["A"]
	hs.Fenced = false // restarted before its agent's fence (the grant needs none)
	tr.disk["A"] = hs
	tr.restart("A") // resyncing: its hard state still says primary of epoch 1, backup active
	if tr.m("A").Status() != StatusInTrouble {
		tr.fatalf("setup: A should resync first: %v", tr.m("A").Status())
	}
	tr.run(4 * tQoS)
	if tr.disk["A"].Role != RoleBackup || tr.disk["A"].Epoch != 2 {
		tr.fatalf("setup: A should follow epoch 2: %+v", tr.disk["A"])
	}
	tr.run(4 * tQoS) // A catches up; B has the arbiter record it active
	tr.crash("B")
	tr.run(6 * tQoS)
	if p := tr.actions("A", ActPromote); len(p) != 1 || !tr.m("A").TakesWrites() || tr.m("A").Status() != StatusPrimary {
		tr.fatalf("A, primary again in a later epoch with B gone, must take writes (found the old resync still open): %v %v", p, tr.m("A").Status())
	}
}

// A primary asked to reopen, the arbiter granted it and the answer was
// lost; its resync then ended (the backup answered), it wrote on, and it
// restarted: resyncing again with the backup silent, it must ask the
// persisted reopen again, not a new one at its later LSN — that one is
// refused (the record moved to the new epoch) and the grant, naming the
// first ask's LSN, would never be recognised as its own.
func TestResync07_ARestartedPrimaryAsksItsPersistedReopenAgain(t *testing.T) {
	seen := Version{Epoch: 3, Seq: 2}
	ask := TakeoverAsk{Valid: true, At: seen, Epoch: 3, LSN: 9, Reopen: true}
	var log []Entry
	for l := LSN(1); l <= 11; l++ {
		log = append(log, Entry{Epoch: 3, LSN: l, Data: []byte{byte(l)}})
	}
	hs := HardState{Epoch: 3, Role: RolePrimary, BackupActive: true, Mode: ModeArbiter, Asked: ask,
		Known: Record{Version: seen, Primary: "A", Backup: "B", BackupActive: true, Mode: ModeArbiter}}
	m := NewMember(MemberConfig{ID: "A", Peer: "B", PeerAgent: "agentB", Arbiter: "arb", QoS: tQoS, Heartbeat: 2, Retry: 3}, hs, Base{}, log, 0)
	if m.TakesWrites() {
		t.Fatalf("setup: a restarted primary with its backup active resyncs first")
	}
	var req *Message
	for now := Tick(1); now <= 2*tQoS && req == nil; now++ {
		for _, msg := range m.Tick(now).Messages {
			if msg.Type == MsgArbiterReq && msg.Op == OpReopen {
				req = &msg
			}
		}
	}
	if req == nil || req.Seen != seen || req.LSN != 9 || m.HardState().Asked != ask {
		t.Fatalf("the backup silent, A must ask its persisted reopen (seen %v, LSN 9) again: %+v, asked %+v", seen, req, m.HardState().Asked)
	}
	granted := Record{Version: Version{Epoch: 4}, Primary: "A", Backup: "B", Mode: ModeArbiter, ForkLSN: 9}
	rd := m.Step(Message{Type: MsgArbiterResp, From: "arb", To: "A", Epoch: 4, Op: OpReopen, Seen: seen, OK: false, Record: granted})
	var promoted bool
	for _, a := range rd.Actions {
		promoted = promoted || (a.Kind == ActPromote && a.Reason == PromoteReopen && a.Epoch == 4)
	}
	if !promoted || m.HardState().Epoch != 4 || !m.TakesWrites() {
		t.Fatalf("the record naming A primary of epoch 4 after LSN 9 is A's grant: %+v", rd.Actions)
	}
}
