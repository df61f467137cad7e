package journal

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// BenchmarkJournal measures, on the real disk (vfs.Default under
// b.TempDir()), in one run: the raw fdatasync rate of the disk, durable
// appends/s of 1 KiB records with 1, 16 and 64 concurrent writers, the
// group-commit speedup at 64 writers (appends/s ÷ raw fdatasyncs/s) and the
// replay rate of a Reader from the start. It ignores b.N: run it with
// -benchtime=1x. About 20 s.
func BenchmarkJournal(b *testing.B) {
	phase := 3 * time.Second
	if testing.Short() {
		phase = 500 * time.Millisecond
	}
	dir := b.TempDir()
	payload := make([]byte, 1024)
	for i := range payload {
		payload[i] = byte(i)
	}

	j, err := Open(filepath.Join(dir, "journal"), Options{FS: vfs.Default})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()

	// The disk is shared and its fsync rate drifts: each append phase is
	// measured in slices interleaved with slices of the raw fdatasync loop,
	// and the speedup compares the two over the same period.
	const slices = 4
	var rawOps, rawSecs float64
	var at64 float64
	for _, writers := range []int{1, 16, 64} {
		var ops, secs float64
		before := j.Stats()
		for s := 0; s < slices; s++ {
			n, d := rawFdatasync(b, filepath.Join(dir, "raw"), payload, phase/slices)
			rawOps, rawSecs = rawOps+n, rawSecs+d
			n, d = appendLoop(b, j, writers, payload, phase/slices)
			ops, secs = ops+n, secs+d
		}
		after := j.Stats()
		rate := ops / secs
		fmt.Printf("journal: appends/s writers=%d: %.0f\n", writers, rate)
		fmt.Printf("journal: records per fdatasync writers=%d: %.1f\n", writers,
			float64(after.Records-before.Records)/float64(after.Syncs-before.Syncs))
		b.ReportMetric(rate, fmt.Sprintf("appends/s-writers=%d", writers))
		at64 = rate
	}
	raw := rawOps / rawSecs
	fmt.Printf("journal: raw fdatasync: %.0f/s\n", raw)
	b.ReportMetric(raw, "raw-fdatasync/s")
	speedup := at64 / raw
	fmt.Printf("group-commit speedup at 64 writers: %.1f\n", speedup)
	b.ReportMetric(speedup, "speedup-64")

	start := time.Now()
	r, err := j.NewReader(1)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	r.Close()
	replay := float64(n) / time.Since(start).Seconds()
	fmt.Printf("journal: replay: %.0f records/s (%d records, %d segments)\n", replay, n, len(j.Segments()))
	b.ReportMetric(replay, "replay-records/s")
}

// rawFdatasync appends 1 KiB and fdatasyncs it in a loop for d; it returns
// the count and the seconds taken.
func rawFdatasync(b *testing.B, path string, payload []byte, d time.Duration) (float64, float64) {
	f, err := vfs.Default.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	off := st.Size()
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if _, err := f.WriteAt(payload, off); err != nil {
			b.Fatal(err)
		}
		if err := f.SyncData(); err != nil {
			b.Fatal(err)
		}
		off += int64(len(payload))
		n++
	}
	return float64(n), time.Since(start).Seconds()
}

// appendLoop runs writers goroutines doing Append for d; it returns the
// count and the seconds taken.
func appendLoop(b *testing.B, j *Journal, writers int, payload []byte, d time.Duration) (float64, float64) {
	var total atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := j.Append(context.Background(), TypeData, 1, "fhir", payload); err != nil {
					b.Error(err)
					return
				}
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(total.Load()), time.Since(start).Seconds()
}
