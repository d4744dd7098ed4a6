// Package train trains mnist-ee, the project's multi-exit CNN, on MNIST
// with a hand-written float32 trainer (no framework), and exports it as one
// ONNX file per stage plus a monolithic file with every exit as an output.
//
// The network (input 1×28×28, pixels scaled to 0..1):
//
//	stage 0: conv 3×3 1→8, ReLU, max-pool 2      → features 8×14×14
//	         exit 1: flatten, dense 1568→10
//	stage 1: conv 3×3 8→16, ReLU, max-pool 2     → features 16×7×7
//	         exit 2: flatten, dense 784→10
//	stage 2: conv 3×3 16→32, ReLU, flatten, dense 1568→64, ReLU
//	         exit 3: dense 64→10
//
// Net.Forward is the trainer's own forward pass; tests compare it with ONNX
// Runtime running the exported files.
package train

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Layer sizes of mnist-ee.
const (
	side    = 28
	c1, c2  = 8, 16
	c3      = 32
	hidden  = 64
	classes = 10
	s1      = side / 2 // 14: after the first pool
	s2      = s1 / 2   // 7: after the second pool
	feat1   = c1 * s1 * s1
	feat2   = c2 * s2 * s2
	flat3   = c3 * s2 * s2
	// Exits is the number of exits of mnist-ee.
	Exits = 3
)

// Param is one weight tensor with its gradient and Adam moments.
type Param struct {
	Name  string
	Shape []int64
	W     []float32
	m, v  []float64
}

func newParam(name string, shape ...int64) *Param {
	n := int64(1)
	for _, s := range shape {
		n *= s
	}
	return &Param{Name: name, Shape: shape, W: make([]float32, n), m: make([]float64, n), v: make([]float64, n)}
}

// Net holds the parameters of mnist-ee.
type Net struct {
	Conv1W, Conv1B *Param
	Head1W, Head1B *Param
	Conv2W, Conv2B *Param
	Head2W, Head2B *Param
	Conv3W, Conv3B *Param
	FC3W, FC3B     *Param
	Head3W, Head3B *Param
}

// NewNet returns a network with He-initialised weights drawn from seed.
func NewNet(seed uint64) *Net {
	n := &Net{
		Conv1W: newParam("conv1.weight", c1, 1, 3, 3), Conv1B: newParam("conv1.bias", c1),
		Head1W: newParam("head1.weight", classes, feat1), Head1B: newParam("head1.bias", classes),
		Conv2W: newParam("conv2.weight", c2, c1, 3, 3), Conv2B: newParam("conv2.bias", c2),
		Head2W: newParam("head2.weight", classes, feat2), Head2B: newParam("head2.bias", classes),
		Conv3W: newParam("conv3.weight", c3, c2, 3, 3), Conv3B: newParam("conv3.bias", c3),
		FC3W: newParam("fc3.weight", hidden, flat3), FC3B: newParam("fc3.bias", hidden),
		Head3W: newParam("head3.weight", classes, hidden), Head3B: newParam("head3.bias", classes),
	}
	rng := rand.New(rand.NewPCG(seed, 0x64656c656e))
	for _, p := range n.Params() {
		if len(p.Shape) == 1 {
			continue // biases start at 0
		}
		fanIn := 1
		for _, s := range p.Shape[1:] {
			fanIn *= int(s)
		}
		std := math.Sqrt(2 / float64(fanIn))
		for i := range p.W {
			p.W[i] = float32(rng.NormFloat64() * std)
		}
	}
	return n
}

// Params lists every parameter in a fixed order.
func (n *Net) Params() []*Param {
	return []*Param{n.Conv1W, n.Conv1B, n.Head1W, n.Head1B, n.Conv2W, n.Conv2B,
		n.Head2W, n.Head2B, n.Conv3W, n.Conv3B, n.FC3W, n.FC3B, n.Head3W, n.Head3B}
}

// SetWeights loads parameters by name (as ReadWeights returns them).
func (n *Net) SetWeights(w map[string][]float32) error {
	return setWeights(n.Params(), w)
}

// setWeights copies each parameter's values from w, by name.
func setWeights(params []*Param, w map[string][]float32) error {
	for _, p := range params {
		v, ok := w[p.Name]
		if !ok {
			return fmt.Errorf("weight %s missing", p.Name)
		}
		if len(v) != len(p.W) {
			return fmt.Errorf("weight %s has %d values, want %d", p.Name, len(v), len(p.W))
		}
		copy(p.W, v)
	}
	return nil
}

// FLOPs returns the cumulative FLOPs (multiplies and adds counted apart)
// of the convolutions and dense layers through each exit's head, per image.
func FLOPs() [Exits]float64 {
	conv := func(cout, cin, hw int) float64 { return 2 * float64(cout*cin*9*hw*hw) }
	dense := func(in, out int) float64 { return 2 * float64(in*out) }
	s0 := conv(c1, 1, side)
	s1f := conv(c2, c1, s1)
	s2f := conv(c3, c2, s2) + dense(flat3, hidden)
	return [Exits]float64{
		s0 + dense(feat1, classes),
		s0 + s1f + dense(feat2, classes),
		s0 + s1f + s2f + dense(hidden, classes),
	}
}

// work holds one sample's activations and the gradients of one shard.
type work struct {
	x          []float32
	col1, a1   []float32
	p1         []float32
	p1i        []int32
	col2, a2   []float32
	p2         []float32
	p2i        []int32
	col3, a3   []float32
	h3         []float32
	logits     [Exits][]float32
	grads      map[*Param][]float32
	dl         [Exits][]float32
	dh3, da3   []float32
	dcol       []float32
	dp2, da2   []float32
	dp1, da1   []float32
	lossSum    float64
	correctSum [Exits]int
}

func newWork(n *Net) *work {
	w := &work{
		x:    make([]float32, side*side),
		col1: make([]float32, 9*side*side), a1: make([]float32, c1*side*side),
		p1: make([]float32, feat1), p1i: make([]int32, feat1),
		col2: make([]float32, c1*9*s1*s1), a2: make([]float32, c2*s1*s1),
		p2: make([]float32, feat2), p2i: make([]int32, feat2),
		col3: make([]float32, c2*9*s2*s2), a3: make([]float32, flat3),
		h3:    make([]float32, hidden),
		grads: map[*Param][]float32{},
		dh3:   make([]float32, hidden), da3: make([]float32, flat3),
		dcol: make([]float32, c2*9*s2*s2+c1*9*s1*s1),
		dp2:  make([]float32, feat2), da2: make([]float32, c2*s1*s1),
		dp1: make([]float32, feat1), da1: make([]float32, c1*side*side),
	}
	for i := range w.logits {
		w.logits[i] = make([]float32, classes)
		w.dl[i] = make([]float32, classes)
	}
	for _, p := range n.Params() {
		w.grads[p] = make([]float32, len(p.W))
	}
	return w
}

// im2col lays out 3×3, pad-1, stride-1 patches of in (ch×hw×hw) as rows
// r = c*9+ky*3+kx of length hw*hw.
func im2col(in []float32, ch, hw int, col []float32) {
	n := hw * hw
	for c := 0; c < ch; c++ {
		for ky := 0; ky < 3; ky++ {
			for kx := 0; kx < 3; kx++ {
				row := col[(c*9+ky*3+kx)*n : (c*9+ky*3+kx+1)*n]
				for y := 0; y < hw; y++ {
					sy := y + ky - 1
					dst := row[y*hw : (y+1)*hw]
					if sy < 0 || sy >= hw {
						clear(dst)
						continue
					}
					src := in[c*n+sy*hw : c*n+(sy+1)*hw]
					for x := range dst {
						sx := x + kx - 1
						if sx < 0 || sx >= hw {
							dst[x] = 0
						} else {
							dst[x] = src[sx]
						}
					}
				}
			}
		}
	}
}

// col2im adds the patch gradients dcol back onto din (ch×hw×hw).
func col2im(dcol []float32, ch, hw int, din []float32) {
	n := hw * hw
	for c := 0; c < ch; c++ {
		for ky := 0; ky < 3; ky++ {
			for kx := 0; kx < 3; kx++ {
				row := dcol[(c*9+ky*3+kx)*n : (c*9+ky*3+kx+1)*n]
				for y := 0; y < hw; y++ {
					sy := y + ky - 1
					if sy < 0 || sy >= hw {
						continue
					}
					dst := din[c*n+sy*hw : c*n+(sy+1)*hw]
					src := row[y*hw : (y+1)*hw]
					for x, g := range src {
						sx := x + kx - 1
						if sx >= 0 && sx < hw {
							dst[sx] += g
						}
					}
				}
			}
		}
	}
}

// convForward computes out[co] = b[co] + Σ_r W[co,r]·col[r] for cout
// output channels over n positions, then applies ReLU.
func convForward(col []float32, w, b []float32, cout, rows, n int, out []float32) {
	for co := 0; co < cout; co++ {
		o := out[co*n : (co+1)*n]
		for i := range o {
			o[i] = b[co]
		}
		for r := 0; r < rows; r++ {
			a := w[co*rows+r]
			src := col[r*n : (r+1)*n]
			o = o[:len(src)]
			for i, v := range src {
				o[i] += a * v
			}
		}
		for i, v := range o {
			if v < 0 {
				o[i] = 0
			}
		}
	}
}

// convBackward takes dout (already masked by ReLU) and accumulates dW, db
// and, when dcol is not nil, the patch gradients.
func convBackward(col, w, dout []float32, cout, rows, n int, dw, db, dcol []float32) {
	if dcol != nil {
		clear(dcol[:rows*n])
	}
	for co := 0; co < cout; co++ {
		g := dout[co*n : (co+1)*n]
		var sb float32
		for _, v := range g {
			sb += v
		}
		db[co] += sb
		for r := 0; r < rows; r++ {
			src := col[r*n : (r+1)*n]
			src = src[:len(g)]
			var s float32
			for i, v := range g {
				s += v * src[i]
			}
			dw[co*rows+r] += s
			if dcol != nil {
				a := w[co*rows+r]
				d := dcol[r*n : (r+1)*n]
				d = d[:len(g)]
				for i, v := range g {
					d[i] += a * v
				}
			}
		}
	}
}

// maxPool2 pools ch×hw×hw by 2×2 into out, recording the argmax index.
func maxPool2(in []float32, ch, hw int, out []float32, idx []int32) {
	o := hw / 2
	for c := 0; c < ch; c++ {
		for y := 0; y < o; y++ {
			for x := 0; x < o; x++ {
				base := c*hw*hw + 2*y*hw + 2*x
				best, bi := in[base], base
				for _, k := range [3]int{base + 1, base + hw, base + hw + 1} {
					if in[k] > best {
						best, bi = in[k], k
					}
				}
				out[c*o*o+y*o+x] = best
				idx[c*o*o+y*o+x] = int32(bi)
			}
		}
	}
}

// dense computes out = W·x + b with W stored [len(out)][len(x)].
func dense(x, w, b, out []float32) {
	in := len(x)
	for o := range out {
		row := w[o*in : (o+1)*in]
		row = row[:len(x)]
		s := b[o]
		for i, v := range x {
			s += row[i] * v
		}
		out[o] = s
	}
}

// denseBackward accumulates dW, db and (when dx is not nil) dx.
func denseBackward(x, w, dout, dw, db, dx []float32) {
	in := len(x)
	for o, g := range dout {
		if g == 0 {
			continue
		}
		db[o] += g
		row := dw[o*in : (o+1)*in]
		row = row[:len(x)]
		for i, v := range x {
			row[i] += g * v
		}
		if dx != nil {
			wr := w[o*in : (o+1)*in]
			wr = wr[:len(dx)]
			for i := range dx {
				dx[i] += g * wr[i]
			}
		}
	}
}

// forward runs the whole network on w.x and fills w.logits.
func (n *Net) forward(w *work) {
	im2col(w.x, 1, side, w.col1)
	convForward(w.col1, n.Conv1W.W, n.Conv1B.W, c1, 9, side*side, w.a1)
	maxPool2(w.a1, c1, side, w.p1, w.p1i)
	dense(w.p1, n.Head1W.W, n.Head1B.W, w.logits[0])

	im2col(w.p1, c1, s1, w.col2)
	convForward(w.col2, n.Conv2W.W, n.Conv2B.W, c2, c1*9, s1*s1, w.a2)
	maxPool2(w.a2, c2, s1, w.p2, w.p2i)
	dense(w.p2, n.Head2W.W, n.Head2B.W, w.logits[1])

	im2col(w.p2, c2, s2, w.col3)
	convForward(w.col3, n.Conv3W.W, n.Conv3B.W, c3, c2*9, s2*s2, w.a3)
	dense(w.a3, n.FC3W.W, n.FC3B.W, w.h3)
	for i, v := range w.h3 {
		if v < 0 {
			w.h3[i] = 0
		}
	}
	dense(w.h3, n.Head3W.W, n.Head3B.W, w.logits[2])
}

// Forward runs the trainer's forward pass on one image (784 values in
// 0..1) and returns each exit's logits.
func (n *Net) Forward(x []float32) [Exits][]float32 {
	w := newWork(n)
	copy(w.x, x)
	n.forward(w)
	return w.logits
}

// softmaxCE turns logits into dlogits = weight·(softmax − onehot) and
// returns the loss and whether the top-1 class is the label.
func softmaxCE(logits []float32, label int, weight float32, dl []float32) (float64, bool) {
	mx := logits[0]
	arg := 0
	for i, v := range logits {
		if v > mx {
			mx, arg = v, i
		}
	}
	var sum float64
	for i, v := range logits {
		e := math.Exp(float64(v - mx))
		dl[i] = float32(e)
		sum += e
	}
	for i := range dl {
		dl[i] = weight * float32(float64(dl[i])/sum)
	}
	dl[label] -= weight
	p := math.Exp(float64(logits[label]-mx)) / sum
	return -math.Log(math.Max(p, 1e-30)), arg == label
}

// backward accumulates into w.grads the gradient of Σ_k weight_k·CE_k for
// the sample in w (forward must have run).
func (n *Net) backward(w *work, label int, weights [Exits]float32) {
	g := w.grads
	for k := 0; k < Exits; k++ {
		loss, ok := softmaxCE(w.logits[k], label, weights[k], w.dl[k])
		w.lossSum += float64(weights[k]) * loss
		if ok {
			w.correctSum[k]++
		}
	}
	// Exit 3 and stage 2.
	clear(w.dh3)
	denseBackward(w.h3, n.Head3W.W, w.dl[2], g[n.Head3W], g[n.Head3B], w.dh3)
	for i, v := range w.h3 {
		if v <= 0 {
			w.dh3[i] = 0
		}
	}
	clear(w.da3)
	denseBackward(w.a3, n.FC3W.W, w.dh3, g[n.FC3W], g[n.FC3B], w.da3)
	for i, v := range w.a3 {
		if v <= 0 {
			w.da3[i] = 0
		}
	}
	dcol3 := w.dcol[:c2*9*s2*s2]
	convBackward(w.col3, n.Conv3W.W, w.da3, c3, c2*9, s2*s2, g[n.Conv3W], g[n.Conv3B], dcol3)
	clear(w.dp2)
	col2im(dcol3, c2, s2, w.dp2)
	// Exit 2 and stage 1.
	denseBackward(w.p2, n.Head2W.W, w.dl[1], g[n.Head2W], g[n.Head2B], w.dp2)
	clear(w.da2)
	for j, i := range w.p2i {
		w.da2[i] += w.dp2[j]
	}
	for i, v := range w.a2 {
		if v <= 0 {
			w.da2[i] = 0
		}
	}
	dcol2 := w.dcol[:c1*9*s1*s1]
	convBackward(w.col2, n.Conv2W.W, w.da2, c2, c1*9, s1*s1, g[n.Conv2W], g[n.Conv2B], dcol2)
	clear(w.dp1)
	col2im(dcol2, c1, s1, w.dp1)
	// Exit 1 and stage 0.
	denseBackward(w.p1, n.Head1W.W, w.dl[0], g[n.Head1W], g[n.Head1B], w.dp1)
	clear(w.da1)
	for j, i := range w.p1i {
		w.da1[i] += w.dp1[j]
	}
	for i, v := range w.a1 {
		if v <= 0 {
			w.da1[i] = 0
		}
	}
	convBackward(w.col1, n.Conv1W.W, w.da1, c1, 9, side*side, g[n.Conv1W], g[n.Conv1B], nil)
}
