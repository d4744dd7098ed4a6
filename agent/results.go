package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/policies"
	"github.com/delen-edge/delen/schema"
)

// answer is one result on its way out: served jobs, error results and
// the stored answers to repeated ids all take this path.
type answer struct {
	tenant  string
	topic   string
	qos     byte
	payload []byte // encoded result; for a job, encoded by the committer
	// job is the served (or failed) request, nil for an error answered at
	// intake and for a duplicate answered from its dedupe record.
	job *job
	// msgs are the deliveries acknowledged once the result's PUBACK has
	// come; for a job they are taken from it when its group commits.
	msgs []broker.Message
	// code is an error answer's code, for the metrics.
	code string
	// deduped marks the answer to a repeated id.
	deduped bool

	pending pending
}

// publisher publishes asynchronously: the broker client in production
// (clientPublisher), a fake in the results step's unit tests.
type publisher interface {
	PublishAsync(topic string, qos byte, retained bool, payload []byte) pending
}

// pending is a publish on its way (broker.Pending): Done is closed when
// the broker acknowledged it or it failed, and Err then says which.
type pending interface {
	Done() <-chan struct{}
	Err() error
}

// clientPublisher publishes through the agent's broker connection,
// gathering the packets of one step into one write (corker).
type clientPublisher struct{ c brokerConn }

func (p clientPublisher) PublishAsync(topic string, qos byte, retained bool, payload []byte) pending {
	return p.c.PublishAsync(topic, qos, retained, payload)
}

func (p clientPublisher) Corked(fn func()) { p.c.Corked(fn) }

// dedupeStore is where the results path group-commits dedupe records:
// when PutDedupes returns nil they are durable (the store's journal) and
// found by lookups.
type dedupeStore interface {
	PutDedupes(es []store.DedupeEntry, ttl time.Duration) error
}

// results is the last step of the request path, after nats-server's
// pattern of many messages, one write: a committer takes everything that
// gathered while it was busy, stamps and encodes the jobs' results, and
// commits the group's dedupe records with one write to the store's dedupe
// journal (applied to Badger in the background); one of a few ackers then
// hands every result of the group to the MQTT client without waiting
// (paho tokens), waits for the PUBACKs in the order the results were
// published and only then acknowledges the requests and hands each
// answer to settled (the agent's accounting: metrics, history, the
// intake window). No goroutine waits per result.
//
// It knows nothing of the rest of the agent but what it is given: the
// store, the dedupe index, the publisher and settled; so it is
// unit-tested with fakes of the store and the publisher (results_test.go).
type results struct {
	store dedupeStore
	index *dedupeIndex
	ttl   time.Duration // of the dedupe records
	log   *slog.Logger
	// storeErrors counts groups whose records the store refused.
	storeErrors prometheus.Counter
	// settled is called once per answer, after its publish completed
	// (err: how) and its deliveries were acknowledged (err == nil) or
	// left for the broker to redeliver.
	settled func(an *answer, err error)
	pub     publisher

	mu      sync.Mutex
	queue   []*answer
	wake    chan struct{} // a token when queue went from empty to not
	closed  bool
	acks    chan []*answer // published groups, in order, for the acker
	stopped chan struct{}  // closed when the acker has finished
}

// maxGroup bounds one group: Badger commits up to a few thousand entries
// in a transaction, and a smaller group starts publishing sooner.
const maxGroup = 256

func newResults(st dedupeStore, index *dedupeIndex, ttl time.Duration, log *slog.Logger, storeErrors prometheus.Counter, settled func(*answer, error)) *results {
	return &results{store: st, index: index, ttl: ttl, log: log, storeErrors: storeErrors, settled: settled,
		wake: make(chan struct{}, 1), acks: make(chan []*answer, 64), stopped: make(chan struct{})}
}

// add queues answers for the committer; it never blocks.
func (r *results) add(as ...*answer) {
	r.mu.Lock()
	r.queue = append(r.queue, as...)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// addJobs queues finished jobs.
func (r *results) addJobs(js []*job) {
	if len(js) == 0 {
		return
	}
	as := make([]*answer, len(js))
	for i, j := range js {
		as[i] = &answer{tenant: j.tenant, topic: j.topic, qos: j.qos, job: j}
	}
	r.add(as...)
}

// start runs the committer and the acker with pub as the publisher.
func (r *results) start(pub publisher) {
	r.pub = pub
	go r.commitLoop()
	var wg sync.WaitGroup
	for i := 0; i < ackers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); r.ackLoop() }()
	}
	go func() { wg.Wait(); close(r.stopped) }()
}

// close lets the committer finish what is queued, then stops both loops;
// wait for them with <-r.stopped.
func (r *results) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// take returns the next group; false once closed and empty.
func (r *results) take(buf []*answer) ([]*answer, bool) {
	for {
		r.mu.Lock()
		if len(r.queue) > 0 {
			n := min(len(r.queue), maxGroup)
			buf = append(buf[:0], r.queue[:n]...)
			clear(r.queue[:n])
			r.queue = r.queue[n:]
			if len(r.queue) == 0 {
				r.queue = nil // let the backing array go
			}
			r.mu.Unlock()
			return buf, true
		}
		closed := r.closed
		r.mu.Unlock()
		if closed {
			return nil, false
		}
		<-r.wake
	}
}

func (r *results) commitLoop() {
	defer close(r.acks)
	var buf []*answer
	for {
		group, ok := r.take(buf)
		if !ok {
			return
		}
		r.commit(group)
		// The acker owns this slice now.
		r.acks <- append([]*answer(nil), group...)
		buf = group
	}
}

// commit encodes the group's results and writes their dedupe records with
// one journal write; the ackers publish them.
func (r *results) commit(group []*answer) {
	var recs []store.DedupeEntry
	for _, an := range group {
		if an.job != nil {
			encodeJob(an, r.log)
			if an.code == "" { // served: a redelivery gets these bytes
				recs = append(recs, store.DedupeEntry{Tenant: an.tenant, ID: an.job.req.ID,
					Dedupe: store.Dedupe{Topic: an.topic, QoS: an.qos, Payload: an.payload}})
			}
		}
	}
	// Dedupe first: if the agent dies after publishing, the redelivered
	// request finds its record and gets the same bytes, not a second
	// inference.
	if len(recs) > 0 {
		if err := r.store.PutDedupes(recs, r.ttl); err != nil {
			// Kept in memory instead: redeliveries while the agent runs are
			// still answered with these bytes; a crash now would forget them.
			r.index.keep(recs, r.ttl)
			r.storeErrors.Inc()
			r.log.Warn("dedupe records not written to the store, kept in memory until a restart; results are still published",
				"records", len(recs), "err", err)
		}
	}
	// The job's deliveries are final now: a repeat that comes from here on
	// finds the dedupe record.
	r.index.settle(group)
}

// ackers is how many groups are published and acknowledged at once. paho
// hands every packet (publish or acknowledgement) to its one writer
// goroutine through an unbuffered channel; with a single publisher and a
// single acker, a machine whose cores are oversubscribed stretched each
// hand-off and the agent fell behind at a fraction of its CPU.
const ackers = 4

// ackLoop publishes each committed group without waiting, then waits for
// each result's PUBACK in publish order and acknowledges its requests.
// A group's publishes go to the broker in one write, and so do its
// acknowledgements once every PUBACK of the group has come (when the
// publisher can gather writes: corker).
func (r *results) ackLoop() {
	corked := func(fn func()) { fn() }
	if c, ok := r.pub.(corker); ok {
		corked = c.Corked
	}
	for group := range r.acks {
		corked(func() {
			for _, an := range group {
				an.pending = r.pub.PublishAsync(an.topic, an.qos, false, an.payload)
			}
		})
		for _, an := range group {
			<-an.pending.Done()
		}
		corked(func() {
			for _, an := range group {
				err := an.pending.Err()
				if err == nil {
					for _, m := range an.msgs {
						m.Ack()
					}
				}
				r.settled(an, err)
			}
		})
	}
}

// corker is a publisher that can send the packets of a step in one write
// (broker.Client.Corked).
type corker interface {
	Corked(fn func())
}

// encodeJob stamps a finished job's latency, judges its bound and encodes
// its result into an.payload.
func encodeJob(an *answer, log *slog.Logger) {
	j := an.job
	r := j.result
	now := time.Now()
	r.LatencyMS = ms(now.Sub(j.arrival))
	if r.Status == schema.StatusOK {
		// A latency bound is judged end to end, from the deadline's origin.
		met := policies.BoundMet(j.bound, policies.Outcome{
			Exit: r.Exit, LatencyMS: ms(now.Sub(j.origin)), EnergyMJ: r.EnergyMJ, Confidence: r.Confidence,
			AccuracyEst: r.AccuracyEst, Last: r.Exit == r.Exits,
			AccuracyRule: policies.HonoursAccuracy(j.policy), Cut: j.cut,
		})
		// A request the policy found infeasible (served at exit 1 because
		// the tenant chose infeasible: late) is judged like any other, by
		// what it got: a prediction that the deadline could not be met is
		// not a miss when the result made it in time (j.cut marks the
		// accuracy part missed: exit 1 is short of any accuracy target).
		r.BoundMet = &met
		if !met {
			r.Status = schema.StatusLate
		}
	}
	payload, err := schema.EncodeResult(r, j.enc)
	if err != nil {
		log.Error("encode result", "tenant", j.tenant, "id", r.ID, "err", err)
		r = schema.NewErrorResult(j.tenant, j.req, schema.Errorf(schema.CodeInternal, "result not encodable"))
		j.result = r
		payload, _ = schema.EncodeResult(r, j.enc)
	}
	if r.Error != nil && r.Status == schema.StatusError {
		an.code = r.Error.Code
	}
	an.payload = payload
}

// answered is the results step's settled: the accounting of an answer
// whose publish is done (its deliveries acknowledged, or, when the publish
// failed, left to the broker to redeliver and dedupe to answer). It
// records metrics and history and lets more requests in.
func (a *Agent) answered(an *answer, err error) {
	if err != nil {
		a.metrics.dropped.WithLabelValues("publish_failed").Inc()
		a.log.Warn("result not published; the request stays unacknowledged and is redelivered",
			"tenant", an.tenant, "err", err)
	}
	if j := an.job; j != nil {
		j.model.release()
		j.owner.unanswered.Add(-1)
		if err == nil {
			a.observe(j, j.result)
			a.observeLabel(j, j.result)
			if j.result.Status != schema.StatusError {
				a.hist.add(a.record(j, j.result, an.payload))
			}
		}
	} else if err == nil {
		lbl := a.tenants.label(an.tenant)
		switch {
		case an.deduped:
			a.metrics.deduped.WithLabelValues(lbl).Inc()
		default:
			a.metrics.requests.WithLabelValues(lbl, schema.StatusError, an.code).Inc()
		}
	}
	a.active.Done()
	a.release(len(an.msgs))
}

// release gives n deliveries' places in the intake window back, starting
// a runner for the deliveries waiting when there are any.
func (a *Agent) release(n int) {
	if a.intake.done(n) {
		a.wakeIntake()
	}
}

// answerError queues an error result for a request that will not be
// served.
func (a *Agent) answerError(tenantName string, req *schema.Request, enc schema.Encoding, qos byte, topic string, err error, msg broker.Message) {
	res := schema.NewErrorResult(tenantName, req, err)
	payload, encErr := schema.EncodeResult(res, enc)
	if encErr != nil {
		a.log.Error("encode error result", "err", encErr)
		msg.Ack()
		a.release(1)
		return
	}
	if a.log.Enabled(context.Background(), slog.LevelDebug) {
		a.log.Debug("request refused", "tenant", tenantName, "id", res.ID, "code", res.Error.Code, "err", err)
	}
	a.active.Add(1)
	a.results.add(&answer{tenant: tenantName, topic: topic, qos: qos, payload: payload, msgs: []broker.Message{msg}, code: res.Error.Code})
}
