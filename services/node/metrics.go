package node

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector reports the node's measured state at scrape time, so /metrics
// can never disagree with /mirror/status.
type collector struct {
	n *Node

	firstLSN, lastLSN, durableLSN, segments, epoch, healthy, applied *prometheus.Desc
}

func newCollector(n *Node) *collector {
	labels := prometheus.Labels{"tier": n.cfg.Tier, "member": n.cfg.Member}
	d := func(name, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc("tandem_"+name, help, vars, labels)
	}
	return &collector{
		n:          n,
		firstLSN:   d("journal_first_lsn", "Lowest LSN still held in the journal."),
		lastLSN:    d("journal_last_lsn", "Last LSN sequenced into the journal."),
		durableLSN: d("journal_durable_lsn", "Last LSN fsynced in the journal."),
		segments:   d("journal_segments", "Journal segment files on disk."),
		epoch:      d("epoch", "Epoch this member writes in."),
		healthy:    d("healthy", "1 when the journal and the store are usable, 0 when the member must step down."),
		applied:    d("store_applied_lsn", "LSN of the last journal record applied to the database.", "database"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.firstLSN, c.lastLSN, c.durableLSN, c.segments, c.epoch, c.healthy, c.applied} {
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
	g(c.epoch, float64(s.Epoch))
	healthy := 1.0
	if s.Error != "" {
		healthy = 0
	}
	g(c.healthy, healthy)
	for _, db := range s.Databases {
		g(c.applied, float64(db.AppliedLSN), db.Name)
	}
}
