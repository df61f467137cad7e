package peerbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// patient is the fixed small Patient both systems store at the FHIR level.
const patient = `{"resourceType":"Patient","active":true,"identifier":[{"system":"urn:tandem:bench","value":"peer-1"}],"name":[{"family":"Peer","given":["Bench"]}],"gender":"female","birthDate":"1970-01-01"}`

const methods = "Both systems on this machine's loopback and disk, default failover settings (Tandem QoS default, pg_auto_failover defaults). " +
	"Storage: Tandem PUT /admin/kv/fhir/KEY (1 KiB random value) on the primary over HTTPS with the operator certificate, one kept-alive connection per client; " +
	"PostgreSQL INSERT INTO kv(v bytea) of 1 KiB random bytes on the primary with autocommit, one pgx connection (sslmode=require) per client, commit waits for the synchronous standby. " +
	"FHIR: POST /fhir/Patient (Prefer: return=minimal) of a fixed Patient vs INSERT of the same JSON into a jsonb column (uuid id). " +
	"Each measurement is cut into 5 windows alternating between the systems (A B, B A, ...) so that other load on this shared 2-core machine falls on both alike; " +
	"one untimed warm-up operation per client; throughput = successful operations / wall time; latencies per operation. " +
	"Failover: SIGKILL of the primary's whole node (Tandem: node and agent processes; PostgreSQL: the pg_autoctl process group, i.e. keeper and postmaster, so the keeper cannot restart Postgres in place), " +
	"then a write retried every 20 ms (Tandem: PUT to each member in turn, 1 s timeout; PostgreSQL: new connection with target_session_attrs=read-write over both nodes, 2 s timeout) " +
	"until one is acknowledged; time from the kill. The killed node is restarted and the next trial starts from a healthy pair (Tandem: primary + active backup; PostgreSQL: primary + secondary as assigned by the monitor)."

// TestBenchPeer is `make bench-peer`: Tandem and PostgreSQL 15 with
// pg_auto_failover, measured in the same run on loopback.
func TestBenchPeer(t *testing.T) {
	if os.Getenv("TANDEM_BENCH_PEER") != "1" {
		t.Skip("set TANDEM_BENCH_PEER=1 (make bench-peer): starts PostgreSQL, pg_auto_failover and a Tandem tier")
	}
	trials := envInt(t, "TRIALS", 5)
	dur := 5 * time.Second
	if s := os.Getenv("DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("DURATION: %v", err)
		}
		dur = d
	}
	began := time.Now()
	checkPGTools(t)

	dir, err := os.MkdirTemp("", "tandem-bench-peer-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755) // the postgres user must reach its folder
	t.Cleanup(func() { os.RemoveAll(dir) })
	used := map[int]bool{}
	port := func() int { // a free loopback port, distinct from every other of this run
		for {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			p := ln.Addr().(*net.TCPAddr).Port
			ln.Close()
			if !used[p] {
				used[p] = true
				return p
			}
		}
	}
	for _, d := range []string{"tandem", "pg"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	bin := buildTandem(t, dir)
	tt := startTandem(t, filepath.Join(dir, "tandem"), bin, port)
	t.Logf("tandem tier up (arbiter, members a and b with agents, QoS default)")
	pg := startPGAF(t, filepath.Join(dir, "pg"), port)
	t.Logf("pg_auto_failover formation up (monitor, pg1 primary, pg2 secondary)")

	ctx := context.Background()
	setup, err := pgx.Connect(ctx, pg.connString(0))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE TABLE kv (id bigserial PRIMARY KEY, v bytea NOT NULL)",
		"CREATE TABLE patient (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), body jsonb NOT NULL)",
		"CREATE TABLE failover_probe (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())",
	} {
		if _, err := setup.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rep := report{
		Started:     began.UTC().Format(time.RFC3339),
		DurationSec: dur.Seconds(),
		Trials:      trials,
		PGSettings:  pgSettings(ctx, setup),
		Methods:     methods,
		LoadAvg:     []string{loadavg()},
	}
	setup.Close(ctx)
	t.Logf("postgres settings on the primary: %v", rep.PGSettings)
	primary, _ := tt.healthy()

	// (1) storage level.
	for _, clients := range []int{1, 16, 64} {
		ta, pa := compare(clients, dur, func(int) (func(context.Context, int) error, func(), error) {
			value := make([]byte, 1024)
			return func(ctx context.Context, i int) error {
				fillRandom(value)
				key := fmt.Sprintf("peer/%d/%d", rand.Uint64(), i)
				return tt.client.Do(ctx, "PUT", primary, "/admin/kv/fhir/"+key, value, nil)
			}, func() {}, nil
		}, func(int) (func(context.Context, int) error, func(), error) {
			conn, err := pgx.Connect(ctx, pg.connString(0))
			if err != nil {
				return nil, nil, err
			}
			value := make([]byte, 1024)
			return func(ctx context.Context, _ int) error {
					fillRandom(value)
					_, err := conn.Exec(ctx, "INSERT INTO kv (v) VALUES ($1)", value)
					return err
				}, func() {
					conn.Close(context.Background())
				}, nil
		})
		t.Logf("storage, %d clients: tandem %s | postgres %s", clients, ta, pa)
		rep.Storage = append(rep.Storage, pair{Clients: clients, Tandem: ta, PG: pa})
	}

	// (2) FHIR level, 16 clients.
	{
		base, _ := tt.client.MemberURL(primary)
		ta, pa := compare(16, dur, func(int) (func(context.Context, int) error, func(), error) {
			return func(ctx context.Context, _ int) error {
				req, _ := http.NewRequestWithContext(ctx, "POST", base+"/fhir/Patient", strings.NewReader(patient))
				req.Header.Set("Content-Type", "application/fhir+json")
				req.Header.Set("Prefer", "return=minimal")
				resp, err := tt.client.HTTP.Do(req)
				if err != nil {
					return err
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
				}
				return nil
			}, func() {}, nil
		}, func(int) (func(context.Context, int) error, func(), error) {
			conn, err := pgx.Connect(ctx, pg.connString(0))
			if err != nil {
				return nil, nil, err
			}
			return func(ctx context.Context, _ int) error {
					_, err := conn.Exec(ctx, "INSERT INTO patient (body) VALUES ($1::jsonb)", patient)
					return err
				}, func() {
					conn.Close(context.Background())
				}, nil
		})
		t.Logf("fhir, 16 clients: tandem %s | postgres %s", ta, pa)
		rep.FHIR = pair{Clients: 16, Tandem: ta, PG: pa}
	}

	// (3) failover: kill -9 of the primary's node → first acknowledged write.
	for i := range trials {
		p, ok := tt.healthy()
		if !ok {
			t.Fatalf("tandem trial %d: pair not healthy", i+1)
		}
		t0 := time.Now()
		tt.killMember(p)
		var to string
		d := firstWrite(t, "tandem", 120*time.Second, func(n int) error {
			for _, m := range members {
				c, cancel := context.WithTimeout(ctx, time.Second)
				err := tt.client.Do(c, "PUT", m, fmt.Sprintf("/admin/kv/fhir/failover/%d/%d", i, n), []byte("x"), nil)
				cancel()
				if err == nil {
					to = m
					return nil
				}
			}
			return fmt.Errorf("no member took the write")
		}, t0)
		tt.restartMember(p)
		rejoin := tt.waitFor("the old primary back as active backup", 180*time.Second, func() bool { _, ok := tt.healthy(); return ok })
		t.Logf("tandem trial %d: killed %s (node+agent), first write on %s after %s; healthy pair again %s later", i+1, p, to, d.Round(time.Millisecond), rejoin.Round(time.Millisecond))
		rep.Failover.Tandem = append(rep.Failover.Tandem, trial{Killed: p, WroteOn: to, Seconds: d.Seconds(), RejoinSeconds: rejoin.Seconds()})
	}
	for i := range trials {
		p, ok := pg.healthy()
		if !ok {
			t.Fatalf("postgres trial %d: pair not healthy", i+1)
		}
		t0 := time.Now()
		pg.killNode(p)
		var to string
		d := firstWrite(t, "postgres", 300*time.Second, pgProbe(pg, &to), t0)
		pg.restartNode(p)
		rejoin := pg.waitFor("the old primary back as secondary", 300*time.Second, func() bool { _, ok := pg.healthy(); return ok })
		t.Logf("postgres trial %d: killed %s (keeper+postmaster), first write after %s; healthy pair again %s later", i+1, pg.nodes[p].name, d.Round(time.Millisecond), rejoin.Round(time.Millisecond))
		rep.Failover.PG = append(rep.Failover.PG, trial{Killed: pg.nodes[p].name, WroteOn: to, Seconds: d.Seconds(), RejoinSeconds: rejoin.Seconds()})
	}
	// For the record, not a goal: kill -9 of the postmaster alone, the
	// keeper left running (it restarts Postgres in place on the same node).
	{
		p, ok := pg.healthy()
		if !ok {
			t.Fatal("postgres: pair not healthy before the postmaster-only kill")
		}
		pm := pg.postmasterPID(p)
		t0 := time.Now()
		syscall.Kill(pm, syscall.SIGKILL)
		var to string
		d := firstWrite(t, "postgres (postmaster only)", 300*time.Second, pgProbe(pg, &to), t0)
		rejoin := pg.waitFor("a healthy pair after the postmaster-only kill", 300*time.Second, func() bool { _, ok := pg.healthy(); return ok })
		t.Logf("postgres, postmaster only: killed %s's postmaster %d, keeper left running; first write on %s after %s; healthy pair %s later", pg.nodes[p].name, pm, to, d.Round(time.Millisecond), rejoin.Round(time.Millisecond))
		rep.Failover.PGPostmasterOnly = &trial{Killed: pg.nodes[p].name + " postmaster only", WroteOn: to, Seconds: d.Seconds(), RejoinSeconds: rejoin.Seconds()}
	}
	rep.Failover.TandemMedian = median(rep.Failover.Tandem)
	rep.Failover.PGMedian = median(rep.Failover.PG)

	rep.LoadAvg = append(rep.LoadAvg, loadavg())
	rep.Goals = goals(rep)
	rep.WallSeconds = time.Since(began).Seconds()
	var out bytes.Buffer
	printTable(&out, rep)
	fmt.Print(out.String())
	if d := os.Getenv("TANDEM_BENCH_PEER_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := json.MarshalIndent(rep, "", "  ")
		name := filepath.Join(d, began.UTC().Format("20060102T150405Z")+".json")
		if err := os.WriteFile(name, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("results written to %s\n", name)
	}
}

// pgProbe is one attempt at a write on whichever node accepts writes; on
// success it records which node took it.
func pgProbe(pg *pgaf, to *string) func(int) error {
	return func(int) error {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn, err := pgx.Connect(c, pg.connStringRW())
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		var port int
		if err := conn.QueryRow(c, "INSERT INTO failover_probe DEFAULT VALUES RETURNING inet_server_port()").Scan(&port); err != nil {
			return err
		}
		*to = fmt.Sprint(port)
		for _, n := range pg.nodes {
			if n.port == port {
				*to = n.name
			}
		}
		return nil
	}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

func fillRandom(b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := rand.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

// firstWrite retries write until it is acknowledged and returns the time
// since t0.
func firstWrite(t *testing.T, system string, limit time.Duration, write func(attempt int) error, t0 time.Time) time.Duration {
	t.Helper()
	var last error
	for n := 0; time.Since(t0) < limit; n++ {
		if last = write(n); last == nil {
			return time.Since(t0)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: no write acknowledged %s after the kill: %v", system, limit, last)
	return 0
}

// load is one side of one measurement.
type load struct {
	Clients int     `json:"clients"`
	Ops     int     `json:"ops"`
	Errors  int     `json:"errors"`
	PerSec  float64 `json:"per_sec"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	FirstEr string  `json:"first_error,omitempty"`
}

func (l load) String() string {
	s := fmt.Sprintf("%.0f/s p50 %.2fms p99 %.2fms (%d ops)", l.PerSec, l.P50ms, l.P99ms, l.Ops)
	if l.Errors > 0 {
		s += fmt.Sprintf(" %d errors, first: %s", l.Errors, l.FirstEr)
	}
	return s
}

// newClient opens one client (its connection) and returns its operation
// and how to close it.
type newClient func(i int) (op func(context.Context, int) error, done func(), err error)

// rounds is how many alternating windows each measurement is cut into, so
// that load from elsewhere on this shared machine falls on both systems
// alike rather than on whichever ran second.
const rounds = 5

// compare measures two systems at the same number of clients for d each,
// in alternating windows (A B, B A, A B, ...), and returns both loads.
func compare(clients int, d time.Duration, a, b newClient) (load, load) {
	ca, cb := openClients(clients, a), openClients(clients, b)
	defer ca.close()
	defer cb.close()
	for r := range rounds {
		first, second := ca, cb
		if r%2 == 1 {
			first, second = cb, ca
		}
		first.window(d / rounds)
		second.window(d / rounds)
	}
	return ca.result(), cb.result()
}

// clients is one system's set of open clients and what they measured.
type clients struct {
	ops     []func(context.Context, int) error
	dones   []func()
	res     load
	lat     []time.Duration
	elapsed time.Duration
	seq     int
}

// openClients opens n clients and runs one untimed warm-up operation on
// each, so connections are open before the clock starts on both sides.
func openClients(n int, nc newClient) *clients {
	c := &clients{res: load{Clients: n}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op, done, err := nc(i)
			if err == nil {
				if err = op(context.Background(), -1-i); err != nil {
					done()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				c.res.Errors++
				if c.res.FirstEr == "" {
					c.res.FirstEr = "setup: " + err.Error()
				}
				return
			}
			c.ops, c.dones = append(c.ops, op), append(c.dones, done)
		}()
	}
	wg.Wait()
	return c
}

func (c *clients) close() {
	for _, d := range c.dones {
		d()
	}
}

// window runs every client in a loop for d. Only successful operations
// count; errors are counted apart.
func (c *clients) window(d time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w, op := range c.ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			errs, first := 0, ""
			for i := 0; time.Now().Before(deadline); i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t0 := time.Now()
				err := op(ctx, c.seq+i*len(c.ops)+w)
				el := time.Since(t0)
				cancel()
				if err != nil {
					errs++
					if first == "" {
						first = err.Error()
					}
					continue
				}
				mine = append(mine, el)
			}
			mu.Lock()
			c.lat = append(c.lat, mine...)
			c.res.Errors += errs
			if c.res.FirstEr == "" {
				c.res.FirstEr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	c.elapsed += time.Since(start)
	c.seq += 1 << 30
}

func (c *clients) result() load {
	res := c.res
	lat := c.lat
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.Ops = len(lat)
	if len(lat) > 0 {
		res.PerSec = float64(len(lat)) / c.elapsed.Seconds()
		res.P50ms = ms(lat[len(lat)/2])
		res.P99ms = ms(lat[min(len(lat)-1, len(lat)*99/100)])
	}
	return res
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type pair struct {
	Clients int  `json:"clients"`
	Tandem  load `json:"tandem"`
	PG      load `json:"postgres"`
}

type trial struct {
	Killed        string  `json:"killed"`
	WroteOn       string  `json:"first_write_on"`
	Seconds       float64 `json:"seconds_to_first_write"`
	RejoinSeconds float64 `json:"seconds_to_healthy_pair_after"`
}

type goal struct {
	What   string  `json:"what"`
	Tandem float64 `json:"tandem"`
	PG     float64 `json:"postgres"`
	Target string  `json:"target"`
	Met    bool    `json:"met"`
}

type report struct {
	Started     string            `json:"started"`
	WallSeconds float64           `json:"wall_seconds"`
	DurationSec float64           `json:"seconds_per_measurement"`
	Trials      int               `json:"failover_trials"`
	PGSettings  map[string]string `json:"postgres_settings"`
	Storage     []pair            `json:"storage_1KiB_commits"`
	FHIR        pair              `json:"fhir_patient_creates"`
	Failover    struct {
		Tandem       []trial `json:"tandem"`
		PG           []trial `json:"postgres"`
		TandemMedian float64 `json:"tandem_median_seconds"`
		PGMedian     float64 `json:"postgres_median_seconds"`
		// PGPostmasterOnly is informational: the keeper restarts Postgres.
		PGPostmasterOnly *trial `json:"postgres_postmaster_only_kill,omitempty"`
	} `json:"failover_kill9_to_first_write"`
	// LoadAvg is /proc/loadavg after setup and at the end: the machine is
	// shared, and the figures move with what else runs.
	LoadAvg []string `json:"loadavg"`
	Goals   []goal   `json:"goals"`
	Methods string   `json:"methods"`
}

func median(ts []trial) float64 {
	if len(ts) == 0 {
		return 0
	}
	v := make([]float64, len(ts))
	for i, t := range ts {
		v[i] = t.Seconds
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func goals(r report) []goal {
	var g []goal
	g = append(g, goal{What: "failover median (s)", Tandem: r.Failover.TandemMedian, PG: r.Failover.PGMedian,
		Target: "≤ 1/5 of PG", Met: r.Failover.TandemMedian*5 <= r.Failover.PGMedian})
	for _, s := range r.Storage {
		switch s.Clients {
		case 1:
			g = append(g,
				goal{What: "storage 1 client p50 latency (ms)", Tandem: s.Tandem.P50ms, PG: s.PG.P50ms, Target: "≤ PG", Met: s.Tandem.P50ms <= s.PG.P50ms},
				goal{What: "storage 1 client p99 latency (ms)", Tandem: s.Tandem.P99ms, PG: s.PG.P99ms, Target: "≤ PG", Met: s.Tandem.P99ms <= s.PG.P99ms})
		default:
			g = append(g, goal{What: fmt.Sprintf("storage %d clients commits/s", s.Clients), Tandem: s.Tandem.PerSec, PG: s.PG.PerSec,
				Target: "≥ 3× PG", Met: s.Tandem.PerSec >= 3*s.PG.PerSec})
		}
	}
	g = append(g, goal{What: "FHIR creates/s, 16 clients", Tandem: r.FHIR.Tandem.PerSec, PG: r.FHIR.PG.PerSec,
		Target: "≥ PG", Met: r.FHIR.Tandem.PerSec >= r.FHIR.PG.PerSec})
	return g
}

func where(o *trial) string {
	if strings.HasPrefix(o.Killed, o.WroteOn+" ") {
		return "written on " + o.WroteOn + ": restarted in place"
	}
	return "written on " + o.WroteOn + ": failed over"
}

func printTable(w io.Writer, r report) {
	fmt.Fprintf(w, "\nTandem vs PostgreSQL %s + pg_auto_failover (sync standby: %q, synchronous_commit=%s), same run, loopback, %s per measurement\n\n",
		r.PGSettings["server_version"], r.PGSettings["synchronous_standby_names"], r.PGSettings["synchronous_commit"], time.Duration(r.DurationSec*float64(time.Second)))
	fmt.Fprintf(w, "%-34s %-30s %-30s\n", "", "Tandem (mirrored)", "PostgreSQL (sync standby)")
	row := func(name string, l, p load) {
		f := func(x load) string {
			s := fmt.Sprintf("%7.0f/s  p50 %6.2f  p99 %6.2f ms", x.PerSec, x.P50ms, x.P99ms)
			if x.Errors > 0 {
				s += fmt.Sprintf(" (%d err)", x.Errors)
			}
			return s
		}
		fmt.Fprintf(w, "%-34s %-30s   %-30s\n", name, f(l), f(p))
	}
	for _, s := range r.Storage {
		row(fmt.Sprintf("1 KiB commits, %d client(s)", s.Clients), s.Tandem, s.PG)
	}
	row("FHIR Patient creates, 16 clients", r.FHIR.Tandem, r.FHIR.PG)
	secs := func(ts []trial) string {
		var p []string
		for _, t := range ts {
			p = append(p, fmt.Sprintf("%.2f", t.Seconds))
		}
		return strings.Join(p, " ")
	}
	fmt.Fprintf(w, "%-34s %-30s   %-30s\n", fmt.Sprintf("kill -9 primary → 1st write, median of %d", r.Trials),
		fmt.Sprintf("%.2f s", r.Failover.TandemMedian), fmt.Sprintf("%.2f s", r.Failover.PGMedian))
	fmt.Fprintf(w, "%-34s %-30s   %-30s\n", "  trials (s)", secs(r.Failover.Tandem), secs(r.Failover.PG))
	if o := r.Failover.PGPostmasterOnly; o != nil {
		fmt.Fprintf(w, "%-34s %-30s   %-30s\n", "kill -9 PG postmaster only (info)", "-", fmt.Sprintf("%.2f s (%s)", o.Seconds, where(o)))
	}
	fmt.Fprintf(w, "\n%-36s %12s %12s  %-12s %s\n", "goal", "Tandem", "PostgreSQL", "target", "verdict")
	for _, g := range r.Goals {
		v := "NOT MET"
		if g.Met {
			v = "MET"
		}
		fmt.Fprintf(w, "%-36s %12.2f %12.2f  %-12s %s\n", g.What, g.Tandem, g.PG, g.Target, v)
	}
	fmt.Fprintf(w, "\nwall time of the run: %.0f s; /proc/loadavg after setup %q, at the end %q (shared machine)\n", r.WallSeconds, r.LoadAvg[0], r.LoadAvg[len(r.LoadAvg)-1])
}
