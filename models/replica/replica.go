// Package replica writes cost replicas: model folders whose stages cost what
// a reference multi-exit network costs (the same cumulative FLOPs per exit,
// with ResNet-like layer shapes) but carry deterministic random weights, so
// their logits mean nothing. They let the agent, the profiler
// and the benchmarks exercise the reference Dělen setup (ResNet-50 with four
// exits on a Jetson Nano) without the trained reference weights.
package replica

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/onnxgraph"
)

// Name is the name (and folder name) of the replica Generate writes.
const Name = "resnet50-nano"

// Tensor and file names used by the replica's stage files and monolithic file.
const (
	// InputName is the image input of stage 0 and of the monolithic file.
	InputName = "input"
	// FeaturesInName is the input of stages 1..3 (the previous stage's features).
	FeaturesInName = "features_in"
	// FeaturesName is the features output of stages 0..2.
	FeaturesName = "features"
	// LogitsName is the logits output of every stage.
	LogitsName = "logits"
	// MonolithicFile is the whole network in one file, with outputs
	// logits_1 … logits_4 (one per exit).
	MonolithicFile = "full.onnx"

	monolithicLogits = "logits_%d" // monolithic output names, 1-based exit
)

// NumClasses is the number of logits every exit produces (ImageNet's 1000).
const NumClasses = 1000

// ImageSize is the height and width of the replica's [3, 224, 224] input.
const ImageSize = 224

// Options controls Generate.
type Options struct {
	// Seed seeds the weights: the same seed always gives the same files.
	Seed int64
	// Progress, when set, receives one human-readable line per step.
	Progress func(msg string)
}

// Reference returns the published per-exit profile of the reference Dělen
// setup (ResNet-50 with 4 exits on a Jetson Nano): top-1 accuracy,
// cumulative FLOPs (multiply and add counted separately) and cumulative
// energy in mJ. The replica's FLOPs are within 3% of these; its accuracy and
// energy are these values verbatim. The published accuracy of exit 4 is
// below exit 3's; it is kept as published.
func Reference() []models.ExitSpec {
	return []models.ExitSpec{
		{Accuracy: 0.4354, FLOPs: 0.81e9, EnergyMJ: 45.99},
		{Accuracy: 0.6803, FLOPs: 1.86e9, EnergyMJ: 99.31},
		{Accuracy: 0.7675, FLOPs: 3.33e9, EnergyMJ: 176.75},
		{Accuracy: 0.7657, FLOPs: 4.14e9, EnergyMJ: 243.55},
	}
}

// layer is one backbone layer: a convolution (k×k, given stride, padding
// k/2, followed by ReLU) or, when pool > 0, a pool×pool max pool.
type layer struct {
	cin, cout, k, stride int64
	pool                 int64
}

func conv(cin, cout, k, stride int64) layer { return layer{cin: cin, cout: cout, k: k, stride: stride} }

// arch is the replica's backbone, one layer list per stage; every stage ends
// with a head (GlobalAveragePool, Flatten, Dense to NumClasses). The widths
// are ResNet-like (7×7 stride-2 stem, 3×3 convs at 56/28/14/7 with stride-2
// transitions, 1×1 expansions) and were chosen so that the cumulative FLOPs
// land within 0.4% of Reference.
var arch = [][]layer{
	{conv(3, 64, 7, 2), {pool: 2}, conv(64, 64, 3, 1), conv(64, 64, 3, 1), conv(64, 272, 1, 1)},
	{conv(272, 128, 3, 2), conv(128, 128, 3, 1), conv(128, 128, 3, 1), conv(128, 512, 1, 1)},
	{conv(512, 320, 3, 2), conv(320, 320, 3, 1), conv(320, 320, 3, 1), conv(320, 1280, 1, 1)},
	{conv(1280, 512, 3, 2), conv(512, 512, 3, 1)},
}

// shape is a feature map's channels, height and width (batch excluded).
type shape struct{ c, h, w int64 }

func (s shape) dims() []onnxgraph.Dim { return onnxgraph.Dims(-1, s.c, s.h, s.w) }

// tensor holds one layer's weights and bias.
type tensor struct{ w, b []float32 }

// params holds every weight of the network, per stage: one tensor per layer
// (empty for pools) and the head.
type params struct {
	layers [][]tensor
	heads  []tensor
}

// newParams draws He-scaled normal weights (std √(2/fan_in), so activations
// keep their scale through the ReLUs) and zero biases; heads use std
// √(1/in). Each tensor has its own random stream, so a seed fixes every value.
func newParams(seed int64) *params {
	p := &params{}
	for i, st := range arch {
		var ts []tensor
		var last int64
		for j, l := range st {
			if l.pool > 0 {
				ts = append(ts, tensor{})
				continue
			}
			fanIn := l.cin * l.k * l.k
			w := normal(seed, uint64(i)<<8|uint64(j), l.cout*fanIn, math.Sqrt(2/float64(fanIn)))
			ts = append(ts, tensor{w: w, b: make([]float32, l.cout)})
			last = l.cout
		}
		p.layers = append(p.layers, ts)
		w := normal(seed, uint64(i)<<8|0xff, NumClasses*last, math.Sqrt(1/float64(last)))
		p.heads = append(p.heads, tensor{w: w, b: make([]float32, NumClasses)})
	}
	return p
}

// normal draws n values from N(0, std²) off the PCG stream (seed, stream).
func normal(seed int64, stream uint64, n int64, std float64) []float32 {
	rng := rand.New(rand.NewPCG(uint64(seed), stream))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * std)
	}
	return v
}

// emitStage appends stage i (backbone layers and head) to g, reading x of
// shape in. The last layer's ReLU is named features (fresh name when empty)
// and the head's output logits. It returns the features tensor, its shape
// and the FLOPs of the layers it emitted: 2·Cout·Cin·k·k·Hout·Wout per
// convolution, 2·in·out per dense layer; ReLU, pooling and bias adds are not
// counted.
func emitStage(g *onnxgraph.Graph, p *params, i int, x string, in shape, features, logits string) (string, shape, float64) {
	s, flops := in, 0.0
	for j, l := range arch[i] {
		if l.pool > 0 {
			x = g.MaxPool(x, l.pool, "")
			s = shape{s.c, s.h / l.pool, s.w / l.pool}
			continue
		}
		if l.cin != s.c {
			panic(fmt.Sprintf("replica: stage %d layer %d takes %d channels, gets %d", i, j, l.cin, s.c))
		}
		pad := l.k / 2
		out := shape{l.cout, (s.h+2*pad-l.k)/l.stride + 1, (s.w+2*pad-l.k)/l.stride + 1}
		flops += 2 * float64(l.cout*l.cin*l.k*l.k*out.h*out.w)
		t := p.layers[i][j]
		x = g.Conv(x, t.w, t.b, l.cout, l.cin, l.k, l.stride, pad, "")
		name := ""
		if j == len(arch[i])-1 {
			name = features
		}
		x = g.Relu(x, name)
		s = out
	}
	h := g.Flatten(g.GlobalAveragePool(x, ""), "")
	g.Dense(h, p.heads[i].w, p.heads[i].b, NumClasses, s.c, logits)
	flops += 2 * float64(s.c*NumClasses)
	return x, s, flops
}

// stageFile names stage i's file.
func stageFile(i int) string { return fmt.Sprintf("stage%d.onnx", i) }

// Generate writes the "resnet50-nano" cost replica into dir (created if
// needed): stage0.onnx … stage3.onnx, the monolithic full.onnx and
// manifest.json, and returns the manifest. Stage 0 takes "input" float32
// [N, 3, 224, 224]; stage i > 0 takes the previous stage's "features" as
// "features_in"; every stage outputs "logits" [N, 1000] and all but the last
// also "features". The manifest's exit FLOPs are counted from the layers
// emitted, cumulative over every stage file run up to that exit (earlier
// heads included); accuracy and energy_mj are the reference's published
// values (see Reference). The files take about 120 MB.
func Generate(dir string, opts Options) (*models.Manifest, error) {
	progress := opts.Progress
	if progress == nil {
		progress = func(string) {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ref := Reference()
	progress(fmt.Sprintf("drawing weights (seed %d)", opts.Seed))
	p := newParams(opts.Seed)

	m := &models.Manifest{
		Name:    Name,
		Version: "1",
		Kind:    models.KindCostReplica,
		Description: fmt.Sprintf("Cost replica of the reference Dělen setup (ResNet-50 with 4 exits on a Jetson Nano): "+
			"ResNet-like stages with the reference per-exit FLOPs and random weights (seed %d). "+
			"Its logits mean nothing; accuracy and energy_mj are the reference profile's published values.", opts.Seed),
		Input: models.InputSpec{Name: InputName, DType: "float32", Shape: []int64{3, ImageSize, ImageSize}, Scale: 1},
	}
	for c := range NumClasses {
		m.Classes = append(m.Classes, fmt.Sprintf("class-%d", c))
	}

	in, inName, cum := shape{3, ImageSize, ImageSize}, InputName, 0.0
	for i := range arch {
		last := i == len(arch)-1
		g := onnxgraph.New(fmt.Sprintf("%s-stage%d", Name, i))
		g.SetMetadata("delen.model", Name)
		g.SetMetadata("delen.kind", models.KindCostReplica)
		g.SetMetadata("delen.stage", fmt.Sprint(i))
		x := g.Input(inName, in.dims())
		features := FeaturesName
		if last {
			features = ""
		}
		_, out, flops := emitStage(g, p, i, x, in, features, LogitsName)
		if !last {
			g.Output(FeaturesName, out.dims())
		}
		g.Output(LogitsName, onnxgraph.Dims(-1, NumClasses))
		if err := g.WriteFile(filepath.Join(dir, stageFile(i))); err != nil {
			return nil, err
		}
		cum += flops
		m.Stages = append(m.Stages, models.StageSpec{
			File:    stageFile(i),
			Input:   inName,
			Outputs: models.StageOutputs{Features: features, Logits: LogitsName},
		})
		m.Exits = append(m.Exits, models.ExitSpec{Accuracy: ref[i].Accuracy, FLOPs: cum, EnergyMJ: ref[i].EnergyMJ})
		progress(fmt.Sprintf("%s: %.3f GFLOPs cumulative (reference %.2f)", stageFile(i), cum/1e9, ref[i].FLOPs/1e9))
		in, inName = out, FeaturesInName
	}

	g := onnxgraph.New(Name + "-full")
	g.SetMetadata("delen.model", Name)
	g.SetMetadata("delen.kind", models.KindCostReplica)
	x, s, total := g.Input(InputName, onnxgraph.Dims(-1, 3, ImageSize, ImageSize)), shape{3, ImageSize, ImageSize}, 0.0
	mono := &models.MonolithicSpec{File: MonolithicFile, Input: InputName}
	for i := range arch {
		name := fmt.Sprintf(monolithicLogits, i+1)
		var flops float64
		x, s, flops = emitStage(g, p, i, x, s, fmt.Sprintf("features_%d", i+1), name)
		total += flops
		g.Output(name, onnxgraph.Dims(-1, NumClasses))
		mono.Outputs = append(mono.Outputs, name)
	}
	if total != cum {
		panic(fmt.Sprintf("replica: monolithic FLOPs %v differ from the stages' %v", total, cum))
	}
	if err := g.WriteFile(filepath.Join(dir, MonolithicFile)); err != nil {
		return nil, err
	}
	m.Monolithic = mono
	progress(fmt.Sprintf("%s: %.3f GFLOPs", MonolithicFile, total/1e9))

	if err := models.WriteManifest(dir, m); err != nil {
		return nil, err
	}
	progress(fmt.Sprintf("wrote %s", filepath.Join(dir, models.ManifestFile)))
	return m, nil
}
