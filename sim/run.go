package sim

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/schema"
)

// Defaults of RunOptions.
const (
	// DefaultTimeout is how long a request may wait for its result before
	// it counts as lost.
	DefaultTimeout = 5 * time.Second
	// DefaultDrain bounds the wait between compare variants.
	DefaultDrain = 30 * time.Second
)

// RunOptions configures Run.
type RunOptions struct {
	// BrokerURL is the MQTT broker the agent listens on. Required.
	BrokerURL string
	// Username and Password, if the broker wants them.
	Username, Password string
	// Prefix is the topic prefix (default "delen").
	Prefix string
	// Timeout: a request without a result this long after it was sent is
	// lost (default DefaultTimeout). It also bounds the wait for the
	// agent to confirm a tenant's initial control.
	Timeout time.Duration
	// Only, when set, runs only the runs (compare variants, or matrix
	// runs such as b7-d100-default) whose name it matches.
	Only *regexp.Regexp
	// Workers is how many stage workers the agent runs, for a matrix's
	// hindsight bound (default: the CPUs of this machine).
	Workers int
	// Drain bounds the wait, between compare variants, for the previous
	// variant's unanswered requests (default DefaultDrain).
	Drain time.Duration
	// Progress, when set, receives a snapshot about once a second and
	// once at the end of every run; never concurrently.
	Progress func(Snapshot)
	// Logger receives the MQTT clients' logs; nil discards them.
	Logger *slog.Logger
}

// Run plays the scenario against the agent behind opt.BrokerURL (once per
// compare variant) and returns the report. When ctx ends, sending stops and
// Run returns the report so far with ctx's error.
func Run(ctx context.Context, s *Scenario, opt RunOptions) (*Report, error) {
	if opt.BrokerURL == "" {
		return nil, errors.New("sim: BrokerURL is required")
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("sim: scenario %s: %w", s.Name, err)
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.Drain <= 0 {
		opt.Drain = DefaultDrain
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	topics := schema.Topics{Prefix: opt.Prefix}
	if err := topics.Validate(); err != nil {
		return nil, fmt.Errorf("sim: prefix: %w", err)
	}
	rep := &Report{Scenario: s, Started: time.Now(), Machine: hostMachine(),
		Options: ReportOptions{BrokerURL: opt.BrokerURL, Prefix: topics.Prefix, Timeout: Duration(opt.Timeout)}}
	if rep.Options.Prefix == "" {
		rep.Options.Prefix = schema.DefaultPrefix
	}

	// The agents' retained status tells which models they serve.
	agents := &agentWatch{m: map[string]AgentInfo{}}
	if c, err := dial(ctx, opt, "st"); err == nil {
		_ = c.Subscribe(topics.AgentStatusFilter(), 1, agents.onStatus(topics))
		defer c.Close()
	} else {
		return nil, fmt.Errorf("sim: %w", err)
	}

	plans, err := s.plan(opt.Only)
	if err != nil {
		return nil, fmt.Errorf("sim: scenario %s: %w", s.Name, err)
	}
	var runErr error
	for i, pl := range plans {
		rr, err := runOnce(ctx, pl.scenario, pl.name, topics, opt, i < len(plans)-1)
		if rr != nil {
			rr.Arrival, rr.DeadlineMS, rr.Base = pl.arrival, pl.deadlineMS, pl.base
			rep.Runs = append(rep.Runs, *rr)
		}
		if err != nil {
			runErr = err
			break
		}
	}
	if s.Matrix != nil {
		rep.Bounds = boundsTable(s, rep.Runs, opt.workers())
	}
	rep.Machine.Agents, rep.Machine.Models = agents.list()
	seen := map[string]bool{}
	for _, m := range rep.Machine.Models {
		seen[m] = true
	}
	for _, run := range rep.Runs {
		for _, q := range run.Requests {
			if q.Model != "" && !seen[q.Model] {
				seen[q.Model] = true
				rep.Machine.Models = append(rep.Machine.Models, q.Model)
			}
		}
	}
	sort.Strings(rep.Machine.Models)
	return rep, runErr
}

func hostMachine() Machine {
	h, _ := os.Hostname()
	return Machine{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		Hostname: h, Agents: []AgentInfo{}, Models: []string{}}
}

// agentWatch collects agents' retained status messages.
type agentWatch struct {
	mu sync.Mutex
	m  map[string]AgentInfo
}

func (w *agentWatch) onStatus(topics schema.Topics) func(broker.Message) {
	return func(m broker.Message) {
		m.Ack()
		id, kind, err := topics.Parse(m.Topic())
		if err != nil || kind != schema.KindStatus {
			return
		}
		var st struct {
			Status string   `json:"status"`
			Models []string `json:"models"`
		}
		if json.Unmarshal(m.Payload(), &st) != nil {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		info := w.m[id]
		info.ID, info.Status = id, st.Status
		if len(st.Models) > 0 {
			info.Models = slices.Sorted(slices.Values(st.Models))
		}
		w.m[id] = info
	}
}

func (w *agentWatch) list() ([]AgentInfo, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	agents := []AgentInfo{}
	models := []string{}
	seen := map[string]bool{}
	for _, a := range w.m {
		agents = append(agents, a)
		if a.Status != "online" {
			continue
		}
		for _, m := range a.Models {
			if !seen[m] {
				seen[m] = true
				models = append(models, m)
			}
		}
	}
	slices.SortFunc(agents, func(a, b AgentInfo) int { return cmp.Compare(a.ID, b.ID) })
	sort.Strings(models)
	return agents, models
}

// clientSeq distinguishes the clients of one process.
var clientSeq atomic.Int64

func dial(ctx context.Context, opt RunOptions, role string) (*broker.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	id := fmt.Sprintf("delen-sim-%d-%s-%d-%s", os.Getpid(), role, clientSeq.Add(1), randomHex(3))
	return broker.Dial(dctx, broker.ClientConfig{URL: opt.BrokerURL, ClientID: id, CleanSession: true,
		Username: opt.Username, Password: opt.Password, Logger: opt.Logger})
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// run is one run of a scenario (one variant) in progress.
type run struct {
	variant  string
	opt      RunOptions
	topics   schema.Topics
	tenants  []*tenantRun
	start    time.Time
	duration time.Duration

	dispatched atomic.Int64 // requests handed to a publishing goroutine
	failed     atomic.Int64 // publishes that failed
	answered   atomic.Int64 // first results
	notify     chan struct{}
	waiting    atomic.Bool
}

// event is one thing the scheduler does at a time: send a request of a
// tenant (control < 0) or publish one of its controls.
type event struct {
	at      time.Duration
	tenant  int
	seq     int
	control int
}

func runOnce(ctx context.Context, s *Scenario, variant string, topics schema.Topics, opt RunOptions, drain bool) (*RunReport, error) {
	r := &run{variant: variant, opt: opt, topics: topics, duration: s.Duration.D(), notify: make(chan struct{}, 1)}
	runID := randomHex(4)
	rr := &RunReport{Variant: variant, RunID: runID}

	var events []event
	for i := range s.Tenants {
		t := &s.Tenants[i]
		rng := mrand.New(mrand.NewPCG(uint64(s.Seed), uint64(i)+1))
		times, err := t.Arrival.Schedule(s.Duration.D(), rng, s.dir)
		if err != nil {
			return nil, fmt.Errorf("sim: tenants[%d] (%s): arrival: %w", i, t.Name, err)
		}
		tr, err := newTenantRun(r, t, i, times, runID, s.Seed)
		if err != nil {
			return nil, fmt.Errorf("sim: tenants[%d] (%s): %w", i, t.Name, err)
		}
		r.tenants = append(r.tenants, tr)
		for seq, at := range times {
			events = append(events, event{at: at, tenant: i, seq: seq, control: -1})
		}
		for j, c := range t.Controls {
			if c.At > 0 {
				events = append(events, event{at: c.At.D(), tenant: i, control: j})
			}
		}
	}
	slices.SortStableFunc(events, func(a, b event) int { return cmp.Compare(a.at, b.at) })

	defer func() {
		var wg sync.WaitGroup
		for _, tr := range r.tenants {
			if tr.client != nil {
				wg.Add(1)
				go func() { defer wg.Done(); tr.client.Close() }()
			}
		}
		wg.Wait()
	}()
	for _, tr := range r.tenants {
		if err := tr.connect(ctx); err != nil {
			return nil, fmt.Errorf("sim: tenant %s: %w", tr.spec.Name, err)
		}
	}
	// Initial controls: the resets, confirmed, then the controls at 0 s,
	// confirmed (the agent handles control messages concurrently, so the
	// second must not overtake the first).
	for step := 0; step < 2; step++ {
		for _, tr := range r.tenants {
			reset, first := tr.initialControls()
			if c := []*schema.Control{reset, first}[step]; c != nil {
				tr.publishControl(ctx, 0, c)
			}
		}
		for _, tr := range r.tenants {
			tr.awaitControls(ctx, opt.Timeout)
		}
	}

	r.start = time.Now()
	rr.Started = r.start
	var progressWG sync.WaitGroup
	stopProgress := make(chan struct{})
	if opt.Progress != nil {
		progressWG.Add(1)
		go func() {
			defer progressWG.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					opt.Progress(r.snapshot(false))
				case <-stopProgress:
					return
				}
			}
		}()
	}

	// The scheduler loop: every send at its time, in a goroutine of its
	// own, so nothing the broker or agent does delays the next one.
	var pubWG sync.WaitGroup
	var maxLag time.Duration
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	cancelled := false
send:
	for i := 0; i < len(events); {
		ev := events[i]
		now := time.Since(r.start)
		if wait := ev.at - now; wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				cancelled = true
				break send
			}
			continue
		}
		maxLag = max(maxLag, now-ev.at)
		tr := r.tenants[ev.tenant]
		pubWG.Add(1)
		if ev.control >= 0 {
			c := tr.spec.Controls[ev.control]
			go func() {
				defer pubWG.Done()
				tr.publishControl(ctx, ev.at, c.Schema())
			}()
		} else {
			r.dispatched.Add(1)
			go func() {
				defer pubWG.Done()
				tr.send(ctx, ev.seq)
			}()
		}
		i++
	}
	timer.Stop()
	rr.SendS = time.Since(r.start).Seconds()
	rr.MaxSendLagMS = float64(maxLag.Microseconds()) / 1000
	pubWG.Wait()
	r.waiting.Store(true)

	// Wait until every request is answered or lost.
	if !cancelled {
		r.await(ctx, time.Time{})
	}
	end := time.Now()
	if opt.Progress != nil {
		close(stopProgress)
		progressWG.Wait()
		snap := r.snapshot(true)
		opt.Progress(snap)
	}
	rr.WallS = end.Sub(r.start).Seconds()
	for _, tr := range r.tenants {
		sum, recs, ctl, warn := tr.summarize(end)
		rr.Tenants = append(rr.Tenants, sum)
		rr.Requests = append(rr.Requests, recs...)
		rr.Controls = append(rr.Controls, ctl...)
		rr.Warnings = append(rr.Warnings, warn...)
	}
	if rr.Controls == nil {
		rr.Controls = []ControlEvent{}
	}
	if err := ctx.Err(); err != nil {
		return rr, err
	}
	if drain {
		// Let the agent finish this variant's backlog before the next.
		if !r.await(ctx, time.Now().Add(opt.Drain)) {
			rr.Warnings = append(rr.Warnings, fmt.Sprintf("%d requests still unanswered after draining for %s; the next variant may share the agent with them",
				r.dispatched.Load()-r.failed.Load()-r.answered.Load(), opt.Drain))
		}
	}
	return rr, nil
}

// await waits until every request sent has a result; with a zero until,
// also until the last unanswered request's timeout, else until `until`. It
// reports whether every request was answered.
func (r *run) await(ctx context.Context, until time.Time) bool {
	done := func() bool { return r.answered.Load() >= r.dispatched.Load()-r.failed.Load() }
	if until.IsZero() {
		until = r.pendingDeadline()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for !done() {
		wait := time.Until(until)
		if wait <= 0 {
			return done()
		}
		timer.Reset(wait)
		select {
		case <-r.notify:
		case <-timer.C:
		case <-ctx.Done():
			return done()
		}
	}
	return true
}

// pendingDeadline is the latest timeout of an unanswered request.
func (r *run) pendingDeadline() time.Time {
	var last int64
	for _, tr := range r.tenants {
		tr.mu.Lock()
		for i := range tr.reqs {
			q := &tr.reqs[i]
			if q.sentAt != 0 && q.recvAt == 0 && !q.failed {
				last = max(last, q.sentAt)
			}
		}
		tr.mu.Unlock()
	}
	if last == 0 {
		return time.Now()
	}
	return time.UnixMicro(last).Add(r.opt.Timeout)
}

func (r *run) snapshot(done bool) Snapshot {
	now := time.Now()
	s := Snapshot{Variant: r.variant, Elapsed: now.Sub(r.start), Duration: r.duration, Waiting: r.waiting.Load(), Done: done}
	var recent []float64
	timeout := r.opt.Timeout.Microseconds()
	for _, tr := range r.tenants {
		ts := TenantSnapshot{Tenant: tr.spec.Name}
		tr.mu.Lock()
		for i := range tr.reqs {
			q := &tr.reqs[i]
			if q.sentAt == 0 || (q.failed && q.recvAt == 0) {
				continue
			}
			ts.Sent++
			switch {
			case q.recvAt != 0 && q.recvAt-q.sentAt <= timeout:
				ts.Answered++
				switch q.res.status {
				case schema.StatusOK:
					s.OK++
				case schema.StatusLate:
					s.Late++
				case schema.StatusShed:
					s.Shed++
				default:
					s.Error++
				}
			case q.recvAt != 0 || now.UnixMicro()-q.sentAt > timeout:
				ts.Lost++
			default:
				ts.Pending++
			}
		}
		recent = append(recent, tr.recent...)
		tr.recent = tr.recent[:0]
		tr.mu.Unlock()
		s.Sent += ts.Sent
		s.Answered += ts.Answered
		s.Lost += ts.Lost
		s.Pending += ts.Pending
		s.Tenants = append(s.Tenants, ts)
	}
	if len(recent) > 0 {
		slices.Sort(recent)
		s.RecentP95MS = profile.Quantile(recent, 0.95)
	}
	return s
}

// reqState is one scheduled request of a tenant.
type reqState struct {
	at     time.Duration
	sentAt int64 // unix µs; 0 until sent
	failed bool  // the publish failed
	recvAt int64 // unix µs of the first result; 0 until then
	dups   int   // results after the first
	res    result
}

// result is what the report keeps of a schema.Result.
type result struct {
	status, code, model string
	exit                int
	class               int // -1: none
	energyMJ            float64
	agentLatencyMS      float64
	computeMS, queueMS  float64
	accuracyEst         float64
	confidence          float64
	boundMet            int // -1: absent
}

// tenantRun is one tenant of a run: its client, its requests and results.
type tenantRun struct {
	r        *run
	spec     *Tenant
	index    int
	client   *broker.Client
	idPrefix string
	enc      schema.Encoding
	qos      byte
	bound    schema.Bound
	images   *mnist.Set
	random   []schema.Tensor

	mu       sync.Mutex
	reqs     []reqState
	recent   []float64 // end-to-end latencies since the last snapshot
	foreign  int
	controls []*controlEvent
}

// controlEvent is a control message waiting for, or given, the agent's
// answer on the state topic.
type controlEvent struct {
	ev     ControlEvent
	want   *schema.Control
	done   chan struct{}
	closed bool
}

func newTenantRun(r *run, t *Tenant, index int, times []time.Duration, runID string, seed int64) (*tenantRun, error) {
	tr := &tenantRun{r: r, spec: t, index: index, idPrefix: "sim-" + runID, qos: 1, bound: t.Bound.Schema()}
	if t.QoS != nil {
		tr.qos = byte(*t.QoS)
	}
	if t.Encoding == "json" {
		tr.enc = schema.JSON
	}
	tr.reqs = make([]reqState, len(times))
	for i, at := range times {
		tr.reqs[i].at = at
	}
	switch t.Input.Source {
	case "", SourceMNIST:
		set, err := mnist.Test()
		if err != nil {
			return nil, err
		}
		tr.images = set
	case SourceRandom:
		shape := t.Input.Shape
		if len(shape) == 0 {
			shape = []int{3, 224, 224}
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		rng := mrand.New(mrand.NewPCG(uint64(seed), 1<<32+uint64(index)))
		for k := 0; k < 8; k++ {
			if t.Input.DType == schema.DTypeFloat32 {
				v := make([]float32, n)
				for i := range v {
					v[i] = rng.Float32()
				}
				tr.random = append(tr.random, schema.NewFloat32Tensor(shape, v))
			} else {
				v := make([]byte, n)
				for i := range v {
					v[i] = byte(rng.IntN(256))
				}
				tr.random = append(tr.random, schema.NewUint8Tensor(shape, v))
			}
		}
	}
	return tr, nil
}

func (tr *tenantRun) connect(ctx context.Context) error {
	c, err := dial(ctx, tr.r.opt, strconv.Itoa(tr.index))
	if err != nil {
		return err
	}
	tr.client = c
	if err := c.Subscribe(tr.r.topics.Results(tr.spec.Name), 1, tr.onResult); err != nil {
		return err
	}
	return c.Subscribe(tr.r.topics.State(tr.spec.Name), 1, tr.onState)
}

// request builds request seq.
func (tr *tenantRun) request(seq int) *schema.Request {
	req := &schema.Request{ID: tr.idPrefix + "-" + strconv.Itoa(seq), Model: tr.spec.Model, Policy: tr.spec.Policy, Bound: tr.bound}
	if tr.images != nil {
		i := (tr.spec.Input.Offset + seq) % tr.images.Len()
		label := tr.images.Label(i)
		req.Label = &label
		shape := []int{1, mnist.Side, mnist.Side}
		if tr.spec.Input.DType == schema.DTypeFloat32 {
			req.Input = schema.NewFloat32Tensor(shape, tr.images.Float(i))
		} else {
			req.Input = schema.NewUint8Tensor(shape, tr.images.Images[i])
		}
	} else {
		req.Input = tr.random[seq%len(tr.random)]
	}
	return req
}

// send publishes request seq now.
func (tr *tenantRun) send(ctx context.Context, seq int) {
	if ctx.Err() != nil {
		tr.r.dispatched.Add(-1) // cancelled before it went out: never sent
		return
	}
	req := tr.request(seq)
	tr.mu.Lock()
	q := &tr.reqs[seq]
	q.sentAt = time.Now().UnixMicro()
	req.SentAt = q.sentAt
	tr.mu.Unlock()
	payload, err := schema.EncodeRequest(req, tr.enc)
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, tr.r.opt.Timeout)
		err = tr.client.Publish(pctx, tr.r.topics.Requests(tr.spec.Name), tr.qos, false, payload)
		cancel()
	}
	if err != nil {
		tr.mu.Lock()
		tr.reqs[seq].failed = true
		answered := tr.reqs[seq].recvAt != 0
		tr.mu.Unlock()
		if !answered {
			tr.r.failed.Add(1)
			tr.r.signal()
		}
	}
}

func (r *run) signal() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// onResult records a result.
func (tr *tenantRun) onResult(m broker.Message) {
	recv := time.Now().UnixMicro()
	m.Ack()
	res, _, err := schema.DecodeResult(m.Payload(), 0)
	if err != nil {
		tr.mu.Lock()
		tr.foreign++
		tr.mu.Unlock()
		return
	}
	seq := -1
	if rest, ok := strings.CutPrefix(res.ID, tr.idPrefix+"-"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 && n < len(tr.reqs) {
			seq = n
		}
	}
	tr.mu.Lock()
	if seq < 0 || tr.reqs[seq].sentAt == 0 {
		tr.foreign++
		tr.mu.Unlock()
		return
	}
	q := &tr.reqs[seq]
	if q.recvAt != 0 {
		q.dups++
		tr.mu.Unlock()
		return
	}
	q.recvAt = recv
	q.res = result{status: res.Status, model: res.Model, exit: res.Exit, class: -1, energyMJ: res.EnergyMJ,
		agentLatencyMS: res.LatencyMS, computeMS: res.ComputeMS, queueMS: res.QueueMS, accuracyEst: res.AccuracyEst, confidence: res.Confidence, boundMet: -1}
	if res.Error != nil {
		q.res.code = res.Error.Code
	}
	if res.Class != nil {
		q.res.class = *res.Class
	}
	if res.BoundMet != nil {
		q.res.boundMet = 0
		if *res.BoundMet {
			q.res.boundMet = 1
		}
	}
	if len(tr.recent) < 1<<16 {
		tr.recent = append(tr.recent, float64(recv-q.sentAt)/1000)
	}
	failed := q.failed
	tr.mu.Unlock()
	if failed {
		// A publish reported as failed got through after all.
		tr.r.failed.Add(-1)
	}
	tr.r.answered.Add(1)
	tr.r.signal()
}

// initialControls are the controls published before the run: the reset
// of the tenant's settings (nil when the tenant keeps them) and its
// controls at 0 s merged into one (nil when there are none).
func (tr *tenantRun) initialControls() (reset, first *schema.Control) {
	if tr.spec.Reset == nil || *tr.spec.Reset {
		reset = schema.ResetControl()
	}
	for _, spec := range tr.spec.Controls {
		if spec.At != 0 {
			break
		}
		if first == nil {
			first = &schema.Control{}
		}
		first.Merge(spec.Schema())
	}
	return reset, first
}

// publishControl publishes c, retained, as JSON (so the agent's state
// answer is JSON too, with its refusal reason readable). A present empty
// Params (clear the parameters) is written as {}, which the schema encoder
// would drop.
func (tr *tenantRun) publishControl(ctx context.Context, at time.Duration, c *schema.Control) {
	payload, err := schema.EncodeControl(c, schema.JSON)
	if err == nil && c.Params != nil && len(c.Params) == 0 {
		var m map[string]json.RawMessage
		if err = json.Unmarshal(payload, &m); err == nil {
			m["params"] = json.RawMessage("{}")
			payload, err = json.Marshal(m)
		}
	}
	ce := &controlEvent{ev: ControlEvent{Tenant: tr.spec.Name, AtS: at.Seconds(), Control: payload, Result: "unconfirmed"},
		want: c, done: make(chan struct{})}
	if err != nil {
		ce.ev.Result, ce.ev.Error = "unsent", err.Error()
		ce.closed = true
		close(ce.done)
	}
	tr.mu.Lock()
	tr.controls = append(tr.controls, ce)
	tr.mu.Unlock()
	if err != nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, tr.r.opt.Timeout)
	defer cancel()
	if err := tr.client.Publish(pctx, tr.r.topics.Control(tr.spec.Name), 1, true, payload); err != nil {
		tr.mu.Lock()
		if !ce.closed {
			ce.ev.Result, ce.ev.Error = "unsent", err.Error()
			ce.closed = true
			close(ce.done)
		}
		tr.mu.Unlock()
	}
}

// awaitControls waits, bounded, until the agent has answered every
// control published so far.
func (tr *tenantRun) awaitControls(ctx context.Context, timeout time.Duration) {
	tr.mu.Lock()
	pending := slices.Clone(tr.controls)
	tr.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for _, ce := range pending {
		select {
		case <-ce.done:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// onState matches the agent's state answers to the controls published.
// Retained states predate the run and are ignored.
func (tr *tenantRun) onState(m broker.Message) {
	m.Ack()
	if m.Retained() {
		return
	}
	set, _, err := schema.DecodeSettings(m.Payload(), 0)
	if err != nil {
		return
	}
	var refused struct {
		Error *schema.Error `json:"error"`
	}
	_ = json.Unmarshal(m.Payload(), &refused)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, ce := range tr.controls {
		if ce.closed {
			continue
		}
		switch {
		case refused.Error != nil:
			ce.ev.Result, ce.ev.Error = "refused", refused.Error.Message
		case set.Reflects(ce.want):
			ce.ev.Result = "applied"
		default:
			continue
		}
		ce.closed = true
		close(ce.done)
		return
	}
}
