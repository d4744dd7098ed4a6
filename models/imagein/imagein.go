// Package imagein turns an encoded image, as cameras send it (JPEG or PNG),
// into a model's input: it checks the pixel count in the file's header
// before decoding (no decompression bombs), decodes with the standard
// library, converts gray ↔ RGB as the model's input has 1 or 3 channels,
// resizes to the model's height and width (golang.org/x/image/draw,
// bilinear, stretched without cropping), and normalises per the manifest.
//
// Errors are *schema.Error: too_large for an image beyond the pixel limit,
// bad_request for one that is not a valid file of its format (corrupt,
// truncated, or another format), shape_mismatch for a model whose input is
// not an image ([H W], [1 H W] or [3 H W]).
package imagein

import (
	"bytes"
	"image"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/draw"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/schema"
)

// DefaultMaxPixels is the largest image accepted when no limit is given:
// 16 M pixels (4096 × 4096).
const DefaultMaxPixels = 1 << 24

// Layout is the image form of a model's input: channels first (1: gray,
// 3: RGB), then height and width.
type Layout struct {
	Channels, Height, Width int
}

// LayoutOf returns the image layout of a model input shape (without the
// batch dimension): [H W], [1 H W] or [3 H W]; ok is false for any other
// shape, which is not an image.
func LayoutOf(shape []int64) (l Layout, ok bool) {
	switch len(shape) {
	case 2:
		l = Layout{1, int(shape[0]), int(shape[1])}
	case 3:
		l = Layout{int(shape[0]), int(shape[1]), int(shape[2])}
	default:
		return Layout{}, false
	}
	if (l.Channels != 1 && l.Channels != 3) || l.Height < 1 || l.Width < 1 {
		return Layout{}, false
	}
	return l, true
}

// codec is one image format's header reader and decoder.
type codec struct {
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
}

// codecs are the formats of schema's Format* constants.
var codecs = map[string]codec{
	schema.FormatJPEG: {jpeg.DecodeConfig, jpeg.Decode},
	schema.FormatPNG:  {png.DecodeConfig, png.Decode},
}

// Pixels decodes an image file of format into l's layout: Channels planes
// of Height × Width bytes (row-major, channels first). An image whose
// header declares more than maxPixels pixels (DefaultMaxPixels when
// maxPixels <= 0) is too_large, before anything is decoded.
func Pixels(format string, data []byte, l Layout, maxPixels int) ([]byte, error) {
	c, ok := codecs[format]
	if !ok {
		return nil, schema.Errorf(schema.CodeBadRequest, "input.format: %q is not supported (%q or %q)", format, schema.FormatJPEG, schema.FormatPNG)
	}
	if maxPixels <= 0 {
		maxPixels = DefaultMaxPixels
	}
	cfg, err := c.config(bytes.NewReader(data))
	if err != nil {
		return nil, schema.Errorf(schema.CodeBadRequest, "input.data: not a valid %s file: %v", format, err)
	}
	if cfg.Width < 1 || cfg.Height < 1 {
		return nil, schema.Errorf(schema.CodeBadRequest, "input.data: the %s image is %d×%d pixels", format, cfg.Width, cfg.Height)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > int64(maxPixels) {
		return nil, schema.Errorf(schema.CodeTooLarge, "input: the %s image is %d×%d = %d pixels, more than the limit of %d (--max-pixels)",
			format, cfg.Width, cfg.Height, px, maxPixels)
	}
	img, err := c.decode(bytes.NewReader(data))
	if err != nil {
		return nil, schema.Errorf(schema.CodeBadRequest, "input.data: the %s image does not decode: %v", format, err)
	}
	return convert(img, l), nil
}

// convert resizes img to l and lays it out channels first. Gray images
// become RGB by repeating the gray value; colour becomes gray by luma
// (ITU-R 601, as color.GrayModel); transparent pixels count as black.
// Resizing goes through an RGBA image, for which x/image/draw has fast
// paths from every decoded type (through a gray one it is ~50× slower).
func convert(img image.Image, l Layout) []byte {
	src := img.Bounds()
	n := l.Width * l.Height
	out := make([]byte, l.Channels*n)
	if g, ok := img.(*image.Gray); ok && l.Channels == 1 && src.Dx() == l.Width && src.Dy() == l.Height {
		for y := range l.Height {
			i := (src.Min.Y+y-g.Rect.Min.Y)*g.Stride + (src.Min.X - g.Rect.Min.X)
			copy(out[y*l.Width:(y+1)*l.Width], g.Pix[i:i+l.Width])
		}
		return out
	}
	dst := image.NewRGBA(image.Rect(0, 0, l.Width, l.Height))
	if src.Dx() == l.Width && src.Dy() == l.Height {
		draw.Draw(dst, dst.Bounds(), img, src.Min, draw.Src)
	} else {
		draw.BiLinear.Scale(dst, dst.Bounds(), img, src, draw.Src, nil)
	}
	for i := range n {
		r, g, b := uint32(dst.Pix[4*i]), uint32(dst.Pix[4*i+1]), uint32(dst.Pix[4*i+2])
		if l.Channels == 1 {
			out[i] = byte((19595*r + 38470*g + 7471*b + 1<<15) >> 16)
			continue
		}
		out[i], out[n+i], out[2*n+i] = byte(r), byte(g), byte(b)
	}
	return out
}

// Input turns an image file into the model's normalised float32 input of
// one sample (man.SampleSize() elements): Pixels in the layout of the
// model's input shape, then man.Normalize.
func Input(man *models.Manifest, format string, data []byte, maxPixels int) ([]float32, error) {
	l, ok := LayoutOf(man.Input.Shape)
	if !ok {
		return nil, schema.Errorf(schema.CodeShapeMismatch, "model %s takes input %v, not an image ([H W], [1 H W] or [3 H W])", man.Name, man.Input.Shape)
	}
	px, err := Pixels(format, data, l, maxPixels)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(px))
	man.Normalize(out, px)
	return out, nil
}
