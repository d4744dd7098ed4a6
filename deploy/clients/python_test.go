package clients

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/agent/tenants"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/schema"
	"golang.org/x/crypto/bcrypt"
)

// debianPython is the interpreter the Python client is documented for:
// Debian's, with python3-paho-mqtt, python3-msgpack and python3-numpy
// (the python3 first on PATH may be another build without them).
const debianPython = "/usr/bin/python3"

// needPython checks that Debian's python3 has the client's modules; it
// fails in CI (make setup installs them) and skips elsewhere.
func needPython(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(debianPython, "-c", "import paho.mqtt.client, msgpack, numpy").CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s lacks the client's modules (make setup installs them): %v\n%s", debianPython, err, out)
		}
		t.Skipf("%s lacks the client's modules: %v", debianPython, err)
	}
}

// convertTool is ImageMagick's convert (not a stand-in of that name
// elsewhere on PATH).
func convertTool(t *testing.T) string {
	t.Helper()
	const p = "/usr/bin/convert"
	if out, err := exec.Command(p, "-version").Output(); err != nil || !bytes.Contains(out, []byte("ImageMagick")) {
		if os.Getenv("CI") != "" {
			t.Fatal("ImageMagick's convert not found (make setup installs it)")
		}
		t.Skip("ImageMagick's convert not found")
	}
	return p
}

// digitImages writes MNIST test image 0 (a 7) as a JPEG (a 320×240
// "camera frame", scaled up by ImageMagick) and as a 28×28 PNG, and
// returns their paths and the digit's label.
func digitImages(t *testing.T) (jpg, png string, label int) {
	t.Helper()
	convert := convertTool(t)
	set, err := mnist.Test()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pgm := filepath.Join(dir, "digit.pgm")
	if err := os.WriteFile(pgm, append([]byte("P5\n28 28\n255\n"), set.Images[0]...), 0o644); err != nil {
		t.Fatal(err)
	}
	jpg, png = filepath.Join(dir, "frame.jpg"), filepath.Join(dir, "digit.png")
	for _, args := range [][]string{{pgm, "-resize", "320x240!", "-type", "TrueColor", "-quality", "85", jpg}, {pgm, png}} {
		if out, err := exec.Command(convert, args...).CombinedOutput(); err != nil {
			t.Fatalf("convert %v: %v\n%s", args, err, out)
		}
	}
	return jpg, png, set.Label(0)
}

const (
	pyTenant     = "cam1"
	pyPassword   = "cam1-secret"
	pyAgentPass  = "agent-secret"
	pyOtherGuest = "cam2"
)

// serveWithTenants starts an agent on an embedded broker that
// authenticates clients from a tenants file (cam1 and cam2, as `delen
// serve --tenants` does) and returns the broker's address.
func serveWithTenants(t *testing.T) string {
	t.Helper()
	h := func(pw string) string {
		s, err := tenants.Hash(pw, bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	doc := fmt.Sprintf("agent:\n  password_hash: %q\ntenants:\n  - name: %s\n    password_hash: %q\n  - name: %s\n    password_hash: %q\n",
		h(pyAgentPass), pyTenant, h(pyPassword), pyOtherGuest, h("cam2-secret"))
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := tenants.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	emb := brokertest.StartEmbedded(t, broker.EmbeddedConfig{Auth: f.Authenticator(schema.Topics{})})
	runAgent(t, agent.Config{BrokerURL: emb.Addr(), Username: broker.DefaultAgentUser, Password: pyAgentPass,
		AgentID: "clients-test-auth"})
	return emb.Addr()
}

// runPython runs deploy/clients/python/client.py with args and returns its
// standard output, standard error and exit code.
func runPython(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, debianPython, append([]string{"python/client.py", "--timeout", "20"}, args...)...)
	for _, kv := range os.Environ() { // credentials only from the test's flags
		if !strings.HasPrefix(kv, "DELEN_MQTT_PASSWORD=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("python client: %v", err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

// pyResults parses the client's output: one JSON result per line.
func pyResults(t *testing.T, out string) map[string]result {
	t.Helper()
	got := map[string]result{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		r, _, err := schema.DecodeResult(sc.Bytes(), 1<<20)
		if err != nil {
			t.Fatalf("output line is not a JSON result: %v\n%s", err, sc.Text())
		}
		c := r.Class
		got[r.ID] = result{ID: r.ID, Status: r.Status, Exit: r.Exit, Exits: r.Exits, Class: c}
	}
	return got
}

// TestPythonClient runs the Python client against a real agent, without
// and with tenant credentials: it sends a tensor and an image made by
// ImageMagick (a JPEG camera frame, a PNG), each in msgpack and in JSON,
// prints every result and exits 0 only when all came back ok.
func TestPythonClient(t *testing.T) {
	needPython(t)
	jpg, png, label := digitImages(t)
	anonymous := func(t *testing.T) string {
		host, port := serve(t)
		return "tcp://" + host + ":" + port
	}
	tests := []struct {
		name      string
		broker    func(t *testing.T) string
		args      []string
		wantCode  int
		wantLines int
		stderr    string
	}{
		{"anonymous, jpeg frame", anonymous, []string{"--image", jpg}, 0, 4, ""},
		{"anonymous, png", anonymous, []string{"--image", png, "--exit", "1"}, 0, 4, ""},
		{"tenant credentials", serveWithTenants, []string{"--user", pyTenant, "--password", pyPassword, "--image", jpg}, 0, 4, ""},
		{"wrong password", serveWithTenants, []string{"--password", "not-it"}, 1, 0, "connection refused"},
		{"no credentials where required", serveWithTenants, nil, 1, 0, "connection refused"},
		{"another tenant's topics", serveWithTenants, []string{"--user", pyOtherGuest, "--password", "cam2-secret"}, 1, 0, ""},
		{"results not ok", anonymous, []string{"--exit", "9"}, 1, 2, "not ok: py-"},
		{"not an image", anonymous, []string{"--image", "python/client.py"}, 1, 0, "not a JPEG or PNG file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runPython(t, append([]string{"--broker", tc.broker(t), "--tenant", pyTenant}, tc.args...)...)
			if code != tc.wantCode || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("exit %d, want %d; stderr %q, want it to contain %q\nstdout:\n%s", code, tc.wantCode, errOut, tc.stderr, out)
			}
			got := pyResults(t, out)
			if len(got) != tc.wantLines {
				t.Fatalf("%d results printed, want %d:\n%s", len(got), tc.wantLines, out)
			}
			for id, r := range got {
				if tc.wantCode != 0 {
					if r.Status != schema.StatusError {
						t.Errorf("%s: status %s, want error", id, r.Status)
					}
					continue
				}
				if r.Status != schema.StatusOK || r.Exits != 3 || r.Class == nil {
					t.Errorf("%s: %+v", id, r)
				}
				if !strings.Contains(id, "-tensor-") && *r.Class != label {
					t.Errorf("%s: the image of a %d classified as %d", id, label, *r.Class)
				}
			}
			t.Logf("exit %d, %d results\n%s%s", code, len(got), out, errOut)
		})
	}
}
