package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
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
	patient := []byte(`{"resourceType":"Patient","active":true,"name":[{"family":"Bench","given":["Peer"]}],"gender":"female","birthDate":"1970-01-01"}`)
	run := func(clients int, op func(w, i int) error) (rate float64, p50 time.Duration, cpu time.Duration) {
		var mu sync.Mutex
		var lat []time.Duration
		var failed atomic.Int64
		cpu0 := processCPU()
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
						failed.Add(1)
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
			return 0, 0, 0
		}
		slices.Sort(lat)
		return float64(len(lat)) / elapsed.Seconds(), lat[len(lat)/2], (processCPU() - cpu0) / time.Duration(len(lat))
	}
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
			rr, rp, rc := run(clients, raw)
			cr, cp, cc := run(clients, create)
			fmt.Printf("fhir-create: clients=%-2d raw 1 KiB writes %6.0f/s p50 %-8v cpu/op %-8v | Patient creates %6.0f/s p50 %-8v cpu/op %-8v | creates/raw %.2f\n",
				clients, rr, rp.Round(time.Microsecond), rc.Round(time.Microsecond), cr, cp.Round(time.Microsecond), cc.Round(time.Microsecond), cr/rr)
			b.ReportMetric(cr/rr, fmt.Sprintf("creates/raw@%d", clients))
		}
		stop()
	}
}

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
