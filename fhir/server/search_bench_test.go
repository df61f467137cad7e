package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/server"
	"github.com/tandemhealth/tandem/mirror/store"
)

// scaleData is the scale-dataset generator: the Synthea bundles, copied
// with every UUID (fullUrls, urn:uuid references, ids, identifier values)
// rewritten consistently so that copies are distinct patients. Copy k
// replaces the first 8 hex digits of each UUID by its own prefix, drawn
// from a PCG seeded with the seed; the server's ids come from seededIDs
// with the same seed, so the dataset is a function of the seed and the
// input files (only meta.lastUpdated follows the clock).
type scaleData struct {
	bundles [][]byte
	perCopy int // resources in one copy
}

func loadScaleData(tb testing.TB) *scaleData {
	tb.Helper()
	d := &scaleData{}
	for _, f := range dataFiles(tb, "synthea", 1000) {
		body, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		var b struct{ Entry []json.RawMessage }
		if err := json.Unmarshal(body, &b); err != nil {
			tb.Fatal(err)
		}
		d.bundles = append(d.bundles, body)
		d.perCopy += len(b.Entry)
	}
	return d
}

// prefixes returns the UUID prefixes of copies 0..n-1 for seed, distinct.
func (d *scaleData) prefixes(seed uint64, n int) []string {
	rng := rand.New(rand.NewPCG(seed, 0x5ca1e))
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		p := fmt.Sprintf("%08x", rng.Uint32())
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// generate sends copies × the bundles to out, then closes it; it stops
// early when done is closed.
func (d *scaleData) generate(seed uint64, copies int, out chan<- []byte, done <-chan struct{}) {
	defer close(out)
	for _, p := range d.prefixes(seed, copies) {
		for _, b := range d.bundles {
			select {
			case out <- rewriteUUIDs(make([]byte, 0, len(b)), b, p):
			case <-done:
				return
			}
		}
	}
}

// rewriteUUIDs appends src to dst with the first 8 hex digits of every
// lowercase UUID replaced by prefix (8 hex digits).
func rewriteUUIDs(dst, src []byte, prefix string) []byte {
	last := 0
	for d := 8; d < len(src); d++ {
		k := bytes.IndexByte(src[d:], '-')
		if k < 0 {
			break
		}
		d += k
		if s := d - 8; s >= last && isUUIDAt(src, s) {
			dst = append(append(append(dst, src[last:s]...), prefix...), src[s+8:s+36]...)
			last = s + 36
			d = last + 7
		}
	}
	return append(dst, src[last:]...)
}

func isUUIDAt(b []byte, s int) bool {
	if s+36 > len(b) {
		return false
	}
	for i, c := range b[s : s+36] {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// seededIDs makes UUID-shaped server ids from a PCG seeded with seed.
func seededIDs(seed uint64) func() string {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 0x1d5))
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], rng.Uint64())
		binary.BigEndian.PutUint64(b[8:], rng.Uint64())
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		h := hex.EncodeToString(b[:])
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	}
}

func TestRewriteUUIDs(t *testing.T) {
	in := []byte(`{"fullUrl":"urn:uuid:018f428e-34f6-4707-8009-5ad742f901e7","id":"018f428e-34f6-4707-8009-5ad742f901e7","x":"1-2","y":"018f428e-34f6-4707-8009-5ad742f901eZ"}`)
	out := string(rewriteUUIDs(nil, in, "00000003"))
	want := `{"fullUrl":"urn:uuid:00000003-34f6-4707-8009-5ad742f901e7","id":"00000003-34f6-4707-8009-5ad742f901e7","x":"1-2","y":"018f428e-34f6-4707-8009-5ad742f901eZ"}`
	if out != want {
		t.Fatalf("rewritten:\n%s\nwant\n%s", out, want)
	}
	// The same as a regular expression would do, on every Synthea bundle.
	re := regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	d := loadScaleData(t)
	for i, b := range d.bundles {
		want := re.ReplaceAllFunc(b, func(u []byte) []byte { return append([]byte("00c0ffee"), u[8:]...) })
		if got := rewriteUUIDs(nil, b, "00c0ffee"); !bytes.Equal(got, want) {
			t.Fatalf("bundle %d: rewriteUUIDs differs from the regular expression", i)
		}
		if bytes.Equal(want, b) {
			t.Fatalf("bundle %d: nothing rewritten", i)
		}
	}
	p := d.prefixes(7, 50)
	if q := d.prefixes(7, 50); strings.Join(p, ",") != strings.Join(q, ",") {
		t.Fatal("prefixes are not a function of the seed")
	}
	if q := d.prefixes(8, 50); strings.Join(p, ",") == strings.Join(q, ",") {
		t.Fatal("prefixes do not depend on the seed")
	}
}

// TestImportTransactionsIsPOST: the bulk loader stores exactly what
// POSTing the same bundles one by one stores (same ids, same clock).
func TestImportTransactionsIsPOST(t *testing.T) {
	d := loadScaleData(t)
	clock := func() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) }
	var bodies [][]byte
	for _, p := range d.prefixes(1, 2) {
		for _, b := range d.bundles[:3] {
			bodies = append(bodies, rewriteUUIDs(nil, b, p))
		}
	}
	posted := newNode(t, vfs.NewMem(), "a", server.Options{NewID: seededIDs(1), Now: clock})
	for _, b := range bodies {
		if rec := posted.do(t, "POST", "", b); rec.Code != http.StatusOK {
			t.Fatalf("transaction: %d %.300s", rec.Code, rec.Body.String())
		}
	}
	imported := newNode(t, vfs.NewMem(), "b", server.Options{NewID: seededIDs(1), Now: clock})
	ch := make(chan []byte, len(bodies))
	for _, b := range bodies {
		ch <- b
	}
	close(ch)
	batches := 0
	if err := imported.h.ImportTransactions(context.Background(), ch, 2<<20, func(int, int) { batches++ }); err != nil {
		t.Fatal(err)
	}
	if batches < 2 || batches >= len(bodies) {
		t.Fatalf("%d bundles in %d batches: want several bundles per batch and more than one batch", len(bodies), batches)
	}
	if posted.hash(t) != imported.hash(t) {
		t.Fatal("the imported store differs from the posted one")
	}
	// A bundle that fails stops the import with its error.
	bad := newNode(t, vfs.NewMem(), "c", server.Options{})
	ch = make(chan []byte, 2)
	ch <- bodies[0]
	ch <- []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient","gender":7}}]}`)
	close(ch)
	if err := bad.h.ImportTransactions(context.Background(), ch, 1, nil); err == nil {
		t.Fatal("an invalid bundle was imported")
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// countingStore counts the keys a server reads (Get calls and keys visited
// by Scan): the work of a query, which the machine's load does not change.
type countingStore struct {
	server.Store
	keys atomic.Int64
}

func (c *countingStore) Get(db string, key []byte) ([]byte, bool, error) {
	c.keys.Add(1)
	return c.Store.Get(db, key)
}

func (c *countingStore) Scan(db string, prefix []byte, fn func(key, value []byte) bool) error {
	n := int64(0)
	err := c.Store.Scan(db, prefix, func(k, v []byte) bool { n++; return fn(k, v) })
	c.keys.Add(n)
	return err
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSearchScale generates the scale dataset (at least
// TANDEM_SEARCH_BENCH_RESOURCES resources, default 200,000, from seed
// TANDEM_SEARCH_BENCH_SEED, default 1), bulk-loads it on the real disk
// through the server's transaction write path (ImportTransactions: the
// same resources, history and index entries as POSTed transactions, many
// bundles per journal record), then measures five typical clinical
// searches for random patients beside a read by id (the baseline) in the
// same run: p50/p99, process CPU, allocations and store keys read per
// request; and the index bytes per resource beside the resources' own.
// TANDEM_SEARCH_BENCH_QUERY=name measures one query alone (to profile it);
// TANDEM_SEARCH_BENCH_CACHE_MB sets store.Options.CacheSize (default
// store.DefaultCacheSize, 128 MiB).
func BenchmarkSearchScale(b *testing.B) {
	want, seed := 200000, uint64(1)
	if s := os.Getenv("TANDEM_SEARCH_BENCH_RESOURCES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		want = n
	}
	if s := os.Getenv("TANDEM_SEARCH_BENCH_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		seed = n
	}
	data := loadScaleData(b)
	copies := (want + data.perCopy - 1) / data.perCopy
	// TANDEM_SEARCH_BENCH_DIR keeps the loaded store for later runs (to
	// repeat the measurements without loading again); default a temporary
	// folder.
	dir := os.Getenv("TANDEM_SEARCH_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	loaded := filepath.Join(dir, fmt.Sprintf("loaded-seed%d-copies%d", seed, copies))
	_, err := os.Stat(loaded)
	reuse := err == nil
	cache := int64(store.DefaultCacheSize)
	if s := os.Getenv("TANDEM_SEARCH_BENCH_CACHE_MB"); s != "" {
		mb, err := strconv.Atoi(s)
		if err != nil || mb <= 0 {
			b.Fatalf("TANDEM_SEARCH_BENCH_CACHE_MB=%q", s)
		}
		cache = int64(mb) << 20
	}
	opts := server.Options{NewID: seededIDs(seed)}
	n := newNodeCache(b, vfs.Default, dir, opts, cache)
	var load, loadCPU time.Duration
	if !reuse {
		bundles := make(chan []byte, 8)
		done := make(chan struct{})
		defer close(done)
		go data.generate(seed, copies, bundles, done)
		start := time.Now()
		cpu0 := cpuTime()
		next := 0
		err := n.h.ImportTransactions(context.Background(), bundles, 8<<20, func(nb, ne int) {
			if ne >= next {
				fmt.Printf("BenchmarkSearchScale: loading, %d of %d bundles, %d resources after %s\n", nb, copies*len(data.bundles), ne, time.Since(start).Round(time.Second))
				next += 25000
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		load, loadCPU = time.Since(start), cpuTime()-cpu0
		if err := n.st.Flush(); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(loaded, nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}

	// Measure a settled store: compactions a bulk load leaves behind run
	// in this process on the same 2 cores as the queries. (A run measured
	// right after its load, with the machine's load average at 7.7, had
	// obs-by-loinc p99 13 ms at 1154 µs CPU per request, twice the CPU of
	// later runs for the same keys read; that run did not separate the
	// two causes, and on a quiet machine compactions settled within 3 s.)
	// Settled: no compaction running for 2 s.
	settle, idle := time.Now(), 0
	for idle < 8 {
		if n.st.Compactions() == 0 {
			idle++
		} else {
			idle = 0
		}
		time.Sleep(250 * time.Millisecond)
	}
	fmt.Printf("BenchmarkSearchScale: compactions settled after %s\n", time.Since(settle).Round(time.Millisecond))

	// Index bytes per resource, beside the resources' own bytes.
	var resources, resBytes, idxBytes int
	var patients []string
	if err := n.st.Scan(fhir.Database, nil, func(k, v []byte) bool {
		switch k[0] {
		case 'c':
			resources++
			resBytes += len(k) + len(v)
			if p := fhir.CurrentPrefix("Patient"); bytes.HasPrefix(k, p) {
				patients = append(patients, string(k[len(p):]))
			}
		case 'x', 'r', 'p':
			idxBytes += len(k) + len(v)
		}
		return true
	}); err != nil {
		b.Fatal(err)
	}

	// Queries go through a second handler over the same store that counts
	// the keys it reads.
	cs := &countingStore{Store: n.st}
	opts.Parser = sharedParser(b)
	opts.BasePath = "/fhir"
	h, err := server.New(n.seq, cs, opts)
	if err != nil {
		b.Fatal(err)
	}
	qn := &node{h: h, st: n.st, j: n.j, seq: n.seq}

	queries := []struct{ name, q string }{
		{"obs-by-loinc", "/Observation?patient=%s&code=http://loinc.org|8302-2"},
		{"conditions-since", "/Condition?patient=%s&onset-date=ge2010-01-01"},
		{"encounters-recent", "/Encounter?patient=%s&date=ge2015-01-01&_sort=-date&_count=20"},
		{"active-meds", "/MedicationRequest?patient=%s&status=active"},
		{"vitals-latest", "/Observation?patient=%s&category=vital-signs&_sort=-date&_count=50"},
	}
	const runs = 1000
	rng := rand.New(rand.NewPCG(seed, 2))
	type cost struct{ cpu, allocs, keys float64 }
	measure := func(path string) ([]time.Duration, cost) {
		lat := make([]time.Duration, 0, runs)
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		k0, c0 := cs.keys.Load(), cpuTime()
		for range runs {
			q := fmt.Sprintf(path, patients[rng.IntN(len(patients))])
			t0 := time.Now()
			rec := qn.do(b, "GET", q, nil)
			lat = append(lat, time.Since(t0))
			if rec.Code != http.StatusOK {
				b.Fatalf("%s: %d %.300s", q, rec.Code, rec.Body.String())
			}
		}
		c := cpuTime() - c0
		runtime.ReadMemStats(&ms1)
		return lat, cost{cpu: float64(c.Microseconds()) / runs, allocs: float64(ms1.Mallocs-ms0.Mallocs) / runs, keys: float64(cs.keys.Load()-k0) / runs}
	}
	for range b.N {
		base, bc := measure("/Patient/%s")
		bp50, bp99 := percentile(base, 0.5), percentile(base, 0.99)
		how := fmt.Sprintf("loaded in %s (%.0f res/s, %.0f µs CPU/res)", load.Round(time.Second), float64(resources)/load.Seconds(), float64(loadCPU.Microseconds())/float64(resources))
		if reuse {
			how = "reused from " + dir
		}
		fmt.Printf("BenchmarkSearchScale: %d resources (%d patients, seed %d) %s; store.Options.CacheSize %d MiB; index %.0f bytes/resource (resources themselves %.0f bytes/resource)\n",
			resources, len(patients), seed, how, cache>>20, float64(idxBytes)/float64(resources), float64(resBytes)/float64(resources))
		fmt.Printf("  %-18s p50 %8s  p99 %8s  CPU %6.0f µs  allocs %6.0f  keys %5.0f  (baseline)\n", "read-by-id", bp50.Round(time.Microsecond), bp99.Round(time.Microsecond), bc.cpu, bc.allocs, bc.keys)
		b.ReportMetric(float64(idxBytes)/float64(resources), "index-B/res")
		for _, q := range queries {
			if only := os.Getenv("TANDEM_SEARCH_BENCH_QUERY"); only != "" && only != q.name {
				continue // one query alone, to profile it
			}
			lat, c := measure(q.q)
			p50, p99 := percentile(lat, 0.5), percentile(lat, 0.99)
			goal := "ok"
			if p99 > 10*time.Millisecond {
				goal = "OVER the 10 ms goal"
			}
			fmt.Printf("  %-18s p50 %8s  p99 %8s  CPU %6.0f µs  allocs %6.0f  keys %5.0f  p50/read %5.1fx  p99/read %5.1fx  %s  %s\n", q.name, p50.Round(time.Microsecond), p99.Round(time.Microsecond),
				c.cpu, c.allocs, c.keys, float64(p50)/float64(bp50), float64(p99)/float64(bp99), goal, q.q)
			b.ReportMetric(float64(p99.Microseconds()), q.name+"-p99-us")
		}
	}
}
