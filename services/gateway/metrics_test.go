package gateway

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads url as Prometheus does and returns the text it got and its
// families.
func scrape(t *testing.T, url string) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("GET %s: not the Prometheus text format: %v", url, err)
	}
	return string(b), fams
}

// value is the series of family name with exactly these label pairs
// (name, value, ...): a counter's or gauge's value, a histogram's count.
// It fails the test when there is no such series.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	f, ok := fams[name]
	if ok {
	series:
		for _, m := range f.GetMetric() {
			for k, v := range want {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no series %s%v in /metrics", name, labels)
	return 0
}

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
		a.mu.Lock()
		a.onFHIR = func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) == 1 {
				first(w)
				return
			}
			w.WriteHeader(http.StatusOK)
		}
		a.mu.Unlock()
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
	a.mu.Lock()
	a.onFHIR = nil
	a.mu.Unlock()
	do(t, "POST", base+"/fhir/Patient", `{"resourceType":"Patient"}`, "Idempotency-Key", "key-secret")
	for deadline := time.Now().Add(5 * time.Second); len(fx.redis.Keys()) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // cached off the response path
	}
	if r, _ := do(t, "POST", base+"/fhir/Patient", `{"resourceType":"Patient"}`, "Idempotency-Key", "key-secret"); r.Header.Get("X-Tandem-Idempotent-Replay") == "" {
		t.Fatal("the second keyed create was not a replay")
	}

	text, m := scrape(t, base+"/metrics")
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
		if got := value(t, m, tc.name, tc.labels...); got != tc.want {
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
	_, m = scrape(t, base+"/metrics")
	if got := value(t, m, "tandem_gateway_topology_changes_total", "tier", "records"); got < 1 {
		t.Errorf("topology changes after a failover: %v", got)
	}
	if got := value(t, m, "tandem_gateway_topology_changes_total", "tier", "labs"); got != 0 {
		t.Errorf("labs did not change, counted %v", got)
	}
	if got := value(t, m, "tandem_gateway_primary_known", "tier", "records"); got != 1 {
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
	_, m = scrape(t, limited+"/metrics")
	if got := value(t, m, "tandem_gateway_rate_limited_total"); refused == 0 || got != float64(refused) {
		t.Errorf("rate_limited_total %v, %d requests refused", got, refused)
	}
	if got := value(t, m, "tandem_gateway_requests_total", "code_class", "4xx", "method", "GET"); got != float64(refused) {
		t.Errorf("requests_total 4xx %v, %d refused", got, refused)
	}
}
