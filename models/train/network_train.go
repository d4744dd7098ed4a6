package train

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/delen-edge/delen/models/mnist"
)

// BatchOptions tunes TrainNetwork. Zero fields take the defaults shown.
type BatchOptions struct {
	Epochs int     // default 1
	Batch  int     // default 32
	LR     float64 // peak Adam learning rate, default 1e-3
	// Warmup is the number of steps the learning rate ramps up linearly
	// over before its cosine decay to LR/20; default 100.
	Warmup int
	// ExitWeights weighs each exit's loss; default 1 each.
	ExitWeights []float32
	// Limit trains on the first Limit images only (tests); 0 means all.
	Limit int
	// Seed shuffles the images (the weights' seed is NewNetwork's).
	Seed uint64
	// Backend does the matrix products; default NewBackend().
	Backend *Backend
	// Progress, when set, receives a status line about once a second.
	Progress func(Status)
}

func (o *BatchOptions) defaults(exits int) {
	if o.Epochs == 0 {
		o.Epochs = 1
	}
	if o.Batch == 0 {
		o.Batch = 32
	}
	if o.LR == 0 {
		o.LR = 1e-3
	}
	if o.Warmup == 0 {
		o.Warmup = 100
	}
	if o.ExitWeights == nil {
		o.ExitWeights = make([]float32, exits)
		for i := range o.ExitWeights {
			o.ExitWeights[i] = 1
		}
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Backend == nil {
		o.Backend = NewBackend()
	}
}

// TrainNetwork trains n in place on set with Adam, one batch at a time,
// the exits' weighted losses summed. The same seed, data and backend give
// the same network (the work is not split across goroutines; OpenBLAS
// threads split matrix products by rows and columns, not by sums).
func TrainNetwork(ctx context.Context, n *Network, set *mnist.Set, opt BatchOptions) error {
	opt.defaults(n.Exits())
	if len(opt.ExitWeights) != n.Exits() {
		return fmt.Errorf("train: %d exit weights for %d exits", len(opt.ExitWeights), n.Exits())
	}
	if n.Arch.Input != (Shape{1, mnist.Side, mnist.Side}) {
		return fmt.Errorf("train: %s takes %v, not an MNIST digit", n.Arch.Name, n.Arch.Input)
	}
	count := set.Len()
	if opt.Limit > 0 && opt.Limit < count {
		count = opt.Limit
	}
	steps := count / opt.Batch
	if steps == 0 {
		return fmt.Errorf("train: %d images is less than one batch of %d", count, opt.Batch)
	}
	total := steps * opt.Epochs
	w := n.newWork(opt.Batch, true)
	rng := rand.New(rand.NewPCG(opt.Seed, 0x7368756666))
	order := make([]int, count)
	for i := range order {
		order[i] = i
	}
	labels := make([]int, opt.Batch)
	x := make([]float32, mnist.Pixels)
	const beta1, beta2, eps = 0.9, 0.999, 1e-8
	start, lastReport := time.Now(), time.Now()
	t := 0
	for epoch := 1; epoch <= opt.Epochs; epoch++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var epochLoss float64
		epochHits := make([]int, n.Exits())
		seen := 0
		for step := 0; step < steps; step++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			for j, idx := range order[step*opt.Batch : (step+1)*opt.Batch] {
				set.Sample(idx, x)
				w.setInput(n.Arch.Input, j, x)
				labels[j] = set.Label(idx)
			}
			for _, g := range w.grads {
				clear(g)
			}
			w.loss = 0
			clear(w.hits)
			n.forward(opt.Backend, w)
			n.backward(opt.Backend, w, labels, opt.ExitWeights)
			t++
			lr := opt.LR * (0.05 + 0.95*0.5*(1+math.Cos(math.Pi*float64(t-1)/float64(total))))
			if t <= opt.Warmup {
				lr *= float64(t) / float64(opt.Warmup)
			}
			bc1 := 1 - math.Pow(beta1, float64(t))
			bc2 := 1 - math.Pow(beta2, float64(t))
			for _, p := range n.params {
				g := w.grads[p]
				for i := range p.W {
					gi := float64(g[i])
					p.m[i] = beta1*p.m[i] + (1-beta1)*gi
					p.v[i] = beta2*p.v[i] + (1-beta2)*gi*gi
					p.W[i] -= float32(lr * (p.m[i] / bc1) / (math.Sqrt(p.v[i]/bc2) + eps))
				}
			}
			epochLoss += w.loss
			for k, h := range w.hits {
				epochHits[k] += h
			}
			seen += opt.Batch
			if opt.Progress != nil && (time.Since(lastReport) >= time.Second || step == steps-1) {
				lastReport = time.Now()
				el := time.Since(start)
				st := Status{Epoch: epoch, Epochs: opt.Epochs, Step: step + 1, Steps: steps,
					Loss: epochLoss / float64(seen), Elapsed: el,
					ETA: time.Duration(float64(el) / float64(t) * float64(total-t)), TrainAcc: make([]float64, n.Exits())}
				for k := range st.TrainAcc {
					st.TrainAcc[k] = float64(epochHits[k]) / float64(seen)
				}
				opt.Progress(st)
			}
		}
	}
	return nil
}

// EvaluateNetwork runs n's forward pass over set in batches of 100 and
// measures each exit's top-1 accuracy.
func EvaluateNetwork(n *Network, set *mnist.Set, be *Backend) Evaluation {
	if be == nil {
		be = NewBackend()
	}
	const batch = 100
	hits := make([]int, n.Exits())
	x := make([]float32, mnist.Pixels)
	works := map[int]*batchWork{}
	classes := n.Arch.Classes
	for lo := 0; lo < set.Len(); lo += batch {
		b := min(batch, set.Len()-lo)
		w := works[b]
		if w == nil {
			w = n.newWork(b, false)
			works[b] = w
		}
		for j := 0; j < b; j++ {
			set.Sample(lo+j, x)
			w.setInput(n.Arch.Input, j, x)
		}
		n.forward(be, w)
		for k := range hits {
			for j := 0; j < b; j++ {
				if argmax(w.logits[k][j*classes:(j+1)*classes]) == set.Label(lo+j) {
					hits[k]++
				}
			}
		}
	}
	ev := Evaluation{Count: set.Len(), Accuracy: make([]float64, n.Exits())}
	for k, h := range hits {
		ev.Accuracy[k] = float64(h) / float64(max(set.Len(), 1))
	}
	return ev
}

// Forward runs the trainer's forward pass on one sample (the input's CHW
// values) with the given backend and returns each exit's logits.
func (n *Network) Forward(be *Backend, x []float32) [][]float32 {
	w := n.newWork(1, false)
	w.setInput(n.Arch.Input, 0, x)
	n.forward(be, w)
	out := make([][]float32, n.Exits())
	for k := range out {
		out[k] = append([]float32(nil), w.logits[k]...)
	}
	return out
}
