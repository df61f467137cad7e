package main

import (
	"context"
	"errors"
	"flag"
	"os"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/services/worker"
	"github.com/tandemhealth/tandem/workflows/temporalserver"
)

func runTemporal(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("temporal", flag.ContinueOnError)
	dataDir := fs.String("data", "", "directory for the SQLite file (created on first start, reused after)")
	port := fs.Int("port", temporalserver.DefaultPort, "frontend gRPC port on 127.0.0.1")
	namespace := fs.String("namespace", temporalserver.DefaultNamespace, "namespace to create if absent (besides default)")
	level := fs.String("log-level", "warn", "the Temporal server's log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dataDir == "" {
		return errors.New("--data DIR is required")
	}
	log := newLogger(os.Stderr, "info").With("service", "temporal")
	s, err := temporalserver.Start(temporalserver.Options{DataDir: *dataDir, Port: *port, Namespaces: []string{*namespace}, LogLevel: *level})
	if err != nil {
		log.Error("temporal failed to start", "err", err)
		return err
	}
	log.Info("temporal up", "address", s.Address(), "data", *dataDir, "server_version", temporalserver.ServerVersion)
	<-ctx.Done()
	log.Info("stopping temporal")
	if err := s.Stop(); err != nil {
		return err
	}
	log.Info("temporal stopped")
	return nil
}

func runWorker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	clusterPath := fs.String("cluster", "", "cluster file (YAML): the tiers the workflows act on")
	address := fs.String("temporal-address", worker.DefaultAddress, "Temporal frontend host:port (the embedded server, or a Temporal cluster)")
	namespace := fs.String("namespace", temporalserver.DefaultNamespace, "Temporal namespace")
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
	log := newLogger(os.Stderr, *level).With("service", "worker")
	if err := worker.Run(ctx, worker.Options{Cluster: f, Address: *address, Namespace: *namespace, Log: log}); err != nil {
		log.Error("worker failed", "err", err)
		return err
	}
	return nil
}
