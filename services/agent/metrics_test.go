package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/tandemhealth/tandem/services/opshttp/opstest"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/statefile"
	"github.com/tandemhealth/tandem/mirror/transport"
	"github.com/tandemhealth/tandem/mirror/wire"
	"github.com/tandemhealth/tandem/services/node"
)

// TestOperationsEndpointFollowsTheMemberAndFences: agent.http reports the
// member down (nothing answers its /healthz), then a fence requested by the
// partner over mTLS: the mark, the durable fence count and its duration.
func TestOperationsEndpointFollowsTheMemberAndFences(t *testing.T) {
	dir := t.TempDir()
	dataA := filepath.Join(dir, "a")
	y := fmt.Sprintf(`
tls: {dev_ca_dir: %s}
arbiter: {address: "%s", data_dir: %s}
tiers:
  - name: records
    members:
      - {name: a, role: failover, address: "%s", http: "%s", data_dir: %s, agent: {address: "%s", http: "%s"}}
      - {name: b, role: failover, address: "%s", http: "%s", data_dir: %s, agent: {address: "%s"}}
`, filepath.Join(dir, "ca"), opstest.FreeAddr(t), filepath.Join(dir, "arbiter"),
		opstest.FreeAddr(t), opstest.FreeAddr(t), dataA, opstest.FreeAddr(t), opstest.FreeAddr(t),
		opstest.FreeAddr(t), opstest.FreeAddr(t), filepath.Join(dir, "b"), opstest.FreeAddr(t))
	f, err := cluster.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	// Member a's data directory as a stopped member leaves it.
	j, err := journal.Open(filepath.Join(dataA, "journal"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(context.Background(), journal.TypeEpochMarker, 1, "", journal.EncodeEpochMarker(0, 0)); err != nil {
		t.Fatal(err)
	}
	j.Close()
	if err := statefile.Save(filepath.Join(dataA, "hardstate.json"), failover.HardState{Epoch: 1, Role: failover.RolePrimary}); err != nil {
		t.Fatal(err)
	}

	s, err := New(f, "a", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent run: %v", err)
		}
	}()

	creds, err := f.Credentials("operator")
	if err != nil {
		t.Fatal(err)
	}
	tc := creds.ClientConfig("127.0.0.1")
	tc.Certificates = nil // a scraper needs only the cluster CA
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	metrics := func() string {
		t.Helper()
		resp, err := client.Get("https://" + s.HTTPAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor := func(series string, want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, ok := opstest.Sample(metrics(), series)
			if ok && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s = %v (present %v), want %v", series, got, ok, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(`tandem_agent_member_up{member="a",tier="records"}`, 0)
	waitFor(`tandem_agent_member_fenced{member="a",tier="records"}`, 0)
	waitFor(`tandem_agent_fences_total{member="a",tier="records"}`, 0)

	resp, err := client.Get("https://" + s.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		OK     bool
		Detail map[string]any
	}
	err = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !h.OK || h.Detail["member_up"] != false {
		t.Fatalf("/healthz: %d %+v %v", resp.StatusCode, h, err)
	}

	// The partner asks for the fence.
	bcreds, err := f.Credentials("b")
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	c, err := transport.Dial(dctx, s.member.Agent.Address, bcreds.ClientConfig("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tm, err := wire.Encode("records", failover.Message{Type: failover.MsgAgentQuery, From: "b", To: "agent-a", Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(tm); err != nil {
		t.Fatal(err)
	}
	r, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	answer, err := wire.Decode(r)
	if err != nil || !answer.Fenced || !node.FenceMarked(dataA) {
		t.Fatalf("fence answer %+v (%v), marked %v", answer, err, node.FenceMarked(dataA))
	}
	waitFor(`tandem_agent_fences_total{member="a",tier="records"}`, 1)
	waitFor(`tandem_agent_fence_seconds_count{member="a",tier="records"}`, 1)
	waitFor(`tandem_agent_events_total{kind="fence",member="a",tier="records"}`, 1)
	waitFor(`tandem_agent_member_fenced{member="a",tier="records"}`, 1)
}
