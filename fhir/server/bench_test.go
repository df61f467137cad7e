package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"

	"github.com/tandemhealth/tandem/fhir/server"
)

// syntheaResources returns the entry resources of the first n Synthea
// bundles, and the bundles themselves.
func syntheaResources(b *testing.B, n int) (resources [][]byte, bundles [][]byte) {
	b.Helper()
	files := dataFiles(b, "synthea", n)
	if len(files) > n {
		files = files[:n]
	}
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		bundles = append(bundles, body)
		var bundle struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(body, &bundle); err != nil {
			b.Fatal(err)
		}
		for _, e := range bundle.Entry {
			resources = append(resources, e.Resource)
		}
	}
	return resources, bundles
}

// parseRate is the baseline: google/fhir/go's validating unmarshaller over
// the same resources, in the same run, with the same number of goroutines.
func parseRate(b *testing.B, resources [][]byte, workers int) float64 {
	b.Helper()
	um, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		b.Fatal(err)
	}
	return rate(len(resources), workers, func(i int) {
		if _, err := um.Unmarshal(resources[i]); err != nil {
			b.Fatal(err)
		}
	})
}

// rate runs fn(i) for every i < n on workers goroutines and returns calls/s.
func rate(n, workers int, fn func(i int)) float64 {
	start := time.Now()
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkFHIRCreate compares, in one run, the raw google/fhir/go parse of
// Synthea resources (baseline) with a full create (POST [type]) of the same
// resources through the handler on the real disk, with 1 and 32 clients
// (the baseline then parses on 32 goroutines too).
func BenchmarkFHIRCreate(b *testing.B) {
	resources, _ := syntheaResources(b, 2)
	types := make([]string, len(resources))
	for i, r := range resources {
		var t struct{ ResourceType string }
		json.Unmarshal(r, &t)
		types[i] = t.ResourceType
	}
	n := newNode(b, vfs.Default, b.TempDir(), server.Options{})
	for _, workers := range []int{1, 32} {
		var parse, create float64
		for range b.N {
			parse = parseRate(b, resources, workers)
			create = rate(len(resources), workers, func(i int) {
				rec := n.do(b, "POST", "/"+types[i], resources[i], "Prefer", "return=minimal")
				if rec.Code != http.StatusCreated {
					b.Fatalf("create: %d %s", rec.Code, rec.Body.String())
				}
			})
		}
		b.ReportMetric(parse, fmt.Sprintf("parse/s-c%d", workers))
		b.ReportMetric(create, fmt.Sprintf("create/s-c%d", workers))
		b.ReportMetric(create/parse, fmt.Sprintf("ratio-c%d", workers))
		fmt.Printf("BenchmarkFHIRCreate clients=%d: %d resources, parse %.0f/s, create %.0f/s, create/parse ratio: %.2f\n",
			workers, len(resources), parse, create, create/parse)
	}
}

// BenchmarkFHIRIngest loads Synthea bundles as transactions (one journal
// record each) on the real disk, beside the raw parse rate of the same
// resources, and read-by-id at 32 clients.
func BenchmarkFHIRIngest(b *testing.B) {
	resources, bundles := syntheaResources(b, 6)
	var parse, ingest, reads float64
	for range b.N {
		n := newNode(b, vfs.Default, b.TempDir(), server.Options{})
		parse = parseRate(b, resources, 1)
		var ids []string
		start := time.Now()
		for _, body := range bundles {
			rec := n.do(b, "POST", "", body, "Prefer", "return=minimal")
			if rec.Code != http.StatusOK {
				b.Fatalf("transaction: %d %.300s", rec.Code, rec.Body.String())
			}
			var resp struct {
				Entry []struct {
					Response struct{ Location string } `json:"response"`
				} `json:"entry"`
			}
			json.Unmarshal(rec.Body.Bytes(), &resp)
			for _, e := range resp.Entry {
				ids = append(ids, e.Response.Location[:len(e.Response.Location)-len("/_history/1")])
			}
		}
		ingest = float64(len(resources)) / time.Since(start).Seconds()
		const readsPerID = 4
		reads = rate(len(ids)*readsPerID, 32, func(i int) {
			if rec := n.do(b, "GET", "/"+ids[i%len(ids)], nil); rec.Code != http.StatusOK {
				b.Fatalf("read: %d", rec.Code)
			}
		})
	}
	b.ReportMetric(parse, "parse-res/s")
	b.ReportMetric(ingest, "ingest-res/s")
	b.ReportMetric(ingest/parse, "ingest/parse")
	b.ReportMetric(reads, "reads/s-c32")
	fmt.Printf("BenchmarkFHIRIngest: %d bundles, %d resources: parse %.0f res/s, transaction ingest %.0f res/s, ingest/parse ratio: %.2f; read-by-id %.0f/s at 32 clients\n",
		len(bundles), len(resources), parse, ingest, ingest/parse, reads)
}
