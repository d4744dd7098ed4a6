// Package brokertest starts MQTT brokers for tests: a real Mosquitto
// process and the embedded broker, each on a free loopback port, stopped
// when the test ends.
package brokertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultMosquitto is where Debian installs the broker.
const DefaultMosquitto = "/usr/sbin/mosquitto"

// startTimeout bounds how long a Mosquitto start may take.
const startTimeout = 15 * time.Second

// MosquittoOptions configures StartMosquitto. The zero value is an
// anonymous-access broker with persistence.
type MosquittoOptions struct {
	// Binary is the mosquitto executable; "" means DefaultMosquitto, else
	// "mosquitto" on $PATH.
	Binary string
	// DenyAnonymous writes "allow_anonymous false" (clients then need the
	// password_file given in ExtraConfig).
	DenyAnonymous bool
	// ExtraConfig lines are appended to the generated mosquitto.conf.
	ExtraConfig []string
}

// Mosquitto is a Mosquitto process serving one test.
type Mosquitto struct {
	t    testing.TB
	bin  string
	dir  string
	conf string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  *lockedBuffer
}

// StartMosquitto writes a config into t.TempDir() (a listener on a free
// loopback port, set_tcp_nodelay, persistence in the temp dir so Restart
// keeps sessions and queued QoS 1 messages), starts Mosquitto, waits until
// its port accepts connections, and stops it when the test ends. Without a
// Mosquitto binary the test is skipped, unless the CI environment variable
// is set, in which case it fails.
func StartMosquitto(t testing.TB, opts MosquittoOptions) *Mosquitto {
	t.Helper()
	bin, err := findMosquitto(opts.Binary)
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("brokertest: %v (install the mosquitto package; CI fails instead of skipping)", err)
		}
		t.Fatalf("brokertest: %v", err)
	}
	m := &Mosquitto{t: t, bin: bin, dir: t.TempDir(), log: &lockedBuffer{}}
	m.conf = filepath.Join(m.dir, "mosquitto.conf")
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", m.log.String())
		}
	})

	// A free port can be taken by someone else between our probe and
	// Mosquitto's bind; try a few.
	var lastErr error
	for range 3 {
		m.port, err = freePort()
		if err != nil {
			t.Fatalf("brokertest: free port: %v", err)
		}
		if err := m.writeConfig(opts); err != nil {
			t.Fatalf("brokertest: %v", err)
		}
		if lastErr = m.start(); lastErr == nil {
			return m
		}
	}
	t.Fatalf("brokertest: start mosquitto: %v\n%s", lastErr, m.log.String())
	return nil
}

func findMosquitto(bin string) (string, error) {
	if bin != "" {
		return exec.LookPath(bin)
	}
	if _, err := os.Stat(DefaultMosquitto); err == nil {
		return DefaultMosquitto, nil
	}
	p, err := exec.LookPath("mosquitto")
	if err != nil {
		return "", errors.New("mosquitto not installed")
	}
	return p, nil
}

func (m *Mosquitto) writeConfig(opts MosquittoOptions) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by brokertest for %s\n", m.t.Name())
	fmt.Fprintf(&b, "listener %d 127.0.0.1\n", m.port)
	fmt.Fprintf(&b, "allow_anonymous %t\n", !opts.DenyAnonymous)
	b.WriteString("set_tcp_nodelay true\n")
	b.WriteString("persistence true\n")
	fmt.Fprintf(&b, "persistence_location %s%c\n", m.dir, filepath.Separator)
	b.WriteString("log_dest stderr\n")
	b.WriteString("log_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
	b.WriteString("connection_messages true\n")
	b.WriteString("log_timestamp_format %H:%M:%S\n")
	// Run as root, mosquitto switches to the user "mosquitto", which cannot
	// write the test's temp dir; keep the current user instead.
	if os.Geteuid() == 0 {
		if u, err := user.Current(); err == nil {
			fmt.Fprintf(&b, "user %s\n", u.Username)
		}
	}
	for _, l := range opts.ExtraConfig {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return os.WriteFile(m.conf, []byte(b.String()), 0o600)
}

// start launches mosquitto and waits until its port accepts connections.
func (m *Mosquitto) start() error {
	cmd := exec.Command(m.bin, "-c", m.conf)
	cmd.Stdout = m.log
	cmd.Stderr = m.log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	m.mu.Lock()
	m.cmd, m.done = cmd, done
	m.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port))
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		d := net.Dialer{Timeout: time.Second}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = conn.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("mosquitto exited: %v", cmd.ProcessState)
		case <-ctx.Done():
			m.Stop()
			return fmt.Errorf("mosquitto did not accept connections on %s within %s", addr, startTimeout)
		case <-tick.C:
		}
	}
}

// URL is the broker's address, "tcp://127.0.0.1:<port>".
func (m *Mosquitto) URL() string {
	return "tcp://127.0.0.1:" + strconv.Itoa(m.port)
}

// Dir is the folder holding mosquitto.conf and the persistence file; a test
// can put a password or ACL file there.
func (m *Mosquitto) Dir() string { return m.dir }

// Log returns what Mosquitto has logged so far.
func (m *Mosquitto) Log() string { return m.log.String() }

// Stop sends SIGTERM (Mosquitto then saves its persistence file) and waits
// for the process to exit, killing it if it takes longer than 10 s. Stop on a
// stopped broker does nothing.
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart stops Mosquitto and starts it again on the same port with the same
// config; sessions, subscriptions of persistent clients, retained messages
// and queued QoS 1 messages survive.
func (m *Mosquitto) Restart() {
	m.t.Helper()
	m.Stop()
	if err := m.start(); err != nil {
		m.t.Fatalf("brokertest: restart mosquitto: %v\n%s", err, m.log.String())
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
