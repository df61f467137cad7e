package worker

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// The SDK's series become valid Prometheus families: counters summed,
// gauges set, timers as histograms in seconds, and one name reported with
// different tag sets exposed with the union of the tag names.
func TestSDKMetricsGatherAsPrometheus(t *testing.T) {
	m := newSDKMetrics()
	h := m.Handler().WithTags(map[string]string{"namespace": "default"})
	h.WithTags(map[string]string{"workflow_type": "MirrorSetup"}).Counter("temporal_workflow_completed").Inc(2)
	h.WithTags(map[string]string{"workflow_type": "MirrorSetup"}).Counter("temporal_workflow_completed").Inc(1)
	h.Counter("temporal_workflow_completed").Inc(5) // no workflow_type tag
	h.Gauge("temporal_num_pollers").Update(3)
	h.Timer("temporal_activity_execution_latency").Record(1500 * time.Millisecond)
	h.WithTags(map[string]string{"bad-key": "x"}).Gauge("temporal_odd").Update(1)

	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	out := b.String()
	for _, want := range []string{
		`temporal_workflow_completed_total{namespace="default",workflow_type="MirrorSetup"} 3`,
		`temporal_workflow_completed_total{namespace="default",workflow_type=""} 5`,
		`temporal_num_pollers{namespace="default"} 3`,
		`temporal_activity_execution_latency_seconds_bucket{namespace="default",le="1.024"} 0`,
		`temporal_activity_execution_latency_seconds_bucket{namespace="default",le="2.048"} 1`,
		`temporal_activity_execution_latency_seconds_sum{namespace="default"} 1.5`,
		`temporal_activity_execution_latency_seconds_count{namespace="default"} 1`,
		`temporal_odd{bad_key="x",namespace="default"} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s in:\n%s", want, out)
		}
	}
}
