package agent_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/schema"
)

// imageTool finds ImageMagick (its /usr/bin/convert or mogrify, not a
// stand-in of that name elsewhere on PATH) or ffmpeg; it fails in CI, where
// `make setup` installs them, and skips elsewhere.
func imageTool(t *testing.T, name string) string {
	t.Helper()
	p := "/usr/bin/" + name
	ok := false
	switch name {
	case "convert", "mogrify":
		out, err := exec.Command(p, "-version").Output()
		ok = err == nil && bytes.Contains(out, []byte("ImageMagick"))
	default:
		var err error
		p, err = exec.LookPath(name)
		ok = err == nil
	}
	if !ok {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (make setup installs it)", name)
		}
		t.Skipf("%s not found", name)
	}
	return p
}

// writeDigits writes MNIST test images 0..n-1 as binary PGM files
// dir/00000.pgm … for the image tools to read.
func writeDigits(t *testing.T, dir string, n int) {
	t.Helper()
	for i := range n {
		b := append([]byte("P5\n28 28\n255\n"), testSet.Images[i]...)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d.pgm", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func runTool(t *testing.T, dir, prog string, args ...string) {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(prog), err, out)
	}
}

// imageAccuracyN is how many MNIST test images TestMNISTThroughImages
// sends in each form; DELEN_IMAGE_ACCURACY_N=10000 runs the whole test set.
func imageAccuracyN(t *testing.T) int {
	n := 2000
	if s := os.Getenv("DELEN_IMAGE_ACCURACY_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > testSet.Len() {
			t.Fatalf("DELEN_IMAGE_ACCURACY_N=%q: want 1..%d", s, testSet.Len())
		}
		n = v
	}
	return n
}

// TestMNISTThroughImages sends MNIST test digits to the agent three ways,
// at the last exit: as the raw uint8 tensor, as PNG files written by
// ffmpeg and as JPEG files written by ImageMagick (quality 90). A PNG is
// lossless, so every digit must get the same class as its raw tensor;
// JPEG's loss may change a few, and accuracy must stay within half a
// point of the raw tensors'.
func TestMNISTThroughImages(t *testing.T) {
	ffmpeg, mogrify := imageTool(t, "ffmpeg"), imageTool(t, "mogrify")
	n := imageAccuracyN(t)
	dir := t.TempDir()
	writeDigits(t, dir, n)
	runTool(t, dir, ffmpeg, "-loglevel", "error", "-i", "%05d.pgm", "-start_number", "0", "%05d.png")
	runTool(t, dir, mogrify, "-format", "jpg", "-quality", "90", "*.pgm")

	url := startEmbedded(t, broker.EmbeddedConfig{}).Addr()
	startAgent(t, url, t.TempDir(), func(c *agent.Config) { c.QueueLimit = 3 * n })
	cam := newTenant(t, url, "cam1")
	exit := 3
	forms := []string{"raw", "png", "jpeg"}
	var jpegBytes, pngBytes int
	for i := range n {
		label := testSet.Label(i)
		for _, form := range forms {
			req := &schema.Request{ID: fmt.Sprintf("%s-%d", form, i), Bound: schema.Bound{Exit: &exit}, Label: &label}
			switch form {
			case "raw":
				req.Input = schema.NewUint8Tensor([]int{1, 28, 28}, testSet.Images[i])
			case "png", "jpeg":
				ext := map[string]string{"png": "png", "jpeg": "jpg"}[form]
				b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%05d.%s", i, ext)))
				if err != nil {
					t.Fatal(err)
				}
				if form == "png" {
					pngBytes += len(b)
				} else {
					jpegBytes += len(b)
				}
				req.Input = schema.Tensor{Format: form, Data: b}
			}
			enc := schema.MsgPack
			if i%10 == 0 {
				enc = schema.JSON // base64 image data in JSON too
			}
			cam.send(req, enc)
		}
	}
	correct := map[string]int{}
	differ := 0
	for i := range n {
		classes := map[string]int{}
		for _, form := range forms {
			r := cam.wait(fmt.Sprintf("%s-%d", form, i))
			if r.Status != schema.StatusOK || r.Class == nil || r.Exit != exit {
				t.Fatalf("%s-%d: status %s exit %d error %+v", form, i, r.Status, r.Exit, r.Error)
			}
			classes[form] = *r.Class
			if *r.Class == testSet.Label(i) {
				correct[form]++
			}
		}
		if classes["png"] != classes["raw"] {
			t.Errorf("digit %d: class %d as PNG, %d as the raw tensor", i, classes["png"], classes["raw"])
		}
		if classes["jpeg"] != classes["raw"] {
			differ++
		}
	}
	acc := func(form string) float64 { return float64(correct[form]) / float64(n) }
	t.Logf("%d MNIST test digits at exit %d: accuracy raw tensor %.4f, PNG (ffmpeg) %.4f, JPEG q90 (ImageMagick) %.4f; JPEG changed %d classes; mean file size PNG %d B, JPEG %d B, raw tensor %d B",
		n, exit, acc("raw"), acc("png"), acc("jpeg"), differ, pngBytes/n, jpegBytes/n, 28*28)
	if acc("jpeg") < acc("raw")-0.005 {
		t.Errorf("JPEG accuracy %.4f is more than half a point below the raw tensors' %.4f", acc("jpeg"), acc("raw"))
	}
}

// TestImageErrors: images the agent cannot or will not decode get an error
// result with the request's id and the right code, and the agent goes on
// serving; a camera-sized colour frame is resized and served.
func TestImageErrors(t *testing.T) {
	convert, ffmpeg := imageTool(t, "convert"), imageTool(t, "ffmpeg")
	dir := t.TempDir()
	writeDigits(t, dir, 1)
	runTool(t, dir, convert, "00000.pgm", "d.png")
	runTool(t, dir, convert, "00000.pgm", "-quality", "90", "d.jpg")
	runTool(t, dir, ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=640x480", "-frames:v", "1", "frame.jpg")
	runTool(t, dir, convert, "-size", "700x500", "xc:gray", "big.png")
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	png, jpg, frame, big := read("d.png"), read("d.jpg"), read("frame.jpg"), read("big.png")

	brokers(t, func(t *testing.T, url string) {
		// 640×480 passes; 700×500 is too_large.
		startAgent(t, url, t.TempDir(), func(c *agent.Config) { c.MaxPixels = 640 * 480 })
		cam := newTenant(t, url, "cam1")
		img := func(id, format string, b []byte) func() {
			return func() {
				cam.send(&schema.Request{ID: id, Input: schema.Tensor{Format: format, Data: b}}, schema.MsgPack)
			}
		}
		cases := []struct {
			id     string
			send   func()
			status string
			code   string
		}{
			{"png", img("png", schema.FormatPNG, png), schema.StatusOK, ""},
			{"jpeg", img("jpeg", schema.FormatJPEG, jpg), schema.StatusOK, ""},
			{"frame", img("frame", schema.FormatJPEG, frame), schema.StatusOK, ""},
			{"json", func() {
				cam.publish([]byte(`{"id":"json","input":{"format":"png","data":"` + base64.StdEncoding.EncodeToString(png) + `"}}`))
			}, schema.StatusOK, ""},
			{"truncated-jpeg", img("truncated-jpeg", schema.FormatJPEG, jpg[:len(jpg)/2]), schema.StatusError, schema.CodeBadRequest},
			{"truncated-png", img("truncated-png", schema.FormatPNG, png[:len(png)-20]), schema.StatusError, schema.CodeBadRequest},
			{"mislabelled", img("mislabelled", schema.FormatJPEG, png), schema.StatusError, schema.CodeBadRequest},
			{"garbage", img("garbage", schema.FormatPNG, []byte("not a png")), schema.StatusError, schema.CodeBadRequest},
			{"gif", img("gif", "gif", []byte("GIF89a")), schema.StatusError, schema.CodeBadRequest},
			{"image-and-shape", func() {
				cam.send(&schema.Request{ID: "image-and-shape", Input: schema.Tensor{Format: schema.FormatPNG, Shape: []int{1, 28, 28}, Data: png}}, schema.MsgPack)
			}, schema.StatusError, schema.CodeBadRequest},
			{"too-many-pixels", img("too-many-pixels", schema.FormatPNG, big), schema.StatusError, schema.CodeTooLarge},
		}
		for _, c := range cases {
			c.send()
		}
		for _, c := range cases {
			r := cam.wait(c.id)
			code := ""
			if r.Error != nil {
				code = r.Error.Code
			}
			if r.Status != c.status || code != c.code {
				t.Errorf("%s: status %s error %+v, want %s %s", c.id, r.Status, r.Error, c.status, c.code)
			}
			if r.Status == schema.StatusOK && (r.Class == nil || r.Exit < 1) {
				t.Errorf("%s: served without a class: %+v", c.id, r)
			}
		}
		if r := cam.wait("png"); r.Class == nil || *r.Class != testSet.Label(0) {
			t.Errorf("digit 0 as PNG: class %v, label %d", r.Class, testSet.Label(0))
		}
		cam.send(digit("after", 3, schema.Bound{}), schema.MsgPack)
		if r := cam.wait("after"); r.Status != schema.StatusOK {
			t.Errorf("good request after bad images: %s", r.Status)
		}
	})
}
