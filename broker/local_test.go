package broker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
)

// attach attaches a Local client that is closed when the test ends.
func attach(t *testing.T, e *broker.Embedded, id string, subs ...broker.Subscription) *broker.Local {
	t.Helper()
	l, err := e.Attach(broker.LocalConfig{ClientID: id, Subscriptions: subs, Logger: discard})
	if err != nil {
		t.Fatalf("attach %s: %v", id, err)
	}
	t.Cleanup(l.Close)
	return l
}

// payloads receives n messages and returns their payloads.
func (in inbox) payloads(t *testing.T, n int, what string) map[string]broker.Message {
	t.Helper()
	got := map[string]broker.Message{}
	for len(got) < n {
		m := in.next(t, fmt.Sprintf("%s (%d of %d so far)", what, len(got), n))
		got[string(m.Payload())] = m
	}
	return got
}

// A Local client gets what tenants publish over MQTT, at the QoS they
// publish with, and what it publishes reaches their subscriptions.
func TestLocalRoundTrip(t *testing.T) {
	t.Parallel()
	e := brokertest.StartEmbedded(t, broker.EmbeddedConfig{DataDir: t.TempDir()})
	in := newInbox()
	l := attach(t, e, "agent-l", broker.Subscription{Filter: "delen/+/requests", QoS: 1, Handler: in.handler(true)})
	if !l.Connected() {
		t.Fatal("an attached client reports itself not connected")
	}

	tenant := dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "l-tenant", CleanSession: true})
	results := newInbox()
	subscribe(t, tenant, "delen/t1/results", 1, results.handler(true))
	publish(t, tenant, "delen/t1/requests", 1, false, "q1")
	publish(t, tenant, "delen/t1/requests", 0, false, "q0")
	publish(t, tenant, "delen/t1/other", 1, false, "not subscribed")

	got := in.payloads(t, 2, "the tenant's requests")
	if m := got["q1"]; m == nil || m.QoS() != 1 || m.Topic() != "delen/t1/requests" || m.Duplicate() || m.Retained() {
		t.Fatalf("QoS 1 request: %+v", m)
	}
	if m := got["q0"]; m == nil || m.QoS() != 0 {
		t.Fatalf("QoS 0 request: %+v", m)
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := l.Publish(ctx, "delen/t1/results", 1, false, []byte("answer")); err != nil {
		t.Fatal(err)
	}
	if p := l.PublishAsync("delen/t1/results", 1, false, []byte("answer 2")); p.Err() != nil {
		t.Fatal(p.Err())
	}
	if r := results.payloads(t, 2, "the results"); r["answer"] == nil || r["answer 2"] == nil {
		t.Fatalf("results: %v", r)
	}
	if err := l.Publish(ctx, "bad/+/topic", 1, false, nil); err == nil {
		t.Fatal("a publish to a wildcard topic was accepted")
	}
	l.Close()
	if l.Connected() {
		t.Fatal("a closed client reports itself connected")
	}
	if err := l.Publish(ctx, "delen/t1/results", 1, false, nil); err == nil {
		t.Fatal("a closed client published")
	}
}

// What the session has not acknowledged, and what arrives while no client
// is attached, a later Attach hands over, after a restart of the broker
// too; what was acknowledged does not come again.
func TestLocalSessionAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := brokertest.StartEmbedded(t, broker.EmbeddedConfig{DataDir: dir})
	in := newInbox()
	// Acknowledges every message but those held.
	take := func(m broker.Message) {
		if !strings.HasPrefix(string(m.Payload()), "held") {
			m.Ack()
		}
		in <- m
	}
	sub := func(h func(broker.Message)) broker.Subscription {
		return broker.Subscription{Filter: "delen/+/requests", QoS: 1, Handler: h}
	}
	l := attach(t, e, "agent-r", sub(take))
	tenant := dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "r-tenant", CleanSession: true})
	for i := range 3 {
		publish(t, tenant, "delen/t1/requests", 1, false, fmt.Sprint("served ", i))
		publish(t, tenant, "delen/t1/requests", 1, false, fmt.Sprint("held ", i))
	}
	in.payloads(t, 6, "the first requests")
	l.Close()
	publish(t, tenant, "delen/t1/requests", 1, false, "while away")
	tenant.Close()

	addr := strings.TrimPrefix(e.Addr(), "tcp://")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = brokertest.StartEmbedded(t, broker.EmbeddedConfig{Addr: addr, DataDir: dir})
	in = newInbox()
	attach(t, e, "agent-r", sub(in.handler(true)))
	got := in.payloads(t, 4, "what the session held")
	for _, p := range []string{"held 0", "held 1", "held 2", "while away"} {
		m := got[p]
		if m == nil {
			t.Fatalf("after the restart got %v; want the held requests and the one sent while away", got)
		}
		if !m.Duplicate() {
			t.Errorf("%q handed over again without the duplicate flag", p)
		}
	}
	for p := range got {
		if strings.HasPrefix(p, "served") {
			t.Fatalf("an acknowledged request came again: %q", p)
		}
	}

	// Everything acknowledged now: after another restart nothing comes
	// before a new request.
	tenant = dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "r-tenant2", CleanSession: true})
	publish(t, tenant, "delen/t1/requests", 1, false, "marker")
	in.until(t, "marker")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = brokertest.StartEmbedded(t, broker.EmbeddedConfig{Addr: addr, DataDir: dir})
	in = newInbox()
	l = attach(t, e, "agent-r", sub(in.handler(true)))
	tenant = dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "r-tenant3", CleanSession: true})
	results := newInbox()
	subscribe(t, tenant, "delen/t1/results", 1, results.handler(true))
	publish(t, tenant, "delen/t1/requests", 1, false, "new")
	if before, _ := in.until(t, "new"); len(before) > 0 {
		t.Fatalf("acknowledged requests came again after a restart: %v", before)
	}
	// The session restored from the store publishes as a new one does.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := l.Publish(ctx, "delen/t1/results", 1, false, []byte("answer")); err != nil {
		t.Fatal(err)
	}
	if m := results.next(t, "the result of a restored session"); string(m.Payload()) != "answer" {
		t.Fatalf("result %q", m.Payload())
	}
	if !l.Connected() {
		t.Fatal("the restored session's client was disconnected by its publish")
	}
}

// A Local client attaches to the session an MQTT client left (an agent
// that connected over MQTT before): it gets what was queued for it. A
// session with a connection, or with a Local client, is refused.
func TestLocalTakesOverMQTTSession(t *testing.T) {
	t.Parallel()
	e := brokertest.StartEmbedded(t, broker.EmbeddedConfig{DataDir: t.TempDir()})
	cfg := broker.ClientConfig{URL: e.Addr(), ClientID: "agent-m", CleanSession: false}
	s := dial(t, cfg)
	subscribe(t, s, "delen/+/requests", 1, newInbox().handler(false))
	sub := broker.Subscription{Filter: "delen/+/requests", QoS: 1, Handler: func(broker.Message) {}}
	if _, err := e.Attach(broker.LocalConfig{ClientID: "agent-m", Subscriptions: []broker.Subscription{sub}}); err == nil {
		t.Fatal("attached to a session in use by a connection")
	}
	s.Close()
	tenant := dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "m-tenant", CleanSession: true})
	publish(t, tenant, "delen/t1/requests", 1, false, "queued 1")
	publish(t, tenant, "delen/t1/requests", 1, false, "queued 2")

	in := newInbox()
	attach(t, e, "agent-m", broker.Subscription{Filter: "delen/+/requests", QoS: 1, Handler: in.handler(true)})
	got := in.payloads(t, 2, "the queued requests")
	if got["queued 1"] == nil || got["queued 2"] == nil {
		t.Fatalf("got %v; want both queued requests", got)
	}
	if _, err := e.Attach(broker.LocalConfig{ClientID: "agent-m", Subscriptions: []broker.Subscription{sub}}); err == nil {
		t.Fatal("attached a second Local client to one session")
	}
}

// The session's subscriptions are the attached client's: one the session
// had from an earlier client and the Local does not make collects nothing.
func TestLocalEndsOldSubscriptions(t *testing.T) {
	t.Parallel()
	e := brokertest.StartEmbedded(t, broker.EmbeddedConfig{DataDir: t.TempDir()})
	s := dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "agent-o", CleanSession: false})
	subscribe(t, s, "old/#", 1, newInbox().handler(true))
	s.Close()
	in := newInbox()
	l := attach(t, e, "agent-o", broker.Subscription{Filter: "delen/+/requests", QoS: 1, Handler: in.handler(true)})
	tenant := dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "o-tenant", CleanSession: true})
	publish(t, tenant, "old/x", 1, false, "for the old subscription")
	publish(t, tenant, "delen/t1/requests", 1, false, "request")
	in.until(t, "request")
	l.Close()
	// Were "old/x" in the session, this attach would hand it over.
	in = newInbox()
	attach(t, e, "agent-o", broker.Subscription{Filter: "old/#", QoS: 1, Handler: in.handler(true)},
		broker.Subscription{Filter: "delen/+/requests", QoS: 1, Handler: in.handler(true)})
	publish(t, tenant, "delen/t1/requests", 1, false, "marker")
	if before, _ := in.until(t, "marker"); len(before) > 0 {
		t.Fatalf("the session kept %v for a subscription it no longer had", before)
	}
}

// Retained messages that match a subscription are handed over at Attach,
// as a broker sends them on SUBSCRIBE; bad configurations are refused.
func TestLocalAttach(t *testing.T) {
	t.Parallel()
	e := brokertest.StartEmbedded(t, broker.EmbeddedConfig{})
	tenant := dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "a-tenant", CleanSession: true})
	publish(t, tenant, "delen/t1/control", 1, true, "settings")
	in := newInbox()
	attach(t, e, "agent-a", broker.Subscription{Filter: "delen/+/control", QoS: 1, Handler: in.handler(true)})
	if m := in.next(t, "the retained control"); string(m.Payload()) != "settings" || !m.Retained() {
		t.Fatalf("retained at attach: %q retained %t", m.Payload(), m.Retained())
	}

	h := func(broker.Message) {}
	for _, cfg := range []broker.LocalConfig{
		{Subscriptions: []broker.Subscription{{Filter: "a", QoS: 1, Handler: h}}},
		{ClientID: "x", Subscriptions: []broker.Subscription{{Filter: "$share/g/a", QoS: 1, Handler: h}}},
		{ClientID: "x", Subscriptions: []broker.Subscription{{Filter: "a/#/b", QoS: 1, Handler: h}}},
		{ClientID: "x", Subscriptions: []broker.Subscription{{Filter: "a", QoS: 3, Handler: h}}},
		{ClientID: "x", Subscriptions: []broker.Subscription{{Filter: "a", QoS: 1}}},
	} {
		if _, err := e.Attach(cfg); err == nil {
			t.Errorf("Attach(%+v) accepted", cfg)
		}
	}
}

// An MQTT connection with the session's client ID takes the session over,
// as it would from another connection: it gets the session's messages,
// and the Local client none.
func TestLocalTakenOver(t *testing.T) {
	t.Parallel()
	e := brokertest.StartEmbedded(t, broker.EmbeddedConfig{DataDir: t.TempDir()})
	local := newInbox()
	l := attach(t, e, "agent-t", broker.Subscription{Filter: "delen/+/requests", QoS: 1, Handler: local.handler(true)})
	remote := newInbox()
	dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "agent-t", CleanSession: false,
		Subscriptions: []broker.Subscription{{Filter: "delen/+/requests", QoS: 1, Handler: remote.handler(true)}}})
	if l.Connected() {
		t.Fatal("a Local client whose session was taken over reports itself connected")
	}
	tenant := dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "t-tenant", CleanSession: true})
	publish(t, tenant, "delen/t1/requests", 1, false, "after the takeover")
	if m := remote.next(t, "the request on the connection"); string(m.Payload()) != "after the takeover" {
		t.Fatalf("the connection got %q", m.Payload())
	}
	select {
	case m := <-local:
		t.Fatalf("the Local client got %q after its session was taken over", m.Payload())
	default:
	}
}
