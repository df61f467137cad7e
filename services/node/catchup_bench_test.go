package node_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/services/node"
)

// BenchmarkCatchup measures how fast a member that was behind by N records
// catches up (records replayed per second: received, durable in its
// journal and applied to its store), beside the primary's commit rate
// measured in the same round on the same disk. Each round: the primary of
// a mirrored pair (backup active) takes N 1 KiB writes from 16 writers
// while its dr async is down; then the async starts and catches up. The
// median of three rounds is reported (a shared 2-core machine is noisy).
// Goal: catch-up at least 5x the commit rate, so a member that was away
// comes back long before the backlog it missed could double.
func BenchmarkCatchup(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	const records, writers, rounds = 20000, 16, 3
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		f := benchCluster(b, dir, "c=dr")
		members, stopTier := startTierOf(b, f, quiet)
		var ratios, replays, commits []float64
		for round := range rounds {
			commitRate := writeBacklog(b, members[0], round, records, writers)
			r := catchUp(b, f, members[0], quiet)
			fmt.Printf("catchup: round %d: async behind by %d records (1 KiB): primary commit rate %.0f rec/s (%d writers, backup active) | catch-up replay %.0f rec/s, ratio %.1fx | end to end %.0f rec/s in %v incl. %v before the first record\n",
				round+1, r.behind, commitRate, writers, r.replay, r.replay/commitRate, r.endToEnd, r.elapsed.Round(time.Millisecond), r.firstRecord.Round(time.Millisecond))
			ratios = append(ratios, r.replay/commitRate)
			replays = append(replays, r.replay)
			commits = append(commits, commitRate)
		}
		stopTier()
		med := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
		b.ReportMetric(med(commits), "commit-rec/s")
		b.ReportMetric(med(replays), "catchup-rec/s")
		b.ReportMetric(med(ratios), "catchup/commit")
		fmt.Printf("catchup: median of %d rounds: commit %.0f rec/s, catch-up replay %.0f rec/s, ratio %.1fx (goal >= 5x)\n", rounds, med(commits), med(replays), med(ratios))
	}
}

// writeBacklog writes n 1 KiB records on the primary from the given
// number of writers and returns the commit rate (records/s).
func writeBacklog(b *testing.B, primary *node.Node, round, n, writers int) float64 {
	b.Helper()
	value := make([]byte, 1024)
	var next atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := next.Add(1)
				if k > int64(n) {
					return
				}
				key := fmt.Appendf(nil, "k/%d/%d", round, k)
				if _, err := primary.Sequencer().Write(context.Background(), "fhir", func(sequencer.View) ([]journal.Op, error) {
					return []journal.Op{{Kind: journal.OpSet, Key: key, Value: value}}, nil
				}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(t0).Seconds()
}

type catchUpResult struct {
	behind               uint64
	replay, endToEnd     float64 // records/s from the first record received; from the start
	elapsed, firstRecord time.Duration
}

// catchUp starts the async c from its data directory, waits until it has
// applied everything the (quiescent) primary holds, and stops it again.
func catchUp(b *testing.B, f *cluster.File, primary *node.Node, log *slog.Logger) catchUpResult {
	b.Helper()
	target := primary.Status().Journal.LastLSN
	c, err := node.OpenMember(f, "records", "c", log)
	if err != nil {
		b.Fatal(err)
	}
	r := catchUpResult{behind: target - c.Store().AppliedLSN()}
	start := c.Status().Journal.LastLSN
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t0 := time.Now()
	go func() { defer close(done); c.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Minute)
	for c.Store().AppliedLSN() < target {
		if r.firstRecord == 0 && c.Status().Journal.LastLSN > start {
			r.firstRecord = time.Since(t0)
		}
		if time.Now().After(deadline) {
			b.Fatalf("async not caught up after 5 minutes: applied %d of %d", c.Store().AppliedLSN(), target)
		}
		time.Sleep(time.Millisecond)
	}
	r.elapsed = time.Since(t0)
	cancel()
	<-done
	// Replay: from the first record received to the last applied (before
	// it, the primary redials a link that was down, with a backoff of up
	// to 1 s); end to end: from the start.
	r.replay = float64(r.behind) / (r.elapsed - r.firstRecord).Seconds()
	r.endToEnd = float64(r.behind) / r.elapsed.Seconds()
	return r
}
