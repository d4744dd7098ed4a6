// Package models loads multi-exit models (a manifest plus one ONNX file per
// stage) and runs them one stage at a time with ONNX Runtime, so that a
// scheduler can interleave the stages of many requests and stop each one at
// the exit its bound asks for.
package models

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ErrBadModel is wrapped by every error about a model folder's files
// (missing, unreadable, names or shapes that do not fit the manifest).
var ErrBadModel = errors.New("bad model")

// LoadOptions tunes how a model's sessions are created. The zero value is
// what the agent uses: one intra-op thread per session (the agent runs
// stages of different requests in parallel instead).
type LoadOptions struct {
	// IntraOpThreads per ONNX Runtime session; 0 means 1.
	IntraOpThreads int
	// Monolithic also loads the manifest's monolithic file (benchmarks).
	Monolithic bool
	// Provider is the execution provider: "cpu" (the default), "cuda" or
	// "tensorrt" (TensorRT, with CUDA behind it for the nodes TensorRT does
	// not take). When the ONNX Runtime library lacks the provider (the npm
	// build is CPU-only), the model runs on the CPU and Fallback says why.
	Provider string
	// Logger receives the provider fallback (default: discarded).
	Logger *slog.Logger
}

// Execution providers for LoadOptions.Provider.
const (
	ProviderCPU      = "cpu"
	ProviderCUDA     = "cuda"
	ProviderTensorRT = "tensorrt"
)

// Model is a loaded multi-exit model. It is safe for concurrent use; a
// State is not.
type Model struct {
	Manifest *Manifest
	// Provider is the execution provider the sessions run on.
	Provider string
	// Fallback, when set, is why the requested provider is not in use.
	Fallback string
	stages   []*stage
	mono     *ort.DynamicAdvancedSession
	monoOuts int
	opt      LoadOptions // what the sessions were created with

	mu   sync.Mutex
	free map[int][]*State // released states by batch size, reused
}

type stage struct {
	file     string
	sess     *ort.DynamicAdvancedSession
	in       []int64 // input shape without the batch dimension
	features []int64 // features shape without batch; nil for the last stage
	classes  int64
	// dynamicBatch is true when the file's batch dimension is symbolic, so
	// several requests can run as one call.
	dynamicBatch bool
	outputs      int
}

// Load opens the model folder dir.
func Load(dir string, opt LoadOptions) (*Model, error) {
	return LoadFS(os.DirFS(dir), ".", opt)
}

// LoadFS opens the model folder dir of fsys (the built-in zoo is embedded).
// Errors name the file and the problem and wrap ErrBadManifest or
// ErrBadModel.
func LoadFS(fsys fs.FS, dir string, opt LoadOptions) (*Model, error) {
	if err := InitRuntime(); err != nil {
		return nil, err
	}
	man, err := ReadManifest(fsys, dir)
	if err != nil {
		return nil, err
	}
	m := &Model{Manifest: man, opt: opt, free: map[int][]*State{}}
	ok := false
	defer func() {
		if !ok {
			m.Close()
		}
	}()
	so, provider, fallback, err := sessionOptions(opt)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	m.Provider, m.Fallback = provider, fallback
	if fallback != "" && opt.Logger != nil {
		opt.Logger.Warn("execution provider not available; running on the CPU", "model", man.ID(), "requested", opt.Provider, "reason", fallback)
	}
	bad := func(file, format string, a ...any) error {
		return fmt.Errorf("%s: %w: %s", joinFS(dir, file), ErrBadModel, fmt.Sprintf(format, a...))
	}
	for i, spec := range man.Stages {
		data, err := fs.ReadFile(fsys, joinFS(dir, spec.File))
		if err != nil {
			return nil, fmt.Errorf("stage %d: %w: %w", i, ErrBadModel, err)
		}
		ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
		if err != nil {
			return nil, bad(spec.File, "not a loadable ONNX model: %v", err)
		}
		st := &stage{file: spec.File, classes: int64(len(man.Classes))}
		if len(ins) != 1 {
			return nil, bad(spec.File, "has %d inputs %s, want one named %q", len(ins), names(ins), spec.Input)
		}
		in := ins[0]
		if in.Name != spec.Input {
			return nil, bad(spec.File, "input is named %q, the manifest says %q", in.Name, spec.Input)
		}
		if in.DataType != ort.TensorElementDataTypeFloat {
			return nil, bad(spec.File, "input %q is %s, want float32", in.Name, in.DataType)
		}
		if len(in.Dimensions) < 2 {
			return nil, bad(spec.File, "input %q has shape %v, want a batch dimension and more", in.Name, in.Dimensions)
		}
		st.dynamicBatch = in.Dimensions[0] < 0
		if !st.dynamicBatch && in.Dimensions[0] != 1 {
			return nil, bad(spec.File, "input %q has batch dimension %d, want 1 or symbolic", in.Name, in.Dimensions[0])
		}
		st.in = slices.Clone(in.Dimensions[1:])
		if i == 0 {
			if !slices.Equal(st.in, man.Input.Shape) {
				return nil, bad(spec.File, "input shape %v does not match the manifest's input.shape %v", st.in, man.Input.Shape)
			}
		} else if prev := m.stages[i-1]; !slices.Equal(st.in, prev.features) {
			return nil, bad(spec.File, "input shape %v does not chain: %s gives features of shape %v", st.in, prev.file, prev.features)
		}
		byName := map[string]ort.InputOutputInfo{}
		for _, o := range outs {
			byName[o.Name] = o
		}
		outNames := []string{}
		if spec.Outputs.Features != "" {
			f, ok := byName[spec.Outputs.Features]
			if !ok {
				return nil, bad(spec.File, "no output named %q (features); outputs are %s", spec.Outputs.Features, names(outs))
			}
			if len(f.Dimensions) < 2 || f.DataType != ort.TensorElementDataTypeFloat {
				return nil, bad(spec.File, "features output %q is %s %v, want float32 with a batch dimension", f.Name, f.DataType, f.Dimensions)
			}
			st.features = slices.Clone(f.Dimensions[1:])
			for _, d := range st.features {
				if d <= 0 {
					return nil, bad(spec.File, "features output %q has shape %v: only the batch dimension may be symbolic", f.Name, f.Dimensions)
				}
			}
			outNames = append(outNames, f.Name)
		}
		l, ok := byName[spec.Outputs.Logits]
		if !ok {
			return nil, bad(spec.File, "no output named %q (logits); outputs are %s", spec.Outputs.Logits, names(outs))
		}
		if len(l.Dimensions) != 2 || l.Dimensions[1] != st.classes || l.DataType != ort.TensorElementDataTypeFloat {
			return nil, bad(spec.File, "logits output %q is %s %v, want float32 [batch, %d] (the manifest's classes)", l.Name, l.DataType, l.Dimensions, st.classes)
		}
		outNames = append(outNames, l.Name)
		st.outputs = len(outNames)
		st.sess, err = ort.NewDynamicAdvancedSessionWithONNXData(data, []string{spec.Input}, outNames, so)
		if err != nil {
			return nil, bad(spec.File, "create session: %v", err)
		}
		m.stages = append(m.stages, st)
	}
	if opt.Monolithic && man.Monolithic != nil {
		data, err := fs.ReadFile(fsys, joinFS(dir, man.Monolithic.File))
		if err != nil {
			return nil, fmt.Errorf("monolithic: %w: %w", ErrBadModel, err)
		}
		m.mono, err = ort.NewDynamicAdvancedSessionWithONNXData(data, []string{man.Monolithic.Input}, man.Monolithic.Outputs, so)
		if err != nil {
			return nil, bad(man.Monolithic.File, "create session: %v", err)
		}
		m.monoOuts = len(man.Monolithic.Outputs)
	}
	ok = true
	return m, nil
}

func sessionOptions(opt LoadOptions) (so *ort.SessionOptions, provider, fallback string, err error) {
	so, err = ort.NewSessionOptions()
	if err != nil {
		return nil, "", "", fmt.Errorf("session options: %w", err)
	}
	threads := opt.IntraOpThreads
	if threads <= 0 {
		threads = 1
	}
	for _, set := range []func() error{
		func() error { return so.SetIntraOpNumThreads(threads) },
		func() error { return so.SetInterOpNumThreads(1) },
		func() error { return so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll) },
		func() error { return so.SetExecutionMode(ort.ExecutionModeSequential) },
	} {
		if err := set(); err != nil {
			so.Destroy()
			return nil, "", "", fmt.Errorf("session options: %w", err)
		}
	}
	switch opt.Provider {
	case "", ProviderCPU:
		return so, ProviderCPU, "", nil
	case ProviderCUDA:
		if err := appendCUDA(so); err != nil {
			return so, ProviderCPU, err.Error(), nil
		}
		return so, ProviderCUDA, "", nil
	case ProviderTensorRT:
		if err := appendTensorRT(so); err != nil {
			return so, ProviderCPU, err.Error(), nil
		}
		// CUDA takes what TensorRT does not; without it the CPU does.
		if err := appendCUDA(so); err != nil {
			return so, ProviderTensorRT, "", nil
		}
		return so, ProviderTensorRT, "", nil
	default:
		so.Destroy()
		return nil, "", "", fmt.Errorf("execution provider %q: want cpu, cuda or tensorrt", opt.Provider)
	}
}

func appendCUDA(so *ort.SessionOptions) error {
	o, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	defer o.Destroy()
	if err := so.AppendExecutionProviderCUDA(o); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	return nil
}

func appendTensorRT(so *ort.SessionOptions) error {
	o, err := ort.NewTensorRTProviderOptions()
	if err != nil {
		return fmt.Errorf("tensorrt: %w", err)
	}
	defer o.Destroy()
	if err := so.AppendExecutionProviderTensorRT(o); err != nil {
		return fmt.Errorf("tensorrt: %w", err)
	}
	return nil
}

func names(infos []ort.InputOutputInfo) string {
	var s []string
	for _, i := range infos {
		s = append(s, fmt.Sprintf("%q", i.Name))
	}
	return fmt.Sprint(s)
}

// Exits is the number of exits (= stages).
func (m *Model) Exits() int { return len(m.stages) }

// Classes is the number of output classes.
func (m *Model) Classes() int { return len(m.Manifest.Classes) }

// DynamicBatch reports whether stage i accepts any batch size.
func (m *Model) DynamicBatch(i int) bool { return m.stages[i].dynamicBatch }

// StageInputShape is stage i's input shape without the batch dimension.
func (m *Model) StageInputShape(i int) []int64 { return slices.Clone(m.stages[i].in) }

// Close releases the model's sessions and pooled states.
func (m *Model) Close() error {
	m.mu.Lock()
	for _, states := range m.free {
		for _, s := range states {
			s.destroy()
		}
	}
	m.free = nil
	m.mu.Unlock()
	for _, s := range m.stages {
		if s.sess != nil {
			s.sess.Destroy()
		}
	}
	m.stages = nil
	if m.mono != nil {
		m.mono.Destroy()
		m.mono = nil
	}
	return nil
}
