package train

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/mnist"
)

// tinyArch is a small three-stage network on a 1×6×6 input that still
// has every kind of layer: convs, a pool, an empty body, hidden dense layers.
func tinyArch() Arch {
	return Arch{Name: "tiny", Input: Shape{1, 6, 6}, Classes: 3, Stages: []StageArch{
		{Body: []Op{Conv(3), Pool()}, Head: []int{5}},
		{Body: []Op{Conv(4)}},
		{Body: nil, Head: []int{6, 4}},
	}}
}

// batchLoss is the batch mean of Σ_k CE_k, by the forward pass alone.
func batchLoss(n *Network, be *Backend, xs [][]float32, labels []int) float64 {
	w := n.newWork(len(xs), false)
	for j, x := range xs {
		w.setInput(n.Arch.Input, j, x)
	}
	n.forward(be, w)
	var l float64
	c := n.Arch.Classes
	dl := make([]float32, c)
	for k := range w.logits {
		for j := range xs {
			loss, _ := softmaxCE(w.logits[k][j*c:(j+1)*c], labels[j], 1, dl)
			l += loss
		}
	}
	return l / float64(len(xs))
}

// TestNetworkGradients checks the batch backward pass against central
// finite differences on a few coordinates of every parameter, on both
// backends.
func TestNetworkGradients(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			n, err := NewNetwork(tinyArch(), 5)
			if err != nil {
				t.Fatal(err)
			}
			// Non-zero biases keep pre-activations off ReLU's kink.
			for i, p := range n.Params() {
				if len(p.Shape) == 1 {
					for j := range p.W {
						p.W[j] = 0.05 + 0.02*float32((i+j)%5)
					}
				}
			}
			rng := rand.New(rand.NewPCG(9, 9))
			xs := make([][]float32, 3)
			labels := []int{0, 2, 1}
			for j := range xs {
				xs[j] = make([]float32, 36)
				for i := range xs[j] {
					xs[j][i] = rng.Float32()
				}
			}
			w := n.newWork(len(xs), true)
			for j, x := range xs {
				w.setInput(n.Arch.Input, j, x)
			}
			n.forward(be, w)
			n.backward(be, w, labels, []float32{1, 1, 1})
			checked := 0
			for _, p := range n.Params() {
				for _, i := range []int{0, len(p.W) / 2, len(p.W) - 1} {
					analytic := float64(w.grads[p][i])
					old := p.W[i]
					const h = 3e-4 // larger steps cross ReLU and max-pool kinks on this tiny input
					p.W[i] = old + h
					up := batchLoss(n, be, xs, labels)
					p.W[i] = old - h
					down := batchLoss(n, be, xs, labels)
					p.W[i] = old
					numeric := (up - down) / (2 * h)
					if d := math.Abs(numeric - analytic); d > 2e-3+0.05*math.Abs(numeric) {
						t.Errorf("%s[%d]: backprop %.6f, finite difference %.6f", p.Name, i, analytic, numeric)
					}
					checked++
				}
			}
			if checked < 3*len(n.Params()) {
				t.Fatalf("checked %d coordinates", checked)
			}
		})
	}
}

// backends is the Go loops and, when it loads, OpenBLAS. scripts/setup.sh
// installs OpenBLAS, so a missing library fails unless
// $DELEN_TRAIN_BLAS=go says the portable loops are meant.
func backends(t *testing.T) []*Backend {
	t.Helper()
	out := []*Backend{GoBackend()}
	b := NewBackend()
	if b.Name == "openblas" {
		out = append(out, b)
	} else if b.Name == "go" && os.Getenv(BackendEnv) != "go" {
		t.Fatalf("OpenBLAS does not load (run scripts/setup.sh, or set %s=go to test the portable loops only)", BackendEnv)
	}
	return out
}

// TestGemmBackendsAgree compares OpenBLAS's sgemm with the Go loops on
// every transpose case, with padded leading dimensions, alpha and beta.
func TestGemmBackendsAgree(t *testing.T) {
	bs := backends(t)
	if len(bs) < 2 {
		t.Skipf("only the Go backend (%s=go)", BackendEnv)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = rng.Float32()*2 - 1
		}
		return v
	}
	for _, c := range []struct {
		ta, tb  bool
		m, n, k int
	}{{false, false, 7, 5, 3}, {true, false, 4, 9, 6}, {false, true, 8, 3, 11}, {true, true, 5, 5, 5}, {false, false, 33, 65, 129}} {
		ra, ca := c.m, c.k
		if c.ta {
			ra, ca = c.k, c.m
		}
		rb, cb := c.k, c.n
		if c.tb {
			rb, cb = c.n, c.k
		}
		lda, ldb, ldc := ca+2, cb+1, c.n+3
		a, b := fill(ra*lda), fill(rb*ldb)
		c0 := fill(c.m * ldc)
		c1, c2 := append([]float32(nil), c0...), append([]float32(nil), c0...)
		bs[0].gemm(c.ta, c.tb, c.m, c.n, c.k, 0.5, a, lda, b, ldb, 0.25, c1, ldc)
		bs[1].gemm(c.ta, c.tb, c.m, c.n, c.k, 0.5, a, lda, b, ldb, 0.25, c2, ldc)
		for i := range c1 {
			if d := math.Abs(float64(c1[i] - c2[i])); d > 1e-4 {
				t.Fatalf("%+v: element %d: go %v, openblas %v", c, i, c1[i], c2[i])
			}
		}
	}
}

// TestNetworkShortTrainingLearns trains a narrow network with the large
// model's layout on 1,500 images for two epochs and expects every exit
// well above chance on 500 others.
func TestNetworkShortTrainingLearns(t *testing.T) {
	set, err := mnist.Test()
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNetwork(smallArch(), 3)
	if err != nil {
		t.Fatal(err)
	}
	var lines int
	be := backends(t)
	opt := BatchOptions{Epochs: 2, Batch: 16, LR: 3e-3, Warmup: 10, Seed: 3, Backend: be[len(be)-1], Progress: func(Status) { lines++ }}
	if err := TrainNetwork(context.Background(), n, set.Slice(5000, 6500), opt); err != nil {
		t.Fatal(err)
	}
	if lines == 0 {
		t.Error("no progress reported")
	}
	ev := EvaluateNetwork(n, set.Slice(0, 500), opt.Backend)
	for k, a := range ev.Accuracy {
		if a < 0.6 {
			t.Errorf("exit %d accuracy %.3f after a short training, want ≥ 0.6", k+1, a)
		}
	}
}

func smallArch() Arch {
	return Arch{Name: "small", Input: Shape{1, side, side}, Classes: classes, Stages: []StageArch{
		{Body: []Op{Conv(4), Pool()}},
		{Body: []Op{Conv(8), Pool()}},
		{Body: []Op{Conv(8), Pool()}, Head: []int{16}},
	}}
}

// TestNetworkTrainingReproducible trains twice with the same seed and
// once with another: the same seed gives the same weights, another does not.
func TestNetworkTrainingReproducible(t *testing.T) {
	set, err := mnist.Test()
	if err != nil {
		t.Fatal(err)
	}
	be := backends(t)
	weights := func(seed uint64) []float32 {
		n, err := NewNetwork(smallArch(), seed)
		if err != nil {
			t.Fatal(err)
		}
		if err := TrainNetwork(context.Background(), n, set.Slice(0, 160), BatchOptions{Batch: 16, Seed: seed, Backend: be[len(be)-1]}); err != nil {
			t.Fatal(err)
		}
		var all []float32
		for _, p := range n.Params() {
			all = append(all, p.W...)
		}
		return all
	}
	a, b, c := weights(4), weights(4), weights(5)
	same := func(x, y []float32) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Error("two runs with seed 4 give different weights")
	}
	if same(a, c) {
		t.Error("seeds 4 and 5 give the same weights")
	}
}

// TestBLASThreadsSameResult multiplies matrices of a training step's size
// as NewBackend leaves OpenBLAS and explicitly on one thread: bit for bit
// the same. (On two threads the sums differ in the last bits, which is why
// NewBackend pins one: a seed must give the same model.)
func TestBLASThreadsSameResult(t *testing.T) {
	bs := backends(t)
	if len(bs) < 2 {
		t.Skipf("only the Go backend (%s=go)", BackendEnv)
	}
	be := bs[1]
	defer be.setThreads(1)
	rng := rand.New(rand.NewPCG(3, 4))
	m, n, k := 128, 1568, 576
	a, b := make([]float32, m*k), make([]float32, k*n)
	for i := range a {
		a[i] = rng.Float32() - 0.5
	}
	for i := range b {
		b[i] = rng.Float32() - 0.5
	}
	var out [2][]float32
	for i := range out {
		if i == 1 {
			be.setThreads(1)
		}
		out[i] = make([]float32, m*n)
		be.gemm(false, false, m, n, k, 1, a, k, b, n, 0, out[i], n)
	}
	for i := range out[0] {
		if out[0][i] != out[1][i] {
			t.Fatalf("element %d: %v as NewBackend leaves it, %v on one thread", i, out[0][i], out[1][i])
		}
	}
}

// TestLargeArchCost checks mnist-ee-large's shape against DESIGN.md: at
// least 3 exits, ≥ 100 MFLOPs at the last and ≥ 6× the first, and files
// that fit the ~20 MB budget (two copies of the weights: stages and the
// monolithic file).
func TestLargeArchCost(t *testing.T) {
	n, err := NewNetwork(LargeArch(), 1)
	if err != nil {
		t.Fatal(err)
	}
	f := n.FLOPs()
	if len(f) < 3 {
		t.Fatalf("%d exits", len(f))
	}
	if f[len(f)-1] < 100e6 || f[len(f)-1] < 6*f[0] {
		t.Errorf("FLOPs %v: want ≥ 100e6 at the last exit and ≥ 6× the first", f)
	}
	for i := 1; i < len(f); i++ {
		if f[i] <= f[i-1] {
			t.Errorf("FLOPs do not grow: %v", f)
		}
	}
	if mb := float64(2*4*n.Size()) / 1e6; mb > 20 {
		t.Errorf("%d parameters: %.1f MB in stage and monolithic files", n.Size(), mb)
	}
}

// TestExportMatchesONNXRuntime exports an untrained mnist-ee-large and a
// tiny network and checks that ONNX Runtime, stage by stage and through
// the monolithic file, gives the trainer's logits.
func TestExportMatchesONNXRuntime(t *testing.T) {
	set, err := mnist.Test()
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range []Arch{LargeArch(), {Name: "tiny-mnist", Input: Shape{1, side, side}, Classes: classes, Stages: []StageArch{
		{Body: []Op{Conv(2), Pool(), Pool()}, Head: []int{5}}, {}, {Body: []Op{Conv(3)}, Head: []int{4}},
	}}} {
		t.Run(arch.Name, func(t *testing.T) {
			n, err := NewNetwork(arch, 11)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), arch.Name)
			ev := Evaluation{Accuracy: make([]float64, n.Exits()), Split: mnist.SplitTest}
			if _, err := ExportNetwork(n, dir, ev, nil); err != nil {
				t.Fatal(err)
			}
			back, err := LoadNetwork(arch, dir)
			if err != nil {
				t.Fatal(err)
			}
			m, err := models.Load(dir, models.LoadOptions{Monolithic: true})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Manifest.Exits[0].AccuracySplit != mnist.SplitTest {
				t.Errorf("exit 1 accuracy split %q", m.Manifest.Exits[0].AccuracySplit)
			}
			be := NewBackend()
			for i := 0; i < 5; i++ {
				x := set.Float(i)
				ref := back.Forward(be, x)
				mono, err := m.NewMonolithicRun(1)
				if err != nil {
					t.Fatal(err)
				}
				copy(mono.Input(), x)
				all, err := mono.Run()
				if err != nil {
					t.Fatal(err)
				}
				st, err := m.NewState(1)
				if err != nil {
					t.Fatal(err)
				}
				copy(st.Input(), x)
				for k := 0; k < m.Exits(); k++ {
					staged, err := st.RunStage()
					if err != nil {
						t.Fatal(err)
					}
					for j := range staged {
						for name, v := range map[string]float32{"monolithic": all[k][j], "trainer": ref[k][j]} {
							if d := math.Abs(float64(staged[j] - v)); d > 1e-3*(1+math.Abs(float64(v))) {
								t.Fatalf("image %d exit %d logit %d: staged %v, %s %v", i, k+1, j, staged[j], name, v)
							}
						}
					}
				}
				st.Release()
				mono.Close()
			}
		})
	}
}
