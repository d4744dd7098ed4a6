package broker_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "delen test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestEmbeddedTLSAndFreePort(t *testing.T) {
	t.Parallel()
	cert, key, pool := selfSigned(t, t.TempDir())
	e := brokertest.StartEmbedded(t, broker.EmbeddedConfig{TLSCertFile: cert, TLSKeyFile: key, TLSAddr: "127.0.0.1:0"})
	for _, a := range []string{e.Addr(), e.TLSAddr()} {
		if strings.HasSuffix(a, ":0") {
			t.Fatalf("address %s does not report the port chosen", a)
		}
	}
	if !strings.HasPrefix(e.TLSAddr(), "mqtts://") || !strings.HasPrefix(e.Addr(), "tcp://") {
		t.Fatalf("addresses %s and %s", e.Addr(), e.TLSAddr())
	}
	tlsCfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	sub := dial(t, broker.ClientConfig{URL: e.TLSAddr(), ClientID: "tls-sub", CleanSession: true, TLS: tlsCfg})
	in := newInbox()
	subscribe(t, sub, "delen/+/requests", 1, in.handler(true))
	pub := dial(t, broker.ClientConfig{URL: "ssl://" + strings.TrimPrefix(e.TLSAddr(), "mqtts://"), ClientID: "tls-pub", CleanSession: true, TLS: tlsCfg})
	publish(t, pub, "delen/t1/requests", 1, false, "over tls")
	if m := in.next(t, "message over TLS"); string(m.Payload()) != "over tls" {
		t.Fatalf("got %q", m.Payload())
	}
	sub.Close()
	pub.Close()
}

// Over TLS too, a tenant that has its PUBACK finds its request stored.
func TestPubackMeansStoredOverTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key, pool := selfSigned(t, t.TempDir())
	e := brokertest.StartEmbedded(t, broker.EmbeddedConfig{DataDir: dir, TLSCertFile: cert, TLSKeyFile: key, TLSAddr: "127.0.0.1:0"})
	// A session that takes nothing: what it is sent stays in flight.
	attach(t, e, "agent", broker.Subscription{Filter: "delen/+/requests", QoS: 1, Handler: func(broker.Message) {}})
	tenant := dial(t, broker.ClientConfig{URL: e.TLSAddr(), ClientID: "tls-tenant", CleanSession: true,
		TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	for i := range 10 {
		publish(t, tenant, "delen/t1/requests", 1, false, fmt.Sprint("request ", i))
		if n := broker.InflightOnDisk(t, dir); n != i+1 {
			t.Fatalf("after %d PUBACKs over TLS %d requests are on disk", i+1, n)
		}
	}
}
