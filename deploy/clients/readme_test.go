package clients

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/schema"
)

// readmeCommands returns the shell commands of README.md's sh blocks that
// run prog, in order, with continued lines joined.
func readmeCommands(t *testing.T, prog string) []string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds []string
	in, cur := false, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```"):
			in = line == "```sh"
			continue
		case !in:
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\")
			continue
		}
		cur += line
		if strings.Contains(cur, prog) {
			cmds = append(cmds, cur)
		}
		cur = ""
	}
	return cmds
}

// TestReadmeMosquittoCommands runs every mosquitto_* command of the README
// as written, in order, against a real agent: the clients' configuration
// files (XDG_CONFIG_HOME) point them at the test's broker instead of
// 127.0.0.1:1883.
func TestReadmeMosquittoCommands(t *testing.T) {
	for _, p := range []string{"mosquitto_pub", "mosquitto_sub", "mosquitto_rr"} {
		need(t, p)
	}
	cmds := readmeCommands(t, "mosquitto_")
	if len(cmds) < 5 {
		t.Fatalf("README has %d mosquitto commands: %q", len(cmds), cmds)
	}
	host, port := serve(t)
	cfg := t.TempDir()
	for _, p := range []string{"mosquitto_pub", "mosquitto_sub", "mosquitto_rr"} {
		if err := os.WriteFile(filepath.Join(cfg, p), []byte("-h "+host+"\n-p "+port+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	answered := 0
	for _, c := range cmds {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, "bash", "-c", c)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+cfg)
		var errOut bytes.Buffer
		cmd.Stderr = &errOut
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v\n%s%s", c, err, out, errOut.String())
		}
		switch {
		case strings.Contains(c, "mosquitto_rr"):
			var r struct {
				Status string `json:"status"`
				Class  *int   `json:"class"`
				Exit   int    `json:"exit"`
			}
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("%s: not a JSON result: %v\n%s", c, err, out)
			}
			if r.Status != schema.StatusOK || r.Class == nil || *r.Class != 7 || r.Exit != 1 {
				t.Errorf("%s: %s; want status ok, class 7 at exit 1", c, out)
			}
			answered++
		case strings.Contains(c, "mosquitto_sub") && strings.Contains(c, "/state"):
			var s struct {
				Bound  map[string]float64 `json:"bound"`
				Policy string             `json:"policy"`
			}
			if err := json.Unmarshal(out, &s); err != nil || s.Bound["latency_ms"] != 20 || s.Policy != "confidence" {
				t.Errorf("%s: state %s (%v); want the settings just published", c, out, err)
			}
		}
	}
	if answered < 2 {
		t.Errorf("%d mosquitto_rr commands answered, want the README's two", answered)
	}
}

// The README's sample request is MNIST test image 0 with its label.
func TestSampleRequestIsMNISTTestImage0(t *testing.T) {
	b, err := os.ReadFile("mnist-7.json")
	if err != nil {
		t.Fatal(err)
	}
	req, enc, err := schema.DecodeRequest(b, schema.DefaultMaxBytes)
	if err != nil || enc != schema.JSON {
		t.Fatalf("decode: %v (%v)", err, enc)
	}
	if err := req.Validate("cam1"); err != nil {
		t.Fatal(err)
	}
	set, err := mnist.Test()
	if err != nil {
		t.Fatal(err)
	}
	if req.Label == nil || *req.Label != set.Label(0) {
		t.Errorf("label %v, want %d", req.Label, set.Label(0))
	}
	got, err := req.Input.Uint8s()
	if err != nil || !bytes.Equal(got, set.Images[0]) {
		t.Errorf("pixels differ from MNIST test image 0")
	}
}

// What `npm install` leaves beside the Node.js client stays out of git.
func TestNodeModulesIgnored(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	if err := exec.Command(git, "rev-parse", "--git-dir").Run(); err != nil {
		t.Skip("not a git checkout")
	}
	for _, p := range []string{"node/node_modules/mqtt/package.json", "node_modules/x/index.js"} {
		if err := exec.Command(git, "check-ignore", "-q", p).Run(); err != nil {
			t.Errorf("git does not ignore deploy/clients/%s", p)
		}
	}
}

// The README's --image example is the same digit as a PNG file.
func TestSamplePNGIsMNISTTestImage0(t *testing.T) {
	f, err := os.Open("mnist-7.png")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	set, err := mnist.Test()
	if err != nil {
		t.Fatal(err)
	}
	g, ok := img.(*image.Gray)
	if !ok || g.Rect.Dx() != mnist.Side || g.Rect.Dy() != mnist.Side || !bytes.Equal(g.Pix, set.Images[0]) {
		t.Fatalf("mnist-7.png is not MNIST test image 0 (%T %v)", img, img.Bounds())
	}
}
