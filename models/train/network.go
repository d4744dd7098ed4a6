package train

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Shape is a feature map's size for one sample: channels × height × width.
type Shape struct{ C, H, W int }

// Size is the number of values in the map.
func (s Shape) Size() int { return s.C * s.H * s.W }

// Op is one layer of a stage's body: a 3×3 convolution (padding 1, stride
// 1) followed by ReLU when Conv > 0, else a 2×2 max pool with stride 2.
type Op struct {
	// Conv is the number of output channels; 0 means a max pool.
	Conv int
}

// Conv is a 3×3 convolution with c output channels and ReLU.
func Conv(c int) Op { return Op{Conv: c} }

// Pool is a 2×2 max pool with stride 2 (odd sizes round down, as ONNX).
func Pool() Op { return Op{} }

// StageArch is one stage: the body maps the previous stage's features (or
// the input) to this stage's features, and the exit head maps the
// flattened features through Head's hidden dense layers (each with ReLU)
// to the logits.
type StageArch struct {
	Body []Op
	Head []int
}

// Arch describes a multi-exit CNN for the batch trainer.
type Arch struct {
	Name        string
	Description string
	Input       Shape
	Classes     int
	Stages      []StageArch
}

// convLayer is a 3×3 pad-1 convolution with ReLU on an in-shaped map.
type convLayer struct {
	in   Shape
	cout int
	W, B *Param
}

// layer is one body layer: a convolution or (conv == nil) a pool over in.
type layer struct {
	conv *convLayer
	in   Shape
}

func (l layer) out() Shape {
	if l.conv != nil {
		return Shape{l.conv.cout, l.in.H, l.in.W}
	}
	return Shape{l.in.C, l.in.H / 2, l.in.W / 2}
}

// denseLayer is y = x·Wᵀ + b, with ReLU when relu is set.
type denseLayer struct {
	in, out int
	relu    bool
	W, B    *Param
}

type stageNet struct {
	in, out Shape
	body    []layer
	head    []denseLayer
}

// Network is a multi-exit CNN built from an Arch, trained in batches with
// im2col and a Backend's sgemm. Parameters are named as the ONNX export
// names them ("s<stage>.conv<j>.weight", "s<stage>.head<j>.bias", ...).
type Network struct {
	Arch   Arch
	stages []stageNet
	params []*Param
}

// NewNetwork builds arch with He-initialised weights drawn from seed
// (biases start at 0).
func NewNetwork(arch Arch, seed uint64) (*Network, error) {
	if len(arch.Stages) == 0 || arch.Classes < 2 || arch.Input.Size() == 0 {
		return nil, fmt.Errorf("train: architecture %q needs stages, an input and at least 2 classes", arch.Name)
	}
	n := &Network{Arch: arch}
	rng := rand.New(rand.NewPCG(seed, 0x64656c656e))
	newP := func(name string, fanIn int, shape ...int64) *Param {
		p := newParam(name, shape...)
		if len(shape) > 1 {
			std := math.Sqrt(2 / float64(fanIn))
			for i := range p.W {
				p.W[i] = float32(rng.NormFloat64() * std)
			}
		}
		n.params = append(n.params, p)
		return p
	}
	shape := arch.Input
	for si, sa := range arch.Stages {
		st := stageNet{in: shape}
		convs := 0
		for _, op := range sa.Body {
			l := layer{in: shape}
			if op.Conv > 0 {
				convs++
				name := fmt.Sprintf("s%d.conv%d", si, convs)
				l.conv = &convLayer{in: shape, cout: op.Conv,
					W: newP(name+".weight", shape.C*9, int64(op.Conv), int64(shape.C), 3, 3),
					B: newP(name+".bias", 0, int64(op.Conv))}
			} else if shape.H < 2 || shape.W < 2 {
				return nil, fmt.Errorf("train: stage %d pools a %dx%d map", si, shape.H, shape.W)
			}
			st.body = append(st.body, l)
			shape = l.out()
		}
		st.out = shape
		in := shape.Size()
		widths := append(append([]int(nil), sa.Head...), arch.Classes)
		for j, w := range widths {
			name := fmt.Sprintf("s%d.head%d", si, j+1)
			st.head = append(st.head, denseLayer{in: in, out: w, relu: j < len(widths)-1,
				W: newP(name+".weight", in, int64(w), int64(in)), B: newP(name+".bias", 0, int64(w))})
			in = w
		}
		n.stages = append(n.stages, st)
	}
	return n, nil
}

// Exits is the number of exits (one per stage).
func (n *Network) Exits() int { return len(n.stages) }

// Params lists every parameter in a fixed order.
func (n *Network) Params() []*Param { return n.params }

// SetWeights loads parameters by name (as onnxgraph.ReadWeights returns them).
func (n *Network) SetWeights(w map[string][]float32) error {
	return setWeights(n.params, w)
}

// FLOPs returns the cumulative FLOPs (multiplies and adds counted apart)
// of the convolutions and dense layers from the input through each exit's
// head, per image.
func (n *Network) FLOPs() []float64 {
	var body float64
	out := make([]float64, len(n.stages))
	for i, st := range n.stages {
		for _, l := range st.body {
			if c := l.conv; c != nil {
				body += 2 * float64(c.cout*c.in.C*9*c.in.H*c.in.W)
			}
		}
		head := 0.0
		for _, d := range st.head {
			head += 2 * float64(d.in*d.out)
		}
		out[i] = body + head
	}
	return out
}

// Size is the number of parameters.
func (n *Network) Size() int {
	s := 0
	for _, p := range n.params {
		s += len(p.W)
	}
	return s
}

// batchWork holds one batch's activations and the parameter gradients.
// Feature maps are stored channel-major over the batch ("CNHW": channel c
// of sample b at [c][b][y][x]), so a convolution over the whole batch is
// one matrix product: out[cout][B·H·W] = W[cout][cin·9] · col[cin·9][B·H·W].
type batchWork struct {
	b     int
	input []float32 // CNHW
	// per stage, per body layer: output map (post-ReLU for convs), the
	// im2col matrix (convs) or argmax indices (pools).
	outs [][][]float32
	cols [][][]float32
	idx  [][][]int32
	// per stage: flattened features [B][F] and per head layer its output.
	flat   [][]float32
	hidden [][][]float32
	logits [][]float32 // per exit [B][classes]
	grads  map[*Param][]float32
	// scratch for backward
	dcol   []float32
	dflat  []float32
	dhead  [2][]float32
	dmap   [2][]float32
	dlog   []float32
	loss   float64
	hits   []int
	hasBwd bool
}

func (n *Network) newWork(b int, backward bool) *batchWork {
	w := &batchWork{b: b, input: make([]float32, n.Arch.Input.Size()*b), hasBwd: backward}
	maxCol, maxMap, maxFlat, maxHead := 0, n.Arch.Input.Size()*b, 0, 0
	for _, st := range n.stages {
		var outs, cols [][]float32
		var idx [][]int32
		for _, l := range st.body {
			o := l.out()
			outs = append(outs, make([]float32, o.Size()*b))
			maxMap = max(maxMap, o.Size()*b)
			if l.conv != nil {
				k := l.in.C * 9 * l.in.H * l.in.W * b
				cols = append(cols, make([]float32, k))
				idx = append(idx, nil)
				maxCol = max(maxCol, k)
			} else {
				cols = append(cols, nil)
				idx = append(idx, make([]int32, o.Size()*b))
			}
		}
		w.outs, w.cols, w.idx = append(w.outs, outs), append(w.cols, cols), append(w.idx, idx)
		w.flat = append(w.flat, make([]float32, st.out.Size()*b))
		maxFlat = max(maxFlat, st.out.Size()*b)
		var hs [][]float32
		for _, d := range st.head {
			hs = append(hs, make([]float32, d.out*b))
			maxHead = max(maxHead, d.out*b)
		}
		w.hidden = append(w.hidden, hs)
		w.logits = append(w.logits, hs[len(hs)-1])
	}
	w.hits = make([]int, len(n.stages))
	if backward {
		w.grads = map[*Param][]float32{}
		for _, p := range n.params {
			w.grads[p] = make([]float32, len(p.W))
		}
		w.dcol = make([]float32, maxCol)
		w.dflat = make([]float32, maxFlat)
		w.dhead = [2][]float32{make([]float32, maxHead), make([]float32, maxHead)}
		w.dmap = [2][]float32{make([]float32, maxMap), make([]float32, maxMap)}
		w.dlog = make([]float32, n.Arch.Classes*b)
	}
	return w
}

// setInput copies sample i's values (one sample's CHW) into the batch's
// CNHW input at position j.
func (w *batchWork) setInput(shape Shape, j int, x []float32) {
	hw := shape.H * shape.W
	for c := 0; c < shape.C; c++ {
		copy(w.input[(c*w.b+j)*hw:(c*w.b+j+1)*hw], x[c*hw:(c+1)*hw])
	}
}

// im2colCNHW lays out the 3×3 pad-1 patches of in (CNHW, b samples of s)
// as col[(c·9+ky·3+kx)][b·H·W].
func im2colCNHW(in []float32, s Shape, b int, col []float32) {
	hw := s.H * s.W
	n := b * hw
	for c := 0; c < s.C; c++ {
		for ky := 0; ky < 3; ky++ {
			for kx := 0; kx < 3; kx++ {
				row := col[(c*9+ky*3+kx)*n : (c*9+ky*3+kx+1)*n]
				for j := 0; j < b; j++ {
					plane := in[(c*b+j)*hw : (c*b+j+1)*hw]
					dst := row[j*hw : (j+1)*hw]
					for y := 0; y < s.H; y++ {
						sy := y + ky - 1
						d := dst[y*s.W : (y+1)*s.W]
						if sy < 0 || sy >= s.H {
							clear(d)
							continue
						}
						src := plane[sy*s.W : (sy+1)*s.W]
						for x := range d {
							sx := x + kx - 1
							if sx < 0 || sx >= s.W {
								d[x] = 0
							} else {
								d[x] = src[sx]
							}
						}
					}
				}
			}
		}
	}
}

// col2imCNHW adds patch gradients back onto din (CNHW), which it clears first.
func col2imCNHW(dcol []float32, s Shape, b int, din []float32) {
	hw := s.H * s.W
	n := b * hw
	clear(din[:s.C*n])
	for c := 0; c < s.C; c++ {
		for ky := 0; ky < 3; ky++ {
			for kx := 0; kx < 3; kx++ {
				row := dcol[(c*9+ky*3+kx)*n : (c*9+ky*3+kx+1)*n]
				for j := 0; j < b; j++ {
					plane := din[(c*b+j)*hw : (c*b+j+1)*hw]
					src := row[j*hw : (j+1)*hw]
					for y := 0; y < s.H; y++ {
						sy := y + ky - 1
						if sy < 0 || sy >= s.H {
							continue
						}
						dst := plane[sy*s.W : (sy+1)*s.W]
						g := src[y*s.W : (y+1)*s.W]
						for x, v := range g {
							sx := x + kx - 1
							if sx >= 0 && sx < s.W {
								dst[sx] += v
							}
						}
					}
				}
			}
		}
	}
}

// pool2CNHW max-pools every plane of in (CNHW) by 2×2, recording argmaxes.
func pool2CNHW(in []float32, s Shape, b int, out []float32, idx []int32) {
	oh, ow := s.H/2, s.W/2
	for p := 0; p < s.C*b; p++ {
		base := p * s.H * s.W
		ob := p * oh * ow
		for y := 0; y < oh; y++ {
			for x := 0; x < ow; x++ {
				i := base + 2*y*s.W + 2*x
				best, bi := in[i], i
				for _, k := range [3]int{i + 1, i + s.W, i + s.W + 1} {
					if in[k] > best {
						best, bi = in[k], k
					}
				}
				out[ob+y*ow+x] = best
				idx[ob+y*ow+x] = int32(bi)
			}
		}
	}
}

// flattenCNHW turns a CNHW map into [B][C·H·W] rows in ONNX Flatten order.
func flattenCNHW(in []float32, s Shape, b int, out []float32) {
	hw := s.H * s.W
	f := s.Size()
	for c := 0; c < s.C; c++ {
		for j := 0; j < b; j++ {
			copy(out[j*f+c*hw:j*f+(c+1)*hw], in[(c*b+j)*hw:(c*b+j+1)*hw])
		}
	}
}

// unflattenAdd adds [B][C·H·W] rows onto a CNHW map.
func unflattenAdd(rows []float32, s Shape, b int, out []float32) {
	hw := s.H * s.W
	f := s.Size()
	for c := 0; c < s.C; c++ {
		for j := 0; j < b; j++ {
			dst := out[(c*b+j)*hw : (c*b+j+1)*hw]
			for i, v := range rows[j*f+c*hw : j*f+(c+1)*hw] {
				dst[i] += v
			}
		}
	}
}

func relu(v []float32) {
	for i, x := range v {
		if x < 0 {
			v[i] = 0
		}
	}
}

// forward runs the batch in w.input through every stage and head.
func (n *Network) forward(be *Backend, w *batchWork) {
	x := w.input
	b := w.b
	for si, st := range n.stages {
		for li, l := range st.body {
			out := w.outs[si][li]
			if c := l.conv; c != nil {
				col := w.cols[si][li]
				im2colCNHW(x, l.in, b, col)
				np := b * l.in.H * l.in.W
				k := l.in.C * 9
				for co := 0; co < c.cout; co++ {
					o := out[co*np : (co+1)*np]
					for i := range o {
						o[i] = c.B.W[co]
					}
				}
				be.gemm(false, false, c.cout, np, k, 1, c.W.W, k, col, np, 1, out, np)
				relu(out)
			} else {
				pool2CNHW(x, l.in, b, out, w.idx[si][li])
			}
			x = out
		}
		flattenCNHW(x, st.out, b, w.flat[si])
		h := w.flat[si]
		for di, d := range st.head {
			out := w.hidden[si][di]
			for j := 0; j < b; j++ {
				copy(out[j*d.out:(j+1)*d.out], d.B.W)
			}
			be.gemm(false, true, b, d.out, d.in, 1, h, d.in, d.W.W, d.in, 1, out, d.out)
			if d.relu {
				relu(out)
			}
			h = out
		}
	}
}

// backward adds to w.grads the gradient of the batch mean of
// Σ_k weight_k·CE_k (forward must have run), and adds the weighted loss
// sum and each exit's top-1 hits to w.loss and w.hits.
func (n *Network) backward(be *Backend, w *batchWork, labels []int, weights []float32) {
	b, classes := w.b, n.Arch.Classes
	g := w.grads
	// dnext holds the gradient flowing into the current stage's output
	// map from the stages after it (CNHW); nil for the last stage.
	var dnext []float32
	for si := len(n.stages) - 1; si >= 0; si-- {
		st := n.stages[si]
		// Exit head: softmax cross-entropy on the logits.
		dl := w.dlog[:b*classes]
		logits := w.logits[si]
		for j := 0; j < b; j++ {
			loss, hit := softmaxCE(logits[j*classes:(j+1)*classes], labels[j], weights[si]/float32(b), dl[j*classes:(j+1)*classes])
			w.loss += float64(weights[si]) * loss
			if hit {
				w.hits[si]++
			}
		}
		dout := dl
		for di := len(st.head) - 1; di >= 0; di-- {
			d := st.head[di]
			out := w.hidden[si][di]
			if d.relu {
				for i, v := range out[:b*d.out] {
					if v <= 0 {
						dout[i] = 0
					}
				}
			}
			in := w.flat[si]
			if di > 0 {
				in = w.hidden[si][di-1]
			}
			db := g[d.B]
			for j := 0; j < b; j++ {
				for o, v := range dout[j*d.out : (j+1)*d.out] {
					db[o] += v
				}
			}
			be.gemm(true, false, d.out, d.in, b, 1, dout, d.out, in, d.in, 1, g[d.W], d.in)
			var dx []float32
			if di > 0 {
				dx = w.dhead[di%2][:b*d.in]
			} else {
				dx = w.dflat[:b*d.in]
			}
			be.gemm(false, false, b, d.in, d.out, 1, dout, d.out, d.W.W, d.in, 0, dx, d.in)
			dout = dx
		}
		// Gradient on the stage's output map: from the head, plus from
		// the next stage.
		dmap := w.dmap[0][:st.out.Size()*b]
		if dnext != nil {
			copy(dmap, dnext)
		} else {
			clear(dmap)
		}
		unflattenAdd(w.dflat, st.out, b, dmap)
		// Body, last layer first.
		for li := len(st.body) - 1; li >= 0; li-- {
			l := st.body[li]
			first := si == 0 && li == 0
			dinBuf := w.dmap[1][:l.in.Size()*b]
			if c := l.conv; c != nil {
				out := w.outs[si][li]
				for i, v := range out {
					if v <= 0 {
						dmap[i] = 0
					}
				}
				np := b * l.in.H * l.in.W
				k := l.in.C * 9
				db := g[c.B]
				for co := 0; co < c.cout; co++ {
					var s float32
					for _, v := range dmap[co*np : (co+1)*np] {
						s += v
					}
					db[co] += s
				}
				col := w.cols[si][li]
				be.gemm(false, true, c.cout, k, np, 1, dmap, np, col, np, 1, g[c.W], k)
				if first {
					break
				}
				dcol := w.dcol[:k*np]
				be.gemm(true, false, k, np, c.cout, 1, c.W.W, k, dmap, np, 0, dcol, np)
				col2imCNHW(dcol, l.in, b, dinBuf)
			} else {
				if first {
					break
				}
				clear(dinBuf)
				for j, i := range w.idx[si][li] {
					dinBuf[i] += dmap[j]
				}
			}
			w.dmap[0], w.dmap[1] = w.dmap[1], w.dmap[0]
			dmap = w.dmap[0][:l.in.Size()*b]
		}
		// dmap now holds the gradient on this stage's input, which is the
		// previous stage's output map.
		dnext = dmap
	}
}
