package imagein_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/imagein"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/schema"
)

// tool finds an outside image tool from Debian's packages: ImageMagick's
// /usr/bin/convert (not another program of that name on PATH) or ffmpeg.
// It fails in CI, where `make setup` installs them, and skips elsewhere.
func tool(t testing.TB, name string) string {
	t.Helper()
	var p string
	switch name {
	case "convert":
		p = "/usr/bin/convert"
		if out, err := exec.Command(p, "-version").Output(); err != nil || !bytes.Contains(out, []byte("ImageMagick")) {
			p = ""
		}
	default:
		p, _ = exec.LookPath(name)
	}
	if p == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (make setup installs it)", name)
		}
		t.Skipf("%s not found", name)
	}
	return p
}

// run runs an image tool and returns the file it wrote.
func run(t testing.TB, out string, prog string, args ...string) []byte {
	t.Helper()
	if b, err := exec.Command(prog, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(prog), strings.Join(args, " "), err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pgm writes a gray image as a binary PGM, which both tools read.
func pgm(t testing.TB, dir, name string, w, h int, pix []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	b := append([]byte(fmt.Sprintf("P5\n%d %d\n255\n", w, h)), pix...)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func digit(t testing.TB, i int) []byte {
	t.Helper()
	s, err := mnist.Test()
	if err != nil {
		t.Fatal(err)
	}
	return s.Images[i]
}

// meanAbsDiff is the mean absolute difference of two equal-length pixel
// slices.
func meanAbsDiff(a, b []byte) float64 {
	var sum float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		if d < 0 {
			d = -d
		}
		sum += d
	}
	return sum / float64(len(a))
}

var gray28 = imagein.Layout{Channels: 1, Height: 28, Width: 28}

// TestToolMadeImages decodes images written by ImageMagick and ffmpeg and
// compares the pixels with what the tools were given (or, for resizing, with
// ImageMagick's own resize of the same frame).
func TestToolMadeImages(t *testing.T) {
	convert, ffmpeg := tool(t, "convert"), tool(t, "ffmpeg")
	dir := t.TempDir()
	d7 := digit(t, 0)
	src := pgm(t, dir, "digit.pgm", 28, 28, d7)
	// A 160×120 gray "camera frame": the digit scaled up by ImageMagick.
	frame := filepath.Join(dir, "frame.pgm")
	run(t, frame, convert, src, "-filter", "triangle", "-resize", "160x120!", frame)
	small := filepath.Join(dir, "frame-small.pgm")
	ref := run(t, small, convert, frame, "-filter", "triangle", "-resize", "28x28!", small)
	refPix := ref[len(ref)-28*28:]

	tests := []struct {
		name    string
		format  string
		make    func(out string) []byte
		layout  imagein.Layout
		want    []byte  // expected pixels
		maxDiff float64 // mean absolute difference allowed
	}{
		{"imagemagick png", schema.FormatPNG, func(o string) []byte { return run(t, o, convert, src, o) }, gray28, d7, 0},
		{"imagemagick jpeg q95", schema.FormatJPEG, func(o string) []byte { return run(t, o, convert, src, "-quality", "95", o) }, gray28, d7, 2},
		{"ffmpeg png", schema.FormatPNG, func(o string) []byte { return run(t, o, ffmpeg, "-loglevel", "error", "-y", "-i", src, o) }, gray28, d7, 0},
		{"ffmpeg mjpeg", schema.FormatJPEG, func(o string) []byte {
			return run(t, o, ffmpeg, "-loglevel", "error", "-y", "-i", src, "-q:v", "2", o)
		}, gray28, d7, 2},
		{"rgb png to gray", schema.FormatPNG, func(o string) []byte { return run(t, o, convert, src, "-type", "TrueColor", "PNG24:"+o) }, gray28, d7, 0.5},
		{"gray png to rgb", schema.FormatPNG, func(o string) []byte { return run(t, o, convert, src, o) },
			imagein.Layout{Channels: 3, Height: 28, Width: 28}, bytes.Repeat(d7, 3), 0},
		{"png with alpha", schema.FormatPNG, func(o string) []byte { return run(t, o, convert, src, "-alpha", "on", "PNG32:"+o) }, gray28, d7, 0.5},
		{"160x120 png resized", schema.FormatPNG, func(o string) []byte { return run(t, o, convert, frame, o) }, gray28, refPix, 1},
		{"160x120 jpeg resized", schema.FormatJPEG, func(o string) []byte { return run(t, o, convert, frame, "-quality", "90", o) }, gray28, refPix, 1.5},
		{"progressive jpeg", schema.FormatJPEG, func(o string) []byte {
			return run(t, o, convert, src, "-interlace", "JPEG", "-quality", "95", o)
		}, gray28, d7, 4},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, fmt.Sprintf("%d.%s", i, map[string]string{"jpeg": "jpg", "png": "png"}[tc.format]))
			file := tc.make(out)
			px, err := imagein.Pixels(tc.format, file, tc.layout, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(px) != len(tc.want) {
				t.Fatalf("%d pixels, want %d", len(px), len(tc.want))
			}
			d := meanAbsDiff(px, tc.want)
			t.Logf("%d bytes, mean absolute difference %.2f", len(file), d)
			if d > tc.maxDiff {
				t.Errorf("mean absolute difference %.2f, want ≤ %.2f", d, tc.maxDiff)
			}
		})
	}
}

// TestColourConversion: a solid colour made by ImageMagick becomes its luma
// in a gray layout and its three components in an RGB one.
func TestColourConversion(t *testing.T) {
	convert := tool(t, "convert")
	dir := t.TempDir()
	for _, f := range []struct {
		format, ext string
		tol         float64
	}{{schema.FormatPNG, "png", 0}, {schema.FormatJPEG, "jpg", 3}} {
		out := filepath.Join(dir, "c."+f.ext)
		file := run(t, out, convert, "-size", "64x48", "xc:rgb(200,100,50)", "-quality", "95", out)
		rgb, err := imagein.Pixels(f.format, file, imagein.Layout{Channels: 3, Height: 8, Width: 8}, 0)
		if err != nil {
			t.Fatal(err)
		}
		for c, want := range []byte{200, 100, 50} {
			if d := meanAbsDiff(rgb[c*64:(c+1)*64], bytes.Repeat([]byte{want}, 64)); d > f.tol {
				t.Errorf("%s: channel %d differs from %d by %.2f", f.format, c, want, d)
			}
		}
		gray, err := imagein.Pixels(f.format, file, imagein.Layout{Channels: 1, Height: 8, Width: 8}, 0)
		if err != nil {
			t.Fatal(err)
		}
		luma := byte((19595*200 + 38470*100 + 7471*50 + 1<<15) >> 16) // ITU-R 601, as color.GrayModel
		if d := meanAbsDiff(gray, bytes.Repeat([]byte{luma}, 64)); d > f.tol+1 {
			t.Errorf("%s: gray differs from luma %d by %.2f", f.format, luma, d)
		}
	}
}

// pngBomb is a valid PNG header (signature and IHDR with a correct CRC)
// declaring w × h pixels, followed by nothing: a decoder that allocated
// before checking would take w × h bytes.
func pngBomb(w, h uint32) []byte {
	var ihdr bytes.Buffer
	ihdr.WriteString("IHDR")
	binary.Write(&ihdr, binary.BigEndian, w)
	binary.Write(&ihdr, binary.BigEndian, h)
	ihdr.Write([]byte{8, 0, 0, 0, 0}) // 8-bit gray
	b := []byte("\x89PNG\r\n\x1a\n")
	b = binary.BigEndian.AppendUint32(b, 13)
	b = append(b, ihdr.Bytes()...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(ihdr.Bytes()))
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func digitPNG(t testing.TB) []byte {
	return encodePNG(t, &image.Gray{Pix: digit(t, 0), Stride: 28, Rect: image.Rect(0, 0, 28, 28)})
}

// TestRefused: images beyond the pixel limit are too_large before they are
// decoded; corrupt, truncated and mislabelled ones are bad_request.
func TestRefused(t *testing.T) {
	good := digitPNG(t)
	jpegMagic := []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F', 0}
	tests := []struct {
		name, format string
		data         []byte
		maxPixels    int
		code, msg    string
	}{
		{"bomb over the default limit", schema.FormatPNG, pngBomb(100000, 100000), 0, schema.CodeTooLarge, "100000×100000 = 10000000000 pixels, more than the limit of 16777216"},
		{"4097x4096 over the default limit", schema.FormatPNG, pngBomb(4097, 4096), 0, schema.CodeTooLarge, "more than the limit"},
		{"over a configured limit", schema.FormatPNG, good, 28*28 - 1, schema.CodeTooLarge, "28×28 = 784 pixels, more than the limit of 783"},
		{"header only at the limit", schema.FormatPNG, pngBomb(4096, 4096), 0, schema.CodeBadRequest, "does not decode"},
		{"truncated png", schema.FormatPNG, good[:len(good)/2], 0, schema.CodeBadRequest, "does not decode"},
		{"png header cut", schema.FormatPNG, good[:20], 0, schema.CodeBadRequest, "not a valid png file"},
		{"png labelled jpeg", schema.FormatJPEG, good, 0, schema.CodeBadRequest, "not a valid jpeg file"},
		{"jpeg magic only", schema.FormatJPEG, jpegMagic, 0, schema.CodeBadRequest, "jpeg"},
		{"random bytes", schema.FormatPNG, []byte("not an image at all"), 0, schema.CodeBadRequest, "not a valid png file"},
		{"zero width", schema.FormatPNG, pngBomb(0, 5), 0, schema.CodeBadRequest, "png"},
		{"unknown format", "gif", []byte("GIF89a"), 0, schema.CodeBadRequest, `"gif" is not supported`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := imagein.Pixels(tc.format, tc.data, gray28, tc.maxPixels)
			var e *schema.Error
			if !errors.As(err, &e) || e.Code != tc.code || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("error %v, want %s containing %q", err, tc.code, tc.msg)
			}
		})
	}
}

// TestToolMadeCorruption: a JPEG from ImageMagick cut short, and one with
// its entropy-coded data overwritten, are bad_request (or, where the
// standard decoder still recovers a picture, decode to the right size).
func TestToolMadeCorruption(t *testing.T) {
	convert := tool(t, "convert")
	dir := t.TempDir()
	src := pgm(t, dir, "d.pgm", 28, 28, digit(t, 1))
	jpg := run(t, filepath.Join(dir, "d.jpg"), convert, src, "-quality", "90", filepath.Join(dir, "d.jpg"))
	for _, cut := range []int{len(jpg) / 4, len(jpg) / 2, len(jpg) - 3} {
		_, err := imagein.Pixels(schema.FormatJPEG, jpg[:cut], gray28, 0)
		if schema.CodeOf(err) != schema.CodeBadRequest {
			t.Errorf("jpeg cut at %d of %d bytes: %v, want bad_request", cut, len(jpg), err)
		}
	}
}

func TestLayoutOf(t *testing.T) {
	tests := []struct {
		shape []int64
		want  imagein.Layout
		ok    bool
	}{
		{[]int64{28, 28}, gray28, true},
		{[]int64{1, 28, 28}, gray28, true},
		{[]int64{3, 224, 224}, imagein.Layout{Channels: 3, Height: 224, Width: 224}, true},
		{[]int64{2, 28, 28}, imagein.Layout{}, false},
		{[]int64{784}, imagein.Layout{}, false},
		{[]int64{1, 1, 28, 28}, imagein.Layout{}, false},
		{[]int64{1, 0, 28}, imagein.Layout{}, false},
	}
	for _, tc := range tests {
		got, ok := imagein.LayoutOf(tc.shape)
		if got != tc.want || ok != tc.ok {
			t.Errorf("LayoutOf(%v) = %v, %v; want %v, %v", tc.shape, got, ok, tc.want, tc.ok)
		}
	}
}

// TestInputNormalises: Input gives what the model gets from the same
// pixels as a uint8 tensor, and refuses a model whose input is no image.
func TestInputNormalises(t *testing.T) {
	man := &models.Manifest{Name: "m", Input: models.InputSpec{DType: "float32", Shape: []int64{1, 28, 28}, Scale: 1.0 / 255,
		Mean: []float32{0.1307}, Std: []float32{0.3081}}}
	got, err := imagein.Input(man, schema.FormatPNG, digitPNG(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, 28*28)
	man.Normalize(want, digit(t, 0))
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("element %d: %v, want %v", i, got[i], want[i])
		}
	}
	flat := &models.Manifest{Name: "flat", Input: models.InputSpec{Shape: []int64{784}}}
	if _, err := imagein.Input(flat, schema.FormatPNG, digitPNG(t), 0); schema.CodeOf(err) != schema.CodeShapeMismatch {
		t.Errorf("flat model: %v, want shape_mismatch", err)
	}
}

// FuzzPixels: no input crashes or hangs the image path; every failure is a
// bad_request or too_large, and every success has the layout's size. The
// seed corpus has valid PNG and JPEG files (gray, RGB, paletted), cut ones
// and a header bomb; testdata/fuzz/FuzzPixels holds files written by
// ImageMagick and ffmpeg.
func FuzzPixels(f *testing.F) {
	gray := &image.Gray{Pix: digit(f, 0), Stride: 28, Rect: image.Rect(0, 0, 28, 28)}
	rgb := image.NewRGBA(image.Rect(0, 0, 13, 7))
	for i := range rgb.Pix {
		rgb.Pix[i] = byte(i * 7)
	}
	pal := image.NewPaletted(image.Rect(0, 0, 5, 5), color.Palette{color.Black, color.White})
	for _, img := range []image.Image{gray, rgb, pal} {
		b := encodePNG(f, img)
		f.Add(schema.FormatPNG, b, 3)
		f.Add(schema.FormatPNG, b[:len(b)*2/3], 1)
		f.Add(schema.FormatJPEG, b, 1)
	}
	f.Add(schema.FormatPNG, pngBomb(1<<20, 1<<20), 1)
	f.Add(schema.FormatJPEG, []byte{0xff, 0xd8, 0xff, 0xdb, 0, 0x43, 0}, 3)
	f.Fuzz(func(t *testing.T, format string, data []byte, channels int) {
		l := imagein.Layout{Channels: 1, Height: 9, Width: 11}
		if channels%2 == 1 {
			l.Channels = 3
		}
		px, err := imagein.Pixels(format, data, l, 1<<16)
		if err != nil {
			if c := schema.CodeOf(err); c != schema.CodeBadRequest && c != schema.CodeTooLarge {
				t.Fatalf("error %v: code %s", err, c)
			}
			return
		}
		if len(px) != l.Channels*l.Height*l.Width {
			t.Fatalf("%d pixels for layout %+v", len(px), l)
		}
	})
}

// BenchmarkPixels decodes and resizes a 640×480 JPEG camera frame made by
// ffmpeg (its test pattern) into MNIST's 28×28 gray input.
func BenchmarkPixels(b *testing.B) {
	ffmpeg := tool(b, "ffmpeg")
	out := filepath.Join(b.TempDir(), "frame.jpg")
	frame := run(b, out, ffmpeg, "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=640x480", "-frames:v", "1", "-q:v", "5", out)
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := imagein.Pixels(schema.FormatJPEG, frame, gray28, 0); err != nil {
			b.Fatal(err)
		}
	}
}
