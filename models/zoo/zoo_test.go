package zoo_test

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/energy"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/models/modeltest"
	"github.com/delen-edge/delen/models/train"
	"github.com/delen-edge/delen/models/zoo"
)

// builtins are the built-in trained models with their targets
// (DESIGN.md, "Models") and the trainer's own forward pass.
var builtins = []struct {
	name string
	// minLast is the last exit's least test accuracy; minFirst exit 1's;
	// gap is by how much exit 1 must trail the last exit.
	minFirst, minLast, gap float64
	// minFLOPs is the least FLOPs at the last exit; ratio the least
	// last/first FLOPs ratio.
	minFLOPs, ratio float64
	images          int
	// subset, when set, re-measures accuracy on the first subset test
	// images only (the whole split takes too long for make test) and
	// compares with the trainer's forward pass on the same images.
	subset  int
	forward func(t *testing.T) func(x []float32) [][]float32
}{
	{name: train.ModelName, minFirst: 0.90, minLast: 0.985, ratio: 4, images: 100,
		forward: func(t *testing.T) func(x []float32) [][]float32 {
			net, err := train.LoadNet(train.ModelName)
			if err != nil {
				t.Fatal(err)
			}
			return func(x []float32) [][]float32 { l := net.Forward(x); return l[:] }
		}},
	{name: train.LargeName, minFirst: 0.90, minLast: 0.99, gap: 0.01, minFLOPs: 100e6, ratio: 6, images: 20, subset: 300,
		forward: func(t *testing.T) func(x []float32) [][]float32 {
			net, err := train.LoadNetwork(train.LargeArch(), train.LargeName)
			if err != nil {
				t.Fatal(err)
			}
			be := train.NewBackend()
			return func(x []float32) [][]float32 { return net.Forward(be, x) }
		}},
}

// TestBuiltinTargets checks each committed model meets its targets, on
// the test split, and that its manifest says which split each figure
// comes from.
func TestBuiltinTargets(t *testing.T) {
	for _, b := range builtins {
		t.Run(b.name, func(t *testing.T) {
			e, err := zoo.New().Find(b.name)
			if err != nil {
				t.Fatal(err)
			}
			ex := e.Manifest.Exits
			if len(ex) < 3 {
				t.Fatalf("%d exits, want at least 3", len(ex))
			}
			first, last := ex[0], ex[len(ex)-1]
			if first.Accuracy < b.minFirst {
				t.Errorf("exit 1 accuracy %.4f < %.3f", first.Accuracy, b.minFirst)
			}
			if last.Accuracy < b.minLast {
				t.Errorf("last exit accuracy %.4f < %.3f", last.Accuracy, b.minLast)
			}
			if first.Accuracy > last.Accuracy-b.gap {
				t.Errorf("exit 1 accuracy %.4f is not %.2f below the last exit's %.4f", first.Accuracy, b.gap, last.Accuracy)
			}
			if last.FLOPs < b.minFLOPs || last.FLOPs < b.ratio*first.FLOPs {
				t.Errorf("last exit %.4g FLOPs, exit 1 %.4g: want ≥ %.3g and ≥ %.0f× exit 1", last.FLOPs, first.FLOPs, b.minFLOPs, b.ratio)
			}
			for i := 1; i < len(ex); i++ {
				if ex[i].Accuracy < ex[i-1].Accuracy {
					t.Errorf("accuracy falls from exit %d to %d", i, i+1)
				}
				if ex[i].FLOPs <= ex[i-1].FLOPs {
					t.Errorf("flops do not grow from exit %d to %d", i, i+1)
				}
			}
			for i, x := range ex {
				if x.AccuracySplit != mnist.SplitTest {
					t.Errorf("exit %d accuracy is from split %q, want %q", i+1, x.AccuracySplit, mnist.SplitTest)
				}
			}
			tr := e.Manifest.Training
			if tr == nil || tr.TrainSize != mnist.TrainSize || tr.TestSize != mnist.TestSize ||
				tr.Splits[mnist.SplitTrain] == "" || tr.Splits[mnist.SplitCalibration] == "" || tr.Splits[mnist.SplitTest] == "" {
				t.Errorf("training record %+v does not describe the splits", tr)
			}
		})
	}
}

// TestManifestAccuracyIsTestSplit re-measures each exit's accuracy on the
// test split with ONNX Runtime: the manifest's figures are what the model
// scores on the held-out images (for mnist-ee-large on the first 300,
// against the trainer's forward pass on them).
func TestManifestAccuracyIsTestSplit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs up to 10,000 images per model")
	}
	for _, b := range builtins {
		t.Run(b.name, func(t *testing.T) {
			m, err := zoo.New().Load(b.name, models.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			data, split := zoo.TestData(m.Manifest)
			if split != mnist.SplitTest || data == nil || data.Len() != mnist.TestSize {
				t.Fatalf("test data: split %q", split)
			}
			want := make([]float64, m.Exits())
			for i, e := range m.Manifest.Exits {
				want[i] = e.Accuracy
			}
			if b.subset > 0 {
				set := data.(*mnist.Set).Slice(0, b.subset)
				data = set
				forward := b.forward(t)
				hits := make([]int, m.Exits())
				for i := 0; i < set.Len(); i++ {
					for k, l := range forward(set.Float(i)) {
						if top, _ := models.Top1(l); top == set.Label(i) {
							hits[k]++
						}
					}
				}
				for k, h := range hits {
					want[k] = float64(h) / float64(set.Len())
				}
			}
			meter, err := energy.New(energy.KindModel, "/", energy.Options{})
			if err != nil {
				t.Fatal(err)
			}
			p, err := models.Profile(context.Background(), m, meter, models.ProfileOptions{
				Runs: 1, Warmup: 1, Data: data, DataSplit: split})
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range p.Exits {
				if d := math.Abs(e.Accuracy - want[i]); d > 2.0/float64(data.Len()) {
					t.Errorf("exit %d: ONNX Runtime measures %.4f on %d test images, want %.4f", i+1, e.Accuracy, data.Len(), want[i])
				}
			}
		})
	}
}

// TestCalibrationDataIsCalibrationSplit checks what the profiler and the
// accuracy policy are handed: the calibration split, never the test split.
func TestCalibrationDataIsCalibrationSplit(t *testing.T) {
	e, err := zoo.New().Find(train.ModelName)
	if err != nil {
		t.Fatal(err)
	}
	data, split := zoo.CalibrationData(e.Manifest)
	if split != mnist.SplitCalibration || data == nil || data.Len() != mnist.CalibrationSize {
		t.Fatalf("calibration data: split %q", split)
	}
	test, _ := zoo.TestData(e.Manifest)
	a, b := make([]float32, mnist.Pixels), make([]float32, mnist.Pixels)
	same := 0
	for i := 0; i < 100; i++ {
		data.Sample(i, a)
		test.Sample(i, b)
		if slices.Equal(a, b) {
			same++
		}
	}
	if same > 0 {
		t.Errorf("%d of the first 100 calibration images are the test split's", same)
	}
	rep, err := zoo.New().Find(train.ModelName)
	if err != nil {
		t.Fatal(err)
	}
	rep.Manifest.Kind = models.KindCostReplica
	if d, s := zoo.CalibrationData(rep.Manifest); d != nil || s != "" {
		t.Errorf("a cost replica gets calibration data %q", s)
	}
}

// TestStagedEqualsMonolithicAndTrainer runs test images three ways:
// stage by stage, through the monolithic file, and through the trainer's
// own forward pass; every exit's logits agree.
func TestStagedEqualsMonolithicAndTrainer(t *testing.T) {
	set, err := mnist.Test()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range builtins {
		t.Run(b.name, func(t *testing.T) {
			m, err := zoo.New().Load(b.name, models.LoadOptions{Monolithic: true})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			forward := b.forward(t)
			mono, err := m.NewMonolithicRun(1)
			if err != nil {
				t.Fatal(err)
			}
			defer mono.Close()
			var worst float64
			for i := 0; i < b.images; i++ {
				st, err := m.NewState(1)
				if err != nil {
					t.Fatal(err)
				}
				x := set.Float(i)
				copy(st.Input(), x)
				copy(mono.Input(), x)
				all, err := mono.Run()
				if err != nil {
					t.Fatal(err)
				}
				ref := forward(x)
				for k := 0; k < m.Exits(); k++ {
					staged, err := st.RunStage()
					if err != nil {
						t.Fatal(err)
					}
					for j := range staged {
						for name, other := range map[string]float32{"monolithic": all[k][j], "trainer": ref[k][j]} {
							d := math.Abs(float64(staged[j] - other))
							worst = max(worst, d)
							if d > 1e-4*(1+math.Abs(float64(other))) {
								t.Fatalf("image %d exit %d logit %d: staged %v, %s %v", i, k+1, j, staged[j], name, other)
							}
						}
					}
				}
				st.Release()
			}
			t.Logf("largest difference over %d images × %d exits: %.2g", b.images, m.Exits(), worst)
		})
	}
}

func TestFolderShadowsAndUnknown(t *testing.T) {
	dir := t.TempDir()
	if _, err := modeltest.Write(filepath.Join(dir, "tiny"), modeltest.Options{}); err != nil {
		t.Fatal(err)
	}
	z := zoo.New(dir)
	list, err := z.List()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, e := range list {
		names[e.Name] = e.Source
	}
	if names["mnist-ee"] != "builtin" || names["tiny"] != dir {
		t.Fatalf("zoo lists %v", names)
	}
	if _, err := z.Find("nope"); !errors.Is(err, zoo.ErrUnknownModel) {
		t.Fatalf("unknown model: %v", err)
	}
}

// TestOptInBuiltins checks that mnist-ee-large is embedded but listed (and
// so served) only when included, and found by name either way.
func TestOptInBuiltins(t *testing.T) {
	names := func(z *zoo.Zoo) []string {
		list, err := z.List()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range list {
			out = append(out, e.Name)
		}
		return out
	}
	if got := names(zoo.New()); !slices.Equal(got, []string{train.ModelName}) {
		t.Errorf("default zoo lists %v, want only %s", got, train.ModelName)
	}
	if !slices.Equal(zoo.OptIn(), []string{train.LargeName}) {
		t.Errorf("opt-in built-ins %v", zoo.OptIn())
	}
	z := zoo.New()
	z.Include = []string{train.LargeName}
	if got := names(z); !slices.Equal(got, []string{train.ModelName, train.LargeName}) {
		t.Errorf("zoo including %s lists %v", train.LargeName, got)
	}
	e, err := zoo.New().Find(train.LargeName)
	if err != nil || e.Source != "builtin" {
		t.Fatalf("find %s without including it: %v %v", train.LargeName, e.Source, err)
	}
}
