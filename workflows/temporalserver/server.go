// Package temporalserver runs Tandem's embedded Temporal server: the
// go.temporal.io/server services (frontend, history, matching, worker) in
// one process, on loopback, persisted in one SQLite file under a data
// directory, with the namespaces Tandem uses created before the server
// starts. It is what `tandem temporal` runs (DESIGN §7: its own child
// process, so a worker crash does not take it down).
//
// It must never listen on anything but loopback (the embedded server has no
// authorization), and never phone home (the version check is off). Temporal
// state is run-state only: decisions and approvals are recorded in the
// mirrored system database by the workflows themselves, because Temporal
// history expires.
//
// The SQLite file is created with its schema on first start and reused as
// is afterwards; it carries no schema version, so a file written by another
// Temporal server version is refused (the version is kept beside it).
package temporalserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	"go.temporal.io/server/common/metrics"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ServerVersion is the go.temporal.io/server version linked in; the SQLite
// file is only reused by the same version.
const ServerVersion = "v1.32.1"

// DefaultPort is the frontend's gRPC port when none is given.
const DefaultPort = 7233

// DefaultNamespace is the namespace Tandem's workers and clients use.
const DefaultNamespace = "default"

// DBFile is the SQLite file's name under the data directory.
const DBFile = "temporal.db"

// Options configure the embedded server.
type Options struct {
	DataDir    string   // holds temporal.db and temporal.version
	Port       int      // frontend gRPC port on 127.0.0.1; DefaultPort when 0
	Namespaces []string // created if absent; DefaultNamespace always
	// Retention of closed workflows' histories; 7 days when 0.
	Retention time.Duration
	LogLevel  string // debug, info, warn, error; warn when empty
	LogFile   string // server log output; stderr when empty
	// MetricsAddress, when set, serves the server's Prometheus metrics at
	// http://MetricsAddress/metrics (plain HTTP: keep it on loopback).
	MetricsAddress string
}

// Server is a running embedded Temporal server.
type Server struct {
	srv     temporal.Server
	address string
}

// Address is the frontend's host:port.
func (s *Server) Address() string { return s.address }

// Stop shuts the services down.
func (s *Server) Stop() error { return s.srv.Stop() }

// Start creates (first time) or reuses the SQLite file and starts the
// server; it returns once the services are up.
func Start(o Options) (*Server, error) {
	if o.DataDir == "" {
		return nil, errors.New("temporalserver: a data directory is required")
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.Retention == 0 {
		o.Retention = 7 * 24 * time.Hour
	}
	if o.LogLevel == "" {
		o.LogLevel = "warn"
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("temporalserver: %w", err)
	}
	const host = "127.0.0.1"
	frontend := net.JoinHostPort(host, strconv.Itoa(o.Port))
	if err := portFree(frontend); err != nil {
		return nil, fmt.Errorf("temporalserver: frontend port %s is in use (another `tandem temporal`?): %w", frontend, err)
	}
	ports, err := freePorts(host, 3)
	if err != nil {
		return nil, err
	}

	dbPath := filepath.Join(o.DataDir, DBFile)
	sqlConf := &config.SQL{
		PluginName:        sqliteplugin.PluginName,
		DatabaseName:      dbPath,
		ConnectAttributes: map[string]string{"mode": "rwc"},
	}
	if err := ensureSchema(o.DataDir, dbPath, sqlConf); err != nil {
		return nil, err
	}
	namespaces := append([]string{DefaultNamespace}, o.Namespaces...)
	var nsConfs []*sqliteschema.NamespaceConfig
	seen := map[string]bool{}
	for _, ns := range namespaces {
		if seen[ns] {
			continue
		}
		seen[ns] = true
		c, err := sqliteschema.NewNamespaceConfig("active", ns, false, nil)
		if err != nil {
			return nil, fmt.Errorf("temporalserver: namespace %s: %w", ns, err)
		}
		c.Detail.Config.Retention = durationpb.New(o.Retention)
		nsConfs = append(nsConfs, c)
	}
	if err := sqliteschema.CreateNamespaces(sqlConf, nsConfs...); err != nil {
		return nil, fmt.Errorf("temporalserver: namespaces: %w", err)
	}

	svc := func(port int) config.Service {
		return config.Service{RPC: config.RPC{GRPCPort: port, BindOnIP: host}}
	}
	conf := &config.Config{
		Global: config.Global{Membership: config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: host}},
		Persistence: config.Persistence{
			DefaultStore:     sqliteplugin.PluginName,
			VisibilityStore:  sqliteplugin.PluginName,
			NumHistoryShards: 1,
			DataStores:       map[string]config.DataStore{sqliteplugin.PluginName: {SQL: sqlConf}},
		},
		ClusterMetadata: &cluster.Config{
			FailoverVersionIncrement: 10,
			MasterClusterName:        "active",
			CurrentClusterName:       "active",
			ClusterInformation: map[string]cluster.ClusterInformation{
				"active": {Enabled: true, InitialFailoverVersion: 1, RPCAddress: frontend},
			},
		},
		DCRedirectionPolicy: config.DCRedirectionPolicy{Policy: "noop"},
		Services: map[string]config.Service{
			"frontend": svc(o.Port),
			"history":  svc(ports[0]),
			"matching": svc(ports[1]),
			"worker":   svc(ports[2]),
		},
		Archival: config.Archival{
			History:    config.HistoryArchival{State: "disabled"},
			Visibility: config.VisibilityArchival{State: "disabled"},
		},
		NamespaceDefaults: config.NamespaceDefaults{Archival: config.ArchivalNamespaceDefaults{
			History:    config.HistoryArchivalNamespaceDefaults{State: "disabled"},
			Visibility: config.VisibilityArchivalNamespaceDefaults{State: "disabled"},
		}},
		PublicClient: config.PublicClient{HostPort: frontend},
	}
	if o.MetricsAddress != "" {
		conf.Global.Metrics = &metrics.Config{Prometheus: &metrics.PrometheusConfig{Framework: metrics.FrameworkOpentelemetry, ListenAddress: o.MetricsAddress, HandlerPath: "/metrics"}}
	}
	logger := log.NewZapLogger(log.BuildZapLogger(log.Config{Level: o.LogLevel, OutputFile: o.LogFile, Format: "json"}))
	authorizer, err := authorization.GetAuthorizerFromConfig(&conf.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("temporalserver: %w", err)
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&conf.Global.Authorization, logger)
	if err != nil {
		return nil, fmt.Errorf("temporalserver: %w", err)
	}
	hostPort := func(p int) static.Hosts { return static.SingleLocalHost(net.JoinHostPort(host, strconv.Itoa(p))) }
	srv, err := temporal.NewServer(
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(map[primitives.ServiceName]static.Hosts{
			primitives.FrontendService: hostPort(o.Port),
			primitives.HistoryService:  hostPort(ports[0]),
			primitives.MatchingService: hostPort(ports[1]),
			primitives.WorkerService:   hostPort(ports[2]),
		}),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			dynamicconfig.EnableServerVersionCheck.Key():                     false,
			dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key():      true,
			dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("temporalserver: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("temporalserver: start: %w", err)
	}
	return &Server{srv: srv, address: frontend}, nil
}

// ensureSchema creates the SQLite file with Temporal's schema on first
// start, and refuses a file written by another server version.
func ensureSchema(dir, dbPath string, sqlConf *config.SQL) error {
	versionPath := filepath.Join(dir, "temporal.version")
	if _, err := os.Stat(dbPath); err == nil {
		v, err := os.ReadFile(versionPath)
		if err == nil && strings.TrimSpace(string(v)) != ServerVersion {
			return fmt.Errorf("temporalserver: %s was written by Temporal server %s, this binary has %s; SQLite files are not migrated: move it aside to start empty (workflow records live in the system database)",
				dbPath, strings.TrimSpace(string(v)), ServerVersion)
		}
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("temporalserver: %w", err)
	}
	if err := sqliteschema.SetupSchema(sqlConf); err != nil {
		os.Remove(dbPath)
		return fmt.Errorf("temporalserver: schema: %w", err)
	}
	return os.WriteFile(versionPath, []byte(ServerVersion+"\n"), 0o600)
}

func portFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// freePorts returns n distinct free loopback ports for the internal
// services (history, matching, worker).
func freePorts(host string, n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("temporalserver: no free port: %w", err)
		}
		lns = append(lns, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
