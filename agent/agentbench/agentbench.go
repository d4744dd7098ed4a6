// Package agentbench measures the agent end to end, each figure as a ratio
// of two sides run in the same process against the same broker:
//
//   - Overhead: a request's round trip through the agent serving a
//     zero-cost one-stage model ÷ a bare MQTT echo through the same broker
//     (the floor for anything MQTT-based), at p50 and p99.
//   - Throughput: the agent's saturated requests/s on one model and exit ÷
//     a bare ONNX Runtime loop running the same stage with the same number
//     of workers.
package agentbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/onnxgraph"
	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/models/zoo"
	"github.com/delen-edge/delen/schema"
)

// Side is one side of a ratio.
type Side struct {
	Name  string  `json:"name"`
	P50MS float64 `json:"p50_ms,omitempty"`
	P99MS float64 `json:"p99_ms,omitempty"`
	RPS   float64 `json:"rps,omitempty"`
	N     int     `json:"n"`
}

// OverheadResult is the agent round trip against the bare echo.
type OverheadResult struct {
	Broker   string  `json:"broker"`
	Agent    Side    `json:"agent"`
	Echo     Side    `json:"echo"`
	RatioP50 float64 `json:"ratio_p50"`
	RatioP99 float64 `json:"ratio_p99"`
}

// ThroughputResult is the agent's saturated rate against bare ONNX Runtime.
type ThroughputResult struct {
	Broker  string  `json:"broker"`
	Model   string  `json:"model"`
	Exit    int     `json:"exit"`
	Workers int     `json:"workers"`
	Batch   int     `json:"max_batch"`
	Agent   Side    `json:"agent"`
	Bare    Side    `json:"bare_ort"`
	Ratio   float64 `json:"ratio"`
}

// Options configure a benchmark run. BrokerURL is required; the agent runs
// in-process with its store in a temporary folder.
type Options struct {
	BrokerURL string
	// Embedded, when set, is the broker at BrokerURL, in this process: the
	// agent attaches to it as `delen serve` does (agent.Config.Embedded);
	// the benchmark's other clients use BrokerURL.
	Embedded *broker.Embedded
	// N is the number of requests (default 2000 for overhead, 20000 for
	// throughput).
	N int
	// Workers is the agent's and the bare loop's worker count (default
	// GOMAXPROCS).
	Workers int
	// Model and Exit for the throughput (default mnist-ee, exit 1).
	Model string
	Exit  int
	// MaxBatch is the agent's stage batch limit (0 or 1: no batching).
	MaxBatch int
	// ZooDirs are model folders besides the built-in models.
	ZooDirs  []string
	Logger   *slog.Logger
	Progress func(string)
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// startAgent runs an agent for the benchmark and returns a stop function.
func startAgent(ctx context.Context, o Options, zooDirs []string, edit func(*agent.Config)) (*agent.Agent, func(), error) {
	dir, err := os.MkdirTemp("", "delen-bench-")
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Open(filepath.Join(dir, "store"), store.Options{})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	cfg := agent.Config{AgentID: fmt.Sprintf("delen-bench-%d", time.Now().UnixNano()), BrokerURL: o.BrokerURL, Embedded: o.Embedded,
		Store: st, Zoo: zoo.New(zooDirs...), Workers: o.Workers, QueueLimit: 1 << 20, Logger: o.logger(),
		StatusInterval: time.Hour}
	if edit != nil {
		edit(&cfg)
	}
	runCtx, cancel := context.WithCancel(ctx)
	a, err := agent.New(runCtx, cfg)
	if err != nil {
		cancel()
		st.Close()
		os.RemoveAll(dir)
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	stop := func() {
		cancel()
		<-done
		st.Close()
		os.RemoveAll(dir)
	}
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	if err := a.WaitReady(wctx); err != nil {
		stop()
		return nil, nil, err
	}
	return a, stop, nil
}

// writeZeroModel writes "zero": one stage, a 2-value input, a 2×2 dense
// layer: a model that costs next to nothing, so a round trip through the
// agent measures the agent.
func writeZeroModel(dir string) error {
	md := filepath.Join(dir, "zero")
	if err := os.MkdirAll(md, 0o755); err != nil {
		return err
	}
	g := onnxgraph.New("zero")
	in := g.Input("input", onnxgraph.Dims(-1, 2))
	g.Dense(in, []float32{1, 0, 0, 1}, []float32{0, 0}, 2, 2, "logits")
	g.Output("logits", onnxgraph.Dims(-1, 2))
	if err := g.WriteFile(filepath.Join(md, "stage0.onnx")); err != nil {
		return err
	}
	return models.WriteManifest(md, &models.Manifest{
		Name: "zero", Version: "1", Kind: models.KindTrained, Description: "zero-cost model for the overhead benchmark",
		Input:   models.InputSpec{Name: "input", DType: "float32", Shape: []int64{2}, Scale: 1},
		Classes: []string{"a", "b"},
		Stages:  []models.StageSpec{{File: "stage0.onnx", Input: "input", Outputs: models.StageOutputs{Logits: "logits"}}},
		Exits:   []models.ExitSpec{{Accuracy: 1, FLOPs: 8}},
	})
}

// rtt is a requester: it publishes one request at a time and waits for
// the answer on the results topic.
type rtt struct {
	c       *broker.Client
	req     string
	got     chan struct{}
	answers atomic.Int64 // every answer received, to check there is one per request
}

func newRTT(ctx context.Context, url, id, reqTopic, resTopic string) (*rtt, error) {
	c, err := broker.Dial(ctx, broker.ClientConfig{URL: url, ClientID: id, CleanSession: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	r := &rtt{c: c, req: reqTopic, got: make(chan struct{}, 1)}
	err = c.Subscribe(resTopic, 1, func(m broker.Message) {
		m.Ack()
		r.answers.Add(1)
		select {
		case r.got <- struct{}{}:
		default:
		}
	})
	if err != nil {
		c.Close()
		return nil, err
	}
	return r, nil
}

// once publishes payload and returns the time until an answer arrives.
func (r *rtt) once(ctx context.Context, payload []byte) (time.Duration, error) {
	t0 := time.Now()
	if err := r.c.Publish(ctx, r.req, 1, false, payload); err != nil {
		return 0, err
	}
	select {
	case <-r.got:
		return time.Since(t0), nil
	case <-time.After(10 * time.Second):
		return 0, errors.New("no answer within 10 s")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// echoPrefix is the bare echo's topic prefix: as long as the agent's
// default prefix, so both sides' topics have the same length.
const echoPrefix = "echo0"

// Overhead measures the agent round trip against the bare echo,
// alternating the two request by request.
func Overhead(ctx context.Context, o Options) (*OverheadResult, error) {
	if o.N <= 0 {
		o.N = 2000
	}
	zdir, err := os.MkdirTemp("", "delen-zero-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(zdir)
	if err := writeZeroModel(zdir); err != nil {
		return nil, err
	}
	_, stop, err := startAgent(ctx, o, []string{zdir}, func(c *agent.Config) { c.DefaultModel = "zero" })
	if err != nil {
		return nil, err
	}
	defer stop()

	var topics schema.Topics
	// The echo: a client that answers each request by publishing the same
	// bytes on the results topic, then acknowledges it: the same pattern
	// as the agent, without the agent. Its topics are under a prefix of
	// the same length that the agent does not subscribe to: under the
	// agent's prefix the agent would answer the echo's requests too (a
	// second answer on the echo's results topic, and the agent's work
	// on them landing in the round trips measured).
	echoTopics := schema.Topics{Prefix: echoPrefix}
	echo, err := broker.Dial(ctx, broker.ClientConfig{URL: o.BrokerURL, ClientID: "delen-bench-echo", CleanSession: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer echo.Close()
	err = echo.Subscribe(echoTopics.Requests("bench"), 1, func(m broker.Message) {
		if err := echo.Publish(ctx, echoTopics.Results("bench"), 1, false, m.Payload()); err == nil {
			m.Ack()
		}
	})
	if err != nil {
		return nil, err
	}
	viaAgent, err := newRTT(ctx, o.BrokerURL, "delen-bench-req-agent", topics.Requests("bench"), topics.Results("bench"))
	if err != nil {
		return nil, err
	}
	defer viaAgent.c.Close()
	viaEcho, err := newRTT(ctx, o.BrokerURL, "delen-bench-req-echo", echoTopics.Requests("bench"), echoTopics.Results("bench"))
	if err != nil {
		return nil, err
	}
	defer viaEcho.c.Close()

	warm := o.N / 10
	var ta, te []float64
	last := time.Now()
	for i := 0; i < warm+o.N; i++ {
		req := &schema.Request{ID: fmt.Sprintf("o%d", i), Input: schema.NewFloat32Tensor([]int{2}, []float32{1, 0})}
		payload, err := schema.EncodeRequest(req, schema.MsgPack)
		if err != nil {
			return nil, err
		}
		order := []*rtt{viaAgent, viaEcho}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, r := range order {
			d, err := r.once(ctx, payload)
			if err != nil {
				return nil, fmt.Errorf("round trip %d: %w", i, err)
			}
			if i >= warm {
				if r == viaAgent {
					ta = append(ta, ms(d))
				} else {
					te = append(te, ms(d))
				}
			}
		}
		if o.Progress != nil && time.Since(last) > time.Second {
			last = time.Now()
			o.Progress(fmt.Sprintf("overhead: %d/%d round trips", i+1, warm+o.N))
		}
	}
	// One answer per request on each side, or the sides did not measure
	// what they say (the last answer may still be on its way: none is
	// waited for after it arrived, so a count above is what can be told).
	for _, r := range []*rtt{viaAgent, viaEcho} {
		if n := r.answers.Load(); n > int64(warm+o.N) {
			return nil, fmt.Errorf("%d answers to %d requests on %s: something else answers there", n, warm+o.N, r.req)
		}
	}
	qa, qe := profile.Summarize(ta), profile.Summarize(te)
	res := &OverheadResult{Broker: o.BrokerURL,
		Agent: Side{Name: "agent (zero-cost model)", P50MS: qa.P50, P99MS: qa.P99, N: len(ta)},
		Echo:  Side{Name: "bare MQTT echo", P50MS: qe.P50, P99MS: qe.P99, N: len(te)}}
	res.RatioP50 = res.Agent.P50MS / res.Echo.P50MS
	res.RatioP99 = res.Agent.P99MS / res.Echo.P99MS
	return res, nil
}

// Throughput saturates the agent with N requests bound to one exit, then
// runs a bare ONNX Runtime loop on the same stages with the same number of
// workers for as many inferences, and compares their rates.
func Throughput(ctx context.Context, o Options) (*ThroughputResult, error) {
	if o.N <= 0 {
		o.N = 20000
	}
	if o.Model == "" {
		o.Model = "mnist-ee"
	}
	if o.Exit <= 0 {
		o.Exit = 1
	}
	if o.Workers <= 0 {
		o.Workers = defaultWorkers()
	}
	_, stop, err := startAgent(ctx, o, o.ZooDirs, func(c *agent.Config) { c.MaxBatch = o.MaxBatch })
	if err != nil {
		return nil, err
	}
	defer stop()
	m, err := zoo.New(o.ZooDirs...).Load(o.Model, models.LoadOptions{})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	input := make([]float32, m.Manifest.SampleSize())
	for i := range input {
		input[i] = float32(i%17) / 17
	}

	// Agent side: publishers send open-loop; one client collects results.
	var topics schema.Topics
	col, err := broker.Dial(ctx, broker.ClientConfig{URL: o.BrokerURL, ClientID: "delen-bench-collect", CleanSession: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer col.Close()
	var answered atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Pointer[string]
	all := make(chan struct{})
	err = col.Subscribe(topics.Results("bench"), 1, func(msg broker.Message) {
		msg.Ack()
		if r, _, err := schema.DecodeResult(msg.Payload(), 1<<20); err != nil || r.Status == schema.StatusError {
			failed.Add(1)
			e := fmt.Sprint(err)
			if r != nil && r.Error != nil {
				e = r.Error.Error()
			}
			firstErr.CompareAndSwap(nil, &e)
		}
		if answered.Add(1) == int64(o.N) {
			close(all)
		}
	})
	if err != nil {
		return nil, err
	}
	exit := o.Exit
	shape := make([]int, len(m.Manifest.Input.Shape))
	for i, d := range m.Manifest.Input.Shape {
		shape[i] = int(d)
	}
	payloads := make([][]byte, o.N)
	for i := range payloads {
		req := &schema.Request{ID: fmt.Sprintf("t%d", i), Model: o.Model, Input: schema.NewFloat32Tensor(shape, input),
			Bound: schema.Bound{Exit: &exit}}
		if payloads[i], err = schema.EncodeRequest(req, schema.MsgPack); err != nil {
			return nil, err
		}
	}
	const senders = 4
	pubs := make([]*broker.Client, senders)
	for i := range pubs {
		if pubs[i], err = broker.Dial(ctx, broker.ClientConfig{URL: o.BrokerURL, ClientID: fmt.Sprintf("delen-bench-pub-%d", i), CleanSession: true, Logger: slog.New(slog.DiscardHandler)}); err != nil {
			return nil, err
		}
		defer pubs[i].Close()
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := s; i < o.N; i += senders {
				if err := pubs[s].Publish(ctx, topics.Requests("bench"), 1, false, payloads[i]); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		return nil, fmt.Errorf("agent answered %d of %d requests within 5 minutes", answered.Load(), o.N)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	agentTime := time.Since(t0)
	if f := failed.Load(); f > 0 {
		return nil, fmt.Errorf("%d of %d requests failed (first: %s)", f, o.N, *firstErr.Load())
	}

	// Bare side: the same stages, the same inputs, the same worker count.
	var next atomic.Int64
	t1 := time.Now()
	errs := make(chan error, o.Workers)
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(o.N) {
				st, err := m.NewState(1)
				if err != nil {
					errs <- err
					return
				}
				copy(st.Input(), input)
				for k := 0; k < exit; k++ {
					if _, err := st.RunStage(); err != nil {
						errs <- err
						st.Release()
						return
					}
				}
				st.Release()
			}
		}()
	}
	wg.Wait()
	bareTime := time.Since(t1)
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	res := &ThroughputResult{Broker: o.BrokerURL, Model: o.Model, Exit: exit, Workers: o.Workers, Batch: o.MaxBatch,
		Agent: Side{Name: "agent over MQTT", RPS: float64(o.N) / agentTime.Seconds(), N: o.N},
		Bare:  Side{Name: "bare ONNX Runtime loop", RPS: float64(o.N) / bareTime.Seconds(), N: o.N}}
	res.Ratio = res.Agent.RPS / res.Bare.RPS
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func defaultWorkers() int { return runtime.GOMAXPROCS(0) }
