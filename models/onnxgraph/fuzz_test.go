package onnxgraph

import (
	"os"
	"testing"
)

// FuzzDecodeInitializers: the ONNX reader of ReadWeights never panics or
// hangs on any bytes, and reads back every weight of a model the builder
// wrote.
func FuzzDecodeInitializers(f *testing.F) {
	golden, err := os.ReadFile("testdata/all-ops.onnx")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add(golden[:len(golden)/2])
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff})
	f.Add([]byte{0x3a, 0x02, 0x2a, 0x00})             // graph { initializer {} }
	f.Add([]byte{0x3a, 0x05, 0x2a, 0x03, 0x25, 0, 0}) // float_data fixed32 cut short
	f.Fuzz(func(t *testing.T, b []byte) {
		inits, err := decodeInitializers(b)
		if err != nil {
			return
		}
		for _, in := range inits {
			if len(in.raw) > len(b) || 4*len(in.floats) > len(b) {
				t.Fatalf("initializer %q larger than its payload", in.name)
			}
		}
	})
}

func TestDecodeInitializersRoundTrip(t *testing.T) {
	g := New("rt")
	g.NamedWeight("w", []int64{2, 2}, []float32{1, -2, 3.5, 0})
	g.int64Weight("shape", []int64{0, -1})
	inits, err := decodeInitializers(g.encode())
	if err != nil {
		t.Fatal(err)
	}
	if len(inits) != 2 || inits[0].name != "w" || inits[0].dataType != dataFloat || len(inits[0].raw) != 16 ||
		inits[1].name != "shape_0" || inits[1].dataType != dataInt64 {
		t.Fatalf("read back %+v", inits)
	}
}
