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
	"sync"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/transport"
	"github.com/tandemhealth/tandem/mirror/wire"
)

// TickInterval is the real time of one core tick for every Tandem shell.
const TickInterval = 50 * time.Millisecond

// QoSTicks converts the cluster's QoS into core ticks.
func QoSTicks(f *cluster.File) failover.Tick {
	t := failover.Tick(time.Duration(f.QoS) / TickInterval)
	if t < 2 {
		t = 2
	}
	return t
}

// Server is a running arbiter.
type Server struct {
	file  *cluster.File
	log   *slog.Logger
	dir   string
	ln    *transport.Listener
	cores map[string]*failover.Arbiter
	start time.Time

	inbox chan inbound

	mu    sync.Mutex
	conns map[failover.ID]*transport.Conn // member -> its latest connection
}

type inbound struct {
	tier string
	msg  failover.Message
	conn *transport.Conn
}

// New loads every tier's durable record and listens on the arbiter address.
func New(f *cluster.File, log *slog.Logger) (*Server, error) {
	s := &Server{file: f, log: log, dir: f.Arbiter.DataDir, cores: map[string]*failover.Arbiter{},
		inbox: make(chan inbound, 1024), conns: map[failover.ID]*transport.Conn{}, start: time.Now()}
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
		i := 0
		for _, m := range t.Members {
			if m.Role == cluster.RoleFailover {
				members[i] = failover.ID(m.Name)
				i++
			}
		}
		s.cores[t.Name] = failover.NewArbiter(failover.ArbiterConfig{ID: "arbiter", Members: members, QoS: QoSTicks(f)}, st, 0)
		log.Info("arbiter tier loaded", "tier", t.Name, "seeded", st.Seeded, "record", st.Record.String())
	}
	creds, err := f.Credentials("arbiter")
	if err != nil {
		return nil, err
	}
	s.ln, err = transport.Listen(f.Arbiter.Address, creds.ServerConfig())
	if err != nil {
		return nil, fmt.Errorf("%w (field arbiter.address)", err)
	}
	return s, nil
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx is cancelled.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.acceptLoop(ctx, &wg)
	}()
	go func() { <-ctx.Done(); s.ln.Close() }()
	s.log.Info("arbiter serving", "addr", s.Addr(), "tiers", len(s.cores))

	ticker := time.NewTicker(TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			s.closeConns()
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

func (s *Server) now() failover.Tick { return failover.Tick(time.Since(s.start) / TickInterval) }

// handle executes a Ready: persist, then send, then log. A failed persist
// stops the arbiter: it must not answer from a record it could not save.
func (s *Server) handle(tier string, rd failover.Ready) error {
	if rd.ArbiterState != nil {
		if err := saveState(s.dir, tier, *rd.ArbiterState); err != nil {
			s.log.Error("arbiter could not persist its record; stopping so it never answers from an unsaved decision", "tier", tier, "err", err)
			return fmt.Errorf("arbiter: persist record of tier %s: %w", tier, err)
		}
	}
	for _, m := range rd.Messages {
		s.mu.Lock()
		c := s.conns[m.To]
		s.mu.Unlock()
		if c == nil {
			continue // the member reconnects and asks again
		}
		tm, err := wire.Encode(tier, m)
		if err == nil {
			err = c.Send(tm)
		}
		if err != nil {
			s.log.Warn("send failed", "tier", tier, "to", string(m.To), "err", err)
		}
	}
	for _, e := range rd.Events {
		s.log.Info("arbiter "+e.Kind, "tier", tier, "detail", e.Detail)
	}
	return nil
}

func (s *Server) acceptLoop(ctx context.Context, wg *sync.WaitGroup) {
	for {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := s.ln.Accept(hctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.Warn("connection refused", "err", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}

// serveConn reads frames from one peer; anything that fails its checks
// closes the connection with a logged reason and reaches no core.
func (s *Server) serveConn(ctx context.Context, c *transport.Conn) {
	defer c.Close()
	peer := failover.ID(c.Peer())
	s.mu.Lock()
	if old := s.conns[peer]; old != nil {
		old.Close()
	}
	s.conns[peer] = c
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.conns[peer] == c {
			delete(s.conns, peer)
		}
		s.mu.Unlock()
	}()
	for {
		tm, err := c.Recv()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Info("peer connection closed", "peer", string(peer), "reason", err.Error())
			}
			return
		}
		if _, ok := s.cores[tm.Tier]; !ok {
			s.log.Warn("refused message for an unknown tier", "peer", string(peer), "tier", tm.Tier)
			return
		}
		m, err := wire.Decode(tm)
		if err != nil {
			s.log.Warn("refused a bad message", "peer", string(peer), "err", err)
			return
		}
		select {
		case s.inbox <- inbound{tier: tm.Tier, msg: m, conn: c}:
		case <-ctx.Done():
			return
		}
	}
}

func (s *Server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}
