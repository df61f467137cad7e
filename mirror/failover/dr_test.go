package failover

import (
	"strings"
	"testing"
)

// drTier is a hand-driven tier for DR promotion: primary A (backup B is
// never started: the pair is gone once A crashes), a dr async C and a
// reporting async D; messages are delivered instantly between running cores.
type drTier struct {
	t     *testing.T
	now   Tick
	cores map[ID]*Member
	disk  map[ID]HardState
	jour  map[ID][]Entry
	cfg   map[ID]MemberConfig
	acts  map[ID][]Action
	evs   []string
	sent  []Message

	arb     *Arbiter // nil: no arbiter in this test
	arbDisk ArbiterState
}

func newDRTier(t *testing.T) *drTier {
	marker := Entry{Epoch: 1, LSN: 1, Marker: true}
	d := &drTier{t: t, cores: map[ID]*Member{}, disk: map[ID]HardState{}, jour: map[ID][]Entry{}, cfg: map[ID]MemberConfig{}, acts: map[ID][]Action{}}
	d.cfg["A"] = MemberConfig{ID: "A", Peer: "B", PeerAgent: "agentB", Arbiter: "arb", Asyncs: []ID{"C", "D"}, QoS: tQoS}
	d.cfg["C"] = MemberConfig{ID: "C", Arbiter: "arb", Async: true, Promotable: true, Failover: []ID{"A", "B", "D"}, Asyncs: []ID{"D"}, QoS: tQoS}
	d.cfg["D"] = MemberConfig{ID: "D", Arbiter: "arb", Async: true, Failover: []ID{"A", "B", "C"}, QoS: tQoS}
	// A commits alone (the arbiter recorded B not active): agent mode, consent.
	d.disk["A"] = HardState{Epoch: 1, Role: RolePrimary, Mode: ModeAgent, ModeSeq: 1, Known: genesisRec}
	d.disk["C"] = HardState{Epoch: 1, Role: RoleAsync}
	d.disk["D"] = HardState{Epoch: 1, Role: RoleAsync}
	for _, id := range []ID{"A", "C", "D"} {
		d.jour[id] = []Entry{marker}
		d.start(id)
	}
	return d
}

func (d *drTier) start(id ID) {
	d.cores[id] = NewMember(d.cfg[id], d.disk[id], Base{}, d.jour[id], d.now)
}

func (d *drTier) process(id ID, rd Ready, out *[]Message) {
	if rd.HardState != nil {
		d.disk[id] = *rd.HardState
	}
	if rd.Truncate != nil {
		d.jour[id] = d.jour[id][:rd.Truncate.After]
	}
	d.jour[id] = append(d.jour[id], rd.Entries...)
	*out = append(*out, rd.Messages...)
	d.acts[id] = append(d.acts[id], rd.Actions...)
	for _, e := range rd.Events {
		d.evs = append(d.evs, string(id)+" "+e.Kind+": "+e.Detail)
	}
}

// run advances n ticks, delivering every message to running cores.
func (d *drTier) run(n int, inject ...Message) {
	var q []Message
	q = append(q, inject...)
	for i := 0; i <= n; i++ {
		if i > 0 {
			d.now++
			for id, c := range d.cores {
				if c != nil {
					d.process(id, c.Tick(d.now), &q)
				}
			}
			if d.arb != nil {
				d.arbReady(d.arb.Tick(d.now), &q)
			}
		}
		for len(q) > 0 {
			m := q[0]
			q = q[1:]
			d.sent = append(d.sent, m)
			if m.To == "arb" && d.arb != nil {
				d.arbReady(d.arb.Step(m), &q)
			}
			if c := d.cores[m.To]; c != nil {
				d.process(m.To, c.Step(m), &q)
			}
		}
	}
}

func (d *drTier) arbReady(rd Ready, out *[]Message) {
	if rd.ArbiterState != nil {
		d.arbDisk = *rd.ArbiterState
	}
	*out = append(*out, rd.Messages...)
	for _, e := range rd.Events {
		d.evs = append(d.evs, "arb "+e.Kind+": "+e.Detail)
	}
}

func (d *drTier) write(v string) {
	d.run(0, Message{Type: MsgPropose, From: "A", To: "A", Epoch: d.cores["A"].Epoch(), Data: []byte(v)})
}

func (d *drTier) operator(to ID, m Message) {
	m.From, m.To = OperatorID, to
	d.run(1, m)
}

// DR promotion (DESIGN §3, issue 5 f): with the failover pair gone, an
// operator promotes the dr async C: it becomes a primary in a new epoch
// with no failover partner, records the loss range, commits alone, ships
// to the reporting async D, and stays primary across a restart. The
// reporting async is never promoted.
func TestDRPromotion_DrAsyncPromotedReportingNever(t *testing.T) {
	d := newDRTier(t)
	d.run(4)
	for _, v := range []string{"w1", "w2", "w3"} {
		d.write(v)
	}
	d.run(4)
	if got := d.cores["C"].LastLSN(); got != 4 {
		t.Fatalf("C holds %d records before the pair is lost, want 4", got)
	}
	// C misses the last write: its link from A is gone when A writes it.
	d.cores["C"], d.cores["D"] = nil, nil
	d.write("w4") // LSN 5 on A only
	d.cores["A"] = nil
	d.start("C")
	d.start("D")
	d.run(3 * tQoS)

	d.operator("D", Message{Type: MsgForcePromote, Epoch: 1})
	if d.cores["D"].IsPrimary() || len(d.acts["D"]) != 0 || !strings.Contains(strings.Join(d.evs, "\n"), "D refuse") {
		t.Fatalf("the reporting async was promoted or did not say why not: %v %v", d.acts["D"], d.evs)
	}

	d.operator("C", Message{Type: MsgForcePromote, Epoch: 1})
	if d.cores["C"].IsPrimary() {
		t.Fatal("C promoted before asking the arbiter")
	}
	// No arbiter in this tier: after drAskTries unanswered requests, the
	// operator's word is the authority.
	d.run(drAskTries*3 + 2)
	c := d.cores["C"]
	if !strings.Contains(strings.Join(d.evs, "\n"), "C dr-promotion: the arbiter did not answer") {
		t.Fatalf("no event says the arbiter was silent:\n%s", strings.Join(d.evs, "\n"))
	}
	if !c.IsPrimary() || c.Epoch() != 2 || c.Status() != StatusPrimary {
		t.Fatalf("C after promotion: primary %v epoch %d status %v", c.IsPrimary(), c.Epoch(), c.Status())
	}
	var promoted []Action
	for _, a := range d.acts["C"] {
		if a.Kind == ActPromote {
			promoted = append(promoted, a)
		}
	}
	if len(promoted) != 1 || promoted[0].Reason != PromoteDR || promoted[0].Epoch != 2 {
		t.Fatalf("promotion actions %v", promoted)
	}
	// The loss: everything C did not know committed, up to A's last LSN as A reported it.
	l := d.disk["C"].Losses
	if len(l) != 1 || l[0].Epoch != 2 || l[0].By != OperatorID || l[0].To < 4 || l[0].From > 5 {
		t.Fatalf("loss record %+v", l)
	}

	// C commits alone and ships to D, which follows the new primary.
	d.run(0, Message{Type: MsgPropose, From: "C", To: "C", Epoch: 2, Data: []byte("after")})
	d.run(6)
	var acked LSN
	for _, a := range d.acts["C"] {
		if a.Kind == ActAckClients && a.UpTo > acked {
			acked = a.UpTo
		}
	}
	if acked != c.LastLSN() || d.cores["D"].Epoch() != 2 || d.cores["D"].LastLSN() != c.LastLSN() {
		t.Fatalf("C acked up to %d of %d; D at epoch %d holds %d", acked, c.LastLSN(), d.cores["D"].Epoch(), d.cores["D"].LastLSN())
	}
	if tf := d.cores["D"].Transfer(); tf.Status != "caught-up" {
		t.Fatalf("D's transfer after following C: %+v", tf)
	}

	// Restarted from its disk, C is still the primary of epoch 2.
	d.start("C")
	d.run(2)
	if c := d.cores["C"]; !c.IsPrimary() || c.Epoch() != 2 || c.Status() != StatusPrimary {
		t.Fatalf("C after restart: primary %v epoch %d status %v", c.IsPrimary(), c.Epoch(), c.Status())
	}
}

// DR promotion through the arbiter's record: refused while a failover
// member is still heard from; with the pair gone, the arbiter records the
// dr member as primary of a new epoch after exactly its last LSN before it
// promotes; the old primary, restarted, learns the epoch from the arbiter
// and never acts as primary (nor takes over through an agent) again.
func TestDRPromotion_ThroughTheArbiterRecord(t *testing.T) {
	d := newDRTier(t)
	d.arbDisk = ArbiterState{Seeded: true, Record: genesisRec}
	d.arb = NewArbiter(ArbiterConfig{ID: "arb", Members: [2]ID{"A", "B"}, DR: []ID{"C"}, QoS: tQoS}, d.arbDisk, d.now)
	d.run(4)
	d.write("w1")
	d.run(2 * tQoS)

	// A answers the arbiter: refused, C stays async.
	d.operator("C", Message{Type: MsgForcePromote, Epoch: 1})
	d.run(drAskTries*3 + 2)
	if c := d.cores["C"]; c.IsPrimary() || c.Status() != StatusAsync || d.arbDisk.Record.Primary != "A" {
		t.Fatalf("C promoted while A was alive: %v; record %v", c.Status(), d.arbDisk.Record)
	}
	if !strings.Contains(strings.Join(d.evs, "\n"), "C refuse: dr promotion refused by the arbiter") {
		t.Fatalf("no refusal reported:\n%s", strings.Join(d.evs, "\n"))
	}

	d.cores["A"] = nil
	d.run(2 * tQoS)
	d.operator("C", Message{Type: MsgForcePromote, Epoch: 1})
	d.run(4)
	c := d.cores["C"]
	rec := d.arbDisk.Record
	if !c.IsPrimary() || c.Epoch() != 2 || rec.Primary != "C" || rec.Version.Epoch != 2 || rec.ForkLSN != c.LastLSN()-1 {
		t.Fatalf("C %v epoch %d; arbiter record %v (C's journal ends at %d)", c.Status(), c.Epoch(), rec, c.LastLSN())
	}
	if l := d.disk["C"].Losses; len(l) != 1 || l[0].Epoch != 2 {
		t.Fatalf("loss not recorded: %+v", l)
	}

	// The old primary comes back (it had consent to commit alone).
	d.start("A")
	d.run(4 * tQoS)
	a := d.cores["A"]
	if a.IsPrimary() || a.Epoch() != 2 || a.Status() != StatusWaiting {
		t.Fatalf("old primary after restart: primary %v epoch %d status %v", a.IsPrimary(), a.Epoch(), a.Status())
	}
	for _, m := range d.sent {
		if m.From == "A" && m.Type == MsgAgentQuery && m.Epoch == 2 {
			t.Fatalf("A tried to take over through an agent in epoch 2: %+v", m)
		}
	}
	for _, x := range d.acts["A"] {
		if x.Kind == ActPromote {
			t.Fatalf("A promoted: %v", x)
		}
	}
}
