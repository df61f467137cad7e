package arbiter

// Operations endpoint of the arbiter (cluster file arbiter.http): /healthz
// and /metrics. The loop publishes each tier's record after every Ready it
// has made durable; a scrape reads that copy, so /metrics never shows a
// record the arbiter has not saved. docs/OPERATIONS.md "Metrics" lists the
// series and what to alert on.

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/services/opshttp"
)

// tierView is one tier's durable record and rejected-input counts as of the
// loop's last Ready.
type tierView struct {
	members  [2]failover.ID
	state    failover.ArbiterState
	counters failover.Counters
}

type metrics struct {
	reg   *prometheus.Registry
	mu    sync.Mutex
	tiers map[string]tierView
	loop  *opshttp.Loop

	events  *prometheus.CounterVec
	persist prometheus.Histogram

	seeded, version, active, mode, primary, rejected *prometheus.Desc
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), tiers: map[string]tierView{},
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_arbiter_events_total",
			Help: "Events of the arbiter's cores by kind: decision (a record change it granted), refuse (a takeover refused), seeded, reject (bad input)."}, []string{"tier", "kind"}),
		persist: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tandem_arbiter_persist_seconds",
			Help:    "Time to make a record durable (write, fsync, rename) before any answer leaves.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		seeded:   prometheus.NewDesc("tandem_arbiter_seeded", "1 when the arbiter holds a record for the tier; 0: it grants nothing until seeded.", []string{"tier"}, nil),
		version:  prometheus.NewDesc("tandem_arbiter_record_epoch", "Epoch of the tier's durable record.", []string{"tier"}, nil),
		active:   prometheus.NewDesc("tandem_arbiter_record_backup_active", "1 when the record says the backup is active (its acks count toward commits).", []string{"tier"}, nil),
		mode:     prometheus.NewDesc("tandem_arbiter_record_mode", "1 for the tier's failover mode in the record, 0 for the other.", []string{"tier", "mode"}, nil),
		primary:  prometheus.NewDesc("tandem_arbiter_record_primary", "1 for the failover member the record names primary, 0 for the other.", []string{"tier", "member"}, nil),
		rejected: prometheus.NewDesc("tandem_arbiter_rejected_inputs_total", "Messages the arbiter refused without changing state, by reason.", []string{"tier", "reason"}, nil),
	}
	m.reg.MustRegister(m.events, m.persist, m)
	m.loop = opshttp.NewLoop()
	return m
}

// publish records a tier's state after the loop made it durable.
func (m *metrics) publish(tier string, members [2]failover.ID, core *failover.Arbiter, events []failover.Event) {
	m.mu.Lock()
	m.tiers[tier] = tierView{members: members, state: core.State(), counters: core.Counters()}
	m.mu.Unlock()
	for _, e := range events {
		m.events.WithLabelValues(tier, e.Kind).Inc()
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.seeded, m.version, m.active, m.mode, m.primary, m.rejected} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	c := func(v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(m.rejected, prometheus.CounterValue, float64(v), lv...)
	}
	for tier, v := range m.tiers {
		rec := v.state.Record
		g(m.seeded, opshttp.Flag(v.state.Seeded), tier)
		c(v.counters.UnknownType, tier, "unknown-type")
		c(v.counters.StaleEpoch, tier, "stale-epoch")
		c(v.counters.Forged, tier, "forged")
		c(v.counters.Unseeded, tier, "unseeded")
		if !v.state.Seeded {
			continue
		}
		g(m.version, float64(rec.Version.Epoch), tier)
		g(m.active, opshttp.Flag(rec.BackupActive), tier)
		for _, mode := range []failover.Mode{failover.ModeArbiter, failover.ModeAgent} {
			g(m.mode, opshttp.Flag(rec.Mode == mode), tier, mode.String())
		}
		for _, id := range v.members {
			g(m.primary, opshttp.Flag(rec.Primary == id), tier, string(id))
		}
	}
}

// health: the loop turned within the last 5 s (it ticks every
// cluster.TickInterval); the detail is each tier's durable record.
func (m *metrics) health() opshttp.Health {
	m.mu.Lock()
	detail := map[string]any{}
	for tier, v := range m.tiers {
		t := map[string]any{"seeded": v.state.Seeded}
		if v.state.Seeded {
			rec := v.state.Record
			t["primary"], t["backup"], t["epoch"], t["backup_active"], t["mode"] = rec.Primary, rec.Backup, rec.Version.Epoch, rec.BackupActive, rec.Mode.String()
		}
		detail[tier] = t
	}
	m.mu.Unlock()
	return m.loop.Health("the arbiter's loop", detail)
}
