// Package arm64 builds delen for linux/arm64 (the Jetson's architecture)
// with cgo and Debian's aarch64 cross compiler, and runs that binary under
// qemu-user with the arm64 ONNX Runtime library from the same npm package:
// `delen serve` must start and answer one request end to end.
package arm64

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/energy"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/models/zoo"
	"github.com/delen-edge/delen/schema"
)

func need(t *testing.T, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (make setup installs it)", prog)
		}
		t.Skipf("%s not found (make setup installs it)", prog)
	}
	return p
}

func TestServeUnderQemu(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles and emulates")
	}
	if runtime.GOARCH != "amd64" {
		t.Skip("the emulation test runs on x86-64 machines")
	}
	cc := need(t, "aarch64-linux-gnu-gcc")
	qemu := need(t, "qemu-aarch64")
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ortLib := filepath.Join(root, ".cache", "ort", "arm64", "libonnxruntime.so.1")
	if _, err := os.Stat(ortLib); err != nil {
		t.Fatalf("arm64 ONNX Runtime library: %v (make setup provisions it)", err)
	}
	bin := filepath.Join(t.TempDir(), "delen-arm64")
	build := exec.Command("go", "build", "-o", bin, "./cmd/delen")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=1", "GOOS=linux", "GOARCH=arm64", "CC="+cc)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cross build: %v\n%s", err, out)
	}

	// Profile natively into the data folder, under a device name the
	// emulated agent will use too, so it does not profile 10,000 images
	// under emulation at start.
	const device = "qemu-arm64-test"
	data := t.TempDir()
	st, err := store.Open(filepath.Join(data, "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := zoo.New().Load("mnist-ee", models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	meter, _ := energy.New(energy.KindModel, "/", energy.Options{})
	p, err := models.Profile(context.Background(), m, meter, models.ProfileOptions{Runs: 20, Device: device})
	m.Close()
	if err == nil {
		err = st.PutProfile(p)
	}
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	emb := brokertest.StartEmbedded(t, broker.EmbeddedConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-L", "/usr/aarch64-linux-gnu", bin, "serve",
		"--broker", emb.Addr(), "--data", data, "--http", "", "--agent-id", "qemu-agent", "--meter", "model")
	cmd.Env = append(os.Environ(), "DELEN_ORT_LIB="+ortLib, "DELEN_DEVICE="+device)
	out, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	ready := make(chan struct{})
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		closed := false
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if !closed && strings.Contains(sc.Text(), "agent ready") {
				close(ready)
				closed = true
			}
		}
	}()
	select {
	case <-ready:
	case <-ctx.Done():
		t.Fatalf("the arm64 agent did not get ready under qemu:\n%s", log.String())
	}

	c, err := broker.Dial(ctx, broker.ClientConfig{URL: emb.Addr(), ClientID: "qemu-tenant", CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	results := make(chan *schema.Result, 1)
	var topics schema.Topics
	if err := c.Subscribe(topics.Results("cam1"), 1, func(msg broker.Message) {
		msg.Ack()
		if r, _, err := schema.DecodeResult(msg.Payload(), 1<<20); err == nil {
			results <- r
		}
	}); err != nil {
		t.Fatal(err)
	}
	set, _ := mnist.Test()
	req := &schema.Request{ID: "arm64-1", Input: schema.NewUint8Tensor([]int{1, 28, 28}, set.Images[0])}
	payload, _ := schema.EncodeRequest(req, schema.MsgPack)
	if err := c.Publish(ctx, topics.Requests("cam1"), 1, false, payload); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-results:
		if r.Status != schema.StatusOK || r.Class == nil || *r.Class != set.Label(0) || r.Exits != 3 {
			t.Fatalf("arm64 agent's result: %+v", r)
		}
		t.Logf("arm64 agent under qemu: %s exit %d/%d class %d in %.1f ms", r.Status, r.Exit, r.Exits, *r.Class, r.LatencyMS)
	case <-ctx.Done():
		t.Fatalf("no result from the arm64 agent:\n%s", log.String())
	}
}
