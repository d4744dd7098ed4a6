package agentbench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/delen-edge/delen/schema"
)

func TestProcReaders(t *testing.T) {
	// Burn a little CPU so the reading is not zero.
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i % 7
	}
	_ = x
	cpu, err := procCPU(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Fatalf("procCPU of this process: %v, %v", cpu, err)
	}
	if anon, file := procRSS(os.Getpid()); anon <= 0 || file <= 0 {
		t.Fatalf("procRSS of this process: anon %v MiB, file %v MiB", anon, file)
	}
	if _, err := procCPU(1 << 30); err == nil {
		t.Fatal("procCPU of a process that does not exist: no error")
	}
}

func TestListenerPID(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct {
		url     string
		wantPID int
	}{
		{"tcp://" + l.Addr().String(), os.Getpid()},
		{l.Addr().String(), os.Getpid()},
	} {
		pid, err := listenerPID(tc.url)
		if err != nil || pid != tc.wantPID {
			t.Errorf("listenerPID(%s) = %d, %v; want %d", tc.url, pid, err, tc.wantPID)
		}
	}
	free, _ := freeAddr()
	if _, err := listenerPID("tcp://" + free); err == nil {
		t.Errorf("listenerPID of a port nothing listens on: no error")
	}
}

func TestReIDGivesEachRequestItsID(t *testing.T) {
	ps, err := mnistPayloads(2)
	if err != nil {
		t.Skipf("MNIST: %v", err)
	}
	for _, n := range []int64{1, 42, 999_999_999_999} {
		req, _, err := schema.DecodeRequest(reID(ps[0], n), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("id-%012d", n); req.ID != want {
			t.Fatalf("id %q, want %q", req.ID, want)
		}
	}
}

// TestAnswerSeq: the sequence number bench cpu times an answer by is found
// in each kind of answer: the agent's result (msgpack and JSON), the
// responder's echo of the request, and not in a payload without an id.
func TestAnswerSeq(t *testing.T) {
	ps, err := mnistPayloads(1)
	if err != nil {
		t.Skipf("MNIST: %v", err)
	}
	result := func(enc schema.Encoding, id string) []byte {
		b, err := schema.EncodeResult(&schema.Result{V: schema.Version, ID: id, Tenant: "bench", Model: "mnist-ee", Status: schema.StatusOK}, enc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name    string
		payload []byte
		want    int64
		ok      bool
	}{
		{"echoed request", reID(ps[0], 42), 42, true},
		{"msgpack result", result(schema.MsgPack, "id-000000000007"), 7, true},
		{"JSON result", result(schema.JSON, "id-999999999999"), 999_999_999_999, true},
		{"an id- that is not one first", append([]byte("xid-12ab"), result(schema.MsgPack, "id-000000000123")...), 123, true},
		{"no id", result(schema.MsgPack, "cam-1"), 0, false},
		{"cut short", []byte("id-0000"), 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, ok := answerSeq(c.payload)
			if n != c.want || ok != c.ok {
				t.Errorf("answerSeq = %d, %v; want %d, %v", n, ok, c.want, c.ok)
			}
		})
	}
}

// TestNodeServiceParses: the Node.js baseline that bench cpu --node runs
// is valid JavaScript (node --check), and its package pins the packages
// it imports.
func TestNodeServiceParses(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not on PATH")
	}
	svc, err := nodeFiles.ReadFile("node/service.mjs")
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := nodeFiles.ReadFile("node/package.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range []string{"mqtt", "onnxruntime-node", "@msgpack/msgpack"} {
		if !strings.Contains(string(svc), `from "`+dep+`"`) || !strings.Contains(string(pkg), `"`+dep+`"`) {
			t.Errorf("%s: imported by service.mjs and pinned in package.json? want both", dep)
		}
	}
	f := filepath.Join(t.TempDir(), "service.mjs")
	if err := os.WriteFile(f, svc, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(node, "--check", f).CombinedOutput(); err != nil {
		t.Fatalf("node --check service.mjs: %v\n%s", err, out)
	}
}
