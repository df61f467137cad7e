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

	"github.com/tandemhealth/tandem/mirror/store"
)

// BenchmarkRestore measures restore throughput (records replayed per
// second from the archive, every checksum verified) beside the baseline of
// the same records replayed by a node's own crash recovery from its journal
// (store.Recover), in the same run.
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
	var restoreTook, recoverTook time.Duration
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
}
