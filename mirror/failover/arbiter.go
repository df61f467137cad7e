package failover

import "fmt"

// ArbiterConfig configures an Arbiter core for one tier.
type ArbiterConfig struct {
	ID      ID
	Members [2]ID // the two failover members
	DR      []ID  // dr members: may read the record and ask OpPromoteDR
	QoS     Tick  // the arbiter has "lost" a member it has not heard from for longer

	// Mutations: TEST ONLY deliberate bugs (zero value = correct).
	Mutations *Mutations
}

// Arbiter is the deterministic core of the arbiter for one tier: a durable
// compare-and-set register versioned by (epoch, seq). Every decision is a CAS
// on the version the asker last saw and is persisted before it is answered.
// After losing its disk (state not Seeded) it answers nothing until re-seeded
// by the operator or from the records of both failover members.
type Arbiter struct {
	cfg      ArbiterConfig
	st       ArbiterState
	now      Tick
	lastSeen map[ID]Tick
	reseed   map[ID]Record
	counters Counters
	rd       Ready
}

// NewArbiter (re)starts an arbiter from its durable state. It treats every
// member as just seen, so it grants nothing for a QoS after a restart.
func NewArbiter(cfg ArbiterConfig, st ArbiterState, now Tick) *Arbiter {
	if cfg.QoS == 0 {
		cfg.QoS = 10
	}
	if cfg.Mutations == nil {
		cfg.Mutations = &Mutations{}
	}
	a := &Arbiter{cfg: cfg, st: st, now: now, lastSeen: map[ID]Tick{}, reseed: map[ID]Record{}}
	for _, m := range cfg.Members {
		a.lastSeen[m] = now
	}
	return a
}

func (a *Arbiter) State() ArbiterState { return a.st }
func (a *Arbiter) Counters() Counters  { return a.counters }

// Tick advances the arbiter's time.
func (a *Arbiter) Tick(now Tick) Ready {
	if now > a.now {
		a.now = now
	}
	return a.take()
}

func (a *Arbiter) take() Ready { rd := a.rd; a.rd = Ready{}; return rd }

func (a *Arbiter) event(kind, format string, args ...any) {
	a.rd.Events = append(a.rd.Events, Event{Kind: kind, Detail: fmt.Sprintf(format, args...)})
}

func (a *Arbiter) isMember(id ID) bool { return id == a.cfg.Members[0] || id == a.cfg.Members[1] }

func (a *Arbiter) isDR(id ID) bool {
	for _, d := range a.cfg.DR {
		if d == id {
			return true
		}
	}
	return false
}

func (a *Arbiter) other(id ID) ID {
	if id == a.cfg.Members[0] {
		return a.cfg.Members[1]
	}
	return a.cfg.Members[0]
}

func (a *Arbiter) commit(rec Record, req Message, why string) {
	a.st.Record = rec
	if !a.cfg.Mutations.ArbiterForget { // MUTATION (c) skips the persist
		st := a.st
		a.rd.ArbiterState = &st
	}
	a.event("decision", "%s by %s: %v", why, req.From, rec)
	a.reply(req, true)
}

func (a *Arbiter) reply(req Message, ok bool) {
	a.rd.Messages = append(a.rd.Messages, Message{Type: MsgArbiterResp, From: a.cfg.ID, To: req.From,
		Epoch: a.st.Record.Version.Epoch, Op: req.Op, Seen: req.Seen, OK: ok, Record: a.st.Record, Session: req.Session})
}

// Step handles a member request or an operator seed.
func (a *Arbiter) Step(m Message) Ready {
	switch m.Type {
	case MsgArbiterReq, MsgArbiterSeed:
	default:
		a.counters.UnknownType++
		a.event("reject", "message type %v from %s", m.Type, m.From)
		return a.take()
	}
	if m.Type == MsgArbiterSeed {
		if m.From != OperatorID {
			a.counters.Forged++
			return a.take()
		}
		a.st = ArbiterState{Seeded: true, Record: m.Record}
		st := a.st
		a.rd.ArbiterState = &st
		a.event("seeded", "by operator: %v", m.Record)
		return a.take()
	}
	dr := a.isDR(m.From)
	if !a.isMember(m.From) && !(dr && (m.Op == OpRead || m.Op == OpPromoteDR)) {
		a.counters.Forged++
		a.event("reject", "request %v from %s", m.Op, m.From)
		return a.take()
	}
	if m.Op < OpRead || m.Op > OpReopen || (m.Op == OpPromoteDR && !dr) {
		a.counters.UnknownType++
		return a.take()
	}
	if dr {
		if !a.st.Seeded {
			return a.take() // not part of a re-seed; answers nothing from an empty state
		}
	} else {
		a.lastSeen[m.From] = a.now
	}
	if !a.st.Seeded {
		a.counters.Unseeded++
		if m.Op != OpReport {
			// no answer: a challenge asking for the member's record; the member
			// raises its session first so it can never act on a forgotten answer
			a.rd.Messages = append(a.rd.Messages, Message{Type: MsgArbiterResp, From: a.cfg.ID, To: m.From, Op: m.Op, Session: m.Session, Reseed: true})
			return a.take()
		}
		a.reseed[m.From] = m.Known
		r0, ok0 := a.reseed[a.cfg.Members[0]]
		r1, ok1 := a.reseed[a.cfg.Members[1]]
		if ok0 && ok1 {
			rec := r0
			if r0.Version.Less(r1.Version) {
				rec = r1
			}
			if rec.Primary != "" {
				a.st = ArbiterState{Seeded: true, Record: rec}
				st := a.st
				a.rd.ArbiterState = &st
				a.event("seeded", "from both members' records: %v", rec)
			}
		}
		return a.take() // answers nothing from an empty state
	}
	rec := a.st.Record
	if m.Op == OpRead || m.Op == OpReport {
		a.reply(m, true)
		return a.take()
	}
	if m.Epoch < rec.Version.Epoch {
		a.counters.StaleEpoch++
		a.reply(m, false) // refusal carries the current record so the asker learns the epoch
		return a.take()
	}
	if m.Seen != rec.Version {
		a.reply(m, false)
		return a.take()
	}
	n := rec
	n.Version.Seq++
	switch m.Op {
	case OpBackupInactive, OpBackupActive, OpHandover:
		if m.From != rec.Primary || m.Epoch != rec.Version.Epoch {
			a.counters.Forged++
			a.reply(m, false)
			return a.take()
		}
		switch m.Op {
		case OpBackupInactive:
			n.BackupActive = false
			a.commit(n, m, "backup no longer active")
		case OpBackupActive:
			n.BackupActive = true
			a.commit(n, m, "backup active again")
		case OpHandover:
			n = Record{Version: Version{Epoch: rec.Version.Epoch + 1}, Primary: rec.Backup, Backup: rec.Primary,
				BackupActive: true, Mode: rec.Mode, ForkLSN: m.LSN}
			a.commit(n, m, "planned handover")
		}
	case OpArbiterMode:
		if m.Epoch < rec.Version.Epoch || (m.Epoch == rec.Version.Epoch && m.From != rec.Primary) {
			a.counters.Forged++
			a.reply(m, false)
			return a.take()
		}
		if m.Epoch > rec.Version.Epoch {
			n.Version = Version{Epoch: m.Epoch}
		}
		n.Primary, n.Backup, n.BackupActive, n.Mode = m.From, a.other(m.From), true, ModeArbiter
		a.commit(n, m, "arbiter-controlled, backup active")
	case OpPromoteDR:
		// The operator promotes a dr member: only once neither failover
		// member has been heard from for longer than the QoS. (That does
		// not prove them dead — a pair in agent-controlled mode commits
		// without the arbiter — so the operator's statement is required
		// too; this record keeps both from acting as primary once they
		// hear from the arbiter again.)
		for _, f := range a.cfg.Members {
			if a.now-a.lastSeen[f] <= a.cfg.QoS {
				a.event("refuse", "dr promotion of %s: failover member %s seen %d ticks ago", m.From, f, a.now-a.lastSeen[f])
				a.reply(m, false)
				return a.take()
			}
		}
		n = Record{Version: Version{Epoch: max(rec.Version.Epoch, m.Epoch) + 1}, Primary: m.From,
			BackupActive: false, Mode: ModeAgent, ForkLSN: m.LSN}
		a.commit(n, m, "dr member promoted by the operator")
	case OpReopen:
		// The primary restarted and cannot reach its backup: it may have
		// shipped records it never made durable, so it must not write at
		// LSNs of this epoch again. It continues alone in a new epoch; the
		// backup, not active, takes the new epoch's records over its tail.
		if m.From != rec.Primary || m.Epoch != rec.Version.Epoch {
			a.counters.Forged++
			a.reply(m, false)
			return a.take()
		}
		n = Record{Version: Version{Epoch: rec.Version.Epoch + 1}, Primary: m.From, Backup: rec.Backup,
			BackupActive: false, Mode: ModeArbiter, ForkLSN: m.LSN}
		a.commit(n, m, "restarted primary reopens in a new epoch")
	case OpTakeover:
		if m.From != rec.Backup || m.Epoch != rec.Version.Epoch {
			a.counters.Forged++
			a.reply(m, false)
			return a.take()
		}
		if !rec.BackupActive || rec.Mode != ModeArbiter || a.now-a.lastSeen[rec.Primary] <= a.cfg.QoS {
			a.event("refuse", "takeover by %s: active=%v mode=%v primary seen %d ticks ago", m.From, rec.BackupActive, rec.Mode, a.now-a.lastSeen[rec.Primary])
			a.reply(m, false)
			return a.take()
		}
		n = Record{Version: Version{Epoch: rec.Version.Epoch + 1}, Primary: m.From, Backup: rec.Primary,
			BackupActive: false, Mode: ModeArbiter, ForkLSN: m.LSN}
		a.commit(n, m, "backup granted takeover")
	}
	return a.take()
}
