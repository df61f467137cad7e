package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/services/opshttp/opstest"
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
	// TANDEM_BENCH_PROFILE_DIR: also take CPU profiles of the gateway and
	// the primary during one extra round of every case (pprof files there).
	profDir := os.Getenv("TANDEM_BENCH_PROFILE_DIR")
	if profDir != "" {
		if err := os.MkdirAll(profDir, 0o755); err != nil {
			b.Fatal(err)
		}
		b.Setenv(pprofEnv, profDir)
	}
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
	run := func(hc *http.Client, baseURL string, write bool) (float64, int64) {
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
		return float64(ok.Load()) / phase.Seconds(), ok.Load()
	}
	// The baseline is what a clinician app would do without the gateway:
	// the same bearer token, straight to the primary (the member checks it
	// and audits the access either way). The operator certificate, which
	// skips the token check, is shown for reference.
	app := tr.gatewayClient()
	// CPU per request of each process, from /proc: on a small machine the
	// gateway competes with the member and the clients for the same cores.
	gwPid, memberPid, self := tr.procs["gateway"].Process.Pid, tr.procs["a"].Process.Pid, os.Getpid()
	type usage struct {
		gw, member, bench, busy, wall time.Duration
		n                             int64
	}
	use := map[string]*usage{}
	measure := func(name string, hc *http.Client, baseURL string, write bool) float64 {
		g0, m0, s0, busy0, t0 := opstest.ProcessCPU(gwPid), opstest.ProcessCPU(memberPid), opstest.ProcessCPU(self), machineBusy(), time.Now()
		rate, n := run(hc, baseURL, write)
		u := use[name]
		if u == nil {
			u = &usage{}
			use[name] = u
		}
		u.gw += opstest.ProcessCPU(gwPid) - g0
		u.member += opstest.ProcessCPU(memberPid) - m0
		u.bench += opstest.ProcessCPU(self) - s0
		u.busy += machineBusy() - busy0
		u.wall += time.Since(t0)
		u.n += n
		return rate
	}
	cases := []string{"direct reads", "gateway reads", "operator reads", "direct writes", "gateway writes", "operator writes"}
	var dr, gr, dw, gw2, or, ow float64
	const rounds = 2
	for range rounds {
		dr += measure(cases[0], app, direct, false) / rounds
		gr += measure(cases[1], gw, base, false) / rounds
		or += measure(cases[2], op, direct, false) / rounds
		dw += measure(cases[3], app, direct, true) / rounds
		gw2 += measure(cases[4], gw, base, true) / rounds
		ow += measure(cases[5], op, direct, true) / rounds
	}
	b.Logf("%d clients, %d rounds of %s per case, alternating:", clients, rounds, phase)
	b.Logf("  reads/s:  direct with the token %.0f, through the gateway %.0f (overhead %.1f%%); direct with the operator certificate %.0f", dr, gr, 100*(1-gr/dr), or)
	b.Logf("  writes/s: direct with the token %.0f, through the gateway %.0f (overhead %.1f%%); direct with the operator certificate %.0f", dw, gw2, 100*(1-gw2/dw), ow)
	load, _ := os.ReadFile("/proc/loadavg")
	b.Logf("  CPU µs per request (gateway, primary a, bench clients; machine busy of %d cores), load average %s:", runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " "))
	for _, c := range cases {
		u := use[c]
		per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(max(u.n, 1)) }
		b.Logf("    %-15s gateway %4.0f, primary %4.0f, clients %4.0f; machine %4.0f (%.0f%% busy)", c, per(u.gw), per(u.member), per(u.bench), per(u.busy),
			100*u.busy.Seconds()/(u.wall.Seconds()*float64(runtime.NumCPU())))
	}
	if profDir != "" {
		profile := func(name string, hc *http.Client, baseURL string, write bool) {
			var wg sync.WaitGroup
			for proc, pid := range map[string]int{"gateway": gwPid, "primary": memberPid} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cmd := "node"
					if proc == "gateway" {
						cmd = "gateway"
					}
					if err := opstest.FetchProfile(profDir, cmd, pid, phase, filepath.Join(profDir, strings.ReplaceAll(name, " ", "-")+"-"+proc+".pprof")); err != nil {
						b.Logf("profile %s of %s: %v", proc, name, err)
					}
				}()
			}
			run(hc, baseURL, write)
			wg.Wait()
		}
		for i, c := range cases {
			if strings.HasPrefix(c, "operator") {
				continue
			}
			hc, u := app, direct
			if strings.HasPrefix(c, "gateway") {
				hc, u = gw, base
			}
			profile(c, hc, u, i >= 3)
		}
		b.Logf("CPU profiles in %s", profDir)
	}
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

// machineBusy is the CPU time all cores spent not idle so far.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)[1:]
	var busy int64
	for i, s := range f {
		v, _ := strconv.ParseInt(s, 10, 64)
		if i != 3 && i != 4 && i < 8 { // not idle, not iowait; guest time is in user already
			busy += v
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond
}
