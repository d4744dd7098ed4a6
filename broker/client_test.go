package broker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
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

// countingConn counts the writes made to a connection.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestCorkedSendsAGroupInOneWrite: the publishes made inside Corked reach
// the broker in one write (up to three: paho hands a publish to its
// writer through a goroutine of its own, so the last two may still be on
// their way when the cork is lifted) instead of one each, every one acknowledged
// and delivered; a publish after Corked goes out at once.
func TestCorkedSendsAGroupInOneWrite(t *testing.T) {
	t.Parallel()
	e := brokertest.StartEmbedded(t, broker.EmbeddedConfig{})
	var writes atomic.Int64
	cfg := broker.WithConnWrap(broker.ClientConfig{URL: e.Addr(), ClientID: "corked", CleanSession: true},
		func(c net.Conn) net.Conn { return countingConn{Conn: c, writes: &writes} })
	pub := dial(t, cfg)
	sub := dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "corked-sub", CleanSession: true})
	in := newInbox()
	subscribe(t, sub, "corked/#", 1, in.handler(true))
	const n = 50
	before := writes.Load()
	pending := make([]*broker.Pending, n)
	pub.Corked(func() {
		for i := range pending {
			pending[i] = pub.PublishAsync("corked/x", 1, false, []byte(fmt.Sprint(i)))
		}
	})
	for i, p := range pending {
		<-p.Done()
		if err := p.Err(); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if w := writes.Load() - before; w < 1 || w > 3 {
		t.Errorf("%d publishes in %d writes, want 1 to 3", n, w)
	}
	got := map[string]bool{} // each handler runs on a goroutine of its own: no order here
	for range n {
		got[string(in.next(t, "a corked publish").Payload())] = true
	}
	for i := range n {
		if !got[fmt.Sprint(i)] {
			t.Fatalf("publish %d not received; got %v", i, got)
		}
	}
	publish(t, pub, "corked/y", 1, false, "after") // waits for its PUBACK: it was sent uncorked
	if m := in.next(t, "the publish after"); string(m.Payload()) != "after" {
		t.Fatalf("after Corked: %q", m.Payload())
	}
}
