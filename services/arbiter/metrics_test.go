package arbiter

import (
	"encoding/json"
	"github.com/tandemhealth/tandem/services/opshttp/opstest"
	"io"
	"net/http"
	"testing"

	"github.com/tandemhealth/tandem/mirror/failover"
)

// TestOperationsEndpointShowsTheDurableRecord: /healthz and /metrics on
// arbiter.http report the record the arbiter saved, and follow a decision.
func TestOperationsEndpointShowsTheDurableRecord(t *testing.T) {
	f := testCluster(t)
	if err := Seed(f.Arbiter.DataDir, "records", "a", "b"); err != nil {
		t.Fatal(err)
	}
	stop := startServer(t, f)
	defer stop()
	creds, err := f.Credentials("operator")
	if err != nil {
		t.Fatal(err)
	}
	tc := creds.ClientConfig("127.0.0.1")
	tc.Certificates = nil // a scraper needs only the cluster CA
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get("https://" + f.Arbiter.HTTP + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	code, body := get("/healthz")
	var h struct {
		OK     bool
		Detail map[string]map[string]any
	}
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != 200 || !h.OK {
		t.Fatalf("/healthz: %d %s (%v)", code, body, err)
	}
	if rec := h.Detail["records"]; rec["seeded"] != true || rec["primary"] != "a" || rec["backup_active"] != true {
		t.Fatalf("/healthz detail: %s", body)
	}
	_, m := get("/metrics")
	want := map[string]float64{
		`tandem_arbiter_seeded{tier="records"}`:                                1,
		`tandem_arbiter_record_epoch{tier="records"}`:                          1,
		`tandem_arbiter_record_backup_active{tier="records"}`:                  1,
		`tandem_arbiter_record_primary{member="a",tier="records"}`:             1,
		`tandem_arbiter_record_primary{member="b",tier="records"}`:             0,
		`tandem_arbiter_record_mode{mode="arbiter-controlled",tier="records"}`: 1,
	}
	for series, v := range want {
		if got, ok := opstest.Sample(m, series); !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
		}
	}

	c := dialAs(t, f, "a")
	defer c.Close()
	r := ask(t, c, failover.Message{Type: failover.MsgArbiterReq, From: "a", To: "arbiter", Epoch: 1,
		Op: failover.OpBackupInactive, Seen: failover.Version{Epoch: 1}})
	if !r.OK {
		t.Fatalf("backup-inactive refused: %+v", r)
	}
	_, m = get("/metrics")
	for series, v := range map[string]float64{
		`tandem_arbiter_record_backup_active{tier="records"}`:         0,
		`tandem_arbiter_events_total{kind="decision",tier="records"}`: 1,
		`tandem_arbiter_persist_seconds_count`:                        1,
	} {
		if got, ok := opstest.Sample(m, series); !ok || got != v {
			t.Errorf("after the decision: %s = %v (present %v), want %v", series, got, ok, v)
		}
	}
}
