// Package node runs a Tandem data node: it opens the journal and the store,
// recovers the store from the journal, sequences writes, and serves the
// node's status and health endpoints over HTTP.
//
// This package wires cores to the network and the disk; it holds no
// decision logic of its own. It must never report a state it has not
// measured, and never keep serving writes after the journal failed.
package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/mirror/store"
)

// Node is one running data node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	journal *journal.Journal
	store   *store.Store
	applier *store.Applier
	seq     *sequencer.Sequencer
	epoch   uint64
	started time.Time

	closeOnce sync.Once
	closeErr  error
}

// Open opens the node's journal and store and recovers the store from the
// journal. A corrupt journal is an error naming the segment and offset.
func Open(cfg Config, log *slog.Logger) (*Node, error) {
	if err := mkdirDurable(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("node: data dir (field data_dir): %w", err)
	}
	j, err := journal.Open(filepath.Join(cfg.DataDir, "journal"), journal.Options{SegmentSize: cfg.Journal.SegmentSize})
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
	t0 := time.Now()
	n, err := st.Recover(j)
	if err != nil {
		st.Close()
		j.Close()
		return nil, fmt.Errorf("node: recover store from journal: %w", err)
	}
	log.Info("store recovered", "replayed_records", n, "applied_lsn", st.AppliedLSN(), "duration_ms", time.Since(t0).Milliseconds())

	epoch := st.Epoch()
	if j.LastLSN() == 0 {
		// A new node begins epoch 1 with its marker, so every journal
		// starts with an epoch marker (DESIGN §3 "Journal").
		epoch = 1
		if _, err := j.Append(context.Background(), journal.TypeEpochMarker, epoch, "", journal.EncodeEpochMarker(0, 0)); err != nil {
			st.Close()
			j.Close()
			return nil, fmt.Errorf("node: write first epoch marker: %w", err)
		}
		if _, err := st.Recover(j); err != nil {
			st.Close()
			j.Close()
			return nil, fmt.Errorf("node: apply first epoch marker: %w", err)
		}
	}
	applier := store.NewApplier(st, j)
	seq := sequencer.New(sequencer.JournalLog{J: j, Epoch: epoch, Applier: applier}, st, applier)
	return &Node{cfg: cfg, log: log, journal: j, store: st, applier: applier, seq: seq, epoch: epoch, started: time.Now()}, nil
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
	PID       int              `json:"pid"`
	StartedAt time.Time        `json:"started_at"`
	Journal   JournalStatus    `json:"journal"`
	Databases []DatabaseStatus `json:"databases"`
	Error     string           `json:"error,omitempty"`
}

// JournalStatus is the journal part of Status.
type JournalStatus struct {
	FirstLSN   uint64 `json:"first_lsn"`
	LastLSN    uint64 `json:"last_lsn"`
	DurableLSN uint64 `json:"durable_lsn"`
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
			Segments:   len(n.journal.Segments()),
		},
	}
	if err := n.healthErr(); err != nil {
		s.Status = "down"
		s.Error = err.Error()
	}
	applied := n.store.DatabaseLSNs()
	for _, db := range n.cfg.Databases {
		s.Databases = append(s.Databases, DatabaseStatus{Name: db, Status: "normal", AppliedLSN: applied[db]})
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
	return n.seq.Err()
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
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /mirror/primary", func(w http.ResponseWriter, r *http.Request) {
		if n.healthErr() != nil {
			http.Error(w, "not primary\n", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("primary\n"))
	})
	return mux
}

// Run serves HTTP on the configured address until ctx is cancelled, then
// shuts down cleanly: in-flight requests finish, the journal and the store
// are closed.
func (n *Node) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		n.Close()
		return fmt.Errorf("node: listen on %s (field listen): %w", n.cfg.Listen, err)
	}
	srv := &http.Server{Handler: n.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	n.log.Info("node serving", "tier", n.cfg.Tier, "member", n.cfg.Member, "addr", ln.Addr().String(),
		"epoch", n.epoch, "last_lsn", n.journal.LastLSN())
	select {
	case <-ctx.Done():
	case err := <-errc:
		n.Close()
		return fmt.Errorf("node: http server: %w", err)
	}
	n.log.Info("node stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	serr := srv.Shutdown(shutdownCtx)
	if err := n.Close(); err != nil {
		return err
	}
	n.log.Info("node stopped")
	return serr
}

// Close closes the journal and the store. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.applier.Close()
		serr := n.store.Close()
		jerr := n.journal.Close()
		n.closeErr = errors.Join(serr, jerr)
	})
	return n.closeErr
}

// mkdirDurable creates dir if needed and fsyncs its parent, so the
// directory entry itself survives a power loss.
func mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	parent, err := os.Open(filepath.Dir(filepath.Clean(dir)))
	if err != nil {
		return err
	}
	defer parent.Close()
	return parent.Sync()
}
