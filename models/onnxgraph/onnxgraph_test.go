package onnxgraph_test

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/onnxgraph"
	ort "github.com/yalue/onnxruntime_go"
)

// golden is the model allOps writes, as the builder wrote it when it
// encoded through the generated ONNX protobuf types (gonnx): the hand
// encoder must write the same bytes.
const golden = "testdata/all-ops.onnx"

var update = flag.Bool("update", false, "rewrite "+golden)

// Sizes of the all-ops graph.
const (
	side  = 4 // input [N, 1, 4, 4]
	convC = 2 // conv channels
	outA  = 3 // classes of both heads
)

// weights returns n deterministic values in [-1, 1).
func weights(n int, seed float32) []float32 {
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(math.Mod(float64(seed)*float64(i+1)*0.37, 2)) - 1
	}
	return w
}

// allOps builds a graph with every builder call: each layer, named and
// fresh weights, a Reshape (int64 initializer), a FLOAT attribute, a
// symbolic batch dimension, metadata.
func allOps() *onnxgraph.Graph {
	g := onnxgraph.New("all-ops")
	g.SetMetadata("zeta", "last")
	g.SetMetadata("alpha", "first")
	x := g.Input("input", onnxgraph.Dims(-1, 1, side, side))
	c := g.Conv(x, weights(convC*9, 1.3), weights(convC, 0.7), convC, 1, 3, 1, 1, "conv1")
	r := g.Node("LeakyRelu", "", []string{c}, onnxgraph.Float("alpha", 0.125))
	p := g.MaxPool(g.Relu(r, ""), 2, "features") // [N, 2, 2, 2]
	flat := g.Reshape(p, []int64{0, -1}, "")     // [N, 8]
	a := g.Dense(flat, weights(outA*8, 0.9), weights(outA, 0.3), outA, 8, "head1")
	g.Identity(a, "logits_a")
	gap := g.Flatten(g.GlobalAveragePool(r, ""), "") // [N, 2]
	b := g.Dense(gap, weights(outA*convC, 1.1), weights(outA, 0.5), outA, convC, "")
	g.Identity(b, "logits_b")
	g.Output("features", onnxgraph.Dims(-1, convC, 2, 2))
	g.Output("logits_a", onnxgraph.Dims(-1, outA))
	g.Output("logits_b", []onnxgraph.Dim{{Param: "batch"}, {Value: outA}})
	return g
}

func TestMarshalIsUnchanged(t *testing.T) {
	got, err := allOps().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Marshal: %d bytes, differ from %s (%d bytes)", len(got), golden, len(want))
	}
	again, _ := allOps().Marshal()
	if !bytes.Equal(got, again) {
		t.Fatal("Marshal is not deterministic")
	}
}

func TestReadWeights(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := allOps().WriteFile(path); err != nil {
		t.Fatal(err)
	}
	w, err := onnxgraph.ReadWeights(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]float32{
		"conv1.weight": weights(convC*9, 1.3), "conv1.bias": weights(convC, 0.7),
		"head1.weight": weights(outA*8, 0.9), "head1.bias": weights(outA, 0.3),
		"fc_w_0": weights(outA*convC, 1.1), "fc_b_0": weights(outA, 0.5),
	} {
		got := w[name]
		if len(got) != len(want) {
			t.Errorf("%s: %d values, want %d", name, len(got), len(want))
			continue
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s[%d] = %g, want %g", name, i, got[i], want[i])
				break
			}
		}
	}
	if len(w) != 6 {
		t.Errorf("ReadWeights: %d float initializers, want 6 (the int64 shape is not one)", len(w))
	}
	if _, err := onnxgraph.ReadWeights(golden + ".missing"); err == nil {
		t.Error("a missing file: no error")
	}
	bad := filepath.Join(t.TempDir(), "bad.onnx")
	os.WriteFile(bad, []byte{0x0a, 0xff, 0xff}, 0o644)
	if _, err := onnxgraph.ReadWeights(bad); err == nil {
		t.Error("a truncated file: no error")
	}
}

// TestRunsInONNXRuntime loads the written model into ONNX Runtime and
// checks its outputs against the same network computed here.
func TestRunsInONNXRuntime(t *testing.T) {
	if err := models.InitRuntime(); err != nil {
		t.Skip(err)
	}
	b, err := allOps().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	outs := []string{"features", "logits_a", "logits_b"}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(b, []string{"input"}, outs, nil)
	if err != nil {
		t.Fatalf("ONNX Runtime refuses the model: %v", err)
	}
	defer sess.Destroy()
	const batch = 2
	in := weights(batch*side*side, 2.9)
	x, err := ort.NewTensor(ort.NewShape(batch, 1, side, side), in)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Destroy()
	got := make([]ort.Value, len(outs))
	if err := sess.Run([]ort.Value{x}, got); err != nil {
		t.Fatal(err)
	}
	want := reference(in, batch)
	for i, name := range outs {
		v := got[i].(*ort.Tensor[float32])
		defer v.Destroy()
		data := v.GetData()
		if len(data) != len(want[i]) {
			t.Fatalf("%s: %d values, want %d", name, len(data), len(want[i]))
		}
		for j := range data {
			if math.Abs(float64(data[j]-want[i][j])) > 1e-5 {
				t.Fatalf("%s[%d] = %g, want %g", name, j, data[j], want[i][j])
			}
		}
	}
}

// reference computes allOps' outputs for a batch of inputs.
func reference(in []float32, batch int) [3][]float32 {
	cw, cb := weights(convC*9, 1.3), weights(convC, 0.7)
	aw, ab := weights(outA*8, 0.9), weights(outA, 0.3)
	bw, bb := weights(outA*convC, 1.1), weights(outA, 0.5)
	var out [3][]float32
	for n := 0; n < batch; n++ {
		img := in[n*side*side : (n+1)*side*side]
		// Conv 3×3, pad 1, then LeakyRelu(0.125).
		var r [convC][side][side]float32
		for c := 0; c < convC; c++ {
			for y := 0; y < side; y++ {
				for x := 0; x < side; x++ {
					s := cb[c]
					for ky := 0; ky < 3; ky++ {
						for kx := 0; kx < 3; kx++ {
							iy, ix := y+ky-1, x+kx-1
							if iy >= 0 && iy < side && ix >= 0 && ix < side {
								s += cw[c*9+ky*3+kx] * img[iy*side+ix]
							}
						}
					}
					if s < 0 {
						s *= 0.125
					}
					r[c][y][x] = s
				}
			}
		}
		// Relu, MaxPool 2 → features [2, 2, 2]; GlobalAveragePool of r.
		var feat []float32
		gap := make([]float32, convC)
		for c := 0; c < convC; c++ {
			for y := 0; y < side; y += 2 {
				for x := 0; x < side; x += 2 {
					m := float32(0) // max of Relu values
					for _, v := range []float32{r[c][y][x], r[c][y][x+1], r[c][y+1][x], r[c][y+1][x+1]} {
						m = max(m, v)
					}
					feat = append(feat, m)
				}
			}
			for y := 0; y < side; y++ {
				for x := 0; x < side; x++ {
					gap[c] += r[c][y][x]
				}
			}
			gap[c] /= side * side
		}
		out[0] = append(out[0], feat...)
		out[1] = append(out[1], dense(feat, aw, ab)...)
		out[2] = append(out[2], dense(gap, bw, bb)...)
	}
	return out
}

// dense is x·Wᵀ + b with W as [len(b), len(x)].
func dense(x, w, b []float32) []float32 {
	y := make([]float32, len(b))
	for o := range y {
		y[o] = b[o]
		for i, v := range x {
			y[o] += w[o*len(x)+i] * v
		}
	}
	return y
}
