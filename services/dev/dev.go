// Package dev starts the Tandem platform on one machine for development:
// every part runs as a child process of `tandem dev`, on loopback, with its
// data under one directory (by default .tandem/dev), and stops when the
// parent is interrupted.
//
// It grows with the platform; today it starts one data node. It must never
// leave a child running after it returns, and never reports a process as
// up before that process answered its health endpoint.
package dev

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Options configure a dev platform.
type Options struct {
	Dir      string    // data, configs, logs and endpoints.json
	Binary   string    // the tandem binary to start children from
	BasePort int       // first loopback port
	Out      io.Writer // where the human-readable summary goes
	Log      *slog.Logger
}

// Process is one child as listed in endpoints.json.
type Process struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	URL    string `json:"url"`
	PID    int    `json:"pid"`
	Config string `json:"config"`
	Log    string `json:"log"`
}

// Endpoints is the content of endpoints.json, rewritten at every start.
type Endpoints struct {
	StartedAt time.Time `json:"started_at"`
	Processes []Process `json:"processes"`
}

type child struct {
	Process
	cmd    *exec.Cmd
	exited chan error
}

// Run starts the platform, waits until ctx is cancelled (or a child dies),
// then stops every child it started.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	for _, d := range []string{dir, filepath.Join(dir, "logs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", o.BasePort)
	if err := portFree(addr); err != nil {
		return fmt.Errorf("dev: %s is in use (is another `make dev` running? stop it, or pick other ports with --port): %w", addr, err)
	}
	cfgPath := filepath.Join(dir, "node-a.yaml")
	if err := writeNodeConfig(cfgPath, "records", "a", addr, filepath.Join(dir, "node-a")); err != nil {
		return err
	}

	var children []*child
	defer func() { stopAll(children, o.Log) }()

	c, err := start(o.Binary, Process{Name: "node-a", Kind: "node", URL: "http://" + addr, Config: cfgPath,
		Log: filepath.Join(dir, "logs", "node-a.log")}, "node", "--config", cfgPath)
	if err != nil {
		return err
	}
	children = append(children, c)
	if err := waitHealthy(ctx, c, 60*time.Second); err != nil {
		return err
	}

	ep := Endpoints{StartedAt: time.Now().UTC()}
	for _, c := range children {
		ep.Processes = append(ep.Processes, c.Process)
	}
	if err := writeJSONAtomic(filepath.Join(dir, "endpoints.json"), ep); err != nil {
		return err
	}
	printSummary(o.Out, dir, ep)

	exited := make(chan string, len(children))
	for _, c := range children {
		go func(c *child) {
			<-c.exited
			exited <- c.Name
		}(c)
	}
	select {
	case <-ctx.Done():
		fmt.Fprintln(o.Out, "\nstopping…")
		return nil
	case name := <-exited:
		return fmt.Errorf("dev: %s exited unexpectedly; its log: %s", name, filepath.Join(dir, "logs", name+".log"))
	}
}

func start(binary string, p Process, args ...string) (*child, error) {
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Own process group: a Ctrl-C in the terminal reaches only `tandem dev`,
	// which then stops its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("dev: start %s: %w", p.Name, err)
	}
	p.PID = cmd.Process.Pid
	c := &child{Process: p, cmd: cmd, exited: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		logf.Close()
		c.exited <- err
		close(c.exited)
	}()
	return c, nil
}

func waitHealthy(ctx context.Context, c *child, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(c.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-c.exited:
			return fmt.Errorf("dev: %s exited during start (%v); last lines of %s:\n%s", c.Name, err, c.Log, tail(c.Log, 15))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dev: %s not healthy after %s; see %s", c.Name, limit, c.Log)
		}
	}
}

// stopAll sends SIGTERM to every child, in reverse start order, and kills
// any that has not stopped within 15 seconds.
func stopAll(children []*child, log *slog.Logger) {
	for i := len(children) - 1; i >= 0; i-- {
		c := children[i]
		if c.cmd.ProcessState != nil {
			continue
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
			log.Info("stopped", "process", c.Name, "pid", c.PID)
		case <-time.After(15 * time.Second):
			log.Warn("did not stop after SIGTERM, killing", "process", c.Name, "pid", c.PID)
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
}

func writeNodeConfig(path, tier, member, listen, dataDir string) error {
	cfg := fmt.Sprintf(`# Written by tandem dev; edit freely, it is kept across restarts.
tier: %s
member: %s
role: failover
listen: %s
data_dir: %s
`, tier, member, listen, dataDir)
	if _, err := os.Stat(path); err == nil {
		return nil // keep the user's edits and the data it points to
	}
	return os.WriteFile(path, []byte(cfg), 0o600)
}

func writeJSONAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func printSummary(w io.Writer, dir string, ep Endpoints) {
	fmt.Fprintf(w, "\nTandem dev platform is up (data in %s)\n\n", dir)
	fmt.Fprintf(w, "  %-8s %-6s %-28s %s\n", "PROCESS", "PID", "URL", "LOG")
	for _, p := range ep.Processes {
		fmt.Fprintf(w, "  %-8s %-6d %-28s %s\n", p.Name, p.PID, p.URL, p.Log)
	}
	node := ep.Processes[0].URL
	fmt.Fprintf(w, "\nTry:\n  curl -s %s/mirror/status\n  curl -s %s/healthz\n", node, node)
	fmt.Fprintf(w, "\nEvery process, pid and URL: %s\nPress Ctrl-C to stop everything.\n", filepath.Join(dir, "endpoints.json"))
}

func portFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
