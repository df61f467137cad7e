package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
)

// ErrForged is returned when a frame names a sender other than the identity
// in the peer's certificate.
var ErrForged = errors.New("transport: sender does not match the peer certificate")

// Conn is an authenticated, framed connection to one peer.
type Conn struct {
	tc   *tls.Conn
	peer string
	r    *bufio.Reader

	wmu sync.Mutex
	w   *bufio.Writer
	buf []byte
}

func newConn(tc *tls.Conn) (*Conn, error) {
	st := tc.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		tc.Close()
		return nil, errors.New("transport: peer presented no certificate")
	}
	return &Conn{tc: tc, peer: st.PeerCertificates[0].Subject.CommonName,
		r: bufio.NewReaderSize(tc, 64<<10), w: bufio.NewWriterSize(tc, 64<<10)}, nil
}

// Dial connects to addr and completes the mutual-TLS handshake.
func Dial(ctx context.Context, addr string, cfg *tls.Config) (*Conn, error) {
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	return newConn(c.(*tls.Conn))
}

// Peer is the identity (certificate common name) of the other side.
func (c *Conn) Peer() string { return c.peer }

// RemoteAddr is the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.tc.RemoteAddr() }

// Send writes and flushes one frame. It is safe for concurrent use.
func (c *Conn) Send(m Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var err error
	c.buf, err = AppendFrame(c.buf[:0], m)
	if err != nil {
		return err
	}
	if _, err := c.w.Write(c.buf); err != nil {
		return err
	}
	return c.w.Flush()
}

// Recv reads the next frame. A frame that fails its checks, or names a
// sender other than the peer's certificate, is an error and the connection
// must be closed: the stream can no longer be trusted.
func (c *Conn) Recv() (Message, error) {
	m, err := ReadFrame(c.r)
	if err != nil {
		return Message{}, err
	}
	if m.From != c.peer {
		return Message{}, fmt.Errorf("%w: frame says %q, certificate says %q", ErrForged, m.From, c.peer)
	}
	return m, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.tc.Close() }

// Listener accepts authenticated connections.
type Listener struct {
	ln  net.Listener
	cfg *tls.Config
}

// Listen listens on addr for mutual-TLS connections.
func Listen(addr string, cfg *tls.Config) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", addr, err)
	}
	return &Listener{ln: ln, cfg: cfg}, nil
}

// Addr is the listening address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Accept waits for a connection and completes its handshake within ctx. A
// peer whose certificate does not chain to our CA fails here.
func (l *Listener) Accept(ctx context.Context) (*Conn, error) {
	raw, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	tc := tls.Server(raw, l.cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		tc.Close()
		return nil, fmt.Errorf("transport: handshake with %s refused: %w", raw.RemoteAddr(), err)
	}
	return newConn(tc)
}

// Close stops listening.
func (l *Listener) Close() error { return l.ln.Close() }
