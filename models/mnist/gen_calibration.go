//go:build ignore

// gen_calibration writes the embedded calibration split: the last
// mnist.CalibrationSize images of the MNIST training file, as gzip'd IDX
// files in data/. Run with `go generate ./models/mnist`.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/delen-edge/delen/models/mnist"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gen_calibration:", err)
		os.Exit(1)
	}
}

func run() error {
	all, err := mnist.AllTraining()
	if err != nil {
		return err
	}
	cal := all.Slice(mnist.TrainSize, all.Len())
	imgs := binary.BigEndian.AppendUint32(nil, 0x803)
	imgs = binary.BigEndian.AppendUint32(imgs, uint32(cal.Len()))
	imgs = binary.BigEndian.AppendUint32(imgs, mnist.Side)
	imgs = binary.BigEndian.AppendUint32(imgs, mnist.Side)
	for _, im := range cal.Images {
		imgs = append(imgs, im...)
	}
	labs := binary.BigEndian.AppendUint32(nil, 0x801)
	labs = binary.BigEndian.AppendUint32(labs, uint32(cal.Len()))
	labs = append(labs, cal.Labels...)
	for name, b := range map[string][]byte{
		"calibration-images-idx3-ubyte.gz": imgs,
		"calibration-labels-idx1-ubyte.gz": labs,
	} {
		var buf bytes.Buffer
		z, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if _, err := z.Write(b); err != nil {
			return err
		}
		if err := z.Close(); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join("data", name), buf.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Printf("wrote data/%s (%d images, %d bytes)\n", name, cal.Len(), buf.Len())
	}
	return nil
}
