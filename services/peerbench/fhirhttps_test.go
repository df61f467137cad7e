package peerbench

import (
	"context"
	"fmt"
	"github.com/tandemhealth/tandem/services/opshttp/opstest"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkFHIRCreateHTTPS (make bench BENCH=FHIRCreateHTTPS) is the
// FHIR level of `make bench-peer` without PostgreSQL: 16 clients POSTing
// the peer run's fixed Patient (Prefer: return=minimal) over HTTPS with the
// operator certificate to the primary of a real tier (real processes,
// default QoS), beside the same run's baseline, raw 1 KiB PUT /admin/kv
// writes from 16 clients over the same kind of connection, in alternating
// windows. It prints per side the rate, p50, the primary's and the
// backup's CPU per operation (from /proc), and how many new TLS
// connections the clients had to open (0 when keep-alive works).
// CLIENTS=n changes the client count of both sides (CLIENTS=1: the latency
// of a lone writer). TANDEM_BENCH_PROFILE_DIR=dir also takes CPU profiles
// of the primary and the backup during one extra window of each side
// (dir/fhir-create.pprof, dir/fhir-create-backup.pprof, dir/kv-put.pprof,
// dir/kv-put-backup.pprof).
func BenchmarkFHIRCreateHTTPS(b *testing.B) {
	profDir := os.Getenv("TANDEM_BENCH_PROFILE_DIR")
	if profDir != "" {
		if err := os.MkdirAll(profDir, 0o755); err != nil {
			b.Fatal(err)
		}
		b.Setenv("TANDEM_PPROF_DIR", profDir)
	}
	span := 10 * time.Second
	if s := os.Getenv("DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("DURATION: %v", err)
		}
		span = d
	}
	clients := 16
	if s := os.Getenv("CLIENTS"); s != "" { // e.g. CLIENTS=1: the latency of one writer
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("CLIENTS: %q is not a positive number", s)
		}
		clients = n
	}
	dir := b.TempDir()
	used := map[int]bool{}
	port := func() int { // a free loopback port, distinct from every other of this run
		for {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			p := ln.Addr().(*net.TCPAddr).Port
			ln.Close()
			if !used[p] {
				used[p] = true
				return p
			}
		}
	}
	bin := buildTandem(b, dir)
	for range b.N {
		tdir := filepath.Join(dir, fmt.Sprintf("tier-%d", time.Now().UnixNano()))
		if err := os.Mkdir(tdir, 0o755); err != nil {
			b.Fatal(err)
		}
		tt := startTandem(b, tdir, bin, port)
		primary, _ := tt.healthy()
		backup := members[0]
		if backup == primary {
			backup = members[1]
		}
		base, _ := tt.client.MemberURL(primary)
		var dials atomic.Int64
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if !i.Reused {
				dials.Add(1)
			}
		}}
		kv := func(int) (func(context.Context, int) error, func(), error) {
			value := make([]byte, 1024)
			return func(ctx context.Context, i int) error {
				fillRandom(value)
				key := fmt.Sprintf("peer/%d/%d", rand.Uint64(), i)
				return tt.client.Do(httptrace.WithClientTrace(ctx, trace), "PUT", primary, "/admin/kv/fhir/"+key, value, nil)
			}, func() {}, nil
		}
		create := func(int) (func(context.Context, int) error, func(), error) {
			return func(ctx context.Context, _ int) error {
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "POST", base+"/fhir/Patient", strings.NewReader(patient))
				req.Header.Set("Content-Type", "application/fhir+json")
				req.Header.Set("Prefer", "return=minimal")
				resp, err := tt.client.HTTP.Do(req)
				if err != nil {
					return err
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, body)
				}
				return nil
			}, func() {}, nil
		}
		pPID, bPID := tt.procs[primary].Process.Pid, tt.procs[backup].Process.Pid
		sides := []*side{{name: "kv-put", c: openClients(clients, kv)}, {name: "fhir-create", c: openClients(clients, create)}}
		for r := range rounds {
			for i := range sides {
				sd := sides[(i+r)%2]
				d0, p0, b0 := dials.Load(), opstest.ProcessCPU(pPID), opstest.ProcessCPU(bPID)
				sd.c.window(span / rounds)
				sd.dials += dials.Load() - d0
				sd.primaryCPU += opstest.ProcessCPU(pPID) - p0
				sd.backupCPU += opstest.ProcessCPU(bPID) - b0
			}
		}
		for _, sd := range sides {
			sd.res = sd.c.result()
			sd.c.close()
		}
		kvs, fs := sides[0], sides[1]
		for _, sd := range sides {
			fmt.Printf("fhir-https: %-11s %d clients %6.0f/s p50 %6.2fms p99 %6.2fms | primary cpu/op %-8v backup cpu/op %-8v | new TLS connections %d | errors %d %s\n",
				sd.name, clients, sd.res.PerSec, sd.res.P50ms, sd.res.P99ms, sd.cpuPerOp(sd.primaryCPU), sd.cpuPerOp(sd.backupCPU), sd.dials, sd.res.Errors, sd.res.FirstEr)
		}
		fmt.Printf("fhir-https: creates/kv %.2f (load %s)\n", fs.res.PerSec/kvs.res.PerSec, loadavg())
		b.ReportMetric(fs.res.PerSec, "creates/s")
		b.ReportMetric(kvs.res.PerSec, "kv/s")
		b.ReportMetric(fs.res.PerSec/kvs.res.PerSec, "creates/kv")
		if profDir != "" {
			for _, sd := range sides {
				c := openClients(clients, map[string]newClient{"kv-put": kv, "fhir-create": create}[sd.name])
				done := make(chan error, 2)
				for _, m := range []struct {
					pid    int
					suffix string
				}{{pPID, ""}, {bPID, "-backup"}} {
					go func() {
						done <- opstest.FetchProfile(profDir, "node", m.pid, 5*time.Second, filepath.Join(profDir, sd.name+m.suffix+".pprof"))
					}()
				}
				c.window(5 * time.Second)
				c.close()
				for range 2 {
					if err := <-done; err != nil {
						b.Fatalf("profile %s: %v", sd.name, err)
					}
				}
			}
		}
		tt.stop()
	}
}

// side is one load of BenchmarkFHIRCreateHTTPS and what it cost.
type side struct {
	name                  string
	c                     *clients
	res                   load
	dials                 int64
	primaryCPU, backupCPU time.Duration
}

func (s *side) cpuPerOp(d time.Duration) time.Duration {
	if s.res.Ops == 0 {
		return 0
	}
	return (d / time.Duration(s.res.Ops)).Round(time.Microsecond)
}
