package broker_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
	"github.com/delen-edge/delen/schema"
)

// TestSessionTakeoverByAnotherUserRefused: a tenant that connects with the
// agent's client ID gets neither the requests queued in the agent's session
// nor the agent's connection; the agent's session keeps them.
func TestSessionTakeoverByAnotherUserRefused(t *testing.T) {
	t.Parallel()
	auth := &broker.Authenticator{
		Users: []broker.User{
			{Name: "delen-agent", PasswordHash: "plain:agent-pw"},
			{Name: "a", PasswordHash: "plain:a-pw"},
			{Name: "b", PasswordHash: "plain:b-pw"},
		},
		ACL:            broker.TenantACL(schema.Topics{}, "delen-agent"),
		VerifyPassword: plainVerify,
	}
	e := brokertest.StartEmbedded(t, broker.EmbeddedConfig{Auth: auth})
	agentCfg := broker.ClientConfig{URL: e.Addr(), ClientID: "agent-1", Username: "delen-agent", Password: "agent-pw"}
	ag := dial(t, agentCfg)
	subscribe(t, ag, "delen/+/requests", 1, func(broker.Message) {})
	ag.Close()

	b := dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "b-1", Username: "b", Password: "b-pw", CleanSession: true})
	publish(t, b, "delen/b/requests", 1, false, "b's secret") // queued in the agent's session

	for _, clean := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		c, err := broker.Dial(ctx, broker.ClientConfig{URL: e.Addr(), ClientID: "agent-1", Username: "a", Password: "a-pw", CleanSession: clean, Logger: discard})
		cancel()
		if err == nil {
			c.Close()
			t.Fatalf("tenant a took over the agent's session (clean session %t)", clean)
		}
		if !strings.Contains(err.Error(), "not Authorized") && !strings.Contains(err.Error(), "bad user name or password") {
			t.Errorf("takeover refused with %v; want a refused CONNACK", err)
		}
	}

	// The agent comes back and finds the request in its session.
	in := newInbox()
	ag = dial(t, agentCfg)
	subscribe(t, ag, "delen/+/requests", 1, in.handler(true))
	if m := in.next(t, "the queued request"); string(m.Payload()) != "b's secret" {
		t.Fatalf("agent got %q", m.Payload())
	}
	// The agent itself may take over its own session again.
	ag.Close()
	dial(t, agentCfg).Close()
}

// TestNoLossAcrossSessionTakeovers: a persistent subscriber whose connection
// is cut again and again (as when the agent is killed and restarted) while publishers stream QoS 1
// messages gets every message at least once. The embedded broker used to
// lose the messages routed to the old connection in the instant it was
// taken over.
func TestNoLossAcrossSessionTakeovers(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b testBroker) {
		const (
			topic      = "delen/t1/requests"
			messages   = 6000
			publishers = 4
			takeovers  = 10
		)
		var (
			mu         sync.Mutex
			seen       = map[string]bool{}
			all        = make(chan struct{})
			fresh      = make(chan struct{}, messages) // one per message seen for the first time
			deliveries int
		)
		handler := func(m broker.Message) {
			m.Ack()
			mu.Lock()
			defer mu.Unlock()
			deliveries++
			if !seen[string(m.Payload())] {
				seen[string(m.Payload())] = true
				fresh <- struct{}{}
				if len(seen) == messages {
					close(all)
				}
			}
		}
		// connect opens a session and returns it with a function that cuts
		// its network connection without a DISCONNECT.
		connect := func() (*broker.Client, func()) {
			conns := make(chan net.Conn, 16)
			cfg := broker.WithConnHook(broker.ClientConfig{URL: b.URL(), ClientID: "takeover-sub"}, func(c net.Conn) { conns <- c })
			c := dial(t, cfg)
			subscribe(t, c, topic, 1, handler)
			return c, func() {
				for {
					select {
					case conn := <-conns:
						_ = conn.Close()
					default:
						return
					}
				}
			}
		}
		distinct := func() string {
			mu.Lock()
			defer mu.Unlock()
			return fmt.Sprintf("%d messages in %d deliveries", len(seen), deliveries)
		}
		sub, cut := connect()

		errs := make(chan error, publishers)
		for p := range publishers {
			pub := dial(t, broker.ClientConfig{URL: b.URL(), ClientID: fmt.Sprintf("takeover-pub-%d", p), CleanSession: true})
			go func() {
				// Each publish has its own bound: on a loaded machine 1,500
				// round trips in a row took longer than one shared bound.
				for i := p; i < messages; i += publishers {
					ctx, cancel := context.WithTimeout(context.Background(), wait)
					err := pub.Publish(ctx, topic, 1, false, []byte(fmt.Sprintf("m-%d", i)))
					cancel()
					if err != nil {
						errs <- fmt.Errorf("publish m-%d: %w", i, err)
						return
					}
				}
				errs <- nil
			}()
		}

		// Every messages/(takeovers+1) new messages, cut the session's
		// connection and connect again at once, as a crashed and restarted
		// agent does: the broker may not have noticed the old connection's
		// end when the new one takes the session over.
		for round := range takeovers {
			for range messages / (takeovers + 1) {
				within(t, fresh, fmt.Sprintf("a new message in round %d (%s so far)", round, distinct()))
			}
			cut()
			sub.Close()
			sub, cut = connect()
		}
		for range publishers {
			if err := within(t, errs, "the publishers"); err != nil {
				t.Fatal(err)
			}
		}
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-all:
			mu.Lock()
			t.Logf("%d messages, %d takeovers: %d deliveries", messages, takeovers, deliveries)
			mu.Unlock()
		case <-timer.C:
			mu.Lock()
			defer mu.Unlock()
			var missing []string
			for i := range messages {
				if p := fmt.Sprintf("m-%d", i); !seen[p] {
					missing = append(missing, p)
				}
			}
			t.Fatalf("%d of %d messages never delivered across %d takeovers: %v", len(missing), messages, takeovers, missing[:min(len(missing), 20)])
		}
	})
}
