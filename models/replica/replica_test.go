package replica

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/delen-edge/delen/models"
	ort "github.com/yalue/onnxruntime_go"
)

// run runs one ONNX file on float32 inputs and returns every output's data
// and shape (ORT allocates the outputs).
func run(t *testing.T, path string, inNames, outNames []string, ins []*ort.Tensor[float32]) ([][]float32, []ort.Shape) {
	t.Helper()
	s, err := ort.NewDynamicAdvancedSession(path, inNames, outNames, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer s.Destroy()
	inputs := make([]ort.Value, len(ins))
	for i, in := range ins {
		inputs[i] = in
	}
	outputs := make([]ort.Value, len(outNames))
	if err := s.Run(inputs, outputs); err != nil {
		t.Fatalf("%s: run: %v", path, err)
	}
	data := make([][]float32, len(outputs))
	shapes := make([]ort.Shape, len(outputs))
	for i, o := range outputs {
		ft, ok := o.(*ort.Tensor[float32])
		if !ok {
			t.Fatalf("%s: output %s is %T, want float32 tensor", path, outNames[i], o)
		}
		data[i] = slices.Clone(ft.GetData())
		shapes[i] = o.GetShape().Clone()
		o.Destroy()
	}
	return data, shapes
}

func TestGenerate(t *testing.T) {
	if err := models.InitRuntime(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), Name)
	start := time.Now()
	m, err := Generate(dir, Options{Seed: 1, Progress: func(msg string) { t.Log(msg) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated in %v", time.Since(start))

	t.Run("manifest", func(t *testing.T) {
		got, err := models.ReadManifest(os.DirFS(dir), ".")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("manifest on disk differs from the returned one:\n%+v\n%+v", got, m)
		}
		if m.Name != Name || m.Version != "1" || m.Kind != models.KindCostReplica || m.Description == "" {
			t.Errorf("name/version/kind/description = %q/%q/%q/%q", m.Name, m.Version, m.Kind, m.Description)
		}
		if len(m.Classes) != NumClasses || m.Classes[0] != "class-0" || m.Classes[999] != "class-999" {
			t.Errorf("classes: %d, first %q", len(m.Classes), m.Classes[0])
		}
		want := models.InputSpec{Name: "input", DType: "float32", Shape: []int64{3, 224, 224}, Scale: 1}
		if !reflect.DeepEqual(m.Input, want) {
			t.Errorf("input = %+v, want %+v", m.Input, want)
		}
		ref := Reference()
		if len(m.Exits) != len(ref) || len(m.Stages) != len(ref) {
			t.Fatalf("%d exits, %d stages, want %d", len(m.Exits), len(m.Stages), len(ref))
		}
		for i, e := range m.Exits {
			if rel := math.Abs(e.FLOPs-ref[i].FLOPs) / ref[i].FLOPs; rel > 0.03 {
				t.Errorf("exit %d: %.4g FLOPs, reference %.4g (off by %.2f%%)", i+1, e.FLOPs, ref[i].FLOPs, 100*rel)
			}
			if i > 0 && e.FLOPs <= m.Exits[i-1].FLOPs {
				t.Errorf("exit %d: FLOPs %.4g not above exit %d's %.4g", i+1, e.FLOPs, i, m.Exits[i-1].FLOPs)
			}
			if e.Accuracy != ref[i].Accuracy || e.EnergyMJ != ref[i].EnergyMJ {
				t.Errorf("exit %d: accuracy %v energy %v, want the published %v %v", i+1, e.Accuracy, e.EnergyMJ, ref[i].Accuracy, ref[i].EnergyMJ)
			}
			t.Logf("exit %d: %.4g FLOPs (reference %.4g, %+.2f%%)", i+1, e.FLOPs, ref[i].FLOPs, 100*(e.FLOPs-ref[i].FLOPs)/ref[i].FLOPs)
		}
		if m.Monolithic == nil || m.Monolithic.File != MonolithicFile ||
			!slices.Equal(m.Monolithic.Outputs, []string{"logits_1", "logits_2", "logits_3", "logits_4"}) {
			t.Errorf("monolithic = %+v", m.Monolithic)
		}
	})

	t.Run("files", func(t *testing.T) {
		var prevFeatures ort.Shape
		for i, st := range m.Stages {
			p := filepath.Join(dir, st.File)
			ins, outs, err := ort.GetInputOutputInfo(p)
			if err != nil {
				t.Fatalf("%s: %v", st.File, err)
			}
			if len(ins) != 1 || ins[0].Name != st.Input || ins[0].DataType != ort.TensorElementDataTypeFloat {
				t.Fatalf("%s: inputs %v, want one float32 %q", st.File, ins, st.Input)
			}
			if i == 0 {
				if want := ort.NewShape(-1, 3, 224, 224); !ins[0].Dimensions.Equals(want) {
					t.Errorf("%s: input shape %v, want %v", st.File, ins[0].Dimensions, want)
				}
			} else if !ins[0].Dimensions.Equals(prevFeatures) {
				t.Errorf("%s: input shape %v, previous stage's features %v", st.File, ins[0].Dimensions, prevFeatures)
			}
			wantOuts := []string{st.Outputs.Features, st.Outputs.Logits}
			if st.Outputs.Features == "" {
				wantOuts = wantOuts[1:]
			}
			var names []string
			for _, o := range outs {
				names = append(names, o.Name)
				switch o.Name {
				case st.Outputs.Features:
					prevFeatures = o.Dimensions
				case st.Outputs.Logits:
					if want := ort.NewShape(-1, NumClasses); !o.Dimensions.Equals(want) {
						t.Errorf("%s: logits shape %v, want %v", st.File, o.Dimensions, want)
					}
				}
			}
			if !slices.Equal(names, wantOuts) {
				t.Errorf("%s: outputs %v, want %v", st.File, names, wantOuts)
			}
			t.Logf("%s: %v -> %v", st.File, ins[0].Dimensions, outs)
		}
		ins, outs, err := ort.GetInputOutputInfo(filepath.Join(dir, MonolithicFile))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, o := range outs {
			names = append(names, o.Name)
		}
		if len(ins) != 1 || ins[0].Name != m.Monolithic.Input || !slices.Equal(names, m.Monolithic.Outputs) {
			t.Errorf("%s: inputs %v outputs %v, manifest %+v", MonolithicFile, ins, names, m.Monolithic)
		}
	})

	t.Run("run", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(7, 7))
		img := make([]float32, 3*224*224)
		for i := range img {
			img[i] = float32(rng.NormFloat64())
		}
		x, err := ort.NewTensor(ort.NewShape(1, 3, 224, 224), img)
		if err != nil {
			t.Fatal(err)
		}
		defer x.Destroy()

		// The stages, chained.
		var stageLogits [][]float32
		in := x
		for _, st := range m.Stages {
			outNames := []string{st.Outputs.Logits}
			if st.Outputs.Features != "" {
				outNames = append(outNames, st.Outputs.Features)
			}
			start := time.Now()
			data, shapes := run(t, filepath.Join(dir, st.File), []string{st.Input}, outNames, []*ort.Tensor[float32]{in})
			t.Logf("%s: %v (session + run)", st.File, time.Since(start))
			if !shapes[0].Equals(ort.NewShape(1, NumClasses)) {
				t.Fatalf("%s: logits shape %v", st.File, shapes[0])
			}
			for _, v := range data[0] {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("%s: logits not finite: %v", st.File, v)
				}
			}
			t.Logf("%s: logits[:4] = %v", st.File, data[0][:4])
			stageLogits = append(stageLogits, data[0])
			if len(data) > 1 {
				next, err := ort.NewTensor(shapes[1], data[1])
				if err != nil {
					t.Fatal(err)
				}
				defer next.Destroy()
				in = next
			}
		}

		// The monolithic file gives the same logits at every exit.
		start := time.Now()
		full, _ := run(t, filepath.Join(dir, MonolithicFile), []string{m.Monolithic.Input}, m.Monolithic.Outputs, []*ort.Tensor[float32]{x})
		t.Logf("%s: %v (session + run)", MonolithicFile, time.Since(start))
		for k := range full {
			for j, v := range full[k] {
				if w := stageLogits[k][j]; math.Abs(float64(v-w)) > 1e-4*math.Max(1, math.Abs(float64(w))) {
					t.Fatalf("%s logits_%d[%d] = %v, stages give %v", MonolithicFile, k+1, j, v, w)
				}
			}
		}
	})
}

func TestWeightsDeterministic(t *testing.T) {
	a, b := normal(3, 5, 10000, 0.5), normal(3, 5, 10000, 0.5)
	if !slices.Equal(a, b) {
		t.Error("same seed and stream, different weights")
	}
	if slices.Equal(a, normal(4, 5, 10000, 0.5)) || slices.Equal(a, normal(3, 6, 10000, 0.5)) {
		t.Error("different seed or stream, same weights")
	}
	var sum, sq float64
	for _, v := range a {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	mean, std := sum/float64(len(a)), math.Sqrt(sq/float64(len(a)))
	if math.Abs(mean) > 0.02 || math.Abs(std-0.5) > 0.02 {
		t.Errorf("mean %v std %v, want 0 and 0.5", mean, std)
	}
}
