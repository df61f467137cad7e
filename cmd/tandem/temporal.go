package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/services/worker"
)

// runTemporal runs the embedded Temporal server, which lives in its own
// binary (tandem-temporal, built beside this one) so that the Temporal
// server's 200 MB stays out of the binary every other process runs. It
// replaces this process (exec), so the pid a supervisor or a test started
// is the server's: a SIGTERM stops it cleanly and a SIGKILL leaves no
// orphaned server behind (a child process did, holding its port and files).
func runTemporal(_ context.Context, args []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	path := filepath.Join(filepath.Dir(self), "tandem-temporal")
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("the embedded Temporal server is a separate binary, %s, not found: build it with `make build` (go build -o bin/tandem-temporal ./cmd/tandem-temporal)", path)
	}
	return fmt.Errorf("exec %s: %w", path, syscall.Exec(path, append([]string{path}, args...), os.Environ()))
}

func runWorker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	clusterPath := fs.String("cluster", "", "cluster file (YAML): the tiers the workflows act on")
	address := fs.String("temporal-address", "", "Temporal frontend host:port (default: the cluster file's temporal.address, else the embedded server "+worker.DefaultAddress+"; TLS and API key from the cluster file)")
	namespace := fs.String("namespace", "", "Temporal namespace (default: the cluster file's temporal.namespace, else "+worker.DefaultNamespace+")")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	driftCheck := fs.Duration("drift-check", 60*time.Second, "interval of every tier's DriftCheck schedule (ConfigSync): without this flag a missing schedule is created (60s) and an existing one left as it is; with it, set at start; 0 leaves the schedules alone")
	httpAddr := fs.String("http", "", "serve /healthz and /metrics (the Temporal SDK's metrics) on host:port, TLS with the operator certificate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *clusterPath == "" {
		return errors.New("--cluster FILE is required")
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "drift-check" })
	switch {
	case !set:
		*driftCheck = 0 // create if missing, else leave as the operator set it
	case *driftCheck == 0:
		*driftCheck = -1
	}
	f, err := cluster.Load(*clusterPath)
	if err != nil {
		return err
	}
	log := newLogger(os.Stderr, *level).With("service", "worker")
	if err := worker.Run(ctx, worker.Options{Cluster: f, Address: *address, Namespace: *namespace, Log: log, DriftCheck: *driftCheck, HTTP: *httpAddr}); err != nil {
		log.Error("worker failed", "err", err)
		return err
	}
	return nil
}
