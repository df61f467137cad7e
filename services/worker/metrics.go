package worker

// The worker's metrics: the Temporal SDK's own (workflow and activity task
// latencies, polls, failures, sticky cache…) exported in Prometheus text at
// the worker's /metrics (flag --http), plus the worker's /healthz.
//
// The SDK reports through client.MetricsHandler (counters, gauges and
// timers with free-form tags). sdkMetrics keeps every series it is given
// and turns them into Prometheus samples at scrape time; series of one name
// reported with different tag sets are exposed with the union of the tag
// names (a missing tag is an empty label, which Prometheus reads as absent).

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

type seriesKind uint8

const (
	kindCounter seriesKind = iota
	kindGauge
	kindTimer
)

// timerBuckets (seconds) cover a task's latency from 1 ms to ~1 min.
var timerBuckets = prometheus.ExponentialBuckets(0.001, 2, 17)

type series struct {
	kind   seriesKind
	name   string
	labels map[string]string
	value  float64  // counter total or gauge value
	counts []uint64 // timer: per bucket (not cumulative)
	count  uint64
	sum    float64
}

// sdkMetrics is the store behind every handler derived from it.
type sdkMetrics struct {
	mu     sync.Mutex
	series map[string]*series
}

func newSDKMetrics() *sdkMetrics { return &sdkMetrics{series: map[string]*series{}} }

// Handler is the SDK's root metrics handler.
func (m *sdkMetrics) Handler() client.MetricsHandler { return sdkHandler{m: m} }

func (m *sdkMetrics) get(kind seriesKind, name string, tags map[string]string) *series {
	keys := slices.Sorted(maps.Keys(tags))
	var b strings.Builder
	b.WriteByte(byte('0' + kind))
	b.WriteString(name)
	for _, k := range keys {
		b.WriteString("\x00" + k + "=" + tags[k])
	}
	key := b.String()
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.series[key]
	if !ok {
		s = &series{kind: kind, name: name, labels: tags}
		if kind == kindTimer {
			s.counts = make([]uint64, len(timerBuckets)+1)
		}
		m.series[key] = s
	}
	return s
}

type sdkHandler struct {
	m    *sdkMetrics
	tags map[string]string
}

func (h sdkHandler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := maps.Clone(h.tags)
	if merged == nil {
		merged = map[string]string{}
	}
	for k, v := range tags {
		merged[labelName(k)] = v
	}
	return sdkHandler{m: h.m, tags: merged}
}

func (h sdkHandler) Counter(name string) client.MetricsCounter {
	s := h.m.get(kindCounter, name, h.tags)
	return counterFunc(func(d int64) {
		h.m.mu.Lock()
		s.value += float64(d)
		h.m.mu.Unlock()
	})
}

func (h sdkHandler) Gauge(name string) client.MetricsGauge {
	s := h.m.get(kindGauge, name, h.tags)
	return gaugeFunc(func(v float64) {
		h.m.mu.Lock()
		s.value = v
		h.m.mu.Unlock()
	})
}

func (h sdkHandler) Timer(name string) client.MetricsTimer {
	s := h.m.get(kindTimer, name, h.tags)
	return timerFunc(func(d time.Duration) {
		sec := d.Seconds()
		i, _ := slices.BinarySearch(timerBuckets, sec)
		h.m.mu.Lock()
		s.counts[i]++
		s.count++
		s.sum += sec
		h.m.mu.Unlock()
	})
}

type (
	counterFunc func(int64)
	gaugeFunc   func(float64)
	timerFunc   func(time.Duration)
)

func (f counterFunc) Inc(d int64)          { f(d) }
func (f gaugeFunc) Update(v float64)       { f(v) }
func (f timerFunc) Record(d time.Duration) { f(d) }

// Describe sends nothing: the series are known only as the SDK reports them.
func (m *sdkMetrics) Describe(chan<- *prometheus.Desc) {}

func (m *sdkMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	type family struct {
		kind   seriesKind
		labels map[string]bool
		series []*series
	}
	families := map[string]*family{}
	for _, s := range m.series {
		name := metricName(s.kind, s.name)
		f := families[name]
		if f == nil {
			f = &family{kind: s.kind, labels: map[string]bool{}}
			families[name] = f
		}
		if f.kind != s.kind {
			continue // one name used as two kinds: keep the first
		}
		for k := range s.labels {
			f.labels[k] = true
		}
		f.series = append(f.series, s)
	}
	for name, f := range families {
		keys := slices.Sorted(maps.Keys(f.labels))
		desc := prometheus.NewDesc(name, "Temporal SDK metric "+f.series[0].name+" of this worker.", keys, nil)
		for _, s := range f.series {
			values := make([]string, len(keys))
			for i, k := range keys {
				values[i] = s.labels[k]
			}
			switch s.kind {
			case kindCounter:
				ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, s.value, values...)
			case kindGauge:
				ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, s.value, values...)
			case kindTimer:
				buckets := make(map[float64]uint64, len(timerBuckets))
				var cum uint64
				for i, le := range timerBuckets {
					cum += s.counts[i]
					buckets[le] = cum
				}
				ch <- prometheus.MustNewConstHistogram(desc, s.count, s.sum, buckets, values...)
			}
		}
	}
}

// metricName: the SDK's names (temporal_…) with Prometheus's unit suffixes.
func metricName(kind seriesKind, name string) string {
	name = labelName(name)
	switch {
	case kind == kindCounter && !strings.HasSuffix(name, "_total"):
		return name + "_total"
	case kind == kindTimer && !strings.HasSuffix(name, "_seconds"):
		return name + "_seconds"
	}
	return name
}

// labelName keeps [a-zA-Z0-9_] and replaces anything else with '_'.
func labelName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}
