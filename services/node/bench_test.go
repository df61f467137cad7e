package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/fhir"
	fhirserver "github.com/tandemhealth/tandem/fhir/server"
	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/mirror/store"
	"github.com/tandemhealth/tandem/mirror/transport"
	"github.com/tandemhealth/tandem/services/arbiter"
	"github.com/tandemhealth/tandem/services/node"
)

// BenchmarkMirror measures commit latency and throughput of 1 KiB writes at
// 1, 16 and 64 concurrent writers, on a mirrored tier (arbiter and two
// members on loopback with mutual TLS, both members' journals on this disk)
// beside a standalone node on the same disk, in the same run. Since the
// goals are ratios to the standalone node and both members share this
// host's disk and cores, two references are measured in the same run too:
// the mirrored commit with none of the mirror's code (mirroredFloor), and
// both members' work with nothing shipped (twice). The second is a
// reference, not a bound: it batches differently (two journals grouping on
// their own), and the mirror has passed it in a run.
// TANDEM_BENCH_WRITERS=64 measures one writer count,
// TANDEM_BENCH_PROFILE_DIR=dir profiles each phase (profilePhase).
func BenchmarkMirror(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	const perWriter = 2 * time.Second
	measure := func(seq *sequencer.Sequencer, writers int) clientLoad {
		value := make([]byte, 1024)
		return runClients(b, writers, perWriter, func(w, i int) error {
			key := fmt.Appendf(nil, "w%d/%d", w, i)
			_, err := seq.Write(context.Background(), "fhir", func(sequencer.View) ([]journal.Op, error) {
				return []journal.Op{{Kind: journal.OpSet, Key: key, Value: value}}, nil
			})
			return err
		})
	}

	// twice writes each record on the standalone node as measure does and
	// also into a second journal, whose store applies it once durable as a
	// backup's does: the work of both members on this host, with no
	// shipping and no failover core.
	twice := func(seq *sequencer.Sequencer, second *journal.Journal, applier *store.Applier, writers int) clientLoad {
		value := make([]byte, 1024)
		return runClients(b, writers, perWriter, func(w, i int) error {
			key := fmt.Appendf(nil, "w%d/%d", w, i)
			ops := []journal.Op{{Kind: journal.OpSet, Key: key, Value: value}}
			p, err := second.Enqueue(journal.TypeData, 1, "fhir", journal.EncodeOps(ops))
			if err != nil {
				return err
			}
			if _, err := seq.Write(context.Background(), "fhir", func(sequencer.View) ([]journal.Op, error) { return ops, nil }); err != nil {
				return err
			}
			if err := p.Wait(context.Background()); err != nil {
				return err
			}
			applier.SetLimit(p.LSN)
			return nil
		})
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
		secondJ, secondApplier := secondCopy(b, filepath.Join(dir, "copy"))
		f, members, stopTier := startTier(b, dir, quiet)
		primary := members[0]
		disk, disk2 := rawFdatasync(b, filepath.Join(dir, "raw"), 1, perWriter/2), rawFdatasync(b, filepath.Join(dir, "raw"), 2, perWriter/2)
		rtt := tlsRoundTrip(b, f, perWriter/2)
		floor := mirroredFloor(b, f, filepath.Join(dir, "raw"), perWriter/2)
		// With ship-before-fsync the two members' fdatasyncs overlap, but
		// on one disk two at once each take longer than one alone, and
		// each message between the members waits for a sleeping thread
		// to wake: the 1-writer floor is mirroredFloor's commit, against
		// one fdatasync unmirrored.
		fmt.Printf("mirror: same-run floor: fdatasync of a 1 KiB write into allocated space p50 %v p99 %v, two files at once p50 %v p99 %v | loopback mutual-TLS ping-pong (1 KiB out, 32 B back) p50 %v p99 %v | 1-writer floor: unmirrored (1 fdatasync) %v, mirrored (ship 1 KiB, fdatasync on both sides, answer: mirroredFloor) %v p99 %v = %.2fx\n",
			disk.p50.Round(time.Microsecond), disk.p99.Round(time.Microsecond), disk2.p50.Round(time.Microsecond), disk2.p99.Round(time.Microsecond),
			rtt.p50.Round(time.Microsecond), rtt.p99.Round(time.Microsecond),
			disk.p50.Round(time.Microsecond), floor.p50.Round(time.Microsecond), floor.p99.Round(time.Microsecond), float64(floor.p50)/float64(disk.p50))
		b.ResetTimer()
		for _, writers := range benchWriters(b) {
			soloJ := node.JournalStats(solo)
			stop := profilePhase(b, "unmirrored", writers)
			un := measure(solo.Sequencer(), writers)
			stop()
			soloG := groupsSince(soloJ, node.JournalStats(solo))
			both := twice(solo.Sequencer(), secondJ, secondApplier, writers)
			primJ, backJ := node.JournalStats(primary), node.JournalStats(members[1])
			stop = profilePhase(b, "mirrored", writers)
			mi := measure(primary.Sequencer(), writers)
			stop()
			primG, backG := groupsSince(primJ, node.JournalStats(primary)), groupsSince(backJ, node.JournalStats(members[1]))
			fmt.Printf("mirror: writers=%-2d unmirrored %7.0f writes/s p50 %-9v p99 %-9v | mirrored %7.0f writes/s p50 %-9v p99 %-9v | throughput %.0f%% of unmirrored, p50 %.2fx\n",
				writers, un.rate, un.p50.Round(time.Microsecond), un.p99.Round(time.Microsecond),
				mi.rate, mi.p50.Round(time.Microsecond), mi.p99.Round(time.Microsecond), 100*mi.rate/un.rate, float64(mi.p50)/float64(un.p50))
			// Both members run in this process on this machine's cores: when
			// the unmirrored side already keeps them busy, the mirrored side
			// (every write journaled and applied twice) cannot reach its rate.
			fmt.Printf("mirror: writers=%-2d cpu per write (this process, all members): unmirrored %v mirrored %v | cores busy: unmirrored %.2f mirrored %.2f of %d | machine idle: unmirrored %.0f%% mirrored %.0f%%\n",
				writers, un.cpuPerOp.Round(time.Microsecond), mi.cpuPerOp.Round(time.Microsecond),
				un.rate*un.cpuPerOp.Seconds(), mi.rate*mi.cpuPerOp.Seconds(), runtime.NumCPU(), 100*un.idle, 100*mi.idle)
			fmt.Printf("mirror: writers=%-2d journal commit groups: unmirrored %s | mirrored primary %s, backup %s\n", writers, soloG, primG, backG)
			// The goals are ratios to one unmirrored node: what both
			// members' work costs on this host without the mirror says
			// how far that is from what the mirror adds.
			fmt.Printf("mirror: writers=%-2d reference, both members' work here without the mirror: every write on the standalone node and into a second journal applied once durable (nothing shipped) %7.0f writes/s p50 %-9v p99 %-9v = %.0f%% of unmirrored, p50 %.2fx | cpu per write %v (mirrored %v) | mirrored is %.0f%% of it\n",
				writers, both.rate, both.p50.Round(time.Microsecond), both.p99.Round(time.Microsecond), 100*both.rate/un.rate, float64(both.p50)/float64(un.p50),
				both.cpuPerOp.Round(time.Microsecond), mi.cpuPerOp.Round(time.Microsecond), 100*mi.rate/both.rate)
			b.ReportMetric(mi.rate, fmt.Sprintf("mirrored-writes/s@%d", writers))
		}
		b.StopTimer()
		stopTier()
		solo.Close()
	}
}

// profilePhase starts a CPU profile of one measured phase when
// TANDEM_BENCH_PROFILE_DIR names a directory (dir/mirror-<phase>-<writers>.pprof),
// so the floors and the other phase do not blur it; it returns the
// function that stops it.
func profilePhase(b *testing.B, phase string, writers int) func() {
	dir := os.Getenv("TANDEM_BENCH_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("mirror-%s-%d.pprof", phase, writers)))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// groupsSince describes the commit groups a journal made durable between
// two readings of its counters: how many, and records per group.
func groupsSince(before, after journal.Stats) string {
	g, r := after.Groups-before.Groups, after.Records-before.Records
	if g == 0 {
		return "none"
	}
	return fmt.Sprintf("%d groups, %.1f records/group", g, float64(r)/float64(g))
}

// rawFdatasync writes 1 KiB after the last into a file in dir and
// fdatasyncs it, over and over for span, from streams goroutines at once (a
// file each, its space allocated ahead as the journal allocates its
// segments): the disk's floor under every journal commit, and under two
// members' commits at once.
func rawFdatasync(b *testing.B, dir string, streams int, span time.Duration) clientLoad {
	files := make([]*os.File, streams)
	for i := range files {
		files[i] = allocatedFile(b, dir, fmt.Sprintf("fdatasync-%d", i))
	}
	block := make([]byte, 1024)
	return runClients(b, streams, span, func(w, _ int) error {
		return appendSync(files[w], block)
	})
}

// secondCopy opens a journal and a store in dir, the store applying the
// journal's records up to the limit its applier is given, as a backup's
// does; both close when the benchmark ends.
func secondCopy(b *testing.B, dir string) (*journal.Journal, *store.Applier) {
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "store"), store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	a := store.NewApplier(st, j)
	b.Cleanup(func() {
		a.Close()
		st.Close()
		j.Close()
	})
	return j, a
}

// allocatedFile creates a file in dir with 256 MiB allocated ahead (as the
// journal allocates its segments), closed when the benchmark ends.
func allocatedFile(b *testing.B, dir, name string) *os.File {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, 256<<20); err != nil {
		b.Fatalf("fallocate %s: %v", f.Name(), err)
	}
	return f
}

// appendSync writes block after the last write to f and fdatasyncs it.
func appendSync(f *os.File, block []byte) error {
	if _, err := f.Write(block); err != nil {
		return err
	}
	return syscall.Fdatasync(int(f.Fd()))
}

// tlsRoundTrip sends a 1 KiB frame from member b to member a of f's tier
// over loopback mutual TLS (the members' own transport and certificates)
// and waits for a 32-byte answer, over and over for span: the network's
// floor under every mirrored commit. A ping-pong: the answer is written
// while the sender's thread looks for work, so no message waits for a
// sleeping thread to wake (mirroredFloor's do).
func tlsRoundTrip(b *testing.B, f *cluster.File, span time.Duration) clientLoad {
	c := tlsPeer(b, f, func(transport.Message) error { return nil })
	frame := transport.Message{Type: 1, Tier: "records", From: "b", Payload: make([]byte, 1024)}
	return runClients(b, 1, span, func(int, int) error {
		if err := c.Send(frame); err != nil {
			return err
		}
		_, err := c.Recv()
		return err
	})
}

// mirroredFloor is the floor under a mirrored 1-writer commit, measured
// rather than added up: send a 1 KiB frame over loopback mutual TLS to a
// reader waiting in Recv, append 1 KiB to a file here and fdatasync it,
// while the reader appends the frame to its own file, fdatasyncs it and
// answers 32 bytes; one commit ends when both are durable. That is the
// mirror's commit (shipped before the local fsync, acknowledged once
// durable on the backup) with none of its code: no hand-off on the sending
// side, one goroutine on the other. Unlike tlsRoundTrip's ping-pong it
// pays what shipping costs while both members are busy: the receiving
// thread is asleep when the frame arrives and must be woken (the answer's
// too), and the two fdatasyncs share the disk.
func mirroredFloor(b *testing.B, f *cluster.File, dir string, span time.Duration) clientLoad {
	mine, theirs := allocatedFile(b, dir, "floor-primary"), allocatedFile(b, dir, "floor-backup")
	c := tlsPeer(b, f, func(m transport.Message) error { return appendSync(theirs, m.Payload) })
	frame := transport.Message{Type: 1, Tier: "records", From: "b", Payload: make([]byte, 1024)}
	return runClients(b, 1, span, func(int, int) error {
		if err := c.Send(frame); err != nil {
			return err
		}
		if err := appendSync(mine, frame.Payload); err != nil {
			return err
		}
		_, err := c.Recv()
		return err
	})
}

// tlsPeer connects member b of f's tier to member a over loopback mutual
// TLS (the members' own transport and certificates) and returns b's end.
// a's end calls handle for each frame, then answers with 32 bytes. Both
// ends close when the benchmark ends.
func tlsPeer(b *testing.B, f *cluster.File, handle func(transport.Message) error) *transport.Conn {
	server, err := f.Credentials("a")
	if err != nil {
		b.Fatal(err)
	}
	client, err := f.Credentials("b")
	if err != nil {
		b.Fatal(err)
	}
	ln, err := transport.Listen("127.0.0.1:0", server.ServerConfig())
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		defer c.Close()
		for {
			m, err := c.Recv()
			if err != nil {
				return
			}
			if err := handle(m); err != nil {
				b.Error(err)
				return
			}
			if err := c.Send(transport.Message{Type: 1, Tier: "records", From: "a", Payload: make([]byte, 32)}); err != nil {
				return
			}
		}
	}()
	c, err := transport.Dial(context.Background(), ln.Addr().String(), client.ClientConfig("127.0.0.1"))
	if err != nil {
		ln.Close()
		<-served
		b.Fatal(err)
	}
	b.Cleanup(func() { // the answering goroutine ends before the files handle uses close
		c.Close()
		ln.Close()
		<-served
	})
	return c
}

// benchWriters is the writer counts BenchmarkMirror measures: 1, 16 and 64,
// or the comma-separated list in TANDEM_BENCH_WRITERS (to profile one case).
func benchWriters(b *testing.B) []int {
	env := os.Getenv("TANDEM_BENCH_WRITERS")
	if env == "" {
		return []int{1, 16, 64}
	}
	var out []int
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("TANDEM_BENCH_WRITERS: bad writer count %q", f)
		}
		out = append(out, n)
	}
	return out
}

// startBenchTier runs the arbiter and two members in this process, over
// real sockets with mutual TLS, and returns the primary once the backup is
// active.
func startBenchTier(b *testing.B, dir string, log *slog.Logger) (*node.Node, func()) {
	b.Helper()
	_, members, stop := startTier(b, dir, log)
	return members[0], stop
}

// startTier runs the arbiter and members a and b of tier "records" in this
// process, over real sockets with mutual TLS, and returns once a is
// primary and its backup b is active.
func startTier(tb testing.TB, dir string, log *slog.Logger) (*cluster.File, []*node.Node, func()) {
	tb.Helper()
	f := benchCluster(tb, dir)
	members, stop := startTierOf(tb, f, log)
	return f, members, stop
}

// startTierOf runs the arbiter and the failover members a and b of f's
// tier "records" (not its async members), as startTier does.
func startTierOf(tb testing.TB, f *cluster.File, log *slog.Logger) ([]*node.Node, func()) {
	tb.Helper()
	if err := arbiter.Seed(f.Arbiter.DataDir, "records", "a", "b"); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	arb, err := arbiter.New(f, log)
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); arb.Run(ctx) }()
	// Both members are opened (the slow part) before either runs: a
	// primary started well before its backup finds it silent through its
	// restart resync and opens a new epoch with the backup inactive — safe,
	// but not the tier the tests start from.
	var members []*node.Node
	for _, m := range []string{"a", "b"} {
		n, err := node.OpenMember(f, "records", m, log)
		if err != nil {
			tb.Fatal(err)
		}
		members = append(members, n)
	}
	for _, n := range members {
		wg.Add(1)
		go func() { defer wg.Done(); n.Run(ctx) }()
	}
	deadline := time.Now().Add(20 * time.Second)
	for members[0].Status().Status != "primary" || members[1].Status().Transfer == nil || members[1].Status().Transfer.Status != "active" {
		if time.Now().After(deadline) {
			tb.Fatalf("tier not ready: %s / %s", members[0].Status().Status, members[1].Status().Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return members, func() { cancel(); wg.Wait() }
}

// BenchmarkFHIRIngestMirrored loads Synthea bundles as transactions on the
// primary of a mirrored tier (synchronous backup on this disk), beside the
// raw google/fhir/go parse rate of the same resources in the same run.
func BenchmarkFHIRIngestMirrored(b *testing.B) {
	files, _ := filepath.Glob("../../../shared/testdata/synthea/*.json")
	if len(files) < 6 {
		b.Skip("needs the Synthea bundles in ../shared/testdata")
	}
	files = files[:6]
	var bundles [][]byte
	var resources [][]byte
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
		json.Unmarshal(body, &bundle)
		for _, e := range bundle.Entry {
			resources = append(resources, e.Resource)
		}
	}
	parser, err := fhir.NewParser()
	if err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		for _, r := range resources {
			if _, ferr := parser.Parse(r); ferr != nil {
				b.Fatalf("parse: %v", ferr)
			}
		}
		parse := float64(len(resources)) / time.Since(t0).Seconds()

		primary, stop := startBenchTier(b, b.TempDir(), quiet)
		srv, err := fhirserver.New(primary.Sequencer(), primary.Store(), fhirserver.Options{BasePath: "/fhir", Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		for _, body := range bundles {
			req := httptest.NewRequest("POST", "/fhir", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/fhir+json")
			req.Header.Set("Prefer", "return=minimal")
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatalf("transaction: %d %.300s", rec.Code, rec.Body.String())
			}
		}
		ingest := float64(len(resources)) / time.Since(t0).Seconds()
		stop()
		b.ReportMetric(ingest/parse, "ingest/parse")
		fmt.Printf("fhir: %d Synthea bundles, %d resources: raw google/fhir/go parse %.0f res/s, transaction ingest on a mirrored primary %.0f res/s, ingest/parse ratio: %.2f\n",
			len(bundles), len(resources), parse, ingest, ingest/parse)
	}
}

// benchCluster is a cluster file of tier "records" with failover members
// a and b and the async members given as name=role (dr or reporting).
func benchCluster(b testing.TB, dir string, asyncs ...string) *cluster.File {
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
	for _, a := range asyncs {
		name, role, _ := strings.Cut(a, "=")
		y += fmt.Sprintf("      - {name: %s, role: %s, address: %q, http: %q, data_dir: %s, agent: {address: %q}}\n",
			name, role, port(), port(), filepath.Join(dir, name), port())
	}
	f, err := cluster.Parse([]byte(y))
	if err != nil {
		b.Fatal(err)
	}
	return f
}
