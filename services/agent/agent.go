// Package agent runs the agent that sits beside a failover member on its
// host: it tells whether the member runs, fences it on the partner's
// request (kills the process and marks its data directory so it cannot
// come back as primary), and hands over the member's journal tail from disk
// so the partner can take over without losing what the member committed.
//
// One goroutine owns the failover.Agent core (the loop in Run): persist the
// agent's state, then send, then act. The agent answers a fence request
// only after the member is dead and the mark is durable.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/statefile"
	"github.com/tandemhealth/tandem/mirror/transport"
	"github.com/tandemhealth/tandem/mirror/wire"
	"github.com/tandemhealth/tandem/services/node"
	"github.com/tandemhealth/tandem/services/opshttp"
)

// Server is a running agent.
type Server struct {
	log       *slog.Logger
	tier      string
	member    cluster.Member
	id        failover.ID
	core      *failover.Agent
	hub       *transport.Hub
	statePath string
	health    *http.Client
	inbox     chan failover.Message

	metrics *metrics
	ops     *opshttp.Server // nil without agent.http
}

// New prepares the agent of member in the cluster file.
func New(f *cluster.File, member string, log *slog.Logger) (*Server, error) {
	var tier cluster.Tier
	var me cluster.Member
	found := false
	for _, t := range f.Tiers {
		if m, ok := t.Member(member); ok {
			tier, me, found = t, m, true
		}
	}
	if !found || me.Role != cluster.RoleFailover {
		return nil, fmt.Errorf("agent: %q is not a failover member in the cluster file", member)
	}
	var peer string
	for _, m := range tier.Members {
		if m.Role == cluster.RoleFailover && m.Name != member {
			peer = m.Name
		}
	}
	id := failover.ID("agent-" + member)
	s := &Server{log: log, tier: tier.Name, member: me, id: id, inbox: make(chan failover.Message, 256),
		statePath: filepath.Join(filepath.Dir(filepath.Clean(me.DataDir)), string(id)+".json"),
		metrics:   newMetrics(tier.Name, member)}
	var st failover.AgentState
	if err := statefile.Load(s.statePath, &st); err != nil && !errors.Is(err, statefile.ErrNotExist) {
		return nil, fmt.Errorf("agent: %w", err)
	}
	s.core = failover.NewAgent(failover.AgentConfig{ID: id, Member: failover.ID(member), Peer: failover.ID(peer)}, st)
	s.metrics.publish(s.core, nil)
	creds, err := f.Credentials(string(id))
	if err != nil {
		return nil, err
	}
	ln, err := transport.Listen(me.Agent.Address, creds.ServerConfig())
	if err != nil {
		return nil, fmt.Errorf("%w (field agent.address of member %s)", err, member)
	}
	if me.Agent.HTTP != "" {
		s.ops, err = opshttp.Listen(me.Agent.HTTP, "agent.http of member "+member, creds.ServerConfig(), s.metrics.reg, s.metrics.health, log)
		if err != nil {
			ln.Close()
			return nil, err
		}
	}
	s.hub = transport.NewHub(ln, log)
	s.health = &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{TLSClientConfig: creds.ClientConfig("")}}
	return s, nil
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wait := s.hub.Serve(ctx, func(peer string, tm transport.Message) error {
		if tm.Tier != s.tier {
			return fmt.Errorf("message for tier %q", tm.Tier)
		}
		m, err := wire.Decode(tm)
		if err != nil {
			return err
		}
		s.inbox <- m
		return nil
	})
	defer func() { cancel(); wait() }()
	if s.ops != nil {
		defer s.ops.Close()
	}
	s.log.Info("agent serving", "member", s.member.Name, "addr", s.member.Agent.Address, "http", s.HTTPAddr())
	ticker := time.NewTicker(2 * cluster.TickInterval)
	defer ticker.Stop()
	for {
		s.metrics.loop.Turned()
		select {
		case <-ctx.Done():
			s.log.Info("agent stopped")
			return nil
		case <-ticker.C:
			up := s.memberUp(ctx)
			fenced := node.FenceMarked(s.member.DataDir)
			s.metrics.observe(up, fenced)
			if err := s.handle(ctx, s.core.Step(failover.Message{Type: failover.MsgMemberStatus, From: s.id, To: s.id, Up: up, Fenced: fenced})); err != nil {
				return err
			}
		case m := <-s.inbox:
			if err := s.handle(ctx, s.core.Step(m)); err != nil {
				return err
			}
		}
	}
}

// memberUp: the member answers its health endpoint.
func (s *Server) memberUp(ctx context.Context) bool {
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+s.member.HTTP+"/healthz", nil)
	resp, err := s.health.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (s *Server) handle(ctx context.Context, rd failover.Ready) error {
	if rd.AgentState != nil {
		if err := statefile.Save(s.statePath, *rd.AgentState); err != nil {
			return fmt.Errorf("agent: persist state: %w", err)
		}
	}
	s.metrics.publish(s.core, rd.Events) // before any answer leaves
	for _, m := range rd.Messages {
		tm, err := wire.Encode(s.tier, m)
		if err == nil {
			err = s.hub.Send(string(m.To), tm)
		}
		if err != nil && !errors.Is(err, transport.ErrNoConn) {
			s.log.Warn("send failed", "to", string(m.To), "err", err)
		}
	}
	for _, e := range rd.Events {
		s.log.Info("agent "+e.Kind, "detail", e.Detail)
	}
	for _, a := range rd.Actions {
		if a.Kind != failover.ActFence {
			continue
		}
		start := time.Now()
		done, err := s.fence()
		if err != nil {
			s.metrics.fenceFailures.Inc()
			// Not fenced: answer nothing; the partner asks again.
			s.log.Error("fence failed; the partner will not take over through this agent", "member", s.member.Name, "err", err)
			continue
		}
		s.metrics.fenceSeconds.Observe(time.Since(start).Seconds())
		if err := s.handle(ctx, s.core.Step(done)); err != nil {
			return err
		}
	}
	return nil
}

// HTTPAddr is the operations endpoint's address (/healthz, /metrics), or
// "" without agent.http.
func (s *Server) HTTPAddr() string {
	if s.ops == nil {
		return ""
	}
	return s.ops.Addr().String()
}

// fence kills the member, marks its data directory, and reads its journal
// and epoch from disk for the partner. The journal's lock is taken before
// the mark is written and held until the journal is read: a node starting
// meanwhile cannot open its journal, so it can neither miss the mark nor
// clear it before the tail is handed over. A starting node that holds the
// lock before it has written its pid file makes this attempt fail; the
// core asks again, and the next attempt kills it.
func (s *Server) fence() (failover.Message, error) {
	killed, err := node.KillMember(s.member.DataDir, s.member.Name, 10*time.Second)
	if err != nil {
		return failover.Message{}, err
	}
	j, err := journal.Open(filepath.Join(s.member.DataDir, "journal"), journal.Options{})
	if err != nil {
		return failover.Message{}, fmt.Errorf("member journal (a member process may be starting; the next attempt kills it): %w", err)
	}
	defer j.Close()
	var hs failover.HardState
	if err := statefile.Load(filepath.Join(s.member.DataDir, "hardstate.json"), &hs); err != nil {
		return failover.Message{}, fmt.Errorf("member hard state: %w", err)
	}
	if err := node.WriteFenceMark(s.member.DataDir, node.FenceMark{At: time.Now().UTC(), Epoch: uint64(hs.Epoch), By: string(s.id)}); err != nil {
		return failover.Message{}, err
	}
	base, entries, err := node.ReadMemberJournal(s.member.DataDir, j)
	if err != nil {
		return failover.Message{}, fmt.Errorf("member journal: %w", err)
	}
	s.log.Warn("member fenced", "member", s.member.Name, "killed_running_process", killed, "epoch", hs.Epoch,
		"journal_base_lsn", base.LSN, "journal_last_lsn", uint64(base.LSN)+uint64(len(entries)))
	return failover.Message{Type: failover.MsgFenceDone, From: s.id, To: s.id, Epoch: failover.FenceEpoch(hs),
		PrevLSN: base.LSN, PrevEpoch: base.Epoch, Entries: entries}, nil
}
