package failover

import (
	"slices"
	"strings"
	"testing"
)

// DESIGN §3 "Journal purge": a segment is kept until both failover members
// and every connected async have it; a released async (disconnected longer
// than the retention, or over the size cap) stops holding it and becomes
// needs-rebuild, and a re-seeded member catches up from its snapshot's LSN.

// appendRespsSince counts the append responses from id delivered since the
// trace line mark, split into acknowledgements and rejections.
func (tr *tier) appendRespsSince(mark int, id ID) (acks, rejects int) {
	for _, l := range tr.trace[mark:] {
		if !strings.Contains(l, "deliver AppendResp "+string(id)+"->") {
			continue
		}
		if strings.Contains(l, "reject=true") {
			rejects++
		} else {
			acks++
		}
	}
	return acks, rejects
}

// reseed installs on id a snapshot of from's state at from's commit point,
// as `tandem ctl rebuild` does: journal empty after the snapshot's LSN, hard
// state a fresh backup or async of from's epoch. It returns the snapshot LSN.
func (tr *tier) reseed(id, from ID) LSN {
	tr.t.Helper()
	src := tr.m(from)
	l := src.Commit()
	if l < src.Base().LSN {
		tr.fatalf("snapshot LSN %d below %s's base %d", l, from, src.Base().LSN)
	}
	hs, err := Reseeded(tr.disk[id], src.Epoch(), tr.cfgM[id].Async)
	if err != nil {
		tr.fatalf("reseed %s: %v", id, err)
	}
	tr.crash(id)
	tr.disk[id] = hs
	tr.base[id] = Base{LSN: l, Epoch: src.epochAt(l)}
	tr.journal[id] = nil
	tr.restart(id)
	return l
}

func TestPurge01_PrimaryKeepsWhatTheBackupAndEveryHeldAsyncNeed(t *testing.T) {
	tr := newTierWith(t, "C")
	tr.run(4)
	tr.steady("w", 5) // LSN 2..6
	a := tr.m("A")
	if got := a.PurgeableUpTo(nil); got != 6 || a.Commit() != 6 {
		tr.fatalf("everyone holds 1..6: purgeable %d, commit %d", got, a.Commit())
	}
	if got := tr.m("B").PurgeableUpTo(nil); got != 6 {
		tr.fatalf("the backup may purge what the primary confirmed committed: %d", got)
	}
	tr.crash("C")
	tr.steady("x", 4) // LSN 7..10, C has none of them
	if got := a.PurgeableUpTo(nil); got != 6 {
		tr.fatalf("a held async pins the journal at its match 6, got %d", got)
	}
	if got := a.PurgeableUpTo([]ID{"C"}); got != 10 {
		tr.fatalf("a released async does not hold the journal: %d, want 10", got)
	}
	// the backup always holds: down, it pins the journal at its durable match
	tr.crash("B")
	tr.run(3 * tQoS)
	tr.steady("y", 3) // committed alone with the arbiter's consent
	if a.Commit() != 13 {
		tr.fatalf("setup: A should commit alone up to 13, commit %d", a.Commit())
	}
	if got := a.PurgeableUpTo([]ID{"C"}); got != 10 {
		tr.fatalf("the backup's match 10 must pin the journal, got %d", got)
	}
	// nothing beyond what is allowed is ever forgotten
	rd := a.Purged(12, []ID{"C"})
	if a.Base().LSN != 0 || !slices.ContainsFunc(rd.Events, func(e Event) bool { return e.Kind == "reject" }) {
		tr.fatalf("a purge beyond the allowed point must be refused: base %v events %v", a.Base(), rd.Events)
	}
	tr.purge("A", 10, "C")
	if a.Base() != (Base{LSN: 10, Epoch: 1}) || a.LastLSN() != 13 || len(a.Journal()) != 3 {
		tr.fatalf("after purging to 10: base %v last %d kept %d", a.Base(), a.LastLSN(), len(a.Journal()))
	}
	// B comes back: it holds 10 (the base), so it catches up from there
	tr.restart("B")
	tr.run(4 * tQoS)
	if tr.last("B") != 13 || !tr.hasData("B", "y2") || tr.disk["B"].NeedsRebuild {
		tr.fatalf("B should catch up from A's base: last %d needs-rebuild %v", tr.last("B"), tr.disk["B"].NeedsRebuild)
	}
}

func TestPurge02_ReleasedAsyncBecomesNeedsRebuildAndNeverAcks(t *testing.T) {
	tr := newTierWith(t, "C")
	tr.run(4)
	tr.steady("w", 5) // LSN 2..6 everywhere
	tr.crash("C")
	tr.steady("x", 5) // LSN 7..11
	a := tr.m("A")
	tr.purge("A", 9, "C")
	if got := a.PeersNeedingRebuild(); !slices.Equal(got, []ID{"C"}) {
		tr.fatalf("A must report C as needing a rebuild: %v", got)
	}
	if !strings.Contains(tr.dump(), "A event peer-needs-rebuild: async C released") {
		tr.fatalf("the release must be an event")
	}
	tr.purge("B", tr.m("B").PurgeableUpTo(nil))
	tr.run(3) // appends sent before the purge find C down
	mark := len(tr.trace)
	tr.restart("C")
	tr.run(4 * tQoS)
	c := tr.m("C")
	if !tr.disk["C"].NeedsRebuild || c.Status() != StatusNeedsRebuild {
		tr.fatalf("C should be needs-rebuild (durably): status %v", c.Status())
	}
	if acks, _ := tr.appendRespsSince(mark, "C"); acks != 0 || tr.last("C") != 6 {
		tr.fatalf("a needs-rebuild member must acknowledge nothing and append nothing: %d acks, last %d", acks, tr.last("C"))
	}
	// a restart does not forget it
	tr.crash("C")
	tr.restart("C")
	if tr.m("C").Status() != StatusNeedsRebuild {
		tr.fatalf("needs-rebuild must survive a restart")
	}
	// the primary commits on without it
	tr.steady("after", 2)
	if a.Commit() != 13 {
		tr.fatalf("A should commit without C: %d", a.Commit())
	}
}

func TestPurge03_ReseededMemberCatchesUpFromItsSnapshot(t *testing.T) {
	tr := newTierWith(t, "C")
	tr.run(4)
	tr.steady("w", 5)
	tr.crash("C")
	tr.steady("x", 5)
	tr.purge("A", 9, "C")
	tr.run(3)
	tr.restart("C")
	tr.run(4 * tQoS)
	if tr.m("C").Status() != StatusNeedsRebuild {
		tr.fatalf("setup: C should need a rebuild")
	}
	l := tr.reseed("C", "A")
	if l != 11 || tr.m("C").Status() != StatusAsync || tr.disk["C"].NeedsRebuild {
		tr.fatalf("re-seeded at %d: status %v", l, tr.m("C").Status())
	}
	tr.steady("y", 3)
	tr.run(2 * tQoS)
	if tr.last("C") != tr.last("A") || !tr.hasData("C", "y2") {
		tr.fatalf("C should catch up from LSN %d: last %d, A %d", l, tr.last("C"), tr.last("A"))
	}
	sameEntry := func(x, y Entry) bool {
		return x.Epoch == y.Epoch && x.LSN == y.LSN && x.Marker == y.Marker && x.PrevEnd == y.PrevEnd && string(x.Data) == string(y.Data)
	}
	if !slices.EqualFunc(tr.journal["C"], tr.journal["A"][len(tr.journal["A"])-len(tr.journal["C"]):], sameEntry) {
		tr.fatalf("C's journal after its base differs from A's")
	}
	if got := tr.m("A").PeersNeedingRebuild(); len(got) != 0 {
		tr.fatalf("A still reports %v as needing a rebuild", got)
	}
	if got := tr.m("A").AsyncMatch()["C"]; got != tr.last("A") {
		tr.fatalf("C's acknowledgements should count again: match %d", got)
	}
}

func TestPurge04_NeedsRebuildBackupNeverTakesOverOrIsForced(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 3)
	tr.crash("B")
	hs := tr.disk["B"]
	hs.NeedsRebuild = true
	tr.disk["B"] = hs
	tr.restart("B")
	tr.run(3 * tQoS)
	// the primary and its agent are gone; the arbiter is up
	tr.crash("A")
	tr.run(10 * tQoS)
	tr.crash("agentA")
	tr.run(10 * tQoS)
	tr.operator("B", Message{Type: MsgForcePromote})
	tr.run(2)
	if p := tr.actions("B", ActPromote); len(p) != 0 || tr.m("B").IsPrimary() {
		tr.fatalf("a needs-rebuild member became primary: %v", p)
	}
	if strings.Contains(tr.dump(), "AgentQuery B->") || tr.disk["B"].Asked.Valid {
		tr.fatalf("a needs-rebuild member must not even try to take over")
	}
	if !strings.Contains(tr.dump(), "B event force-promote-refused") {
		tr.fatalf("the refused forced promotion must be reported")
	}
}

func TestPurge05_StaleJournalGoneDoesNotForceARebuild(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 5)
	// a late notice from a primary whose base (3) B's journal reaches
	tr.inject(Message{Type: MsgAppend, From: "A", To: "B", Epoch: 1, PrevLSN: 3, PrevEpoch: 1, JournalGone: true,
		Commit: 6, LastLSN: 6, Mode: ModeArbiter, ModeSeq: 1, BackupActive: true, Restarts: tr.disk["A"].Restarts})
	tr.run(4)
	if tr.disk["B"].NeedsRebuild || tr.m("B").Status() != StatusBackup {
		tr.fatalf("B holds LSN 3: it must not need a rebuild")
	}
	// a notice whose base B does not hold in the same history does
	tr.inject(Message{Type: MsgAppend, From: "A", To: "B", Epoch: 1, PrevLSN: 40, PrevEpoch: 1, JournalGone: true,
		Commit: 50, LastLSN: 50, Mode: ModeArbiter, ModeSeq: 1, BackupActive: true, Restarts: tr.disk["A"].Restarts})
	tr.run(1)
	if !tr.disk["B"].NeedsRebuild || tr.m("B").Status() != StatusNeedsRebuild {
		tr.fatalf("B lacks 7..40: it needs a rebuild")
	}
}

// An async that purged records committed in a history the tier lost (a
// forced promotion of a backup that lacked them) cannot continue: it needs a
// rebuild; the former primary, whose base is within the shared history,
// rejoins normally.
func TestPurge06_AsyncOnALostBranchNeedsRebuild(t *testing.T) {
	tr := newTierWith(t, "C")
	tr.run(4)
	tr.steady("w", 5) // 2..6 on all
	tr.cut("A", "B", false)
	tr.run(3 * tQoS)
	tr.steady("alone", 3) // 7..9 on A and C only, committed alone
	tr.run(4)
	if got := tr.m("C").PurgeableUpTo(nil); got != 9 {
		tr.fatalf("setup: C should know 9 committed, purgeable %d", got)
	}
	tr.purge("C", 9)
	if got := tr.m("A").PurgeableUpTo(nil); got != 6 {
		tr.fatalf("A's backup match 6 pins its journal, got %d", got)
	}
	tr.purge("A", 6)
	tr.crash("A")
	tr.crash("agentA")
	tr.heal()
	tr.run(3 * tQoS)
	tr.operator("B", Message{Type: MsgForcePromote})
	tr.run(4 * tQoS)
	if !tr.m("B").IsPrimary() {
		tr.fatalf("setup: B should be forced primary")
	}
	if !tr.disk["C"].NeedsRebuild {
		tr.fatalf("C purged 7..9 of a lost history: it needs a rebuild")
	}
	tr.restart("agentA")
	tr.restart("A")
	tr.run(6 * tQoS)
	if tr.disk["A"].NeedsRebuild || tr.m("A").Status() != StatusBackup || tr.last("A") != tr.last("B") {
		tr.fatalf("A forks at 6, its base: it should rejoin as backup (status %v, last %d vs %d)", tr.m("A").Status(), tr.last("A"), tr.last("B"))
	}
	tr.reseed("C", "B")
	tr.steady2("B", "z", 2)
	if tr.last("C") != tr.last("B") || !tr.hasData("C", "z1") || tr.hasData("C", "alone0") {
		tr.fatalf("re-seeded C should follow B: last %d vs %d", tr.last("C"), tr.last("B"))
	}
}

// The agent hands over the tail of a purged journal, and a fenced peer's
// whole journal after its base when the backup's tail does not fit.
func TestPurge07_AgentTailFromAPurgedJournal(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 4) // 2..5
	tr.purge("A", 4)
	tr.cut("A", "B", false)
	tr.run(3 * tQoS)
	tr.steady("alone", 2) // 6..7 on A only
	tr.crash("arb")
	tr.crash("A")
	tr.heal()
	tr.run(6 * tQoS)
	p := tr.actions("B", ActPromote)
	if len(p) != 1 || p[0].Reason != PromoteAgent || !tr.hasData("B", "alone1") {
		tr.fatalf("B should take over with the tail of A's purged journal: %v", p)
	}
}

func TestPurge08_AgentFullLogAfterABase(t *testing.T) {
	g := NewAgent(AgentConfig{ID: "agentA", Member: "A", Peer: "B"}, AgentState{})
	g.Step(Message{Type: MsgMemberStatus, From: "agentA", To: "agentA", Up: false})
	// B's last record (LSN 5, epoch 1) is not in A's journal (A has epoch 2 at 5)
	g.Step(Message{Type: MsgAgentQuery, From: "B", To: "agentA", Epoch: 1, FromLSN: 5, FromEpoch: 1})
	journal := []Entry{{Epoch: 1, LSN: 4}, {Epoch: 2, LSN: 5, Marker: true, PrevEnd: 4}, {Epoch: 2, LSN: 6}}
	rd := g.Step(Message{Type: MsgFenceDone, From: "agentA", To: "agentA", Epoch: 2, PrevLSN: 3, PrevEpoch: 1, Entries: journal})
	if len(rd.Messages) != 1 {
		t.Fatalf("want one answer, got %v", rd.Messages)
	}
	r := rd.Messages[0]
	if !r.FullLog || r.PrevLSN != 3 || r.PrevEpoch != 1 || len(r.Entries) != 3 {
		t.Fatalf("want the whole journal after base (3,1): %v", r)
	}
	// B, whose journal reaches LSN 5 in epoch 1 after base 0, takes it: cut back to 4, then A's 5..6
	b := NewMember(MemberConfig{ID: "B", Peer: "A", PeerAgent: "agentA", Arbiter: "arb", QoS: tQoS},
		HardState{Epoch: 1, Role: RoleBackup, Known: genesisRec}, Base{LSN: 2, Epoch: 1},
		[]Entry{{Epoch: 1, LSN: 3}, {Epoch: 1, LSN: 4}, {Epoch: 1, LSN: 5}}, 0)
	b.Tick(3 * tQoS)
	rd = b.Step(r)
	if !b.IsPrimary() || b.LastLSN() != 7 || rd.Truncate == nil || rd.Truncate.After != 4 {
		t.Fatalf("B should cut back to the fork point 4 (not A's base 3: record 4 is the same on both) and take A's journal: primary %v last %d truncate %+v", b.IsPrimary(), b.LastLSN(), rd.Truncate)
	}
	// B holds more than the fenced A (A lost records it had shipped): A's
	// journal is a prefix of B's, so B keeps its own and cuts nothing
	g2 := NewAgent(AgentConfig{ID: "agentA", Member: "A", Peer: "B"}, AgentState{})
	g2.Step(Message{Type: MsgMemberStatus, From: "agentA", To: "agentA", Up: false})
	g2.Step(Message{Type: MsgAgentQuery, From: "B", To: "agentA", Epoch: 1, FromLSN: 7, FromEpoch: 1})
	rd = g2.Step(Message{Type: MsgFenceDone, From: "agentA", To: "agentA", Epoch: 1, PrevLSN: 3, PrevEpoch: 1,
		Entries: []Entry{{Epoch: 1, LSN: 4}, {Epoch: 1, LSN: 5}}})
	if len(rd.Messages) != 1 || !rd.Messages[0].FullLog {
		t.Fatalf("a query past the fenced journal's end gets the whole journal: %v", rd.Messages)
	}
	longer := NewMember(MemberConfig{ID: "B", Peer: "A", PeerAgent: "agentA", Arbiter: "arb", QoS: tQoS},
		HardState{Epoch: 1, Role: RoleBackup, Known: genesisRec}, Base{LSN: 2, Epoch: 1},
		[]Entry{{Epoch: 1, LSN: 3}, {Epoch: 1, LSN: 4}, {Epoch: 1, LSN: 5}, {Epoch: 1, LSN: 6}, {Epoch: 1, LSN: 7}}, 0)
	longer.Tick(3 * tQoS)
	rd = longer.Step(rd.Messages[0])
	if !longer.IsPrimary() || longer.LastLSN() != 8 || rd.Truncate != nil {
		t.Fatalf("B should keep its records 6..7 and take over at 8: primary %v last %d truncate %+v", longer.IsPrimary(), longer.LastLSN(), rd.Truncate)
	}
	// a fenced peer whose base is beyond B's journal cannot hand over a complete history
	c := NewMember(MemberConfig{ID: "B", Peer: "A", PeerAgent: "agentA", Arbiter: "arb", QoS: tQoS},
		HardState{Epoch: 1, Role: RoleBackup, Known: genesisRec}, Base{}, []Entry{{Epoch: 1, LSN: 1, Marker: true}, {Epoch: 1, LSN: 2}}, 0)
	c.Tick(3 * tQoS)
	r.FromLSN, r.FromEpoch = 2, 1
	rd = c.Step(r)
	if c.IsPrimary() || !slices.ContainsFunc(rd.Events, func(e Event) bool { return e.Kind == "takeover-refused" }) {
		t.Fatalf("a journal that does not continue ours must be refused: primary %v events %v", c.IsPrimary(), rd.Events)
	}
}
