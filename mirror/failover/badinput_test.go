package failover

import (
	"reflect"
	"testing"
)

// Bad input: unknown type, stale epoch, forged role/sender are rejected,
// counted, and never change state.

func backupB() *Member {
	return NewMember(MemberConfig{ID: "B", Peer: "A", PeerAgent: "agentA", Arbiter: "arb", QoS: tQoS},
		HardState{Epoch: 2, Role: RoleBackup, Known: genesisRec}, Base{}, []Entry{{Epoch: 1, LSN: 1, Marker: true}, {Epoch: 2, LSN: 2, Marker: true, PrevEnd: 1}}, 0)
}

func primaryA() *Member {
	m := NewMember(MemberConfig{ID: "A", Peer: "B", PeerAgent: "agentB", Arbiter: "arb", QoS: tQoS},
		HardState{Epoch: 2, Role: RolePrimary, BackupActive: true, Known: genesisRec}, Base{}, []Entry{{Epoch: 1, LSN: 1, Marker: true}, {Epoch: 2, LSN: 2, Marker: true, PrevEnd: 1}}, 0)
	m.Tick(0) // the restart's own Ready (HardState.Restarts) is not the input under test
	return m
}

type snap struct {
	hs      HardState
	journal []Entry
	status  Status
	commit  LSN
}

func snapOf(m *Member) snap { return snap{m.HardState(), m.Journal(), m.Status(), m.Commit()} }

func TestBadInput_Member(t *testing.T) {
	cases := []struct {
		name  string
		core  func() *Member
		msg   Message
		count func(Counters) uint64
	}{
		{"unknown type", backupB, Message{Type: MsgType(200), From: "A", Epoch: 2}, func(c Counters) uint64 { return c.UnknownType }},
		{"zero type", backupB, Message{From: "A", Epoch: 2}, func(c Counters) uint64 { return c.UnknownType }},
		{"arbiter request sent to a member", backupB, Message{Type: MsgArbiterReq, From: "A", Epoch: 2, Op: OpRead}, func(c Counters) uint64 { return c.UnknownType }},
		{"stale append", backupB, Message{Type: MsgAppend, From: "A", Epoch: 1, PrevLSN: 2, PrevEpoch: 2, Entries: []Entry{{Epoch: 1, LSN: 3}}}, func(c Counters) uint64 { return c.StaleEpoch }},
		{"stale append response", primaryA, Message{Type: MsgAppendResp, From: "B", Epoch: 1, Match: 2}, func(c Counters) uint64 { return c.StaleEpoch }},
		{"append from a stranger", backupB, Message{Type: MsgAppend, From: "X", Epoch: 9, PrevLSN: 2, PrevEpoch: 2, Entries: []Entry{{Epoch: 9, LSN: 3}}}, func(c Counters) uint64 { return c.Forged }},
		{"second primary in our epoch", primaryA, Message{Type: MsgAppend, From: "B", Epoch: 2, PrevLSN: 2, PrevEpoch: 2, Entries: []Entry{{Epoch: 2, LSN: 3}}}, func(c Counters) uint64 { return c.Forged }},
		{"arbiter answer from a stranger", primaryA, Message{Type: MsgArbiterResp, From: "X", Epoch: 5, OK: true, Record: Record{Version: Version{5, 0}, Primary: "B"}}, func(c Counters) uint64 { return c.Forged }},
		{"agent answer from a stranger", backupB, Message{Type: MsgAgentResp, From: "agentB", Epoch: 1, Down: true, Fenced: true}, func(c Counters) uint64 { return c.Forged }},
		{"operator command from a member", backupB, Message{Type: MsgForcePromote, From: "A"}, func(c Counters) uint64 { return c.Forged }},
		{"handover from a stranger", backupB, Message{Type: MsgHandover, From: "X", Epoch: 2, LSN: 2}, func(c Counters) uint64 { return c.Forged }},
		{"ack from a stranger", primaryA, Message{Type: MsgAppendResp, From: "X", Epoch: 2, Match: 2}, func(c Counters) uint64 { return c.Forged }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.core()
			before := snapOf(m)
			rd := m.Step(c.msg)
			if c.count(m.Counters()) != 1 {
				t.Fatalf("not counted: %+v", m.Counters())
			}
			if rd.HardState != nil || rd.Truncate != nil || len(rd.Entries) != 0 || len(rd.Actions) != 0 {
				t.Fatalf("rejected input produced state changes: %+v", rd)
			}
			if after := snapOf(m); !reflect.DeepEqual(before, after) {
				t.Fatalf("state changed:\n%+v\n%+v", before, after)
			}
		})
	}
}

func TestBadInput_Arbiter(t *testing.T) {
	rec := Record{Version: Version{2, 3}, Primary: "A", Backup: "B", BackupActive: true}
	cases := []struct {
		name  string
		msg   Message
		count func(Counters) uint64
	}{
		{"unknown type", Message{Type: MsgType(99), From: "A", Epoch: 2}, func(c Counters) uint64 { return c.UnknownType }},
		{"append sent to the arbiter", Message{Type: MsgAppend, From: "A", Epoch: 2}, func(c Counters) uint64 { return c.UnknownType }},
		{"unknown op", Message{Type: MsgArbiterReq, From: "A", Epoch: 2, Op: ArbiterOp(42), Seen: rec.Version}, func(c Counters) uint64 { return c.UnknownType }},
		{"stale epoch", Message{Type: MsgArbiterReq, From: "A", Epoch: 1, Op: OpBackupInactive, Seen: rec.Version}, func(c Counters) uint64 { return c.StaleEpoch }},
		{"non-member", Message{Type: MsgArbiterReq, From: "X", Epoch: 2, Op: OpTakeover, Seen: rec.Version}, func(c Counters) uint64 { return c.Forged }},
		{"backup claims primary", Message{Type: MsgArbiterReq, From: "B", Epoch: 2, Op: OpBackupInactive, Seen: rec.Version}, func(c Counters) uint64 { return c.Forged }},
		{"primary claims backup", Message{Type: MsgArbiterReq, From: "A", Epoch: 2, Op: OpTakeover, Seen: rec.Version}, func(c Counters) uint64 { return c.Forged }},
		{"seed by a member", Message{Type: MsgArbiterSeed, From: "A", Record: Record{Version: Version{9, 0}}}, func(c Counters) uint64 { return c.Forged }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := NewArbiter(ArbiterConfig{ID: "arb", Members: [2]ID{"A", "B"}, QoS: tQoS}, ArbiterState{Seeded: true, Record: rec}, 0)
			a.Tick(100)
			rd := a.Step(c.msg)
			if c.count(a.Counters()) != 1 {
				t.Fatalf("not counted: %+v", a.Counters())
			}
			if rd.ArbiterState != nil || a.State().Record != rec {
				t.Fatalf("state changed: %+v", a.State())
			}
			for _, m := range rd.Messages {
				if m.OK {
					t.Fatalf("rejected request answered OK")
				}
			}
		})
	}
}

func TestBadInput_Agent(t *testing.T) {
	cases := []struct {
		name  string
		msg   Message
		count func(Counters) uint64
	}{
		{"unknown type", Message{Type: MsgType(77), From: "B"}, func(c Counters) uint64 { return c.UnknownType }},
		{"append sent to an agent", Message{Type: MsgAppend, From: "B"}, func(c Counters) uint64 { return c.UnknownType }},
		{"fence query from a stranger", Message{Type: MsgAgentQuery, From: "X"}, func(c Counters) uint64 { return c.Forged }},
		{"fence query from its own member", Message{Type: MsgAgentQuery, From: "A"}, func(c Counters) uint64 { return c.Forged }},
		{"forged fence-done", Message{Type: MsgFenceDone, From: "B"}, func(c Counters) uint64 { return c.Forged }},
		{"forged member status", Message{Type: MsgMemberStatus, From: "B", Up: false}, func(c Counters) uint64 { return c.Forged }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewAgent(AgentConfig{ID: "agentA", Member: "A", Peer: "B"}, AgentState{})
			rd := g.Step(c.msg)
			if c.count(g.Counters()) != 1 {
				t.Fatalf("not counted: %+v", g.Counters())
			}
			if len(rd.Actions) != 0 || rd.AgentState != nil || len(rd.Messages) != 0 {
				t.Fatalf("rejected input acted: %+v", rd)
			}
		})
	}
}

// The agent fences, persists, and only then answers with the journal tail.
func TestAgent_FenceThenPersistThenTail(t *testing.T) {
	g := NewAgent(AgentConfig{ID: "agentA", Member: "A", Peer: "B"}, AgentState{})
	g.Step(Message{Type: MsgMemberStatus, From: "agentA", Up: false})
	rd := g.Step(Message{Type: MsgAgentQuery, From: "B", FromLSN: 2, FromEpoch: 1})
	if len(rd.Actions) != 1 || rd.Actions[0].Kind != ActFence || rd.Actions[0].Member != "A" || len(rd.Messages) != 0 {
		t.Fatalf("agent must fence before answering: %+v", rd)
	}
	j := []Entry{{Epoch: 1, LSN: 1, Marker: true}, {Epoch: 1, LSN: 2}, {Epoch: 1, LSN: 3}, {Epoch: 1, LSN: 4}}
	rd = g.Step(Message{Type: MsgFenceDone, From: "agentA", Epoch: 1, Entries: j})
	if rd.AgentState == nil || rd.AgentState.Fences != 1 {
		t.Fatalf("fence must be persisted with the answer: %+v", rd)
	}
	if len(rd.Messages) != 1 || !rd.Messages[0].Down || !rd.Messages[0].Fenced || len(rd.Messages[0].Entries) != 2 || rd.Messages[0].Entries[0].LSN != 3 {
		t.Fatalf("tail after LSN 2 expected: %+v", rd.Messages)
	}
	// a query whose position does not match the journal gets the whole journal
	g.Step(Message{Type: MsgAgentQuery, From: "B", FromLSN: 3, FromEpoch: 7})
	rd = g.Step(Message{Type: MsgFenceDone, From: "agentA", Epoch: 1, Entries: j})
	if !rd.Messages[0].FullLog || len(rd.Messages[0].Entries) != 4 {
		t.Fatalf("mismatched position should get the full journal: %+v", rd.Messages[0])
	}
}
