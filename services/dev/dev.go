// Package dev starts the Tandem platform on one machine for development:
// every part runs as a child process of `tandem dev`, on loopback, with its
// data under one directory (by default .tandem/dev), and stops when the
// parent is interrupted.
//
// It grows with the platform; today it starts a tier: the arbiter, a
// failover pair of data nodes with an agent beside each, and a DR async;
// then the embedded Temporal server and a workflow worker, an embedded
// Redis-protocol server (in this process, on loopback) and a gateway in
// front of the tier (serving the Mirror Monitor at /monitor/), and runs the
// MirrorSetup workflow on the tier; it prints the FHIR base URL, a monitor
// link that signs in with the dev admin token, and curl lines with the dev
// clinician token, and with --load-sample loads the Synthea bundles through
// the gateway (sample.go). It must never
// leave a child running after it returns, and never reports a process as
// up before that process answered its health endpoint.
package dev

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tandemhealth/tandem/fhir/access"
	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/transport"
	"github.com/tandemhealth/tandem/services/arbiter"
	"github.com/tandemhealth/tandem/services/ctl"
	"github.com/tandemhealth/tandem/services/gateway"
	"github.com/tandemhealth/tandem/services/node"
	"github.com/tandemhealth/tandem/services/worker"
	"github.com/tandemhealth/tandem/workflows"
	"github.com/tandemhealth/tandem/workflows/mirrorsetup"
)

// Options configure a dev platform.
type Options struct {
	Dir      string    // data, configs, logs and endpoints.json
	Binary   string    // the tandem binary to start children from
	BasePort int       // first loopback port
	Out      io.Writer // where the human-readable summary goes
	Log      *slog.Logger
	// LoadSample loads the Synthea bundles of SampleDir (FindSampleDir)
	// through the gateway once the platform is up.
	LoadSample bool
	SampleDir  string
	// Tiers is how many tiers to start behind the one gateway (0 = 1):
	// "records" (members a, b, c) and then "records2" (a2, b2, c2), ….
	// It applies when the cluster file is first written; a second start
	// with another count is refused rather than silently ignored.
	Tiers int
}

// MaxTiers bounds --tiers: each tier takes its own block of 100 ports.
const MaxTiers = 9

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
	FHIR      string    `json:"fhir"` // the gateway's FHIR base URL: what apps use (the first tier)
	// TierFHIR is each tier's FHIR base URL through the gateway
	// (/fhir/{tier}); the first tier is also served at FHIR.
	TierFHIR map[string]string `json:"tier_fhir"`
	Monitor  string            `json:"monitor"`  // the Mirror Monitor page (admin token)
	Cluster  string            `json:"cluster"`  // the cluster file every process started from
	Temporal string            `json:"temporal"` // the embedded Temporal server's frontend (host:port)
	// TemporalUI is the Temporal Web UI on the embedded server (loopback,
	// no login: development only).
	TemporalUI string    `json:"temporal_ui"`
	CA         string    `json:"ca"` // the development CA's certificate
	Processes  []Process `json:"processes"`
	// Tokens are bearer tokens for /fhir (and, for admin, the admin API),
	// minted at every start with the dev signing key: clinician,
	// patient-app (for Patient/DevPatient) and admin. They last DevTokenTTL.
	Tokens map[string]string `json:"tokens"`
}

// DevPatient is the Patient id in the dev patient-app token's context.
const DevPatient = "dev-patient"

// DevTokenTTL is the lifetime of the tokens in endpoints.json.
const DevTokenTTL = 24 * time.Hour

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
	sampleDir := ""
	if o.LoadSample { // before starting anything: a missing sample is a usage error
		if sampleDir, err = FindSampleDir(o.SampleDir); err != nil {
			return err
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "logs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
	}
	if o.Tiers < 0 || o.Tiers > MaxTiers {
		return fmt.Errorf("dev: --tiers %d: between 1 and %d", o.Tiers, MaxTiers)
	}
	clusterPath := filepath.Join(dir, "cluster.yaml")
	if err := writeClusterFile(clusterPath, dir, o.BasePort, max(o.Tiers, 1)); err != nil {
		return err
	}
	if err := ensureAccess(clusterPath, dir); err != nil {
		return err
	}
	f, err := cluster.Load(clusterPath)
	if err != nil {
		return fmt.Errorf("dev: %w (fix or delete it to get a fresh one)", err)
	}
	redisAddr, gatewayAddr := fmt.Sprintf("127.0.0.1:%d", o.BasePort+79), fmt.Sprintf("127.0.0.1:%d", o.BasePort+80)
	for _, addr := range append(listenAddrs(f), redisAddr, gatewayAddr) {
		if err := portFree(addr); err != nil {
			return fmt.Errorf("dev: %s is in use (is another `make dev` running? stop it, or pick other ports with --port): %w", addr, err)
		}
	}
	// One CA for every child, created before any of them starts.
	if _, err := transport.EnsureDevCA(f.TLS.DevCADir); err != nil {
		return err
	}
	if o.Tiers > 0 && len(f.Tiers) != o.Tiers {
		return fmt.Errorf("dev: %s has %d tier(s), not the %d asked for with --tiers: stop, then delete %s (and the data in it) or pick another --dir", clusterPath, len(f.Tiers), o.Tiers, dir)
	}
	for _, t := range f.Tiers {
		if err := arbiter.Seed(f.Arbiter.DataDir, t.Name, failover.ID(t.Members[0].Name), failover.ID(t.Members[1].Name)); err != nil &&
			!errors.Is(err, arbiter.ErrAlreadySeeded) {
			return err
		}
	}
	creds, err := f.Credentials("operator")
	if err != nil {
		return err
	}
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: creds.ClientConfig("")}}

	var children []*child
	defer func() { stopAll(children, o.Log) }()
	launch := func(name, kind, url string, healthy func() bool, args ...string) error {
		c, err := start(o.Binary, Process{Name: name, Kind: kind, URL: url, Config: clusterPath,
			Log: filepath.Join(dir, "logs", name+".log")}, args...)
		if err != nil {
			return err
		}
		children = append(children, c)
		return waitHealthy(ctx, c, 60*time.Second, healthy)
	}
	// A process is up when every address it was given listens: its
	// operations endpoint too (an arbiter or agent serving the mirror but
	// not yet /metrics is not what the summary promises).
	both := func(up func() bool, opsAddr string) func() bool {
		if opsAddr == "" {
			return up
		}
		return func() bool { return up() && tcpUp(opsAddr)() }
	}
	if err := launch("arbiter", "arbiter", "tls://"+f.Arbiter.Address, both(tlsUp(f.Arbiter.Address, creds), f.Arbiter.HTTP), "arbiter", "--cluster", clusterPath); err != nil {
		return err
	}
	for _, m := range allMembers(f) {
		url := "https://" + m.HTTP
		if err := launch("node-"+m.Name, "node", url, httpUp(probe, url+"/healthz"), "node", "--cluster", clusterPath, "--member", m.Name); err != nil {
			return err
		}
		if m.Role == cluster.RoleFailover {
			if err := launch("agent-"+m.Name, "agent", "tls://"+m.Agent.Address, both(tlsUp(m.Agent.Address, creds), m.Agent.HTTP), "agent", "--cluster", clusterPath, "--member", m.Name); err != nil {
				return err
			}
		}
	}

	tokens, err := devTokens(f.Access)
	if err != nil {
		return err
	}
	// Temporal in its own child (a worker crash does not take it down),
	// then the worker.
	temporalAddr := fmt.Sprintf("127.0.0.1:%d", o.BasePort+TemporalPortOffset)
	uiAddr := fmt.Sprintf("127.0.0.1:%d", o.BasePort+TemporalUIPortOffset)
	temporalMetrics := fmt.Sprintf("127.0.0.1:%d", o.BasePort+TemporalMetricsPortOffset)
	workerHTTP := fmt.Sprintf("127.0.0.1:%d", o.BasePort+WorkerHTTPPortOffset)
	for _, a := range []string{temporalAddr, uiAddr, temporalMetrics, workerHTTP} {
		if err := portFree(a); err != nil {
			return fmt.Errorf("dev: %s (Temporal) is in use: %w", a, err)
		}
	}
	temporalUp := func() bool { return tcpUp(temporalAddr)() && tcpUp(uiAddr)() }
	if err := launch("temporal", "temporal", "grpc://"+temporalAddr, temporalUp,
		"temporal", "--data", filepath.Join(dir, "temporal"), "--port", fmt.Sprint(o.BasePort+TemporalPortOffset),
		"--ui-port", fmt.Sprint(o.BasePort+TemporalUIPortOffset), "--metrics", temporalMetrics); err != nil {
		return err
	}
	if err := launch("worker", "worker", "", tcpUp(workerHTTP),
		"worker", "--cluster", clusterPath, "--temporal-address", temporalAddr, "--http", workerHTTP); err != nil {
		return err
	}

	// Redis for the gateway: embedded, in this process, on loopback.
	rds, err := gateway.StartEmbeddedRedis(redisAddr)
	if err != nil {
		return err
	}
	defer rds.Close()
	gwURL := "https://" + gatewayAddr
	if err := launch("gateway", "gateway", gwURL, httpUp(probe, gwURL+"/readyz"),
		"gateway", "--cluster", clusterPath, "--listen", gatewayAddr, "--redis", rds.URL(), "--id", "gateway", "--default-tier", f.Tiers[0].Name,
		"--temporal-address", temporalAddr); err != nil {
		return err
	}

	ep := Endpoints{StartedAt: time.Now().UTC(), FHIR: gwURL + "/fhir", Monitor: gwURL + gateway.MonitorPrefix, Cluster: clusterPath, Temporal: temporalAddr, TemporalUI: "http://" + uiAddr, CA: filepath.Join(f.TLS.DevCADir, "ca.pem"), Tokens: tokens, TierFHIR: map[string]string{}}
	for _, t := range f.Tiers {
		ep.TierFHIR[t.Name] = gwURL + "/fhir/" + t.Name
	}
	ep.Processes = append(ep.Processes, Process{Name: "redis", Kind: "redis", URL: rds.URL(), PID: os.Getpid()})
	for _, c := range children {
		ep.Processes = append(ep.Processes, c.Process)
	}
	if err := writeJSONAtomic(filepath.Join(dir, "endpoints.json"), ep); err != nil {
		return err
	}

	printSummary(o.Out, dir, ep)
	for _, t := range f.Tiers {
		runMirrorSetup(ctx, o.Out, temporalAddr, t.Name)
	}
	if o.LoadSample {
		apps := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: creds.Roots, MinVersion: tls.VersionTLS12}}}
		if err := LoadSample(ctx, o.Out, apps, ep.FHIR, tokens["clinician"], sampleDir); err != nil {
			fmt.Fprintf(o.Out, "%v\nThe platform stays up.\n", err)
		}
	}
	fmt.Fprintf(o.Out, "\nReady. Press Ctrl-C to stop everything.\n")

	exited := make(chan *child, len(children))
	for _, c := range children {
		go func(c *child) {
			<-c.exited
			exited <- c
		}(c)
	}
	// A child that dies is reported, not restarted: a failover is the point
	// of a mirror, and it should be seen. The tier carries on without it.
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(o.Out, "\nstopping…")
			return nil
		case c := <-exited:
			fmt.Fprintf(o.Out, "\n%s (pid %d) exited; the rest of the tier carries on. Its log: %s\nRestart it in another terminal with:\n  %s %s\n",
				c.Name, c.PID, c.Log, o.Binary, strings.Join(c.cmd.Args[1:], " "))
		}
	}
}

// writeClusterFile writes the dev cluster file on first start (a second
// start keeps it, and the data it points to): tiers tiers, each a failover
// pair with an agent per member and a DR async member, and one arbiter, on
// loopback ports from base. The first tier is "records" with members a, b,
// c on base+0..22 (as before tiers; their agents' /metrics on base+3..5,
// the arbiter's on base+98); tier i (from 2) is "records<i>" with
// members a<i>, b<i>, c<i> on base+100·(i−1)+0..22. Member names are
// certificate identities, unique in the file.
func writeClusterFile(path, dir string, base, tiers int) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	addr := func(off int) string { return fmt.Sprintf("127.0.0.1:%d", base+off) }
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by tandem dev on first start; kept across restarts.
qos: 2s
tls:
  dev_ca_dir: %[1]s/ca
arbiter:
  address: %[2]s
  http: %[3]s
  data_dir: %[1]s/arbiter
tiers:
`, dir, addr(99), addr(98))
	for i := range tiers {
		name, suffix, off := "records", "", 0
		if i > 0 {
			suffix = fmt.Sprint(i + 1)
			name, off = name+suffix, 100*i
		}
		fmt.Fprintf(&b, "  - name: %s\n    members:\n", name)
		for k, m := range []string{"a", "b", "c"} {
			role := "failover"
			if m == "c" {
				role = "dr"
			}
			fmt.Fprintf(&b, "      - {name: %s, role: %s, http: %q, address: %q, data_dir: %s/%s, agent: {address: %q, http: %q}}\n",
				m+suffix, role, addr(off+k), addr(off+10+k), dir, m+suffix, addr(off+20+k), addr(off+3+k))
		}
	}
	fmt.Fprintf(&b, `access:
  keys:
    - {kid: %[2]s, alg: HS256, path: %[1]s/keys/%[2]s.key}
  signing_key: %[2]s
`, dir, devKeyID)
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// allMembers lists every tier's members, tier by tier.
func allMembers(f *cluster.File) []cluster.Member {
	var out []cluster.Member
	for _, t := range f.Tiers {
		out = append(out, t.Members...)
	}
	return out
}

// devKeyID is the kid of the signing key tandem dev generates.
const devKeyID = "dev-1"

// ensureAccess generates the dev signing key on first start (an HS256
// secret, 0600) and adds the access section naming it to a cluster file
// written before access existed.
func ensureAccess(clusterPath, dir string) error {
	keyPath := filepath.Join(dir, "keys", devKeyID+".key")
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return err
		}
		if err := os.WriteFile(keyPath, []byte(hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
	}
	data, err := os.ReadFile(clusterPath)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if f, err := cluster.Parse(data); err != nil || len(f.Access.Keys) > 0 {
		return nil // a bad file is reported by the load that follows
	}
	data = append(data, fmt.Sprintf("access:\n  keys:\n    - {kid: %s, alg: HS256, path: %s}\n  signing_key: %s\n", devKeyID, keyPath, devKeyID)...)
	return os.WriteFile(clusterPath, data, 0o600)
}

// devTokens mints the endpoints.json tokens.
func devTokens(a cluster.Access) (map[string]string, error) {
	_, keys, err := node.LoadAccess(a)
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	k, err := access.Signer(keys, "")
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	out := map[string]string{}
	for _, role := range []string{"clinician", "patient-app", "admin"} {
		patient := ""
		if role == "patient-app" {
			patient = DevPatient
		}
		g, err := access.RoleGrant(role, "dev-"+role, patient, DevTokenTTL)
		if err != nil {
			return nil, err
		}
		g.Issuer, g.Audience = a.Issuer, a.Audience
		if out[role], err = access.Mint(k, g); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func listenAddrs(f *cluster.File) []string {
	out := []string{f.Arbiter.Address}
	for _, t := range f.Tiers {
		for _, m := range t.Members {
			out = append(out, m.HTTP, m.Address, m.Agent.Address)
		}
	}
	return out
}

// tlsUp completes a mutual-TLS handshake with the operator's certificate.
func tlsUp(addr string, creds transport.Credentials) func() bool {
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := transport.Dial(ctx, addr, creds.ClientConfig(""))
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
}

func httpUp(client *http.Client, url string) func() bool {
	return func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
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

func waitHealthy(ctx context.Context, c *child, limit time.Duration, healthy func() bool) error {
	deadline := time.Now().Add(limit)
	for !healthy() {
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
	return nil
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
	fmt.Fprintf(w, "  %-9s %-7s %-30s %s\n", "PROCESS", "PID", "ADDRESS", "LOG")
	for _, p := range ep.Processes {
		fmt.Fprintf(w, "  %-9s %-7d %-30s %s\n", p.Name, p.PID, p.URL, p.Log)
	}
	var node string
	for _, p := range ep.Processes {
		if p.Kind == "node" && node == "" {
			node = p.URL
		}
	}
	fmt.Fprintf(w, "\nFHIR base URL (the gateway; apps use this): %s\n", ep.FHIR)
	if len(ep.TierFHIR) > 1 {
		fmt.Fprintf(w, "Each tier through the same gateway:\n")
		for _, name := range slices.Sorted(maps.Keys(ep.TierFHIR)) {
			fmt.Fprintf(w, "  %-10s %s\n", name, ep.TierFHIR[name])
		}
	}
	fmt.Fprintf(w, "\nMirror Monitor (this link signs you in as admin; the certificate is from the dev CA %s):\n  %s#token=%s\n", ep.CA, ep.Monitor, ep.Tokens["admin"])
	fmt.Fprintf(w, "\nTry (a clinician's token; every token is in %s):\n", filepath.Join(dir, "endpoints.json"))
	fmt.Fprintf(w, "  export TANDEM_CA=%s TOKEN=%s\n", ep.CA, ep.Tokens["clinician"])
	fmt.Fprintf(w, "  curl --cacert $TANDEM_CA -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/fhir+json' -X PUT %s/Patient/tour-1 \\\n", ep.FHIR)
	fmt.Fprintf(w, "       -d '{\"resourceType\":\"Patient\",\"id\":\"tour-1\",\"name\":[{\"family\":\"Tour\",\"given\":[\"Ada\"]}]}'\n")
	fmt.Fprintf(w, "  curl --cacert $TANDEM_CA -H \"Authorization: Bearer $TOKEN\" %s/Patient/tour-1\n", ep.FHIR)
	fmt.Fprintf(w, "  curl --cacert $TANDEM_CA %s/metadata\n", ep.FHIR)
	fmt.Fprintf(w, "  ./bin/tandem ctl status --cluster %s\n", ep.Cluster)
	fmt.Fprintf(w, "  curl --cacert $TANDEM_CA %s/mirror/status\n", node)
	fmt.Fprintf(w, "  ./bin/tandem ctl workflow status records --temporal-address %s\n", ep.Temporal)
	fmt.Fprintf(w, "\nTemporal (embedded): %s, namespace default; Web UI (workflows, schedules): %s\n", ep.Temporal, ep.TemporalUI)
	fmt.Fprintf(w, "\nEvery process, pid and address: %s\n", filepath.Join(dir, "endpoints.json"))
}

// Offsets from the base port: the embedded Temporal frontend (base+90),
// its Web UI (base+97) and Prometheus metrics (plain HTTP, base+96), and
// the worker's /healthz and /metrics (base+95).
const (
	TemporalPortOffset        = 90
	TemporalUIPortOffset      = 97
	TemporalMetricsPortOffset = 96
	WorkerHTTPPortOffset      = 95
)

func tcpUp(addr string) func() bool {
	return func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
}

// runMirrorSetup runs the MirrorSetup workflow on the dev tier and says how
// it went; the platform stays up either way.
func runMirrorSetup(ctx context.Context, out io.Writer, address, tier string) {
	c, err := worker.Dial(ctx, address, "default", nil, 60*time.Second)
	if err != nil {
		fmt.Fprintf(out, "\nMirrorSetup not run: %v\n", err)
		return
	}
	defer c.Close()
	t0 := time.Now()
	run, err := ctl.StartWorkflow(ctx, c, "mirror-setup", mirrorsetup.Input{Tier: tier})
	if err != nil {
		fmt.Fprintf(out, "\nMirrorSetup not started: %v\n", err)
		return
	}
	fmt.Fprintf(out, "\nMirrorSetup on tier %s (run %s)…\n", tier, run)
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var res mirrorsetup.Result
	if err := c.GetWorkflow(wctx, workflows.TopologyWorkflowID(tier), run).Get(wctx, &res); err != nil {
		fmt.Fprintf(out, "MirrorSetup failed after %s: %v\nSee: ./bin/tandem ctl workflow status %s --temporal-address %s\n", time.Since(t0).Round(time.Millisecond), err, tier, address)
		return
	}
	fmt.Fprintf(out, "MirrorSetup passed in %s: %s primary, %s backup, epoch %d, %d endpoints, %d databases with equal content\n",
		time.Since(t0).Round(time.Millisecond), res.Primary, res.Backup, res.Epoch, res.Endpoints, len(res.Hashes))
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
