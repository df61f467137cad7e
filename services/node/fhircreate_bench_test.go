package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	fhirserver "github.com/tandemhealth/tandem/fhir/server"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
)

// BenchmarkFHIRCreateMirrored: small Patient creates (POST, Prefer:
// return=minimal — the peer comparison's FHIR-level load) on the primary
// of a mirrored tier, beside 1 KiB raw writes through the same sequencer
// (the storage-level load), at 1 and 16 clients, in the same run: what the
// FHIR layer costs over the mirrored commit. CPU per operation is the
// process's user+system time over the operations.
func BenchmarkFHIRCreateMirrored(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	const span = 3 * time.Second
	// The peer benchmark's Patient (services/peerbench), byte for byte: every
	// create shares its identifier, which once made each create rewrite an
	// index value listing every earlier one (issue 13).
	patient := []byte(`{"resourceType":"Patient","active":true,"identifier":[{"system":"urn:tandem:bench","value":"peer-1"}],"name":[{"family":"Peer","given":["Bench"]}],"gender":"female","birthDate":"1970-01-01"}`)
	for range b.N {
		primary, stop := startBenchTier(b, b.TempDir(), quiet)
		srv, err := fhirserver.New(primary.Sequencer(), primary.Store(), fhirserver.Options{BasePath: "/fhir", Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		value := make([]byte, 1024)
		raw := func(w, i int) error {
			key := fmt.Appendf(nil, "bench/%d/%d", w, i)
			_, err := primary.Sequencer().Write(context.Background(), "fhir", func(sequencer.View) ([]journal.Op, error) {
				return []journal.Op{{Kind: journal.OpSet, Key: key, Value: value}}, nil
			})
			return err
		}
		create := func(w, i int) error {
			req := httptest.NewRequest("POST", "/fhir/Patient", bytes.NewReader(patient))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Prefer", "return=minimal")
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != 201 {
				return fmt.Errorf("create: %d %.300s", rec.Code, rec.Body.String())
			}
			return nil
		}
		for _, clients := range []int{1, 16} {
			r, c := runClients(b, clients, span, raw), runClients(b, clients, span, create)
			rr, rp, rc, cr, cp, cc := r.rate, r.p50, r.cpuPerOp, c.rate, c.p50, c.cpuPerOp
			fmt.Printf("fhir-create: clients=%-2d raw 1 KiB writes %6.0f/s p50 %-8v cpu/op %-8v | Patient creates %6.0f/s p50 %-8v cpu/op %-8v | creates/raw %.2f\n",
				clients, rr, rp.Round(time.Microsecond), rc.Round(time.Microsecond), cr, cp.Round(time.Microsecond), cc.Round(time.Microsecond), cr/rr)
			b.ReportMetric(cr/rr, fmt.Sprintf("creates/raw@%d", clients))
		}
		stop()
	}
}

// clientLoad is what runClients measured.
type clientLoad struct {
	rate     float64 // operations per second
	p50, p99 time.Duration
	cpuPerOp time.Duration // this process's CPU (user+system) per operation
	idle     float64       // share of the machine's CPU time idle (iowait included) over the run; -1 unknown
}

// runClients calls op(w, i) — client w's i-th operation — on clients
// goroutines for span; an error fails b and ends that client.
func runClients(b *testing.B, clients int, span time.Duration, op func(w, i int) error) clientLoad {
	var mu sync.Mutex
	var lat []time.Duration
	cpu0 := processCPU()
	busy0, total0 := machineCPU()
	start := time.Now()
	deadline := start.Add(span)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := 0; time.Now().Before(deadline); i++ {
				t0 := time.Now()
				if err := op(w, i); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(lat) == 0 {
		return clientLoad{}
	}
	slices.Sort(lat)
	busy1, total1 := machineCPU()
	idle := -1.0
	if total1 > total0 {
		idle = 1 - float64(busy1-busy0)/float64(total1-total0)
	}
	return clientLoad{rate: float64(len(lat)) / elapsed.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100],
		cpuPerOp: (processCPU() - cpu0) / time.Duration(len(lat)), idle: idle}
}

// machineCPU reads the machine's busy and total CPU time (in clock ticks,
// all cores) from /proc/stat; idle and iowait are not busy. Zeros when it
// cannot be read.
func machineCPU() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0
	}
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
