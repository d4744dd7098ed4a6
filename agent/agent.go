// Package agent is the Dělen daemon: it takes requests from per-tenant MQTT
// topics, schedules them stage by stage across tenants, runs each stage of
// a multi-exit model, lets the request's policy decide where to stop,
// publishes the tagged result and records history in the store.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/internal/slogx"
	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/energy"
	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/models/zoo"
	"github.com/delen-edge/delen/policies"
	"github.com/delen-edge/delen/schema"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is the agent's configuration. Zero values take the defaults
// documented on each field.
type Config struct {
	// AgentID names the agent (status topic, MQTT client id); default
	// "delen-<hostname>".
	AgentID string
	// BrokerURL is the MQTT broker (tcp://host:port, ssl://…). Required.
	BrokerURL string
	// BrokerDial, when set, opens the agent's broker connections instead
	// of dialing BrokerURL, which then only names the broker in logs:
	// broker.Embedded.Dial, for an embedded broker in the same process.
	BrokerDial func(ctx context.Context) (net.Conn, error)
	// Embedded, when set, is the broker in this process that the agent
	// serves: it attaches to its session there (broker.Embedded.Attach),
	// with no MQTT packets between them, and BrokerURL and BrokerDial are
	// not used (with ShareGroup set it dials, as shared subscriptions need).
	Embedded *broker.Embedded
	// Username and Password, if the broker wants them.
	Username, Password string
	// TLS configures ssl:// and mqtts:// connections.
	TLS *tls.Config
	// ShareGroup, when set, subscribes to requests through
	// $share/<group>/… so several agents split the load.
	ShareGroup string
	// Topics sets the topic prefix (default "delen").
	Topics schema.Topics
	// Zoo finds the models to serve (default: the built-in models).
	Zoo *zoo.Zoo
	// DefaultModel serves requests that name none (default "mnist-ee").
	DefaultModel string
	// Store persists settings, profiles, history and dedupe. Required.
	Store *store.Store
	// Provider is the ONNX Runtime execution provider: "cpu" (default),
	// "cuda" or "tensorrt"; a provider the library lacks falls back to the
	// CPU with a log line.
	Provider string
	// Meter measures stage energy (default: the model meter at 5 W).
	Meter energy.Meter
	// TenantDefaults are settings for tenants that have none stored yet
	// (a configuration file's tenant-defaults); a tenant's control
	// messages replace them, and stored settings win over them. Their
	// QueueLimit, Weight and RateLimit, when set (> 0), are also the
	// tenant's ceilings: its control messages may lower them, never raise
	// them (see Ceilings). A Weight of 0 means the default weight 1.
	TenantDefaults map[string]schema.Settings
	// MaxWeight is the highest scheduling weight a tenant may give itself
	// when its TenantDefaults set none (default 10).
	MaxWeight float64
	// DefaultPolicy serves tenants that name none (default "bound").
	DefaultPolicy string
	// DefaultConditions are the exit conditions of tenants that set none
	// (the reference implementation's condition files, see
	// policies.LoadConditions), for the "conditions" policy.
	DefaultConditions []schema.Condition
	// Policies resolves policy names (default policies.New()).
	Policies *policies.Registry
	// Workers run stages in parallel (default GOMAXPROCS).
	Workers int
	// MaxBatch is how many requests waiting at the same stage of the same
	// model may run as one ONNX Runtime call (default 8; 1 turns batching
	// off). Batches take only what is already waiting: batching never
	// delays a request, except one that waits for company (CompanyWait).
	MaxBatch int
	// CompanyWait is how long a request with an energy bound and no
	// latency bound may wait, at a stage that can run batched, for
	// CompanySize requests (itself included) to be queued at that stage
	// and run as one batch, each charged its share (default 40 ms;
	// negative: never). It waits only when the stage's recent arrivals
	// make company likely within it.
	CompanyWait time.Duration
	// CompanySize is the batch a company wait waits for (default 6, at
	// most MaxBatch and what the batch budget lets run).
	CompanySize int
	// MaxInflight is the agent's intake window: how many requests it holds
	// at once, taken from the broker and not yet answered (default 1024).
	// Further deliveries wait undecoded and
	// unacknowledged, and the broker holds the rest: the agent takes
	// requests at the pace it serves them, and a backlog is served whole.
	MaxInflight int
	// MaxPayload is the largest request accepted, in bytes (default 4 MiB).
	MaxPayload int
	// MaxPixels is the largest encoded image accepted as input, in pixels
	// as its header declares them, checked before decoding (default
	// imagein.DefaultMaxPixels, 16 M); larger ones are answered too_large.
	MaxPixels int
	// MaxTenants bounds the tenants the agent keeps state and metrics for
	// (default 1024): without tenant isolation anyone can name a new
	// tenant in a topic. Requests of further tenants are answered
	// overloaded; their control messages are dropped with a log line.
	MaxTenants int
	// QueueLimit, when set, caps each tenant's requests admitted and not
	// yet answered (waiting for a stage, running, or waiting to be
	// published); more are answered overloaded. The default, 0, sets no cap:
	// requests wait for the agent at the broker instead (MaxInflight).
	QueueLimit int
	// FairnessWindow is how far (in weighted stage time) a tenant may run
	// ahead of the least-served busy tenant before deadlines yield to
	// fairness (default 2 ms).
	FairnessWindow time.Duration
	// SentAtFuture and SentAtMaxAge make a request's sent_at plausible: not
	// more than SentAtFuture ahead of the agent's clock (default 50 ms)
	// and not more than SentAtMaxAge old (default 60 s). A latency bound's
	// deadline counts from a plausible sent_at, else from arrival.
	SentAtFuture, SentAtMaxAge time.Duration
	// Infeasible is what happens to a request whose bound not even exit 1
	// can meet: "late" serves exit 1 anyway, "shed" answers at once
	// (default "late").
	Infeasible string
	// HistoryTTL (default 7 days) and DedupeTTL (default 10 minutes).
	HistoryTTL, DedupeTTL time.Duration
	// HistoryMaxRecords is how many of its newest history records each
	// tenant keeps (default 100,000; older ones are deleted every 10 s);
	// negative keeps all for HistoryTTL. At ~2,000 requests/s the records
	// of 7 days would not fit an edge device's disk.
	HistoryMaxRecords int
	// ProfileRuns is how many runs per stage profile a model on first
	// start (default 200).
	ProfileRuns int
	// StatusInterval is how often stats go to the status topic (default 10 s).
	StatusInterval time.Duration
	// DrainTimeout bounds how long shutdown waits for requests in flight
	// (default 10 s).
	DrainTimeout time.Duration
	Logger       *slog.Logger
}

func (c *Config) defaults() error {
	if c.BrokerURL == "" {
		return errors.New("agent: BrokerURL is required")
	}
	if c.Store == nil {
		return errors.New("agent: Store is required")
	}
	if c.AgentID == "" {
		h, _ := os.Hostname()
		c.AgentID = "delen-" + profile.Sanitize(h)
	}
	if c.Zoo == nil {
		c.Zoo = zoo.New()
	}
	if c.DefaultModel == "" {
		c.DefaultModel = "mnist-ee"
	}
	if c.Meter == nil {
		m, err := energy.New(energy.KindModel, "/", energy.Options{})
		if err != nil {
			return err
		}
		c.Meter = m
	}
	if c.Policies == nil {
		c.Policies = policies.New()
	}
	if !c.Policies.Has(c.DefaultPolicy) {
		return fmt.Errorf("agent: default policy %q is not known (known: %v)", c.DefaultPolicy, c.Policies.Names())
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 8
	}
	switch {
	case c.CompanyWait == 0:
		c.CompanyWait = defaultCompanyWait
	case c.CompanyWait < 0 || c.MaxBatch == 1:
		c.CompanyWait = 0
	}
	if c.CompanySize <= 0 {
		c.CompanySize = defaultCompanySize
	}
	c.CompanySize = min(c.CompanySize, c.MaxBatch)
	if c.MaxInflight <= 0 {
		c.MaxInflight = 1024
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = 4 << 20
	}
	if c.MaxWeight <= 0 {
		c.MaxWeight = 10
	}
	if c.MaxWeight > schema.MaxWeight {
		return fmt.Errorf("agent: MaxWeight %g: at most %d", c.MaxWeight, schema.MaxWeight)
	}
	if c.MaxTenants <= 0 {
		c.MaxTenants = 1024
	}
	if c.FairnessWindow <= 0 {
		c.FairnessWindow = 2 * time.Millisecond
	}
	if c.SentAtFuture <= 0 {
		c.SentAtFuture = DefaultSentAtFuture
	}
	if c.SentAtMaxAge <= 0 {
		c.SentAtMaxAge = DefaultSentAtMaxAge
	}
	switch c.Infeasible {
	case "":
		c.Infeasible = "late"
	case "late", "shed":
	default:
		return fmt.Errorf("agent: Infeasible %q: want late or shed", c.Infeasible)
	}
	if c.HistoryTTL <= 0 {
		c.HistoryTTL = 7 * 24 * time.Hour
	}
	if c.HistoryMaxRecords == 0 {
		c.HistoryMaxRecords = 100_000
	}
	if c.DedupeTTL <= 0 {
		c.DedupeTTL = 10 * time.Minute
	}
	if c.ProfileRuns <= 0 {
		c.ProfileRuns = 200
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = 10 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c.Topics.Validate()
}

// Ceilings are the limits the operator set for one tenant (flags,
// configuration, tenant defaults): the tenant's control messages may lower
// its settings below them, never raise them above.
type Ceilings struct {
	// QueueLimit is the most requests admitted and not yet answered; 0:
	// no cap.
	QueueLimit int
	// Weight is the highest scheduling weight.
	Weight float64
	// RateLimit is the most requests per second; 0: none set.
	RateLimit float64
}

// ceilings returns tenant name's ceilings: its TenantDefaults' queue
// limit, weight and rate limit where set, else the agent's QueueLimit (0:
// no cap) and MaxWeight (and no rate limit).
func (c *Config) ceilings(name string) Ceilings {
	l := Ceilings{QueueLimit: c.QueueLimit, Weight: c.MaxWeight}
	if d, ok := c.TenantDefaults[name]; ok {
		if d.QueueLimit > 0 {
			l.QueueLimit = d.QueueLimit
		}
		if d.Weight > 0 {
			l.Weight = d.Weight
		}
		l.RateLimit = d.RateLimit
	}
	return l
}

// check refuses a control message that would raise a setting above its
// ceiling, naming the ceiling.
func (l Ceilings) check(tenant string, c *schema.Control) error {
	switch {
	case c.QueueLimit != nil && l.QueueLimit > 0 && *c.QueueLimit > l.QueueLimit:
		return schema.Errorf(schema.CodeBadRequest, "queue_limit: at most %d for tenant %s (the operator's limit), got %d", l.QueueLimit, tenant, *c.QueueLimit)
	case c.Weight != nil && *c.Weight > l.Weight:
		return schema.Errorf(schema.CodeBadRequest, "weight: at most %g for tenant %s (the operator's limit), got %g", l.Weight, tenant, *c.Weight)
	case c.RateLimit != nil && l.RateLimit > 0 && (*c.RateLimit <= 0 || *c.RateLimit > l.RateLimit):
		return schema.Errorf(schema.CodeBadRequest, "rate_limit: at most %g requests/s for tenant %s (the operator's limit), got %g", l.RateLimit, tenant, *c.RateLimit)
	}
	return nil
}

// queueLimit is the queue limit that applies (0: no cap): the tenant's
// own when it is lower than the ceiling.
func (l Ceilings) queueLimit(s schema.Settings) int {
	if s.QueueLimit > 0 && (l.QueueLimit <= 0 || s.QueueLimit < l.QueueLimit) {
		return s.QueueLimit
	}
	return l.QueueLimit
}

// weight is the scheduling weight that applies (settings stored before
// the ceiling was lowered are held to it).
func (l Ceilings) weight(s schema.Settings) float64 {
	return min(weightOf(s), l.Weight)
}

// rateLimit is the rate limit that applies (0: none).
func (l Ceilings) rateLimit(s schema.Settings) float64 {
	if l.RateLimit > 0 && (s.RateLimit <= 0 || s.RateLimit > l.RateLimit) {
		return l.RateLimit
	}
	return s.RateLimit
}

// Agent serves requests. Create it with New and run it with Run.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	topics   schema.Topics
	models   *modelSet
	sched    *scheduler
	client   brokerConn
	intake   *intakeQueue
	defaults defaults // from cfg, for admit
	// intakeWake carries a runner slot taken in intake to a parked intake
	// runner (runIntakeLoop); it holds intakeRunners tokens.
	intakeWake chan struct{}
	results    *results
	running    atomic.Int32 // stages running now (workers and inline)
	// tightSeen is when the last request with a latency bound under
	// tightLatencyMS was admitted (Unix ns; MinProcs).
	tightSeen atomic.Int64
	hist      *historyWriter
	metrics   *Metrics

	tenants *tenantTable
	control *control

	// dedupe knows the request ids answered or in flight.
	dedupe *dedupeIndex
	active sync.WaitGroup // answers queued and not yet settled

	// queueDelay is an exponentially weighted mean of how long a stage
	// waits in the scheduler (float64 bits), for load-aware policies.
	queueDelay atomic.Uint64

	ready     atomic.Bool
	readyCh   chan struct{}
	connected chan struct{} // closed once client is set
	runDone   chan struct{}
	stopping  atomic.Bool // intake closed: deliveries stay unacknowledged for the next session
	started   time.Time
}

// brokerConn is the agent's connection to its broker: an MQTT client
// (broker.Client) or, serving the broker of its own process, a
// broker.Local.
type brokerConn interface {
	Connected() bool
	Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error
	PublishAsync(topic string, qos byte, retained bool, payload []byte) *broker.Pending
	Corked(fn func())
	Close()
}

// ackDelay is how long the agent's acknowledgements of requests may wait
// for the next packet it writes (broker.ClientConfig.AckDelay): under load
// that is the next result's publish, so a request costs one write(2) to
// the broker instead of two.
const ackDelay = time.Millisecond

// New loads the models (profiling those without a stored profile for this
// device) and returns an agent ready to Run.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	// Repeated warnings become one line per interval with a count.
	cfg.Logger = slogx.Collapse(cfg.Logger, slogx.DefaultEvery)
	a := &Agent{
		cfg: cfg, log: cfg.Logger, topics: cfg.Topics,
		models: newModelSet(),
		sched:  newScheduler(cfg.FairnessWindow),
		intake: newIntakeQueue(intakeRunners, cfg.MaxInflight),
		defaults: defaults{model: cfg.DefaultModel, policy: cfg.DefaultPolicy, conditions: cfg.DefaultConditions,
			infeasible: cfg.Infeasible},
		intakeWake: make(chan struct{}, intakeRunners),
		tenants:    newTenantTable(cfg.MaxTenants, cfg.ceilings),
		metrics:    newMetrics(),
		readyCh:    make(chan struct{}),
		connected:  make(chan struct{}),
		runDone:    make(chan struct{}),
	}
	a.dedupe = newDedupeIndex(cfg.Store, a.log)
	a.control = &control{tenants: a.tenants, policies: cfg.Policies, maxPayload: cfg.MaxPayload,
		checkModel: a.checkControlModel, store: cfg.Store, setWeight: a.sched.setWeight,
		publish: a.publishState, log: a.log, metrics: a.metrics}
	a.results = newResults(cfg.Store, a.dedupe, cfg.DedupeTTL, a.log, a.metrics.storeErrors, a.answered)
	a.sched.setWorkers(cfg.Workers)
	if err := a.loadModels(ctx); err != nil {
		a.models.closeAll()
		return nil, err
	}
	if !a.models.has(cfg.DefaultModel) {
		a.models.closeAll()
		return nil, fmt.Errorf("agent: default model %q is not in the zoo", cfg.DefaultModel)
	}
	stored, err := cfg.Store.Tenants()
	if err != nil {
		a.models.closeAll()
		return nil, fmt.Errorf("agent: read tenant settings: %w", err)
	}
	for name, set := range cfg.TenantDefaults {
		if _, ok := stored[name]; !ok {
			stored[name] = set
		}
	}
	for name, set := range stored {
		t := a.tenants.load(name, set)
		a.sched.setWeight(name, t.ceil.weight(t.settings))
	}
	a.hist = newHistoryWriter(cfg.Store, cfg.HistoryTTL, cfg.HistoryMaxRecords, a.log, a.metrics)
	a.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "delen_store_bytes",
		Help: "Size of the store on disk (Badger's LSM tree and value log, the dedupe journal and the history log)."}, func() float64 { return float64(cfg.Store.Size()) }))
	a.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "delen_dedupe_records",
		Help: "Dedupe records indexed in the store's dedupe journal, expired ones until their segment file is deleted (0 for an in-memory store)."},
		func() float64 { return float64(cfg.Store.DedupeRecords()) }))
	a.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "delen_history_log_bytes",
		Help: "Size of the store's history log on disk (its segment files; 0 for an in-memory store)."},
		func() float64 { return float64(cfg.Store.HistoryLog().Bytes) }))
	a.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "delen_history_log_segments",
		Help: "Segment files of the store's history log, the one written to included (0 for an in-memory store)."},
		func() float64 { return float64(cfg.Store.HistoryLog().Segments) }))
	a.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "delen_history_records",
		Help: "History records indexed in the store's history log, expired ones until the next upkeep round (10 s; 0 for an in-memory store)."},
		func() float64 { return float64(cfg.Store.HistoryLog().Records) }))
	a.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "delen_store_persistent",
		Help: "1 when the store is on disk; 0 when it is in memory (a read-only data folder): history, dedupe records and settings changes are lost at exit."},
		func() float64 {
			if cfg.Store.InMemory() {
				return 0
			}
			return 1
		}))
	a.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "delen_intake_waiting",
		Help: "Requests received and not yet decoded, all tenants."}, func() float64 { return float64(a.intake.len()) }))
	a.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "delen_inflight_requests",
		Help: "Requests taken from the broker and not yet answered (at most the intake window, MaxInflight)."}, func() float64 { return float64(a.intake.inWindow()) }))
	return a, nil
}

// observeQueueDelay folds one stage's wait into the running mean.
func (a *Agent) observeQueueDelay(d time.Duration) {
	const alpha = 0.1
	v := ms(d)
	for {
		old := a.queueDelay.Load()
		mean := math.Float64frombits(old)
		next := mean + alpha*(v-mean)
		if old == 0 {
			next = v
		}
		if a.queueDelay.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// QueueDelayMS is the running mean of a stage's wait in the scheduler.
func (a *Agent) QueueDelayMS() float64 { return math.Float64frombits(a.queueDelay.Load()) }

func weightOf(s schema.Settings) float64 {
	if s.Weight > 0 {
		return s.Weight
	}
	return 1
}

func (a *Agent) loadModels(ctx context.Context) error {
	list, err := a.cfg.Zoo.List()
	if err != nil {
		a.log.Warn("some model folders could not be read", "err", err)
	}
	for _, e := range list {
		sm, err := a.loadOne(ctx, e)
		if err != nil {
			var pe *profileError
			if errors.As(err, &pe) {
				return err
			}
			a.log.Error("model not loaded", "model", e.Name, "source", e.Source, "err", err)
			continue
		}
		a.models.put(e.Name, sm)
	}
	return nil
}

// profileError is a model that loaded but could not be profiled.
type profileError struct{ err error }

func (e *profileError) Error() string { return e.err.Error() }
func (e *profileError) Unwrap() error { return e.err }

// loadOne loads a zoo entry and its profile for this device (profiling it
// when the store has none).
func (a *Agent) loadOne(ctx context.Context, e zoo.Entry) (*servedModel, error) {
	m, err := e.Load(models.LoadOptions{Provider: a.cfg.Provider, Logger: a.log})
	if err != nil {
		return nil, err
	}
	device := profile.DeviceID()
	sm := &servedModel{name: e.Name, m: m, live: newLiveProfile(m.Exits()), stageSeconds: make(stageMetrics, m.Exits())}
	p, err := a.cfg.Store.Profile(m.Manifest.Name, m.Manifest.Version, device)
	if errors.Is(err, store.ErrNotFound) {
		a.log.Info("profiling model", "model", m.Manifest.ID(), "device", device, "runs", a.cfg.ProfileRuns)
		data, split := zoo.CalibrationData(m.Manifest)
		p, err = models.Profile(ctx, m, a.cfg.Meter, models.ProfileOptions{
			Runs: a.cfg.ProfileRuns, Device: device, Data: data, DataSplit: split,
			Progress: func(s string) { a.log.Info("profiling", "model", m.Manifest.ID(), "progress", s) },
		})
		if err == nil {
			err = a.cfg.Store.PutProfile(p)
		}
	}
	if err != nil {
		m.Close()
		return nil, &profileError{fmt.Errorf("profile %s: %w", e.Name, err)}
	}
	sm.profile.Store(p)
	a.log.Info("model loaded", "model", m.Manifest.ID(), "exits", m.Exits(), "source", e.Source, "provider", m.Provider)
	return sm, nil
}

// modelName is the model a request serves on: its own, else the tenant's
// setting, else the agent's default.
func (a *Agent) modelName(names ...string) string {
	return first(append(names, a.defaults.model)...)
}

// Reload brings the served models in line with the zoo: a new model folder
// is loaded (and profiled if needed), a model whose version changed is
// replaced, a model whose folder is gone is removed (but never the default
// model). Requests in flight finish on the version they started on; the old
// version closes after them. It reports what changed.
func (a *Agent) Reload(ctx context.Context) (added, replaced, removed []string, err error) {
	list, lerr := a.cfg.Zoo.List()
	if lerr != nil {
		a.log.Warn("some model folders could not be read", "err", lerr)
	}
	seen := map[string]bool{}
	for _, e := range list {
		seen[e.Name] = true
		if v, ok := a.models.version(e.Name); ok && v == e.Manifest.Version {
			continue
		}
		sm, err := a.loadOne(ctx, e)
		if err != nil {
			a.log.Error("model not (re)loaded; the current version stays", "model", e.Name, "err", err)
			continue
		}
		if old := a.models.put(e.Name, sm); old != nil {
			replaced = append(replaced, e.Name)
			a.log.Info("model replaced", "model", e.Name, "old", old.m.Manifest.Version, "new", e.Manifest.Version)
		} else {
			added = append(added, e.Name)
		}
	}
	if lerr == nil {
		removed = a.models.removeUnless(func(name string) bool { return seen[name] || name == a.cfg.DefaultModel })
		for _, name := range removed {
			a.log.Info("model removed", "model", name)
		}
	}
	return added, replaced, removed, nil
}

// zooFingerprint names every model folder and version of the zoo, to notice
// changes cheaply.
func (a *Agent) zooFingerprint() string {
	list, _ := a.cfg.Zoo.List()
	var b strings.Builder
	for _, e := range list {
		b.WriteString(e.Name + "@" + e.Manifest.Version + " ")
	}
	return b.String()
}

// persistProfiles stores the profiles that live runs have refreshed.
func (a *Agent) persistProfiles() {
	for _, sm := range a.models.all() {
		if !sm.live.takeDirty() {
			continue
		}
		if err := a.cfg.Store.PutProfile(sm.profile.Load()); err != nil {
			a.metrics.storeErrors.Inc()
			a.log.Warn("live profile not persisted", "model", sm.name, "err", err)
		}
	}
}

// Profile returns the profile the agent currently uses for model name.
func (a *Agent) Profile(name string) *profile.Profile {
	if sm := a.models.get(name); sm != nil {
		defer sm.release()
		return sm.profile.Load()
	}
	return nil
}

// Metrics exposes the agent's Prometheus metrics.
func (a *Agent) Metrics() *Metrics { return a.metrics }

// Ready reports whether the agent is connected and subscribed.
func (a *Agent) Ready() bool { return a.ready.Load() && a.client != nil && a.client.Connected() }

// WaitReady blocks until the agent is connected and subscribed, Run has
// returned, or ctx ends.
func (a *Agent) WaitReady(ctx context.Context) error {
	select {
	case <-a.readyCh:
		return nil
	case <-a.runDone:
		return errors.New("agent: stopped before it was ready")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PeakInflight is the most requests the agent has held at once since it
// was created (taken from the broker and not yet answered); it never
// exceeds Config.MaxInflight.
func (a *Agent) PeakInflight() int { return a.intake.peakWindow() }

// ID is the agent's id.
func (a *Agent) ID() string { return a.cfg.AgentID }

// Run connects to the broker, serves until ctx is cancelled, then shuts
// down gracefully: stop intake, finish the requests in flight, publish
// "offline", flush history.
func (a *Agent) Run(ctx context.Context) error {
	defer close(a.runDone)
	defer a.models.closeAll()
	a.started = time.Now()
	offline, _ := statusPayload("offline", a, nil)
	var workers sync.WaitGroup
	for i := 0; i < a.cfg.Workers; i++ {
		workers.Add(1)
		go func() { defer workers.Done(); a.work() }()
	}
	histDone := make(chan struct{})
	go func() { defer close(histDone); a.hist.run() }()
	// Intake runners outlive the client: a release after the drain may
	// still hand them a slot, and they find the agent stopping.
	quitIntake := make(chan struct{})
	defer close(quitIntake)
	for range intakeRunners {
		go a.runIntakeLoop(quitIntake)
	}
	reqFilter := a.topics.RequestsFilter()
	if a.cfg.ShareGroup != "" {
		reqFilter = a.topics.SharedRequestsFilter(a.cfg.ShareGroup)
	}
	client, err := a.connect(ctx, reqFilter, offline)
	if err != nil {
		a.stopping.Store(true)
		a.sched.close()
		workers.Wait()
		a.hist.close()
		<-histDone
		return fmt.Errorf("agent: connect to %s: %w", a.cfg.BrokerURL, err)
	}
	a.client = client
	close(a.connected)
	a.metrics.brokerUp.Set(1)
	a.results.start(clientPublisher{client})
	a.publishStatus(ctx, "online")
	a.ready.Store(true)
	close(a.readyCh)
	a.log.Info("agent ready", "agent", a.cfg.AgentID, "broker", a.cfg.BrokerURL, "requests", reqFilter,
		"models", len(a.models.all()), "workers", a.cfg.Workers)

	tick := time.NewTicker(a.cfg.StatusInterval)
	defer tick.Stop()
	zooSeen := a.zooFingerprint()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			a.publishStatus(ctx, "online")
			a.persistProfiles()
			a.publishLiveStates()
			if fp := a.zooFingerprint(); fp != zooSeen {
				zooSeen = fp
				a.Reload(ctx)
			}
		}
	}

	// Shutdown: stop intake, drain, publish offline, flush. The requests
	// subscription stays in the persistent session, so the broker keeps
	// what arrives from now on for the next start; deliveries that arrive
	// during the drain are left unacknowledged and are redelivered then.
	a.ready.Store(false)
	a.stopping.Store(true)
	a.log.Info("agent stopping: no new requests, finishing those in flight")
	drained := make(chan struct{})
	go func() { a.active.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(a.cfg.DrainTimeout):
		a.log.Warn("drain timed out; unanswered requests stay unacknowledged and will be redelivered")
	}
	a.sched.close()
	workers.Wait()
	a.results.close()
	select {
	case <-a.results.stopped:
	case <-time.After(a.cfg.DrainTimeout):
		// PUBACKs that do not come: closing the client fails their tokens.
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	a.publishStatusCtx(shutdownCtx, "offline")
	client.Close()
	<-a.results.stopped
	a.persistProfiles()
	a.hist.close()
	<-histDone
	a.log.Info("agent stopped")
	return nil
}

// connect opens the agent's connection to its broker: attached to the
// broker of this process when there is one, an MQTT client otherwise.
// The subscriptions' handlers are in place before the connection, so a
// backlog that the broker sends right away reaches intake (and waits
// there, in the window) instead of being dropped.
func (a *Agent) connect(ctx context.Context, reqFilter string, offline []byte) (brokerConn, error) {
	subs := []broker.Subscription{
		{Filter: a.topics.ControlFilter(), QoS: 1, Handler: a.onControl},
		{Filter: reqFilter, QoS: 1, Handler: a.onRequest},
	}
	if a.cfg.Embedded != nil && a.cfg.ShareGroup == "" {
		l, err := a.cfg.Embedded.Attach(broker.LocalConfig{ClientID: a.cfg.AgentID, Subscriptions: subs, Logger: a.log})
		if err != nil {
			return nil, err
		}
		a.log.Info("broker attached in process", "broker", a.cfg.BrokerURL)
		return l, nil
	}
	c, err := broker.Dial(ctx, broker.ClientConfig{
		Subscriptions: subs,
		URL:           a.cfg.BrokerURL, Dial: a.cfg.BrokerDial, ClientID: a.cfg.AgentID, Username: a.cfg.Username, Password: a.cfg.Password,
		TLS: a.cfg.TLS, CleanSession: false, Logger: a.log, AckDelay: ackDelay,
		Will: &broker.Will{Topic: a.topics.AgentStatus(a.cfg.AgentID), Payload: offline, QoS: 1, Retained: true},
		OnConnect: func() {
			a.metrics.brokerUp.Set(1)
			a.log.Info("broker connected", "broker", a.cfg.BrokerURL)
		},
		OnConnectionLost: func(err error) {
			a.metrics.brokerUp.Set(0)
			a.log.Warn("broker connection lost", "err", err)
		},
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// defaultCompanyWait and defaultCompanySize are Config.CompanyWait's and
// Config.CompanySize's defaults: on mnist-ee's first stage in service a
// request's share of a batch of 6 costs about 0.4× what the stage costs
// alone, and its tail falls further (docs/architecture.md, "Energy").
const (
	defaultCompanyWait = 40 * time.Millisecond
	defaultCompanySize = 6
)
