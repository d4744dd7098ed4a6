// Package onnxgraph builds small ONNX inference graphs (convolutions,
// pooling, dense layers) from Go and serialises them as ONNX model files.
//
// It is what the trainer uses to export a multi-exit network stage by stage,
// what the replica generator uses to write cost-replica models, and what
// tests use to write fixtures. Every op it emits is in the default ONNX
// domain at opset 13, which every ONNX Runtime release since 1.8 runs.
//
// The protobuf encoding is written by hand (encode.go) for exactly the
// messages the builder emits, so the package needs no generated ONNX types
// and their dependencies; the bytes are those a generated encoder writes in
// deterministic mode (testdata/all-ops.onnx pins them).
package onnxgraph

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"sort"
)

// Opset is the ONNX operator set version the builder targets.
const Opset = 13

// irVersion 8 is the IR that opset 13 shipped with.
const irVersion = 8

// Dim is one dimension of a graph input or output: a fixed size, or a named
// symbolic size (such as the batch dimension "N") when Param is set.
type Dim struct {
	Value int64
	Param string
}

// Dims turns fixed sizes into Dims; a negative size becomes the symbolic
// batch dimension "N".
func Dims(sizes ...int64) []Dim {
	d := make([]Dim, len(sizes))
	for i, s := range sizes {
		if s < 0 {
			d[i] = Dim{Param: "N"}
		} else {
			d[i] = Dim{Value: s}
		}
	}
	return d
}

// Graph accumulates nodes, weights, inputs and outputs of one ONNX graph.
// The zero value is not usable; start with New.
type Graph struct {
	name    string
	nodes   []node
	inits   []tensor
	inputs  []valueInfo
	outputs []valueInfo
	names   map[string]int
	meta    map[string]string
}

// node is one NodeProto: an op with its inputs, single output and
// attributes.
type node struct {
	name, op string
	inputs   []string
	output   string
	attrs    []*Attribute
}

// tensor is one initializer (TensorProto): float32 weights as raw
// little-endian bytes, or int64 values.
type tensor struct {
	name     string
	dims     []int64
	dataType int32
	raw      []byte
	int64s   []int64
	floats   []float32 // float_data, when read from a file
}

// valueInfo is a float32 graph input or output (ValueInfoProto).
type valueInfo struct {
	name string
	dims []Dim
}

// Attribute is one attribute of a node (AttributeProto); make one with
// Int, Ints or Float.
type Attribute struct {
	name string
	typ  int32 // attrFloat, attrInt or attrInts
	f    float32
	i    int64
	ints []int64
}

// New starts an empty graph with the given name.
func New(name string) *Graph {
	return &Graph{name: name, names: map[string]int{}, meta: map[string]string{}}
}

// fresh returns a unique tensor name built from prefix.
func (g *Graph) fresh(prefix string) string {
	n := g.names[prefix]
	g.names[prefix] = n + 1
	return fmt.Sprintf("%s_%d", prefix, n)
}

// Input declares a float32 graph input.
func (g *Graph) Input(name string, dims []Dim) string {
	g.inputs = append(g.inputs, valueInfo{name, append([]Dim(nil), dims...)})
	return name
}

// Output declares the tensor named name as a float32 graph output.
func (g *Graph) Output(name string, dims []Dim) {
	g.outputs = append(g.outputs, valueInfo{name, append([]Dim(nil), dims...)})
}

// SetMetadata stores a key/value pair in the model's metadata_props.
func (g *Graph) SetMetadata(key, value string) { g.meta[key] = value }

// params adds a layer's weight and bias. They are named "<layer>.weight"
// and "<layer>.bias" when the layer's output has a name, so tools can find
// them again (see ReadWeights); fresh names are used otherwise.
func (g *Graph) params(layer, kind string, shape []int64, w, b []float32) (string, string) {
	if layer == "" {
		return g.Weight(kind+"_w", shape, w), g.Weight(kind+"_b", shape[:1], b)
	}
	return g.NamedWeight(layer+".weight", shape, w), g.NamedWeight(layer+".bias", shape[:1], b)
}

// Weight adds a float32 initializer with a fresh name built from prefix and
// returns that name.
func (g *Graph) Weight(prefix string, shape []int64, data []float32) string {
	return g.NamedWeight(g.fresh(prefix), shape, data)
}

// NamedWeight adds a float32 initializer called name and returns name.
func (g *Graph) NamedWeight(name string, shape []int64, data []float32) string {
	var n int64 = 1
	for _, s := range shape {
		n *= s
	}
	if int64(len(data)) != n {
		panic(fmt.Sprintf("onnxgraph: weight %s: %d values for shape %v", name, len(data), shape))
	}
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	g.inits = append(g.inits, tensor{name: name, dims: append([]int64(nil), shape...), dataType: dataFloat, raw: raw})
	return name
}

// int64Weight adds an int64 initializer (shapes for Reshape) and returns its name.
func (g *Graph) int64Weight(prefix string, data []int64) string {
	name := g.fresh(prefix)
	g.inits = append(g.inits, tensor{name: name, dims: []int64{int64(len(data))}, dataType: dataInt64, int64s: append([]int64(nil), data...)})
	return name
}

// Node adds one node and returns the name of its (single) output, which is
// out when given, or a fresh name otherwise.
func (g *Graph) Node(op, out string, inputs []string, attrs ...*Attribute) string {
	if out == "" {
		out = g.fresh(op)
	}
	g.nodes = append(g.nodes, node{name: g.fresh("n_" + op), op: op, inputs: inputs, output: out, attrs: attrs})
	return out
}

// Ints is an INTS attribute.
func Ints(name string, v ...int64) *Attribute {
	return &Attribute{name: name, typ: attrInts, ints: v}
}

// Int is an INT attribute.
func Int(name string, v int64) *Attribute {
	return &Attribute{name: name, typ: attrInt, i: v}
}

// Float is a FLOAT attribute.
func Float(name string, v float32) *Attribute {
	return &Attribute{name: name, typ: attrFloat, f: v}
}

// Conv adds a 2-D convolution (weights [out, in, k, k], bias [out]) with the
// given stride and symmetric padding.
func (g *Graph) Conv(x string, w []float32, b []float32, out, in, k, stride, pad int64, name string) string {
	wn, bn := g.params(name, "conv", []int64{out, in, k, k}, w, b)
	return g.Node("Conv", name, []string{x, wn, bn},
		Ints("kernel_shape", k, k), Ints("strides", stride, stride), Ints("pads", pad, pad, pad, pad))
}

// Relu adds max(x, 0).
func (g *Graph) Relu(x, name string) string { return g.Node("Relu", name, []string{x}) }

// MaxPool adds k×k max pooling with stride k.
func (g *Graph) MaxPool(x string, k int64, name string) string {
	return g.Node("MaxPool", name, []string{x}, Ints("kernel_shape", k, k), Ints("strides", k, k))
}

// GlobalAveragePool averages each channel over its spatial dimensions.
func (g *Graph) GlobalAveragePool(x, name string) string {
	return g.Node("GlobalAveragePool", name, []string{x})
}

// Flatten reshapes [N, ...] into [N, prod(...)].
func (g *Graph) Flatten(x, name string) string {
	return g.Node("Flatten", name, []string{x}, Int("axis", 1))
}

// Dense adds y = x·Wᵀ + b with W stored as [out, in] (Gemm, transB=1).
func (g *Graph) Dense(x string, w []float32, b []float32, out, in int64, name string) string {
	wn, bn := g.params(name, "fc", []int64{out, in}, w, b)
	return g.Node("Gemm", name, []string{x, wn, bn}, Int("transB", 1))
}

// Identity copies x to a tensor named name (to give an internal tensor a
// public output name).
func (g *Graph) Identity(x, name string) string { return g.Node("Identity", name, []string{x}) }

// Reshape reshapes x to shape (0 keeps a dimension, -1 infers one).
func (g *Graph) Reshape(x string, shape []int64, name string) string {
	s := g.int64Weight("shape", shape)
	return g.Node("Reshape", name, []string{x, s})
}

// Marshal serialises the model deterministically: the same graph always
// gives the same bytes (see encode.go for the encoding).
func (g *Graph) Marshal() ([]byte, error) {
	return g.encode(), nil
}

// WriteFile serialises the model into path.
func (g *Graph) WriteFile(path string) error {
	b, err := g.Marshal()
	if err != nil {
		return fmt.Errorf("marshal %s: %w", g.name, err)
	}
	return os.WriteFile(path, b, 0o644)
}

// sortedMeta returns the metadata keys in order.
func (g *Graph) sortedMeta() []string {
	keys := make([]string, 0, len(g.meta))
	for k := range g.meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ReadWeights returns the float32 initializers of an ONNX file by name
// (those stored as raw data or float_data).
func ReadWeights(path string) (map[string][]float32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	inits, err := decodeInitializers(b)
	if err != nil {
		return nil, fmt.Errorf("%s: not an ONNX model: %w", path, err)
	}
	out := map[string][]float32{}
	for _, t := range inits {
		if t.dataType != dataFloat {
			continue
		}
		if raw := t.raw; len(raw) > 0 {
			if len(raw)%4 != 0 {
				return nil, fmt.Errorf("%s: initializer %s has %d raw bytes", path, t.name, len(raw))
			}
			v := make([]float32, len(raw)/4)
			for i := range v {
				v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
			out[t.name] = v
		} else {
			out[t.name] = t.floats
		}
	}
	return out, nil
}
