package failover

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// tier is a deterministic, hand-driven test bed: members A and B, the
// arbiter and the two agents, FIFO links with one tick of latency, directed
// cuts between hosts, crashes that keep only what was persisted.
type tier struct {
	t   *testing.T
	now Tick

	cores   map[ID]any // *Member, *Arbiter, *Agent; nil = down
	cfgM    map[ID]MemberConfig
	disk    map[ID]HardState
	journal map[ID][]Entry // after base[id]
	base    map[ID]Base
	arbDisk ArbiterState
	agDisk  map[ID]AgentState
	cuts    map[[2]string]bool
	queue   []Message
	trace   []string
	acts    []who // every action, in order
	mut     *Mutations
}

type who struct {
	id ID
	a  Action
}

const tQoS = 10

var genesisRec = Record{Version: Version{Epoch: 1}, Primary: "A", Backup: "B", BackupActive: true, Mode: ModeArbiter}

func newTier(t *testing.T) *tier {
	t.Helper()
	return newTierWith(t)
}

// newTierWith is newTier with async members (on their own hosts) that the
// primary ships the journal to.
func newTierWith(t *testing.T, asyncs ...ID) *tier {
	t.Helper()
	tr := &tier{t: t, cores: map[ID]any{}, cfgM: map[ID]MemberConfig{}, disk: map[ID]HardState{}, journal: map[ID][]Entry{}, base: map[ID]Base{},
		agDisk: map[ID]AgentState{}, cuts: map[[2]string]bool{}, mut: &Mutations{}}
	marker := Entry{Epoch: 1, LSN: 1, Marker: true}
	for _, id := range []ID{"A", "B"} {
		peer := ID("B")
		if id == "B" {
			peer = "A"
		}
		tr.cfgM[id] = MemberConfig{ID: id, Peer: peer, PeerAgent: "agent" + peer, Arbiter: "arb", Asyncs: asyncs, QoS: tQoS, Heartbeat: 2, Retry: 3, Mutations: tr.mut}
		hs := HardState{Epoch: 1, Role: RoleBackup, Known: genesisRec}
		if id == "A" {
			hs.Role, hs.BackupActive = RolePrimary, true
		}
		tr.disk[id] = hs
		tr.journal[id] = []Entry{marker}
		tr.start(id)
		tr.start("agent" + id)
	}
	for _, id := range asyncs {
		tr.cfgM[id] = MemberConfig{ID: id, Async: true, Failover: []ID{"A", "B"}, QoS: tQoS, Heartbeat: 2, Retry: 3, Mutations: tr.mut}
		tr.disk[id] = HardState{Epoch: 1, Role: RoleAsync}
		tr.journal[id] = []Entry{marker}
		tr.start(id)
	}
	tr.arbDisk = ArbiterState{Seeded: true, Record: genesisRec}
	tr.start("arb")
	return tr
}

func host(id ID) string {
	switch id {
	case "A", "agentA":
		return "A"
	case "B", "agentB":
		return "B"
	case "arb":
		return "arb"
	}
	return string(id)
}

func (tr *tier) start(id ID) {
	switch {
	case id == "arb":
		tr.cores[id] = NewArbiter(ArbiterConfig{ID: "arb", Members: [2]ID{"A", "B"}, QoS: tQoS, Mutations: tr.mut}, tr.arbDisk, tr.now)
	case strings.HasPrefix(string(id), "agent"):
		m := ID(strings.TrimPrefix(string(id), "agent"))
		tr.cores[id] = NewAgent(AgentConfig{ID: id, Member: m, Peer: tr.cfgM[m].Peer}, tr.agDisk[id])
	default:
		tr.cores[id] = NewMember(tr.cfgM[id], tr.disk[id], tr.base[id], tr.journal[id], tr.now)
	}
}

func (tr *tier) m(id ID) *Member {
	m, _ := tr.cores[id].(*Member)
	return m
}
func (tr *tier) arb() *Arbiter { a, _ := tr.cores["arb"].(*Arbiter); return a }

func (tr *tier) crash(id ID)   { tr.cores[id] = nil; tr.logf("CRASH %s", id) }
func (tr *tier) restart(id ID) { tr.start(id); tr.logf("RESTART %s", id) }

// cut cuts the directed links from host a to host b (and back if both).
func (tr *tier) cut(a, b string, both bool) {
	tr.cuts[[2]string{a, b}] = true
	if both {
		tr.cuts[[2]string{b, a}] = true
	}
}
func (tr *tier) isolate(h string) {
	for _, o := range []string{"A", "B", "arb"} {
		if o != h {
			tr.cut(h, o, true)
		}
	}
}
func (tr *tier) heal() { tr.cuts = map[[2]string]bool{} }

func (tr *tier) logf(format string, args ...any) {
	tr.trace = append(tr.trace, fmt.Sprintf("t=%d ", tr.now)+fmt.Sprintf(format, args...))
}

func (tr *tier) dump() string { return strings.Join(tr.trace, "\n") }

// process executes a Ready: persist, send, act.
func (tr *tier) process(id ID, rd Ready) {
	if rd.Truncate != nil && rd.Truncate.After < tr.last(id) {
		if rd.Truncate.After < tr.base[id].LSN {
			tr.t.Fatalf("%s truncates after %d, below its base %d", id, rd.Truncate.After, tr.base[id].LSN)
		}
		tr.journal[id] = slices.Clone(tr.journal[id][:rd.Truncate.After-tr.base[id].LSN])
	}
	if rd.HardState != nil {
		tr.disk[id] = *rd.HardState
	}
	if len(rd.Entries) > 0 {
		tr.journal[id] = append(slices.Clone(tr.journal[id]), rd.Entries...)
	}
	if rd.ArbiterState != nil {
		tr.arbDisk = *rd.ArbiterState
	}
	if rd.AgentState != nil {
		tr.agDisk[id] = *rd.AgentState
	}
	for _, e := range rd.Events {
		tr.logf("  %s event %s: %s", id, e.Kind, e.Detail)
	}
	for _, m := range rd.Messages {
		if tr.cuts[[2]string{host(m.From), host(m.To)}] {
			tr.logf("  cut %v", m)
			continue
		}
		tr.queue = append(tr.queue, m)
	}
	for _, a := range rd.Actions {
		tr.acts = append(tr.acts, who{id, a})
		tr.logf("  %s ACTION %v", id, a)
		if a.Kind == ActFence {
			tr.fence(id, a.Member)
		}
	}
}

func (tr *tier) fence(agent, member ID) {
	tr.cores[member] = nil
	hs := tr.disk[member]
	hs.Fenced = true
	tr.disk[member] = hs
	if g, ok := tr.cores[agent].(*Agent); ok && g != nil {
		b := tr.base[member]
		tr.process(agent, g.Step(Message{Type: MsgFenceDone, From: agent, To: agent, Epoch: hs.Epoch, PrevLSN: b.LSN, PrevEpoch: b.Epoch, Entries: slices.Clone(tr.journal[member])}))
	}
}

func (tr *tier) deliver(m Message) {
	c := tr.cores[m.To]
	if c == nil {
		tr.logf("  drop (down) %v", m)
		return
	}
	tr.logf("deliver %v", m)
	var rd Ready
	switch x := c.(type) {
	case *Member:
		if x == nil {
			return
		}
		rd = x.Step(m)
	case *Arbiter:
		if x == nil {
			return
		}
		rd = x.Step(m)
	case *Agent:
		if x == nil {
			return
		}
		mem := ID(strings.TrimPrefix(string(m.To), "agent"))
		tr.process(m.To, x.Step(Message{Type: MsgMemberStatus, From: m.To, To: m.To, Up: tr.m(mem) != nil, Fenced: tr.disk[mem].Fenced}))
		rd = x.Step(m)
	}
	tr.process(m.To, rd)
}

// inject sends a message from outside (client or operator), subject to no cuts.
func (tr *tier) inject(m Message) { tr.queue = append(tr.queue, m) }

func (tr *tier) write(to ID, v string) {
	tr.inject(Message{Type: MsgPropose, From: "client", To: to, Data: []byte(v)})
}

func (tr *tier) operator(to ID, m Message) {
	m.From, m.To = OperatorID, to
	tr.inject(m)
}

// run advances n ticks; every tick delivers what was queued, then ticks all cores.
func (tr *tier) run(n int) {
	for range n {
		tr.now++
		q := tr.queue
		tr.queue = nil
		for _, m := range q {
			tr.deliver(m)
		}
		for _, id := range append([]ID{"A", "B", "arb"}, tr.cfgM["A"].Asyncs...) {
			switch x := tr.cores[id].(type) {
			case *Member:
				if x != nil {
					tr.process(id, x.Tick(tr.now))
				}
			case *Arbiter:
				if x != nil {
					tr.process(id, x.Tick(tr.now))
				}
			}
		}
	}
}

// acked returns the highest LSN id acknowledged to clients in epoch e.
func (tr *tier) acked(id ID, e Epoch) LSN {
	var l LSN
	for _, w := range tr.acts {
		if w.id == id && w.a.Kind == ActAckClients && w.a.Epoch == e && w.a.UpTo > l {
			l = w.a.UpTo
		}
	}
	return l
}

func (tr *tier) actions(id ID, k ActionKind) []Action {
	var out []Action
	for _, w := range tr.acts {
		if w.id == id && w.a.Kind == k {
			out = append(out, w.a)
		}
	}
	return out
}

func (tr *tier) mark() int { return len(tr.acts) }

func (tr *tier) actionsSince(mark int, id ID, k ActionKind) []Action {
	var out []Action
	for _, w := range tr.acts[mark:] {
		if w.id == id && w.a.Kind == k {
			out = append(out, w.a)
		}
	}
	return out
}

func (tr *tier) hasData(id ID, v string) bool {
	for _, e := range tr.journal[id] {
		if string(e.Data) == v {
			return true
		}
	}
	return false
}

// last is the last LSN in id's durable journal.
func (tr *tier) last(id ID) LSN { return tr.base[id].LSN + LSN(len(tr.journal[id])) }

// purge removes id's journal records up to upTo from its "disk" and tells
// its core, as a shell does; it fails the test if the core does not allow it.
func (tr *tier) purge(id ID, upTo LSN, released ...ID) {
	tr.t.Helper()
	m := tr.m(id)
	if allowed := m.PurgeableUpTo(released); upTo > allowed {
		tr.fatalf("%s may purge only up to %d, not %d", id, allowed, upTo)
	}
	b := tr.base[id]
	epoch := m.epochAt(upTo)
	tr.journal[id] = slices.Clone(tr.journal[id][upTo-b.LSN:])
	tr.base[id] = Base{LSN: upTo, Epoch: epoch}
	tr.process(id, m.Purged(upTo, released))
	if m.Base() != tr.base[id] {
		tr.fatalf("%s core base %v, disk base %v", id, m.Base(), tr.base[id])
	}
}

func (tr *tier) fatalf(format string, args ...any) {
	tr.t.Helper()
	tr.t.Fatalf(format+"\ntrace:\n%s", append(args, tr.dump())...)
}

// steady writes n values through A and runs until they are acknowledged.
func (tr *tier) steady(prefix string, n int) {
	tr.t.Helper()
	tr.steady2("A", prefix, n)
}

// steady2 is steady through member id.
func (tr *tier) steady2(id ID, prefix string, n int) {
	tr.t.Helper()
	for i := range n {
		tr.write(id, fmt.Sprintf("%s%d", prefix, i))
	}
	tr.run(6)
}
