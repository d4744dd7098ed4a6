//go:build linux

package faulttest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/schema"
)

var topics schema.Topics

var testSet = func() *mnist.Set { s, _ := mnist.Test(); return s }()

// mosquittoConfig mirrors deploy/mosquitto/mosquitto.conf where it matters
// for these tests: Mosquitto's default max_queued_messages (1000) would
// drop QoS 1 requests queued for an agent that is away, a broker
// configuration limit rather than an agent fault.
var mosquittoConfig = []string{"max_queued_messages 10000", "max_inflight_messages 256"}

func startMosquitto(t *testing.T) *brokertest.Mosquitto {
	return brokertest.StartMosquitto(t, brokertest.MosquittoOptions{ExtraConfig: mosquittoConfig})
}

// startEmbedded runs the embedded broker in the test process, with
// persistence in a folder of its own.
func startEmbedded(t *testing.T) string {
	return brokertest.StartEmbedded(t, broker.EmbeddedConfig{DataDir: t.TempDir()}).Addr()
}

// tenantClient is a tenant: a persistent MQTT session (clean session off,
// stable client id, QoS 1) so that results published while it is
// reconnecting are kept for it, that publishes requests and records every
// result delivery by id.
type tenantClient struct {
	t      *testing.T
	name   string
	c      *broker.Client
	resent atomic.Int64 // publishes retried after a failure

	mu         sync.Mutex
	deliveries map[string][][]byte // id → raw payloads in arrival order
	order      []string            // ids in the order of their first result
	total      int
	lastAt     time.Time
	changed    chan struct{}
	state      chan []byte
}

func newTenant(t *testing.T, url, name string) *tenantClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := broker.Dial(ctx, broker.ClientConfig{URL: url, ClientID: "faulttest-tenant-" + name,
		CleanSession: false, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("tenant %s: %v", name, err)
	}
	t.Cleanup(c.Close)
	tc := &tenantClient{t: t, name: name, c: c, deliveries: map[string][][]byte{},
		changed: make(chan struct{}, 1), state: make(chan []byte, 16)}
	if err := c.Subscribe(topics.Results(name), 1, func(m broker.Message) {
		r, _, err := schema.DecodeResult(m.Payload(), 1<<20)
		if err != nil {
			t.Errorf("tenant %s: undecodable result: %v", name, err)
			m.Ack()
			return
		}
		tc.mu.Lock()
		if len(tc.deliveries[r.ID]) == 0 {
			tc.order = append(tc.order, r.ID)
		}
		tc.deliveries[r.ID] = append(tc.deliveries[r.ID], bytes.Clone(m.Payload()))
		tc.total++
		tc.lastAt = time.Now()
		tc.mu.Unlock()
		m.Ack()
		select {
		case tc.changed <- struct{}{}:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(topics.State(name), 1, func(m broker.Message) {
		m.Ack()
		select {
		case tc.state <- bytes.Clone(m.Payload()):
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	return tc
}

// request is MNIST test image i as request id, with bound b (zero: the
// tenant's default).
func request(t *testing.T, id string, i int, b schema.Bound) []byte {
	t.Helper()
	i %= testSet.Len()
	label := testSet.Label(i)
	req := &schema.Request{ID: id, Input: schema.NewUint8Tensor([]int{1, 28, 28}, testSet.Images[i]),
		Bound: b, Label: &label, SentAt: time.Now().UnixMicro()}
	p, err := schema.EncodeRequest(req, schema.MsgPack)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func exitBound(k int) schema.Bound { return schema.Bound{Exit: &k} }

// publish sends one request, retrying a publish that fails (a broker
// restart) with the same bytes until deadline: the retry is the same
// request id, and may reach the broker twice.
func (tc *tenantClient) publish(payload []byte, deadline time.Time) error {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := tc.c.Publish(ctx, topics.Requests(tc.name), 1, false, payload)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		tc.resent.Add(1)
		time.Sleep(100 * time.Millisecond) // back-off between retries, not synchronisation
	}
}

// load is a bounded stream of requests r0..r<n-1> at a fixed rate.
type load struct {
	ids      []string
	payloads map[string][]byte
	sent     atomic.Int64 // requests the broker acknowledged
	done     chan struct{}
	err      atomic.Pointer[error]
}

// sendLoad publishes n requests (ids prefix0..prefix<n-1>) at rate per
// second in the background; with rate 0 it publishes as fast as the
// broker acknowledges. bound is applied to every request.
func (tc *tenantClient) sendLoad(prefix string, n int, rate float64, b schema.Bound) *load {
	return tc.sendPayloads(prefix, n, rate, func(id string, i int) []byte { return request(tc.t, id, i, b) })
}

// sendPayloads is sendLoad with request i (id prefix<i>) made by payload.
func (tc *tenantClient) sendPayloads(prefix string, n int, rate float64, payload func(id string, i int) []byte) *load {
	l := &load{done: make(chan struct{}), payloads: map[string][]byte{}}
	payloads := make([][]byte, n)
	for i := range n {
		l.ids = append(l.ids, fmt.Sprintf("%s%d", prefix, i))
		payloads[i] = payload(l.ids[i], i)
		l.payloads[l.ids[i]] = payloads[i]
	}
	go func() {
		defer close(l.done)
		start := time.Now()
		deadline := start.Add(30 * time.Second)
		for i, p := range payloads {
			if rate > 0 {
				if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
					time.Sleep(d) // pacing the load
				}
			}
			if err := tc.publish(p, deadline); err != nil {
				err = fmt.Errorf("publish %s: %w", l.ids[i], err)
				l.err.Store(&err)
				return
			}
			l.sent.Add(1)
		}
	}()
	return l
}

// wait waits for the sender to finish and fails the test if it gave up.
func (l *load) wait(t *testing.T) {
	t.Helper()
	select {
	case <-l.done:
	case <-time.After(40 * time.Second):
		t.Fatal("load sender still running after 40 s")
	}
	if e := l.err.Load(); e != nil {
		t.Fatalf("load: %v", *e)
	}
}

// answered counts the ids that have at least one result.
func (tc *tenantClient) answered(ids []string) int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	n := 0
	for _, id := range ids {
		if len(tc.deliveries[id]) > 0 {
			n++
		}
	}
	return n
}

// waitAnswered waits until at least want of ids are answered; it gives
// up after timeout, or earlier once no result has arrived for stall
// (what is still missing then is lost, not late) or once the agent ag has
// exited. It reports whether they were.
func (tc *tenantClient) waitAnswered(ag *agentProc, ids []string, want int, timeout, stall time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if tc.answered(ids) >= want {
			return true
		}
		if !ag.running() {
			tc.t.Logf("the agent is not running (%d of %d answered)", tc.answered(ids), want)
			return false
		}
		tc.mu.Lock()
		last := tc.lastAt
		tc.mu.Unlock()
		now := time.Now()
		if now.After(deadline) {
			tc.t.Logf("gave up waiting after %s (%d of %d answered)", timeout, tc.answered(ids), want)
			return tc.answered(ids) >= want
		}
		if !last.IsZero() && now.Sub(last) > stall {
			tc.t.Logf("gave up waiting: no result for %s (%d of %d answered)", stall, tc.answered(ids), want)
			return tc.answered(ids) >= want
		}
		select {
		case <-tc.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// settle waits until no result has arrived for quiet (at most max), so
// that late duplicate deliveries are counted.
func (tc *tenantClient) settle(quiet, max time.Duration) {
	end := time.Now().Add(max)
	for time.Now().Before(end) {
		tc.mu.Lock()
		last := tc.lastAt
		tc.mu.Unlock()
		if time.Since(last) >= quiet {
			return
		}
		select {
		case <-tc.changed:
		case <-time.After(quiet / 4):
		}
	}
}

// results returns the first result of id, decoded.
func (tc *tenantClient) result(id string) *schema.Result {
	tc.mu.Lock()
	raw := tc.deliveries[id]
	tc.mu.Unlock()
	if len(raw) == 0 {
		return nil
	}
	r, _, err := schema.DecodeResult(raw[0], 1<<20)
	if err != nil {
		tc.t.Fatalf("result %s: %v", id, err)
	}
	return r
}

// tally is what a test reports.
type tally struct {
	sent, answered, lost int
	// duplicated: ids with more than one distinct result content (a
	// contract violation); identical: extra deliveries byte-identical to
	// the first (allowed: redelivery answered from dedupe).
	duplicated, identical int
	resent                int64
	statuses              map[string]int
	lostIDs, dupIDs       []string
}

func (tc *tenantClient) tally(ids []string, sent int) tally {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tl := tally{sent: sent, resent: tc.resent.Load(), statuses: map[string]int{}}
	for _, id := range ids {
		raw := tc.deliveries[id]
		if len(raw) == 0 {
			tl.lost++
			tl.lostIDs = append(tl.lostIDs, id)
			continue
		}
		tl.answered++
		distinct := 1
		for _, p := range raw[1:] {
			if bytes.Equal(p, raw[0]) {
				tl.identical++
			} else {
				distinct++
			}
		}
		if distinct > 1 {
			tl.duplicated++
			tl.dupIDs = append(tl.dupIDs, id)
		}
		if r, _, err := schema.DecodeResult(raw[0], 1<<20); err == nil {
			s := r.Status
			if r.Error != nil {
				s += ":" + r.Error.Code
			}
			tl.statuses[s]++
		}
	}
	return tl
}

func (tl tally) String() string {
	var st []string
	for k, v := range tl.statuses {
		st = append(st, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(st)
	return fmt.Sprintf("sent %d, answered %d, lost %d, duplicated %d, byte-identical redeliveries %d, tenant resends %d, statuses [%s]",
		tl.sent, tl.answered, tl.lost, tl.duplicated, tl.identical, tl.resent, strings.Join(st, " "))
}

// check asserts the delivery contract: every request sent answered,
// exactly one result content per id, and every result served (ok or
// late, never an error).
func (tl tally) check(t *testing.T) {
	t.Helper()
	if tl.lost > 0 {
		t.Errorf("%d requests lost (first: %v)", tl.lost, first(tl.lostIDs, 10))
	}
	if tl.duplicated > 0 {
		t.Errorf("%d requests got results with different content (first: %v)", tl.duplicated, first(tl.dupIDs, 10))
	}
	for s, n := range tl.statuses {
		if s != schema.StatusOK && s != schema.StatusLate {
			t.Errorf("%d results with status %s", n, s)
		}
	}
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

// publishTo publishes payload to topic (QoS 1, not retained).
func (tc *tenantClient) publishTo(topic string, payload []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return tc.c.Publish(ctx, topic, 1, false, payload)
}

// rawFirst is the first result delivered for id, as received.
func (tc *tenantClient) rawFirst(id string) []byte {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if raw := tc.deliveries[id]; len(raw) > 0 {
		return raw[0]
	}
	return nil
}

// lastAnswered is the ids of the last k first results received.
func (tc *tenantClient) lastAnswered(k int) []string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return slices.Clone(tc.order[max(0, len(tc.order)-k):])
}

// resend publishes the requests of ids again, exactly as first sent (a
// tenant's at-least-once retry), and waits until each has a second
// delivery. The dedupe records must answer them with the same bytes; the
// tally counts the second deliveries as byte-identical redeliveries, or
// as duplicated when they differ.
func (tc *tenantClient) resend(ag *agentProc, l *load, ids []string) {
	tc.t.Helper()
	for _, id := range ids {
		if err := tc.publish(l.payloads[id], time.Now().Add(10*time.Second)); err != nil {
			tc.t.Fatalf("resend %s: %v", id, err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range ids {
		for {
			tc.mu.Lock()
			got := len(tc.deliveries[id])
			tc.mu.Unlock()
			if got >= 2 {
				break
			}
			if time.Now().After(deadline) || !ag.running() {
				tc.t.Errorf("no second result for %s, resent after it was answered", id)
				return
			}
			select {
			case <-tc.changed:
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}
