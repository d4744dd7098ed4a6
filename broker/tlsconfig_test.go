package broker_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
)

func TestClientTLSConfigErrors(t *testing.T) {
	p := brokertest.WritePKI(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ ca, cert, key, want string }{
		{filepath.Join(t.TempDir(), "missing.pem"), "", "", "CA bundle"},
		{notPEM, "", "", "no PEM certificate"},
		{p.CAFile, p.ClientCertFile, "", "both"},
		{p.CAFile, "", p.ClientKeyFile, "both"},
		{p.CAFile, p.ClientCertFile, p.KeyFile, "key pair"}, // key of another certificate
	} {
		if _, err := broker.ClientTLSConfig(c.ca, c.cert, c.key); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ClientTLSConfig(%q, %q, %q) = %v; want an error with %q", c.ca, c.cert, c.key, err, c.want)
		}
	}
	cfg, err := broker.ClientTLSConfig("", "", "")
	if err != nil || cfg.RootCAs != nil || len(cfg.Certificates) != 0 || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("ClientTLSConfig with no files: %+v, %v", cfg, err)
	}
	if _, err := broker.NewEmbedded(broker.EmbeddedConfig{Addr: "127.0.0.1:0", TLSClientCAFile: p.CAFile}); err == nil {
		t.Error("a client CA without a TLS listener accepted")
	}
	if _, err := broker.NewEmbedded(broker.EmbeddedConfig{Addr: "127.0.0.1:0", TLSCertFile: p.CertFile, TLSKeyFile: p.KeyFile, TLSClientCAFile: notPEM}); err == nil {
		t.Error("a client CA file without certificates accepted")
	}
}

// TestEmbeddedMutualTLS: with TLSClientCAFile, the TLS listener takes only
// clients that trust its CA and show a certificate signed by the client CA.
func TestEmbeddedMutualTLS(t *testing.T) {
	t.Parallel()
	p := brokertest.WritePKI(t)
	e := brokertest.StartEmbedded(t, broker.EmbeddedConfig{TLSCertFile: p.CertFile, TLSKeyFile: p.KeyFile,
		TLSAddr: "127.0.0.1:0", TLSClientCAFile: p.CAFile})
	url := "ssl://" + strings.TrimPrefix(e.TLSAddr(), "mqtts://")

	full, err := broker.ClientTLSConfig(p.CAFile, p.ClientCertFile, p.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	sub := dial(t, broker.ClientConfig{URL: url, ClientID: "mtls-sub", CleanSession: true, TLS: full})
	in := newInbox()
	subscribe(t, sub, "delen/+/results", 1, in.handler(true))
	pub := dial(t, broker.ClientConfig{URL: e.Addr(), ClientID: "plain-pub", CleanSession: true})
	publish(t, pub, "delen/t1/results", 1, false, "over mtls")
	if m := in.next(t, "message over mutual TLS"); string(m.Payload()) != "over mtls" {
		t.Fatalf("got %q", m.Payload())
	}

	caOnly, err := broker.ClientTLSConfig(p.CAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  *tls.Config
		want string
	}{
		{"without a client certificate", caOnly, "certificate required"},
		{"without the CA", nil, "unknown authority"},
	} {
		// FailFast: the first attempt's error, however slow the machine
		// (a short deadline ended before the handshake under load).
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cl, err := broker.Dial(ctx, broker.ClientConfig{URL: url, ClientID: "refused", CleanSession: true, TLS: c.cfg, FailFast: true, Logger: discard})
		cancel()
		if err == nil {
			cl.Close()
			t.Errorf("a client %s connected", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("a client %s: %v; want an error naming %q", c.name, err, c.want)
		}
	}
}
