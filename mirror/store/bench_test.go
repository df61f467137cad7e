package store_test

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/store"
)

// BenchmarkJournalReplayApply measures crash recovery on the real disk: a
// fresh store replaying a journal of 1 KiB records, against the baseline of
// reading the same journal without applying it, measured in the same run.
func BenchmarkJournalReplayApply(b *testing.B) {
	const records = 20000
	dir := b.TempDir()
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	value := make([]byte, 1000)
	var wg sync.WaitGroup
	for w := range 64 { // write the journal quickly with group commit
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < records; i += 64 {
				ops := []journal.Op{{Kind: journal.OpSet, Key: fmt.Appendf(nil, "Observation/%08d", i), Value: value}}
				if _, err := j.Append(context.Background(), journal.TypeData, 1, "fhir", journal.EncodeOps(ops)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		r, err := j.NewReader(1)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
			n++
		}
		r.Close()
		readRate := float64(n) / time.Since(t0).Seconds()

		st, err := store.Open(filepath.Join(dir, fmt.Sprintf("store-%d", i)), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		applied, err := st.Recover(j)
		if err != nil {
			b.Fatal(err)
		}
		applyRate := float64(applied) / time.Since(t0).Seconds()
		st.Close()
		if applied != records {
			b.Fatalf("replayed %d records, want %d", applied, records)
		}
		b.ReportMetric(applyRate, "records/s")
		fmt.Printf("journal: replay read only (baseline): %.0f records/s\n", readRate)
		fmt.Printf("journal: replay + apply to Pebble:    %.0f records/s (%.2f of read-only)\n", applyRate, applyRate/readRate)
	}
}
