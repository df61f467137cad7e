// Command tandem-temporal is the embedded Temporal server (SQLite file
// under --data, frontend on loopback), started as `tandem temporal`. It is
// a binary of its own so the Temporal server stays out of the binary every
// other Tandem process runs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tandemhealth/tandem/workflows/temporalserver"
	"github.com/tandemhealth/tandem/workflows/temporalui"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runTemporal(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "tandem temporal: %v\n", err)
		os.Exit(1)
	}
}

func runTemporal(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("temporal", flag.ContinueOnError)
	dataDir := fs.String("data", "", "directory for the SQLite file (created on first start, reused after)")
	port := fs.Int("port", temporalserver.DefaultPort, "frontend gRPC port on 127.0.0.1")
	namespace := fs.String("namespace", temporalserver.DefaultNamespace, "namespace to create if absent (besides default)")
	level := fs.String("log-level", "warn", "the Temporal server's log level: debug, info, warn or error")
	metricsAddr := fs.String("metrics", "", "serve the server's Prometheus metrics at http://HOST:PORT/metrics (plain HTTP: keep it on loopback)")
	uiPort := fs.Int("ui-port", 0, "serve the Temporal Web UI on 127.0.0.1:PORT (plain HTTP, no login: for development); 0: no UI")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dataDir == "" {
		return errors.New("--data DIR is required")
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", "temporal")
	s, err := temporalserver.Start(temporalserver.Options{DataDir: *dataDir, Port: *port, Namespaces: []string{*namespace}, LogLevel: *level, MetricsAddress: *metricsAddr})
	if err != nil {
		log.Error("temporal failed to start", "err", err)
		return err
	}
	uiURL := ""
	if *uiPort != 0 {
		ui, err := temporalui.Start(*uiPort, s.Address(), *namespace)
		if err != nil {
			log.Error("temporal web UI failed to start", "err", err)
			s.Stop()
			return err
		}
		defer ui.Stop()
		uiURL = ui.URL()
	}
	log.Info("temporal up", "address", s.Address(), "ui", uiURL, "metrics", *metricsAddr, "data", *dataDir, "server_version", temporalserver.ServerVersion)
	<-ctx.Done()
	log.Info("stopping temporal")
	if err := s.Stop(); err != nil {
		return err
	}
	log.Info("temporal stopped")
	return nil
}
