//go:build linux

package faulttest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	agentID = "faults-agent"
	// readyTimeout bounds an agent start (model load, connect, subscribe).
	readyTimeout = 30 * time.Second
	// stopTimeout bounds a graceful stop (drain is 10 s at most).
	stopTimeout = 20 * time.Second
)

// agentProc is the delen agent run as a subprocess, across incarnations
// (start, kill -9 or SIGTERM, start again on the same data folder).
type agentProc struct {
	t         *testing.T
	brokerURL string
	listen    string // with its own embedded broker: the address it listens on
	data      string
	httpAddr  string // "" when HTTP is off
	extra     []string

	log *procLog // every incarnation's output

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current incarnation exits
	starts int
}

// newAgent prepares an agent on data serving through brokerURL; withHTTP
// gives it /metrics on a free loopback port.
func newAgent(t *testing.T, brokerURL, data string, withHTTP bool, extra ...string) *agentProc {
	a := &agentProc{t: t, brokerURL: brokerURL, data: data, extra: extra, log: &procLog{}}
	if withHTTP {
		a.httpAddr = freeAddr(t)
	}
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			t.Logf("agent log:\n%s", a.log.String())
		}
	})
	return a
}

// newServingAgent prepares `delen serve` as shipped, with its own embedded
// broker on a free loopback port (brokerURL for tenants): a kill ends the
// broker and the agent together.
func newServingAgent(t *testing.T, data string, withHTTP bool, extra ...string) *agentProc {
	a := newAgent(t, "", data, withHTTP, extra...)
	a.listen = freeAddr(t)
	a.brokerURL = "tcp://" + a.listen
	return a
}

// start runs a new incarnation and waits until it logs "agent ready".
func (a *agentProc) start() {
	a.t.Helper()
	a.mu.Lock()
	if a.cmd != nil {
		a.mu.Unlock()
		a.t.Fatal("agent already running")
	}
	a.starts++
	n := a.starts
	a.mu.Unlock()

	args := []string{"serve", "--broker", a.brokerURL, "--data", a.data, "--http", a.httpAddr,
		"--agent-id", agentID, "--meter", "model", "--queue-limit", "10000"}
	if a.listen != "" {
		args[1], args[2] = "--listen", a.listen
	}
	if lvl := os.Getenv("FAULTTEST_AGENT_LOG"); lvl != "" {
		args = append(args, "--log-level", lvl) // debug: one line per request
	}
	args = append(args, a.extra...)
	cmd := exec.Command(delenBin, args...)
	cmd.Env = agentEnv()
	cmd.Dir = a.data
	// The agent must not outlive the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	ready := make(chan struct{})
	w := a.log.incarnation(n, ready)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		a.t.Fatalf("start agent: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		w.Close()
		close(exited)
	}()
	a.mu.Lock()
	a.cmd, a.exited = cmd, exited
	a.mu.Unlock()

	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-ready:
	case <-exited:
		a.mu.Lock()
		a.cmd = nil
		a.mu.Unlock()
		a.t.Fatalf("agent (start %d) exited before it was ready: %v", n, cmd.ProcessState)
	case <-timer.C:
		a.t.Fatalf("agent (start %d) not ready after %s", n, readyTimeout)
	}
}

// kill sends SIGKILL and waits for the process to go: a crash.
func (a *agentProc) kill() {
	a.mu.Lock()
	cmd, exited := a.cmd, a.exited
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// stop sends SIGTERM and waits for a clean exit (drain, offline status,
// flush, store closed).
func (a *agentProc) stop() {
	a.t.Helper()
	a.mu.Lock()
	cmd, exited := a.cmd, a.exited
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-exited
		a.t.Fatalf("agent did not stop within %s after SIGTERM", stopTimeout)
	}
	if !cmd.ProcessState.Success() {
		a.t.Errorf("agent exited with %v after SIGTERM", cmd.ProcessState)
	}
}

// running reports whether the current incarnation is alive.
func (a *agentProc) running() bool {
	a.mu.Lock()
	exited := a.exited
	a.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// metric reads one unlabelled counter or gauge from /metrics; labelled
// series are summed.
func (a *agentProc) metric(name string) float64 {
	a.t.Helper()
	if a.httpAddr == "" {
		a.t.Fatal("agent has no HTTP endpoint")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.httpAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("GET /metrics: %v", err)
	}
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// freeAddr is a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// procLog collects the agent's output, marking each incarnation, and
// signals "agent ready" lines.
type procLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *procLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count is how many lines contain s.
func (l *procLog) count(s string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// incarnation returns the writer of start n; ready is closed at its
// first "agent ready" line.
func (l *procLog) incarnation(n int, ready chan struct{}) *lineWriter {
	l.mu.Lock()
	fmt.Fprintf(&l.b, "----- agent start %d -----\n", n)
	l.mu.Unlock()
	return &lineWriter{log: l, ready: ready}
}

// lineWriter splits a process's output into lines for procLog.
type lineWriter struct {
	log     *procLog
	mu      sync.Mutex
	partial []byte
	ready   chan struct{}
	once    sync.Once
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(w.partial[:i+1])
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) line(b []byte) {
	w.log.mu.Lock()
	w.log.b.Write(b)
	w.log.mu.Unlock()
	if bytes.Contains(b, []byte(`msg="agent ready"`)) {
		w.once.Do(func() { close(w.ready) })
	}
}

// Close flushes a last line without a newline.
func (w *lineWriter) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.line(append(w.partial, '\n'))
		w.partial = nil
	}
}
