package peerbench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/services/ctl"
)

// tandemTier is a real tier on loopback: the arbiter and two failover
// members, each member with its agent, as separate `tandem` processes, with
// the default QoS and the dev CA. It is driven as the operator.
type tandemTier struct {
	t       testing.TB
	dir     string
	binary  string
	cluster string
	file    *cluster.File
	client  *ctl.Client
	procs   map[string]*exec.Cmd
}

var members = [2]string{"a", "b"}

func buildTandem(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "tandem-bench-peer")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/tandemhealth/tandem/cmd/tandem").CombinedOutput()
	if err != nil {
		t.Fatalf("build tandem: %v\n%s", err, out)
	}
	return bin
}

func startTandem(t testing.TB, dir, binary string, port func() int) *tandemTier {
	t.Helper()
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", port()) }
	tr := &tandemTier{t: t, dir: dir, binary: binary, cluster: filepath.Join(dir, "cluster.yaml"), procs: map[string]*exec.Cmd{}}
	// No qos line: the default (cluster.DefaultQoS) is what is measured.
	y := fmt.Sprintf("tls: {dev_ca_dir: %s}\narbiter: {address: %q, data_dir: %s}\ntiers:\n  - name: records\n    members:\n",
		filepath.Join(dir, "ca"), addr(), filepath.Join(dir, "arbiter"))
	for _, m := range members {
		y += fmt.Sprintf("      - {name: %s, role: failover, address: %q, http: %q, data_dir: %s, agent: {address: %q}}\n",
			m, addr(), addr(), filepath.Join(dir, m), addr())
	}
	if err := os.WriteFile(tr.cluster, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if tr.file, err = cluster.Load(tr.cluster); err != nil {
		t.Fatal(err)
	}
	creds, err := tr.file.Credentials("operator")
	if err != nil {
		t.Fatal(err)
	}
	// One kept-alive TLS connection per client, as the PostgreSQL side
	// keeps one connection per client.
	tr.client = &ctl.Client{File: tr.file, HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: creds.ClientConfig(""), MaxIdleConns: 256, MaxIdleConnsPerHost: 128, IdleConnTimeout: time.Minute,
	}}}
	if out, err := exec.Command(binary, "arbiter", "seed", "--cluster", tr.cluster, "--tier", "records", "--primary", "a", "--backup", "b").CombinedOutput(); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	t.Cleanup(tr.stop)
	for _, p := range []string{"arbiter", "a", "b", "agent-a", "agent-b"} {
		tr.start(p)
	}
	tr.waitFor("a primary and b an active backup", 60*time.Second, func() bool { _, ok := tr.healthy(); return ok })
	return tr
}

func (tr *tandemTier) start(name string) {
	tr.t.Helper()
	args := []string{"node", "--cluster", tr.cluster, "--member", name}
	if name == "arbiter" {
		args = []string{"arbiter", "--cluster", tr.cluster}
	} else if m, ok := strings.CutPrefix(name, "agent-"); ok {
		args = []string{"agent", "--cluster", tr.cluster, "--member", m}
	}
	logf, err := os.OpenFile(filepath.Join(tr.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		tr.t.Fatal(err)
	}
	c := exec.Command(tr.binary, args...)
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		tr.t.Fatal(err)
	}
	go func() { c.Wait(); logf.Close() }()
	tr.procs[name] = c
}

// killMember sends SIGKILL to the member's node and its agent — everything
// of that member, as the PostgreSQL side kills keeper and postmaster — and
// proves both are gone.
func (tr *tandemTier) killMember(m string) {
	tr.t.Helper()
	var pids []int
	for _, name := range []string{m, "agent-" + m} {
		c := tr.procs[name]
		pids = append(pids, c.Process.Pid)
		c.Process.Signal(syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for !gone(pid) {
			if time.Now().After(deadline) {
				tr.t.Fatalf("pid %d still alive after SIGKILL", pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// gone reports whether pid has exited: no such process, or a zombie not
// yet reaped by its Wait goroutine.
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err != nil || strings.Contains(string(b), ") Z ")
}

func (tr *tandemTier) restartMember(m string) {
	tr.start(m)
	tr.start("agent-" + m)
}

func (tr *tandemTier) memberStatus(m string) map[string]any {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var st map[string]any
	if err := tr.client.Do(ctx, "GET", m, "/mirror/status", nil, &st); err != nil {
		return nil
	}
	return st
}

// healthy reports whether one member is primary and the other a backup
// whose transfer is active (a write is acknowledged only once it has it),
// and returns the primary's name.
func (tr *tandemTier) healthy() (string, bool) {
	for i, m := range members {
		p, b := tr.memberStatus(m), tr.memberStatus(members[1-i])
		if p == nil || b == nil || p["status"] != "primary" || b["status"] != "backup" {
			continue
		}
		if x, ok := b["transfer"].(map[string]any); ok && x["status"] == "active" {
			return m, true
		}
	}
	return "", false
}

func (tr *tandemTier) waitFor(what string, limit time.Duration, cond func() bool) time.Duration {
	tr.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			tr.t.Fatalf("tandem: timed out after %s waiting for %s (a: %v, b: %v)", limit, what, tr.memberStatus("a")["status"], tr.memberStatus("b")["status"])
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func (tr *tandemTier) stop() {
	for name, c := range tr.procs {
		c.Process.Kill()
		if tr.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(tr.dir, name+".log"))
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) > 20 {
				lines = lines[len(lines)-20:]
			}
			tr.t.Logf("--- last lines of %s ---\n%s", name, strings.Join(lines, "\n"))
		}
	}
}
