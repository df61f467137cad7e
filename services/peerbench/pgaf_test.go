package peerbench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgBin is where Debian's postgresql-15 puts pg_ctl and postgres.
const pgBin = "/usr/lib/postgresql/15/bin"

// pgaf is a pg_auto_failover formation on loopback: a monitor and two
// Postgres nodes, each a `pg_autoctl` process (keeper plus its postmaster)
// in its own process group, run as a non-root user.
type pgaf struct {
	t       *testing.T
	dir     string
	cred    *syscall.Credential // nil when the test is not root
	monPort int
	nodes   [2]pgNode
	mon     *exec.Cmd
}

type pgNode struct {
	name  string
	port  int
	pgdat string
	cmd   *exec.Cmd
}

func checkPGTools(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBin, "pg_ctl")); err != nil {
		t.Fatalf("PostgreSQL 15 is not installed (%v): run deploy/peer/install.sh (Debian package postgresql-15)", err)
	}
	if _, err := exec.LookPath("pg_autoctl"); err != nil {
		t.Fatalf("pg_autoctl is not installed (%v): run deploy/peer/install.sh (Debian packages postgresql-15-auto-failover, pg-auto-failover-cli)", err)
	}
}

// startPGAF creates the monitor, then the first node (it becomes primary),
// then the second (it becomes the synchronous secondary), with
// pg_auto_failover's defaults, and waits until the pair is healthy.
func startPGAF(t *testing.T, dir string, port func() int) *pgaf {
	t.Helper()
	checkPGTools(t)
	p := &pgaf{t: t, dir: dir, monPort: port()}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres user (Debian's postgresql-15 creates it): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"xdg/config", "xdg/data", "xdg/run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
		if p.cred != nil {
			for x := filepath.Join(dir, d); x != dir; x = filepath.Dir(x) {
				os.Chown(x, int(p.cred.Uid), int(p.cred.Gid))
			}
		}
	}
	t.Cleanup(p.stop)

	p.mon = p.spawn("monitor", "create", "monitor", "--pgdata", filepath.Join(dir, "monitor"), "--pgport", strconv.Itoa(p.monPort),
		"--hostname", "127.0.0.1", "--auth", "trust", "--ssl-self-signed", "--run")
	// Poll the port first: `pg_autoctl show state` run while `create
	// monitor` still makes its state directories can make create fail.
	p.waitFor("the monitor's port", 60*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.monPort), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	p.waitFor("the monitor to answer", 60*time.Second, func() bool {
		_, err := p.state()
		return err == nil
	})
	for i, name := range []string{"pg1", "pg2"} {
		n := &p.nodes[i]
		n.name, n.port, n.pgdat = name, port(), filepath.Join(dir, name)
		n.cmd = p.spawn(name, "create", "postgres", "--pgdata", n.pgdat, "--pgport", strconv.Itoa(n.port),
			"--hostname", "127.0.0.1", "--name", name, "--auth", "trust", "--ssl-self-signed",
			"--monitor", p.monitorURL(), "--run")
		if i == 0 { // alone, the first node is "single"; it turns primary when the second joins
			p.waitFor(name+" single", 120*time.Second, func() bool {
				st, err := p.state()
				return err == nil && st[name] == "single/single"
			})
			continue
		}
		p.waitFor("pg1 primary and pg2 secondary", 180*time.Second, func() bool { i, ok := p.healthy(); return ok && i == 0 })
	}
	return p
}

func (p *pgaf) monitorURL() string {
	return fmt.Sprintf("postgres://autoctl_node@127.0.0.1:%d/pg_auto_failover?sslmode=require", p.monPort)
}

func (p *pgaf) env() []string {
	return []string{
		"PATH=" + pgBin + ":/usr/bin:/bin",
		"HOME=" + p.dir,
		"XDG_CONFIG_HOME=" + filepath.Join(p.dir, "xdg/config"),
		"XDG_DATA_HOME=" + filepath.Join(p.dir, "xdg/data"),
		"XDG_RUNTIME_DIR=" + filepath.Join(p.dir, "xdg/run"),
		"PG_CONFIG=" + filepath.Join(pgBin, "pg_config"),
	}
}

// spawn starts `pg_autoctl ARGS` in its own process group, logging to
// DIR/NAME.log.
func (p *pgaf) spawn(name string, args ...string) *exec.Cmd {
	p.t.Helper()
	logf, err := os.OpenFile(filepath.Join(p.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	c := exec.Command("pg_autoctl", args...)
	c.Dir, c.Env, c.Stdout, c.Stderr = p.dir, p.env(), logf, logf
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred}
	if err := c.Start(); err != nil {
		p.t.Fatalf("pg_autoctl %s: %v", strings.Join(args, " "), err)
	}
	go func() { c.Wait(); logf.Close() }()
	return c
}

// state is the monitor's view: node name → "reported/assigned" state.
func (p *pgaf) state() (map[string]string, error) {
	c := exec.Command("pg_autoctl", "show", "state", "--pgdata", filepath.Join(p.dir, "monitor"), "--json")
	c.Dir, c.Env = p.dir, p.env()
	c.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	out, err := c.Output()
	if err != nil {
		return nil, err
	}
	var nodes []struct {
		Name     string `json:"nodename"`
		Current  string `json:"current_group_state"`
		Assigned string `json:"assigned_group_state"`
	}
	if err := json.Unmarshal(out, &nodes); err != nil {
		return nil, err
	}
	st := map[string]string{}
	for _, n := range nodes {
		st[n.Name] = n.Current + "/" + n.Assigned
	}
	return st, nil
}

// healthy reports whether one node is primary and the other secondary,
// each in the state the monitor assigned, and returns the primary's index.
func (p *pgaf) healthy() (int, bool) {
	st, err := p.state()
	if err != nil {
		return -1, false
	}
	for i := range p.nodes {
		if st[p.nodes[i].name] == "primary/primary" && st[p.nodes[1-i].name] == "secondary/secondary" {
			return i, true
		}
	}
	return -1, false
}

func (p *pgaf) waitFor(what string, limit time.Duration, cond func() bool) time.Duration {
	p.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			st, err := p.state()
			p.t.Fatalf("pg_auto_failover: timed out after %s waiting for %s (monitor: %v %v)", limit, what, st, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(start)
}

// connString reaches one node; connStringRW reaches whichever accepts writes.
func (p *pgaf) connString(i int) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=require", p.nodes[i].port)
}

func (p *pgaf) connStringRW() string {
	return fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres sslmode=require target_session_attrs=read-write connect_timeout=1",
		p.nodes[0].port, p.nodes[1].port)
}

// postmasterPID reads the first line of the node's postmaster.pid.
func (p *pgaf) postmasterPID(i int) int {
	b, err := os.ReadFile(filepath.Join(p.nodes[i].pgdat, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}

// killNode sends SIGKILL to node i's process group — the pg_autoctl
// supervisor, its keeper and postgres-control children, and the postmaster
// (which pg_autoctl starts in the same group) — and proves that the keeper
// and the postmaster are gone, so nothing restarts Postgres in place.
func (p *pgaf) killNode(i int) {
	p.t.Helper()
	n := &p.nodes[i]
	pm := p.postmasterPID(i)
	if pm == 0 {
		p.t.Fatalf("%s: no postmaster.pid", n.name)
	}
	if pgid, err := syscall.Getpgid(pm); err != nil || pgid != n.cmd.Process.Pid {
		p.t.Fatalf("%s: postmaster %d is not in the keeper's process group %d (%v)", n.name, pm, n.cmd.Process.Pid, err)
	}
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for !gone(pm) || !gone(n.cmd.Process.Pid) {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: keeper %d or postmaster %d still alive after SIGKILL", n.name, n.cmd.Process.Pid, pm)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// restartNode runs the node's keeper again; it rejoins as secondary.
func (p *pgaf) restartNode(i int) {
	p.t.Helper()
	n := &p.nodes[i]
	// Backends of the killed postmaster exit on their own; wait until none
	// holds the old shared memory, or the new postmaster refuses to start.
	time.Sleep(500 * time.Millisecond)
	n.cmd = p.spawn(n.name, "run", "--pgdata", n.pgdat)
}

func (p *pgaf) stop() {
	for i := range p.nodes {
		if c := p.nodes[i].cmd; c != nil {
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		}
	}
	if p.mon != nil {
		syscall.Kill(-p.mon.Process.Pid, syscall.SIGKILL)
	}
	// Orphaned backends notice their postmaster's death and exit.
	time.Sleep(time.Second)
	if p.t.Failed() {
		for _, name := range []string{"monitor", "pg1", "pg2"} {
			b, _ := os.ReadFile(filepath.Join(p.dir, name+".log"))
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) > 20 {
				lines = lines[len(lines)-20:]
			}
			p.t.Logf("--- last lines of %s ---\n%s", name, strings.Join(lines, "\n"))
		}
	}
}

// pgSettings reads the replication settings pg_auto_failover applied on
// the primary, for the report.
func pgSettings(ctx context.Context, conn *pgx.Conn) map[string]string {
	out := map[string]string{}
	for _, s := range []string{"server_version", "synchronous_standby_names", "synchronous_commit", "fsync", "wal_sync_method"} {
		var v string
		if err := conn.QueryRow(ctx, "SHOW "+s).Scan(&v); err != nil {
			v = "error: " + err.Error()
		}
		out[s] = v
	}
	var repl string
	if err := conn.QueryRow(ctx, "SELECT coalesce(string_agg(application_name || ' ' || state || ' ' || sync_state, ', '), 'none') FROM pg_stat_replication").Scan(&repl); err != nil {
		repl = "error: " + err.Error()
	}
	out["pg_stat_replication"] = repl
	return out
}
