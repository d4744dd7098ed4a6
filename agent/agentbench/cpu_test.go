package agentbench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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

// TestIntervalAnswers: what bench cpu reports as sent, served and refused
// counts each request of the measured interval once, by its id: an answer
// repeated (a redelivery answered again from dedupe), an answer to a
// warm-up request still in flight when the interval starts, and one to a
// request sent after it do not count, so served + refused never exceed
// sent; the interval's last requests answered after it do count.
func TestIntervalAnswers(t *testing.T) {
	type answer struct {
		n       int64
		refused bool
		rtt     float64
	}
	served := func(ns ...int64) []answer {
		var out []answer
		for _, n := range ns {
			out = append(out, answer{n: n, rtt: float64(n)})
		}
		return out
	}
	for _, tc := range []struct {
		name                  string
		before                []answer // before the interval opens
		from                  int64
		during                []answer
		to                    int64
		after                 []answer // after it closes (the drain)
		sent, served, refused int
		rtts                  []float64
		complete              bool
	}{
		{name: "each request once", from: 10, during: served(11, 12, 12, 13, 11), to: 13,
			sent: 3, served: 3, rtts: []float64{11, 12, 13}, complete: true},
		{name: "warm-up answers do not count", before: served(3, 4), from: 10, during: served(8, 9, 10, 11), to: 12,
			after: served(12), sent: 2, served: 2, rtts: []float64{11, 12}, complete: true},
		{name: "answers after the end count, requests after it do not", from: 0, during: served(1, 3), to: 2,
			after: served(2, 4, 5), sent: 2, served: 2, rtts: []float64{1, 2}, complete: true},
		{name: "the first answer decides", from: 0,
			during: []answer{{n: 1, refused: true}, {n: 1, rtt: 1}, {n: 2, rtt: 2}, {n: 2, refused: true}}, to: 3,
			sent: 3, served: 1, refused: 1, rtts: []float64{2}},
		{name: "round trip unknown", from: 0, during: []answer{{n: 1, rtt: -1}, {n: 2, rtt: 0.5}}, to: 2,
			sent: 2, served: 2, rtts: []float64{0.5}, complete: true},
		{name: "nothing answered", from: 5, to: 9, after: served(4), sent: 4},
		{name: "nothing sent", from: 7, during: served(7), to: 7, complete: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a intervalAnswers
			add := func(as []answer) {
				for _, x := range as {
					a.add(x.n, x.refused, x.rtt)
				}
			}
			add(tc.before)
			a.open(tc.from)
			add(tc.during)
			a.close(tc.to)
			add(tc.after)
			sent, served, refused, rtts := a.result()
			if sent != tc.sent || served != tc.served || refused != tc.refused {
				t.Errorf("sent %d, served %d, refused %d; want %d, %d, %d", sent, served, refused, tc.sent, tc.served, tc.refused)
			}
			if served+refused > sent {
				t.Errorf("%d answered of %d sent", served+refused, sent)
			}
			if !slices.Equal(rtts, tc.rtts) {
				t.Errorf("round trips %v, want %v", rtts, tc.rtts)
			}
			if got := a.complete(); got != tc.complete {
				t.Errorf("complete = %v, want %v", got, tc.complete)
			}
		})
	}
}

// TestIntervalAnswersDrain: the wait after the interval ends as soon as
// its last request is answered, and gives up when answers stop coming.
func TestIntervalAnswersDrain(t *testing.T) {
	drained := func(a *intervalAnswers, idle time.Duration) chan error {
		done := make(chan error, 1)
		go func() { done <- a.drain(context.Background(), idle, time.Hour) }()
		return done
	}
	wait := func(t *testing.T, done chan error, what string) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("the drain did not end %s", what)
		}
	}
	var a intervalAnswers
	a.open(0)
	a.add(1, false, 1)
	a.close(2)
	done := drained(&a, time.Hour)
	a.add(2, false, 1)
	wait(t, done, "with every request answered")

	var b intervalAnswers
	b.open(0)
	b.close(2)
	wait(t, drained(&b, time.Millisecond), "with answers no longer coming")
	if _, served, _, _ := b.result(); served != 0 {
		t.Errorf("%d served, want 0", served)
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

// A process under test that exits while the bench waits for it (a bad
// model folder, a port in use) is reported with how it ended, not after
// the 3-minute wait for it to come online.
func TestMeasureReportsAProcessThatExited(t *testing.T) {
	free, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	// A listener that takes connections and never answers: an MQTT
	// connect to it waits.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	for _, tc := range []struct {
		name string
		url  string // where the bench dials
	}{
		{"its broker never came up", "tcp://" + free},
		{"its broker never answered", "tcp://" + silent.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := startProc(exec.Command("sh", "-c", "exit 3"), "")
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = measure(context.Background(), CPUOptions{Rate: 100, Duration: time.Second}, tc.url, "t", [][]byte{nil}, p, 0, true, func(string) {}, "agent", nil)
			if err == nil || !strings.Contains(err.Error(), "exited before it came online (exit status 3)") {
				t.Fatalf("measure of a process that exited: %v; want it to say the process exited with status 3", err)
			}
		})
	}
}
