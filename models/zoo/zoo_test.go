package zoo_test

import (
	"errors"
	"math"
	"path/filepath"
	"testing"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/models/modeltest"
	"github.com/delen-edge/delen/models/train"
	"github.com/delen-edge/delen/models/zoo"
)

// TestMnistEEAccuracy checks the committed model meets its targets.
func TestMnistEEAccuracy(t *testing.T) {
	e, err := zoo.New().Find("mnist-ee")
	if err != nil {
		t.Fatal(err)
	}
	ex := e.Manifest.Exits
	if len(ex) < 3 {
		t.Fatalf("%d exits, want at least 3", len(ex))
	}
	if ex[0].Accuracy < 0.90 {
		t.Errorf("exit 1 accuracy %.4f < 0.90", ex[0].Accuracy)
	}
	if last := ex[len(ex)-1]; last.Accuracy < 0.985 {
		t.Errorf("last exit accuracy %.4f < 0.985", last.Accuracy)
	}
	for i := 1; i < len(ex); i++ {
		if ex[i].Accuracy < ex[i-1].Accuracy {
			t.Errorf("accuracy falls from exit %d to %d", i, i+1)
		}
		if ex[i].FLOPs <= ex[i-1].FLOPs {
			t.Errorf("flops do not grow from exit %d to %d", i, i+1)
		}
	}
	if ex[len(ex)-1].FLOPs < 4*ex[0].FLOPs {
		t.Errorf("last exit costs %.0f FLOPs, less than 4× exit 1 (%.0f)", ex[len(ex)-1].FLOPs, ex[0].FLOPs)
	}
}

// TestStagedEqualsMonolithicAndTrainer runs 100 test images three ways:
// stage by stage, through the monolithic file, and through the trainer's
// own forward pass; every exit's logits agree within 1e-4.
func TestStagedEqualsMonolithicAndTrainer(t *testing.T) {
	m, err := zoo.New().Load("mnist-ee", models.LoadOptions{Monolithic: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	net, err := train.LoadNet("mnist-ee")
	if err != nil {
		t.Fatal(err)
	}
	set, err := mnist.Test()
	if err != nil {
		t.Fatal(err)
	}
	mono, err := m.NewMonolithicRun(1)
	if err != nil {
		t.Fatal(err)
	}
	defer mono.Close()
	st, err := m.NewState(1)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Release()
	var worst float64
	for i := 0; i < 100; i++ {
		x := set.Float(i)
		copy(st.Input(), x)
		copy(mono.Input(), x)
		all, err := mono.Run()
		if err != nil {
			t.Fatal(err)
		}
		ref := net.Forward(x)
		for k := 0; k < m.Exits(); k++ {
			staged, err := st.RunStage()
			if err != nil {
				t.Fatal(err)
			}
			for j := range staged {
				for name, other := range map[string]float32{"monolithic": all[k][j], "trainer": ref[k][j]} {
					d := math.Abs(float64(staged[j] - other))
					worst = max(worst, d)
					if d > 1e-4 {
						t.Fatalf("image %d exit %d logit %d: staged %v, %s %v", i, k+1, j, staged[j], name, other)
					}
				}
			}
		}
		// Reuse the state for the next image.
		st.Release()
		if st, err = m.NewState(1); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("largest difference over 100 images × %d exits: %.2g", m.Exits(), worst)
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
