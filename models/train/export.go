package train

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/onnxgraph"
)

// ModelName is the name of the model this package trains.
const ModelName = "mnist-ee"

// Tensor names inside every stage file.
const (
	StageInput    = "input"
	StageFeatures = "features"
	StageLogits   = "logits"
	// MonolithicFile is the single-file form of the network.
	MonolithicFile = "full.onnx"
)

// stageFile is the file name of stage i.
func stageFile(i int) string { return fmt.Sprintf("stage%d.onnx", i) }

// feature shapes (without batch) at each stage boundary.
var stageInputShapes = [Exits][]int64{{1, side, side}, {c1, s1, s1}, {c2, s2, s2}}

// buildStage appends stage i to g, reading in, and returns the names of its
// features (empty for the last stage) and logits outputs.
func (n *Net) buildStage(g *onnxgraph.Graph, i int, in, features, logits string) (string, string) {
	switch i {
	case 0:
		x := g.Conv(in, n.Conv1W.W, n.Conv1B.W, c1, 1, 3, 1, 1, "conv1")
		x = g.Relu(x, "")
		f := g.MaxPool(x, 2, features)
		l := g.Dense(g.Flatten(f, ""), n.Head1W.W, n.Head1B.W, classes, feat1, "head1")
		return f, g.Identity(l, logits)
	case 1:
		x := g.Conv(in, n.Conv2W.W, n.Conv2B.W, c2, c1, 3, 1, 1, "conv2")
		x = g.Relu(x, "")
		f := g.MaxPool(x, 2, features)
		l := g.Dense(g.Flatten(f, ""), n.Head2W.W, n.Head2B.W, classes, feat2, "head2")
		return f, g.Identity(l, logits)
	default:
		x := g.Conv(in, n.Conv3W.W, n.Conv3B.W, c3, c2, 3, 1, 1, "conv3")
		x = g.Relu(x, "")
		h := g.Dense(g.Flatten(x, ""), n.FC3W.W, n.FC3B.W, hidden, flat3, "fc3")
		h = g.Relu(h, "")
		l := g.Dense(h, n.Head3W.W, n.Head3B.W, classes, hidden, "head3")
		return "", g.Identity(l, logits)
	}
}

// Export writes the network into dir as stage0.onnx … stage2.onnx (batch
// dimension symbolic), full.onnx and manifest.json, with ev's accuracies.
func Export(n *Net, dir string, ev Evaluation, info *models.TrainingInfo) (*models.Manifest, error) {
	if len(ev.Accuracy) != Exits {
		return nil, fmt.Errorf("export: %d accuracies for %d exits", len(ev.Accuracy), Exits)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	flops := FLOPs()
	m := &models.Manifest{
		Name:        ModelName,
		Version:     "1",
		Kind:        models.KindTrained,
		Description: "Multi-exit CNN for MNIST digits (3 exits), trained by `delen models train mnist-ee`.",
		Input:       models.InputSpec{Name: StageInput, DType: "float32", Shape: []int64{1, side, side}, Scale: 1.0 / 255},
		Training:    info,
		Monolithic:  &models.MonolithicSpec{File: MonolithicFile, Input: StageInput},
	}
	for c := 0; c < classes; c++ {
		m.Classes = append(m.Classes, fmt.Sprint(c))
	}
	for i := 0; i < Exits; i++ {
		g := onnxgraph.New(fmt.Sprintf("%s-stage%d", ModelName, i))
		in := g.Input(StageInput, onnxgraph.Dims(append([]int64{-1}, stageInputShapes[i]...)...))
		features := ""
		if i < Exits-1 {
			features = StageFeatures
		}
		f, _ := n.buildStage(g, i, in, features, StageLogits)
		if f != "" {
			g.Output(f, onnxgraph.Dims(append([]int64{-1}, stageInputShapes[i+1]...)...))
		}
		g.Output(StageLogits, onnxgraph.Dims(-1, classes))
		if err := g.WriteFile(filepath.Join(dir, stageFile(i))); err != nil {
			return nil, fmt.Errorf("write stage %d: %w", i, err)
		}
		m.Stages = append(m.Stages, models.StageSpec{File: stageFile(i), Input: StageInput,
			Outputs: models.StageOutputs{Features: features, Logits: StageLogits}})
		m.Exits = append(m.Exits, models.ExitSpec{Accuracy: ev.Accuracy[i], AccuracySplit: ev.Split, FLOPs: flops[i]})
	}
	g := onnxgraph.New(ModelName + "-full")
	x := g.Input(StageInput, onnxgraph.Dims(append([]int64{-1}, stageInputShapes[0]...)...))
	for i := 0; i < Exits; i++ {
		out := fmt.Sprintf("logits_%d", i+1)
		x, _ = n.buildStage(g, i, x, fmt.Sprintf("features_%d", i+1), out)
		g.Output(out, onnxgraph.Dims(-1, classes))
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

// LoadNet reads the network's weights back from the stage files in dir.
func LoadNet(dir string) (*Net, error) {
	all := map[string][]float32{}
	for i := 0; i < Exits; i++ {
		w, err := onnxgraph.ReadWeights(filepath.Join(dir, stageFile(i)))
		if err != nil {
			return nil, err
		}
		for k, v := range w {
			all[k] = v
		}
	}
	n := NewNet(1)
	if err := n.SetWeights(all); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return n, nil
}
