package models

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/delen-edge/delen/models/onnxgraph"
	"github.com/delen-edge/delen/models/profile"
	ort "github.com/yalue/onnxruntime_go"
)

// ExecutorBench compares running every stage in sequence with running the
// monolithic file of the same network, in one process on the same inputs.
type ExecutorBench struct {
	Model       string  `json:"model"`
	Exits       int     `json:"exits"`
	Batch       int     `json:"batch"`
	Reps        int     `json:"reps"`
	StagedMS    float64 `json:"staged_median_ms"`
	MonoMS      float64 `json:"monolithic_median_ms"`
	Ratio       float64 `json:"ratio"`        // StagedMS / MonoMS
	PairedRatio float64 `json:"paired_ratio"` // median of per-repetition ratios
	// CallMS is the median of one ONNX Runtime call on a graph without
	// nodes (its output is its input), with the model's session options:
	// the fixed cost of every call, measured in the same loop.
	CallMS float64 `json:"call_median_ms"`
	// FloorRatio is (MonoMS + (Exits-1)·CallMS) / MonoMS: the lowest ratio
	// staged execution can reach while each stage is its own call, if the
	// stage boundaries cost nothing but the calls.
	FloorRatio float64 `json:"floor_ratio"`
}

// BenchOptions tunes BenchExecutor; zero values give 500 repetitions after
// 50 warm-up rounds at batch 1.
type BenchOptions struct {
	Reps, Warmup, Batch int
	// Fill writes the input of repetition r (default: a fixed pattern).
	Fill func(r int, dst []float32)
	// Progress receives a line about once a second.
	Progress func(string)
}

// BenchExecutor times staged against monolithic execution, and one call on
// an empty graph (CallMS). Repetitions interleave the three and rotate
// which goes first, so drift and caches affect every side alike. Both sides
// run through I/O bindings on sessions made with the same options. m must
// be loaded with LoadOptions.Monolithic.
func BenchExecutor(ctx context.Context, m *Model, opt BenchOptions) (*ExecutorBench, error) {
	if opt.Reps <= 0 {
		opt.Reps = 500
	}
	if opt.Warmup <= 0 {
		opt.Warmup = 50
	}
	if opt.Batch <= 0 {
		opt.Batch = 1
	}
	if opt.Fill == nil {
		opt.Fill = func(r int, dst []float32) {
			for i := range dst {
				dst[i] = float32(math.Sin(float64(i*7+r))+1) / 2
			}
		}
	}
	mono, err := m.NewMonolithicRun(opt.Batch)
	if err != nil {
		return nil, err
	}
	defer mono.Close()
	st, err := m.NewState(opt.Batch)
	if err != nil {
		return nil, err
	}
	defer st.Release()
	staged := func() error {
		st.next = 0
		for !st.Done() {
			if _, err := st.RunStage(); err != nil {
				return err
			}
		}
		return nil
	}
	call, err := newCallProbe(m, opt.Batch)
	if err != nil {
		return nil, err
	}
	defer call.close()
	sides := []func() error{staged, func() error { _, err := mono.Run(); return err }, call.run}
	var ts, tm, tc, ratios []float64
	last := time.Now()
	for r := 0; r < opt.Warmup+opt.Reps; r++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		opt.Fill(r, st.Input())
		copy(mono.Input(), st.Input())
		var d [3]time.Duration
		for turn := range sides {
			k := (turn + r) % len(sides)
			t0 := time.Now()
			if err := sides[k](); err != nil {
				return nil, err
			}
			d[k] = time.Since(t0)
		}
		if r >= opt.Warmup {
			ts = append(ts, ms(d[0]))
			tm = append(tm, ms(d[1]))
			tc = append(tc, ms(d[2]))
			ratios = append(ratios, float64(d[0])/float64(d[1]))
		}
		if opt.Progress != nil && time.Since(last) > time.Second {
			last = time.Now()
			opt.Progress(fmt.Sprintf("executor bench: %d/%d", r+1, opt.Warmup+opt.Reps))
		}
	}
	b := &ExecutorBench{Model: m.Manifest.ID(), Exits: m.Exits(), Batch: opt.Batch, Reps: opt.Reps,
		StagedMS: profile.Median(ts), MonoMS: profile.Median(tm), PairedRatio: profile.Median(ratios),
		CallMS: profile.Median(tc)}
	b.Ratio = b.StagedMS / b.MonoMS
	b.FloorRatio = (b.MonoMS + float64(b.Exits-1)*b.CallMS) / b.MonoMS
	return b, nil
}

// callProbe runs a graph with no nodes, whose output is its input (batch ×
// classes floats), through an I/O binding, on a session made with the
// model's options: what any ONNX Runtime call costs before a kernel runs.
type callProbe struct {
	sess    *ort.DynamicAdvancedSession
	bind    *ort.IoBinding
	in, out *ort.Tensor[float32]
}

func newCallProbe(m *Model, batch int) (*callProbe, error) {
	g := onnxgraph.New("call-probe")
	x := g.Input("x", onnxgraph.Dims(-1, int64(m.Classes())))
	g.Output(x, onnxgraph.Dims(-1, int64(m.Classes())))
	data, err := g.Marshal()
	if err != nil {
		return nil, err
	}
	so, _, _, err := sessionOptions(m.opt)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	p := &callProbe{}
	fail := func(err error) (*callProbe, error) {
		p.close()
		return nil, fmt.Errorf("call probe: %w", err)
	}
	if p.sess, err = ort.NewDynamicAdvancedSessionWithONNXData(data, []string{x}, []string{x}, so); err != nil {
		return fail(err)
	}
	shape := ort.Shape{int64(batch), int64(m.Classes())}
	if p.in, err = ort.NewEmptyTensor[float32](shape); err != nil {
		return fail(err)
	}
	if p.out, err = ort.NewEmptyTensor[float32](shape); err != nil {
		return fail(err)
	}
	if p.bind, err = p.sess.CreateIoBinding(); err != nil {
		return fail(err)
	}
	if err := p.bind.BindInput(x, p.in); err != nil {
		return fail(err)
	}
	if err := p.bind.BindOutput(x, p.out); err != nil {
		return fail(err)
	}
	return p, nil
}

func (p *callProbe) run() error { return p.sess.RunWithBinding(p.bind) }

func (p *callProbe) close() {
	if p.bind != nil {
		p.bind.Destroy()
	}
	if p.sess != nil {
		p.sess.Destroy()
	}
	for _, t := range []*ort.Tensor[float32]{p.in, p.out} {
		if t != nil {
			t.Destroy()
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
