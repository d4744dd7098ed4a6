package agent

import (
	"testing"

	"github.com/delen-edge/delen/schema"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value is a counter's or gauge's value.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue() + d.GetGauge().GetValue()
}

// series counts a collector's series.
func series(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 100)
	c.Collect(ch)
	close(ch)
	return len(ch)
}

// TestCachedMetricChildren: the children a tenant and a model keep are
// the series of their labels, so what the path updates through them is
// what /metrics shows under those labels, and nothing under another's.
func TestCachedMetricChildren(t *testing.T) {
	m := newMetrics()
	cam, other := &tenant{label: "cam"}, &tenant{label: "_other"}
	sm := &servedModel{name: "mnist-ee", stageSeconds: make(stageMetrics, 3)}
	for _, tc := range []struct {
		t            *tenant
		status, code string
	}{
		{cam, schema.StatusOK, ""}, {cam, schema.StatusOK, ""}, {cam, schema.StatusLate, ""},
		{cam, schema.StatusError, schema.CodeBadRequest}, {other, schema.StatusOK, ""}, {cam, schema.StatusShed, schema.CodeOverloaded},
	} {
		m.requestsOf(tc.t, tc.status, tc.code).Inc()
	}
	for _, tc := range []struct {
		tenant, status, code string
		want                 float64
	}{
		{"cam", "ok", "", 2}, {"cam", "late", "", 1}, {"cam", "error", "bad_request", 1}, {"_other", "ok", "", 1},
		{"cam", "shed", "overloaded", 1}, {"_other", "late", "", 0},
	} {
		if got := value(t, m.requests.WithLabelValues(tc.tenant, tc.status, tc.code)); got != tc.want {
			t.Errorf("requests{%s,%s,%s} = %v, want %v", tc.tenant, tc.status, tc.code, got, tc.want)
		}
	}
	m.queueDepthOf(cam).Set(4)
	m.queueDepthOf(other).Set(1)
	m.energyOf(cam).Add(0.5)
	m.energyOf(cam).Add(0.25)
	m.latencyOf(cam).Observe(0.001)
	if got := value(t, m.queueDepth.WithLabelValues("cam")); got != 4 {
		t.Errorf("queue depth of cam %v, want 4", got)
	}
	if got := value(t, m.energy.WithLabelValues("cam")); got != 0.75 {
		t.Errorf("energy of cam %v, want 0.75", got)
	}
	if n := series(m.latency); n != 1 {
		t.Errorf("%d latency series, want cam's alone", n)
	}
	for exit := 1; exit <= 4; exit++ { // 4: beyond the model's exits, looked up every time
		m.stageSecondsOf(sm, exit).Observe(0.0001)
		m.stageSecondsOf(sm, exit).Observe(0.0001)
	}
	if n := series(m.stageSeconds); n != 4 {
		t.Errorf("%d stage series, want 4", n)
	}
}
