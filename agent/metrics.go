package agent

import (
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/delen-edge/delen/schema"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the agent's Prometheus metrics, in a registry of their own
// (no global state), served by Handler.
type Metrics struct {
	reg            *prometheus.Registry
	requests       *prometheus.CounterVec
	exits          *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	stageSeconds   *prometheus.HistogramVec
	batchSize      prometheus.Histogram
	energy         *prometheus.CounterVec
	queueDepth     *prometheus.GaugeVec
	boundMisses    *prometheus.CounterVec
	deduped        *prometheus.CounterVec
	dropped        *prometheus.CounterVec
	brokerUp       prometheus.Gauge
	storeErrors    prometheus.Counter
	historyWritten prometheus.Counter
	historyDropped prometheus.Counter
	historyTrimmed prometheus.Counter
	// liveAccuracy and liveAccuracyExpected are a model's live accuracy
	// window (agent/liveprofile.go): measured from labels, and promised by
	// the answers' accuracy_est.
	liveAccuracy, liveAccuracyExpected *prometheus.GaugeVec
}

func newMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delen_requests_total",
			Help: "Requests answered, by tenant, status and error code."}, []string{"tenant", "status", "code"}),
		exits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delen_exits_total",
			Help: "Requests served, by tenant, model and exit taken."}, []string{"tenant", "model", "exit"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "delen_request_latency_seconds",
			Help:    "Time from arrival at the agent to publish of the result.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5}}, []string{"tenant"}),
		stageSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "delen_stage_seconds",
			Help:    "Compute time of one stage, by model and exit.",
			Buckets: []float64{.00002, .00005, .0001, .0002, .0005, .001, .002, .005, .01, .02, .05, .1, .2}}, []string{"model", "exit"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "delen_stage_batch_size",
			Help: "Requests run together in one stage call.", Buckets: []float64{1, 2, 3, 4, 6, 8, 12, 16, 32}}),
		energy: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delen_energy_joules_total",
			Help: "Energy of the stages run, by tenant, in joules."}, []string{"tenant"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "delen_queue_depth",
			Help: "Stages waiting in the tenant's queue."}, []string{"tenant"}),
		boundMisses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delen_bound_misses_total",
			Help: "Served requests whose bound did not hold."}, []string{"tenant"}),
		deduped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delen_deduplicated_total",
			Help: "Repeated request ids answered from the dedupe record."}, []string{"tenant"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delen_dropped_total",
			Help: "Messages dropped without a result, by reason."}, []string{"reason"}),
		brokerUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "delen_broker_connected",
			Help: "1 while the agent is connected to its broker."}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "delen_store_errors_total",
			Help: "Failed writes to the Badger store."}),
		historyWritten: prometheus.NewCounter(prometheus.CounterOpts{Name: "delen_history_written_total",
			Help: "History records written."}),
		historyDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "delen_history_dropped_total",
			Help: "History records lost (queue full or store failing)."}),
		historyTrimmed: prometheus.NewCounter(prometheus.CounterOpts{Name: "delen_history_trimmed_total",
			Help: "History records deleted to keep each tenant's newest HistoryMaxRecords."}),
		liveAccuracy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "delen_live_accuracy_ratio",
			Help: "Share of the model's latest labelled answers (up to 2000) that were right."}, []string{"model"}),
		liveAccuracyExpected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "delen_live_accuracy_expected_ratio",
			Help: "Mean accuracy_est of the same answers: what the calibration promised."}, []string{"model"}),
	}
	m.reg.MustRegister(m.requests, m.exits, m.latency, m.stageSeconds, m.batchSize, m.energy, m.queueDepth,
		m.boundMisses, m.deduped, m.dropped, m.brokerUp, m.storeErrors, m.historyWritten, m.historyDropped, m.historyTrimmed,
		m.liveAccuracy, m.liveAccuracyExpected, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the registry the metrics live in, for adding collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// child is one child of a metric vector, looked up by its label values on
// first use and kept: a lookup hashes the values under the vector's lock,
// and every served request made about ten. The series still appears when
// it is first updated. Two first uses at once look up the same child.
type child[T any] struct{ p atomic.Pointer[T] }

func (c *child[T]) get(lookup func() T) T {
	if p := c.p.Load(); p != nil {
		return *p
	}
	v := lookup()
	c.p.Store(&v)
	return v
}

// tenantMetrics are a tenant's children of the metrics that every served
// request updates (its label is fixed at the tenant's creation).
type tenantMetrics struct {
	queueDepth child[prometheus.Gauge]
	latency    child[prometheus.Observer]
	energy     child[prometheus.Counter]
	ok, late   child[prometheus.Counter] // requests{status, code ""}
}

func (m *Metrics) queueDepthOf(t *tenant) prometheus.Gauge {
	return t.metrics.queueDepth.get(func() prometheus.Gauge { return m.queueDepth.WithLabelValues(t.label) })
}

func (m *Metrics) latencyOf(t *tenant) prometheus.Observer {
	return t.metrics.latency.get(func() prometheus.Observer { return m.latency.WithLabelValues(t.label) })
}

func (m *Metrics) energyOf(t *tenant) prometheus.Counter {
	return t.metrics.energy.get(func() prometheus.Counter { return m.energy.WithLabelValues(t.label) })
}

// requestsOf is requests{tenant, status, code}, kept for the statuses of
// served requests.
func (m *Metrics) requestsOf(t *tenant, status, code string) prometheus.Counter {
	lookup := func() prometheus.Counter { return m.requests.WithLabelValues(t.label, status, code) }
	switch {
	case code != "":
	case status == schema.StatusOK:
		return t.metrics.ok.get(lookup)
	case status == schema.StatusLate:
		return t.metrics.late.get(lookup)
	}
	return lookup()
}

// stageMetrics are a served model's children of delen_stage_seconds, one
// per exit.
type stageMetrics []child[prometheus.Observer]

func (m *Metrics) stageSecondsOf(sm *servedModel, exit int) prometheus.Observer {
	lookup := func() prometheus.Observer { return m.stageSeconds.WithLabelValues(sm.name, strconv.Itoa(exit)) }
	if exit < 1 || exit > len(sm.stageSeconds) {
		return lookup()
	}
	return sm.stageSeconds[exit-1].get(lookup)
}
