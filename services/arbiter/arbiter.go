// Package arbiter runs the arbiter process: one failover.Arbiter core per
// tier of the cluster file, its record kept durable on disk, reached by the
// failover members over mutual TLS.
//
// One goroutine owns every core (the loop in Run): it feeds messages and
// ticks in, then for each Ready persists the record (fsync) before any
// answer leaves, then sends, then logs. The arbiter never answers from a
// record it has not made durable, and never grants from an empty state.
package arbiter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/transport"
	"github.com/tandemhealth/tandem/mirror/wire"
	"github.com/tandemhealth/tandem/services/opshttp"
)

// Server is a running arbiter.
type Server struct {
	file  *cluster.File
	log   *slog.Logger
	dir   string
	hub   *transport.Hub
	addr  string
	cores map[string]*failover.Arbiter
	pairs map[string][2]failover.ID // each tier's failover members
	start time.Time
	inbox chan inbound

	metrics *metrics
	ops     *opshttp.Server // nil without arbiter.http
}

type inbound struct {
	tier string
	msg  failover.Message
}

// New loads every tier's durable record and listens on the arbiter address.
func New(f *cluster.File, log *slog.Logger) (*Server, error) {
	s := &Server{file: f, log: log, dir: f.Arbiter.DataDir, cores: map[string]*failover.Arbiter{},
		pairs: map[string][2]failover.ID{}, inbox: make(chan inbound, 1024), start: time.Now(), metrics: newMetrics()}
	for _, t := range f.Tiers {
		st, err := loadState(s.dir, t.Name)
		if errors.Is(err, ErrNoState) {
			log.Warn("arbiter has no record for this tier: it grants nothing until seeded by an operator or re-seeded from both failover members' records",
				"tier", t.Name, "file", statePath(s.dir, t.Name))
			st = failover.ArbiterState{}
		} else if err != nil {
			return nil, err
		}
		var members [2]failover.ID
		var dr []failover.ID // may ask to be promoted when the pair is gone
		i := 0
		for _, m := range t.Members {
			switch m.Role {
			case cluster.RoleFailover:
				members[i] = failover.ID(m.Name)
				i++
			case cluster.RoleDR:
				dr = append(dr, failover.ID(m.Name))
			}
		}
		mut, raw, err := cluster.MutationsFromEnv()
		if err != nil {
			return nil, err
		}
		if raw != "" {
			log.Error("TEST ONLY: deliberate failover bugs are switched on; never run this in production", "mutations", raw)
		}
		s.cores[t.Name] = failover.NewArbiter(failover.ArbiterConfig{ID: "arbiter", Members: members, DR: dr, QoS: f.QoSTicks(), Mutations: mut}, st, 0)
		s.pairs[t.Name] = members
		s.metrics.publish(t.Name, members, s.cores[t.Name], nil)
		log.Info("arbiter tier loaded", "tier", t.Name, "seeded", st.Seeded, "record", st.Record.String())
	}
	creds, err := f.Credentials("arbiter")
	if err != nil {
		return nil, err
	}
	ln, err := transport.Listen(f.Arbiter.Address, creds.ServerConfig())
	if err != nil {
		return nil, fmt.Errorf("%w (field arbiter.address)", err)
	}
	s.addr = ln.Addr().String()
	if f.Arbiter.HTTP != "" {
		s.ops, err = opshttp.Listen(f.Arbiter.HTTP, "arbiter.http", creds.ServerConfig(), s.metrics.reg, s.metrics.health, log)
		if err != nil {
			ln.Close()
			return nil, err
		}
	}
	s.hub = transport.NewHub(ln, log)
	return s, nil
}

// HTTPAddr is the operations endpoint's address (/healthz, /metrics), or
// "" without arbiter.http.
func (s *Server) HTTPAddr() string {
	if s.ops == nil {
		return ""
	}
	return s.ops.Addr().String()
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.addr }

// Run serves until ctx is cancelled.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wait := s.hub.Serve(ctx, s.onFrame)
	defer func() { cancel(); wait() }()
	if s.ops != nil {
		defer s.ops.Close()
	}
	s.log.Info("arbiter serving", "addr", s.Addr(), "http", s.HTTPAddr(), "tiers", len(s.cores))

	ticker := time.NewTicker(cluster.TickInterval)
	defer ticker.Stop()
	for {
		s.metrics.loop.Turned()
		select {
		case <-ctx.Done():
			s.log.Info("arbiter stopped")
			return nil
		case <-ticker.C:
			now := s.now()
			for tier, core := range s.cores {
				if err := s.handle(tier, core.Tick(now)); err != nil {
					return err
				}
			}
		case in := <-s.inbox:
			core := s.cores[in.tier]
			core.Tick(s.now())
			if err := s.handle(in.tier, core.Step(in.msg)); err != nil {
				return err
			}
		}
	}
}

// onFrame checks a frame and queues it for the loop; an error cuts the peer off.
func (s *Server) onFrame(peer string, tm transport.Message) error {
	if _, ok := s.cores[tm.Tier]; !ok {
		return fmt.Errorf("message for unknown tier %q", tm.Tier)
	}
	m, err := wire.Decode(tm)
	if err != nil {
		return err
	}
	s.inbox <- inbound{tier: tm.Tier, msg: m}
	return nil
}

func (s *Server) now() failover.Tick {
	return failover.Tick(time.Since(s.start) / cluster.TickInterval)
}

// handle executes a Ready: persist, then send, then log. A failed persist
// stops the arbiter: it must not answer from a record it could not save.
func (s *Server) handle(tier string, rd failover.Ready) error {
	if rd.ArbiterState != nil {
		start := time.Now()
		err := saveState(s.dir, tier, *rd.ArbiterState)
		s.metrics.persist.Observe(time.Since(start).Seconds())
		if err != nil {
			s.log.Error("arbiter could not persist its record; stopping so it never answers from an unsaved decision", "tier", tier, "err", err)
			return fmt.Errorf("arbiter: persist record of tier %s: %w", tier, err)
		}
	}
	// Published before any answer leaves: whoever saw an answer sees its
	// record on /metrics.
	s.metrics.publish(tier, s.pairs[tier], s.cores[tier], rd.Events)
	for _, m := range rd.Messages {
		tm, err := wire.Encode(tier, m)
		if err == nil {
			err = s.hub.Send(string(m.To), tm)
		}
		if err != nil && !errors.Is(err, transport.ErrNoConn) {
			s.log.Warn("send failed", "tier", tier, "to", string(m.To), "err", err)
		}
	}
	for _, e := range rd.Events {
		s.log.Info("arbiter "+e.Kind, "tier", tier, "detail", e.Detail)
	}
	return nil
}
