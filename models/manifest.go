package models

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// ManifestFile is the name of the manifest in a model folder.
const ManifestFile = "manifest.json"

// Model kinds, recorded in Manifest.Kind.
const (
	KindTrained     = "trained"      // trained by our trainer; logits are meaningful
	KindImported    = "imported"     // converted from the reference implementation's export
	KindCostReplica = "cost-replica" // compute of a reference model, random weights: logits mean nothing
)

// Manifest describes a multi-exit model folder: its input, its stages (one
// ONNX file each) and what each exit delivers and costs.
type Manifest struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Kind        string `json:"kind,omitempty"`
	Description string `json:"description,omitempty"`
	// Input is what stage 0 takes.
	Input InputSpec `json:"input"`
	// Classes names the output classes, in logit order.
	Classes []string `json:"classes"`
	// Stages run in order; stage i feeds its features to stage i+1 and
	// produces exit i+1's logits.
	Stages []StageSpec `json:"stages"`
	// Exits has one entry per stage, in order (exit k is 1-based in the
	// wire protocol, Exits[k-1] here).
	Exits []ExitSpec `json:"exits"`
	// Monolithic, when present, names one ONNX file of the whole network
	// with every exit's logits as outputs: the baseline for benchmarks.
	Monolithic *MonolithicSpec `json:"monolithic,omitempty"`
	// Training records how a trained model was made.
	Training *TrainingInfo `json:"training,omitempty"`
}

// InputSpec describes the model input of one sample. Shape excludes the
// batch dimension: every stage file has a leading batch dimension.
// A uint8 input u becomes float32 ((u*Scale) - Mean[c]) / Std[c] per channel c.
type InputSpec struct {
	Name  string    `json:"name"`
	DType string    `json:"dtype"`
	Shape []int64   `json:"shape"`
	Scale float32   `json:"scale"`
	Mean  []float32 `json:"mean,omitempty"`
	Std   []float32 `json:"std,omitempty"`
}

// StageSpec is one stage file and its tensor names.
type StageSpec struct {
	File    string       `json:"file"`
	Input   string       `json:"input"`
	Outputs StageOutputs `json:"outputs"`
}

// StageOutputs names a stage's outputs; Features is empty for the last stage.
type StageOutputs struct {
	Features string `json:"features,omitempty"`
	Logits   string `json:"logits"`
}

// ExitSpec is what one exit delivers and costs, cumulative from the input
// through this exit's head.
type ExitSpec struct {
	// Accuracy is top-1 accuracy on held-out data (0..1).
	Accuracy float64 `json:"accuracy"`
	// AccuracySplit names the data split Accuracy was measured on
	// ("test" for the built-in models; Training.Splits describes it).
	AccuracySplit string `json:"accuracy_split,omitempty"`
	// FLOPs counts multiply and add separately, cumulative.
	FLOPs float64 `json:"flops"`
	// EnergyMJ is a reference energy (mJ), cumulative, when the model comes
	// with one; measured energy lives in the device profile instead.
	EnergyMJ float64 `json:"energy_mj,omitempty"`
}

// MonolithicSpec names the single-file form of the network.
type MonolithicSpec struct {
	File    string   `json:"file"`
	Input   string   `json:"input"`
	Outputs []string `json:"outputs"`
}

// TrainingInfo records how a trained model was produced.
type TrainingInfo struct {
	Command string  `json:"command"`
	Seed    int64   `json:"seed"`
	Epochs  int     `json:"epochs"`
	Dataset string  `json:"dataset"`
	Seconds float64 `json:"seconds"`
	// TrainSize is the number of images trained on (the "train" split).
	TrainSize int `json:"train_size,omitempty"`
	// TestSize is the number of held-out images the exits' accuracy was
	// measured on (the "test" split).
	TestSize int `json:"test_size"`
	// Splits describes each data split by name ("train", "calibration",
	// "test"): which images it holds and what they are used for.
	Splits map[string]string `json:"splits,omitempty"`
	// Trainer names the trainer and its arithmetic (e.g. "go" or
	// "openblas"), as results may differ in the last bits between them.
	Trainer string `json:"trainer,omitempty"`
}

// ErrBadManifest is wrapped by every manifest validation error.
var ErrBadManifest = errors.New("bad manifest")

var modelName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ReadManifest reads and validates dir/manifest.json from fsys.
func ReadManifest(fsys fs.FS, dir string) (*Manifest, error) {
	p := joinFS(dir, ManifestFile)
	b, err := fs.ReadFile(fsys, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", p, ErrBadManifest, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &m, nil
}

// Validate checks the manifest on its own (not the files it names).
func (m *Manifest) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadManifest, fmt.Sprintf(format, a...))
	}
	if !modelName.MatchString(m.Name) {
		return bad("name %q: want lower-case letters, digits, '.', '_' or '-', at most 63", m.Name)
	}
	if m.Version == "" {
		return bad("version is empty")
	}
	if m.Input.Name == "" {
		return bad("input.name is empty")
	}
	if m.Input.DType != "float32" && m.Input.DType != "uint8" {
		return bad("input.dtype %q: want float32 or uint8", m.Input.DType)
	}
	if len(m.Input.Shape) == 0 {
		return bad("input.shape is empty")
	}
	for _, d := range m.Input.Shape {
		if d <= 0 {
			return bad("input.shape %v: every dimension must be positive", m.Input.Shape)
		}
	}
	if m.Input.Scale == 0 {
		return bad("input.scale is 0")
	}
	if len(m.Input.Mean) != len(m.Input.Std) {
		return bad("input.mean has %d values, input.std %d", len(m.Input.Mean), len(m.Input.Std))
	}
	for _, s := range m.Input.Std {
		if s == 0 {
			return bad("input.std has a 0")
		}
	}
	if len(m.Classes) < 2 {
		return bad("classes: want at least 2, got %d", len(m.Classes))
	}
	if len(m.Stages) == 0 {
		return bad("no stages")
	}
	if len(m.Exits) != len(m.Stages) {
		return bad("%d exits for %d stages: want one exit per stage", len(m.Exits), len(m.Stages))
	}
	files := map[string]bool{}
	for i, s := range m.Stages {
		if s.File == "" || strings.Contains(s.File, "..") || strings.HasPrefix(s.File, "/") {
			return bad("stages[%d].file %q: want a file name inside the model folder", i, s.File)
		}
		if files[s.File] {
			return bad("stages[%d].file %q is used twice", i, s.File)
		}
		files[s.File] = true
		if s.Input == "" || s.Outputs.Logits == "" {
			return bad("stages[%d]: input and outputs.logits must be named", i)
		}
		last := i == len(m.Stages)-1
		if !last && s.Outputs.Features == "" {
			return bad("stages[%d]: outputs.features must be named (stage %d takes them)", i, i+1)
		}
	}
	for i, e := range m.Exits {
		if e.Accuracy < 0 || e.Accuracy > 1 || math.IsNaN(e.Accuracy) {
			return bad("exits[%d].accuracy %v: want 0..1", i, e.Accuracy)
		}
		if e.FLOPs < 0 || math.IsNaN(e.FLOPs) {
			return bad("exits[%d].flops %v: want ≥ 0", i, e.FLOPs)
		}
		if i > 0 && e.FLOPs < m.Exits[i-1].FLOPs {
			return bad("exits[%d].flops %v < exits[%d].flops %v: flops are cumulative", i, e.FLOPs, i-1, m.Exits[i-1].FLOPs)
		}
	}
	if mo := m.Monolithic; mo != nil {
		if mo.File == "" || mo.Input == "" || len(mo.Outputs) != len(m.Stages) {
			return bad("monolithic: want file, input and one output per exit")
		}
	}
	return nil
}

// SampleSize is the number of elements in one input sample.
func (m *Manifest) SampleSize() int {
	n := 1
	for _, d := range m.Input.Shape {
		n *= int(d)
	}
	return n
}

// ID is the model's identity for profiles: name@version.
func (m *Manifest) ID() string { return m.Name + "@" + m.Version }

func joinFS(dir, name string) string {
	if dir == "" || dir == "." {
		return name
	}
	return strings.TrimSuffix(dir, "/") + "/" + name
}

// WriteManifest validates m and writes it as dir/manifest.json.
func WriteManifest(dir string, m *Manifest) error {
	if err := m.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ManifestFile), append(b, '\n'), 0o644)
}

// Normalize converts uint8 input values into the model's float32 input:
// ((u × Scale) − Mean[c]) / Std[c] for channel c (the first dimension of
// Input.Shape). dst and src have one sample's (or a batch's) elements.
func (m *Manifest) Normalize(dst []float32, src []byte) {
	in := m.Input
	per := 1
	for _, d := range in.Shape[1:] {
		per *= int(d)
	}
	channels := int(in.Shape[0])
	dst = dst[:len(src)]
	for i, u := range src {
		v := float32(u) * in.Scale
		if len(in.Mean) > 0 {
			c := (i / per) % channels
			if c < len(in.Mean) {
				v = (v - in.Mean[c]) / in.Std[c]
			}
		}
		dst[i] = v
	}
}
