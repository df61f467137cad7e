package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
)

// BenchmarkGateway (make bench BENCH=gateway): FHIR reads and creates per
// second at 32 clients through the gateway beside direct to the primary,
// in the same run, alternating, on a real tier with the default QoS; then
// the failover pause: from kill -9 of the primary to the first create
// acknowledged through the gateway, median over TANDEM_BENCH_TRIALS trials
// (default 10). The gateway runs with a Redis (redis-server when
// installed, else embedded) and a rate limit high enough never to refuse,
// so every request pays its Redis round trip.
func BenchmarkGateway(b *testing.B) {
	tierQoS = cluster.DefaultQoS
	defer func() { tierQoS = testQoS }()
	tr := startTier(b)
	base := tr.startGateway("gateway", startRedis(b), "--rate-limit", "1000000")
	direct, _ := tr.client.MemberURL("a")
	gw := tr.gatewayClient()
	op := tr.client.HTTP
	op.Transport.(*http.Transport).MaxIdleConnsPerHost = 64

	// Resources to read.
	var ids []string
	for i := range 64 {
		req, _ := http.NewRequest("POST", direct+"/fhir/Patient", strings.NewReader(fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":"urn:bench","value":"seed-%d"}]}`, i)))
		req.Header.Set("Content-Type", "application/fhir+json")
		resp, err := op.Do(req)
		if err != nil || resp.StatusCode != 201 {
			b.Fatalf("seed: %v %v", err, resp)
		}
		loc := resp.Header.Get("Location")
		resp.Body.Close()
		ids = append(ids, strings.Split(strings.TrimPrefix(loc, "/fhir/Patient/"), "/")[0])
	}

	const clients = 32
	const phase = 3 * time.Second
	var seq atomic.Int64
	run := func(hc *http.Client, baseURL string, write bool) float64 {
		var ok, failed atomic.Int64
		var wg sync.WaitGroup
		end := time.Now().Add(phase)
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; time.Now().Before(end); i++ {
					var req *http.Request
					if write {
						key := fmt.Sprintf("bench-%d", seq.Add(1))
						req, _ = http.NewRequest("POST", baseURL+"/fhir/Patient", strings.NewReader(`{"resourceType":"Patient","identifier":[{"system":"urn:bench","value":"`+key+`"}]}`))
						req.Header.Set("Content-Type", "application/fhir+json")
						req.Header.Set("Idempotency-Key", key)
					} else {
						req, _ = http.NewRequest("GET", baseURL+"/fhir/Patient/"+ids[(c+i)%len(ids)], nil)
					}
					resp, err := hc.Do(req)
					if err != nil {
						failed.Add(1)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode/100 == 2 {
						ok.Add(1)
					} else {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if failed.Load() > 0 {
			b.Errorf("%d requests failed", failed.Load())
		}
		return float64(ok.Load()) / phase.Seconds()
	}
	// The baseline is what a clinician app would do without the gateway:
	// the same bearer token, straight to the primary (the member checks it
	// and audits the access either way). The operator certificate, which
	// skips the token check, is shown for reference.
	app := tr.gatewayClient()
	var dr, gr, dw, gw2, or, ow float64
	const rounds = 2
	for range rounds {
		dr += run(app, direct, false) / rounds
		gr += run(gw, base, false) / rounds
		or += run(op, direct, false) / rounds
		dw += run(app, direct, true) / rounds
		gw2 += run(gw, base, true) / rounds
		ow += run(op, direct, true) / rounds
	}
	b.Logf("%d clients, %d rounds of %s per case, alternating:", clients, rounds, phase)
	b.Logf("  reads/s:  direct with the token %.0f, through the gateway %.0f (overhead %.1f%%); direct with the operator certificate %.0f", dr, gr, 100*(1-gr/dr), or)
	b.Logf("  writes/s: direct with the token %.0f, through the gateway %.0f (overhead %.1f%%); direct with the operator certificate %.0f", dw, gw2, 100*(1-gw2/dw), ow)
	b.ReportMetric(dr, "direct-reads/s")
	b.ReportMetric(gr, "gateway-reads/s")
	b.ReportMetric(dw, "direct-writes/s")
	b.ReportMetric(gw2, "gateway-writes/s")

	trials := 10
	if s := os.Getenv("TANDEM_BENCH_TRIALS"); s != "" {
		trials, _ = strconv.Atoi(s)
	}
	primary, backup := "a", "b"
	var pauses []time.Duration
	for trial := range trials {
		epoch := tr.epoch(primary)
		t0 := time.Now()
		tr.kill9(primary)
		key := fmt.Sprintf("failover-%d", trial)
		for {
			req, _ := http.NewRequest("POST", base+"/fhir/Patient", strings.NewReader(`{"resourceType":"Patient","identifier":[{"system":"urn:bench","value":"`+key+`"}]}`))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Idempotency-Key", key)
			resp, err := gw.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 201 {
					break
				}
			}
			if time.Since(t0) > time.Minute {
				b.Fatalf("trial %d: no write acknowledged a minute after the kill", trial)
			}
		}
		pause := time.Since(t0)
		if e := tr.epoch(backup); e != epoch+1 || tr.status(backup) != "primary" {
			b.Fatalf("trial %d: %s is %s in epoch %d after the kill, want primary in %d", trial, backup, tr.status(backup), e, epoch+1)
		}
		pauses = append(pauses, pause)
		if trial == trials-1 {
			break
		}
		tr.start(primary)
		tr.waitFor(primary+" back as backup", 60*time.Second, func() bool {
			return tr.status(primary) == "backup" && tr.epoch(primary) == epoch+1
		})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		tr.waitFor("backup active again", 30*time.Second, func() bool {
			st := tr.memberStatus(backup)
			tf, _ := st["transfer"].(map[string]any)
			return ctx.Err() == nil && tf != nil && tf["status"] == "active" // the usual state a failover starts from
		})
		cancel()
		primary, backup = backup, primary
	}
	sorted := append([]time.Duration(nil), pauses...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	median := sorted[len(sorted)/2]
	if len(sorted)%2 == 0 {
		median = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
	}
	var each []string
	for _, p := range pauses {
		each = append(each, p.Round(time.Millisecond).String())
	}
	// (the benchmark log keeps only its first lines: one line for all trials)
	b.Logf("failover pause (kill -9 of the primary, alternating a/b, epoch 1 -> %d, each proved: old pid gone, new primary at epoch+1 -> first create acknowledged through the gateway), QoS %s, %d trials: median %s, min %s, max %s; in order: %s",
		tr.epoch(backup), cluster.DefaultQoS, len(sorted), median.Round(time.Millisecond), sorted[0].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond), strings.Join(each, " "))
	b.ReportMetric(median.Seconds(), "failover-pause-median-s")
}
