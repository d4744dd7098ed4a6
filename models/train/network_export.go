package train

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/onnxgraph"
)

// buildStage appends stage i of n to g, reading in; it names the stage's
// feature map features (unless empty) and its exit's logits logits.
func (n *Network) buildStage(g *onnxgraph.Graph, i int, in, features, logits string) (string, string) {
	st := n.stages[i]
	x := in
	convs := 0
	for li, l := range st.body {
		last := li == len(st.body)-1
		name := ""
		if last {
			name = features
		}
		if c := l.conv; c != nil {
			convs++
			x = g.Conv(x, c.W.W, c.B.W, int64(c.cout), int64(l.in.C), 3, 1, 1, fmt.Sprintf("s%d.conv%d", i, convs))
			x = g.Relu(x, name)
		} else {
			x = g.MaxPool(x, 2, name)
		}
	}
	if len(st.body) == 0 && features != "" {
		x = g.Identity(x, features)
	}
	f := x
	h := g.Flatten(f, "")
	for j, d := range st.head {
		h = g.Dense(h, d.W.W, d.B.W, int64(d.out), int64(d.in), fmt.Sprintf("s%d.head%d", i, j+1))
		if d.relu {
			h = g.Relu(h, "")
		}
	}
	return f, g.Identity(h, logits)
}

func dims(s Shape) []onnxgraph.Dim { return onnxgraph.Dims(-1, int64(s.C), int64(s.H), int64(s.W)) }

// ExportNetwork writes n into dir as stage0.onnx … (batch dimension
// symbolic), full.onnx and manifest.json, with ev's accuracies (and ev's
// split recorded for each).
func ExportNetwork(n *Network, dir string, ev Evaluation, info *models.TrainingInfo) (*models.Manifest, error) {
	if len(ev.Accuracy) != n.Exits() {
		return nil, fmt.Errorf("export: %d accuracies for %d exits", len(ev.Accuracy), n.Exits())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	a := n.Arch
	flops := n.FLOPs()
	m := &models.Manifest{
		Name: a.Name, Version: "1", Kind: models.KindTrained, Description: a.Description,
		Input:      models.InputSpec{Name: StageInput, DType: "float32", Shape: []int64{int64(a.Input.C), int64(a.Input.H), int64(a.Input.W)}, Scale: 1.0 / 255},
		Training:   info,
		Monolithic: &models.MonolithicSpec{File: MonolithicFile, Input: StageInput},
	}
	for c := 0; c < a.Classes; c++ {
		m.Classes = append(m.Classes, fmt.Sprint(c))
	}
	for i, st := range n.stages {
		g := onnxgraph.New(fmt.Sprintf("%s-stage%d", a.Name, i))
		in := g.Input(StageInput, dims(st.in))
		features := ""
		if i < n.Exits()-1 {
			features = StageFeatures
		}
		f, _ := n.buildStage(g, i, in, features, StageLogits)
		if features != "" {
			g.Output(f, dims(st.out))
		}
		g.Output(StageLogits, onnxgraph.Dims(-1, int64(a.Classes)))
		if err := g.WriteFile(filepath.Join(dir, stageFile(i))); err != nil {
			return nil, fmt.Errorf("write stage %d: %w", i, err)
		}
		m.Stages = append(m.Stages, models.StageSpec{File: stageFile(i), Input: StageInput,
			Outputs: models.StageOutputs{Features: features, Logits: StageLogits}})
		m.Exits = append(m.Exits, models.ExitSpec{Accuracy: ev.Accuracy[i], AccuracySplit: ev.Split, FLOPs: flops[i]})
	}
	g := onnxgraph.New(a.Name + "-full")
	x := g.Input(StageInput, dims(a.Input))
	for i := range n.stages {
		out := fmt.Sprintf("logits_%d", i+1)
		x, _ = n.buildStage(g, i, x, fmt.Sprintf("features_%d", i+1), out)
		g.Output(out, onnxgraph.Dims(-1, int64(a.Classes)))
		m.Monolithic.Outputs = append(m.Monolithic.Outputs, out)
	}
	if err := g.WriteFile(filepath.Join(dir, MonolithicFile)); err != nil {
		return nil, fmt.Errorf("write monolithic model: %w", err)
	}
	if err := models.WriteManifest(dir, m); err != nil {
		return nil, err
	}
	return m, nil
}

// LoadNetwork reads arch's weights back from the stage files in dir.
func LoadNetwork(arch Arch, dir string) (*Network, error) {
	n, err := NewNetwork(arch, 1)
	if err != nil {
		return nil, err
	}
	all := map[string][]float32{}
	for i := 0; i < n.Exits(); i++ {
		w, err := onnxgraph.ReadWeights(filepath.Join(dir, stageFile(i)))
		if err != nil {
			return nil, err
		}
		for k, v := range w {
			all[k] = v
		}
	}
	if err := n.SetWeights(all); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return n, nil
}
