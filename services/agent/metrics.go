package agent

// Operations endpoint of an agent (cluster file agent.http of its member):
// /healthz and /metrics. The loop publishes what it measured on each turn;
// a scrape reads that copy. docs/OPERATIONS.md "Metrics" lists the series
// and what to alert on.

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/services/opshttp"
)

type metrics struct {
	reg  *prometheus.Registry
	loop *opshttp.Loop

	mu       sync.Mutex
	checked  bool // the member has been checked at least once
	up       bool
	fenced   bool
	state    failover.AgentState
	counters failover.Counters

	events        *prometheus.CounterVec
	fenceFailures prometheus.Counter
	fenceSeconds  prometheus.Histogram

	upDesc, fencedDesc, fencesDesc, rejectedDesc *prometheus.Desc
}

func newMetrics(tier, member string) *metrics {
	labels := prometheus.Labels{"tier": tier, "member": member}
	m := &metrics{reg: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_agent_events_total", ConstLabels: labels,
			Help: "Events of the agent's core by kind: fence (a fence started for the partner), reject (bad input)."}, []string{"kind"}),
		fenceFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_agent_fence_failures_total", ConstLabels: labels,
			Help: "Fence attempts that failed (the member could not be killed, or its journal or hard state could not be read); the partner asks again."}),
		fenceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tandem_agent_fence_seconds", ConstLabels: labels,
			Help:    "Time from a fence request to the fence mark durable and the journal tail read.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		upDesc:       prometheus.NewDesc("tandem_agent_member_up", "1 when the member answered its /healthz at the agent's last check.", nil, labels),
		fencedDesc:   prometheus.NewDesc("tandem_agent_member_fenced", "1 when the member's data directory carries a fence mark (it cannot start as primary without rejoining).", nil, labels),
		fencesDesc:   prometheus.NewDesc("tandem_agent_fences_total", "Fences this agent has performed (durable across restarts).", nil, labels),
		rejectedDesc: prometheus.NewDesc("tandem_agent_rejected_inputs_total", "Messages the agent refused without changing state, by reason.", []string{"reason"}, labels),
	}
	m.reg.MustRegister(m.events, m.fenceFailures, m.fenceSeconds, m)
	m.loop = opshttp.NewLoop()
	return m
}

// observe records a member check.
func (m *metrics) observe(up, fenced bool) {
	m.mu.Lock()
	m.checked, m.up, m.fenced = true, up, fenced
	m.mu.Unlock()
}

// publish records the core's state after the loop made it durable.
func (m *metrics) publish(core *failover.Agent, events []failover.Event) {
	m.mu.Lock()
	m.state, m.counters = core.State(), core.Counters()
	m.mu.Unlock()
	for _, e := range events {
		m.events.WithLabelValues(e.Kind).Inc()
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.upDesc, m.fencedDesc, m.fencesDesc, m.rejectedDesc} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.checked {
		ch <- prometheus.MustNewConstMetric(m.upDesc, prometheus.GaugeValue, opshttp.Flag(m.up))
		ch <- prometheus.MustNewConstMetric(m.fencedDesc, prometheus.GaugeValue, opshttp.Flag(m.fenced))
	}
	ch <- prometheus.MustNewConstMetric(m.fencesDesc, prometheus.CounterValue, float64(m.state.Fences))
	for reason, v := range map[string]uint64{"unknown-type": m.counters.UnknownType, "stale-epoch": m.counters.StaleEpoch, "forged": m.counters.Forged} {
		ch <- prometheus.MustNewConstMetric(m.rejectedDesc, prometheus.CounterValue, float64(v), reason)
	}
}

// health: the loop turned within the last 5 s (it checks the member every
// two ticks); the detail is what it last measured of its member.
func (m *metrics) health() opshttp.Health {
	m.mu.Lock()
	detail := map[string]any{"member_checked": m.checked, "member_up": m.up, "member_fenced": m.fenced, "fences": m.state.Fences}
	m.mu.Unlock()
	return m.loop.Health("the agent's loop", detail)
}
