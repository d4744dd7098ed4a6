package broker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
)

// plainVerify stands in for bcrypt.CompareHashAndPassword: the "hash" is
// "plain:" + password.
func plainVerify(hash, password []byte) error {
	if string(hash) == "plain:"+string(password) {
		return nil
	}
	return errors.New("mismatch")
}

func tenantAuth() *broker.Authenticator {
	return &broker.Authenticator{
		Users: []broker.User{
			{Name: "agent", PasswordHash: "plain:agent-pw"},
			{Name: "t1", PasswordHash: "plain:t1-pw"},
			{Name: "t2", PasswordHash: "plain:t2-pw"},
		},
		ACL: []broker.ACLRule{
			{User: "agent", Topic: "delen/#", Access: broker.AccessReadWrite},
			{Topic: "delen/%u/requests", Access: broker.AccessWrite},
			{Topic: "delen/%u/control", Access: broker.AccessWrite},
			{Topic: "delen/%u/results", Access: broker.AccessRead},
			{Topic: "delen/%u/state", Access: broker.AccessRead},
			{Topic: "delen/_agents/+/status", Access: broker.AccessRead},
		},
		VerifyPassword: plainVerify,
	}
}

func TestAuthenticatorAllowed(t *testing.T) {
	a := tenantAuth()
	for _, c := range []struct {
		user, topic string
		write, want bool
	}{
		{"t1", "delen/t1/requests", true, true},
		{"t1", "delen/t1/requests", false, false},
		{"t1", "delen/t2/requests", true, false},
		{"t1", "delen/t1/results", false, true},
		{"t1", "delen/t1/results", true, false},
		{"t1", "delen/+/results", false, false}, // would cover other tenants
		{"t1", "delen/#", false, false},
		{"t1", "delen/_agents/a1/status", false, true},
		{"t1", "delen/_agents/+/status", false, true},
		{"t1", "delen/_agents/#", false, false},
		{"agent", "$share/agents/delen/+/requests", false, true},
		{"agent", "delen/t2/results", true, true},
		{"agent", "other/x", true, false},
		{"", "delen/t1/requests", true, false}, // %u never matches anonymous
		{"a+b", "delen/a+b/requests", true, false},
	} {
		if got := a.Allowed(c.user, "cid", c.topic, c.write); got != c.want {
			t.Errorf("Allowed(%q, %q, write %t) = %t; want %t", c.user, c.topic, c.write, got, c.want)
		}
	}
	if !a.Authenticate("t1", []byte("t1-pw")) || a.Authenticate("t1", []byte("t2-pw")) ||
		a.Authenticate("nobody", []byte("x")) || a.Authenticate("", nil) {
		t.Error("Authenticate accepts or refuses the wrong credentials")
	}
	open := &broker.Authenticator{AllowAnonymous: true}
	if !open.Authenticate("", nil) || !open.Allowed("", "c", "any/topic", true) {
		t.Error("an Authenticator without users or rules should let anonymous clients do anything")
	}
}

func TestAuthenticatorNeedsVerifier(t *testing.T) {
	a := tenantAuth()
	a.VerifyPassword = nil
	if _, err := broker.NewEmbedded(broker.EmbeddedConfig{Addr: "127.0.0.1:0", Auth: a}); err == nil {
		t.Fatal("NewEmbedded accepted users without VerifyPassword")
	}
}

func TestEmbeddedAuth(t *testing.T) {
	t.Parallel()
	e := brokertest.StartEmbedded(t, broker.EmbeddedConfig{Auth: tenantAuth()})

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := broker.Dial(ctx, broker.ClientConfig{URL: e.Addr(), ClientID: "bad", CleanSession: true,
		Username: "t1", Password: "wrong", Logger: discard})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last attempt") {
		t.Fatalf("Dial with a wrong password: %v; want a deadline error naming the refusal", err)
	}
	t.Logf("Dial with a wrong password: %v", err)
	ctx, cancel = context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := broker.Dial(ctx, broker.ClientConfig{URL: e.Addr(), ClientID: "anon", CleanSession: true, Logger: discard}); err == nil {
		t.Fatal("anonymous client accepted")
	}

	agent := dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "agent-1", Username: "agent", Password: "agent-pw", CleanSession: true})
	requests := newInbox()
	subscribe(t, agent, "$share/agents/delen/+/requests", 1, requests.handler(true))

	t1 := dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "cam-1", Username: "t1", Password: "t1-pw", CleanSession: true})
	if err := t1.Subscribe("delen/t2/results", 1, func(broker.Message) {}); err == nil {
		t.Fatal("t1 may subscribe to t2's results")
	}
	results := newInbox()
	subscribe(t, t1, "delen/t1/results", 1, results.handler(true))
	publish(t, t1, "delen/t1/requests", 1, false, "req")
	if m := requests.next(t, "t1's request"); m.Topic() != "delen/t1/requests" {
		t.Fatalf("agent got %s", m.Topic())
	}
	publish(t, agent, "delen/t1/results", 1, false, "res")
	if m := results.next(t, "t1's result"); string(m.Payload()) != "res" {
		t.Fatalf("t1 got %q", m.Payload())
	}
}
