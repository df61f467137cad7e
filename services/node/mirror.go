package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemhealth/tandem/mirror/backup"
	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/mirror/statefile"
	"github.com/tandemhealth/tandem/mirror/store"
	"github.com/tandemhealth/tandem/mirror/transport"
	"github.com/tandemhealth/tandem/mirror/wire"
)

// ErrNotPrimary is returned to writes on a member that is not the primary
// (or stopped being it while the write waited).
var ErrNotPrimary = errors.New("node: not the primary")

// mirror runs the failover.Member core of this node in one owned loop:
// messages, proposals and ticks in; for each batch of Readys: persist hard
// state and journal entries (one group commit), then send, then act.
type mirror struct {
	log     *slog.Logger
	file    *cluster.File
	tier    cluster.Tier
	me      cluster.Member
	creds   transport.Credentials
	hsPath  string
	j       *journal.Journal
	st      *store.Store
	applier *store.Applier
	seq     *sequencer.Sequencer
	metrics *metrics

	core      *failover.Member
	savedHS   failover.HardState
	epochs    []epochStart // first LSN of each epoch in the journal, ascending
	start     time.Time
	peer      failover.ID // the failover partner; "" on an async member
	lease     *lease
	ln        *transport.Listener
	inbox     chan failover.Message
	proposals chan *proposal
	links     map[failover.ID]*link
	waiting   []*proposal // proposed, not yet acknowledged, in LSN order
	acked     int         // writes acknowledged since the last batch was taken (run)

	stages     []stage                // pipelined output waiting for the fsync, oldest first
	lastQueued *journal.Pending       // the last record queued for the group commit
	caughtUpAt time.Time              // loop-owned: when the transfer was last caught up
	purgeReq   chan uint64            // flushLoop -> loop: the store's durably flushed LSN
	released   map[failover.ID]string // loop-owned: asyncs the primary no longer holds, and why
	pins       purgePin               // re-seed snapshots served: the journal is held from their LSN
	catchup    *catchupMark           // loop-owned: re-seeded, not caught up yet
	// catchupTarget: the tier primary's commit LSN as watchCatchup last
	// read it while catchup is set; catchupHeard (loop-owned): when the loop
	// saw the primary heard again after the re-seed or a broken link. A
	// target read before then may predate writes made while this member
	// could not hear the primary, and the first appends after a link comes
	// back are the stale ones queued before it broke: such a target does
	// not count. catchupDone ends the reads.
	catchupTarget  atomic.Pointer[catchupRead]
	catchupHeard   time.Time
	catchupDone    atomic.Bool
	readers        map[failover.ID][]*shipReader // loop-owned: hydrate's journal readers per destination
	following      failover.ID                   // loop-owned: the primary whose appends this member took ...
	followingEpoch uint64                        // ... in this epoch

	propMu  sync.Mutex
	nextLSN uint64 // LSN the next proposal gets while primary; 0 = not accepting

	snapMu sync.Mutex
	snap   memberSnapshot
}

type epochStart struct{ epoch, first uint64 }

type proposal struct {
	lsn      uint64
	database string
	payload  []byte
	at       time.Time // proposed: the start of its commit latency
	done     chan error
}

func (p *proposal) LSN() uint64 { return p.lsn }

func (p *proposal) Wait(ctx context.Context) error {
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// memberSnapshot is the state the loop publishes for status pages.
type memberSnapshot struct {
	Status        failover.Status
	Epoch         uint64
	Role          string
	Commit        uint64
	LastLSN       uint64
	Mode          string
	NoFailover    bool
	Counters      failover.Counters
	Transfer      failover.Transfer
	PrimaryLast   uint64
	Primary       string          // this member when primary; else the primary it follows ("" = not known)
	KnownEpoch    uint64          // epoch of the last arbiter record this member saw
	BehindSeconds float64         // since the transfer was last caught up (0 when it is)
	Peers         map[string]bool // link connected?
	Alerts        []string        // what an operator must act on (needs-rebuild, released asyncs)
	DBState       string          // re-seeded: needs-catchup or catchup-running; "" = normal
	mode          failover.Mode   // Mode, for the read lease
}

// Propose implements sequencer.Log: it assigns the next LSN without
// waiting for the loop, so the sequencer's lock is never held across I/O.
func (m *mirror) Propose(db string, payload []byte) (sequencer.Proposal, error) {
	if err := journal.CheckData(db, payload); err != nil {
		return nil, err
	}
	m.propMu.Lock()
	defer m.propMu.Unlock()
	if m.nextLSN == 0 {
		return nil, ErrNotPrimary
	}
	p := &proposal{lsn: m.nextLSN, database: db, payload: payload, at: time.Now(), done: make(chan error, 1)}
	m.nextLSN++
	m.proposals <- p // FIFO: the loop sees proposals in LSN order
	return p, nil
}

// newMirror loads the hard state and the journal into a core.
func newMirror(n *Node, f *cluster.File, tierName, memberName string) (*mirror, error) {
	t, ok := f.Tier(tierName)
	if !ok {
		return nil, fmt.Errorf("node: tier %q is not in the cluster file", tierName)
	}
	me, ok := t.Member(memberName)
	if !ok {
		return nil, fmt.Errorf("node: member %q is not in tier %q", memberName, tierName)
	}
	creds, err := f.Credentials(memberName)
	if err != nil {
		return nil, err
	}
	m := &mirror{log: n.log, file: f, tier: t, me: me, creds: creds, hsPath: filepath.Join(n.cfg.DataDir, "hardstate.json"),
		j: n.journal, st: n.store, applier: n.applier, metrics: n.metrics, start: time.Now(),
		inbox: make(chan failover.Message, 4096), proposals: make(chan *proposal, 1<<16), links: map[failover.ID]*link{},
		purgeReq: make(chan uint64, 1), released: map[failover.ID]string{},
		lease: &lease{qos: time.Duration(f.QoSTicks()) * cluster.TickInterval}}

	var failoverIDs, asyncs, feeders, otherAsyncs []failover.ID
	var peer failover.ID
	for _, o := range t.Members {
		switch {
		case o.Role == cluster.RoleFailover:
			failoverIDs = append(failoverIDs, failover.ID(o.Name))
			if o.Name != me.Name {
				peer = failover.ID(o.Name)
			}
		default:
			asyncs = append(asyncs, failover.ID(o.Name))
			if o.Name != me.Name {
				otherAsyncs = append(otherAsyncs, failover.ID(o.Name))
			}
		}
		// An async takes the journal from a failover member, or from a dr
		// member promoted when the pair was gone (epochs tell who is current).
		if o.Name != me.Name && o.Role != cluster.RoleReporting {
			feeders = append(feeders, failover.ID(o.Name))
		}
	}
	cfg := failover.MemberConfig{ID: failover.ID(me.Name), Arbiter: "arbiter", QoS: f.QoSTicks(), Heartbeat: 2, Retry: 4}
	mut, raw, err := cluster.MutationsFromEnv()
	if err != nil {
		return nil, err
	}
	if raw != "" {
		m.log.Error("TEST ONLY: deliberate failover bugs are switched on; never run this in production", "mutations", raw)
	}
	cfg.Mutations = mut
	if me.Role == cluster.RoleFailover {
		cfg.Peer, cfg.PeerAgent, cfg.Asyncs = peer, failover.ID("agent-"+string(peer)), asyncs
		m.peer = peer
	} else {
		cfg.Async, cfg.Failover = true, feeders
		// A dr member may be promoted by an operator (promote.go); it then
		// ships to the other asyncs.
		cfg.Promotable, cfg.Asyncs = me.Role == cluster.RoleDR, otherAsyncs
	}

	base, entries, err := m.loadJournal()
	if err != nil {
		return nil, err
	}
	var hs failover.HardState
	switch err := statefile.Load(m.hsPath, &hs); {
	case errors.Is(err, statefile.ErrNotExist):
		if base.LSN != 0 || len(entries) != 1 || !entries[0].Marker {
			seeded, err := newTierSeed(n.cfg.DataDir, entries, me, failoverIDs)
			if err != nil {
				return nil, err
			}
			if !seeded {
				return nil, fmt.Errorf("node: %s is missing but the journal holds %d records: this member's state is lost; rebuild it from its partner", m.hsPath, len(entries))
			}
			n.log.Info("starting a new tier from a restored backup (tandem restore --new-tier)", "last_lsn", len(entries))
		}
		// Genesis: the first failover member of the tier starts as primary,
		// as `tandem arbiter seed` records it.
		genesis := failover.Record{Version: failover.Version{Epoch: 1}, Primary: failoverIDs[0], Backup: failoverIDs[1], BackupActive: true, Mode: failover.ModeArbiter}
		hs = failover.HardState{Epoch: 1, Role: failover.RoleBackup, Known: genesis}
		switch {
		case cfg.Async:
			hs.Role = failover.RoleAsync
		case cfg.ID == failoverIDs[0]:
			hs.Role, hs.BackupActive = failover.RolePrimary, true
		}
		if err := statefile.Save(m.hsPath, hs); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("node: %w; this member needs a rebuild", err)
	}
	// The agent fenced this member while it was down: it never acts as
	// primary in this epoch, and waits for the current primary (the core
	// clears the flag when that primary's first append arrives).
	if fence, err := readFenceMark(n.cfg.DataDir); err != nil {
		return nil, err
	} else if fence != nil && !hs.Fenced {
		hs.Fenced = true
		if err := statefile.Save(m.hsPath, hs); err != nil {
			return nil, err
		}
		n.log.Warn("this member was fenced by its agent: it will rejoin as backup", "fenced_at", fence.At, "fenced_in_epoch", fence.Epoch)
	}
	if err := clearFenceMark(n.cfg.DataDir); err != nil {
		return nil, err
	}
	// The hard state is saved: a new-tier seed has done its work.
	if err := os.Remove(filepath.Join(n.cfg.DataDir, backup.NewTierSeedFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if m.catchup, err = loadCatchup(n.cfg.DataDir); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	m.savedHS = hs
	m.core = failover.NewMember(cfg, hs, base, entries, 0)
	m.publish()
	return m, nil
}

// newTierSeed says whether the data directory was made by `tandem restore
// --new-tier` for this member: its seed file is there and the journal is
// one epoch-1 history from LSN 1, so the tier's genesis may start over it
// although it holds more than the first marker. Only the genesis primary
// (the tier's first failover member) may hold it: every other member
// starts empty and catches up from it.
func newTierSeed(dataDir string, entries []failover.Entry, me cluster.Member, failoverIDs []failover.ID) (bool, error) {
	if _, err := os.Stat(filepath.Join(dataDir, backup.NewTierSeedFile)); errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if me.Role != cluster.RoleFailover || len(failoverIDs) == 0 || failover.ID(me.Name) != failoverIDs[0] {
		first := "the first failover member"
		if len(failoverIDs) > 0 {
			first = string(failoverIDs[0])
		}
		return false, fmt.Errorf("node: %s holds a new-tier restore (%s) but %s is not the tier's genesis primary: restore into the data dir of %s and start %s with an empty data dir", dataDir, backup.NewTierSeedFile, me.Name, first, me.Name)
	}
	for i, e := range entries {
		if e.Epoch != 1 || e.LSN != failover.LSN(i+1) || e.Marker != (i == 0) {
			return false, fmt.Errorf("node: %s holds %s but its journal is not one epoch-1 history from LSN 1 (record %d: epoch %d LSN %d): it was not made by tandem restore --new-tier, or it was written since; restore again", dataDir, backup.NewTierSeedFile, i+1, e.Epoch, e.LSN)
		}
	}
	return true, nil
}

// loadJournal reads the journal's base and every record into core entries
// and notes where each epoch starts.
func (m *mirror) loadJournal() (failover.Base, []failover.Entry, error) {
	base, entries, err := ReadMemberJournal(filepath.Dir(m.hsPath), m.j)
	if err != nil {
		return base, nil, fmt.Errorf("node: read journal: %w; this member needs a rebuild", err)
	}
	if base.LSN > 0 {
		m.noteEpoch(uint64(base.Epoch), uint64(base.LSN))
	}
	for _, e := range entries {
		m.noteEpoch(uint64(e.Epoch), uint64(e.LSN))
	}
	return base, entries, nil
}

func (m *mirror) noteEpoch(epoch, lsn uint64) {
	if n := len(m.epochs); n == 0 || m.epochs[n-1].epoch != epoch {
		m.epochs = append(m.epochs, epochStart{epoch: epoch, first: lsn})
	}
}

func (m *mirror) epochAt(lsn uint64) uint64 {
	i := sort.Search(len(m.epochs), func(i int) bool { return m.epochs[i].first > lsn })
	if i == 0 {
		return 0
	}
	return m.epochs[i-1].epoch
}

func (m *mirror) now() failover.Tick {
	return failover.Tick(time.Since(m.start) / cluster.TickInterval)
}

// run is the loop. It owns the core, the links and the waiting proposals.
func (m *mirror) run(ctx context.Context) error {
	// The core's clock starts now, at tick 0 as it was built: the time the
	// node took to start after building it (config-sync, access, a busy
	// host) is not silence from the partner. (Only this loop reads m.start.)
	m.start = time.Now()
	var err error
	m.ln, err = transport.Listen(m.me.Address, m.creds.ServerConfig())
	if err != nil {
		return fmt.Errorf("%w (field address of member %s)", err, m.me.Name)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { <-ctx.Done(); m.ln.Close() }()
	wg.Add(1)
	go func() { defer wg.Done(); m.lease.watch(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); m.acceptLoop(ctx, &wg) }()
	wg.Add(1)
	go func() { defer wg.Done(); m.flushLoop(ctx) }()
	if m.catchup != nil {
		wg.Add(1)
		go func() { defer wg.Done(); m.watchCatchup(ctx) }()
	}
	defer func() {
		for _, l := range m.links {
			l.close()
		}
		m.dropReaders()
		m.failWaiting(ErrNotPrimary)
	}()

	m.log.Info("mirror member started", "role", m.savedHS.Role.String(), "epoch", m.savedHS.Epoch,
		"last_lsn", m.core.LastLSN(), "listen", m.ln.Addr().String())
	ticker := time.NewTicker(cluster.TickInterval)
	defer ticker.Stop()
	var batch []failover.Ready
	for {
		batch = batch[:0]
		props := 0                  // client writes in the batch
		var durable <-chan struct{} // closed once the oldest output stage may go
		if len(m.stages) > 0 {
			durable = m.stages[0].after.Done()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-durable:
			if err := m.flushStages(ctx, false); err != nil {
				return err
			}
			m.publish()
			continue
		case <-ticker.C:
			batch = append(batch, m.core.Tick(m.now()))
		case msg := <-m.inbox:
			// The clock moves first; what that tick produced (a request
			// to persist, messages, actions) is part of the batch like any
			// other Ready — dropping it lost hard-state changes and requests.
			batch = append(batch, m.core.Tick(m.now()))
			batch = append(batch, m.step(msg))
		case p := <-m.proposals:
			batch = append(batch, m.stepProposal(p))
			props++
		case flushed := <-m.purgeReq:
			if err := m.purge(ctx, flushed); err != nil {
				return err
			}
			m.publish()
			continue
		}
		// Take whatever else is queued, up to a bound, into the same batch:
		// one group commit for all of it. Writers acknowledged since the
		// last batch come back with new writes (closed-loop clients, as the
		// journal's commit delay assumes): while fewer of them are in the
		// batch, let the goroutines that are ready run first
		// (runtime.Gosched, up to maxYields times and only while that
		// brings more) — the applier they wait for, then the writers. Their
		// writes then share this batch's group, stage and frame to the
		// backup instead of making their own: without this, a 64-writer
		// BenchmarkMirror phase made 46,690 batches and 44,805 frames to
		// the backup for ~71,000 writes. A lone writer's batch already
		// holds its write, and a backup expects nobody: neither yields.
		expect := m.acked
		m.acked = 0
		yields, before := 0, len(batch)
	drain:
		for len(batch) < 512 {
			select {
			case p := <-m.proposals:
				batch = append(batch, m.stepProposal(p))
				props++
			case msg := <-m.inbox:
				batch = append(batch, m.step(msg))
			default:
				if props >= expect || yields == maxYields || (yields > 0 && len(batch) == before) {
					break drain
				}
				yields, before = yields+1, len(batch)
				runtime.Gosched()
			}
		}
		if err := m.handle(ctx, batch); err != nil {
			return err
		}
		m.publish()
	}
}

// maxYields bounds how often the loop lets other goroutines run before it
// handles a batch (see run).
const maxYields = 4

// step hands a message to the core and notes whom this member follows: the
// sender of an append the core took in its own epoch is that epoch's primary.
func (m *mirror) step(msg failover.Message) failover.Ready {
	forged := m.core.Counters().Forged
	rd := m.core.Step(msg)
	if msg.Type == failover.MsgAppend && msg.Epoch == m.core.Epoch() && !m.core.IsPrimary() && m.core.Counters().Forged == forged {
		m.following, m.followingEpoch = msg.From, uint64(msg.Epoch)
	}
	return rd
}

// stepProposal hands a client write to the core, which must give it the
// LSN the proposer promised.
func (m *mirror) stepProposal(p *proposal) failover.Ready {
	// The record travels as a journal frame with its CRC (see wire).
	data, err := journal.EncodeShipped(journal.Record{Type: journal.TypeData, Epoch: uint64(m.core.Epoch()), LSN: p.lsn, Database: p.database, Payload: p.payload})
	if err != nil {
		m.settle(p, err)
		return failover.Ready{Actions: []failover.Action{{Kind: failover.ActRejectWrite}}}
	}
	rd := m.core.Step(failover.Message{Type: failover.MsgPropose, From: m.core.ID(), To: m.core.ID(), Epoch: m.core.Epoch(), Data: data})
	if uint64(m.core.LastLSN()) == p.lsn {
		m.waiting = append(m.waiting, p)
	} else {
		m.settle(p, ErrNotPrimary) // rejected (ActRejectWrite); the actions below stop the sequencer
	}
	return rd
}

// handle executes a batch of Readys: all persistence first (hard state,
// truncations, entries — one fsync for the entries), then every message,
// then every action, then the events.
//
// The loop does not wait for the fsync when it need not (issue 4): a batch
// that changes no hard state, truncates nothing and whose only actions are
// client acknowledgements has its entries queued for the group commit, and
// its output (messages, actions, events) becomes a stage that goes once
// every record queued so far is durable — see stage. Meanwhile the loop
// takes acknowledgements and proposals, so an acknowledgement from the
// backup is not held behind the fsync of writes proposed after it. Any
// other batch is handled as a barrier: every earlier stage goes first, then
// the batch is persisted, waited for and executed in place, exactly in the
// order the core produced it.
func (m *mirror) handle(ctx context.Context, batch []failover.Ready) error {
	if !m.pipelinable(batch) {
		if err := m.flushStages(ctx, true); err != nil {
			return err
		}
		return m.handleNow(ctx, batch)
	}
	for _, rd := range batch {
		if err := m.enqueue(rd.Entries); err != nil {
			return err
		}
	}
	m.ackEarly(batch)
	if m.core.ShipsEarly() {
		if err := m.shipEarly(batch); err != nil {
			return err
		}
	}
	st := stage{after: m.lastQueued, batch: append([]failover.Ready(nil), batch...)}
	if len(m.stages) == 0 && (st.after == nil || isDone(st.after)) {
		return m.execute(ctx, st.batch) // nothing to wait for
	}
	if st.after == nil {
		st.after = m.stages[len(m.stages)-1].after
	}
	m.stages = append(m.stages, st)
	return nil
}

// shipEarly sends the batch's appends to the backup now, before their
// records are durable here, so the two members' fsyncs overlap (issue 4);
// the rest of the batch's output waits for the fsync as a stage. The core
// allows it only while the backup is active (failover.Member.ShipsEarly:
// a primary that restarts without records its backup holds takes them
// back, or opens a new epoch, before it writes again). The commit point an
// early append carries is lowered to what is durable here: the backup
// applies up to it, and a record it applied must never be one this member
// loses in a crash. Earlier stages hold no appends to the backup: every
// batch since the backup became active (a barrier) shipped them early.
func (m *mirror) shipEarly(batch []failover.Ready) error {
	var early []failover.Message
	for i := range batch {
		rest := batch[i].Messages[:0:0]
		for _, msg := range batch[i].Messages {
			if msg.Type == failover.MsgAppend && msg.To == m.peer {
				early = append(early, msg)
			} else {
				rest = append(rest, msg)
			}
		}
		batch[i].Messages = rest
	}
	durable := failover.LSN(m.j.DurableLSN())
	for i := range early {
		early[i].Commit = min(early[i].Commit, durable)
	}
	return m.sendAll(early)
}

// sendAll sends messages, consecutive appends to one peer coalesced, with
// the record data the core dropped read back from the journal.
func (m *mirror) sendAll(msgs []failover.Message) error {
	for _, msg := range coalesce(msgs) {
		if err := m.hydrate(&msg); err != nil {
			return m.fatal("could not read journal records to ship", err)
		}
		m.send(msg)
	}
	return nil
}

// stage is the output of a pipelined batch: its messages, actions and
// events, to be executed once after — the last record queued when the
// batch was handled, by it or before it — is durable. Stages go in order,
// and the journal makes records durable in LSN order, so a stage's
// messages leave only when every record the core held when it produced
// them is durable here (appends to an active backup excepted: shipEarly),
// and a backup's acknowledgement never covers a record it has not made
// durable.
type stage struct {
	after *journal.Pending
	batch []failover.Ready
}

// pipelinable: every Ready of the batch is (failover.Ready.Pipelinable).
func (m *mirror) pipelinable(batch []failover.Ready) bool {
	for _, rd := range batch {
		if !rd.Pipelinable(m.savedHS) {
			return false
		}
	}
	return true
}

func isDone(p *journal.Pending) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

// flushStages executes the stages whose records are durable, in order;
// with all, it first waits for every one of them. Stages made durable by
// the same group commit go out together, as one batch would have: their
// appends are coalesced into one frame.
func (m *mirror) flushStages(ctx context.Context, all bool) error {
	var batch []failover.Ready
	n := 0
	for ; n < len(m.stages); n++ {
		st := m.stages[n]
		if !all && !isDone(st.after) {
			break
		}
		if err := st.after.Wait(ctx); err != nil {
			return m.fatal("journal write failed", err)
		}
		batch = append(batch, st.batch...)
	}
	if n == 0 {
		return nil
	}
	clear(m.stages[:n])
	m.stages = m.stages[n:]
	return m.execute(ctx, batch)
}

// enqueue queues entries for the group commit.
func (m *mirror) enqueue(entries []failover.Entry) error {
	for _, e := range entries {
		rec, err := wire.RecordFromEntry(e, m.epochAt(uint64(e.PrevEnd)))
		if err != nil {
			return m.fatal("bad entry", err)
		}
		p, err := m.j.EnqueueRecord(rec)
		if err != nil {
			return m.fatal("journal refused a record", err)
		}
		m.noteEpoch(rec.Epoch, rec.LSN)
		m.lastQueued = p
	}
	return nil
}

// handleNow handles a batch in place: persistence, the wait for the fsync,
// then its output. Every earlier stage has gone.
func (m *mirror) handleNow(ctx context.Context, batch []failover.Ready) error {
	var last *journal.Pending
	for _, rd := range batch {
		if rd.HardState != nil && !reflect.DeepEqual(*rd.HardState, m.savedHS) {
			if last != nil { // entries queued before a hard-state change are durable first
				if err := last.Wait(ctx); err != nil {
					return m.fatal("journal write failed", err)
				}
			}
			if err := statefile.Save(m.hsPath, *rd.HardState); err != nil {
				return m.fatal("could not persist hard state", err)
			}
			m.savedHS = *rd.HardState
		}
		if rd.Truncate != nil {
			if last != nil {
				if err := last.Wait(ctx); err != nil {
					return m.fatal("journal write failed", err)
				}
				last = nil
			}
			if err := m.truncate(uint64(rd.Truncate.After), rd.Truncate.Quarantine); err != nil {
				return m.fatal("could not cut the journal back to the fork point", err)
			}
		}
		if len(rd.Entries) > 0 {
			if err := m.enqueue(rd.Entries); err != nil {
				return err
			}
			last = m.lastQueued
		}
	}
	if last != nil {
		m.ackEarly(batch)
		if err := last.Wait(ctx); err != nil {
			return m.fatal("journal write failed", err)
		}
	}
	return m.execute(ctx, batch)
}

// execute sends a batch's messages, then acts, then logs its events. Every
// record the core held when it produced them is durable here.
func (m *mirror) execute(ctx context.Context, batch []failover.Ready) error {
	// Records in these messages are durable here. (Appends to an active
	// backup left earlier, see shipEarly; the failover core's resync rule
	// keeps a restarted primary from writing a different record at an
	// (epoch, LSN) its backup already holds — modelled in the spin model,
	// whose NO_RESYNC mutant drops the rule.)
	//
	// The store follows what is committed and durable here. The limit is
	// raised before the clients are woken: each of them waits for its
	// record to be applied, so the applier should already be at work. It
	// is raised before the messages go to the links too: the goroutine
	// woken last runs first when the loop yields, and a waiting peer (the
	// primary, for a backup's acknowledgement) matters more than the
	// applier. Measured (issue 4): the backup's acknowledgement took 55 µs
	// to reach its link's writer behind the applier, 11 µs before it.
	m.applier.SetLimit(min(uint64(m.core.Commit()), m.j.DurableLSN()))
	var out []failover.Message
	for _, rd := range batch {
		out = append(out, rd.Messages...)
	}
	if err := m.sendAll(out); err != nil {
		return err
	}
	for _, rd := range batch {
		for _, a := range rd.Actions {
			m.act(a)
		}
	}
	// Records applied to the store are on disk twice over: the core need
	// not keep their bytes (hydrate reads them back when someone is behind).
	m.core.DropData(failover.LSN(m.st.AppliedLSN()))
	for _, rd := range batch {
		for _, e := range rd.Events {
			level := slog.LevelInfo
			if e.Kind == "needs-rebuild" || e.Kind == "peer-needs-rebuild" {
				level = slog.LevelWarn // an operator must act: tandem ctl rebuild
			}
			m.log.Log(ctx, level, "mirror "+e.Kind, "detail", e.Detail)
		}
	}
	return nil
}

// shipReader is a journal reader kept between appends to one destination:
// a member catching up asks for consecutive batches, and a new reader
// scans its segment from the start to get there (quadratic in the
// backlog: BenchmarkCatchup). Two are kept per destination: the stream of
// batches, and the heartbeat's probe from the acknowledged LSN.
type shipReader struct {
	r    *journal.Reader
	next uint64 // the LSN its next record has
}

const readersPerDestination = 2

// reader returns a journal reader positioned at from for destination to,
// reusing a kept one that is already there, else replacing the one
// furthest behind.
func (m *mirror) reader(to failover.ID, from uint64) (*shipReader, error) {
	kept := m.readers[to]
	for _, sr := range kept {
		if sr.next == from {
			return sr, nil
		}
	}
	r, err := m.j.NewReader(from)
	if err != nil {
		return nil, err
	}
	sr := &shipReader{r: r, next: from}
	if len(kept) >= readersPerDestination {
		oldest := 0
		for i, k := range kept {
			if k.next < kept[oldest].next {
				oldest = i
			}
		}
		kept[oldest].r.Close()
		kept[oldest] = sr
	} else {
		kept = append(kept, sr)
	}
	if m.readers == nil {
		m.readers = map[failover.ID][]*shipReader{}
	}
	m.readers[to] = kept
	return sr, nil
}

// dropReader forgets one reader (after an error it is somewhere else).
func (m *mirror) dropReader(to failover.ID, sr *shipReader) {
	sr.r.Close()
	kept := m.readers[to]
	for i, k := range kept {
		if k == sr {
			m.readers[to] = append(kept[:i:i], kept[i+1:]...)
			return
		}
	}
}

// dropReaders closes every kept reader (the journal was cut back).
func (m *mirror) dropReaders() {
	for to, kept := range m.readers {
		for _, sr := range kept {
			sr.r.Close()
		}
		delete(m.readers, to)
	}
}

// ackEarly acknowledges, before this batch's own records are durable, the
// waiting proposals that acknowledgements stepped in this batch already
// cover. Without it an acknowledgement that arrives together with new
// proposals waits for their fsync before its clients hear of it (issue 4).
//
// It settles only what the loop would settle after the wait anyway: LSNs
// up to an ActAckClients' UpTo (committed by the core), no further than
// the core's commit point now and the journal's durable LSN. By the time it
// runs every hard state of the batch is saved and every truncation done
// (handle's first pass), so no acknowledgement overtakes the hard state it
// depends on. It follows the batch's actions in order and stops at the
// first one of another kind, so a demotion or a rejected write earlier in
// the batch keeps its effect on the waiting proposals.
func (m *mirror) ackEarly(batch []failover.Ready) {
	var upTo uint64
scan:
	for _, rd := range batch {
		for _, a := range rd.Actions {
			if a.Kind != failover.ActAckClients {
				break scan
			}
			upTo = max(upTo, uint64(a.UpTo))
		}
	}
	upTo = min(upTo, uint64(m.core.Commit()), m.j.DurableLSN())
	if upTo == 0 || len(m.waiting) == 0 || m.waiting[0].lsn > upTo {
		return
	}
	m.applier.SetLimit(upTo) // committed and durable here, as after the wait
	m.ackClients(upTo)
}

// ackClients settles the waiting proposals up to upTo as acknowledged.
func (m *mirror) ackClients(upTo uint64) {
	if len(m.waiting) == 0 || m.waiting[0].lsn > upTo {
		return
	}
	// A client with its answer may write again at once, and the handlers
	// check the published status first (Node.IsPrimary): publish the status
	// that allows this acknowledgement before anyone is woken. The end of
	// in-trouble comes after the acknowledgements in the core's output, and
	// the loop publishes after the batch; a writer's next write got "not
	// the primary" in between (CI, TestCorruptJournalMemberIsReseededOffline).
	if m.snapshot().Status != m.core.Status() {
		m.publish()
	}
	i := 0
	for ; i < len(m.waiting) && m.waiting[i].lsn <= upTo; i++ {
		m.settle(m.waiting[i], nil)
	}
	m.waiting = m.waiting[i:]
	m.acked += i
}

// hydrate fills in, from the journal, the data of entries the core no
// longer keeps in memory (DropData), checking each record's epoch and LSN.
// It reads no further than the last such entry: the ones after it may not
// be in the journal yet (an append shipped before its fsync, shipEarly).
func (m *mirror) hydrate(msg *failover.Message) error {
	first, last := -1, -1
	for i, e := range msg.Entries {
		if !e.Marker && e.Data == nil {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return nil
	}
	entries := append([]failover.Entry(nil), msg.Entries...)
	sr, err := m.reader(msg.To, uint64(entries[first].LSN))
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok { // an error leaves the reader somewhere else: start afresh next time
			m.dropReader(msg.To, sr)
		}
	}()
	r := sr.r
	for i := first; i <= last; i++ {
		e := &entries[i]
		if e.Marker || e.Data != nil {
			if _, err := r.Next(); err != nil { // keep the reader in step
				return err
			}
			sr.next++
			continue
		}
		rec, err := r.Next()
		if err != nil {
			return fmt.Errorf("record %d: %w", e.LSN, err)
		}
		sr.next++
		if rec.LSN != uint64(e.LSN) || rec.Epoch != uint64(e.Epoch) {
			return fmt.Errorf("journal record (%d,%d) where the core has (%d,%d)", rec.Epoch, rec.LSN, e.Epoch, e.LSN)
		}
		full, err := wire.EntryFromRecord(rec)
		if err != nil {
			return err
		}
		e.Data = full.Data
	}
	ok = true
	msg.Entries = entries
	m.log.Debug("records shipped from the journal", "to", string(msg.To), "from_lsn", entries[first].LSN, "count", last-first+1)
	return nil
}

// coalesce merges, within one batch, consecutive appends to the same peer
// whose entries follow on (one frame instead of one per client write), and
// consecutive acknowledgements to the same peer (a later match covers an
// earlier one). The merged message carries the later one's header fields,
// exactly what the peer would have ended with after both.
func coalesce(msgs []failover.Message) []failover.Message {
	out := msgs[:0:0]
	last := map[failover.ID]int{} // peer -> index in out of its latest message
	for _, msg := range msgs {
		i, ok := last[msg.To]
		if ok {
			p := &out[i]
			switch {
			case msg.Type == failover.MsgAppend && p.Type == failover.MsgAppend && p.Epoch == msg.Epoch &&
				len(p.Entries) > 0 && p.PrevLSN+failover.LSN(len(p.Entries)) == msg.PrevLSN:
				entries := append(p.Entries, msg.Entries...)
				prev, prevEpoch := p.PrevLSN, p.PrevEpoch
				*p = msg
				p.Entries, p.PrevLSN, p.PrevEpoch = entries, prev, prevEpoch
				continue
			case msg.Type == failover.MsgAppendResp && p.Type == failover.MsgAppendResp && p.Epoch == msg.Epoch &&
				!p.Reject && !msg.Reject && msg.Match >= p.Match:
				*p = msg
				continue
			}
		}
		last[msg.To] = len(out)
		out = append(out, msg)
	}
	return out
}

// truncate cuts the journal back to after, the fork point, first moving the
// records beyond it to a quarantine report. The store never holds them: it
// only applies committed records, and a fork never cuts below the commit
// point — if it ever would, this member needs a rebuild, and says so.
func (m *mirror) truncate(after uint64, quarantine bool) error {
	if applied := m.st.AppliedLSN(); applied > after {
		return fmt.Errorf("the store has applied LSN %d beyond the fork point %d: this member needs a rebuild", applied, after)
	}
	if quarantine && m.j.LastLSN() > after {
		path, err := quarantineTail(filepath.Dir(m.hsPath), m.tier.Name, m.me.Name, m.j, after)
		if err != nil {
			return fmt.Errorf("quarantine: %w", err)
		}
		m.log.Warn("unacknowledged journal tail moved to quarantine", "after_lsn", after, "last_lsn", m.j.LastLSN(), "report", path)
	}
	m.dropReaders()
	if err := m.j.TruncateAfter(after); err != nil {
		return err
	}
	for len(m.epochs) > 0 && m.epochs[len(m.epochs)-1].first > after {
		m.epochs = m.epochs[:len(m.epochs)-1]
	}
	m.applier.ResetReader()
	return nil
}

func (m *mirror) fatal(what string, err error) error {
	m.log.Error("mirror member stopping: "+what, "err", err)
	m.seq.Fail(err)
	m.failWaiting(err)
	return fmt.Errorf("node: %s: %w", what, err)
}

func (m *mirror) act(a failover.Action) {
	switch a.Kind {
	case failover.ActAckClients:
		m.ackClients(uint64(a.UpTo))
	case failover.ActPromote:
		m.log.Warn("promoted to primary", "epoch", a.Epoch, "reason", a.Reason.String(), "previous_epoch_ends", a.UpTo)
		m.metrics.failovers.WithLabelValues(a.Reason.String()).Inc()
		m.openWrites(uint64(m.core.LastLSN())) // after the epoch marker: writes wait until it is applied
	case failover.ActResumeWrites:
		// restarted as primary: the backup's records of this epoch are
		// here now (failover.Member.TakesWrites)
		m.log.Info("resynced with the backup: taking writes", "epoch", a.Epoch, "after_lsn", a.UpTo)
		m.openWrites(uint64(a.UpTo))
	case failover.ActDemote, failover.ActRejectWrite:
		if a.Kind == failover.ActDemote {
			m.log.Warn("demoted: no longer primary", "epoch", a.Epoch)
		}
		m.stopWrites()
	case failover.ActStopCommitting:
		m.log.Warn("in-trouble: not acknowledging writes", "epoch", a.Epoch)
	case failover.ActStartCommitting:
		m.log.Info("committing again", "epoch", a.Epoch)
	}
}

// openWrites makes this member a writer: proposals get LSNs after base,
// and the sequencer serves writes once the store has applied base.
func (m *mirror) openWrites(base uint64) {
	m.seq.Restart(base)
	m.propMu.Lock()
	m.nextLSN = base + 1
	m.propMu.Unlock()
}

// stopWrites ends this member's time as a writer: the sequencer fails every
// later write, and writes waiting for an acknowledgement learn that their
// outcome is unknown here (a new primary may still hold them).
func (m *mirror) stopWrites() {
	m.propMu.Lock()
	m.nextLSN = 0
	m.propMu.Unlock()
	m.seq.Fail(ErrNotPrimary)
	m.failWaiting(ErrNotPrimary)
	for {
		select {
		case p := <-m.proposals:
			m.settle(p, ErrNotPrimary)
		default:
			return
		}
	}
}

func (m *mirror) failWaiting(err error) {
	for _, p := range m.waiting {
		m.settle(p, err)
	}
	m.waiting = nil
}

// settle ends a proposal: acknowledged (nil) or failed. Its commit latency
// is observed first, so a client that saw the answer finds it in /metrics.
func (m *mirror) settle(p *proposal, err error) {
	m.metrics.observeCommit(p.at, err)
	p.done <- err
}

func (m *mirror) publish() {
	hs := m.core.HardState()
	s := memberSnapshot{Status: m.core.Status(), Epoch: uint64(m.core.Epoch()), Role: hs.Role.String(),
		Commit: uint64(m.core.Commit()), LastLSN: uint64(m.core.LastLSN()), Mode: hs.Mode.String(), mode: hs.Mode,
		NoFailover: hs.NoFailover, Counters: m.core.Counters(), Transfer: m.core.Transfer(), Peers: map[string]bool{},
		PrimaryLast: uint64(m.core.PrimaryLast()), KnownEpoch: uint64(hs.Known.Version.Epoch), Alerts: m.alerts(),
		DBState: m.catchupState()}
	switch {
	case m.core.IsPrimary():
		s.Primary = m.me.Name
	case m.following != "" && m.followingEpoch == uint64(m.core.Epoch()):
		s.Primary = string(m.following)
	case hs.Known.Version.Epoch == hs.Epoch && hs.Known.Primary != failover.ID(m.me.Name):
		s.Primary = string(hs.Known.Primary) // the arbiter's record of this epoch
	}
	for id, l := range m.links {
		s.Peers[string(id)] = l.connected()
	}
	// Seconds behind: how long since the transfer was last caught up.
	if s.Transfer.Behind == 0 && s.Transfer.Status != "disconnected" {
		m.caughtUpAt = time.Now()
	}
	if !m.caughtUpAt.IsZero() && (s.Transfer.Behind > 0 || s.Transfer.Status == "disconnected") {
		s.BehindSeconds = time.Since(m.caughtUpAt).Seconds()
	}
	m.snapMu.Lock()
	m.snap = s
	m.snapMu.Unlock()
}

func (m *mirror) snapshot() memberSnapshot {
	m.snapMu.Lock()
	defer m.snapMu.Unlock()
	return m.snap
}

// operator hands an operator command to the core through the loop.
func (m *mirror) operator(msg failover.Message) {
	msg.From, msg.To = failover.OperatorID, failover.ID(m.me.Name)
	m.inbox <- msg
}

// ----------------------------------------------------------------- links

// send queues msg on the link to its destination; a full queue drops it
// (the cores resend what matters, as over any lossy link).
func (m *mirror) send(msg failover.Message) {
	l := m.links[msg.To]
	if l == nil {
		addr, err := m.file.DialAddress(m.tier.Name, m.me.Name, string(msg.To))
		if err != nil {
			m.log.Warn("no address for message", "to", string(msg.To), "err", err)
			return
		}
		l = newLink(m, msg.To, addr)
		m.links[msg.To] = l
	}
	tms, err := wire.EncodeSplit(m.tier.Name, msg) // a backlog of large records needs several frames
	if err != nil {
		m.log.Error("encode failed", "type", msg.Type.String(), "err", err)
		return
	}
	for _, tm := range tms {
		l.enqueue(tm)
	}
}

// link is the outbound connection to one process: it dials, redials with
// backoff, writes queued frames, and reads replies (the arbiter and agents
// answer on the connection they were asked on) into the inbox.
type link struct {
	m     *mirror
	to    failover.ID
	addr  string
	queue chan transport.Message
	stop  chan struct{}
	done  chan struct{}

	mu   sync.Mutex
	conn *transport.Conn
}

func newLink(m *mirror, to failover.ID, addr string) *link {
	l := &link{m: m, to: to, addr: addr, queue: make(chan transport.Message, 1024), stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

func (l *link) enqueue(tm transport.Message) {
	select {
	case l.queue <- tm:
	default:
	}
}

// drop discards every queued frame.
func (l *link) drop() {
	for {
		select {
		case <-l.queue:
		default:
			return
		}
	}
}

func (l *link) connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn != nil
}

func (l *link) close() {
	close(l.stop)
	l.mu.Lock()
	if l.conn != nil {
		l.conn.Close()
	}
	l.mu.Unlock()
	<-l.done
}

func (l *link) run() {
	defer close(l.done)
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := transport.Dial(ctx, l.addr, l.m.creds.ClientConfig(hostOf(l.addr)))
		cancel()
		if err != nil {
			// The peer is not there: what was queued for it is stale by the
			// time it returns (the cores resend what matters, as over any
			// lossy link), and holding it costs memory while it is away.
			l.drop()
			select {
			case <-l.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		l.mu.Lock()
		l.conn = c
		l.mu.Unlock()
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			l.m.readFrom(c)
		}()
		l.writeUntilError(c, readDone)
		c.Close()
		<-readDone
		l.mu.Lock()
		l.conn = nil
		l.mu.Unlock()
	}
}

func (l *link) writeUntilError(c *transport.Conn, readDone chan struct{}) {
	for {
		select {
		case <-l.stop:
			return
		case <-readDone:
			return
		case tm := <-l.queue:
			if err := c.Send(tm); err != nil {
				return
			}
		}
	}
}

func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

func (m *mirror) acceptLoop(ctx context.Context, wg *sync.WaitGroup) {
	for {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := m.ln.Accept(hctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			m.log.Warn("connection refused", "err", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			go func() { <-ctx.Done(); c.Close() }()
			m.readFrom(c)
		}()
	}
}

// readFrom feeds a connection's frames to the loop. A frame for another
// tier or member, or one that does not decode, closes the connection with
// a logged reason and reaches no core.
func (m *mirror) readFrom(c *transport.Conn) {
	for {
		tm, err := c.Recv()
		if err != nil {
			switch {
			case errors.Is(err, transport.ErrBadFrame) || errors.Is(err, transport.ErrForged):
				m.log.Warn("peer cut off", "peer", c.Peer(), "reason", err.Error())
			case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
				m.log.Debug("connection closed", "peer", c.Peer(), "reason", err.Error())
			}
			return
		}
		if tm.Tier != m.tier.Name {
			m.log.Warn("refused a frame for another tier", "peer", c.Peer(), "tier", tm.Tier)
			return
		}
		msg, err := wire.Decode(tm)
		if err != nil {
			m.log.Warn("refused a bad message", "peer", c.Peer(), "err", err)
			return
		}
		if string(msg.To) != m.me.Name {
			m.log.Warn("refused a message addressed to someone else", "peer", c.Peer(), "to", string(msg.To))
			return
		}
		switch {
		case msg.From == m.peer && m.peer != "":
			m.lease.confirm(uint64(msg.Epoch)) // the partner is still in that epoch
		case msg.From == "arbiter" && msg.Type == failover.MsgArbiterResp && string(msg.Record.Primary) == m.me.Name:
			m.lease.confirm(uint64(msg.Record.Version.Epoch)) // the arbiter's record names us primary
		}
		m.inbox <- msg
	}
}
