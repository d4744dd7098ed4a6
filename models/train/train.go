package train

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/delen-edge/delen/models/mnist"
)

// shards is the fixed number of slices a batch is cut into and run in
// parallel. It is fixed (not the core count) so that a seed gives the same
// network on every machine: gradients are summed in shard order.
const shards = 4

// Options tunes a training run. The zero value trains mnist-ee as shipped.
type Options struct {
	Seed   uint64  // default 1
	Epochs int     // default 3
	Batch  int     // default 64
	LR     float64 // peak Adam learning rate, default 2e-3
	// ExitWeights weighs each exit's loss; default 1, 1, 1.
	ExitWeights [Exits]float32
	// Limit trains on the first Limit images only (tests); 0 means all.
	Limit int
	// Progress, when set, receives a status line about once a second.
	Progress func(Status)
}

// Status is a progress report.
type Status struct {
	Epoch, Epochs int
	Step, Steps   int // steps in this epoch
	Loss          float64
	TrainAcc      []float64 // per exit, over this epoch so far
	Elapsed, ETA  time.Duration
}

// String renders the status as one progress line.
func (s Status) String() string {
	acc := ""
	for _, a := range s.TrainAcc {
		acc += fmt.Sprintf(" %.3f", a)
	}
	return fmt.Sprintf("epoch %d/%d  step %4d/%d  loss %.4f  train acc%s  elapsed %s  eta %s",
		s.Epoch, s.Epochs, s.Step, s.Steps, s.Loss, acc,
		s.Elapsed.Round(time.Second), s.ETA.Round(time.Second))
}

func (o *Options) defaults() {
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Epochs == 0 {
		o.Epochs = 3
	}
	if o.Batch == 0 {
		o.Batch = 64
	}
	if o.LR == 0 {
		o.LR = 2e-3
	}
	if o.ExitWeights == ([Exits]float32{}) {
		o.ExitWeights = [Exits]float32{1, 1, 1}
	}
}

// Train trains a fresh network on set and returns it.
func Train(ctx context.Context, set *mnist.Set, opt Options) (*Net, error) {
	opt.defaults()
	n := NewNet(opt.Seed)
	count := set.Len()
	if opt.Limit > 0 && opt.Limit < count {
		count = opt.Limit
	}
	steps := count / opt.Batch
	if steps == 0 {
		return nil, fmt.Errorf("train: %d images is less than one batch of %d", count, opt.Batch)
	}
	total := steps * opt.Epochs
	works := make([]*work, shards)
	for i := range works {
		works[i] = newWork(n)
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0x7368756666))
	order := make([]int, count)
	for i := range order {
		order[i] = i
	}
	const beta1, beta2, eps = 0.9, 0.999, 1e-8
	start := time.Now()
	lastReport := start
	t := 0
	for epoch := 1; epoch <= opt.Epochs; epoch++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var epochLoss float64
		var epochCorrect [Exits]int
		seen := 0
		for step := 0; step < steps; step++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			batch := order[step*opt.Batch : (step+1)*opt.Batch]
			var wg sync.WaitGroup
			for s := range works {
				w := works[s]
				for _, g := range w.grads {
					clear(g)
				}
				w.lossSum, w.correctSum = 0, [Exits]int{}
				lo, hi := s*len(batch)/shards, (s+1)*len(batch)/shards
				wg.Add(1)
				go func() {
					defer wg.Done()
					for _, idx := range batch[lo:hi] {
						for j, p := range set.Images[idx] {
							w.x[j] = float32(p) / 255
						}
						n.forward(w)
						n.backward(w, int(set.Labels[idx]), opt.ExitWeights)
					}
				}()
			}
			wg.Wait()
			t++
			// Cosine decay from LR to LR/20 over the run.
			lr := opt.LR * (0.05 + 0.95*0.5*(1+math.Cos(math.Pi*float64(t-1)/float64(total))))
			bc1 := 1 - math.Pow(beta1, float64(t))
			bc2 := 1 - math.Pow(beta2, float64(t))
			scale := 1 / float64(len(batch))
			for _, p := range n.Params() {
				for i := range p.W {
					var g float64
					for _, w := range works {
						g += float64(w.grads[p][i])
					}
					g *= scale
					p.m[i] = beta1*p.m[i] + (1-beta1)*g
					p.v[i] = beta2*p.v[i] + (1-beta2)*g*g
					p.W[i] -= float32(lr * (p.m[i] / bc1) / (math.Sqrt(p.v[i]/bc2) + eps))
				}
			}
			for _, w := range works {
				epochLoss += w.lossSum
				for k := range epochCorrect {
					epochCorrect[k] += w.correctSum[k]
				}
			}
			seen += len(batch)
			if opt.Progress != nil && (time.Since(lastReport) >= time.Second || step == steps-1) {
				lastReport = time.Now()
				el := time.Since(start)
				st := Status{Epoch: epoch, Epochs: opt.Epochs, Step: step + 1, Steps: steps,
					Loss: epochLoss / float64(seen), Elapsed: el,
					ETA: time.Duration(float64(el) / float64(t) * float64(total-t)), TrainAcc: make([]float64, Exits)}
				for k := range st.TrainAcc {
					st.TrainAcc[k] = float64(epochCorrect[k]) / float64(seen)
				}
				opt.Progress(st)
			}
		}
	}
	return n, nil
}

// Evaluation is the per-exit result of running a network over a data set.
type Evaluation struct {
	Accuracy []float64 // per exit
	Count    int
	// Split names the data split evaluated on (set by the caller; the
	// manifest records it as each exit's accuracy_split).
	Split string
}

// Evaluate runs the trainer's forward pass over set and measures each
// exit's top-1 accuracy.
func Evaluate(n *Net, set *mnist.Set) Evaluation {
	correct := make([][Exits]int, shards)
	var wg sync.WaitGroup
	for s := 0; s < shards; s++ {
		lo, hi := s*set.Len()/shards, (s+1)*set.Len()/shards
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newWork(n)
			for i := lo; i < hi; i++ {
				for j, p := range set.Images[i] {
					w.x[j] = float32(p) / 255
				}
				n.forward(w)
				for k := 0; k < Exits; k++ {
					if argmax(w.logits[k]) == int(set.Labels[i]) {
						correct[s][k]++
					}
				}
			}
		}()
	}
	wg.Wait()
	ev := Evaluation{Count: set.Len(), Accuracy: make([]float64, Exits)}
	for k := 0; k < Exits; k++ {
		c := 0
		for s := range correct {
			c += correct[s][k]
		}
		ev.Accuracy[k] = float64(c) / float64(set.Len())
	}
	return ev
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
