package sim

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/tandemhealth/tandem/mirror/failover"
)

type (
	ID    = failover.ID
	Tick  = failover.Tick
	LSN   = failover.LSN
	Epoch = failover.Epoch
)

// Options select one run. The zero Mutations value is the correct protocol.
type Options struct {
	Seed      uint64
	Ticks     Tick // fault phase length (default 600)
	Quiesce   Tick // max ticks to quiesce after healing (default 600)
	Trace     bool // record the event trace
	Mutations failover.Mutations
}

// Result of one run.
type Result struct {
	Seed       uint64
	Violations []string
	Trace      []string
	Steps      int
	Acked      LSN   // acknowledged history length at the end
	MaxEpoch   Epoch // highest epoch reached
	Digest     uint64
}

type kind uint8

const (
	kMember kind = iota
	kArbiter
	kAgent
)

type node struct {
	id          ID
	host        string
	kind        kind
	up          bool
	downUntil   Tick
	downSince   Tick
	pausedUntil Tick

	mcfg failover.MemberConfig
	acfg failover.ArbiterConfig
	gcfg failover.AgentConfig
	m    *failover.Member
	a    *failover.Arbiter
	g    *failover.Agent

	// durable state ("disk"): only what a core asked to persist. log and
	// hashes are the whole history from LSN 1 (the checker's view); the
	// member's journal is log[base:], records up to base being purged (or,
	// after a re-seed, never held: they are the snapshot's content).
	hs      failover.HardState
	log     []failover.Entry
	base    LSN
	hashes  []uint64
	arb     failover.ArbiterState
	agentSt failover.AgentState

	agentOf ID // agent: its member
}

type inflight struct {
	msg  failover.Message
	at   Tick
	sent Tick
}

// holdFor bounds how long a message to a process that is down may wait for
// it: a sender's link keeps the frames queued while its connection is down
// and, if its next dial reaches the restarted process, sends them there (it
// drops them only when a dial fails).
const holdFor = 120

type cut struct {
	from, to string
	until    Tick
}

type world struct {
	opt   Options
	rng   *rand.Rand
	now   Tick
	nodes []*node
	byID  map[ID]*node
	net   []inflight
	cuts  []cut
	steps int

	loss, dup float64
	maxDelay  int
	faultRate float64
	healing   bool

	ackedHash   []uint64   // hash chain of the acknowledged history
	lostAcked   [][]uint64 // acknowledged histories an operator's forced promotion gave up
	commitOwner map[Epoch]ID
	nextVal     uint64
	maxEpoch    Epoch
	noFailUntil Tick
	alignUntil  Tick

	violations []string
	trace      []string
}

// QoS and friends, in ticks.
const (
	qos       = 10
	heartbeat = 2
	retry     = 3
)

func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func entryHash(prev uint64, e failover.Entry) uint64 {
	h := prev*31 + uint64(e.Epoch)*0x9e3779b97f4a7c15 + uint64(e.LSN)*0x632be59bd9b4e019
	if e.Marker {
		h += 0x1234567 + uint64(e.PrevEnd)
	}
	for _, b := range e.Data {
		h = h*131 + uint64(b)
	}
	return mix(h)
}

func newWorld(opt Options) *world {
	if opt.Ticks == 0 {
		opt.Ticks = 600
	}
	if opt.Quiesce == 0 {
		opt.Quiesce = 600
	}
	w := &world{opt: opt, rng: rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x5eed)), byID: map[ID]*node{}, commitOwner: map[Epoch]ID{}}
	w.loss = w.rng.Float64() * 0.1
	w.dup = w.rng.Float64() * 0.05
	w.maxDelay = 1 + w.rng.IntN(4)
	w.faultRate = 0.5 + w.rng.Float64()
	nAsync := w.rng.IntN(3)
	var asyncs []ID
	for i := range nAsync {
		asyncs = append(asyncs, ID(fmt.Sprintf("C%d", i+1)))
	}
	mut := &w.opt.Mutations
	genesis := failover.Record{Version: failover.Version{Epoch: 1}, Primary: "A", Backup: "B", BackupActive: true, Mode: failover.ModeArbiter}
	marker := failover.Entry{Epoch: 1, LSN: 1, Marker: true}
	for _, id := range []ID{"A", "B"} {
		peer := ID("B")
		if id == "B" {
			peer = "A"
		}
		n := &node{id: id, host: "h" + string(id), kind: kMember, up: true,
			mcfg: failover.MemberConfig{ID: id, Peer: peer, PeerAgent: "agent" + peer, Arbiter: "arb", Asyncs: asyncs,
				QoS: qos, Heartbeat: heartbeat, Retry: retry, Mutations: mut}}
		n.hs = failover.HardState{Epoch: 1, Role: failover.RoleBackup, Known: genesis}
		if id == "A" {
			n.hs.Role = failover.RolePrimary
			n.hs.BackupActive = true
		}
		n.log = []failover.Entry{marker}
		n.hashes = []uint64{entryHash(0, marker)}
		w.add(n)
		g := &node{id: "agent" + id, host: n.host, kind: kAgent, up: true, agentOf: id,
			gcfg: failover.AgentConfig{ID: "agent" + id, Member: id, Peer: peer}}
		w.add(g)
	}
	for _, id := range asyncs {
		n := &node{id: id, host: "h" + string(id), kind: kMember, up: true,
			mcfg: failover.MemberConfig{ID: id, Async: true, Failover: []ID{"A", "B"}, QoS: qos, Heartbeat: heartbeat, Retry: retry, Mutations: mut}}
		n.hs = failover.HardState{Epoch: 1, Role: failover.RoleAsync}
		n.log = []failover.Entry{marker}
		n.hashes = []uint64{entryHash(0, marker)}
		w.add(n)
	}
	arb := &node{id: "arb", host: "harb", kind: kArbiter, up: true,
		acfg: failover.ArbiterConfig{ID: "arb", Members: [2]ID{"A", "B"}, QoS: qos, Mutations: mut},
		arb:  failover.ArbiterState{Seeded: true, Record: genesis}}
	w.add(arb)
	for _, n := range w.nodes {
		w.start(n)
	}
	w.maxEpoch = 1
	return w
}

func (w *world) add(n *node) { w.nodes = append(w.nodes, n); w.byID[n.id] = n }

func (w *world) start(n *node) {
	n.up = true
	n.downUntil = 0
	switch n.kind {
	case kMember:
		n.m = failover.NewMember(n.mcfg, n.hs, n.journalBase(), n.log[n.base:], w.now)
	case kArbiter:
		n.a = failover.NewArbiter(n.acfg, n.arb, w.now)
	case kAgent:
		n.g = failover.NewAgent(n.gcfg, n.agentSt)
	}
}

// journalBase is where n's journal starts.
func (n *node) journalBase() failover.Base {
	b := failover.Base{LSN: n.base}
	if n.base > 0 {
		b.Epoch = n.log[n.base-1].Epoch
	}
	return b
}

func (w *world) crash(n *node, down Tick, why string) {
	if n.up {
		n.downSince = w.now
	}
	n.up = false
	n.m, n.a, n.g = nil, nil, nil
	n.downUntil = w.now + down
	w.tracef("CRASH %s (%s) until %d", n.id, why, n.downUntil)
}

func (w *world) tracef(format string, args ...any) {
	if w.opt.Trace {
		w.trace = append(w.trace, fmt.Sprintf("t=%d ", w.now)+fmt.Sprintf(format, args...))
	}
}

func (w *world) violate(format string, args ...any) {
	v := fmt.Sprintf("t=%d ", w.now) + fmt.Sprintf(format, args...)
	w.violations = append(w.violations, v)
	w.tracef("VIOLATION %s", v)
}

func (w *world) cutNow(from, to string) bool {
	for _, c := range w.cuts {
		if c.from == from && c.to == to {
			return true
		}
	}
	return false
}

func (w *world) host(id ID) string {
	if n := w.byID[id]; n != nil {
		return n.host
	}
	return "client"
}

func (w *world) send(m failover.Message) {
	if w.cutNow(w.host(m.From), w.host(m.To)) {
		w.tracef("  cut  %v", m)
		return
	}
	if !w.healing && w.rng.Float64() < w.loss {
		w.tracef("  lost %v", m)
		return
	}
	copies := 1
	if !w.healing && w.rng.Float64() < w.dup {
		copies = 2
	}
	for range copies {
		w.net = append(w.net, inflight{msg: m, at: w.now + Tick(w.rng.IntN(w.maxDelay)) + 1, sent: w.now})
	}
}

// process executes a Ready in the order the cores require: persist, send, act.
// A member's appends to its failover peer may leave before the persist when
// the core allows it (ShipsEarly), as the node does, with the commit they
// carry lowered to what is durable; a crash may then lose the Ready's
// records after the peer received them.
func (w *world) process(n *node, rd failover.Ready) {
	w.steps++
	if n.kind == kMember && n.m != nil && len(rd.Entries) > 0 && n.m.ShipsEarly() && rd.Pipelinable(n.hs) {
		durable := LSN(len(n.log))
		kept := rd.Messages[:0:0]
		for _, m := range rd.Messages {
			if m.Type == failover.MsgAppend && m.To == n.mcfg.Peer {
				m.Commit = min(m.Commit, durable)
				w.send(m)
			} else {
				kept = append(kept, m)
			}
		}
		rd.Messages = kept
		if !w.healing && w.rng.Float64() < 0.01*w.faultRate {
			w.crash(n, Tick(5+w.rng.IntN(30)), "shipped early, before fsync")
			return
		}
	}
	// persist
	if rd.Truncate != nil {
		if rd.Truncate.After < n.base {
			w.violate("core bug: %s truncates after %d, below its journal's base %d", n.id, rd.Truncate.After, n.base)
		} else if int(rd.Truncate.After) < len(n.log) {
			w.tracef("  %s truncate after %d (quarantine=%v)", n.id, rd.Truncate.After, rd.Truncate.Quarantine)
			n.log = n.log[:rd.Truncate.After]
			n.hashes = n.hashes[:rd.Truncate.After]
		}
	}
	if rd.HardState != nil {
		n.hs = *rd.HardState
		if n.hs.Epoch > w.maxEpoch {
			w.maxEpoch = n.hs.Epoch
		}
		if n.hs.NeedsRebuild && rd.HardState.Role == failover.RolePrimary && !n.hs.Fenced && !n.hs.SteppedDown {
			w.violate("needs-rebuild: %s needs a rebuild but holds the primary role in epoch %d", n.id, n.hs.Epoch)
		}
	}
	for _, e := range rd.Entries {
		if int(e.LSN) != len(n.log)+1 {
			w.violate("core bug: %s appends LSN %d after %d", n.id, e.LSN, len(n.log))
			continue
		}
		prev := uint64(0)
		if len(n.hashes) > 0 {
			prev = n.hashes[len(n.hashes)-1]
		}
		n.log = append(n.log, e)
		n.hashes = append(n.hashes, entryHash(prev, e))
	}
	if rd.ArbiterState != nil {
		n.arb = *rd.ArbiterState
	}
	if rd.AgentState != nil {
		n.agentSt = *rd.AgentState
	}
	if n.kind == kMember && n.m != nil && n.m.LastLSN() != LSN(len(n.log)) {
		w.violate("core bug: %s core journal %d != disk %d", n.id, n.m.LastLSN(), len(n.log))
	}
	if w.opt.Trace {
		if rd.HardState != nil && n.kind == kMember {
			hs := rd.HardState
			w.tracef("  %s persist e=%d role=%v mode=%v/%d active=%v asked=%v stepped=%v fenced=%v known=%v", n.id, hs.Epoch, hs.Role, hs.Mode, hs.ModeSeq, hs.BackupActive, hs.Asked, hs.SteppedDown, hs.Fenced, hs.Known)
		}
		if len(rd.Entries) > 0 {
			w.tracef("  %s append %d..%d", n.id, rd.Entries[0].LSN, rd.Entries[len(rd.Entries)-1].LSN)
		}
		if rd.ArbiterState != nil {
			w.tracef("  arb persist %v", rd.ArbiterState.Record)
		}
		for _, e := range rd.Events {
			w.tracef("  %s event %s: %s", n.id, e.Kind, e.Detail)
		}
	}
	// a crash between fsync and send loses everything not persisted
	if n.kind != kAgent && !w.healing && w.rng.Float64() < 0.002*w.faultRate {
		w.crash(n, Tick(5+w.rng.IntN(30)), "after fsync, before send")
		return
	}
	for _, m := range rd.Messages {
		if n.kind == kMember && n.hs.NeedsRebuild && m.Type == failover.MsgAppendResp && !m.Reject {
			w.violate("needs-rebuild: %s acknowledges %d although it needs a rebuild", n.id, m.Match)
		}
		w.send(m)
	}
	for _, a := range rd.Actions {
		w.act(n, a)
	}
}

func (w *world) act(n *node, a failover.Action) {
	switch a.Kind {
	case failover.ActAckClients:
		w.tracef("  %s ACK clients up to %d in epoch %d", n.id, a.UpTo, a.Epoch)
		if owner, ok := w.commitOwner[a.Epoch]; ok && owner != n.id {
			w.violate("invariant 2: %s and %s both commit in epoch %d", owner, n.id, a.Epoch)
		}
		w.commitOwner[a.Epoch] = n.id
		if int(a.UpTo) > len(n.hashes) {
			w.violate("core bug: %s acks %d beyond its durable journal %d", n.id, a.UpTo, len(n.hashes))
			return
		}
		k := min(int(a.UpTo), len(w.ackedHash))
		if k > 0 && n.hashes[k-1] != w.ackedHash[k-1] {
			w.violate("invariant 2: %s acks a history that forks from the acknowledged one at or before LSN %d", n.id, k)
			return
		}
		if int(a.UpTo) > len(w.ackedHash) {
			w.ackedHash = append(w.ackedHash, n.hashes[len(w.ackedHash):a.UpTo]...)
		}
	case failover.ActPromote:
		w.tracef("  %s PROMOTE epoch %d by %v (previous epoch ends at %d)", n.id, a.Epoch, a.Reason, a.UpTo)
		if n.hs.NeedsRebuild {
			w.violate("needs-rebuild: %s became primary of epoch %d by %v", n.id, a.Epoch, a.Reason)
		}
		if a.Reason != failover.PromoteForced && !w.hasAcked(n) {
			w.violate("invariant 3: %s took over epoch %d by %v without the acknowledged journal (has %d, acked %d)", n.id, a.Epoch, a.Reason, len(n.log), len(w.ackedHash))
		}
	case failover.ActFence:
		w.fence(w.byID[a.Member], n)
	default:
		w.tracef("  %s %v", n.id, a)
	}
}

func (w *world) hasAcked(n *node) bool {
	k := len(w.ackedHash)
	return k == 0 || len(n.hashes) >= k && n.hashes[k-1] == w.ackedHash[k-1]
}

// fence executes the agent's ActFence: kill the member, mark its data dir,
// then report the durable journal to the agent.
func (w *world) fence(m *node, agent *node) {
	if m.up {
		w.crash(m, Tick(20+w.rng.IntN(60)), "fenced by agent")
	} else if m.downUntil < w.now+10 {
		m.downUntil = w.now + 10
	}
	m.hs.Fenced = true
	w.tracef("  FENCE %s (disk epoch %d, journal %d)", m.id, m.hs.Epoch, len(m.log))
	if agent.g == nil {
		return
	}
	b := m.journalBase()
	rd := agent.g.Step(failover.Message{Type: failover.MsgFenceDone, From: agent.id, To: agent.id, Epoch: failover.FenceEpoch(m.hs),
		PrevLSN: b.LSN, PrevEpoch: b.Epoch, Entries: slices.Clone(m.log[m.base:])})
	w.process(agent, rd)
}

func (w *world) deliver(f inflight) {
	m := f.msg
	n := w.byID[m.To]
	if n == nil || !n.up {
		if n != nil && n.downUntil > 0 && w.now-f.sent < holdFor && w.rng.IntN(2) == 0 {
			w.tracef("  held (down) %v", m)
			f.at = max(w.now+1, n.downUntil) + Tick(w.rng.IntN(w.maxDelay))
			w.net = append(w.net, f)
			return
		}
		w.tracef("  drop (down) %v", m)
		return
	}
	w.tracef("deliver %v", m)
	var rd failover.Ready
	switch n.kind {
	case kMember:
		rd = n.m.Step(m)
	case kArbiter:
		rd = n.a.Step(m)
	case kAgent:
		mem := w.byID[n.agentOf]
		st := n.g.Step(failover.Message{Type: failover.MsgMemberStatus, From: n.id, To: n.id, Up: mem.up, Fenced: mem.hs.Fenced})
		w.process(n, st)
		rd = n.g.Step(m)
	}
	w.process(n, rd)
	w.check()
}

// check asserts invariants 1-4 of DESIGN §3.
func (w *world) check() {
	// invariant 1: the primary of the highest epoch holds every acknowledged write
	var top *node
	var topE Epoch
	for _, n := range w.nodes {
		if n.kind != kMember || n.hs.Role != failover.RolePrimary || n.hs.Fenced || n.hs.SteppedDown {
			continue
		}
		if n.hs.Epoch > topE {
			top, topE = n, n.hs.Epoch
		} else if n.hs.Epoch == topE {
			w.violate("invariant 2: %s and %s are both primary in epoch %d", top.id, n.id, topE)
		}
	}
	if top != nil && !w.hasAcked(top) {
		w.violate("invariant 1: primary %s of epoch %d lacks acknowledged writes (journal %d, acked %d)", top.id, topE, len(top.log), len(w.ackedHash))
	}
	// invariant 4: journals are prefixes of one history (log matching)
	for i, x := range w.nodes {
		if x.kind != kMember {
			continue
		}
		for _, y := range w.nodes[i+1:] {
			if y.kind != kMember {
				continue
			}
			l := min(len(x.log), len(y.log))
			for l > 0 && x.log[l-1].Epoch != y.log[l-1].Epoch {
				l--
			}
			if l > 0 && x.hashes[l-1] != y.hashes[l-1] {
				w.violate("invariant 4: %s and %s disagree at or before LSN %d (epoch %d)", x.id, y.id, l, x.log[l-1].Epoch)
			}
		}
	}
}

func (w *world) members(async bool) []*node {
	var out []*node
	for _, n := range w.nodes {
		if n.kind == kMember && n.mcfg.Async == async {
			out = append(out, n)
		}
	}
	return out
}

func (w *world) pick(ns []*node) *node { return ns[w.rng.IntN(len(ns))] }

func (w *world) chance(p float64) bool { return w.rng.Float64() < p*w.faultRate }

func (w *world) hosts() []string {
	var hs []string
	for _, n := range w.nodes {
		if !slices.Contains(hs, n.host) {
			hs = append(hs, n.host)
		}
	}
	return hs
}

func (w *world) operator(to *node, m failover.Message) {
	if to.m == nil {
		return
	}
	m.From, m.To = failover.OperatorID, to.id
	w.tracef("OPERATOR %v -> %s", m.Type, to.id)
	w.process(to, to.m.Step(m))
	w.check()
}

func (w *world) faults() {
	fo := w.members(false)
	hs := w.hosts()
	if w.chance(0.02) { // one-way link cut
		a, b := hs[w.rng.IntN(len(hs))], hs[w.rng.IntN(len(hs))]
		if a != b {
			w.cuts = append(w.cuts, cut{a, b, w.now + Tick(5+w.rng.IntN(80))})
			w.tracef("CUT %s -> %s", a, b)
		}
	}
	if w.chance(0.008) { // isolate a host both ways
		h := hs[w.rng.IntN(len(hs))]
		until := w.now + Tick(10+w.rng.IntN(80))
		for _, o := range hs {
			if o != h {
				w.cuts = append(w.cuts, cut{h, o, until}, cut{o, h, until})
			}
		}
		w.tracef("ISOLATE %s until %d", h, until)
	}
	if w.chance(0.01) {
		if n := w.pick(fo); n.up {
			w.crash(n, Tick(5+w.rng.IntN(60)), "crash")
		}
	}
	if w.chance(0.002) { // host crash: member and agent
		n := w.pick(fo)
		if n.up {
			w.crash(n, Tick(10+w.rng.IntN(60)), "host crash")
		}
		if g := w.byID["agent"+n.id]; g.up {
			w.crash(g, n.downUntil-w.now, "host crash")
		}
	}
	if as := w.members(true); len(as) > 0 && w.chance(0.005) {
		if n := w.pick(as); n.up {
			w.crash(n, Tick(5+w.rng.IntN(60)), "crash")
		}
	}
	arb := w.byID["arb"]
	if arb.up && w.chance(0.008) {
		if w.rng.IntN(4) == 0 {
			arb.arb = failover.ArbiterState{}
			w.crash(arb, Tick(1+w.rng.IntN(40)), "disk lost")
		} else {
			w.crash(arb, Tick(1+w.rng.IntN(40)), "crash")
		}
	}
	if w.chance(0.008) {
		n := w.pick(append(fo, arb))
		if n.up && n.pausedUntil <= w.now {
			n.pausedUntil = w.now + Tick(5+w.rng.IntN(40))
			w.tracef("PAUSE %s until %d", n.id, n.pausedUntil)
		}
	}
	if w.chance(0.003) && w.noFailUntil == 0 {
		w.noFailUntil = w.now + Tick(20+w.rng.IntN(80))
		for _, n := range fo {
			w.operator(n, failover.Message{Type: failover.MsgSetNoFailover, Flag: true})
		}
	} else if w.noFailUntil != 0 && w.now >= w.noFailUntil {
		w.noFailUntil = 0
		for _, n := range fo {
			w.operator(n, failover.Message{Type: failover.MsgSetNoFailover, Flag: false})
		}
	}
	if w.chance(0.003) && w.alignUntil == 0 {
		w.alignUntil = w.now + Tick(20+w.rng.IntN(80))
		n := w.pick(fo)
		w.operator(n, failover.Message{Type: failover.MsgSetAlignment, Alignment: failover.Alignment{Aligned: false, Reasons: []string{"roles digest differs"}}})
	} else if w.alignUntil != 0 && w.now >= w.alignUntil {
		w.alignUntil = 0
		w.align()
	}
	if w.chance(0.004) {
		for _, n := range fo {
			if n.m != nil && n.m.IsPrimary() {
				w.operator(n, failover.Message{Type: failover.MsgPlannedFailover})
			}
		}
	}
	if w.chance(0.002) { // forced promotion after the operator states the other member is gone
		for _, n := range fo {
			other := fo[0]
			if other == n {
				other = fo[1]
			}
			if n.m != nil && n.hs.Role == failover.RoleBackup && !other.up && other.downUntil-w.now > 10 {
				other.hs.Fenced = true
				w.tracef("OPERATOR states %s is gone (fence mark)", other.id)
				// the operator accepts the loss of what the backup lacks: the
				// acknowledged history is cut at its common prefix with n's journal
				common := 0
				for common < len(w.ackedHash) && common < len(n.hashes) && n.hashes[common] == w.ackedHash[common] {
					common++
				}
				saved := w.ackedHash
				w.ackedHash = slices.Clone(saved[:common])
				if common < len(saved) {
					w.lostAcked = append(w.lostAcked, saved)
				}
				// the operator's tool supplies the highest epoch recorded anywhere in the tier
				w.operator(n, failover.Message{Type: failover.MsgForcePromote, Epoch: w.maxEpoch})
				if n.hs.Role != failover.RolePrimary || len(n.hs.Losses) == 0 || int(n.hs.Losses[len(n.hs.Losses)-1].From) > common+1 {
					w.violate("invariant 3: forced promotion of %s did not record a data-loss decision covering LSN %d..", n.id, common+1)
				} else if common < len(saved) {
					w.tracef("  data loss accepted from LSN %d (acked history was %d)", common+1, len(saved))
				}
				break
			}
		}
	}
}

func (w *world) align() {
	for _, n := range w.members(false) {
		w.operator(n, failover.Message{Type: failover.MsgSetAlignment, Alignment: failover.Alignment{Aligned: true}})
	}
}

func (w *world) write() {
	fo := w.members(false)
	n := w.pick(fo)
	w.nextVal++
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], w.nextVal)
	w.send(failover.Message{Type: failover.MsgPropose, From: "client", To: n.id, Data: b[:]})
}

func (w *world) step() {
	// restarts, heals
	for _, n := range w.nodes {
		if !n.up && n.downUntil > 0 && w.now >= n.downUntil {
			w.tracef("RESTART %s", n.id)
			w.start(n)
		}
	}
	kept := w.cuts[:0]
	for _, c := range w.cuts {
		if c.until > w.now {
			kept = append(kept, c)
		}
	}
	w.cuts = kept
	// deliver due messages in random order
	var due, later []inflight
	for _, f := range w.net {
		n := w.byID[f.msg.To]
		if f.at <= w.now && (n == nil || n.pausedUntil <= w.now) {
			due = append(due, f)
		} else {
			later = append(later, f)
		}
	}
	w.net = later
	w.rng.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
	for _, f := range due {
		w.deliver(f)
	}
	// ticks
	for _, n := range w.nodes {
		if !n.up || n.pausedUntil > w.now {
			continue
		}
		var rd failover.Ready
		switch n.kind {
		case kMember:
			rd = n.m.Tick(w.now)
		case kArbiter:
			rd = n.a.Tick(w.now)
		default:
			continue
		}
		if !rd.Empty() {
			w.process(n, rd)
			w.check()
		}
	}
	w.purge()
	w.rebuild()
}

// retention is how long an async may be down before the primary stops
// holding the journal for it (the shells' journal.async_retention).
const retention = 20

// purge: now and then a member purges its journal, anywhere up to what its
// core allows. Asyncs down longer than the retention are released; now and
// then a running one too (the size cap). What is purged must have been
// acknowledged (in the history, or in one an operator's forced promotion
// explicitly gave up).
func (w *world) purge() {
	var released []ID
	for _, a := range w.members(true) {
		if (!a.up && w.now-a.downSince > retention) || w.rng.Float64() < 0.05 {
			released = append(released, a.id)
		}
	}
	for _, n := range w.members(false) {
		w.purgeOne(n, released)
	}
	for _, n := range w.members(true) {
		w.purgeOne(n, nil)
	}
}

func (w *world) purgeOne(n *node, released []ID) {
	if n.m == nil || n.pausedUntil > w.now || w.rng.Float64() >= 0.03 {
		return
	}
	allowed := n.m.PurgeableUpTo(released)
	if allowed <= n.base {
		return
	}
	upTo := n.base + 1 + LSN(w.rng.IntN(int(allowed-n.base)))
	acked := func(h []uint64) bool { return int(upTo) <= len(h) && n.hashes[upTo-1] == h[upTo-1] }
	if !acked(w.ackedHash) && !slices.ContainsFunc(w.lostAcked, acked) {
		w.violate("purge: %s may purge up to %d, beyond any acknowledged history (%d acked)", n.id, upTo, len(w.ackedHash))
		return
	}
	w.tracef("PURGE %s up to %d (allowed %d, released %v)", n.id, upTo, allowed, released)
	n.base = upTo
	w.process(n, n.m.Purged(upTo, released))
	if n.m != nil && n.m.Base() != n.journalBase() {
		w.violate("core bug: %s core base %v, journal base %v", n.id, n.m.Base(), n.journalBase())
	}
	w.check()
}

// rebuild: an operator re-seeds a member that needs a rebuild from a
// snapshot of the current primary at its commit point or base (always while
// healing, now and then during the faults).
func (w *world) rebuild() {
	var prim *node
	for _, n := range w.members(false) {
		if n.m != nil && n.m.IsPrimary() && n.m.Status() == failover.StatusPrimary && n.pausedUntil <= w.now {
			prim = n
		}
	}
	if prim == nil {
		return
	}
	for _, n := range w.nodes {
		if n.kind != kMember || n.m == nil || !n.hs.NeedsRebuild || (!w.healing && w.rng.Float64() >= 0.05) {
			continue
		}
		// a snapshot holds what the primary's store applied: committed
		// records, at least up to its base (purged only once committed)
		l := max(prim.m.Commit(), prim.base)
		hs, err := failover.Reseeded(n.hs, prim.hs.Epoch, n.mcfg.Async)
		if err != nil {
			w.tracef("REBUILD %s refused: %v", n.id, err)
			continue
		}
		w.tracef("REBUILD %s from %s's snapshot at %d (epoch %d)", n.id, prim.id, l, prim.hs.Epoch)
		n.hs = hs
		n.log = slices.Clone(prim.log[:l])
		n.hashes = slices.Clone(prim.hashes[:l])
		n.base = l
		n.m = failover.NewMember(n.mcfg, n.hs, n.journalBase(), nil, w.now)
		w.check()
	}
}

func (w *world) quiet() bool {
	var prim *node
	for _, n := range w.members(false) {
		if n.m != nil && n.m.IsPrimary() && n.m.Status() == failover.StatusPrimary {
			prim = n
		}
	}
	if prim == nil || prim.m.Commit() < LSN(len(prim.log)) {
		return false
	}
	for _, n := range w.nodes {
		if n.kind == kMember && (len(n.log) != len(prim.log) || n.hashes[len(n.hashes)-1] != prim.hashes[len(prim.hashes)-1]) {
			return false
		}
	}
	return true
}

// Run executes one seeded simulation.
func Run(opt Options) Result {
	w := newWorld(opt)
	for w.now = 1; w.now <= w.opt.Ticks && len(w.violations) == 0; w.now++ {
		w.faults()
		if w.rng.Float64() < 0.3 {
			w.write()
		}
		w.step()
	}
	// heal everything and quiesce: invariant 5
	if len(w.violations) == 0 {
		w.healing = true
		w.tracef("HEAL all faults")
		w.cuts = nil
		for _, n := range w.nodes {
			n.pausedUntil = 0
			if !n.up {
				n.downUntil = w.now
			}
		}
		w.noFailUntil, w.alignUntil = 0, 0
		end := w.now + w.opt.Quiesce
		aligned := false
		for ; w.now <= end && len(w.violations) == 0; w.now++ {
			w.step()
			if !aligned {
				aligned = true
				w.align()
				for _, n := range w.members(false) {
					w.operator(n, failover.Message{Type: failover.MsgSetNoFailover, Flag: false})
				}
			}
			if w.quiet() {
				break
			}
		}
		if len(w.violations) == 0 && !w.quiet() {
			var st []string
			for _, n := range w.nodes {
				if n.kind == kMember {
					s := "down"
					if n.m != nil {
						s = string(n.m.Status())
					}
					st = append(st, fmt.Sprintf("%s:%s/e%d/%d", n.id, s, n.hs.Epoch, len(n.log)))
				}
			}
			w.violate("invariant 5: members differ after quiescence: %s", strings.Join(st, " "))
		}
	}
	r := Result{Seed: opt.Seed, Violations: w.violations, Trace: w.trace, Steps: w.steps, Acked: LSN(len(w.ackedHash)), MaxEpoch: w.maxEpoch}
	for _, n := range w.nodes {
		if n.kind == kMember && len(n.hashes) > 0 {
			r.Digest = r.Digest*31 + n.hashes[len(n.hashes)-1]
		}
	}
	r.Digest = r.Digest*31 + uint64(w.steps)
	return r
}
