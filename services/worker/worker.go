// Package worker is the Temporal worker of the administrators' workflows
// (tandem worker): it connects to the embedded Temporal server (tandem
// temporal) or to an external cluster, registers every workflow of
// workflows/ and the admin-API activities, and polls the task queue until
// its context ends.
//
// It holds no state: a worker that dies is replaced by another that replays
// each workflow's history, so it must never keep anything a workflow needs
// outside Temporal or the members.
package worker

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/services/opshttp"
	"github.com/tandemhealth/tandem/workflows"
	"github.com/tandemhealth/tandem/workflows/adddatabase"
	"github.com/tandemhealth/tandem/workflows/applychange"
	"github.com/tandemhealth/tandem/workflows/configsyncflow"
	"github.com/tandemhealth/tandem/workflows/mirrorsetup"
	"github.com/tandemhealth/tandem/workflows/plannedfailover"
	"github.com/tandemhealth/tandem/workflows/promoteasync"
	"github.com/tandemhealth/tandem/workflows/rebuildmember"
	"github.com/tandemhealth/tandem/workflows/recoverlostjournal"
)

// DefaultAddress is the embedded server's frontend.
const DefaultAddress = "127.0.0.1:7233"

// DefaultNamespace is the namespace the embedded server creates and the
// worker uses unless told otherwise.
const DefaultNamespace = "default"

// Options configure a worker.
type Options struct {
	Cluster   *cluster.File
	Address   string // Temporal frontend host:port; the cluster file's temporal.address, else DefaultAddress, when empty
	Namespace string // the cluster file's temporal.namespace, else "default", when empty
	Log       *slog.Logger
	// DialFor bounds how long the worker waits for Temporal to answer at
	// start (it may be starting beside it); 60s when 0.
	DialFor time.Duration
	// DriftCheck is the interval of every tier's DriftCheck schedule, which
	// the worker sets at start (keeping a paused one paused). 0: the worker
	// creates a missing schedule (configsyncflow.DefaultEvery) and leaves an
	// existing one as it is; negative: it leaves the schedules alone.
	DriftCheck time.Duration
	// HTTP, when set, serves /healthz and /metrics (the Temporal SDK's
	// metrics) on this address, TLS with the operator certificate the
	// worker acts with.
	HTTP string
}

// RegisterWorkflows registers every workflow of the administrators.
func RegisterWorkflows(w sdkworker.WorkflowRegistry) {
	mirrorsetup.Register(w)
	applychange.Register(w)
	configsyncflow.Register(w)
	plannedfailover.Register(w)
	promoteasync.Register(w)
	rebuildmember.Register(w)
	adddatabase.Register(w)
	recoverlostjournal.Register(w)
}

// Dial connects a client to Temporal, retrying until limit while the
// server starts.
func Dial(ctx context.Context, address, namespace string, log *slog.Logger, limit time.Duration) (client.Client, error) {
	opts, _ := ClientOptions(cluster.Temporal{}, address, namespace)
	return DialOptions(ctx, opts, log, limit)
}

// DialOptions is Dial with full client options (ClientOptions).
func DialOptions(ctx context.Context, opts client.Options, log *slog.Logger, limit time.Duration) (client.Client, error) {
	address, namespace := opts.HostPort, opts.Namespace
	if limit == 0 {
		limit = 60 * time.Second
	}
	if log != nil {
		opts.Logger = sdklog.NewStructuredLogger(log)
	}
	deadline := time.Now().Add(limit)
	for {
		c, err := client.DialContext(ctx, opts)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("temporal at %s (namespace %s) does not answer: %w; is `tandem temporal` running?", address, namespace, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Run polls the task queue until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	admin, err := workflows.NewAdmin(o.Cluster)
	if err != nil {
		return err
	}
	metrics := newSDKMetrics()
	copts, err := ClientOptions(o.Cluster.Temporal, o.Address, o.Namespace)
	if err != nil {
		return err
	}
	copts.MetricsHandler = metrics.Handler()
	c, err := DialOptions(ctx, copts, o.Log, o.DialFor)
	if err != nil {
		return err
	}
	defer c.Close()
	if o.HTTP != "" {
		creds, err := o.Cluster.Credentials("operator")
		if err != nil {
			return err
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(metrics)
		ops, err := opshttp.Listen(o.HTTP, "--http", creds.ServerConfig(), reg, func() opshttp.Health {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			detail := map[string]string{"temporal": copts.HostPort, "namespace": copts.Namespace, "task_queue": workflows.TaskQueue}
			if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
				return opshttp.Health{OK: false, Reason: "Temporal does not answer: " + err.Error(), Detail: detail}
			}
			return opshttp.Health{OK: true, Detail: detail}
		}, o.Log)
		if err != nil {
			return err
		}
		defer ops.Close()
		o.Log.Info("worker operations endpoint", "http", ops.Addr().String())
	}
	w := sdkworker.New(c, workflows.TaskQueue, sdkworker.Options{})
	RegisterWorkflows(w)
	w.RegisterActivity(admin)
	if err := w.Start(); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	if o.DriftCheck >= 0 {
		for _, t := range o.Cluster.Tiers {
			created, err := configsyncflow.EnsureDriftCheck(ctx, c, configsyncflow.Schedule{Tier: t.Name, Every: o.DriftCheck, CreateOnly: o.DriftCheck == 0})
			if err != nil {
				w.Stop()
				return fmt.Errorf("worker: drift check of tier %s: %w", t.Name, err)
			}
			if o.DriftCheck == 0 && !created {
				o.Log.Info("drift check schedule exists: left as it is", "tier", t.Name, "schedule", configsyncflow.ScheduleID(t.Name))
				continue
			}
			o.Log.Info("drift check scheduled", "tier", t.Name, "schedule", configsyncflow.ScheduleID(t.Name), "every", cmp.Or(o.DriftCheck, configsyncflow.DefaultEvery).String(), "created", created)
		}
	}
	o.Log.Info("worker polling", "task_queue", workflows.TaskQueue, "address", copts.HostPort, "namespace", copts.Namespace, "tls", copts.ConnectionOptions.TLS != nil)
	<-ctx.Done()
	w.Stop()
	o.Log.Info("worker stopped")
	return nil
}
