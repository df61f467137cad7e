// Package node runs a Tandem data node: it opens the journal and the store,
// recovers the store from the journal, sequences writes, and serves the
// node's status, health, metrics and admin endpoints over HTTP; a mirror
// member also serves /fhir and the token endpoint /auth/token (package
// login) on its effective config-sync users.
//
// A node runs standalone (tandem node --config node.yaml: one node, its
// writes committed once durable in its own journal) or as a member of a
// mirrored tier (tandem node --cluster cluster.yaml --member a: the
// failover core decides, in one owned loop, what is committed and who is
// primary; see mirror.go).
//
// This package wires cores to the network and the disk; it holds no
// decision logic of its own. It must never report a state it has not
// measured, and never keep serving writes after the journal failed.
package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandemhealth/tandem/fhir/access"
	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/mirror/statefile"
	"github.com/tandemhealth/tandem/mirror/store"
	"github.com/tandemhealth/tandem/services/login"
)

// Node is one running data node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	journal *journal.Journal
	store   *store.Store
	applier *store.Applier
	seq     *sequencer.Sequencer
	epoch   uint64 // standalone only
	mirror  *mirror
	cs      *csync // config-sync and the failover gate (configsync.go)
	started time.Time

	verifier *access.Verifier // nil: no bearer tokens accepted
	fhirH    fhirHandler
	login    *login.Handler       // POST /auth/token on a mirror member (login.go)
	metrics  *metrics             // counted events, served at /metrics with the collector
	rb       rebuilder            // a re-seed fetched by this member (rebuild.go)
	imports  importer             // databases this primary is importing (adddb.go)
	qalerts  quarantineAlertCache // unrecovered quarantine reports (quarantine_admin.go)

	// Work that outlives a request (a database import, a re-seed fetch)
	// runs under life, which Close cancels and then waits for (bg), so it
	// never writes to a closed journal or store.
	life     context.Context
	stopLife context.CancelFunc
	bg       sync.WaitGroup

	dataDir os.FileInfo // the data directory as opened (storagewatch.go)

	closeOnce sync.Once
	closeErr  error
}

// background runs f on its own goroutine under the node's lifetime: Close
// cancels ctx and waits for f to return.
func (n *Node) background(f func(ctx context.Context)) {
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		f(n.life)
	}()
}

// openStorage opens journal and store. recoverAll replays the whole journal
// into the store (standalone: every durable record is committed); a mirror
// member leaves that to its applier, which follows the commit point.
func openStorage(cfg Config, log *slog.Logger, commitDelay time.Duration, recoverAll bool) (*Node, error) {
	if err := mkdirDurable(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("node: data dir (field data_dir): %w", err)
	}
	dataDir, err := os.Stat(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("node: data dir (field data_dir): %w", err)
	}
	j, err := journal.Open(filepath.Join(cfg.DataDir, "journal"), journal.Options{SegmentSize: cfg.Journal.SegmentSize, MaxCommitDelay: commitDelay})
	if err != nil {
		var ce *journal.CorruptionError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("node: journal is corrupt (%w); this member needs a rebuild from its mirror partner or a backup — do not delete the journal by hand", err)
		}
		return nil, fmt.Errorf("node: open journal: %w", err)
	}
	if rep := j.Recovery(); rep.TruncatedBytes > 0 {
		log.Warn("journal torn tail truncated", "segment", rep.TruncatedSegment, "offset", rep.TruncatedOffset, "bytes", rep.TruncatedBytes)
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, "store"), store.Options{Logger: log})
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("node: open store: %w", err)
	}
	if j.LastLSN() == 0 {
		// A new node begins epoch 1 with its marker, so every journal
		// starts with an epoch marker (DESIGN §3 "Journal"); two new
		// members of a tier begin with the same one.
		if _, err := j.Append(context.Background(), journal.TypeEpochMarker, 1, "", journal.EncodeEpochMarker(0, 0)); err != nil {
			st.Close()
			j.Close()
			return nil, fmt.Errorf("node: write first epoch marker: %w", err)
		}
	}
	if st.AppliedLSN() > j.DurableLSN() {
		st.Close()
		j.Close()
		return nil, fmt.Errorf("node: store applied LSN %d is ahead of the journal (durable LSN %d): the journal lost records; rebuild this member", st.AppliedLSN(), j.DurableLSN())
	}
	if recoverAll {
		t0 := time.Now()
		n, err := st.Recover(j)
		if err != nil {
			st.Close()
			j.Close()
			return nil, fmt.Errorf("node: recover store from journal: %w", err)
		}
		log.Info("store recovered", "replayed_records", n, "applied_lsn", st.AppliedLSN(), "duration_ms", time.Since(t0).Milliseconds())
	}
	n := &Node{cfg: cfg, log: log, journal: j, store: st, started: time.Now(), dataDir: dataDir, metrics: newMetrics(cfg.Tier, cfg.Member)}
	n.life, n.stopLife = context.WithCancel(context.Background())
	n.applier = store.NewApplier(st, j)
	return n, nil
}

// Open opens a standalone node and recovers its store from its journal. A
// corrupt journal is an error naming the segment and offset.
func Open(cfg Config, log *slog.Logger) (*Node, error) {
	n, err := openStorage(cfg, log, 0, true)
	if err != nil {
		return nil, err
	}
	n.epoch = n.store.Epoch()
	jl := sequencer.JournalLog{J: n.journal, Epoch: n.epoch, Applier: n.applier}
	n.seq = sequencer.New(timedLog{Log: jl, m: n.metrics}, n.store, n.applier)
	if n.verifier, _, err = LoadAccess(cfg.Access); err != nil {
		n.Close()
		return nil, fmt.Errorf("node: field access: %w", err)
	}
	return n, nil
}

// OpenMember opens a node as member of a tier of the cluster file.
func OpenMember(f *cluster.File, tier, member string, log *slog.Logger) (*Node, error) {
	t, ok := f.Tier(tier)
	if !ok {
		return nil, fmt.Errorf("node: --tier %q is not in the cluster file", tier)
	}
	me, ok := t.Member(member)
	if !ok {
		return nil, fmt.Errorf("node: --member %q is not in tier %q", member, tier)
	}
	cfg := Config{Tier: tier, Member: member, Role: me.Role, Listen: me.HTTP, DataDir: me.DataDir}
	cfg.Journal.SegmentSize = f.Journal.SegmentSize
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// A re-seed fetched and verified before the last stop is installed
	// before anything opens the journal or the store (rebuild.go).
	installed, err := installRebuild(cfg.DataDir, asyncRole(me), log)
	if err != nil {
		return nil, fmt.Errorf("%w; the staged snapshot is in %s", err, filepath.Join(cfg.DataDir, rebuildStagedDir))
	}
	// Adaptive commit delay, as on a standalone node: the loop queues
	// records while a group is being synced (it does not wait for the fsync,
	// see mirror.handle), so letting the next group fill for at most half an
	// fsync gathers the writers the last group released, on the backup the
	// records of the primary's next append: fewer fsyncs on a shared disk.
	// A lone writer never waits. It changes when records are synced, never
	// what is acknowledged: everything still waits for its own fsync.
	n, err := openStorage(cfg, log, 0, false)
	if err != nil {
		return nil, err
	}
	m, err := newMirror(n, f, tier, member)
	if err != nil {
		n.Close()
		return nil, err
	}
	n.mirror = m
	n.rb.restart = make(chan struct{})
	if installed {
		// Said in /mirror/status until this process stops, so whoever asked
		// (tandem ctl rebuild, the RebuildMember workflow) sees it happened.
		var mark catchupMark
		_ = statefile.Load(filepath.Join(cfg.DataDir, catchupFile), &mark)
		n.rb.set(RebuildStatus{State: "installed", Source: mark.Source, LSN: mark.LSN, At: time.Now().UTC()})
	}
	if err := n.openConfigSync(); err != nil {
		n.Close()
		return nil, err
	}
	var keys []access.Key
	if n.verifier, keys, err = LoadAccess(f.Access); err != nil {
		n.Close()
		return nil, fmt.Errorf("node: field access: %w", err)
	}
	if err := n.openLogin(f.Access, keys); err != nil {
		n.Close()
		return nil, fmt.Errorf("node: %w", err)
	}
	if err := writePIDFile(cfg.DataDir); err != nil {
		n.Close()
		return nil, err
	}
	n.seq = sequencer.New(m, n.store, n.applier)
	m.seq = n.seq
	if m.core.TakesWrites() {
		m.openWrites(uint64(m.core.LastLSN()))
	} else {
		n.seq.Fail(ErrNotPrimary)
	}
	return n, nil
}

// Sequencer returns the node's single writer order.
func (n *Node) Sequencer() *sequencer.Sequencer { return n.seq }

// Store returns the node's store, for reads.
func (n *Node) Store() *store.Store { return n.store }

// Status is the measured state of the node, served at /mirror/status.
type Status struct {
	Tier      string           `json:"tier"`
	Member    string           `json:"member"`
	Role      string           `json:"role"`
	Status    string           `json:"status"`
	Mirror    string           `json:"mirror"`
	Epoch     uint64           `json:"epoch"`
	Primary   string           `json:"primary,omitempty"` // the member this one knows as primary of its epoch
	PID       int              `json:"pid"`
	StartedAt time.Time        `json:"started_at"`
	Journal   JournalStatus    `json:"journal"`
	Databases []DatabaseStatus `json:"databases"`
	Links     map[string]bool  `json:"links,omitempty"`
	Mode      string           `json:"mode,omitempty"`
	Transfer  *TransferStatus  `json:"transfer,omitempty"`
	NoFail    bool             `json:"no_failover,omitempty"`
	Rejected  *RejectedInput   `json:"rejected_input,omitempty"`
	Gate      *GateStatus      `json:"gate,omitempty"` // last policy-gate verdict on this member
	// Alerts are what an operator must act on: this member or another
	// needing a rebuild, asyncs the primary no longer holds the journal for.
	Alerts  []string       `json:"alerts,omitempty"`
	Rebuild *RebuildStatus `json:"rebuild,omitempty"` // the last re-seed this process fetched
	Error   string         `json:"error,omitempty"`
}

// TransferStatus is journal shipping between the failover pair as this
// member measures it: active, caught-up, behind (with records) or
// disconnected.
type TransferStatus struct {
	Status        string  `json:"status"`
	BehindRecords uint64  `json:"behind_records"`
	BehindSeconds float64 `json:"behind_seconds"` // since it was last caught up
}

// RejectedInput counts messages the failover core refused.
type RejectedInput struct {
	UnknownType uint64 `json:"unknown_type"`
	StaleEpoch  uint64 `json:"stale_epoch"`
	Forged      uint64 `json:"forged"`
}

// JournalStatus is the journal part of Status.
type JournalStatus struct {
	FirstLSN   uint64 `json:"first_lsn"`
	LastLSN    uint64 `json:"last_lsn"`
	DurableLSN uint64 `json:"durable_lsn"`
	CommitLSN  uint64 `json:"commit_lsn"`
	Segments   int    `json:"segments"`
}

// DatabaseStatus is one database in Status.
type DatabaseStatus struct {
	Name       string `json:"name"`
	Status     string `json:"status"`
	AppliedLSN uint64 `json:"applied_lsn"`
}

// Status measures the node's state now.
func (n *Node) Status() Status {
	s := Status{
		Tier:      n.cfg.Tier,
		Member:    n.cfg.Member,
		Role:      n.cfg.Role,
		Status:    "primary",
		Mirror:    "none: standalone node, no failover partner configured",
		Epoch:     n.epoch,
		PID:       os.Getpid(),
		StartedAt: n.started.UTC(),
		Journal: JournalStatus{
			FirstLSN:   n.journal.FirstLSN(),
			LastLSN:    n.journal.LastLSN(),
			DurableLSN: n.journal.DurableLSN(),
			CommitLSN:  n.applier.Limit(),
			Segments:   len(n.journal.Segments()),
		},
	}
	if n.mirror != nil {
		snap := n.mirror.snapshot()
		s.Status, s.Epoch, s.Mode, s.NoFail, s.Links = string(snap.Status), snap.Epoch, snap.Mode, snap.NoFailover, snap.Peers
		s.Alerts = append(snap.Alerts, n.quarantineAlerts()...)
		s.Rebuild = n.rb.status()
		s.Mirror = fmt.Sprintf("tier %s, %s member", n.cfg.Tier, n.cfg.Role)
		s.Primary = snap.Primary
		if snap.Transfer.Status != "" {
			s.Transfer = &TransferStatus{Status: snap.Transfer.Status, BehindRecords: uint64(snap.Transfer.Behind),
				BehindSeconds: math.Round(snap.BehindSeconds*10) / 10}
		}
		s.Gate = n.gateStatus()
		s.Rejected = &RejectedInput{UnknownType: snap.Counters.UnknownType, StaleEpoch: snap.Counters.StaleEpoch, Forged: snap.Counters.Forged}
	}
	if err := n.healthErr(); err != nil {
		s.Status = "down"
		s.Error = err.Error()
	}
	applied := n.store.DatabaseLSNs()
	dbState := "normal"
	if n.mirror != nil && n.mirror.snapshot().DBState != "" {
		dbState = n.mirror.snapshot().DBState // a re-seeded member catching up
	}
	for _, db := range n.cfg.Databases {
		s.Databases = append(s.Databases, DatabaseStatus{Name: db, Status: dbState, AppliedLSN: applied[db]})
	}
	for _, rec := range n.addedDatabases() { // added by import (adddb.go)
		st := rec.State
		if dbState != "normal" {
			st = dbState
		}
		s.Databases = append(s.Databases, DatabaseStatus{Name: rec.Name, Status: st, AppliedLSN: applied[rec.Name]})
	}
	return s
}

func (n *Node) healthErr() error {
	if err := n.journal.Err(); err != nil {
		return err
	}
	if err := n.applier.Err(); err != nil {
		return err
	}
	if n.mirror != nil {
		return nil // a mirror member that is not primary has a stopped sequencer by design
	}
	return n.seq.Err()
}

// IsPrimary reports whether this node takes writes now.
func (n *Node) IsPrimary() bool {
	if n.healthErr() != nil {
		return false
	}
	if n.mirror == nil {
		return true
	}
	return n.mirror.snapshot().Status == failover.StatusPrimary
}

// memberState is the member status now ("primary", "backup", "async",
// "in-trouble", ...), "down" when the journal or the applier failed.
func (n *Node) memberState() string {
	if n.healthErr() != nil {
		return "down"
	}
	if n.mirror == nil {
		return "primary"
	}
	return string(n.mirror.snapshot().Status)
}

// Handler serves the node's HTTP endpoints.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := n.healthErr(); err != nil {
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /mirror/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(n.Status())
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(n), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.metrics.register(reg)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Health checks for load balancers: 200 only in that state, 503
	// otherwise (DESIGN §6).
	for _, want := range []string{"primary", "backup", "async"} {
		mux.HandleFunc("GET /mirror/"+want, func(w http.ResponseWriter, r *http.Request) {
			if got := n.memberState(); got != want {
				http.Error(w, "not "+want+": "+got+"\n", http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte(want + "\n"))
		})
	}
	if n.mirror != nil {
		n.adminRoutes(mux)
		// Logins with this member's effective users: any member answers,
		// so a failover target lets people log in (login.go).
		mux.Handle(login.Path, n.login)
		mux.HandleFunc("POST "+auditPath, n.serveForwardedAudit)
	} else if n.verifier != nil {
		// Standalone: /fhir with bearer tokens only (plain HTTP: keep the
		// listen address on loopback or behind a TLS-terminating proxy).
		n.mountFHIR(mux)
	}
	return mux
}

// Run serves HTTP on the configured address until ctx is cancelled, then
// shuts down cleanly: in-flight requests finish, the journal and the store
// are closed. A mirror member serves HTTPS with its cluster certificate and
// runs its failover loop beside it.
func (n *Node) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		n.Close()
		return fmt.Errorf("node: listen on %s (field listen): %w", n.cfg.Listen, err)
	}
	srv := &http.Server{Handler: n.Handler(), ReadHeaderTimeout: 10 * time.Second}
	if n.mirror != nil {
		tc := n.mirror.creds.ServerConfig()
		tc.ClientAuth = tls.VerifyClientCertIfGiven // health and status stay open to load balancers
		ln = tls.NewListener(ln, tc)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loopDone := make(chan error, 1)
	alignDone := make(chan struct{})
	if n.mirror != nil {
		go func() { loopDone <- n.mirror.run(ctx) }()
		go func() { defer close(alignDone); n.alignLoop(ctx) }()
	} else {
		close(alignDone)
	}
	storageFailed := make(chan error, 1)
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); n.watchStorage(ctx, storageFailed) }()
	n.log.Info("node serving", "addr", ln.Addr().String(),
		"last_lsn", n.journal.LastLSN(), "mirror", n.mirror != nil)
	var runErr error
	select {
	case <-ctx.Done():
	case err := <-storageFailed:
		runErr = err
		n.log.Error("node stopping: its storage failed under it; a mirror partner takes over. Check the disk and the data directory, then restart this member, or re-seed it (tandem ctl rebuild MEMBER --offline)", "err", err)
		cancel() // leave the mirror now: no more heartbeats or acknowledgements from this member
	case err := <-errc:
		runErr = fmt.Errorf("node: http server: %w", err)
	case err := <-loopDone:
		runErr = err
		loopDone <- err
	case <-n.rb.restart: // nil (never ready) on a standalone node
		runErr = ErrRestart
	}
	n.log.Info("node stopping")
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelShutdown()
	serr := srv.Shutdown(shutdownCtx)
	n.closeFHIR(shutdownCtx)
	cancel()
	<-alignDone
	<-watchDone
	if n.mirror != nil {
		if err := <-loopDone; err != nil && runErr == nil {
			runErr = err
		}
	}
	var closeErr error
	if errors.Is(runErr, ErrStorageFailed) {
		closeErr = n.closeBounded(5 * time.Second)
	} else {
		closeErr = n.Close()
	}
	if closeErr != nil && runErr == nil {
		runErr = closeErr
	}
	n.log.Info("node stopped")
	if runErr != nil {
		return runErr
	}
	if errors.Is(serr, http.ErrServerClosed) {
		return nil
	}
	return serr
}

// Close closes the journal and the store. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.stopLife()
		n.bg.Wait()
		n.applier.Close()
		serr := n.store.Close()
		jerr := n.journal.Close()
		n.closeErr = errors.Join(serr, jerr)
	})
	return n.closeErr
}

// mkdirDurable creates dir and any missing parents, fsyncing the parent of
// each directory it creates, so the whole path survives a power loss.
func mkdirDurable(dir string) error {
	dir = filepath.Clean(dir)
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirDurable(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	parent, err := os.Open(filepath.Dir(dir))
	if err != nil {
		return err
	}
	defer parent.Close()
	return parent.Sync()
}
