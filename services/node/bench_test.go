package node_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/services/arbiter"
	"github.com/tandemhealth/tandem/services/node"
)

// BenchmarkMirror measures commit latency and throughput of 1 KiB writes at
// 1, 16 and 64 concurrent writers, on a mirrored tier (arbiter and two
// members on loopback with mutual TLS, both members' journals on this disk)
// beside a standalone node on the same disk, in the same run.
func BenchmarkMirror(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	const perWriter = 2 * time.Second
	type result struct {
		rate     float64
		p50, p99 time.Duration
	}
	measure := func(seq *sequencer.Sequencer, writers int) result {
		var mu sync.Mutex
		var lat []time.Duration
		value := make([]byte, 1024)
		deadline := time.Now().Add(perWriter)
		var wg sync.WaitGroup
		start := time.Now()
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				for i := 0; time.Now().Before(deadline); i++ {
					key := fmt.Appendf(nil, "w%d/%d", w, i)
					t0 := time.Now()
					_, err := seq.Write(context.Background(), "fhir", func(sequencer.View) ([]journal.Op, error) {
						return []journal.Op{{Kind: journal.OpSet, Key: key, Value: value}}, nil
					})
					if err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		if len(lat) == 0 {
			return result{}
		}
		return result{rate: float64(len(lat)) / elapsed.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100]}
	}

	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		// Unmirrored baseline: a standalone node.
		cfg := node.Config{Tier: "bench", Member: "solo", DataDir: filepath.Join(dir, "solo")}
		cfg.SetDefaults()
		solo, err := node.Open(cfg, quiet)
		if err != nil {
			b.Fatal(err)
		}
		// Mirrored: arbiter + a + b in this process, over real sockets.
		f := benchCluster(b, dir)
		if err := arbiter.Seed(f.Arbiter.DataDir, "records", "a", "b"); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		arb, err := arbiter.New(f, quiet)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); arb.Run(ctx) }()
		var members []*node.Node
		for _, m := range []string{"a", "b"} {
			n, err := node.OpenMember(f, "records", m, quiet)
			if err != nil {
				b.Fatal(err)
			}
			members = append(members, n)
			wg.Add(1)
			go func() { defer wg.Done(); n.Run(ctx) }()
		}
		primary := members[0]
		deadline := time.Now().Add(20 * time.Second)
		for primary.Status().Status != "primary" || members[1].Status().Status != "backup" {
			if time.Now().After(deadline) {
				b.Fatalf("tier not ready: %s / %s", primary.Status().Status, members[1].Status().Status)
			}
			time.Sleep(20 * time.Millisecond)
		}

		b.ResetTimer()
		for _, writers := range []int{1, 16, 64} {
			un := measure(solo.Sequencer(), writers)
			mi := measure(primary.Sequencer(), writers)
			fmt.Printf("mirror: writers=%-2d unmirrored %7.0f writes/s p50 %-9v p99 %-9v | mirrored %7.0f writes/s p50 %-9v p99 %-9v | throughput %.0f%% of unmirrored, p50 %.2fx\n",
				writers, un.rate, un.p50.Round(time.Microsecond), un.p99.Round(time.Microsecond),
				mi.rate, mi.p50.Round(time.Microsecond), mi.p99.Round(time.Microsecond), 100*mi.rate/un.rate, float64(mi.p50)/float64(un.p50))
			b.ReportMetric(mi.rate, fmt.Sprintf("mirrored-writes/s@%d", writers))
		}
		b.StopTimer()
		cancel()
		wg.Wait()
		solo.Close()
	}
}

func benchCluster(b *testing.B, dir string) *cluster.File {
	b.Helper()
	port := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	y := fmt.Sprintf("tls: {dev_ca_dir: %s}\narbiter: {address: %q, data_dir: %s}\ntiers:\n  - name: records\n    members:\n",
		filepath.Join(dir, "ca"), port(), filepath.Join(dir, "arbiter"))
	for _, m := range []string{"a", "b"} {
		y += fmt.Sprintf("      - {name: %s, role: failover, address: %q, http: %q, data_dir: %s, agent: {address: %q}}\n",
			m, port(), port(), filepath.Join(dir, m), port())
	}
	f, err := cluster.Parse([]byte(y))
	if err != nil {
		b.Fatal(err)
	}
	return f
}
