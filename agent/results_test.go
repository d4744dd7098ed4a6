package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/policies"
	"github.com/delen-edge/delen/schema"
	"github.com/prometheus/client_golang/prometheus"
)

// The results step on its own: a real Badger store on disk, the dedupe
// index, and a publisher that completes each publish when the test says,
// standing in for the broker's PUBACK. No broker, no ONNX Runtime.

// fakeMsg is a delivery that counts its acknowledgements.
type fakeMsg struct {
	topic string
	acks  atomic.Int32
}

func (m *fakeMsg) Topic() string   { return m.topic }
func (m *fakeMsg) Payload() []byte { return nil }
func (m *fakeMsg) QoS() byte       { return 1 }
func (m *fakeMsg) Duplicate() bool { return false }
func (m *fakeMsg) Retained() bool  { return false }
func (m *fakeMsg) Ack()            { m.acks.Add(1) }

// fakePending is a publish the test completes with complete.
type fakePending struct {
	done chan struct{}
	err  error
}

func (p *fakePending) Done() <-chan struct{} { return p.done }
func (p *fakePending) Err() error            { return p.err }

// published is one PublishAsync call, with what the store held for its
// request id at that moment.
type published struct {
	topic   string
	payload []byte
	stored  bool // the dedupe record was in the store when the publish was made
	p       *fakePending
}

// fakePublisher records every publish and hands it to the test.
type fakePublisher struct {
	st  *store.Store
	ids func(payload []byte) (tenant, id string)
	out chan published
	err error // every publish completes with it
}

func (f *fakePublisher) PublishAsync(topic string, qos byte, retained bool, payload []byte) pending {
	p := &fakePending{done: make(chan struct{}), err: f.err}
	tenant, id := f.ids(payload)
	d, err := f.st.GetDedupe(tenant, id)
	f.out <- published{topic: topic, payload: payload, stored: err == nil && d != nil, p: p}
	return p
}

// refusingStore is a store whose dedupe writes fail (a full data folder).
type refusingStore struct{}

func (refusingStore) PutDedupes([]store.DedupeEntry, time.Duration) error {
	return errors.New("no space left on device")
}

func testJob(tenant, id string, msgs ...broker.Message) *job {
	return &job{
		tenant: tenant, req: &schema.Request{ID: id}, enc: schema.JSON, msgs: msgs, qos: 1,
		topic: "delen/" + tenant + "/results", policy: policies.BoundPolicy{},
		arrival: time.Now(), origin: time.Now(),
		result: &schema.Result{V: schema.Version, ID: id, Tenant: tenant, Status: schema.StatusOK, Exit: 2, Exits: 3},
	}
}

// resultsRig is a results step under test.
type resultsRig struct {
	r       *results
	pub     *fakePublisher
	index   *dedupeIndex
	st      *store.Store
	errs    prometheus.Counter
	mu      sync.Mutex
	settled map[string]error // request id → the publish's outcome
	got     chan string
	started bool
}

func newResultsRig(t *testing.T, dedupes dedupeStore, pubErr error) *resultsRig {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if dedupes == nil {
		dedupes = st
	}
	g := &resultsRig{st: st, settled: map[string]error{}, got: make(chan string, 1024),
		errs: prometheus.NewCounter(prometheus.CounterOpts{Name: "test_store_errors_total"})}
	log := slog.New(slog.DiscardHandler)
	g.index = newDedupeIndex(st, log)
	g.pub = &fakePublisher{st: st, out: make(chan published, 1024), err: pubErr, ids: func(p []byte) (string, string) {
		r, _, err := schema.DecodeResult(p, 1<<20)
		if err != nil {
			t.Errorf("published payload does not decode: %v", err)
			return "", ""
		}
		return r.Tenant, r.ID
	}}
	g.r = newResults(dedupes, g.index, time.Minute, log, g.errs, func(an *answer, err error) {
		id := ""
		if an.job != nil {
			id = an.job.req.ID
		}
		g.mu.Lock()
		g.settled[id] = err
		g.mu.Unlock()
		g.got <- id
	})
	t.Cleanup(func() {
		if g.started {
			g.r.close()
			<-g.r.stopped
		}
	})
	return g
}

// start starts the committer and the ackers.
func (g *resultsRig) start() {
	g.started = true
	g.r.start(g.pub)
}

// serve queues jobs claimed in the index, as intake leaves them.
func (g *resultsRig) serve(t *testing.T, js ...*job) {
	t.Helper()
	for _, j := range js {
		if !g.index.claim(dedupeKey(j.tenant, j.req.ID), j) {
			t.Fatalf("%s already in flight", j.req.ID)
		}
	}
	g.r.addJobs(js)
}

func (g *resultsRig) take(t *testing.T) published {
	t.Helper()
	select {
	case p := <-g.pub.out:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no publish")
	}
	return published{}
}

func (g *resultsRig) waitSettled(t *testing.T) string {
	t.Helper()
	select {
	case id := <-g.got:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("nothing settled")
	}
	return ""
}

// A request is acknowledged after its result's PUBACK, not before, and
// its dedupe record was durable before the result was published.
func TestResultsAckAfterPuback(t *testing.T) {
	g := newResultsRig(t, nil, nil)
	m := &fakeMsg{topic: "delen/cam/requests"}
	g.serve(t, testJob("cam", "r1", m))
	g.start()
	p := g.take(t)
	if !p.stored {
		t.Error("the result was published before its dedupe record was in the store")
	}
	if p.topic != "delen/cam/results" {
		t.Errorf("published to %s", p.topic)
	}
	if n := m.acks.Load(); n != 0 {
		t.Fatalf("request acknowledged %d times before its result's PUBACK", n)
	}
	close(p.p.done)
	if id := g.waitSettled(t); id != "r1" {
		t.Fatalf("settled %q", id)
	}
	if n := m.acks.Load(); n != 1 {
		t.Errorf("request acknowledged %d times after the PUBACK, want 1", n)
	}
	d, err := g.st.GetDedupe("cam", "r1")
	if err != nil || string(d.Payload) != string(p.payload) {
		t.Errorf("dedupe record %v, %v: want the published bytes", d, err)
	}
	g.index.mu.Lock()
	inFlight := len(g.index.inflight)
	g.index.mu.Unlock()
	if inFlight != 0 {
		t.Errorf("%d jobs still in flight after their answer", inFlight)
	}
}

// The answers that gather while the committer is busy go out as one
// group: one dedupe write, every result published, each request
// acknowledged once.
func TestResultsGroupCommit(t *testing.T) {
	counting := &countingStore{}
	g := newResultsRig(t, counting, nil)
	counting.st = g.st
	const n = 50
	msgs := make([]*fakeMsg, n)
	js := make([]*job, n)
	for i := range js {
		msgs[i] = &fakeMsg{topic: "delen/cam/requests"}
		js[i] = testJob("cam", fmt.Sprintf("r%d", i), msgs[i])
	}
	g.serve(t, js...) // queued before the committer starts: one group
	g.start()
	for range n {
		p := g.take(t)
		if !p.stored {
			t.Error("a result was published before its dedupe record was in the store")
		}
		close(p.p.done)
	}
	for range n {
		g.waitSettled(t)
	}
	if c := counting.calls.Load(); c != 1 {
		t.Errorf("%d dedupe writes for one group of %d, want 1", c, n)
	}
	for i, m := range msgs {
		if a := m.acks.Load(); a != 1 {
			t.Errorf("request %d acknowledged %d times", i, a)
		}
	}
}

type countingStore struct {
	st    *store.Store
	calls atomic.Int32
}

func (c *countingStore) PutDedupes(es []store.DedupeEntry, ttl time.Duration) error {
	c.calls.Add(1)
	return c.st.PutDedupes(es, ttl)
}

// A publish that fails leaves the request unacknowledged, for the broker
// to redeliver, and says so to settled.
func TestResultsPublishFailed(t *testing.T) {
	g := newResultsRig(t, nil, errors.New("connection lost"))
	m := &fakeMsg{topic: "delen/cam/requests"}
	g.serve(t, testJob("cam", "r1", m))
	g.start()
	close(g.take(t).p.done)
	g.waitSettled(t)
	if n := m.acks.Load(); n != 0 {
		t.Errorf("request acknowledged %d times after its result failed to publish", n)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.settled["r1"] == nil {
		t.Error("settled without the publish's error")
	}
}

// When the store refuses the dedupe records the results are still
// published, and the records are kept in memory: a redelivery gets the
// same bytes.
func TestResultsStoreRefuses(t *testing.T) {
	g := newResultsRig(t, refusingStore{}, nil)
	m := &fakeMsg{topic: "delen/cam/requests"}
	g.serve(t, testJob("cam", "r1", m))
	g.start()
	p := g.take(t)
	close(p.p.done)
	g.waitSettled(t)
	if n := m.acks.Load(); n != 1 {
		t.Errorf("request acknowledged %d times, want 1", n)
	}
	d := g.index.answered("cam", "r1", time.Now())
	if d == nil || string(d.Payload) != string(p.payload) {
		t.Fatalf("a redelivery finds %v, want the published bytes", d)
	}
	if d.Topic != "delen/cam/results" || d.QoS != 1 {
		t.Errorf("kept record goes to %s at QoS %d", d.Topic, d.QoS)
	}
}

// A duplicate delivered while its request is in flight joins it: both
// deliveries are acknowledged with the one result; a duplicate that
// comes after the answer finds the dedupe record.
func TestResultsDuplicateInFlight(t *testing.T) {
	g := newResultsRig(t, nil, nil)
	first, dup, late := &fakeMsg{topic: "delen/cam/requests"}, &fakeMsg{topic: "delen/cam/requests"}, &fakeMsg{}
	j := testJob("cam", "r1", first)
	if !g.index.claim(dedupeKey("cam", "r1"), j) {
		t.Fatal("the first job's claim refused")
	}
	// While it runs:
	if !g.index.join(dedupeKey("cam", "r1"), dup) {
		t.Fatal("the duplicate did not join the job in flight")
	}
	if g.index.claim(dedupeKey("cam", "r1"), testJob("cam", "r1", late)) {
		t.Fatal("a second job claimed an id in flight")
	}
	g.r.addJobs([]*job{j})
	g.start()
	p := g.take(t)
	close(p.p.done)
	g.waitSettled(t)
	for name, m := range map[string]*fakeMsg{"first": first, "duplicate": dup, "the one that lost the claim": late} {
		if n := m.acks.Load(); n != 1 {
			t.Errorf("%s delivery acknowledged %d times, want 1", name, n)
		}
	}
	select {
	case extra := <-g.pub.out:
		t.Errorf("a second result published for one id: %s", extra.payload)
	default:
	}
	if g.index.join(dedupeKey("cam", "r1"), &fakeMsg{}) {
		t.Error("a duplicate joined a job already answered")
	}
	if d := g.index.answered("cam", "r1", time.Now()); d == nil || string(d.Payload) != string(p.payload) {
		t.Errorf("a later duplicate finds %v, want the published bytes", d)
	}
}
