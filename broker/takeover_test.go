package broker_test

import (
	"context"
	"strings"
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
