package gateway

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/services/opshttp/opstest"
)

// TestMetricsFollowRequestsRetriesAndTopology: /metrics counts what the
// gateway did — answered requests, each retry by its reason, rate-limit
// refusals, replays from the idempotency cache, topology changes — and
// names no path, id or key.
func TestMetricsFollowRequestsRetriesAndTopology(t *testing.T) {
	fx := newFixture(t)
	base, g := fx.gateway(nil)
	a := fx.members["a"]
	var calls atomic.Int32
	onFHIR := func(first func(w http.ResponseWriter)) {
		calls.Store(0)
		a.handleFHIR(func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) == 1 {
				first(w)
				return
			}
			w.WriteHeader(http.StatusOK)
		})
	}
	get := func() {
		t.Helper()
		resp, body := do(t, "GET", base+"/fhir/Patient/secret-id-1?name=Doe", "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Tandem-Attempts") != "2" {
			t.Fatalf("%d after %s attempts: %s", resp.StatusCode, resp.Header.Get("X-Tandem-Attempts"), body)
		}
	}
	// The primary refuses once with 503, then answers.
	onFHIR(func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) })
	get()
	// The primary breaks the connection once (an answer that is not HTTP,
	// which net/http does not retry by itself), then answers.
	onFHIR(func(w http.ResponseWriter) {
		c, _, _ := w.(http.Hijacker).Hijack()
		c.Write([]byte("not HTTP\r\n\r\n"))
		c.Close()
	})
	get()
	// The same keyed create twice: the second is a replay from Redis.
	a.handleFHIR(nil)
	do(t, "POST", base+"/fhir/Patient", `{"resourceType":"Patient"}`, "Idempotency-Key", "key-secret")
	for deadline := time.Now().Add(5 * time.Second); len(fx.redis.Keys()) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // cached off the response path
	}
	if r, _ := do(t, "POST", base+"/fhir/Patient", `{"resourceType":"Patient"}`, "Idempotency-Key", "key-secret"); r.Header.Get("X-Tandem-Idempotent-Replay") == "" {
		t.Fatal("the second keyed create was not a replay")
	}

	text, m := opstest.Scrape(t, nil, base+"/metrics")
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tandem_gateway_retries_total", []string{"reason", retryPrimary503}, 1},
		{"tandem_gateway_retries_total", []string{"reason", retryConnError}, 1},
		{"tandem_gateway_retries_total", []string{"reason", retryPrimaryMove}, 0},
		{"tandem_gateway_requests_total", []string{"code_class", "2xx", "method", "GET"}, 2},
		{"tandem_gateway_requests_total", []string{"code_class", "2xx", "method", "POST"}, 2},
		{"tandem_gateway_request_seconds", []string{"method", "GET"}, 2},
		{"tandem_gateway_idempotent_replays_total", nil, 1},
		{"tandem_gateway_rate_limited_total", nil, 0},
		{"tandem_gateway_primary_known", []string{"tier", "records"}, 1},
		{"tandem_gateway_topology_changes_total", []string{"tier", "records"}, 0},
	} {
		if got := opstest.Value(t, m, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	for _, secret := range []string{"secret", "Patient", "Doe"} {
		if strings.Contains(text, secret) {
			t.Errorf("/metrics contains %q", secret)
		}
	}

	// A failover: the primary goes, b takes over at epoch 2.
	a.kill()
	fx.members["b"].set("primary", 2)
	waitView(t, g, "records", "b", 2)
	_, m = opstest.Scrape(t, nil, base+"/metrics")
	if got := opstest.Value(t, m, "tandem_gateway_topology_changes_total", "tier", "records"); got < 1 {
		t.Errorf("topology changes after a failover: %v", got)
	}
	if got := opstest.Value(t, m, "tandem_gateway_topology_changes_total", "tier", "labs"); got != 0 {
		t.Errorf("labs did not change, counted %v", got)
	}
	if got := opstest.Value(t, m, "tandem_gateway_primary_known", "tier", "records"); got != 1 {
		t.Errorf("primary_known %v once b is primary", got)
	}

	// Rate limit: a gateway allowing 1 request per second per client.
	limited, _ := fx.gateway(func(c *Config) { c.RateLimit = 1 })
	refused := 0
	for range 3 {
		if r, _ := do(t, "GET", limited+"/fhir/Patient/1", ""); r.StatusCode == http.StatusTooManyRequests {
			refused++
		}
	}
	_, m = opstest.Scrape(t, nil, limited+"/metrics")
	if got := opstest.Value(t, m, "tandem_gateway_rate_limited_total"); refused == 0 || got != float64(refused) {
		t.Errorf("rate_limited_total %v, %d requests refused", got, refused)
	}
	if got := opstest.Value(t, m, "tandem_gateway_requests_total", "code_class", "4xx", "method", "GET"); got != float64(refused) {
		t.Errorf("requests_total 4xx %v, %d refused", got, refused)
	}
}
