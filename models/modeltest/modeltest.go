// Package modeltest writes small, valid multi-exit model folders for tests
// of the packages that load and serve models.
package modeltest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/onnxgraph"
)

// Options shapes a tiny model. The zero value gives a 3-stage model on a
// 1×8×8 input with 4 classes and a symbolic batch dimension.
type Options struct {
	Name       string // default "tiny"
	Stages     int    // default 3
	Channels   int64  // feature channels per stage, default 2
	Side       int64  // input side, default 8
	Classes    int    // default 4
	FixedBatch bool   // batch dimension 1 instead of symbolic
	// PoolHead puts a global average pool before each exit's dense layer,
	// which keeps heads small for wide, large models.
	PoolHead bool
	Seed     uint64
}

func (o *Options) defaults() {
	if o.Name == "" {
		o.Name = "tiny"
	}
	if o.Stages == 0 {
		o.Stages = 3
	}
	if o.Channels == 0 {
		o.Channels = 2
	}
	if o.Side == 0 {
		o.Side = 8
	}
	if o.Classes == 0 {
		o.Classes = 4
	}
}

// Write creates a model folder in dir: stageN.onnx files (each a 3×3 conv
// with ReLU keeping the spatial size, and a dense exit head) and a manifest.
func Write(dir string, o Options) (*models.Manifest, error) {
	o.defaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(o.Seed, 1))
	rnd := func(n int64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.3)
		}
		return v
	}
	batch := int64(-1)
	if o.FixedBatch {
		batch = 1
	}
	m := &models.Manifest{
		Name: o.Name, Version: "1", Kind: models.KindTrained,
		Input: models.InputSpec{Name: "input", DType: "float32", Shape: []int64{1, o.Side, o.Side}, Scale: 1},
	}
	for c := 0; c < o.Classes; c++ {
		m.Classes = append(m.Classes, fmt.Sprint(c))
	}
	cin := int64(1)
	flops := 0.0
	for i := 0; i < o.Stages; i++ {
		g := onnxgraph.New(fmt.Sprintf("%s-stage%d", o.Name, i))
		in := g.Input("input", onnxgraph.Dims(batch, cin, o.Side, o.Side))
		x := g.Conv(in, rnd(o.Channels*cin*9), rnd(o.Channels), o.Channels, cin, 3, 1, 1, "")
		last := i == o.Stages-1
		feat := ""
		if !last {
			feat = "features"
		}
		x = g.Relu(x, feat)
		flat := o.Channels * o.Side * o.Side
		h := x
		if o.PoolHead {
			h = g.GlobalAveragePool(x, "")
			flat = o.Channels
		}
		g.Dense(g.Flatten(h, ""), rnd(int64(o.Classes)*flat), rnd(int64(o.Classes)), int64(o.Classes), flat, "logits")
		if !last {
			g.Output("features", onnxgraph.Dims(batch, o.Channels, o.Side, o.Side))
		}
		g.Output("logits", onnxgraph.Dims(batch, int64(o.Classes)))
		file := fmt.Sprintf("stage%d.onnx", i)
		if err := g.WriteFile(filepath.Join(dir, file)); err != nil {
			return nil, err
		}
		flops += 2*float64(o.Channels*cin*9*o.Side*o.Side) + 2*float64(flat)*float64(o.Classes)
		m.Stages = append(m.Stages, models.StageSpec{File: file, Input: "input",
			Outputs: models.StageOutputs{Features: feat, Logits: "logits"}})
		m.Exits = append(m.Exits, models.ExitSpec{Accuracy: 0.5 + 0.1*float64(i), FLOPs: flops})
		cin = o.Channels
	}
	if err := models.WriteManifest(dir, m); err != nil {
		return nil, err
	}
	return m, nil
}
