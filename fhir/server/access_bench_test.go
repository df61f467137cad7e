package server_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemhealth/tandem/fhir/server"
)

// BenchmarkFHIRReadAudit compares, in one run, read-by-id at 32 clients
// with bearer tokens and audit off (the baseline) against the same with
// audit on (every read's AuditEvent buffered and group-committed), on the
// real disk, with the same Synthea data loaded in both. Rounds alternate
// so that both see the same machine; the best round of each is reported.
func BenchmarkFHIRReadAudit(b *testing.B) {
	_, bundles := syntheaResources(b, 3)
	setup := func(audit bool) (*node, []string) {
		n := newNode(b, vfs.Default, b.TempDir(), server.Options{Access: testVerifier(b), Audit: audit})
		b.Cleanup(func() { n.h.Close(context.Background()) })
		var paths []string
		loader := token(b, "loader", adminScope, "")
		for _, body := range bundles {
			rec := n.do(b, "POST", "", body, "Prefer", "return=minimal", "Authorization", loader)
			if rec.Code != http.StatusOK {
				b.Fatalf("transaction: %d %.300s", rec.Code, rec.Body.String())
			}
			for _, loc := range strings.Split(rec.Body.String(), `"location":"`)[1:] {
				loc = loc[:strings.Index(loc, `"`)]
				paths = append(paths, "/"+loc[:strings.Index(loc, "/_history/")])
			}
		}
		return n, paths
	}
	off, offPaths := setup(false)
	on, onPaths := setup(true)
	clin := token(b, "dr", "user/*.rs", "")
	read := func(n *node, paths []string) float64 {
		const readsPerID = 4
		return rate(len(paths)*readsPerID, 32, func(i int) {
			if rec := n.do(b, "GET", paths[i%len(paths)], nil, "Authorization", clin); rec.Code != http.StatusOK {
				b.Fatalf("read: %d", rec.Code)
			}
		})
	}
	// CPU time of the whole process per read, background work (group
	// commits, the applier, compactions) included: steadier than reads/s on
	// a shared machine.
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	// Heap allocations of the whole process per read, likewise: they do
	// not depend on how loaded the machine is.
	allocs := func() (n, bytes uint64) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.Mallocs, ms.TotalAlloc
	}
	var bestOff, bestOn float64
	var cpuOff, cpuOn time.Duration
	var allocOff, allocOn, bytesOff, bytesOn uint64
	var nOff, nOn int
	for range b.N {
		for round := 0; round < 3; round++ {
			c0 := cpu()
			a0, b0 := allocs()
			bestOff = max(bestOff, read(off, offPaths))
			c1 := cpu()
			a1, b1 := allocs()
			bestOn = max(bestOn, read(on, onPaths))
			if err := on.h.FlushAudit(context.Background()); err != nil {
				b.Fatal(err)
			}
			c2 := cpu()
			a2, b2 := allocs()
			cpuOff, cpuOn = cpuOff+c1-c0, cpuOn+c2-c1
			allocOff, allocOn, bytesOff, bytesOn = allocOff+a1-a0, allocOn+a2-a1, bytesOff+b1-b0, bytesOn+b2-b1
			nOff, nOn = nOff+len(offPaths)*4, nOn+len(onPaths)*4
		}
	}
	b.ReportMetric(bestOff, "reads/s-audit-off")
	b.ReportMetric(bestOn, "reads/s-audit-on")
	b.ReportMetric(bestOn/bestOff, "on/off")
	usOff := float64(cpuOff.Microseconds()) / float64(nOff)
	usOn := float64(cpuOn.Microseconds()) / float64(nOn)
	b.ReportMetric(usOff/usOn, "cpu-off/on")
	b.ReportMetric(float64(allocOn)/float64(nOn), "allocs/read-audit-on")
	b.ReportMetric(float64(allocOff)/float64(nOff), "allocs/read-audit-off")
	fmt.Printf("BenchmarkFHIRReadAudit: %d resources, read-by-id with a bearer token at 32 clients: audit off %.0f/s, audit on %.0f/s, on/off ratio: %.2f (goal >= 0.90); CPU per read (process, background included): off %.1fµs, on %.1fµs, off/on ratio: %.2f; heap per read: off %.1f allocs %.0f B, on %.1f allocs %.0f B\n",
		len(onPaths), bestOff, bestOn, bestOn/bestOff, usOff, usOn, usOff/usOn,
		float64(allocOff)/float64(nOff), float64(bytesOff)/float64(nOff), float64(allocOn)/float64(nOn), float64(bytesOn)/float64(nOn))
}
