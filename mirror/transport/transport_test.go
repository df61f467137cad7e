package transport

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"time"
)

func sample() Message {
	return Message{Type: 7, Tier: "records", From: "a", Epoch: 3, Payload: []byte("journal bytes")}
}

func TestFrameRoundTrip(t *testing.T) {
	cases := []Message{
		sample(),
		{Type: 1, Tier: "t", From: "arbiter", Epoch: 0},
		{Type: 255, Tier: "x", From: "agent-b", Epoch: 1 << 62, Payload: bytes.Repeat([]byte{0}, 70000)},
	}
	for _, m := range cases {
		b, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		got, n, err := DecodeFrame(b)
		if err != nil || n != len(b) {
			t.Fatalf("decode: %v (used %d of %d)", err, n, len(b))
		}
		if got.Type != m.Type || got.Tier != m.Tier || got.From != m.From || got.Epoch != m.Epoch || !bytes.Equal(got.Payload, m.Payload) {
			t.Fatalf("round trip: got %+v want %+v", got, m)
		}
		got2, err := ReadFrame(bytes.NewReader(b))
		if err != nil || got2.Epoch != m.Epoch {
			t.Fatalf("ReadFrame: %v", err)
		}
	}
}

// TestFrameGoldenBytes pins the wire format: a change here is a protocol
// version change.
func TestFrameGoldenBytes(t *testing.T) {
	b, err := AppendFrame(nil, Message{Type: 2, Tier: "r", From: "a", Epoch: 1, Payload: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	// magic "TM", version 1, type 2, body length 13, CRC-32C, tier "r",
	// sender "a", epoch 1, payload "x".
	const want = "544d0102" + "0000000d" + "595e2831" + "0172" + "0161" + "0000000000000001" + "78"
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("frame bytes changed:\n got %s\nwant %s", got, want)
	}
}

func TestFrameRejectsEveryCorruption(t *testing.T) {
	b, _ := AppendFrame(nil, sample())
	for i := range b {
		for _, bit := range []byte{0x01, 0x80} {
			c := bytes.Clone(b)
			c[i] ^= bit
			if _, _, err := DecodeFrame(c); err == nil {
				t.Fatalf("flip of bit %02x at byte %d accepted", bit, i)
			} else if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("byte %d: error %v does not wrap ErrBadFrame", i, err)
			}
		}
	}
	for n := range len(b) {
		if _, _, err := DecodeFrame(b[:n]); err == nil {
			t.Fatalf("truncation to %d bytes accepted", n)
		}
		if _, err := ReadFrame(bytes.NewReader(b[:n])); err == nil {
			t.Fatalf("ReadFrame accepted truncation to %d bytes", n)
		} else if n == 0 && err != io.EOF {
			t.Fatalf("empty stream: %v, want io.EOF", err)
		}
	}
}

func TestAppendFrameRefusesBadMessages(t *testing.T) {
	for _, m := range []Message{
		{Type: 0, Tier: "t", From: "a"},
		{Type: 1, Tier: "", From: "a"},
		{Type: 1, Tier: "t", From: string(bytes.Repeat([]byte("a"), 64))},
		{Type: 1, Tier: "t", From: "a", Payload: make([]byte, MaxBody)},
	} {
		if _, err := AppendFrame(nil, m); err == nil {
			t.Fatalf("encoded %+v", m.Type)
		}
	}
}

func FuzzDecodeFrame(f *testing.F) {
	b, _ := AppendFrame(nil, sample())
	f.Add(b)
	f.Add(b[:HeaderSize])
	f.Add([]byte("TM\x01\x01\x00\x00\x00\x0c\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, n, err := DecodeFrame(data)
		if err != nil {
			return
		}
		if n > len(data) {
			t.Fatalf("used %d of %d bytes", n, len(data))
		}
		// Whatever decodes must re-encode to the same bytes.
		again, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatalf("decoded frame does not re-encode: %v", err)
		}
		if !bytes.Equal(again, data[:n]) {
			t.Fatal("decode/encode not inverse")
		}
	})
}

func pair(t *testing.T, serverCA, clientCA *CA, serverID, clientID string) (*Conn, *Conn, error) {
	t.Helper()
	sc, err := serverCA.Issue(serverID)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := clientCA.Issue(clientID)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0", Credentials{Cert: sc, Roots: serverCA.Pool()}.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	type res struct {
		c   *Conn
		err error
	}
	accepted := make(chan res, 1)
	go func() {
		c, err := ln.Accept(ctx)
		accepted <- res{c, err}
	}()
	client, cerr := Dial(ctx, ln.Addr().String(), Credentials{Cert: cc, Roots: clientCA.Pool()}.ClientConfig("127.0.0.1"))
	if cerr == nil {
		// TLS 1.3 client handshakes finish before the server has checked the
		// client's certificate; a round trip shows whether it was accepted.
		cerr = client.Send(Message{Type: 1, Tier: "t", From: clientID})
	}
	r := <-accepted
	if r.err != nil {
		return nil, nil, r.err
	}
	if cerr != nil {
		return nil, nil, cerr
	}
	return r.c, client, nil
}

func TestMutualTLSCarriesIdentity(t *testing.T) {
	ca, err := EnsureDevCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	server, client, err := pair(t, ca, ca, "b", "a")
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	defer client.Close()
	if server.Peer() != "a" || client.Peer() != "b" {
		t.Fatalf("peers %q %q", server.Peer(), client.Peer())
	}
	m, err := server.Recv()
	if err != nil || m.From != "a" {
		t.Fatalf("recv %+v %v", m, err)
	}
	// A frame that claims to come from someone else is refused.
	if err := client.Send(Message{Type: 1, Tier: "t", From: "arbiter"}); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Recv(); !errors.Is(err, ErrForged) {
		t.Fatalf("forged sender: %v, want ErrForged", err)
	}
}

func TestPeerFromAnotherCAIsRefused(t *testing.T) {
	ours, _ := EnsureDevCA(t.TempDir())
	theirs, _ := EnsureDevCA(t.TempDir())
	// A client with a certificate from another CA: the server refuses it.
	sc, _ := ours.Issue("b")
	cc, _ := theirs.Issue("a")
	ln, err := Listen("127.0.0.1:0", Credentials{Cert: sc, Roots: ours.Pool()}.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	acceptErr := make(chan error, 1)
	go func() { _, err := ln.Accept(ctx); acceptErr <- err }()
	// The client trusts our CA, so only the server's check can refuse it.
	roots := ours.Pool()
	c, err := Dial(ctx, ln.Addr().String(), Credentials{Cert: cc, Roots: roots}.ClientConfig("127.0.0.1"))
	if err == nil {
		c.Send(Message{Type: 1, Tier: "t", From: "a"})
		c.Close()
	}
	if err := <-acceptErr; err == nil {
		t.Fatal("server accepted a client certificate from another CA")
	}

	// A server with a certificate from another CA: the client refuses it.
	if _, _, err := pair(t, theirs, ours, "b", "a"); err == nil {
		t.Fatal("client accepted a server certificate from another CA")
	}
}

func TestEnsureDevCAIsStable(t *testing.T) {
	dir := t.TempDir()
	a, err := EnsureDevCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := EnsureDevCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Cert.Equal(b.Cert) {
		t.Fatal("second start generated a new CA")
	}
}
