package broker_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
)

func TestDialRejectsBadConfig(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]broker.ClientConfig{
		"no URL":                        {ClientID: "x"},
		"bad scheme":                    {URL: "http://127.0.0.1:1883", ClientID: "x"},
		"persistent session without ID": {URL: "tcp://127.0.0.1:1883"},
		"will with wildcard":            {URL: "tcp://127.0.0.1:1883", CleanSession: true, Will: &broker.Will{Topic: "a/#"}},
	} {
		if c, err := broker.Dial(ctx, cfg); err == nil {
			c.Close()
			t.Errorf("%s: Dial succeeded", name)
		}
	}
}

func TestDialGivesUpAtDeadline(t *testing.T) {
	t.Parallel()
	// Something that accepts TCP connections and hangs up: not a broker.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := broker.Dial(ctx, broker.ClientConfig{URL: "tcp://" + l.Addr().String(), CleanSession: true, Logger: discard})
	if err == nil {
		c.Close()
		t.Fatal("Dial to a non-broker succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial: %v; want the context's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Dial took %s past a 700ms deadline", d)
	}
}

func TestClientRejectsBadArguments(t *testing.T) {
	t.Parallel()
	e := brokertest.StartEmbedded(t, broker.EmbeddedConfig{})
	c := dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "args", CleanSession: true})
	ctx := context.Background()
	if err := c.Publish(ctx, "a/+", 1, false, nil); err == nil {
		t.Error("Publish to a wildcard topic succeeded")
	}
	if err := c.Publish(ctx, "a", 3, false, nil); err == nil {
		t.Error("Publish with QoS 3 succeeded")
	}
	if err := c.Subscribe("a/#/b", 1, func(broker.Message) {}); err == nil {
		t.Error("Subscribe to an invalid filter succeeded")
	}
	if err := c.Subscribe("a", 1, nil); err == nil {
		t.Error("Subscribe with a nil handler succeeded")
	}
	c.Close()
	if err := c.Publish(ctx, "a", 1, false, nil); err == nil {
		t.Error("Publish after Close succeeded")
	}
	c.Close() // twice is fine
}

func TestOverlappingSubscriptionsAckOnce(t *testing.T) {
	t.Parallel()
	e := brokertest.StartEmbedded(t, broker.EmbeddedConfig{})
	c := dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "overlap", CleanSession: true})
	a, b := newInbox(), newInbox()
	subscribe(t, c, "delen/+/requests", 1, a.handler(false))
	subscribe(t, c, "delen/t1/#", 1, b.handler(false))
	publish(t, c, "delen/t1/requests", 1, false, "both")
	ma, mb := a.next(t, "first handler"), b.next(t, "second handler")
	if string(ma.Payload()) != "both" || string(mb.Payload()) != "both" {
		t.Fatalf("handlers got %q and %q", ma.Payload(), mb.Payload())
	}
	ma.Ack()
	mb.Ack()
	ma.Ack() // a second Ack does nothing
}
