// Package clients holds the client snippets of the README (Node.js with
// mqtt and @msgpack/msgpack; Python on Debian's paho-mqtt, msgpack and
// numpy; the command line with mosquitto_rr) and runs them against a real
// agent.
package clients

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
)

// serve starts an agent on an embedded broker and returns host and port.
func serve(t *testing.T) (string, string) {
	t.Helper()
	emb := brokertest.StartEmbedded(t, broker.EmbeddedConfig{})
	runAgent(t, agent.Config{BrokerURL: emb.Addr(), AgentID: "clients-test"})
	hostPort := strings.TrimPrefix(emb.Addr(), "tcp://")
	i := strings.LastIndex(hostPort, ":")
	return hostPort[:i], hostPort[i+1:]
}

// runAgent runs an agent with cfg (a store in a temporary folder, a short
// profile) until the test ends, and waits until it is ready.
func runAgent(t *testing.T, cfg agent.Config) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.ProfileRuns = st, 20
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := a.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
}

// need finds a program, failing in CI (where `make setup` installs it)
// and skipping elsewhere.
func need(t *testing.T, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (make setup installs it)", prog)
		}
		t.Skipf("%s not found", prog)
	}
	return p
}

type result struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Exit   int    `json:"exit"`
	Exits  int    `json:"exits"`
	Class  *int   `json:"class"`
}

func check(t *testing.T, out []byte, wantPrefix string) {
	t.Helper()
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("output is not a JSON result: %v\n%s", err, out)
	}
	// "late": served, past the snippet's latency bound (a loaded machine).
	if !strings.HasPrefix(r.ID, wantPrefix) || (r.Status != "ok" && r.Status != "late") || r.Exit < 1 || r.Exits != 3 || r.Class == nil {
		t.Fatalf("result %+v", r)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}

// TestNodeClient installs the Node.js snippet's dependencies (cached under
// .cache/npm-clients at the module root, keyed by package.json) and runs it.
func TestNodeClient(t *testing.T) {
	node := need(t, "node")
	npm := need(t, "npm")
	pkg, err := os.ReadFile("node/package.json")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pkg)
	dir, err := filepath.Abs(filepath.Join("..", "..", ".cache", "npm-clients", hex.EncodeToString(sum[:6])))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "mqtt")); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "package.json"), pkg, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(npm, "install", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm install: %v\n%s", err, out)
		}
	}
	src, err := os.ReadFile("node/client.mjs")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "client.mjs") // beside its node_modules
	if err := os.WriteFile(script, src, 0o644); err != nil {
		t.Fatal(err)
	}
	host, port := serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, script, "mqtt://"+host+":"+port, "cam1").Output()
	if err != nil {
		t.Fatalf("node client: %v\n%s", err, out)
	}
	check(t, out, "node-")
	// Camera frames as files written by ImageMagick (digitImages).
	jpg, png, label := digitImages(t)
	for _, img := range []string{jpg, png} {
		out, err := exec.CommandContext(ctx, node, script, "mqtt://"+host+":"+port, "cam1", img).Output()
		if err != nil {
			t.Fatalf("node client with %s: %v\n%s", filepath.Base(img), err, out)
		}
		// The snippet's bound is latency_ms 50: on a loaded machine a
		// decoded frame may be served late, which is still served.
		var r result
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("output is not a JSON result: %v\n%s", err, out)
		}
		if (r.Status != "ok" && r.Status != "late") || r.Class == nil || r.Exits != 3 {
			t.Fatalf("%s: result %+v", filepath.Base(img), r)
		}
		if *r.Class != label {
			t.Errorf("%s: the image of a %d classified as %d", filepath.Base(img), label, *r.Class)
		}
		t.Logf("%s", strings.TrimSpace(string(out)))
	}
}

// TestCommandLineClient runs the mosquitto_rr snippet (JSON in, JSON out).
func TestCommandLineClient(t *testing.T) {
	need(t, "mosquitto_rr")
	need(t, "python3")
	host, port := serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "./cli.sh", host, port, "cam1").Output()
	if err != nil {
		t.Fatalf("cli.sh: %v\n%s", err, out)
	}
	check(t, out, "cli-")
}
