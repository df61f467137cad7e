package node

// Metrics served at GET /metrics (docs/OPERATIONS.md "Metrics" lists them
// with what to alert on). Two kinds:
//
//   - collector: state measured at scrape time (journal, store, mirror
//     snapshot), so /metrics can never disagree with /mirror/status;
//   - metrics: events counted and timed where they happen (commits, FHIR
//     requests, gate verdicts, promotions), kept from process start.
//
// Labels carry only bounded, PHI-free values: tier and member names,
// statuses, outcomes, FHIR interaction names and HTTP status classes —
// never an id, a query or a resource type taken from a request.

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	fhirserver "github.com/tandemhealth/tandem/fhir/server"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/services/gate"
	"github.com/tandemhealth/tandem/services/httpstatus"
)

// mirrorStatuses are the values of tandem_mirror_status: every member
// status of the failover core, and "down" (journal or store failed).
var mirrorStatuses = []string{
	string(failover.StatusPrimary), string(failover.StatusBackup), string(failover.StatusAsync),
	string(failover.StatusInTrouble), string(failover.StatusTransition), string(failover.StatusWaiting), "down",
}

// transferStatuses are the values of failover.Member.Transfer's Status.
var transferStatuses = []string{"active", "caught-up", "behind", "disconnected"}

// collector reports the node's measured state at scrape time, so /metrics
// can never disagree with /mirror/status.
type collector struct {
	n *Node

	firstLSN, lastLSN, durableLSN, segments, epoch, healthy, applied *prometheus.Desc
	groups, recordsDurable, fdatasyncs                               *prometheus.Desc
	status, commitLSN, transfer, lagRecords, behindSeconds           *prometheus.Desc
}

func newCollector(n *Node) *collector {
	labels := prometheus.Labels{"tier": n.cfg.Tier, "member": n.cfg.Member}
	d := func(name, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc("tandem_"+name, help, vars, labels)
	}
	return &collector{
		n:              n,
		firstLSN:       d("journal_first_lsn", "Lowest LSN still held in the journal."),
		lastLSN:        d("journal_last_lsn", "Last LSN sequenced into the journal."),
		durableLSN:     d("journal_durable_lsn", "Last LSN fsynced in the journal."),
		segments:       d("journal_segments", "Journal segment files on disk."),
		groups:         d("journal_commit_groups_total", "Group commits made durable since this process started; records_durable_total over this is the records per commit group."),
		recordsDurable: d("journal_records_durable_total", "Journal records made durable since this process started."),
		fdatasyncs:     d("journal_fdatasyncs_total", "fdatasyncs of journal segment files since this process started (one per commit group, one more per segment rollover)."),
		epoch:          d("epoch", "Epoch this member writes in."),
		healthy:        d("healthy", "1 when the journal and the store are usable, 0 when the member must step down."),
		applied:        d("store_applied_lsn", "LSN of the last journal record applied to the database.", "database"),
		status:         d("mirror_status", "1 for this member's current status (as /mirror/status says it), 0 for the others.", "status"),
		commitLSN:      d("mirror_commit_lsn", "Highest LSN this member's failover core knows to be committed."),
		transfer:       d("mirror_transfer_status", "1 for the state of journal shipping as this member measures it, 0 for the others; all 0 when it is in no transfer (e.g. waiting).", "status"),
		lagRecords:     d("mirror_lag_records", "Records between the two ends of the transfer: on the primary, its records the backup has not acknowledged; on a backup or async, the primary's last LSN (as last heard) minus this member's."),
		behindSeconds:  d("mirror_behind_seconds", "Seconds since the transfer was last caught up (lag_records 0 and connected); 0 while it is, and until it first was since this process started."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.firstLSN, c.lastLSN, c.durableLSN, c.segments, c.epoch, c.healthy, c.applied,
		c.groups, c.recordsDurable, c.fdatasyncs,
		c.status, c.commitLSN, c.transfer, c.lagRecords, c.behindSeconds} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.Status()
	g := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	g(c.firstLSN, float64(s.Journal.FirstLSN))
	g(c.lastLSN, float64(s.Journal.LastLSN))
	g(c.durableLSN, float64(s.Journal.DurableLSN))
	g(c.segments, float64(s.Journal.Segments))
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	js := c.n.journal.Stats()
	counter(c.groups, js.Groups)
	counter(c.recordsDurable, js.Records)
	counter(c.fdatasyncs, js.Syncs)
	g(c.epoch, float64(s.Epoch))
	healthy := 1.0
	if s.Error != "" {
		healthy = 0
	}
	g(c.healthy, healthy)
	for _, db := range s.Databases {
		g(c.applied, float64(db.AppliedLSN), db.Name)
	}
	if c.n.mirror == nil {
		return // standalone: no mirror, no transfer
	}
	snap := c.n.mirror.snapshot()
	stateSet(g, c.status, mirrorStatuses, s.Status)
	g(c.commitLSN, float64(snap.Commit))
	stateSet(g, c.transfer, transferStatuses, snap.Transfer.Status)
	g(c.lagRecords, float64(snap.Transfer.Behind))
	g(c.behindSeconds, snap.BehindSeconds)
}

// stateSet reports 1 for current and 0 for every other known value (and
// current too when it is not one of them).
func stateSet(g func(*prometheus.Desc, float64, ...string), d *prometheus.Desc, known []string, current string) {
	seen := false
	for _, v := range known {
		if v == current {
			g(d, 1, v)
			seen = true
		} else {
			g(d, 0, v)
		}
	}
	if !seen && current != "" {
		g(d, 1, current)
	}
}

// metrics are the node's counted and timed events.
type metrics struct {
	commit    *prometheus.HistogramVec // outcome
	fhir      *prometheus.HistogramVec // interaction, code
	gate      *prometheus.CounterVec   // decision, kind
	failovers *prometheus.CounterVec   // reason
}

func newMetrics(tier, member string) *metrics {
	labels := prometheus.Labels{"tier": tier, "member": member}
	m := &metrics{
		commit: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tandem_commit_seconds", ConstLabels: labels,
			Help:    "Client-write commit latency: from the proposal of the record to its acknowledgement (committed: durable here and, on a mirror member, on the active backup) or its failure.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"outcome"}),
		fhir: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tandem_fhir_request_seconds", ConstLabels: labels,
			Help: "FHIR REST requests served by this node, by interaction and HTTP status class."}, []string{"interaction", "code"}),
		gate: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_gate_decisions_total", ConstLabels: labels,
			Help: "Policy-gate verdicts taken on this member, by decision and operation (a failover backup re-evaluates automatic_failover every 200 ms)."}, []string{"decision", "kind"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_failovers_total", ConstLabels: labels,
			Help: "Promotions of this member to primary since the process started, by the authority it was promoted on."}, []string{"reason"}),
	}
	// Known label values start at 0, so a first increase is visible.
	for _, o := range []string{"ok", "error"} {
		m.commit.WithLabelValues(o)
	}
	for _, d := range []string{"allow", "refuse"} {
		for _, k := range []string{gate.AutomaticFailover, gate.PlannedFailover} {
			m.gate.WithLabelValues(d, k)
		}
	}
	for r := failover.PromoteGrant; r <= failover.PromoteForced; r++ {
		m.failovers.WithLabelValues(r.String())
	}
	return m
}

func (m *metrics) register(reg *prometheus.Registry) {
	reg.MustRegister(m.commit, m.fhir, m.gate, m.failovers)
}

func (m *metrics) observeCommit(since time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.commit.WithLabelValues(outcome).Observe(time.Since(since).Seconds())
}

func (m *metrics) countDecision(d gate.Decision) {
	decision := "refuse"
	if d.Allowed {
		decision = "allow"
	}
	m.gate.WithLabelValues(decision, d.Operation).Inc()
}

// instrumentFHIR times every request to the FHIR server by its interaction
// (fhirserver.Server.Interaction: method and path shape only) and status
// class.
func (m *metrics) instrumentFHIR(srv *fhirserver.Server, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		sw := &httpstatus.Recorder{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		m.fhir.WithLabelValues(srv.Interaction(r), httpstatus.Class(sw.Status)).Observe(time.Since(t0).Seconds())
	})
}

// timedLog times a standalone node's writes from proposal to commit
// (durable in its journal). A mirror member times them in its loop
// instead (mirror.settle), where every acknowledgement and failure is seen.
type timedLog struct {
	sequencer.Log
	m *metrics
}

func (l timedLog) Propose(db string, payload []byte) (sequencer.Proposal, error) {
	p, err := l.Log.Propose(db, payload)
	if err != nil {
		return nil, err
	}
	return timedProposal{Proposal: p, at: time.Now(), m: l.m}, nil
}

type timedProposal struct {
	sequencer.Proposal
	at time.Time
	m  *metrics
}

// Wait observes the commit unless the caller gave up first (then the
// outcome is not known here).
func (p timedProposal) Wait(ctx context.Context) error {
	err := p.Proposal.Wait(ctx)
	if err == nil || ctx.Err() == nil {
		p.m.observeCommit(p.at, err)
	}
	return err
}
