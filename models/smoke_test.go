package models

import (
	"path/filepath"
	"testing"

	"github.com/delen-edge/delen/models/onnxgraph"
	ort "github.com/yalue/onnxruntime_go"
)

func TestSmokeORT(t *testing.T) {
	if err := InitRuntime(); err != nil {
		t.Fatal(err)
	}
	g := onnxgraph.New("smoke")
	x := g.Input("input", onnxgraph.Dims(-1, 1, 4, 4))
	c := g.Conv(x, make([]float32, 2*1*3*3), []float32{1, 2}, 2, 1, 3, 1, 1, "")
	f := g.Flatten(c, "")
	g.Dense(f, make([]float32, 3*32), []float32{5, 6, 7}, 3, 32, "output")
	g.Output("output", onnxgraph.Dims(-1, 3))
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := g.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	ins, outs, err := ort.GetInputOutputInfo(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(ins, outs)
	path, v := RuntimeInfo()
	t.Log(path, v)
}
