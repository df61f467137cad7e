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
// b.TempDir()), in one run: two raw fdatasync rates of the disk (1 KiB
// appended to a file that grows with each write; 1 KiB written into space
// allocated ahead, the journal's own way), durable appends/s of 1 KiB
// records with 1, 16 and 64 concurrent writers, the group-commit speedup at
// 64 writers (appends/s ÷ growing-file fdatasyncs/s), the 1-writer rate
// over the allocated-space one (the journal's own floor), and the replay
// rate of a Reader from the start. It ignores b.N: run it with
// -benchtime=1x. About 25 s.
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
	growing := openRawFile(b, filepath.Join(dir, "raw"), false)
	defer growing.f.Close()
	allocated := openRawFile(b, filepath.Join(dir, "raw-allocated"), true)
	defer allocated.f.Close()
	var at1, at64 float64
	for _, writers := range []int{1, 16, 64} {
		var ops, secs float64
		before := j.Stats()
		for s := 0; s < slices; s++ {
			growing.run(b, payload, phase/slices)
			allocated.run(b, payload, phase/slices)
			n, d := appendLoop(b, j, writers, payload, phase/slices)
			ops, secs = ops+n, secs+d
		}
		after := j.Stats()
		rate := ops / secs
		fmt.Printf("journal: appends/s writers=%d: %.0f\n", writers, rate)
		fmt.Printf("journal: records per fdatasync writers=%d: %.1f\n", writers,
			float64(after.Records-before.Records)/float64(after.Syncs-before.Syncs))
		b.ReportMetric(rate, fmt.Sprintf("appends/s-writers=%d", writers))
		if writers == 1 {
			at1 = rate
		}
		at64 = rate
	}
	raw, rawAllocated := growing.rate(), allocated.rate()
	fmt.Printf("journal: raw fdatasync: %.0f/s appending to a growing file, %.0f/s into allocated space\n", raw, rawAllocated)
	b.ReportMetric(raw, "raw-fdatasync/s")
	b.ReportMetric(rawAllocated, "raw-fdatasync-allocated/s")
	speedup := at64 / raw
	fmt.Printf("group-commit speedup at 64 writers: %.1f\n", speedup)
	b.ReportMetric(speedup, "speedup-64")
	fmt.Printf("journal: 1 writer over raw fdatasync into allocated space: %.2f\n", at1/rawAllocated)
	b.ReportMetric(at1/rawAllocated, "writers=1/allocated-floor")

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

// rawFile is a raw fdatasync loop's file: writes go at off, one after the
// other; ops and secs add up every run.
type rawFile struct {
	f         vfs.File
	off       int64
	ops, secs float64
}

// openRawFile creates path; allocated: with 256 MiB allocated ahead as
// zeros that extend the file (fallocate mode 0, as the journal does).
func openRawFile(b *testing.B, path string, allocated bool) *rawFile {
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		b.Fatal(err)
	}
	if allocated {
		if err := fallocate(f.Fd(), 0, 256<<20); err != nil {
			b.Skipf("fallocate: %v", err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	return &rawFile{f: f}
}

// run writes 1 KiB and fdatasyncs it in a loop for d.
func (r *rawFile) run(b *testing.B, payload []byte, d time.Duration) {
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if _, err := r.f.WriteAt(payload, r.off); err != nil {
			b.Fatal(err)
		}
		if err := r.f.SyncData(); err != nil {
			b.Fatal(err)
		}
		r.off += int64(len(payload))
		n++
	}
	r.ops, r.secs = r.ops+float64(n), r.secs+time.Since(start).Seconds()
}

func (r *rawFile) rate() float64 { return r.ops / r.secs }

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
