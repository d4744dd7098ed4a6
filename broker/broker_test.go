package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
)

// wait bounds every wait in these tests; generous because the race detector
// and a shared 2-core machine slow everything down.
const wait = 20 * time.Second

var discard = slog.New(slog.DiscardHandler)

// testBroker is what the integration tests need from a broker.
type testBroker interface {
	URL() string
	// Restart stops the broker and starts it again on the same port,
	// keeping its persisted state.
	Restart()
}

// embeddedBroker restarts an embedded broker on the same port and data dir.
type embeddedBroker struct {
	t   *testing.T
	cfg broker.EmbeddedConfig
	e   atomic.Pointer[broker.Embedded]
}

func (b *embeddedBroker) URL() string { return b.e.Load().Addr() }

func (b *embeddedBroker) Restart() {
	b.t.Helper()
	e := b.e.Load()
	b.cfg.Addr = strings.TrimPrefix(e.Addr(), "tcp://")
	if err := e.Close(); err != nil {
		b.t.Fatalf("close embedded broker: %v", err)
	}
	b.e.Store(brokertest.StartEmbedded(b.t, b.cfg))
}

func startEmbedded(t *testing.T) *embeddedBroker {
	cfg := broker.EmbeddedConfig{DataDir: t.TempDir()}
	if os.Getenv("MOCHI_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b := &embeddedBroker{t: t, cfg: cfg}
	b.e.Store(brokertest.StartEmbedded(t, cfg))
	return b
}

// inProcess maps the URL of an "embedded-inproc" broker to the way its
// clients connect: Embedded.Dial of the broker started last on that port.
var inProcess sync.Map // URL → func(context.Context) (net.Conn, error)

var brokers = []struct {
	name  string
	start func(t *testing.T) testBroker
}{
	{"embedded", func(t *testing.T) testBroker { return startEmbedded(t) }},
	// The same broker, every client connected in-process (Embedded.Dial),
	// as the agent connects to the broker it embeds.
	{"embedded-inproc", func(t *testing.T) testBroker {
		b := startEmbedded(t)
		url := b.URL()
		inProcess.Store(url, func(ctx context.Context) (net.Conn, error) { return b.e.Load().Dial(ctx) })
		t.Cleanup(func() { inProcess.Delete(url) })
		return b
	}},
	{"mosquitto", func(t *testing.T) testBroker {
		return brokertest.StartMosquitto(t, brokertest.MosquittoOptions{})
	}},
}

// forEachBroker runs f against a fresh embedded broker and a fresh Mosquitto.
func forEachBroker(t *testing.T, f func(t *testing.T, b testBroker)) {
	t.Parallel()
	for _, bc := range brokers {
		t.Run(bc.name, func(t *testing.T) {
			t.Parallel()
			f(t, bc.start(t))
		})
	}
}

// dial connects a client that is closed when the test ends.
func dial(t *testing.T, cfg broker.ClientConfig) *broker.Client {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	if d, ok := inProcess.Load(cfg.URL); ok && cfg.Dial == nil {
		cfg.Dial = d.(func(context.Context) (net.Conn, error))
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := broker.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("dial %s as %q: %v", cfg.URL, cfg.ClientID, err)
	}
	t.Cleanup(c.Close)
	return c
}

func publish(t *testing.T, c *broker.Client, topic string, qos byte, retained bool, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.Publish(ctx, topic, qos, retained, []byte(payload)); err != nil {
		t.Fatalf("publish %q to %s: %v", payload, topic, err)
	}
}

func subscribe(t *testing.T, c *broker.Client, filter string, qos byte, h func(broker.Message)) {
	t.Helper()
	if err := c.Subscribe(filter, qos, h); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
}

// inbox collects messages from a handler.
type inbox chan broker.Message

func newInbox() inbox { return make(inbox, 1024) }

// handler returns a handler that stores each message, acking it first when
// ack is true.
func (in inbox) handler(ack bool) func(broker.Message) {
	return func(m broker.Message) {
		if ack {
			m.Ack()
		}
		in <- m
	}
}

func (in inbox) next(t *testing.T, what string) broker.Message {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case m := <-in:
		return m
	case <-timer.C:
		t.Fatalf("no message (%s) within %s", what, wait)
		return nil
	}
}

// until receives messages until one has the payload want; it returns the
// payloads received before it.
func (in inbox) until(t *testing.T, want string) (before []string, m broker.Message) {
	t.Helper()
	for {
		m := in.next(t, want)
		if string(m.Payload()) == want {
			return before, m
		}
		before = append(before, string(m.Payload()))
	}
}

// within receives one value from ch, failing the test after wait.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out after %s waiting for %s", wait, what)
		var zero T
		return zero
	}
}

func TestRoundTripQoS1(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b testBroker) {
		sub := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: "rt-sub", CleanSession: true})
		pub := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: "rt-pub", CleanSession: true})
		in := newInbox()
		subscribe(t, sub, "delen/+/requests", 1, in.handler(true))
		publish(t, pub, "delen/t1/requests", 1, false, "hello")
		m := in.next(t, "hello")
		if got := string(m.Payload()); got != "hello" || m.Topic() != "delen/t1/requests" || m.QoS() != 1 || m.Retained() || m.Duplicate() {
			t.Fatalf("got %q on %s qos %d retained %t dup %t; want hello on delen/t1/requests qos 1, fresh",
				got, m.Topic(), m.QoS(), m.Retained(), m.Duplicate())
		}
		if !sub.Connected() || !pub.Connected() {
			t.Fatal("clients report not connected")
		}
	})
}

func TestRetainedLateSubscriber(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b testBroker) {
		pub := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: "ret-pub", CleanSession: true})
		publish(t, pub, "delen/t1/state", 1, true, "v1")
		publish(t, pub, "delen/t1/state", 1, true, "v2") // replaces v1

		late := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: "ret-late", CleanSession: true})
		in := newInbox()
		subscribe(t, late, "delen/+/state", 1, in.handler(true))
		m := in.next(t, "retained state")
		if string(m.Payload()) != "v2" || !m.Retained() {
			t.Fatalf("late subscriber got %q retained %t; want v2 retained", m.Payload(), m.Retained())
		}
		// A live message after the retained one is not flagged retained.
		// (mochi acknowledges a publish before it fans it out, so v2 may
		// also reach the new subscriber live, unflagged, before v3.)
		publish(t, pub, "delen/t1/state", 1, true, "v3")
		m = in.next(t, "live state")
		if string(m.Payload()) == "v2" && !m.Retained() {
			m = in.next(t, "live state")
		}
		if string(m.Payload()) != "v3" || m.Retained() {
			t.Fatalf("live message %q retained %t; want v3 not retained", m.Payload(), m.Retained())
		}
	})
}

func TestLastWill(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b testBroker) {
		watcher := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: "will-watcher", CleanSession: true})
		in := newInbox()
		subscribe(t, watcher, "delen/_agents/+/status", 1, in.handler(true))

		conns := make(chan net.Conn, 4)
		cfg := broker.WithConnHook(broker.ClientConfig{
			URL: b.URL(), ClientID: "agent-7", CleanSession: true,
			Will: &broker.Will{Topic: "delen/_agents/agent-7/status", Payload: []byte("offline"), QoS: 1, Retained: true},
		}, func(c net.Conn) { conns <- c })
		agent := dial(t, cfg)
		publish(t, agent, "delen/_agents/agent-7/status", 1, true, "online")
		if _, m := in.until(t, "online"); m.Topic() != "delen/_agents/agent-7/status" {
			t.Fatalf("status on %s", m.Topic())
		}

		// The agent "dies": its TCP connection ends without DISCONNECT.
		conn := <-conns
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
		if _, m := in.until(t, "offline"); m.Topic() != "delen/_agents/agent-7/status" {
			t.Fatalf("will on %s", m.Topic())
		}

		// The will was retained: a newcomer sees the agent offline.
		late := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: "will-late", CleanSession: true})
		lin := newInbox()
		subscribe(t, late, "delen/_agents/agent-7/status", 1, lin.handler(true))
		if m := lin.next(t, "retained will"); string(m.Payload()) != "offline" {
			t.Fatalf("retained status %q; want offline", m.Payload())
		}
	})
}

func TestManualAckRedelivery(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b testBroker) {
		const topic = "delen/t1/requests"
		cfg := broker.ClientConfig{URL: b.URL(), ClientID: "agent-ack", CleanSession: false}
		pub := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: "ack-pub", CleanSession: true})

		// Session 1 receives three requests, publishes results (on the same
		// connection, as the agent does) and acks all but one.
		// The packet IDs the client picks for its own SUBSCRIBE and
		// PUBLISHes overlap the IDs of the broker's unacknowledged
		// deliveries; the two ID spaces are independent (MQTT 2.3.1), so
		// this must neither refuse the SUBSCRIBE nor count as an ack.
		s1 := dial(t, cfg)
		in1 := newInbox()
		subscribe(t, s1, topic, 1, in1.handler(false))
		for _, p := range []string{"served-1", "unserved", "served-2"} {
			publish(t, pub, topic, 1, false, p)
		}
		got := map[string]broker.Message{}
		for len(got) < 3 {
			m := in1.next(t, "three requests")
			got[string(m.Payload())] = m
		}
		for p, m := range got {
			if m.Duplicate() {
				t.Fatalf("first delivery of %s flagged duplicate", p)
			}
		}
		// QoS 2 then QoS 1: the client's packet IDs 2 and 3 are the
		// broker's IDs of "unserved" and "served-2".
		publish(t, s1, "delen/t1/results", 2, false, "result of served-1")
		publish(t, s1, "delen/t1/results", 1, false, "result of served-2")
		// Ack from other goroutines, as the agent does after publishing a result.
		acked := make(chan struct{}, 2)
		for _, p := range []string{"served-1", "served-2"} {
			go func() { got[p].Ack(); acked <- struct{}{} }()
		}
		within(t, acked, "Ack to return")
		within(t, acked, "Ack to return")
		s1.Close()

		// Session 2, same client ID: only the unacknowledged request comes back.
		s2 := dial(t, cfg)
		in2 := newInbox()
		subscribe(t, s2, topic, 1, in2.handler(false))
		m := in2.next(t, "redelivery")
		if string(m.Payload()) != "unserved" || !m.Duplicate() || m.QoS() != 1 {
			t.Fatalf("redelivered %q dup %t qos %d; want unserved, dup, qos 1", m.Payload(), m.Duplicate(), m.QoS())
		}
		m.Ack()
		// Fences: anything redelivered is sent before messages published now.
		publish(t, pub, topic, 1, false, "fence-1")
		before, f := in2.until(t, "fence-1")
		f.Ack()
		publish(t, pub, topic, 1, false, "fence-2")
		before2, f := in2.until(t, "fence-2")
		f.Ack()
		if extra := append(before, before2...); len(extra) > 0 {
			t.Fatalf("session 2 got %q besides the redelivery; the acked request came back?", extra)
		}
		s2.Close()

		// Session 3: everything was acked, nothing comes back.
		s3 := dial(t, cfg)
		in3 := newInbox()
		subscribe(t, s3, topic, 1, in3.handler(true))
		publish(t, pub, topic, 1, false, "fence-3")
		if before, m := in3.until(t, "fence-3"); len(before) > 0 || m.Duplicate() {
			t.Fatalf("session 3 got %q before the fence (dup %t); acks were lost", before, m.Duplicate())
		}
	})
}

func TestSharedSubscription(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b testBroker) {
		const n = 40
		var (
			mu   sync.Mutex
			seen = map[string]int{} // payload -> deliveries
			per  = map[string]int{} // client -> deliveries
		)
		all := make(chan struct{}, 2*n)
		for _, id := range []string{"agent-a", "agent-b"} {
			c := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: id, CleanSession: true})
			subscribe(t, c, "$share/agents/delen/+/requests", 1, func(m broker.Message) {
				m.Ack()
				mu.Lock()
				seen[string(m.Payload())]++
				per[id]++
				mu.Unlock()
				all <- struct{}{}
			})
		}
		pub := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: "share-pub", CleanSession: true})
		for i := range n {
			publish(t, pub, fmt.Sprintf("delen/t%d/requests", i%3), 1, false, fmt.Sprint(i))
		}
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for range n {
			select {
			case <-all:
			case <-timer.C:
				mu.Lock()
				t.Fatalf("only %d of %d messages delivered: %v", len(seen), n, per)
				mu.Unlock()
			}
		}
		// A last message: by the time it is in, a duplicate would be too.
		publish(t, pub, "delen/t0/requests", 1, false, "last")
		select {
		case <-all:
		case <-timer.C:
			t.Fatal("last message not delivered")
		}
		mu.Lock()
		defer mu.Unlock()
		for p, k := range seen {
			if k != 1 {
				t.Errorf("message %s delivered %d times; want once to the group", p, k)
			}
		}
		if len(seen) != n+1 {
			t.Errorf("%d distinct messages delivered; want %d", len(seen), n+1)
		}
		if per["agent-a"] == 0 || per["agent-b"] == 0 {
			t.Errorf("load not split: %v", per)
		}
	})
}

func TestReconnectAfterRestart(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b testBroker) {
		connects := make(chan struct{}, 8)
		lost := make(chan error, 8)
		// CleanSession true: the restarted broker forgets the subscription,
		// so receiving afterwards proves the client renewed it.
		c := dial(t, broker.ClientConfig{
			URL: b.URL(), ClientID: "agent-rc", CleanSession: true,
			OnConnect:        func() { connects <- struct{}{} },
			OnConnectionLost: func(err error) { lost <- err },
		})
		within(t, connects, "first OnConnect")
		in := newInbox()
		subscribe(t, c, "delen/+/requests", 1, in.handler(true))

		b.Restart()
		within(t, lost, "OnConnectionLost")
		within(t, connects, "OnConnect after the restart")
		if !c.Connected() {
			t.Fatal("Connected() false after OnConnect")
		}
		pub := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: "rc-pub", CleanSession: true})
		publish(t, pub, "delen/t1/requests", 1, false, "after restart")
		if m := in.next(t, "message after restart"); string(m.Payload()) != "after restart" {
			t.Fatalf("got %q", m.Payload())
		}
		// The reconnected client publishes too.
		publish(t, c, "delen/t2/requests", 1, false, "own")
		if m := in.next(t, "own message"); string(m.Payload()) != "own" {
			t.Fatalf("got %q", m.Payload())
		}
	})
}

func TestPersistenceAcrossRestart(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b testBroker) {
		cfg := broker.ClientConfig{URL: b.URL(), ClientID: "agent-p", CleanSession: false}
		s := dial(t, cfg)
		subscribe(t, s, "delen/+/requests", 1, newInbox().handler(true))
		s.Close() // offline; the broker queues for the session

		pub := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: "p-pub", CleanSession: true})
		publish(t, pub, "delen/t1/requests", 1, false, "queued")
		publish(t, pub, "delen/t1/control", 1, true, "bound")
		pub.Close()

		b.Restart()

		s = dial(t, cfg)
		in := newInbox()
		subscribe(t, s, "delen/+/requests", 1, in.handler(true))
		if m := in.next(t, "queued request"); string(m.Payload()) != "queued" {
			t.Fatalf("after restart got %q; want the queued request", m.Payload())
		}
		late := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: "p-late", CleanSession: true})
		lin := newInbox()
		subscribe(t, late, "delen/t1/control", 1, lin.handler(true))
		if m := lin.next(t, "retained control"); string(m.Payload()) != "bound" || !m.Retained() {
			t.Fatalf("retained after restart: %q retained %t", m.Payload(), m.Retained())
		}
	})
}

// Messages a persistent session acknowledged stay acknowledged across a
// restart: it finds only what it had not taken (the embedded broker once
// kept every delivered message in its store and redelivered them all).
func TestAcknowledgedGoneAfterRestart(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b testBroker) {
		cfg := broker.ClientConfig{URL: b.URL(), ClientID: "agent-a", CleanSession: false}
		s := dial(t, cfg)
		in := newInbox()
		subscribe(t, s, "delen/+/requests", 1, in.handler(true))
		pub := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: "a-pub", CleanSession: true})
		for i := range 20 {
			publish(t, pub, "delen/t1/requests", 1, false, fmt.Sprint("served ", i))
		}
		for range 20 {
			in.next(t, "a request")
		}
		// The broker reads a connection's packets in order: once it has
		// answered this publish it has read the PUBACKs sent before it.
		publish(t, s, "delen/t1/results", 1, false, "results")
		s.Close()
		publish(t, pub, "delen/t1/requests", 1, false, "queued")

		b.Restart()

		s = dial(t, cfg)
		in = newInbox()
		subscribe(t, s, "delen/+/requests", 1, in.handler(true))
		if before, _ := in.until(t, "queued"); len(before) > 0 {
			t.Fatalf("after the restart %d acknowledged messages came again before the queued one: %v", len(before), before)
		}
	})
}

// What a session has not acknowledged stays stored when it reconnects:
// the broker hands it to the new connection, and a restart after that
// still finds it (mochi reports the copy it drops from the old connection
// as dropped, under the same keys; the embedded broker deleted the stored
// messages then).
func TestUnacknowledgedSurviveReconnectAndRestart(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b testBroker) {
		const n = 5
		connect := func(in inbox, ack bool) *broker.Client {
			return dial(t, broker.ClientConfig{URL: b.URL(), ClientID: "agent-u", CleanSession: false,
				Subscriptions: []broker.Subscription{{Filter: "delen/+/requests", QoS: 1, Handler: in.handler(ack)}}})
		}
		in := newInbox()
		s := connect(in, false)
		pub := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: "u-pub", CleanSession: true})
		for i := range n {
			publish(t, pub, "delen/t1/requests", 1, false, fmt.Sprint("held ", i))
		}
		for range n {
			in.next(t, "a request")
		}
		s.Close()
		// Reconnected, the session gets the same messages again, and does
		// not acknowledge them either.
		in = newInbox()
		s = connect(in, false)
		for range n {
			in.next(t, "a redelivery")
		}
		s.Close()
		pub.Close()

		b.Restart()

		in = newInbox()
		connect(in, true)
		// Every held message comes again. (The client runs each delivery's
		// handler on a goroutine of its own, so the order they reach the
		// inbox in is not the order the broker sent them in.)
		got := map[string]bool{}
		var seen []string
		for len(got) < n {
			p := string(in.next(t, fmt.Sprintf("the redelivery of the held messages (%d of %d so far: %v)", len(got), n, seen)).Payload())
			seen = append(seen, p)
			if strings.HasPrefix(p, "held ") {
				got[p] = true
			}
		}
	})
}
