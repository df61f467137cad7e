package arbiter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/tandemhealth/tandem/services/opshttp/opstest"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/transport"
	"github.com/tandemhealth/tandem/mirror/wire"
)

func testCluster(t *testing.T) *cluster.File {
	t.Helper()
	dir := t.TempDir()
	y := fmt.Sprintf(`
tls: {dev_ca_dir: %s}
arbiter: {address: "%s", data_dir: %s, http: "%s"}
tiers:
  - name: records
    members:
      - {name: a, role: failover, address: "%s", http: "%s", data_dir: /tmp/a, agent: {address: "%s"}}
      - {name: b, role: failover, address: "%s", http: "%s", data_dir: /tmp/b, agent: {address: "%s"}}
`, filepath.Join(dir, "ca"), opstest.FreeAddr(t), filepath.Join(dir, "arbiter"), opstest.FreeAddr(t),
		opstest.FreeAddr(t), opstest.FreeAddr(t), opstest.FreeAddr(t), opstest.FreeAddr(t), opstest.FreeAddr(t), opstest.FreeAddr(t))
	f, err := cluster.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func startServer(t *testing.T, f *cluster.File) (stop func()) {
	t.Helper()
	s, err := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("arbiter run: %v", err)
		}
	}
}

func dialAs(t *testing.T, f *cluster.File, identity string) *transport.Conn {
	t.Helper()
	creds, err := f.Credentials(identity)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, f.Arbiter.Address, creds.ClientConfig("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ask(t *testing.T, c *transport.Conn, m failover.Message) failover.Message {
	t.Helper()
	tm, err := wire.Encode("records", m)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(tm); err != nil {
		t.Fatal(err)
	}
	reply := make(chan failover.Message, 1)
	go func() {
		r, err := c.Recv()
		if err != nil {
			close(reply)
			return
		}
		d, err := wire.Decode(r)
		if err != nil {
			close(reply)
			return
		}
		reply <- d
	}()
	select {
	case r, ok := <-reply:
		if !ok {
			t.Fatal("connection closed without an answer")
		}
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no answer")
	}
	return failover.Message{}
}

// TestDecisionIsDurableBeforeTheAnswer: "backup no longer active" is
// answered only after the record is on disk, and survives a restart.
func TestDecisionIsDurableBeforeTheAnswer(t *testing.T) {
	f := testCluster(t)
	if err := Seed(f.Arbiter.DataDir, "records", "a", "b"); err != nil {
		t.Fatal(err)
	}
	stop := startServer(t, f)
	c := dialAs(t, f, "a")
	r := ask(t, c, failover.Message{Type: failover.MsgArbiterReq, From: "a", To: "arbiter", Epoch: 1, Op: failover.OpRead})
	if !r.OK || r.Record.Primary != "a" || r.Record.Version != (failover.Version{Epoch: 1}) {
		t.Fatalf("read: %+v", r)
	}
	r = ask(t, c, failover.Message{Type: failover.MsgArbiterReq, From: "a", To: "arbiter", Epoch: 1,
		Op: failover.OpBackupInactive, Seen: failover.Version{Epoch: 1}})
	if !r.OK || r.Record.BackupActive || r.Record.Version.Seq != 1 {
		t.Fatalf("backup-inactive: %+v", r)
	}
	// On disk before the answer arrived.
	st, err := loadState(f.Arbiter.DataDir, "records")
	if err != nil || st.Record.Version.Seq != 1 || st.Record.BackupActive {
		t.Fatalf("on disk: %+v %v", st, err)
	}
	c.Close()
	stop()

	// A restarted arbiter answers from the durable record; a stale CAS fails.
	stop = startServer(t, f)
	defer stop()
	c = dialAs(t, f, "a")
	defer c.Close()
	r = ask(t, c, failover.Message{Type: failover.MsgArbiterReq, From: "a", To: "arbiter", Epoch: 1,
		Op: failover.OpBackupActive, Seen: failover.Version{Epoch: 1}})
	if r.OK || r.Record.Version.Seq != 1 {
		t.Fatalf("CAS on a stale version was accepted: %+v", r)
	}
}

// TestUnseededArbiterGrantsNothing: an arbiter without a record (new, or
// after losing its disk) never grants; at most it refuses and asks the
// members for their records.
func TestUnseededArbiterGrantsNothing(t *testing.T) {
	f := testCluster(t)
	stop := startServer(t, f)
	defer stop()
	c := dialAs(t, f, "b")
	defer c.Close()
	tm, _ := wire.Encode("records", failover.Message{Type: failover.MsgArbiterReq, From: "b", To: "arbiter", Epoch: 1,
		Op: failover.OpTakeover, Seen: failover.Version{Epoch: 1}})
	c.Send(tm)
	got := make(chan failover.Message, 1)
	go func() {
		if m, err := c.Recv(); err == nil {
			d, _ := wire.Decode(m)
			got <- d
		}
	}()
	select {
	case m := <-got:
		if m.OK || m.Record.Primary != "" {
			t.Fatalf("an arbiter without a record answered a takeover request with %v", m)
		}
	case <-time.After(1 * time.Second):
	}
	if _, err := loadState(f.Arbiter.DataDir, "records"); err != ErrNoState {
		t.Fatalf("an unseeded arbiter wrote a record: %v", err)
	}
}

func TestForgedSenderClosesTheConnection(t *testing.T) {
	f := testCluster(t)
	Seed(f.Arbiter.DataDir, "records", "a", "b")
	stop := startServer(t, f)
	defer stop()
	c := dialAs(t, f, "b")
	defer c.Close()
	// b's certificate, a frame claiming to be a.
	tm, _ := wire.Encode("records", failover.Message{Type: failover.MsgArbiterReq, From: "a", To: "arbiter", Epoch: 1,
		Op: failover.OpBackupInactive, Seen: failover.Version{Epoch: 1}})
	c.Send(tm)
	c2 := dialAs(t, f, "a")
	defer c2.Close()
	r := ask(t, c2, failover.Message{Type: failover.MsgArbiterReq, From: "a", To: "arbiter", Epoch: 1, Op: failover.OpRead})
	if r.Record.Version.Seq != 0 || !r.Record.BackupActive {
		t.Fatalf("a forged request changed the record: %+v", r.Record)
	}
}

func TestSeedRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	if err := Seed(dir, "records", "a", "b"); err != nil {
		t.Fatal(err)
	}
	if err := Seed(dir, "records", "b", "a"); !errors.Is(err, ErrAlreadySeeded) {
		t.Fatal("seeded over an existing record")
	}
}

func TestDamagedRecordStopsTheArbiterNamingTheFile(t *testing.T) {
	f := testCluster(t)
	Seed(f.Arbiter.DataDir, "records", "a", "b")
	p := statePath(f.Arbiter.DataDir, "records")
	data, _ := os.ReadFile(p)
	os.WriteFile(p, bytes.Replace(data, []byte(`"Primary": "a"`), []byte(`"Primary": "b"`), 1), 0o600)
	if bytes.Equal(data, mustRead(t, p)) {
		t.Fatal("test did not damage the file")
	}
	_, err := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("damaged record: %v", err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
