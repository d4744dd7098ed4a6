package refimport

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/onnxgraph"
	ort "github.com/yalue/onnxruntime_go"
)

// stageDef is one tiny fixture stage: a 3×3 conv (stride) from in to
// featC channels, ReLU, then GlobalAveragePool + Dense to classes.
type stageDef struct {
	input    string
	in       [3]int64 // C, H, W
	featC    int64
	stride   int64
	features string // output name of the features; "" for none
	output   string
	classes  int64
}

// out is the shape of the stage's features.
func (s stageDef) out() [3]int64 {
	h := (s.in[1]+2-3)/s.stride + 1
	w := (s.in[2]+2-3)/s.stride + 1
	return [3]int64{s.featC, h, w}
}

func (s stageDef) write(t *testing.T, path string) {
	t.Helper()
	g := onnxgraph.New(filepath.Base(path))
	x := g.Input(s.input, onnxgraph.Dims(-1, s.in[0], s.in[1], s.in[2]))
	w := make([]float32, s.featC*s.in[0]*9)
	for i := range w {
		w[i] = float32(i%7-3) / 10
	}
	b := make([]float32, s.featC)
	for i := range b {
		b[i] = 0.1
	}
	name := s.features
	if name == "" {
		name = "hidden"
	}
	f := g.Relu(g.Conv(x, w, b, s.featC, s.in[0], 3, s.stride, 1, ""), name)
	o := s.out()
	if s.features != "" {
		g.Output(s.features, onnxgraph.Dims(-1, o[0], o[1], o[2]))
	}
	h := g.Flatten(g.GlobalAveragePool(f, ""), "")
	dw := make([]float32, s.classes*s.featC)
	for i := range dw {
		dw[i] = float32(i%5-2) / 4
	}
	g.Dense(h, dw, make([]float32, s.classes), s.classes, s.featC, s.output)
	g.Output(s.output, onnxgraph.Dims(-1, s.classes))
	if err := g.WriteFile(path); err != nil {
		t.Fatal(err)
	}
}

// fixture is a reference export: stage files by name, then other files
// (written after, so they can overwrite a stage with garbage).
type fixture struct {
	stages map[string]stageDef
	files  map[string]string
}

const goodProfile = `[
  {"accuracy": 0.43, "flops": 0.81, "energy": 45.99},
  {"accuracy": 0.68, "flops": 1.86, "energy": 99.31},
  {"accuracy": 0.77, "flops": 3.33, "energy": 176.75}
]`

// base is a valid 3-stage export "tiny" on a [N, 1, 8, 8] input with 5 classes.
func base() fixture {
	s0 := stageDef{input: "input", in: [3]int64{1, 8, 8}, featC: 4, stride: 1, features: "features", output: "output", classes: 5}
	s1 := stageDef{input: "input", in: s0.out(), featC: 6, stride: 2, features: "features", output: "output", classes: 5}
	s2 := stageDef{input: "input", in: s1.out(), featC: 8, stride: 2, output: "output", classes: 5}
	return fixture{
		stages: map[string]stageDef{"tiny_net00.onnx": s0, "tiny_net01.onnx": s1, "tiny_net02.onnx": s2},
		files:  map[string]string{"tiny_profile.json": goodProfile},
	}
}

func (f fixture) write(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, s := range f.stages {
		s.write(t, filepath.Join(dir, name))
	}
	for name, body := range f.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestMain(m *testing.M) {
	if err := models.InitRuntime(); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

func TestImport(t *testing.T) {
	src := base().write(t)
	dst := filepath.Join(t.TempDir(), "out", "tiny-ref")
	m, err := Import(src, "tiny-ref", dst)
	if err != nil {
		t.Fatal(err)
	}
	got, err := models.ReadManifest(os.DirFS(dst), ".")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("manifest on disk differs from the returned one:\n%+v\n%+v", got, m)
	}
	if m.Name != "tiny-ref" || m.Version != "1" || m.Kind != models.KindImported || m.Description == "" {
		t.Errorf("name/version/kind/description = %q/%q/%q/%q", m.Name, m.Version, m.Kind, m.Description)
	}
	if want := (models.InputSpec{Name: "input", DType: "float32", Shape: []int64{1, 8, 8}, Scale: 1}); !reflect.DeepEqual(m.Input, want) {
		t.Errorf("input = %+v, want %+v", m.Input, want)
	}
	if want := []string{"0", "1", "2", "3", "4"}; !slices.Equal(m.Classes, want) {
		t.Errorf("classes = %v, want %v", m.Classes, want)
	}
	wantStages := []models.StageSpec{
		{File: "stage00.onnx", Input: "input", Outputs: models.StageOutputs{Features: "features", Logits: "output"}},
		{File: "stage01.onnx", Input: "input", Outputs: models.StageOutputs{Features: "features", Logits: "output"}},
		{File: "stage02.onnx", Input: "input", Outputs: models.StageOutputs{Logits: "output"}},
	}
	if !reflect.DeepEqual(m.Stages, wantStages) {
		t.Errorf("stages = %+v, want %+v", m.Stages, wantStages)
	}
	wantExits := []models.ExitSpec{{Accuracy: 0.43, FLOPs: 0.81e9, EnergyMJ: 45.99}, {Accuracy: 0.68, FLOPs: 1.86e9, EnergyMJ: 99.31}, {Accuracy: 0.77, FLOPs: 3.33e9, EnergyMJ: 176.75}}
	for i, e := range m.Exits {
		w := wantExits[i]
		if e.Accuracy != w.Accuracy || math.Abs(e.FLOPs-w.FLOPs) > 1 || e.EnergyMJ != w.EnergyMJ {
			t.Errorf("exit %d = %+v, want %+v", i+1, e, w)
		}
	}
	if m.Monolithic != nil {
		t.Errorf("monolithic = %+v, want none", m.Monolithic)
	}

	// The copied files load and run chained: features of stage i feed stage i+1.
	x, err := ort.NewTensor(ort.NewShape(2, 1, 8, 8), make([]float32, 2*64))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Destroy()
	var in ort.Value = x
	for i, st := range m.Stages {
		p := filepath.Join(dst, st.File)
		ins, outs, err := ort.GetInputOutputInfo(p)
		if err != nil {
			t.Fatalf("%s: %v", st.File, err)
		}
		if ins[0].Name != st.Input {
			t.Errorf("%s: input %q, manifest %q", st.File, ins[0].Name, st.Input)
		}
		outNames := []string{st.Outputs.Logits}
		if st.Outputs.Features != "" {
			outNames = append(outNames, st.Outputs.Features)
		}
		if len(outs) != len(outNames) {
			t.Errorf("%s: outputs %v, want %v", st.File, outs, outNames)
		}
		s, err := ort.NewDynamicAdvancedSession(p, []string{st.Input}, outNames, nil)
		if err != nil {
			t.Fatalf("%s: %v", st.File, err)
		}
		res := make([]ort.Value, len(outNames))
		if err := s.Run([]ort.Value{in}, res); err != nil {
			t.Fatalf("%s: run: %v", st.File, err)
		}
		s.Destroy()
		if sh := res[0].GetShape(); !sh.Equals(ort.NewShape(2, int64(len(m.Classes)))) {
			t.Errorf("%s: logits shape %v", st.File, sh)
		}
		res[0].Destroy()
		if i > 0 {
			in.Destroy()
		}
		if len(res) > 1 {
			in = res[1]
		}
	}
}

func TestImportLenientProfile(t *testing.T) {
	f := base()
	f.files["tiny_profile.json"] = `[
	  {"Accuracy": "0.43", "FLOPs": "0.81", "Energy": 45.99, "note": "stem"},
	  {"ACCURACY": 0.68, "Flops": 1.86, "energy": " 99.31 "},
	  {"accuracy": 0.77, "flops": 3.33}
	]`
	src := f.write(t)
	m, err := Import(src, "", filepath.Join(t.TempDir(), "m"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "tiny" {
		t.Errorf("name = %q, want the export's prefix %q", m.Name, "tiny")
	}
	want := []models.ExitSpec{{Accuracy: 0.43, FLOPs: 0.81e9, EnergyMJ: 45.99}, {Accuracy: 0.68, FLOPs: 1.86e9, EnergyMJ: 99.31}, {Accuracy: 0.77, FLOPs: 3.33e9, EnergyMJ: 0}}
	for i, e := range m.Exits {
		w := want[i]
		if e.Accuracy != w.Accuracy || math.Abs(e.FLOPs-w.FLOPs) > 1 || e.EnergyMJ != w.EnergyMJ {
			t.Errorf("exit %d = %+v, want %+v", i+1, e, w)
		}
	}
}

func TestImportErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(f *fixture)
		as     string   // name passed to Import
		want   []string // substrings of the error
	}{
		{"no stage files", func(f *fixture) { f.stages = nil }, "", []string{"no stage files", "_net00.onnx"}},
		{"two models", func(f *fixture) { f.stages["other_net00.onnx"] = f.stages["tiny_net00.onnx"] },
			"", []string{"several models", "other, tiny"}},
		{"missing profile", func(f *fixture) { delete(f.files, "tiny_profile.json") },
			"", []string{"tiny_profile.json", "missing profile"}},
		{"profile too short", func(f *fixture) {
			f.files["tiny_profile.json"] = `[{"accuracy": 0.4, "flops": 0.8}, {"accuracy": 0.6, "flops": 1.8}]`
		}, "", []string{"tiny_profile.json", "2 exits for 3 stages"}},
		{"profile too long", func(f *fixture) {
			f.files["tiny_profile.json"] = strings.Replace(goodProfile, "]", `, {"accuracy": 0.8, "flops": 4}]`, 1)
		}, "", []string{"tiny_profile.json", "4 exits for 3 stages"}},
		{"profile not a list", func(f *fixture) { f.files["tiny_profile.json"] = `{"accuracy": 0.4}` },
			"", []string{"tiny_profile.json", "JSON list"}},
		{"profile not a number", func(f *fixture) {
			f.files["tiny_profile.json"] = strings.Replace(goodProfile, `"accuracy": 0.68`, `"accuracy": "high"`, 1)
		}, "", []string{"tiny_profile.json", "exit 2", "accuracy", "want a number"}},
		{"profile without flops", func(f *fixture) {
			f.files["tiny_profile.json"] = strings.Replace(goodProfile, `"flops": 3.33,`, ``, 1)
		}, "", []string{"tiny_profile.json", "exit 3", "no flops"}},
		{"profile accuracy in percent", func(f *fixture) {
			f.files["tiny_profile.json"] = strings.Replace(goodProfile, `0.43`, `43`, 1)
		}, "", []string{"tiny_profile.json", "exit 1", "0..1"}},
		{"profile flops not cumulative", func(f *fixture) {
			f.files["tiny_profile.json"] = strings.Replace(goodProfile, `1.86`, `0.5`, 1)
		}, "", []string{"tiny_profile.json", "exit 2", "cumulative"}},
		{"stage numbers with a gap", func(f *fixture) {
			f.stages["tiny_net03.onnx"] = f.stages["tiny_net02.onnx"]
			delete(f.stages, "tiny_net02.onnx")
		}, "", []string{"tiny_net02.onnx", "missing", "not contiguous"}},
		{"stage numbers not from 00", func(f *fixture) {
			f.stages["tiny_net03.onnx"] = f.stages["tiny_net00.onnx"]
			delete(f.stages, "tiny_net00.onnx")
		}, "", []string{"tiny_net00.onnx", "missing"}},
		{"stage number twice", func(f *fixture) { f.stages["tiny_net1.onnx"] = f.stages["tiny_net01.onnx"] },
			"", []string{"tiny_net", "stage 1 also in"}},
		{"input misnamed", func(f *fixture) {
			s := f.stages["tiny_net01.onnx"]
			s.input = "x"
			f.stages["tiny_net01.onnx"] = s
		}, "", []string{"tiny_net01.onnx", `named "input"`, `"x"`}},
		{"features missing", func(f *fixture) {
			s := f.stages["tiny_net01.onnx"]
			s.features = "feats"
			f.stages["tiny_net01.onnx"] = s
		}, "", []string{"tiny_net01.onnx", `no output named "features"`}},
		{"output missing", func(f *fixture) {
			s := f.stages["tiny_net02.onnx"]
			s.output = "logits"
			f.stages["tiny_net02.onnx"] = s
		}, "", []string{"tiny_net02.onnx", `no output named "output"`, `"logits"`}},
		{"features do not chain", func(f *fixture) {
			s := f.stages["tiny_net01.onnx"]
			s.in = [3]int64{4, 6, 6}
			f.stages["tiny_net01.onnx"] = s
		}, "", []string{"tiny_net01.onnx", "does not take", "tiny_net00.onnx"}},
		{"classes differ", func(f *fixture) {
			s := f.stages["tiny_net00.onnx"]
			s.classes = 7
			f.stages["tiny_net00.onnx"] = s
		}, "", []string{"tiny_net01.onnx", "5 classes", "has 7"}},
		{"stage not ONNX", func(f *fixture) { f.files["tiny_net01.onnx"] = "not a model" },
			"", []string{"tiny_net01.onnx", "ONNX Runtime cannot read it"}},
		{"bad model name", func(*fixture) {}, "Tiny Model", []string{"bad manifest", "name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := base()
			tt.modify(&f)
			src := f.write(t)
			dst := filepath.Join(t.TempDir(), "out")
			_, err := Import(src, tt.as, dst)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tt.as == "" && !errors.Is(err, ErrBadExport) {
				t.Errorf("error %q does not wrap ErrBadExport", err)
			}
			if _, serr := os.Stat(dst); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("%s written despite the error", dst)
			}
		})
	}
}
