package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ClientTLSConfig builds the TLS configuration of a Client (ClientConfig.TLS)
// for an ssl:// or mqtts:// broker URL from PEM files:
//
//   - caFile, when set, is the CA bundle that the broker's certificate must
//     chain to, in place of the system roots (a private CA, a self-signed
//     broker);
//   - certFile and keyFile, both or neither, are the client certificate
//     and its key, for brokers that require one (Mosquitto's
//     require_certificate, the embedded broker's TLSClientCAFile).
//
// The broker's host name is checked against its certificate, from the URL.
// With all three empty it returns a configuration that uses the system
// roots. TLS 1.2 is the minimum.
func ClientTLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadCertPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("broker: TLS CA bundle: %w", err)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("broker: a TLS client certificate needs both the certificate and the key file")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("broker: TLS client key pair: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// loadCertPool reads a PEM bundle of CA certificates.
func loadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}
