package agentbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/schema"
)

// CPUOptions configure CPU. Command is required.
type CPUOptions struct {
	// BrokerURL is an external broker (Mosquitto: give it set_tcp_nodelay
	// true); "" measures the embedded broker: the agent then runs `serve`
	// with its own broker, and the responder a broker process of its own.
	BrokerURL string
	// Rate is the request rate, per second (default 3000).
	Rate float64
	// Duration is the measured time (default 10 s), after Warmup (default
	// 3 s) at the same rate.
	Duration, Warmup time.Duration
	// Command makes a command running this program with args (a
	// subcommand: serve, bench responder, bench broker).
	Command func(args ...string) *exec.Cmd
	// AgentCommand, when set, starts the agent's side instead of Command
	// (to compare two builds of the agent in one run).
	AgentCommand func(args ...string) *exec.Cmd
	Progress     func(string)
	Logger       *slog.Logger
	// Node adds the simplest service a user would write instead (Node.js:
	// mqtt.js + onnxruntime-node, the full model, no exits, the result on
	// receipt) as a third side, on NodeBrokerURL (default BrokerURL; with
	// the embedded broker, give a Mosquitto here: the Node.js service needs
	// a broker of its own, whose CPU is counted beside it).
	Node          bool
	NodeBrokerURL string
}

// CPUSide is one process's CPU over the measured interval.
type CPUSide struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// Sent is how many requests the load generator sent in the interval;
	// Answered how many of those got a served answer (status ok or late;
	// for the responder, its echo), Refused how many an error or shed
	// answer, each request counted once by its id (a repeated answer does
	// not count again) and whether its answer came in the interval or
	// after it (the generator goes on at the same rate while it waits for
	// the last answers, until none has come for 2 s). Answered + Refused
	// ≤ Sent; the rest got no answer. Answers to requests sent before the
	// interval (the warm-up's, still in flight at its start) do not count.
	Sent     int `json:"sent"`
	Answered int `json:"answered"`
	Refused  int `json:"refused"`
	// CPUSeconds is user + system time (from /proc/PID/stat).
	CPUSeconds float64 `json:"cpu_seconds"`
	// MicrosPerRequest is CPUSeconds per served (answered) request, in
	// µs: the server's cost of a request when it keeps up (Answered =
	// Sent). One that falls behind spends the interval's CPU on earlier
	// requests too, and the figure then overstates its cost.
	MicrosPerRequest float64 `json:"us_per_request"`
	// AnonMiB and FileMiB are the process's resident memory at the end of
	// the interval, anonymous (heap, stacks, ONNX Runtime's buffers) and
	// file-backed (mapped files: Badger's tables and value log, the
	// binary and libraries), from /proc/PID/status.
	AnonMiB float64 `json:"rss_anon_mib"`
	FileMiB float64 `json:"rss_file_mib"`
	// P50MS and P99MS are the round trips the load generator saw, from
	// publishing a request to receiving its served answer, over the
	// interval's requests answered (0 for a broker's row).
	P50MS float64 `json:"p50_ms,omitempty"`
	P99MS float64 `json:"p99_ms,omitempty"`
}

// CPUResult is the agent's CPU per request against a bare paho responder's
// on the same broker, each with the broker's own CPU per request beside it.
type CPUResult struct {
	Broker  string  `json:"broker"`
	Rate    float64 `json:"rate"`
	Seconds float64 `json:"seconds"`
	Model   string  `json:"model"`
	// Agent is `delen serve` (with the embedded broker in its process when
	// Broker is "embedded"); AgentBroker the external broker meanwhile.
	Agent       CPUSide  `json:"agent"`
	AgentBroker *CPUSide `json:"agent_broker,omitempty"`
	// Responder subscribes to the requests and publishes each payload
	// back; ResponderBroker is its broker (the external one, or a process
	// running the embedded broker alone).
	Responder       CPUSide  `json:"responder"`
	ResponderBroker *CPUSide `json:"responder_broker,omitempty"`
	// Ratio is agent ÷ responder, µs per request; RatioWithBrokers is
	// (agent + its broker) ÷ (responder + its broker), each side counting
	// every process that serves it.
	Ratio            float64 `json:"ratio"`
	RatioWithBrokers float64 `json:"ratio_with_brokers"`
	// Node is the Node.js service (with Options.Node), NodeBroker its
	// broker; RatioNode is agent ÷ Node.js service, RatioNodeWithBrokers
	// (agent + its broker) ÷ (Node.js service + its broker): with the
	// embedded broker, the agent's one process against the two.
	Node                 *CPUSide `json:"node,omitempty"`
	NodeBroker           *CPUSide `json:"node_broker,omitempty"`
	RatioNode            float64  `json:"ratio_node,omitempty"`
	RatioNodeWithBrokers float64  `json:"ratio_node_with_brokers,omitempty"`
}

// defaults fills in the rate, durations and progress callback left zero.
func (o *CPUOptions) defaults() {
	if o.Rate <= 0 {
		o.Rate = 3000
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Warmup <= 0 {
		o.Warmup = 3 * time.Second
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
}

// CPU measures the agent's and a bare responder's CPU per request at a
// fixed rate of mnist-ee requests (to its last exit), one side after the
// other, each process measured from /proc while an open-loop generator in
// this process sends the requests and counts the answers.
func CPU(ctx context.Context, o CPUOptions) (*CPUResult, error) {
	if o.Command == nil {
		return nil, errors.New("agentbench: CPU needs a Command")
	}
	if o.AgentCommand == nil {
		o.AgentCommand = o.Command
	}
	o.defaults()
	progress := o.Progress
	payloads, err := mnistPayloads(2000)
	if err != nil {
		return nil, err
	}
	res := &CPUResult{Broker: "embedded", Rate: o.Rate, Seconds: o.Duration.Seconds(), Model: "mnist-ee"}
	var extPID int
	if o.BrokerURL != "" {
		res.Broker = o.BrokerURL
		if extPID, err = listenerPID(o.BrokerURL); err != nil {
			return nil, fmt.Errorf("the broker's process: %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "delen-bench-cpu-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// The agent's side.
	prefix := fmt.Sprintf("bench%d", time.Now().UnixNano()%1e9)
	agentURL := o.BrokerURL
	args := []string{"serve", "--data", filepath.Join(dir, "agent"), "--http", "", "--prefix", prefix, "--agent-id", prefix + "-agent"}
	if agentURL == "" {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		agentURL = "tcp://" + addr
		args = append(args, "--listen", addr)
	} else {
		args = append(args, "--broker", agentURL)
	}
	progress("agent: starting (it profiles mnist-ee on first start)")
	agentProc, err := startProc(o.AgentCommand(args...), "")
	if err != nil {
		return nil, fmt.Errorf("start the agent: %w", err)
	}
	side, brokerSide, err := measure(ctx, o, agentURL, prefix, payloads, agentProc, extPID, true, progress, "agent", nil)
	agentProc.stop()
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	side.Name = "agent"
	res.Agent, res.AgentBroker = side, brokerSide
	if o.BrokerURL != "" {
		forgetSession(ctx, o.BrokerURL, prefix+"-agent")
	}

	// The responder's side, with a broker process of its own when the
	// agent's was embedded.
	prefix += "r"
	respURL, respBrokerPID := o.BrokerURL, extPID
	if respURL == "" {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		bp, err := startProc(o.Command("bench", "broker", "--listen", addr), "ready")
		if err != nil {
			return nil, fmt.Errorf("start the responder's broker: %w", err)
		}
		defer bp.stop()
		respURL, respBrokerPID = "tcp://"+addr, bp.pid
	}
	rp, err := startProc(o.Command("bench", "responder", "--broker", respURL, "--prefix", prefix), "ready")
	if err != nil {
		return nil, fmt.Errorf("start the responder: %w", err)
	}
	side, brokerSide, err = measure(ctx, o, respURL, prefix, payloads, rp, respBrokerPID, false, progress, "responder", nil)
	rp.stop()
	if err != nil {
		return nil, fmt.Errorf("responder: %w", err)
	}
	side.Name = "paho responder"
	res.Responder, res.ResponderBroker = side, brokerSide
	if res.ResponderBroker != nil && o.BrokerURL == "" {
		res.ResponderBroker.Name = "embedded broker alone"
	}
	res.Ratio = res.Agent.MicrosPerRequest / res.Responder.MicrosPerRequest
	withA, withR := res.Agent.MicrosPerRequest, res.Responder.MicrosPerRequest
	if res.AgentBroker != nil {
		withA += res.AgentBroker.MicrosPerRequest
	}
	if res.ResponderBroker != nil {
		withR += res.ResponderBroker.MicrosPerRequest
	}
	res.RatioWithBrokers = withA / withR

	if o.Node {
		nodeURL := o.NodeBrokerURL
		if nodeURL == "" {
			nodeURL = o.BrokerURL
		}
		if nodeURL == "" {
			return nil, errors.New("the Node.js service needs a broker of its own (NodeBrokerURL) when the agent's is embedded")
		}
		nodePID := extPID
		if nodeURL != o.BrokerURL {
			if nodePID, err = listenerPID(nodeURL); err != nil {
				return nil, fmt.Errorf("the Node.js service's broker's process: %w", err)
			}
		}
		prefix += "n"
		cmd, err := nodeService(ctx, nodeURL, prefix, progress)
		if err != nil {
			return nil, err
		}
		np, err := startProc(cmd, "ready")
		if err != nil {
			return nil, fmt.Errorf("start the Node.js service: %w", err)
		}
		side, brokerSide, err := measure(ctx, o, nodeURL, prefix, payloads, np, nodePID, false, progress, "node", nil)
		np.stop()
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		side.Name = "node.js service"
		res.Node, res.NodeBroker = &side, brokerSide
		if side.MicrosPerRequest > 0 {
			res.RatioNode = res.Agent.MicrosPerRequest / side.MicrosPerRequest
			withN := side.MicrosPerRequest
			if brokerSide != nil {
				withN += brokerSide.MicrosPerRequest
			}
			res.RatioNodeWithBrokers = withA / withN
		}
	}
	return res, nil
}

// CPUPairResult is two builds of the agent measured side by side.
type CPUPairResult struct {
	Broker  string  `json:"broker"`
	Rate    float64 `json:"rate"` // each agent's
	Seconds float64 `json:"seconds"`
	Model   string  `json:"model"`
	// Agent is this build, Other the --agent-bin build, measured over the
	// same interval, each at Rate.
	Agent CPUSide `json:"agent"`
	Other CPUSide `json:"other"`
	// Ratio is Agent ÷ Other, µs per request.
	Ratio float64 `json:"ratio"`
}

// CPUPair runs o.Command's agent and o.AgentCommand's side by side, each
// driven at o.Rate from this process over the same interval, so that both
// see the same machine: on a shared machine, where the load of other work
// changes from one run to the next, the fairest comparison of two builds.
// An external broker's CPU is shared by both and not reported.
func CPUPair(ctx context.Context, o CPUOptions) (*CPUPairResult, error) {
	if o.Command == nil || o.AgentCommand == nil {
		return nil, errors.New("agentbench: CPUPair needs Command and AgentCommand")
	}
	o.defaults()
	progress := o.Progress
	payloads, err := mnistPayloads(2000)
	if err != nil {
		return nil, err
	}
	res := &CPUPairResult{Broker: "embedded", Rate: o.Rate, Seconds: o.Duration.Seconds(), Model: "mnist-ee"}
	if o.BrokerURL != "" {
		res.Broker = o.BrokerURL
	}
	dir, err := os.MkdirTemp("", "delen-bench-cpu-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	type side struct {
		name, url, prefix string
		p                 *proc
		out               CPUSide
		err               error
	}
	progress("agents: starting (each profiles mnist-ee on first start)")
	base := fmt.Sprintf("bench%d", time.Now().UnixNano()%1e9)
	sides := []*side{{name: "agent"}, {name: "other"}}
	for i, sd := range sides {
		sd.prefix = fmt.Sprintf("%s%c", base, 'a'+i)
		args := []string{"serve", "--data", filepath.Join(dir, sd.name), "--http", "", "--prefix", sd.prefix, "--agent-id", sd.prefix + "-agent"}
		sd.url = o.BrokerURL
		if sd.url == "" {
			addr, err := freeAddr()
			if err != nil {
				return nil, err
			}
			sd.url = "tcp://" + addr
			args = append(args, "--listen", addr)
		} else {
			args = append(args, "--broker", sd.url)
		}
		cmd := o.Command
		if i == 1 {
			cmd = o.AgentCommand
		}
		if sd.p, err = startProc(cmd(args...), ""); err != nil {
			return nil, fmt.Errorf("start the %s: %w", sd.name, err)
		}
		defer sd.p.stop()
	}
	var arrived sync.WaitGroup
	arrived.Add(len(sides))
	start := make(chan struct{})
	go func() { arrived.Wait(); close(start) }()
	var wg sync.WaitGroup
	for _, sd := range sides {
		var once sync.Once
		arrive := func() { once.Do(arrived.Done) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			sd.out, _, sd.err = measure(ctx, o, sd.url, sd.prefix, payloads, sd.p, 0, true, progress, sd.name,
				func() { arrive(); <-start })
			arrive() // a side that failed before it was ready lets the other go on
		}()
	}
	wg.Wait()
	for _, sd := range sides {
		sd.p.stop()
		if o.BrokerURL != "" {
			forgetSession(ctx, o.BrokerURL, sd.prefix+"-agent")
		}
		if sd.err != nil {
			return nil, fmt.Errorf("%s: %w", sd.name, sd.err)
		}
		sd.out.Name = sd.name
	}
	res.Agent, res.Other = sides[0].out, sides[1].out
	if res.Other.MicrosPerRequest > 0 {
		res.Ratio = res.Agent.MicrosPerRequest / res.Other.MicrosPerRequest
	}
	return res, nil
}

// measure waits for the side to be ready, sends at o.Rate for o.Warmup,
// then measures the processes' CPU over o.Duration, then waits, still
// sending, for the answers to the interval's requests (intervalAnswers,
// drain). ready, when not nil,
// is called once the side is ready and returns when the load may start
// (so that two sides start together).
func measure(ctx context.Context, o CPUOptions, url, prefix string, payloads [][]byte, p *proc, brokerPID int, isAgent bool,
	progress func(string), name string, ready func()) (CPUSide, *CPUSide, error) {
	pid := p.pid
	topics := schema.Topics{Prefix: prefix}
	// Setting up waits at most 3 minutes, and not at all once the process
	// under test has exited (a bad model folder, a port in use).
	dctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	go func() {
		select {
		case <-p.exited:
			cancel()
		case <-dctx.Done():
		}
	}()
	exited := func(err error) error {
		select {
		case <-p.exited:
			return fmt.Errorf("exited before it came online (%v): its log is above", p.exitErr())
		default:
			return err
		}
	}
	c, err := broker.Dial(dctx, broker.ClientConfig{URL: url, ClientID: prefix + "-load", CleanSession: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return CPUSide{}, nil, exited(err)
	}
	defer c.Close()
	// Only served answers count: a refusal (status error or shed, e.g. an
	// old build's overloaded) costs the server far less than a request
	// served, and counting it would make a server that refuses look
	// cheaper. The responder echoes the request, which has no status.
	// Answers count by request id, for the requests sent in the interval
	// alone (intervalAnswers).
	var ans intervalAnswers
	var seq atomic.Int64              // the last request's sequence number
	var sentAt [sendRing]atomic.Int64 // by sequence number, Unix ns
	if err := c.Subscribe(topics.Results("bench"), 1, func(m broker.Message) {
		m.Ack()
		n, ok := answerSeq(m.Payload())
		if !ok || n > seq.Load() {
			return // not an answer to a request of ours
		}
		r, _, err := schema.DecodeResult(m.Payload(), 1<<20)
		refusal := err == nil && (r.Status == schema.StatusError || r.Status == schema.StatusShed)
		rtt := -1.0
		if t0 := sentAt[n%sendRing].Load(); t0 > 0 {
			rtt = float64(time.Now().UnixNano()-t0) / 1e6
		}
		ans.add(n, refusal, rtt)
	}); err != nil {
		return CPUSide{}, nil, err
	}
	if isAgent {
		online := make(chan struct{})
		var once sync.Once
		if err := c.Subscribe(topics.AgentStatus(prefix+"-agent"), 1, func(m broker.Message) {
			m.Ack()
			if strings.Contains(string(m.Payload()), `"online"`) {
				once.Do(func() { close(online) })
			}
		}); err != nil {
			return CPUSide{}, nil, err
		}
		select {
		case <-online:
		case <-dctx.Done():
			return CPUSide{}, nil, exited(errors.New("the agent did not come online within 3 minutes"))
		}
	}
	if ready != nil {
		ready()
	}
	// Each request id once: the agent would answer a repeat from dedupe.
	next := func() []byte {
		n := seq.Add(1)
		p := payloads[n%int64(len(payloads))]
		out := reID(p, n)
		sentAt[n%sendRing].Store(time.Now().UnixNano())
		return out
	}
	gen := &generator{c: c, topic: topics.Requests("bench"), rate: o.Rate, next: next}
	genCtx, stopGen := context.WithCancel(ctx)
	genDone := make(chan struct{})
	var genErr error // set when genDone closes
	go func() { genErr = gen.run(genCtx); close(genDone) }()
	stopLoad := func() { stopGen(); <-genDone }
	defer stopLoad()

	progress(name + ": warming up")
	select {
	case <-time.After(o.Warmup):
	case <-genDone:
		return CPUSide{}, nil, genErr
	case <-ctx.Done():
		return CPUSide{}, nil, ctx.Err()
	}
	cpu0, err := procCPU(pid)
	if err != nil {
		return CPUSide{}, nil, err
	}
	var bcpu0 float64
	if brokerPID > 0 {
		if bcpu0, err = procCPU(brokerPID); err != nil {
			return CPUSide{}, nil, err
		}
	}
	ans.open(seq.Load())
	progress(fmt.Sprintf("%s: measuring for %s at %.0f/s", name, o.Duration, o.Rate))
	select {
	case <-time.After(o.Duration):
	case <-genDone:
		return CPUSide{}, nil, genErr
	case <-ctx.Done():
		return CPUSide{}, nil, ctx.Err()
	}
	cpu1, err := procCPU(pid)
	if err != nil {
		return CPUSide{}, nil, err
	}
	var bcpu1 float64
	if brokerPID > 0 {
		if bcpu1, err = procCPU(brokerPID); err != nil {
			return CPUSide{}, nil, err
		}
	}
	ans.close(seq.Load())
	anonMiB, fileMiB := procRSS(pid)
	var brokerAnon, brokerFile float64
	if brokerPID > 0 {
		brokerAnon, brokerFile = procRSS(brokerPID)
	}
	// The interval's last requests are still on their way: wait for their
	// answers at the same load, so that their round trips are what they
	// would be, then stop it.
	progress(name + ": waiting for the answers to the interval's requests")
	if err := ans.drain(ctx, drainIdle, max(o.Duration, drainIdle)); err != nil {
		return CPUSide{}, nil, err
	}
	stopLoad()
	if genErr != nil {
		return CPUSide{}, nil, genErr
	}
	sent, served, refused, lats := ans.result()
	side := CPUSide{PID: pid, Sent: sent, Answered: served, Refused: refused, CPUSeconds: cpu1 - cpu0,
		AnonMiB: anonMiB, FileMiB: fileMiB}
	slices.Sort(lats)
	side.P50MS, side.P99MS = profile.Quantile(lats, 0.5), profile.Quantile(lats, 0.99)
	if side.Answered > 0 {
		side.MicrosPerRequest = side.CPUSeconds / float64(side.Answered) * 1e6
	}
	var bs *CPUSide
	if brokerPID > 0 {
		bs = &CPUSide{Name: "broker", PID: brokerPID, Sent: side.Sent, Answered: side.Answered, CPUSeconds: bcpu1 - bcpu0,
			AnonMiB: brokerAnon, FileMiB: brokerFile}
		if side.Answered > 0 {
			bs.MicrosPerRequest = bs.CPUSeconds / float64(side.Answered) * 1e6
		}
	}
	return side, bs, nil
}

// drainIdle is how long measure waits for the answers to the interval's
// last requests after it without any arriving before it gives up on the
// rest (they count as not answered).
const drainIdle = 2 * time.Second

// intervalAnswers counts the answers to the requests sent in a measured
// interval, by sequence number (answerSeq): a request counts once however
// many answers it gets (a request redelivered to the agent is answered
// again, from dedupe; a QoS 1 result may arrive twice), its first answer
// decides whether it was served or refused, and only the requests sent in
// the interval count, so that the answers to the warm-up's requests still
// in flight when the interval starts are not counted and answered never
// exceeds sent. Answers to the interval's requests that arrive after it
// (its last requests' round trips) count: drain waits for them. Its
// methods are safe for concurrent use.
type intervalAnswers struct {
	mu       sync.Mutex
	opened   bool
	from, to int64     // the interval's requests are from < n ≤ to; to < 0 while open
	state    []uint8   // by n-from-1: answerNone, answerServed, answerRefused
	rtt      []float32 // by n-from-1: a served answer's round trip, ms; < 0 unknown
	answered int       // requests of the interval (≤ to once closed) with an answer
	changed  chan struct{}
}

const (
	answerNone uint8 = iota
	answerServed
	answerRefused
)

// open starts the interval: the requests with sequence numbers above from
// are its own.
func (a *intervalAnswers) open(from int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.opened, a.from, a.to = true, from, -1
	a.changed = make(chan struct{}, 1)
}

// close ends the interval: the requests above to were sent after it. An
// answer to one of them that already came is forgotten.
func (a *intervalAnswers) close(to int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.to = max(to, a.from)
	if n := int(a.to - a.from); n < len(a.state) {
		for _, st := range a.state[n:] {
			if st != answerNone {
				a.answered--
			}
		}
		a.state, a.rtt = a.state[:n], a.rtt[:n]
	}
}

// add counts an answer to request n, served or refused, that took rtt ms
// from publish (< 0 when not known). Answers before open, to requests
// outside the interval and to a request already answered are ignored.
func (a *intervalAnswers) add(n int64, refused bool, rtt float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.opened || n <= a.from || (a.to >= 0 && n > a.to) {
		return
	}
	i := int(n - a.from - 1)
	for len(a.state) <= i {
		a.state, a.rtt = append(a.state, answerNone), append(a.rtt, -1)
	}
	if a.state[i] != answerNone {
		return
	}
	a.state[i] = answerServed
	if refused {
		a.state[i] = answerRefused
	} else if rtt >= 0 {
		a.rtt[i] = float32(rtt)
	}
	a.answered++
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// complete reports whether every request of a closed interval has an
// answer.
func (a *intervalAnswers) complete() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.opened && a.to >= 0 && int64(a.answered) >= a.to-a.from
}

// drain waits, after close, until every request of the interval has an
// answer, or no answer has come for idle, or at most limit in all.
func (a *intervalAnswers) drain(ctx context.Context, idle, limit time.Duration) error {
	quiet := time.NewTimer(idle)
	defer quiet.Stop()
	end := time.NewTimer(limit)
	defer end.Stop()
	for !a.complete() {
		select {
		case <-a.changed:
			quiet.Reset(idle)
		case <-quiet.C:
			return nil
		case <-end.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// result is what a closed interval counted: its requests (sent), those
// served and those refused, each once, and the served ones' round trips
// in ms (those known).
func (a *intervalAnswers) result() (sent, served, refused int, rtts []float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.opened || a.to < 0 {
		return 0, 0, 0, nil
	}
	for i, st := range a.state {
		switch st {
		case answerServed:
			served++
			if a.rtt[i] >= 0 {
				rtts = append(rtts, float64(a.rtt[i]))
			}
		case answerRefused:
			refused++
		}
	}
	return int(a.to - a.from), served, refused, rtts
}

// generator publishes at a fixed rate (open loop), QoS 1, without waiting
// for each PUBACK.
type generator struct {
	c     *broker.Client
	topic string
	rate  float64
	next  func() []byte
	sent  atomic.Int64
}

func (g *generator) run(ctx context.Context) error {
	pend := make(chan *broker.Pending, 1<<16)
	errc := make(chan error, 1)
	go func() {
		for p := range pend {
			<-p.Done()
			if err := p.Err(); err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		}
	}()
	defer close(pend)
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("publish: %w", err)
		case <-tick.C:
		}
		due := int64(time.Since(start).Seconds() * g.rate)
		for g.sent.Load() < due {
			pend <- g.c.PublishAsync(g.topic, 1, false, g.next())
			g.sent.Add(1)
		}
	}
}

// mnistPayloads are requests for n MNIST test images, no bound (the last
// exit), id "x" replaced per send by reID.
func mnistPayloads(n int) ([][]byte, error) {
	set, err := mnist.Test()
	if err != nil {
		return nil, err
	}
	out := make([][]byte, n)
	for i := range out {
		b, err := schema.EncodeRequest(&schema.Request{ID: idMark, Input: schema.NewUint8Tensor([]int{1, 28, 28}, set.Images[i%set.Len()])}, schema.MsgPack)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// sendRing is how many requests' send times measure keeps (by sequence
// number): more than a run sends in the longest round trip it measures.
const sendRing = 1 << 18

// answerSeq finds the sequence number in an answer: the id reID wrote
// ("id-" and 12 digits), which the agent's result, the responder's echo
// and the Node.js service's result all carry.
func answerSeq(p []byte) (int64, bool) {
	for off := 0; ; {
		i := bytes.Index(p[off:], []byte("id-"))
		if i < 0 {
			return 0, false
		}
		i += off + len("id-")
		if i+12 <= len(p) {
			if n, err := strconv.ParseInt(string(p[i:i+12]), 10, 64); err == nil && n >= 0 {
				return n, true
			}
		}
		off = i
	}
}

// idMark is a fixed-length id that reID overwrites in the encoded request.
const idMark = "id-000000000000"

// reID returns p with its id replaced by n, zero-padded to idMark's length.
func reID(p []byte, n int64) []byte {
	i := strings.Index(string(p), idMark)
	out := append([]byte(nil), p...)
	id := fmt.Sprintf("id-%012d", n)
	copy(out[i:], id)
	return out
}

// proc is a child process.
type proc struct {
	cmd    *exec.Cmd
	pid    int
	exited chan struct{} // closed when the process has exited
	err    error         // what Wait returned; set before exited closes
}

// startProc starts cmd; with ready set, it waits until the process prints
// that line on its standard output.
func startProc(cmd *exec.Cmd, ready string) (*proc, error) {
	cmd.Stderr = os.Stderr
	var out *bufio.Scanner
	if ready != "" {
		r, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		out = bufio.NewScanner(r)
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{})}
	got := make(chan bool, 1)
	go func() {
		if out != nil {
			ok := false
			for out.Scan() {
				if strings.TrimSpace(out.Text()) == ready {
					ok = true
					break
				}
			}
			got <- ok
			for out.Scan() {
			}
		}
		// After the output is read to its end: Wait closes the pipe.
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if out != nil {
		select {
		case ok := <-got:
			if !ok {
				p.stop()
				return nil, fmt.Errorf("%s exited before it was ready", cmd.Path)
			}
		case <-time.After(time.Minute):
			p.stop()
			return nil, fmt.Errorf("%s not ready within a minute", cmd.Path)
		}
	}
	return p, nil
}

// exitErr says how the process ended, once it has.
func (p *proc) exitErr() error {
	if p.err != nil {
		return p.err
	}
	return errors.New("exit status 0")
}

// stop ends the process: SIGTERM, then SIGKILL after 15 s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// procCPU is a process's user + system CPU time in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	// After the command: state(3) … utime(14) stime(15), 1-based overall.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return (ut + st) / clockTicks, nil
}

// procRSS is a process's anonymous and file-backed resident memory in
// MiB (0, 0 when /proc does not say).
func procRSS(pid int) (anon, file float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "RssAnon:":
			anon = kb / 1024
		case "RssFile:":
			file = kb / 1024
		}
	}
	return anon, file
}

// clockTicks is USER_HZ, 100 on Linux's x86 and arm64.
const clockTicks = 100

// listenerPID finds the process listening on the broker URL's TCP port on
// this machine, from /proc/net/tcp{,6} and the processes' socket
// descriptors.
func listenerPID(raw string) (int, error) {
	if !strings.Contains(raw, "://") {
		raw = "tcp://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return 0, fmt.Errorf("broker URL %s: no port", raw)
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			local := fs[1]
			j := strings.LastIndexByte(local, ':')
			if p, err := strconv.ParseInt(local[j+1:], 16, 32); err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("nothing listens on port %d here", port)
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && inodes[l] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("the process listening on port %d is not visible", port)
}

// forgetSession removes a persistent session the benchmark left at an
// external broker (a clean-session connection with its client id).
func forgetSession(ctx context.Context, url, id string) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c, err := broker.Dial(cctx, broker.ClientConfig{URL: url, ClientID: id, CleanSession: true, Logger: slog.New(slog.DiscardHandler)}); err == nil {
		c.Close()
	}
}

// freeAddr is a free loopback TCP address.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Respond is the bare paho responder: it subscribes to every tenant's
// requests under prefix and publishes each payload back, QoS 1, on the
// tenant's results topic, acknowledging the request after the PUBACK (as
// the agent does); ready is called once it is subscribed. It runs until
// ctx ends.
func Respond(ctx context.Context, url, prefix string, ready func()) error {
	topics := schema.Topics{Prefix: prefix}
	c, err := broker.Dial(ctx, broker.ClientConfig{URL: url, ClientID: prefix + "-responder", CleanSession: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer c.Close()
	type inflight struct {
		m broker.Message
		p *broker.Pending
	}
	acks := make(chan inflight, 1<<16)
	go func() {
		for f := range acks {
			<-f.p.Done()
			if f.p.Err() == nil {
				f.m.Ack()
			}
		}
	}()
	var mu sync.Mutex // keeps publish order = ack order
	err = c.Subscribe(topics.RequestsFilter(), 1, func(m broker.Message) {
		tenant, _, err := topics.Parse(m.Topic())
		if err != nil {
			m.Ack()
			return
		}
		mu.Lock()
		acks <- inflight{m, c.PublishAsync(topics.Results(tenant), 1, false, m.Payload())}
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	ready()
	<-ctx.Done()
	return nil
}
