package gateway

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandemhealth/tandem/services/httpstatus"
)

// Retry reasons of tandem_gateway_retries_total: why the attempt before
// the retried one failed.
const (
	retryConnError   = "connection-error" // no answer: refused, reset, timed out, abandoned
	retryPrimary503  = "primary-503"      // the primary refused before doing anything
	retryPrimaryMove = "primary-moved"    // a 5xx from a member that is no longer primary
)

// metrics are the gateway's counters, served at GET /metrics like a
// node's: unauthenticated, and so labelled only with tier names, methods,
// status classes and reasons — never a path, an id, a client or a key.
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec   // code_class, method
	latency     *prometheus.HistogramVec // method
	retries     *prometheus.CounterVec   // reason
	topology    *prometheus.CounterVec   // tier
	rateLimited prometheus.Counter
	replays     prometheus.Counter

	counters  map[[2]string]*lazyCounter // {code_class, method}
	observers map[string]*lazyObserver   // method
}

func newMetrics(g *Gateway) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_gateway_requests_total",
			Help: "FHIR requests answered by the gateway, by HTTP status class (\"canceled\": the client went away unanswered) and method."},
			[]string{"code_class", "method"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tandem_gateway_request_seconds",
			Help: "Time to answer a FHIR request, holds and retries across a failover included."}, []string{"method"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_gateway_retries_total",
			Help: "Forwarding attempts after the first, by why the previous attempt failed."}, []string{"reason"}),
		topology: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_gateway_topology_changes_total",
			Help: "Changes of a tier's routed primary or epoch after the gateway's first read (losing the primary counts, as does finding the next)."},
			[]string{"tier"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_gateway_rate_limited_total",
			Help: "Requests refused with 429 by the per-client rate limit."}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_gateway_idempotent_replays_total",
			Help: "Requests answered from the Redis cache of Idempotency-Key results without reaching a member."}),
	}
	// The series of every request, looked up once (WithLabelValues hashes
	// and locks on every call); created lazily as before.
	m.counters = map[[2]string]*lazyCounter{}
	m.observers = map[string]*lazyObserver{}
	for _, method := range methodLabels {
		m.observers[method] = &lazyObserver{vec: m.latency, method: method}
		for _, class := range []string{"2xx", "3xx", "4xx", "5xx"} {
			m.counters[[2]string{class, method}] = &lazyCounter{vec: m.requests, labels: []string{class, method}}
		}
	}
	for _, r := range []string{retryConnError, retryPrimary503, retryPrimaryMove} {
		m.retries.WithLabelValues(r)
	}
	for _, t := range g.tiers {
		m.topology.WithLabelValues(t.Name)
	}
	primary := prometheus.NewDesc("tandem_gateway_primary_known", "1 when the gateway knows a primary of the tier to route writes to, 0 while it holds them.", []string{"tier"}, nil)
	m.reg.MustRegister(m.requests, m.latency, m.retries, m.topology, m.rateLimited, m.replays,
		primaryCollector{g: g, desc: primary},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// instrument counts and times the FHIR requests h answers.
func (m *metrics) instrument(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		sw := &httpstatus.Recorder{ResponseWriter: w}
		h(sw, r)
		class := httpstatus.Class(sw.Status) // wrote nothing: net/http answers 200
		if sw.Status == 0 && r.Context().Err() != nil {
			class = "canceled"
		}
		method := methodLabel(r.Method)
		if c, ok := m.counters[[2]string{class, method}]; ok {
			c.Inc()
		} else {
			m.requests.WithLabelValues(class, method).Inc()
		}
		m.observers[method].Observe(time.Since(t0).Seconds())
	}
}

// methodLabels are every value methodLabel returns.
var methodLabels = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, "other"}

// methodLabel keeps the method label bounded.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return method
	}
	return "other"
}

// primaryCollector reads the topology at scrape time.
type primaryCollector struct {
	g    *Gateway
	desc *prometheus.Desc
}

func (c primaryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c primaryCollector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range c.g.snapshot() {
		known := 0.0
		if v.Primary != "" {
			known = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, known, v.Tier)
	}
}

// lazyCounter is one series of a CounterVec, made on its first Inc (so
// /metrics shows only series that happened, as with WithLabelValues).
type lazyCounter struct {
	vec    *prometheus.CounterVec
	labels []string
	once   sync.Once
	c      prometheus.Counter
}

func (l *lazyCounter) Inc() {
	l.once.Do(func() { l.c = l.vec.WithLabelValues(l.labels...) })
	l.c.Inc()
}

// lazyObserver is one series of a HistogramVec, made on first use.
type lazyObserver struct {
	vec    *prometheus.HistogramVec
	method string
	once   sync.Once
	o      prometheus.Observer
}

func (l *lazyObserver) Observe(v float64) {
	l.once.Do(func() { l.o = l.vec.WithLabelValues(l.method) })
	l.o.Observe(v)
}
