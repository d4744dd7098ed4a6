package train

import (
	"context"
	"math"
	"testing"

	"github.com/delen-edge/delen/models/mnist"
)

// lossOf is Σ_k CE_k for one sample, computed by the forward pass alone.
func lossOf(n *Net, x []float32, label int) float64 {
	w := newWork(n)
	copy(w.x, x)
	n.forward(w)
	var l float64
	for k := 0; k < Exits; k++ {
		loss, _ := softmaxCE(w.logits[k], label, 1, w.dl[k])
		l += loss
	}
	return l
}

// TestGradients checks backprop against central finite differences on a
// few coordinates of every parameter.
func TestGradients(t *testing.T) {
	set, err := mnist.Test()
	if err != nil {
		t.Fatal(err)
	}
	n := NewNet(7)
	// Non-zero biases keep pre-activations off ReLU's kink at 0, where the
	// blank background would otherwise sit and finite differences mislead.
	for i, p := range n.Params() {
		if len(p.Shape) == 1 {
			for j := range p.W {
				p.W[j] = 0.05 + 0.01*float32((i+j)%5)
			}
		}
	}
	x, label := set.Float(3), int(set.Labels[3])
	w := newWork(n)
	copy(w.x, x)
	n.forward(w)
	n.backward(w, label, [Exits]float32{1, 1, 1})
	for _, p := range n.Params() {
		for _, i := range []int{0, len(p.W) / 3, len(p.W) - 1} {
			analytic := float64(w.grads[p][i])
			old := p.W[i]
			const h = 1e-3
			p.W[i] = old + h
			up := lossOf(n, x, label)
			p.W[i] = old - h
			down := lossOf(n, x, label)
			p.W[i] = old
			numeric := (up - down) / (2 * h)
			if d := math.Abs(numeric - analytic); d > 2e-3+0.05*math.Abs(numeric) {
				t.Errorf("%s[%d]: backprop %.6f, finite difference %.6f", p.Name, i, analytic, numeric)
			}
		}
	}
}

// TestShortTrainingLearns trains on 600 images for one epoch and expects
// every exit well above chance on held-out images.
func TestShortTrainingLearns(t *testing.T) {
	set, err := mnist.Test()
	if err != nil {
		t.Fatal(err)
	}
	// Train on the second half of the test set, evaluate on the first
	// thousand: disjoint, and no need to read the training files.
	trainSet := &mnist.Set{Images: set.Images[5000:5600], Labels: set.Labels[5000:5600]}
	evalSet := &mnist.Set{Images: set.Images[:1000], Labels: set.Labels[:1000]}
	n, err := Train(context.Background(), trainSet, Options{Epochs: 1, Seed: 3, Batch: 8})
	if err != nil {
		t.Fatal(err)
	}
	ev := Evaluate(n, evalSet)
	for k, a := range ev.Accuracy {
		if a < 0.6 {
			t.Errorf("exit %d accuracy %.3f after a short training, want ≥ 0.6", k+1, a)
		}
	}
}

func TestFLOPsGrowAlongExits(t *testing.T) {
	f := FLOPs()
	for i := 1; i < Exits; i++ {
		if f[i] <= f[i-1] {
			t.Fatalf("flops not increasing: %v", f)
		}
	}
	if f[Exits-1] < 4*f[0] {
		t.Fatalf("last exit %.0f FLOPs is less than 4× the first %.0f", f[Exits-1], f[0])
	}
}
