package agent_test

// Tenant isolation and TLS, end to end with a real agent and real MQTT
// clients: the embedded broker configured from a tenants file (as `delen
// serve --tenants` does), a real Mosquitto with deploy/mosquitto/acl, and
// the embedded broker's TLS listener. Helpers here are prefixed iso so
// they stay clear of the other test files of the package.

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/agent/tenants"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/models/zoo"
	"github.com/delen-edge/delen/schema"
	"golang.org/x/crypto/bcrypt"
)

const (
	isoAgentUser = broker.DefaultAgentUser // the user deploy/mosquitto/acl names
	isoAgentPW   = "agent-secret"
	isoWait      = 20 * time.Second
)

// isoPasswords are the tenants' passwords.
var isoPasswords = map[string]string{"alpha": "alpha-secret", "beta": "beta-secret"}

func isoLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// isoTenantsFile writes a tenants file for alpha, beta and the agent and
// loads it as `delen serve --tenants` does.
func isoTenantsFile(t *testing.T) *tenants.File {
	t.Helper()
	h := func(pw string) string {
		s, err := tenants.Hash(pw, bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	doc := fmt.Sprintf("agent:\n  username: %s\n  password_hash: %q\ntenants:\n", isoAgentUser, h(isoAgentPW))
	for _, name := range []string{"alpha", "beta"} {
		doc += fmt.Sprintf("  - name: %s\n    password_hash: %q\n", name, h(isoPasswords[name]))
	}
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := tenants.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.CheckAgentPassword(isoAgentPW); err != nil {
		t.Fatal(err)
	}
	return f
}

// isoStartAgent runs an agent against url until the test ends.
func isoStartAgent(t *testing.T, url, user, password string, tlsCfg *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, agent.Config{
		AgentID: "agent-iso", BrokerURL: url, Username: user, Password: password, TLS: tlsCfg,
		Store: st, ProfileRuns: 20, Zoo: zoo.New(filepath.Join(dir, "models")), Logger: isoLogger(),
	})
	if err != nil {
		cancel()
		st.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		st.Close()
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := a.WaitReady(wctx); err != nil {
		t.Fatalf("agent not ready: %v", err)
	}
}

// isoDial connects a client that is closed when the test ends.
func isoDial(t *testing.T, cfg broker.ClientConfig) *broker.Client {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	if cfg.ClientID == "" {
		cfg.ClientID = fmt.Sprintf("iso-%s-%d", cfg.Username, time.Now().UnixNano())
	}
	cfg.CleanSession = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := broker.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("%s connects: %v", cfg.Username, err)
	}
	t.Cleanup(c.Close)
	return c
}

// isoRefused asserts that a client with cfg cannot connect, and that the
// last refusal mentions want.
func isoRefused(t *testing.T, what string, cfg broker.ClientConfig, want string) {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.ClientID = fmt.Sprintf("iso-refused-%d", time.Now().UnixNano())
	cfg.CleanSession = true
	// The first attempt's error, however long the handshake takes on a
	// loaded machine (a 1.5 s deadline without FailFast ran out before it).
	cfg.FailFast = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := broker.Dial(ctx, cfg)
	if err == nil {
		c.Close()
		t.Errorf("%s connected", what)
		return
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("%s refused with %v; want a refusal naming %q", what, err, want)
	}
}

// isoInbox collects messages by topic.
type isoInbox struct {
	mu      sync.Mutex
	byTopic map[string][][]byte
	arrived chan struct{}
}

func newIsoInbox() *isoInbox {
	return &isoInbox{byTopic: map[string][][]byte{}, arrived: make(chan struct{}, 1)}
}

func (in *isoInbox) handler(m broker.Message) {
	m.Ack()
	in.mu.Lock()
	in.byTopic[m.Topic()] = append(in.byTopic[m.Topic()], append([]byte(nil), m.Payload()...))
	in.mu.Unlock()
	select {
	case in.arrived <- struct{}{}:
	default:
	}
}

// topicsUnder lists the topics under prefix that messages came on, with
// their counts.
func (in *isoInbox) topicsUnder(prefix string) []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []string
	for topic, ps := range in.byTopic {
		if strings.HasPrefix(topic, prefix) {
			out = append(out, fmt.Sprintf("%s (%d)", topic, len(ps)))
		}
	}
	return out
}

// waitFor waits until some message satisfies ok.
func (in *isoInbox) waitFor(t *testing.T, what string, ok func(topic string, payload []byte) bool) {
	t.Helper()
	deadline := time.NewTimer(isoWait)
	defer deadline.Stop()
	for {
		in.mu.Lock()
		for topic, ps := range in.byTopic {
			for _, p := range ps {
				if ok(topic, p) {
					in.mu.Unlock()
					return
				}
			}
		}
		in.mu.Unlock()
		select {
		case <-in.arrived:
		case <-deadline.C:
			t.Fatalf("no %s within %s", what, isoWait)
		}
	}
}

// isoResult waits for the result with id among a tenant's messages.
func (in *isoInbox) isoResult(t *testing.T, id string) *schema.Result {
	t.Helper()
	var res *schema.Result
	in.waitFor(t, "result for "+id, func(_ string, p []byte) bool {
		r, _, err := schema.DecodeResult(p, 1<<20)
		if err == nil && r.ID == id {
			res = r
			return true
		}
		return false
	})
	return res
}

// ids lists the ids of the results (or requests) in the inbox.
func (in *isoInbox) ids() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []string
	for _, ps := range in.byTopic {
		for _, p := range ps {
			if r, _, err := schema.DecodeResult(p, 1<<20); err == nil && r.ID != "" {
				out = append(out, r.ID)
			} else if q, _, err := schema.DecodeRequest(p, 1<<20); err == nil {
				out = append(out, q.ID)
			} else {
				out = append(out, "?"+string(p))
			}
		}
	}
	return out
}

var isoDigits = func() *mnist.Set { s, _ := mnist.Test(); return s }()

// isoRequest is an MNIST request that stops at exit 1.
func isoRequest(t *testing.T, id string) []byte {
	t.Helper()
	one := 1
	b, err := schema.EncodeRequest(&schema.Request{ID: id, Input: schema.NewUint8Tensor([]int{1, 28, 28}, isoDigits.Images[0]),
		Bound: schema.Bound{Exit: &one}}, schema.MsgPack)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func isoPublish(t *testing.T, c *broker.Client, topic string, qos byte, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Publish(ctx, topic, qos, false, payload); err != nil {
		t.Fatalf("publish to %s: %v", topic, err)
	}
}

// isoBroker is a broker with tenant accounts for alpha and beta.
type isoBroker struct {
	url string
	// refusesSubscribe: the broker answers a denied SUBSCRIBE with a failure
	// in its SUBACK (the embedded broker); Mosquitto 2.0 grants it and
	// delivers nothing.
	refusesSubscribe bool
}

// TestIsolationTenants: with tenant accounts and the tenant ACL, anonymous
// clients are refused; a tenant's own requests are served end to end; it
// can neither publish into another tenant's topics (requests, control,
// results) nor read them; the other tenant sees nothing of it.
func TestIsolationTenants(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		f := isoTenantsFile(t)
		e := startEmbedded(t, broker.EmbeddedConfig{Auth: f.Authenticator(schema.Topics{})})
		isoScenario(t, isoBroker{url: e.Addr(), refusesSubscribe: true})
	})
	t.Run("mosquitto", func(t *testing.T) {
		dir := t.TempDir()
		pw := filepath.Join(dir, "passwd")
		// The agent and alpha through mosquitto_passwd, beta through our
		// own writer of Mosquitto's $7$ format.
		brokertest.AddMosquittoUser(t, pw, isoAgentUser, isoAgentPW, true)
		brokertest.AddMosquittoUser(t, pw, "alpha", isoPasswords["alpha"], true)
		brokertest.AddMosquittoUser(t, pw, "beta", isoPasswords["beta"], false)
		acl, err := filepath.Abs(filepath.Join("..", "deploy", "mosquitto", "acl"))
		if err != nil {
			t.Fatal(err)
		}
		m := brokertest.StartMosquitto(t, brokertest.MosquittoOptions{DenyAnonymous: true,
			ExtraConfig: []string{"password_file " + pw, "acl_file " + acl, "log_type all"}})
		isoScenario(t, isoBroker{url: m.URL()})
	})
}

func isoScenario(t *testing.T, b isoBroker) {
	topics := schema.Topics{}
	alphaCfg := broker.ClientConfig{URL: b.url, Username: "alpha", Password: isoPasswords["alpha"]}

	// Refused: anonymous, and a tenant with another tenant's password.
	var refusals sync.WaitGroup
	refusals.Go(func() { isoRefused(t, "an anonymous client", broker.ClientConfig{URL: b.url}, "not Authorized") })
	refusals.Go(func() {
		isoRefused(t, "alpha with beta's password", broker.ClientConfig{URL: b.url, Username: "alpha", Password: isoPasswords["beta"]}, "not Authorized")
	})

	isoStartAgent(t, b.url, isoAgentUser, isoAgentPW, nil)

	// A spy with the agent's rights sees every request the broker accepts.
	spy := newIsoInbox()
	if err := isoDial(t, broker.ClientConfig{URL: b.url, Username: isoAgentUser, Password: isoAgentPW}).
		Subscribe(topics.RequestsFilter(), 1, spy.handler); err != nil {
		t.Fatal(err)
	}

	alpha, alphaIn := isoDial(t, alphaCfg), newIsoInbox()
	if err := alpha.Subscribe(topics.Results("alpha"), 1, alphaIn.handler); err != nil {
		t.Fatal(err)
	}
	beta, betaIn := isoDial(t, broker.ClientConfig{URL: b.url, Username: "beta", Password: isoPasswords["beta"]}), newIsoInbox()
	if err := beta.Subscribe(topics.Results("beta"), 1, betaIn.handler); err != nil {
		t.Fatal(err)
	}

	// alpha reaches for beta's results and every tenant's.
	leaked := newIsoInbox()
	for _, filter := range []string{topics.Results("beta"), "delen/+/results", "delen/#", "$share/g/" + topics.Results("beta")} {
		err := alpha.Subscribe(filter, 1, leaked.handler)
		switch {
		case b.refusesSubscribe && err == nil:
			t.Errorf("alpha may subscribe to %s", filter)
		case !b.refusesSubscribe && err != nil:
			t.Errorf("subscribe to %s: %v (Mosquitto grants it and delivers nothing)", filter, err)
		}
	}

	// alpha publishes into beta's topics from a second connection: QoS 0
	// first (dropped silently), then QoS 1, whose end (a PUBACK from
	// Mosquitto, the connection closed by the embedded broker) says the
	// broker has handled all of them.
	lost := make(chan error, 1)
	evilCfg := alphaCfg
	evilCfg.OnConnectionLost = func(err error) {
		select {
		case lost <- err:
		default:
		}
	}
	evil := isoDial(t, evilCfg)
	forged, _ := schema.EncodeResult(&schema.Result{ID: "forged", Tenant: "beta", Status: schema.StatusOK}, schema.JSON)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, p := range []struct {
		topic   string
		payload []byte
	}{
		{topics.Requests("beta"), isoRequest(t, "evil0")},
		{topics.Results("beta"), forged},
		{topics.Control("beta"), []byte(`{"bound": {"exit": 3}}`)},
		{topics.AgentStatus("agent-iso"), []byte(`{"status": "offline"}`)},
	} {
		if err := evil.Publish(ctx, p.topic, 0, false, p.payload); err != nil {
			t.Fatalf("QoS 0 publish to %s: %v", p.topic, err)
		}
	}
	pubDone := make(chan error, 1)
	go func() { pubDone <- evil.Publish(ctx, topics.Requests("beta"), 1, false, isoRequest(t, "evil1")) }()
	select {
	case err := <-pubDone:
		t.Logf("QoS 1 publish to beta's requests: %v", err)
	case err := <-lost:
		t.Logf("QoS 1 publish to beta's requests: connection closed (%v)", err)
	case <-ctx.Done():
		t.Fatal("the QoS 1 publish to beta's requests neither completed nor closed the connection")
	}
	evil.Close()

	// alpha's own request is served; the spy sees it, and none of the above.
	isoPublish(t, alpha, topics.Requests("alpha"), 1, isoRequest(t, "a1"))
	if r := alphaIn.isoResult(t, "a1"); r.Status != schema.StatusOK || r.Tenant != "alpha" || r.Exit != 1 {
		t.Errorf("alpha's result: %+v", r)
	}
	spy.waitFor(t, "alpha's request at the agent", func(topic string, _ []byte) bool { return topic == topics.Requests("alpha") })

	// beta is served too, and gets nothing of alpha's.
	isoPublish(t, beta, topics.Requests("beta"), 1, isoRequest(t, "b1"))
	if r := betaIn.isoResult(t, "b1"); r.Status != schema.StatusOK || r.Tenant != "beta" {
		t.Errorf("beta's result: %+v", r)
	}
	spy.waitFor(t, "beta's request at the agent", func(topic string, _ []byte) bool { return topic == topics.Requests("beta") })

	if got := spy.ids(); len(got) != 2 {
		t.Errorf("requests that reached the agent's subscription: %v; want a1 and b1 only", got)
	}
	if got := betaIn.ids(); len(got) != 1 || got[0] != "b1" {
		t.Errorf("beta received results %v; want b1 only (nothing forged, nothing of alpha's)", got)
	}
	if got := alphaIn.ids(); len(got) != 1 || got[0] != "a1" {
		t.Errorf("alpha received results %v; want a1 only", got)
	}
	// (Mosquitto grants delen/# and delivers alpha's own topics and the
	// agents' status through it, which alpha may read.)
	if got := leaked.topicsUnder("delen/beta/"); len(got) != 0 {
		t.Errorf("alpha's subscriptions to other tenants' topics received messages on %v", got)
	}
	refusals.Wait()
}

// TestIsolationTLS: the embedded broker's TLS listener with client
// certificates and tenant accounts; the agent connects over ssl:// with the
// CA and its client certificate and serves a tenant's request end to end;
// a client that does not trust the CA, or shows no certificate, is refused.
func TestIsolationTLS(t *testing.T) {
	pki := brokertest.WritePKI(t)
	f := isoTenantsFile(t)
	e := startEmbedded(t, broker.EmbeddedConfig{Auth: f.Authenticator(schema.Topics{}),
		TLSCertFile: pki.CertFile, TLSKeyFile: pki.KeyFile, TLSAddr: "127.0.0.1:0", TLSClientCAFile: pki.CAFile})
	url := "ssl://" + strings.TrimPrefix(e.TLSAddr(), "mqtts://")
	clientTLS, err := broker.ClientTLSConfig(pki.CAFile, pki.ClientCertFile, pki.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	caOnly, err := broker.ClientTLSConfig(pki.CAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}

	var refusals sync.WaitGroup
	refusals.Go(func() {
		isoRefused(t, "a client without the CA", broker.ClientConfig{URL: url, Username: "alpha", Password: isoPasswords["alpha"]}, "unknown authority")
	})
	refusals.Go(func() {
		isoRefused(t, "a client without a certificate", broker.ClientConfig{URL: url, Username: "alpha", Password: isoPasswords["alpha"], TLS: caOnly}, "certificate required")
	})

	isoStartAgent(t, url, isoAgentUser, isoAgentPW, clientTLS)
	topics := schema.Topics{}
	alpha, in := isoDial(t, broker.ClientConfig{URL: url, Username: "alpha", Password: isoPasswords["alpha"], TLS: clientTLS}), newIsoInbox()
	if err := alpha.Subscribe(topics.Results("alpha"), 1, in.handler); err != nil {
		t.Fatal(err)
	}
	isoPublish(t, alpha, topics.Requests("alpha"), 1, isoRequest(t, "tls1"))
	if r := in.isoResult(t, "tls1"); r.Status != schema.StatusOK || r.Tenant != "alpha" || r.Class == nil {
		t.Errorf("result over TLS: %+v", r)
	}
	refusals.Wait()
}
