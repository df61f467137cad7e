package transport

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Hub serves a listener for a process that answers on the connection it was
// asked on (the arbiter, an agent): it accepts peers, hands their frames to
// one callback, and keeps the latest connection of each peer identity so an
// answer can be sent back.
type Hub struct {
	ln  *Listener
	log *slog.Logger

	mu    sync.Mutex
	conns map[string]*Conn
}

// NewHub serves ln.
func NewHub(ln *Listener, log *slog.Logger) *Hub {
	return &Hub{ln: ln, log: log, conns: map[string]*Conn{}}
}

// Run accepts connections until ctx ends. onFrame runs on the connection's
// own goroutine; an error from it closes that connection with the error
// logged as the reason, so a peer that sends something wrong is cut off.
func (h *Hub) Run(ctx context.Context, onFrame func(peer string, m Message) error) {
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() { <-ctx.Done(); h.ln.Close(); h.closeAll() }()
	for {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := h.ln.Accept(hctx)
		cancel()
		if ctx.Err() != nil {
			if c != nil {
				c.Close()
			}
			return
		}
		if err != nil {
			h.log.Warn("connection refused", "err", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.serve(c, onFrame)
		}()
	}
}

func (h *Hub) serve(c *Conn, onFrame func(string, Message) error) {
	defer c.Close()
	peer := c.Peer()
	h.mu.Lock()
	if old := h.conns[peer]; old != nil {
		old.Close()
	}
	h.conns[peer] = c
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		if h.conns[peer] == c {
			delete(h.conns, peer)
		}
		h.mu.Unlock()
	}()
	for {
		m, err := c.Recv()
		if err == nil {
			err = onFrame(peer, m)
		}
		if err != nil {
			if errors.Is(err, ErrBadFrame) || errors.Is(err, ErrForged) {
				h.log.Warn("peer cut off", "peer", peer, "reason", err.Error())
			} else {
				h.log.Debug("peer connection closed", "peer", peer, "reason", err.Error())
			}
			return
		}
	}
}

// Serve runs Run on a goroutine the hub owns and returns a function that
// waits for it to end (after ctx is cancelled).
func (h *Hub) Serve(ctx context.Context, onFrame func(peer string, m Message) error) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Run(ctx, onFrame)
	}()
	return func() { <-done }
}

// Send writes m to peer's latest connection. ErrNoConn when it has none:
// the peer will reconnect and ask again.
func (h *Hub) Send(peer string, m Message) error {
	h.mu.Lock()
	c := h.conns[peer]
	h.mu.Unlock()
	if c == nil {
		return ErrNoConn
	}
	return c.Send(m)
}

// ErrNoConn means the peer is not connected.
var ErrNoConn = errors.New("transport: peer not connected")

func (h *Hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
}
