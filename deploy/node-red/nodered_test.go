// Package nodered tests deploy/node-red/flows.json in a real Node-RED: the
// flow is started headless against an agent, its inject nodes are pressed
// through Node-RED's admin HTTP API, and the results must arrive.
package nodered

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
	"github.com/delen-edge/delen/schema"
)

// nodeREDVersion is the Node-RED the flow is tested with.
const nodeREDVersion = "4.1.8" // Node-RED 5 needs Node.js 22; the machines here have 20

func need(t *testing.T, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found", prog)
		}
		t.Skipf("%s not found", prog)
	}
	return p
}

// install puts Node-RED into .cache/node-red/<version> at the module root
// (kept between runs) and returns its executable.
func install(t *testing.T) string {
	t.Helper()
	npm := need(t, "npm")
	need(t, "node")
	dir, err := filepath.Abs(filepath.Join("..", "..", ".cache", "node-red", nodeREDVersion))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "node_modules", ".bin", "node-red")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pkg := fmt.Sprintf(`{"name":"delen-node-red","private":true,"dependencies":{"node-red":%q}}`, nodeREDVersion)
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(pkg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(npm, "install", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install node-red: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestFlowInNodeRED(t *testing.T) {
	bin := install(t)
	emb := brokertest.StartEmbedded(t, broker.EmbeddedConfig{})
	st, err := store.Open(filepath.Join(t.TempDir(), "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, agent.Config{BrokerURL: emb.Addr(), Store: st, AgentID: "node-red-test", ProfileRuns: 20})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	// Watch the tenant's results from the test as well.
	c, err := broker.Dial(ctx, broker.ClientConfig{URL: emb.Addr(), ClientID: "node-red-watch", CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var mu sync.Mutex
	results := map[string]*schema.Result{}
	got := make(chan struct{}, 16)
	var topics schema.Topics
	c.Subscribe(topics.Results("nodered"), 1, func(m broker.Message) {
		m.Ack()
		if r, _, err := schema.DecodeResult(m.Payload(), 1<<20); err == nil {
			mu.Lock()
			results[r.Meta["bound"].(string)] = r
			mu.Unlock()
			got <- struct{}{}
		}
	})

	// Node-RED, headless, with the flow and a user dir of its own.
	user := t.TempDir()
	flow, err := os.ReadFile("flows.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(user, "flows.json"), flow, 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(strings.TrimPrefix(emb.Addr(), "tcp://"), ":")
	uiPort := freePort(t)
	cmd := exec.Command(bin, "--userDir", user, "--port", fmt.Sprint(uiPort), "flows.json")
	cmd.Env = append(os.Environ(), "DELEN_MQTT_HOST="+host, "DELEN_MQTT_PORT="+port, "NODE_RED_ENABLE_PROJECTS=false")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Node-RED says when the flow's MQTT node is connected.
	connected := make(chan struct{})
	summary := make(chan struct{}) // the exit-1 result's summary line printed
	exited := make(chan struct{})
	var log strings.Builder
	var logMu sync.Mutex
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stdout)
		var once, summaryOnce sync.Once
		for sc.Scan() {
			logMu.Lock()
			log.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if strings.Contains(sc.Text(), "Connected to broker") {
				once.Do(func() { close(connected) })
			}
			if strings.Contains(sc.Text(), "exit 1/3") {
				summaryOnce.Do(func() { close(summary) })
			}
		}
	}()
	select {
	case <-connected:
	case <-exited:
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("Node-RED exited:\n%s", log.String())
	case <-time.After(60 * time.Second):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("Node-RED's flow did not connect to the broker within 60 s:\n%s", log.String())
	}

	kinds := map[string]string{"latency_ms": "inject-latency", "accuracy": "inject-accuracy", "energy_mj": "inject-energy",
		"confidence": "inject-confidence", "exit": "inject-exit"}
	for _, id := range kinds {
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/inject/%s", uiPort, id), "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("inject %s: %s %s", id, resp.Status, body)
		}
	}
	deadline := time.After(30 * time.Second)
	for n := 0; n < len(kinds); n++ {
		select {
		case <-got:
		case <-deadline:
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("%d of %d results after pressing the inject nodes: %v", len(results), len(kinds), results)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for kind := range kinds {
		r := results[kind]
		if r == nil || r.Status == schema.StatusError || r.Class == nil || r.Exit < 1 || r.LatencyMS <= 0 || r.EnergySource == "" {
			t.Errorf("%s: result %+v", kind, r)
		}
	}
	if r := results["exit"]; r != nil && r.Exit != 1 {
		t.Errorf("exit-1 inject served exit %d", r.Exit)
	}
	// The flow's summary node prints what it received (debug to console),
	// possibly after the test's own subscription got the results.
	select {
	case <-summary:
	case <-time.After(20 * time.Second):
		logMu.Lock()
		t.Errorf("Node-RED's debug output has no summary line for the exit-1 result within 20 s:\n%s", log.String())
		logMu.Unlock()
	}
	logMu.Lock()
	defer logMu.Unlock()
	for _, line := range strings.Split(log.String(), "\n") {
		if strings.Contains(line, "· exit ") {
			t.Log(strings.TrimSpace(line))
		}
	}
}
