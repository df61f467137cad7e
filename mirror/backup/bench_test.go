package backup

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/mirror/store"
)

// BenchmarkRestore measures restore throughput (records replayed per
// second from the archive, every checksum verified) beside the baseline of
// the same records replayed by a node's own crash recovery from its journal
// (store.Recover), and the same restore with --new-tier (RestoreNewTier:
// the restore, then its content re-encoded as a new journal and a store
// recovered from it), in the same run.
func BenchmarkRestore(b *testing.B) {
	const records = 20000
	dir := b.TempDir()
	m := openMember(b, filepath.Join(dir, "member"))
	bs := Dir{Root: filepath.Join(dir, "backup")}
	a := &Archiver{Source: &Local{Member: "b", Store: m.st, Journal: m.j}, Store: bs, TempDir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	if _, err := a.Snapshot(ctx); err != nil {
		b.Fatal(err)
	}
	m.write(b, rand.New(rand.NewPCG(5, 6)), records)
	if _, err := a.ArchiveOnce(ctx); err != nil {
		b.Fatal(err)
	}
	var restoreTook, newTierTook, recoverTook time.Duration
	newTierKeys := 0
	for i := 0; b.Loop(); i++ {
		dest := filepath.Join(dir, fmt.Sprintf("restore-%d", i))
		start := time.Now()
		rep, err := Restore(ctx, bs, Target{}, dest)
		if err != nil {
			b.Fatal(err)
		}
		restoreTook += time.Since(start)
		if rep.Replayed != records {
			b.Fatalf("replayed %d", rep.Replayed)
		}
		os.RemoveAll(dest)

		// The same restore as a new tier (restore, then re-encode as a
		// journal from LSN 1 and recover a store from it).
		start = time.Now()
		nrep, err := RestoreNewTier(ctx, bs, Target{}, dest)
		if err != nil {
			b.Fatal(err)
		}
		newTierTook += time.Since(start)
		newTierKeys += nrep.NewTier.Keys
		os.RemoveAll(dest)

		// Baseline: crash recovery of the same records from the journal.
		b.StopTimer()
		st, err := store.Open(filepath.Join(dir, fmt.Sprintf("recover-%d", i)), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start = time.Now()
		n, err := st.Recover(m.j)
		if err != nil || n != records {
			b.Fatal(n, err)
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		recoverTook += time.Since(start)
	}
	restoreRate := float64(records*b.N) / restoreTook.Seconds()
	recoverRate := float64(records*b.N) / recoverTook.Seconds()
	b.ReportMetric(restoreRate, "restore-rec/s")
	b.ReportMetric(recoverRate, "recover-rec/s")
	b.ReportMetric(restoreRate/recoverRate, "restore/recover")
	// Per source record restored, like restore-rec/s.
	newTierRate := float64(records*b.N) / newTierTook.Seconds()
	b.ReportMetric(newTierRate, "newtier-rec/s")
	b.ReportMetric(float64(newTierKeys)/newTierTook.Seconds(), "newtier-keys/s")
	b.ReportMetric(newTierRate/restoreRate, "newtier/restore")
}

// BenchmarkRestoreNewTierContent measures a new-tier restore on a larger
// content (50,000 keys of 1 KiB, from one snapshot) beside the plain
// restore of the same snapshot, in the same run: the re-encoding costs in
// proportion to the content, not to the archived records.
func BenchmarkRestoreNewTierContent(b *testing.B) {
	const keys, valueSize, perRecord = 50000, 1 << 10, 100
	dir := b.TempDir()
	m := openMember(b, filepath.Join(dir, "member"))
	rng := rand.New(rand.NewPCG(5, 7))
	for i := 0; i < keys; i += perRecord {
		ops := make([]journal.Op, 0, perRecord)
		for k := i; k < i+perRecord; k++ {
			v := make([]byte, valueSize)
			for j := range v {
				v[j] = byte(rng.Uint32())
			}
			ops = append(ops, journal.Op{Kind: journal.OpSet, Key: fmt.Appendf(nil, "Observation/%08d", k), Value: v})
		}
		if _, err := m.seq.Write(context.Background(), "fhir", func(sequencer.View) ([]journal.Op, error) { return ops, nil }); err != nil {
			b.Fatal(err)
		}
	}
	bs := Dir{Root: filepath.Join(dir, "backup")}
	a := &Archiver{Source: &Local{Member: "b", Store: m.st, Journal: m.j}, Store: bs, TempDir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	if _, err := a.Snapshot(ctx); err != nil {
		b.Fatal(err)
	}
	var plainTook, newTierTook time.Duration
	var records int
	for i := 0; b.Loop(); i++ {
		dest := filepath.Join(dir, fmt.Sprintf("plain-%d", i))
		start := time.Now()
		if _, err := Restore(ctx, bs, Target{}, dest); err != nil {
			b.Fatal(err)
		}
		plainTook += time.Since(start)
		os.RemoveAll(dest)
		dest = filepath.Join(dir, fmt.Sprintf("tier-%d", i))
		start = time.Now()
		rep, err := RestoreNewTier(ctx, bs, Target{}, dest)
		if err != nil {
			b.Fatal(err)
		}
		newTierTook += time.Since(start)
		if rep.NewTier.Keys != keys {
			b.Fatalf("%d keys", rep.NewTier.Keys)
		}
		records = rep.NewTier.DataRecords
		os.RemoveAll(dest)
	}
	mb := float64(keys*valueSize*b.N) / (1 << 20)
	b.ReportMetric(mb/plainTook.Seconds(), "restore-MiB/s")
	b.ReportMetric(mb/newTierTook.Seconds(), "newtier-MiB/s")
	b.ReportMetric(float64(keys*b.N)/newTierTook.Seconds(), "newtier-keys/s")
	b.ReportMetric(float64(records), "newtier-records")
}
