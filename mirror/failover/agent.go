package failover

import "fmt"

// AgentConfig configures an Agent core.
type AgentConfig struct {
	ID     ID
	Member ID // the member on this host
	Peer   ID // the other failover member: the only one allowed to ask for a fence
}

type agentQuery struct {
	from      ID
	fromLSN   LSN
	fromEpoch Epoch
}

// Agent is the deterministic core of the agent on a member's host: it reports
// whether its member runs, fences it on request (kill + mark the data dir, via
// ActFence executed by the shell) and hands over the member's durable journal
// tail. It answers a fence request only after the fence is done and persisted.
type Agent struct {
	cfg      AgentConfig
	st       AgentState
	up       bool
	fenced   bool // member's data dir carries the fence mark
	pending  []agentQuery
	counters Counters
	rd       Ready
}

// NewAgent (re)starts an agent from its durable state.
func NewAgent(cfg AgentConfig, st AgentState) *Agent {
	return &Agent{cfg: cfg, st: st}
}

func (g *Agent) State() AgentState  { return g.st }
func (g *Agent) Counters() Counters { return g.counters }

func (g *Agent) take() Ready { rd := g.rd; g.rd = Ready{}; return rd }

func (g *Agent) event(kind, format string, args ...any) {
	g.rd.Events = append(g.rd.Events, Event{Kind: kind, Detail: fmt.Sprintf(format, args...)})
}

// Step handles a query from the peer, a member status report from the shell
// (MsgMemberStatus: Up, Fenced = fence mark on disk) or the shell's report
// that a fence was executed (MsgFenceDone: Epoch and Entries = the member's
// durable hard-state epoch and journal, read from its disk).
func (g *Agent) Step(m Message) Ready {
	switch m.Type {
	case MsgMemberStatus:
		if m.From != g.cfg.ID {
			g.counters.Forged++
			return g.take()
		}
		g.up, g.fenced = m.Up, m.Fenced
	case MsgAgentQuery:
		if m.From != g.cfg.Peer {
			g.counters.Forged++
			g.event("reject", "fence query from %s, not the peer", m.From)
			return g.take()
		}
		if g.up && !g.fenced {
			g.rd.Messages = append(g.rd.Messages, Message{Type: MsgAgentResp, From: g.cfg.ID, To: m.From, Epoch: m.Epoch, Down: false})
			return g.take()
		}
		g.pending = append(g.pending, agentQuery{from: m.From, fromLSN: m.FromLSN, fromEpoch: m.FromEpoch})
		g.rd.Actions = append(g.rd.Actions, Action{Kind: ActFence, Member: g.cfg.Member})
		g.event("fence", "member %s down or fenced; fencing for %s", g.cfg.Member, m.From)
	case MsgFenceDone:
		if m.From != g.cfg.ID {
			g.counters.Forged++
			return g.take()
		}
		g.up, g.fenced = false, true
		g.st.Fences++
		g.st.LastFenced = m.Epoch
		st := g.st
		g.rd.AgentState = &st
		// m.Entries is the member's journal after its base (PrevLSN, PrevEpoch)
		base, last := m.PrevLSN, m.PrevLSN+LSN(len(m.Entries))
		epochAt := func(l LSN) Epoch {
			if l == base {
				return m.PrevEpoch
			}
			return m.Entries[l-base-1].Epoch
		}
		for _, q := range g.pending {
			resp := Message{Type: MsgAgentResp, From: g.cfg.ID, To: q.from, Epoch: m.Epoch, Down: true, Fenced: true,
				FromLSN: q.fromLSN, FromEpoch: q.fromEpoch}
			if q.fromLSN >= base && q.fromLSN <= last && (q.fromLSN == 0 || epochAt(q.fromLSN) == q.fromEpoch) {
				resp.Entries = append([]Entry(nil), m.Entries[q.fromLSN-base:]...)
			} else {
				resp.FullLog = true
				resp.PrevLSN, resp.PrevEpoch = base, m.PrevEpoch
				resp.Entries = append([]Entry(nil), m.Entries...)
			}
			g.rd.Messages = append(g.rd.Messages, resp)
		}
		g.pending = nil
	default:
		g.counters.UnknownType++
		g.event("reject", "message type %v from %s", m.Type, m.From)
	}
	return g.take()
}
