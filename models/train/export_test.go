package train

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestExportReproducesTheZoo reads the weights of the built-in mnist-ee
// back from its stage files and exports them again: every ONNX file comes
// out byte for byte as checked in (the ONNX writer is deterministic, and
// replacing its protobuf encoding changed no byte of what it writes).
func TestExportReproducesTheZoo(t *testing.T) {
	zooDir := filepath.Join("..", "zoo", ModelName)
	n, err := LoadNet(zooDir)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := Export(n, out, Evaluation{Accuracy: make([]float64, Exits)}, nil); err != nil {
		t.Fatal(err)
	}
	files := []string{MonolithicFile}
	for i := 0; i < Exits; i++ {
		files = append(files, stageFile(i))
	}
	for _, f := range files {
		want, err := os.ReadFile(filepath.Join(zooDir, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: exported %d bytes differ from the zoo's %d", f, len(got), len(want))
		}
	}
}
