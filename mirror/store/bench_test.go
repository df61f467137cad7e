package store_test

import (
	"context"
	"crypto/rand"
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

// BenchmarkStoreGet (make bench BENCH=StoreGet) measures point reads on a
// store whose data is all on the bottom level (a full compaction of 50,000
// random FHIR-style keys, reopened so the block cache starts cold), for
// keys that are missing — most reads inside a write — and keys that are
// present: Store.Get beside Pebble's own Get, the baseline, on separate
// key sets in the same run, cold first, then warm.
func BenchmarkStoreGet(b *testing.B) {
	for range b.N {
		measureStoreGet(b, b.TempDir())
	}
}

func measureStoreGet(b *testing.B, dir string) {
	const keys, probes = 50000, 10000
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 300)
	rand.Read(value)
	key := func() []byte {
		var id [16]byte
		rand.Read(id[:])
		return fmt.Appendf(nil, "c/Patient/%x", id)
	}
	var present [][]byte
	var recs []journal.Record
	for i := range keys {
		k := key()
		if i%(keys/(2*probes)) == 0 {
			present = append(present, k)
		}
		recs = append(recs, journal.Record{Type: journal.TypeData, Epoch: 1, LSN: uint64(i + 1), Database: "fhir",
			Payload: journal.EncodeOps([]journal.Op{{Kind: journal.OpSet, Key: k, Value: value}})})
		if len(recs) == 256 {
			if _, err := st.ApplyBatch(recs); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	if _, err := st.ApplyBatch(recs); err != nil {
		b.Fatal(err)
	}
	if err := store.CompactAll(st); err != nil {
		b.Fatal(err)
	}
	st.Close()
	if st, err = store.Open(dir, store.Options{}); err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	missing := make([][]byte, 2*probes)
	for i := range missing {
		missing[i] = key()
	}
	per := func(ks [][]byte, want bool, get func(k []byte) (bool, error)) time.Duration {
		t0 := time.Now()
		for _, k := range ks {
			if ok, err := get(k); err != nil || ok != want {
				b.Fatalf("get %q: found %v, %v; want found %v", k, ok, err, want)
			}
		}
		return time.Since(t0) / time.Duration(len(ks))
	}
	storeGet := func(k []byte) (bool, error) { _, ok, err := st.Get("fhir", k); return ok, err }
	pebbleGet := func(k []byte) (bool, error) { return store.PebbleGet(st, "fhir", k) }
	half, ph := len(missing)/2, len(present)/2
	for round := range 2 {
		when := "cold"
		if round > 0 {
			when = "warm"
		}
		// Store.Get goes first: in the cold round the index blocks the first
		// reader loads serve the second, which favours the baseline.
		missStore, missPebble := per(missing[half:], false, storeGet), per(missing[:half], false, pebbleGet)
		hitStore, hitPebble := per(present[ph:], true, storeGet), per(present[:ph], true, pebbleGet)
		fmt.Printf("store get (%s, all on L6): missing key Pebble's Get (baseline) %v, Store.Get %v | present key Pebble's Get %v, Store.Get %v\n",
			when, missPebble, missStore, hitPebble, hitStore)
	}
}
