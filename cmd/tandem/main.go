// Command tandem is Tandem's single binary: every process of the platform
// is one of its subcommands. main parses flags, loads configuration,
// handles signals and wires services together — nothing else.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"golang.org/x/term"

	"github.com/tandemhealth/tandem/fhir/access"
	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/services/agent"
	"github.com/tandemhealth/tandem/services/arbiter"
	"github.com/tandemhealth/tandem/services/backupd"
	"github.com/tandemhealth/tandem/services/ctl"
	"github.com/tandemhealth/tandem/services/dev"
	"github.com/tandemhealth/tandem/services/gateway"
	"github.com/tandemhealth/tandem/services/login"
	"github.com/tandemhealth/tandem/services/monitor"
	"github.com/tandemhealth/tandem/services/node"
	"github.com/tandemhealth/tandem/services/worker"
)

const usage = `tandem — high-availability FHIR records on mirrored data nodes

Usage:
  tandem node --config FILE     run a standalone data node
  tandem node --cluster FILE --member NAME
                                run a data node as a member of its tier
  tandem arbiter --cluster FILE run the arbiter of every tier in the cluster file
  tandem arbiter seed --cluster FILE --tier T --primary A --backup B
                                write the genesis record of a new tier (refuses over an existing one)
  tandem agent --cluster FILE --member NAME
                                run the agent beside a failover member (liveness, fencing, journal hand-over)
  tandem gateway --cluster FILE [--listen ADDR] [--redis URL]
                                one HTTPS address for FHIR clients: routes /fhir to each tier's primary;
                                the Mirror Monitor at /monitor/ (admin tokens)
  tandem ctl COMMAND --cluster FILE
                                the administrator's CLI (tandem ctl help)
  tandem backup --cluster FILE --member NAME --to DIR [--once] [--snapshot]
                                snapshot a member's store and archive its committed journal continuously
  tandem restore --from DIR --data NEWDIR [--to-lsn N | --to-time RFC3339] [--new-tier] [--json]
                                rebuild a data directory as it was at an archived LSN or time;
                                --new-tier: as the first history (LSN 1, epoch 1) of a new tier's first member
  tandem ctl backup list|verify|prune --from DIR
                                what a backup holds; check every checksum; drop old snapshots
  tandem temporal --data DIR [--port N]
                                run the embedded Temporal server (SQLite under DIR, frontend on 127.0.0.1:N)
  tandem worker --cluster FILE [--temporal-address HOST:PORT] [--namespace NS]
                                run the administrators' workflows (mirror setup, planned failover, DR promotion)
  tandem dev [--dir DIR] [--port N] [--load-sample [--sample-dir DIR]]
                                run the whole platform on this machine (what make dev runs)
  tandem token --cluster FILE --role clinician|patient-app|admin [--patient ID] [--ttl 1h]
                                mint a bearer token for /fhir and the admin API
                                (--config FILE for a standalone node's keys)
  tandem login --gateway URL --user NAME [--tier T] [--cacert FILE] [--json]
                                log in with a config-sync user's password (read from the terminal or stdin)
                                and print the bearer token
  tandem help                   this text

Run 'tandem COMMAND -h' for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	startPprof(os.Args[1])
	var err error
	switch os.Args[1] {
	case "node":
		err = runNode(ctx, os.Args[2:])
	case "dev":
		err = runDev(ctx, os.Args[2:])
	case "arbiter":
		err = runArbiter(ctx, os.Args[2:])
	case "ctl":
		if len(os.Args) > 2 && os.Args[2] == "backup" {
			err = backupd.Ctl(ctx, os.Args[3:], os.Stdout)
		} else {
			err = ctl.Main(ctx, os.Args[2:], os.Stdout)
		}
	case "backup":
		err = backupd.Backup(ctx, os.Args[2:], os.Stdout, newLogger(os.Stderr, "info").With("service", "backup"))
	case "restore":
		err = backupd.Restore(ctx, os.Args[2:], os.Stdout)
	case "agent":
		err = runAgent(ctx, os.Args[2:])
	case "temporal":
		err = runTemporal(ctx, os.Args[2:])
	case "worker":
		err = runWorker(ctx, os.Args[2:])
	case "gateway":
		err = runGateway(ctx, os.Args[2:])
	case "token":
		err = runToken(os.Args[2:], os.Stdout)
	case "login":
		err = runLogin(ctx, os.Args[2:], os.Stdin, os.Stdout)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "tandem: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "tandem %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func runNode(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "standalone node configuration file (YAML)")
	clusterPath := fs.String("cluster", "", "cluster file (YAML): run as a mirror member")
	member := fs.String("member", "", "with --cluster: this node's member name")
	level := fs.String("log-level", "info", "with --cluster: debug, info, warn or error")
	policyDir := fs.String("policy-dir", "", "with --cluster: directory of .rego files replacing the embedded failover-gate policy (a broken policy refuses every failover)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *clusterPath != "" {
		f, err := cluster.Load(*clusterPath)
		if err != nil {
			return err
		}
		tier := ""
		for _, t := range f.Tiers {
			if _, ok := t.Member(*member); ok {
				tier = t.Name
			}
		}
		if tier == "" {
			return fmt.Errorf("--member %q is not a member of any tier in %s", *member, *clusterPath)
		}
		log := newLogger(os.Stderr, *level).With("service", "node", "tier", tier, "member", *member)
		exitIfShutdownHangs(ctx, log)
		for {
			n, err := node.OpenMember(f, tier, *member, log)
			if err != nil {
				log.Error("node failed to start", "err", err)
				return err
			}
			_ = n.UsePolicyDir(*policyDir) // logged; a broken policy fails closed
			err = n.Run(ctx)
			if !errors.Is(err, node.ErrRestart) || ctx.Err() != nil {
				return err
			}
			// a re-seed was fetched and verified: open again to install it
			log.Warn("node reopening to install a re-seed")
		}
	}
	if *cfgPath == "" {
		return errors.New("--config FILE (standalone) or --cluster FILE --member NAME is required (see deploy/examples/)")
	}
	cfg, err := node.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(os.Stderr, cfg.LogLevel).With("service", "node", "tier", cfg.Tier, "member", cfg.Member)
	n, err := node.Open(cfg, log)
	if err != nil {
		log.Error("node failed to start", "err", err)
		return err
	}
	return n.Run(ctx)
}

func runArbiter(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "seed" {
		fs := flag.NewFlagSet("arbiter seed", flag.ContinueOnError)
		clusterPath := fs.String("cluster", "", "cluster file (YAML)")
		tier := fs.String("tier", "", "tier to seed")
		primary := fs.String("primary", "", "member that starts as primary")
		backup := fs.String("backup", "", "member that starts as backup")
		existsOK := fs.Bool("exists-ok", false, "succeed without writing when the tier is already seeded (for container start scripts)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		f, err := cluster.Load(*clusterPath)
		if err != nil {
			return err
		}
		t, ok := f.Tier(*tier)
		if !ok {
			return fmt.Errorf("--tier %q is not in %s", *tier, *clusterPath)
		}
		for _, m := range []string{*primary, *backup} {
			if mm, ok := t.Member(m); !ok || mm.Role != cluster.RoleFailover {
				return fmt.Errorf("%q is not a failover member of tier %q", m, *tier)
			}
		}
		if *primary == *backup {
			return errors.New("--primary and --backup must differ")
		}
		if err := arbiter.Seed(f.Arbiter.DataDir, *tier, failover.ID(*primary), failover.ID(*backup)); err != nil {
			if *existsOK && errors.Is(err, arbiter.ErrAlreadySeeded) {
				fmt.Printf("tier %s is already seeded; nothing written\n", *tier)
				return nil
			}
			return err
		}
		fmt.Printf("tier %s seeded: epoch 1, primary %s, backup %s\n", *tier, *primary, *backup)
		return nil
	}
	fs := flag.NewFlagSet("arbiter", flag.ContinueOnError)
	clusterPath := fs.String("cluster", "", "cluster file (YAML)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *clusterPath == "" {
		return errors.New("--cluster FILE is required (see deploy/examples/cluster-dev.yaml)")
	}
	f, err := cluster.Load(*clusterPath)
	if err != nil {
		return err
	}
	log := newLogger(os.Stderr, *level).With("service", "arbiter")
	s, err := arbiter.New(f, log)
	if err != nil {
		log.Error("arbiter failed to start", "err", err)
		return err
	}
	return s.Run(ctx)
}

func runAgent(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	clusterPath := fs.String("cluster", "", "cluster file (YAML)")
	member := fs.String("member", "", "the failover member on this host")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *clusterPath == "" || *member == "" {
		return errors.New("--cluster FILE and --member NAME are required")
	}
	f, err := cluster.Load(*clusterPath)
	if err != nil {
		return err
	}
	log := newLogger(os.Stderr, *level).With("service", "agent", "member", *member)
	s, err := agent.New(f, *member, log)
	if err != nil {
		log.Error("agent failed to start", "err", err)
		return err
	}
	return s.Run(ctx)
}

func runGateway(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	clusterPath := fs.String("cluster", "", "cluster file (YAML)")
	cfg := gateway.Config{}
	fs.StringVar(&cfg.Listen, "listen", gateway.DefaultListen, "address FHIR clients connect to")
	fs.BoolVar(&cfg.PlainHTTP, "plain-http", false, "serve plain HTTP (only behind a TLS-terminating load balancer)")
	fs.StringVar(&cfg.DefaultTier, "default-tier", "", "tier served at /fhir/... without a tier segment (default: the only tier)")
	fs.StringVar(&cfg.RedisURL, "redis", "", "redis://host:port[/db], redis-sentinel://host:port?master_name=M, redis-cluster://host:port (empty: no Redis)")
	fs.BoolVar(&cfg.NoPubSub, "no-pubsub", false, "do not publish or subscribe topology events (learn topology by polling only)")
	fs.DurationVar(&cfg.PollInterval, "poll", gateway.DefaultPollInterval, "how often every member's /mirror/status is read")
	fs.DurationVar(&cfg.FastPollInterval, "fast-poll", gateway.DefaultFastPollInterval, "poll interval while a tier has no primary")
	fs.DurationVar(&cfg.HoldTimeout, "hold", gateway.DefaultHoldTimeout, "how long a request is held waiting for a primary during a failover")
	fs.IntVar(&cfg.RateLimit, "rate-limit", 0, "requests per second per client, counted in Redis (0: no limit)")
	fs.StringVar(&cfg.ID, "id", "", "this gateway's name in events and logs (default from --listen)")
	fs.StringVar(&cfg.TemporalAddress, "temporal-address", "", "Temporal frontend host:port whose running workflows the Mirror Monitor lists (default: the cluster file's temporal.address; neither: not connected)")
	fs.StringVar(&cfg.TemporalNamespace, "temporal-namespace", "", "Temporal namespace of --temporal-address (default: the cluster file's temporal.namespace, else "+worker.DefaultNamespace+")")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *clusterPath == "" {
		return errors.New("--cluster FILE is required")
	}
	f, err := cluster.Load(*clusterPath)
	if err != nil {
		return err
	}
	cfg.Cluster = f
	cfg.Log = newLogger(os.Stderr, *level).With("service", "gateway")
	// Tokens are checked here before forwarding, and again by the member.
	verifier, _, err := node.LoadAccess(f.Access)
	if err != nil {
		return fmt.Errorf("field access: %w", err)
	}
	if verifier == nil {
		return errors.New("the cluster file names no access keys (field access.keys): the gateway serves clinical data only to bearer tokens")
	}
	tokens := gateway.Tokens{Verifier: verifier}
	cfg.Authenticator = tokens
	// The Mirror Monitor reads every member's /mirror/status (open to any
	// TLS client that trusts the cluster CA) with the gateway's own
	// certificate: no operator credentials on the gateway's host. The page
	// itself is for admin tokens only; the gate log (admin API) is read
	// with the requesting administrator's token over the same connection.
	src, err := ctl.NewClientAs(f, gateway.Identity)
	if err != nil {
		return err
	}
	mopts := monitor.Options{AdminHTTP: src.HTTP}
	if cfg.TemporalAddress != "" || f.Temporal.Address != "" {
		// Lazy: the gateway serves while Temporal is down; the page shows
		// the error until it answers.
		topts, err := worker.ClientOptions(f.Temporal, cfg.TemporalAddress, cfg.TemporalNamespace)
		if err != nil {
			return err
		}
		topts.Logger = sdklog.NewStructuredLogger(cfg.Log.With("component", "temporal-client"))
		tc, err := client.NewLazyClient(topts)
		if err != nil {
			return fmt.Errorf("--temporal-address: %w", err)
		}
		defer tc.Close()
		mopts.Workflows = monitor.TemporalWorkflows{Client: tc}
	}
	cfg.Monitor = monitor.NewWithOptions(src, tokens.Admin, mopts)
	g, err := gateway.New(cfg)
	if err != nil {
		cfg.Log.Error("gateway failed to start", "err", err)
		return err
	}
	return g.Run(ctx)
}

func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	dir := fs.String("dir", ".tandem/dev", "directory for data, configs, logs and endpoints.json")
	port := fs.Int("port", 7401, "first loopback port to use")
	loadSample := fs.Bool("load-sample", false, "load the Synthea bundles through the gateway once up (from --sample-dir)")
	sampleDir := fs.String("sample-dir", "", "directory of FHIR transaction bundles for --load-sample (default: ../shared/testdata/synthea or testdata/synthea)")
	tiers := fs.Int("tiers", 0, fmt.Sprintf("tiers to start behind the one gateway on the first start, 1 to %d (records, records2, …; default 1)", dev.MaxTiers))
	if err := fs.Parse(args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	return dev.Run(ctx, dev.Options{Dir: *dir, Binary: self, BasePort: *port, Out: os.Stdout, LoadSample: *loadSample, SampleDir: *sampleDir, Tiers: *tiers,
		Log: newLogger(os.Stderr, "info").With("service", "dev")})
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// runToken mints a bearer token with a signing key named in the cluster
// file's (or a standalone node config's) access section and prints it.
func runToken(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	clusterPath := fs.String("cluster", "", "cluster file (YAML) whose access.keys sign the token")
	cfgPath := fs.String("config", "", "standalone node configuration file (YAML) whose access.keys sign the token")
	role := fs.String("role", "", "clinician, patient-app or admin")
	patient := fs.String("patient", "", "with --role patient-app: the Patient id of the launch context")
	subject := fs.String("subject", "", "the token's sub claim (default: the role)")
	kid := fs.String("kid", "", "the signing key (default: the first that can sign)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var sec cluster.Access
	switch {
	case *clusterPath != "" && *cfgPath == "":
		f, err := cluster.Load(*clusterPath)
		if err != nil {
			return err
		}
		sec = f.Access
	case *cfgPath != "" && *clusterPath == "":
		c, err := node.LoadConfig(*cfgPath)
		if err != nil {
			return err
		}
		sec = c.Access
	default:
		return errors.New("--cluster FILE or --config FILE is required")
	}
	_, keys, err := node.LoadAccess(sec)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return errors.New("the file's access section names no keys (field access.keys)")
	}
	k, err := access.Signer(keys, *kid)
	if err != nil {
		return err
	}
	g, err := access.RoleGrant(*role, *subject, *patient, *ttl)
	if err != nil {
		return err
	}
	g.Issuer, g.Audience = sec.Issuer, sec.Audience
	tok, err := access.Mint(k, g)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}

// runLogin logs a user in at a gateway's (or a member's) token endpoint
// and prints the token, or the whole answer with --json. The password is
// read from the terminal without echo, or from the first line of stdin.
func runLogin(ctx context.Context, args []string, in *os.File, out io.Writer) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	base := fs.String("gateway", "", "the gateway's (or a member's) base URL, e.g. https://127.0.0.1:7481")
	tier := fs.String("tier", "", "the tier to log in to (default: the gateway's default tier)")
	user := fs.String("user", "", "the user name")
	cacert := fs.String("cacert", os.Getenv("TANDEM_CA"), "PEM CA certificate to trust (default $TANDEM_CA, else the system's)")
	asJSON := fs.Bool("json", false, "print the whole token answer as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *base == "" || *user == "" {
		return errors.New("--gateway URL and --user NAME are required")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if *cacert != "" {
		pem, err := os.ReadFile(*cacert)
		if err != nil {
			return fmt.Errorf("--cacert: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--cacert: %s holds no PEM certificate", *cacert)
		}
	}
	var password []byte
	if term.IsTerminal(int(in.Fd())) {
		fmt.Fprintf(os.Stderr, "password for %s: ", *user)
		p, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return err
		}
		password = p
	} else {
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && line == "" {
			return errors.New("no password on stdin")
		}
		password = []byte(strings.TrimRight(line, "\r\n"))
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	tok, err := login.PasswordLogin(ctx, c, *base, *tier, *user, string(password))
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(tok)
	}
	_, err = fmt.Fprintln(out, tok.AccessToken)
	return err
}

// shutdownLimit bounds a member's clean stop after SIGTERM.
const shutdownLimit = 30 * time.Second

// exitIfShutdownHangs exits the process when a stop asked through ctx has
// not finished within shutdownLimit — a member whose store failed under it
// (its directory gone, a dead disk) could otherwise hang in its shutdown
// forever, alive to its supervisor. Exiting without closing is safe: the
// journal is durable and the store recovers from it at the next start,
// exactly as after a kill -9.
func exitIfShutdownHangs(ctx context.Context, log *slog.Logger) {
	go func() {
		<-ctx.Done()
		time.Sleep(shutdownLimit)
		log.Error("shutdown did not finish: exiting without closing the store (the journal is durable; the store recovers from it at the next start)", "limit", shutdownLimit.String())
		os.Exit(1)
	}()
}
