//go:build linux

package faulttest

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The suite's shared state, set up once by TestMain.
var (
	// delenBin is the delen binary built from this checkout.
	delenBin string
	// ortLib is the ONNX Runtime library the agent processes load.
	ortLib string
	// templateData is a data folder whose store already holds the
	// mnist-ee profile for this device, so agents start without profiling.
	templateData string
	// setupErr, when set, makes every test skip (or fail under CI).
	setupErr error
)

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "delen-faulttest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faulttest:", err)
		os.Exit(2)
	}
	setupErr = setup(tmp)
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// setup builds the binary, finds ONNX Runtime and profiles mnist-ee once
// into templateData.
func setup(tmp string) error {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return fmt.Errorf("module root not found at %s: %w", root, err)
	}
	ortLib = os.Getenv("DELEN_ORT_LIB")
	if ortLib == "" {
		arch := map[string]string{"amd64": "x64", "arm64": "arm64"}[runtime.GOARCH]
		p := filepath.Join(root, ".cache", "ort", arch, "libonnxruntime.so.1")
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("DELEN_ORT_LIB is not set and %s does not exist (run make setup)", p)
		}
		ortLib = p
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	start := time.Now()
	if delenBin = os.Getenv("FAULTTEST_DELEN_BIN"); delenBin == "" {
		// FAULTTEST_DELEN_BIN runs a binary built otherwise (with -race,
		// or instrumented); by default the suite builds this checkout.
		delenBin = filepath.Join(tmp, "delen")
		build := exec.Command(goBin, "build", "-o", delenBin, "./cmd/delen")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/delen: %v\n%s", err, out)
		}
	}
	built := time.Since(start)

	templateData = filepath.Join(tmp, "template")
	start = time.Now()
	prof := exec.Command(delenBin, "profile", "mnist-ee", "--data", templateData, "--runs", "50", "--warmup", "10", "--log-level", "warn")
	prof.Env = agentEnv()
	prof.Dir = tmp
	if out, err := prof.CombinedOutput(); err != nil {
		return fmt.Errorf("delen profile mnist-ee: %v\n%s", err, out)
	}
	if testingVerbose() {
		fmt.Fprintf(os.Stderr, "faulttest: built delen in %s, profiled mnist-ee in %s\n", built.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func testingVerbose() bool {
	for _, a := range os.Args {
		if a == "-test.v" || a == "-test.v=true" {
			return true
		}
	}
	return false
}

// agentEnv is the environment of a delen process: ours, with the ONNX
// Runtime library and without variables that would change its flags.
func agentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "DELEN_ORT_LIB", "DELEN_BROKER", "DELEN_LISTEN", "DELEN_HTTP", "DELEN_SHARE_GROUP",
			"DELEN_AGENT_ID", "DELEN_PREFIX", "DELEN_MODEL", "DELEN_DATA", "DELEN_ZOO", "DELEN_LOG_LEVEL",
			"DELEN_POLICY", "DELEN_CONDITIONS", "DELEN_METER":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "DELEN_ORT_LIB="+ortLib)
}

// requireSetup skips the test when the suite could not be set up (no
// ONNX Runtime library), or fails it under CI.
func requireSetup(t *testing.T) {
	t.Helper()
	if setupErr == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("faulttest setup: %v", setupErr)
	}
	t.Skipf("faulttest setup: %v", setupErr)
}

// newDataDir returns a fresh data folder under parent holding a copy of
// the template store (profile included).
func newDataDir(t *testing.T, parent string) string {
	t.Helper()
	dst := filepath.Join(parent, "data")
	err := filepath.WalkDir(templateData, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(templateData, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if d.Name() == "LOCK" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy template data folder: %v", err)
	}
	return dst
}
