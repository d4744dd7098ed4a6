package schema

import (
	"encoding/binary"
	"math"
)

// DTypeSize returns the size in bytes of one element of dtype, or 0 for an
// unknown dtype.
func DTypeSize(dtype string) int {
	switch dtype {
	case DTypeFloat32:
		return 4
	case DTypeUint8:
		return 1
	}
	return 0
}

// NewFloat32Tensor returns a float32 tensor holding values (row-major) with
// the given shape. It copies both; it does not check that they agree
// (Request.Validate does).
func NewFloat32Tensor(shape []int, values []float32) Tensor {
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return Tensor{DType: DTypeFloat32, Shape: append([]int(nil), shape...), Data: data}
}

// NewUint8Tensor returns a uint8 tensor holding values (row-major) with the
// given shape. It copies both.
func NewUint8Tensor(shape []int, values []byte) Tensor {
	return Tensor{DType: DTypeUint8, Shape: append([]int(nil), shape...), Data: append([]byte{}, values...)}
}

// Elements returns the number of elements the shape describes, or -1 if the
// shape is empty, has a dimension < 1, or describes more than MaxElements.
func (t *Tensor) Elements() int {
	n, err := shapeElements("input.shape", t.Shape)
	if err != nil {
		return -1
	}
	return n
}

// Float32s returns the tensor's elements as float32, reusing dst's storage
// when it is large enough. A uint8 tensor is widened (no scaling). It reads
// Data, or Values when Data is nil. It fails with bad_request when the data
// does not match the shape and dtype.
func (t *Tensor) Float32s(dst []float32) ([]float32, error) {
	n, err := shapeElements("input.shape", t.Shape)
	if err != nil {
		return dst[:0], err
	}
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	dst = dst[:n]
	if t.Data == nil && t.Values != nil {
		if len(t.Values) != n {
			return dst[:0], valuesLenError(len(t.Values), n)
		}
		for i, v := range t.Values {
			dst[i] = float32(v)
		}
		return dst, nil
	}
	size := DTypeSize(t.DType)
	if size == 0 {
		return dst[:0], dtypeError(t.DType)
	}
	if len(t.Data) != n*size {
		return dst[:0], dataLenError(t, n, size)
	}
	switch t.DType {
	case DTypeFloat32:
		d := t.Data[:4*n]
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
	case DTypeUint8:
		for i, b := range t.Data[:n] {
			dst[i] = float32(b)
		}
	}
	return dst, nil
}

// Uint8s returns the elements of a uint8 tensor (Data itself, not a copy,
// unless the tensor holds Values). It fails with bad_request for another
// dtype or when the data does not match the shape.
func (t *Tensor) Uint8s() ([]byte, error) {
	if t.DType != DTypeUint8 {
		return nil, badRequest("input.dtype: is %q, not %q", t.DType, DTypeUint8)
	}
	n, err := shapeElements("input.shape", t.Shape)
	if err != nil {
		return nil, err
	}
	if t.Data == nil && t.Values != nil {
		data, err := valuesToData(DTypeUint8, t.Values, n)
		if err != nil {
			return nil, err
		}
		return data, nil
	}
	if len(t.Data) != n {
		return nil, dataLenError(t, n, 1)
	}
	return t.Data, nil
}

// shapeElements checks a shape (non-empty, at most MaxRank dims, each >= 1,
// product <= MaxElements) and returns the product.
func shapeElements(path string, shape []int) (int, *Error) {
	if len(shape) == 0 {
		return 0, badRequest("%s: must have at least one dimension", path)
	}
	if len(shape) > MaxRank {
		return 0, badRequest("%s: %d dimensions, at most %d allowed", path, len(shape), MaxRank)
	}
	n := 1
	for i, d := range shape {
		if d < 1 {
			return 0, badRequest("%s[%d]: must be >= 1, got %d", path, i, d)
		}
		if d > MaxElements/n {
			return 0, badRequest("%s: more than %d elements", path, MaxElements)
		}
		n *= d
	}
	return n, nil
}

// checkTensor validates a tensor and, when it holds Values, converts them to
// Data. It returns the converted data (nil when there was nothing to
// convert).
func checkTensor(t *Tensor) ([]byte, *Error) {
	if t.IsZero() {
		return nil, badRequest("input: required")
	}
	if t.Format != "" {
		return nil, checkImage(t)
	}
	size := DTypeSize(t.DType)
	if size == 0 {
		return nil, dtypeError(t.DType)
	}
	n, err := shapeElements("input.shape", t.Shape)
	if err != nil {
		return nil, err
	}
	switch {
	case t.Data != nil && t.Values != nil:
		return nil, badRequest("input: data and values are mutually exclusive")
	case t.Data == nil && t.Values == nil:
		return nil, badRequest("input: one of data or values is required")
	case t.Values != nil:
		return valuesToData(t.DType, t.Values, n)
	}
	if len(t.Data) != n*size {
		return nil, dataLenError(t, n, size)
	}
	if t.DType == DTypeFloat32 {
		for i := 0; i < n; i++ {
			bits := binary.LittleEndian.Uint32(t.Data[4*i:])
			if bits&0x7f800000 == 0x7f800000 { // exponent all ones: NaN or ±Inf
				return nil, badRequest("input.data: element %d is %v; NaN and Inf are not allowed",
					i, math.Float32frombits(bits))
			}
		}
	}
	return nil, nil
}

// valuesToData converts n numbers to raw little-endian data of dtype.
func valuesToData(dtype string, values []float64, n int) ([]byte, *Error) {
	if len(values) != n {
		return nil, valuesLenError(len(values), n)
	}
	switch dtype {
	case DTypeFloat32:
		data := make([]byte, 4*n)
		for i, v := range values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, badRequest("input.values[%d]: NaN and Inf are not allowed", i)
			}
			f := float32(v)
			if math.IsInf(float64(f), 0) {
				return nil, badRequest("input.values[%d]: %g is out of float32 range", i, v)
			}
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(f))
		}
		return data, nil
	case DTypeUint8:
		data := make([]byte, n)
		for i, v := range values {
			if !(v >= 0 && v <= 255) || v != math.Trunc(v) {
				return nil, badRequest("input.values[%d]: %g is not an integer in 0..255", i, v)
			}
			data[i] = byte(v)
		}
		return data, nil
	}
	return nil, dtypeError(dtype)
}

func dtypeError(dtype string) *Error {
	if dtype == "" {
		return badRequest("input.dtype: required (%q or %q)", DTypeFloat32, DTypeUint8)
	}
	return badRequest("input.dtype: %q is not supported (%q or %q)", dtype, DTypeFloat32, DTypeUint8)
}

func dataLenError(t *Tensor, n, size int) *Error {
	return badRequest("input.data: %d bytes, but shape %v of %s needs %d", len(t.Data), t.Shape, t.DType, n*size)
}

func valuesLenError(got, n int) *Error {
	return badRequest("input.values: %d values, but the shape has %d elements", got, n)
}

// IsImage reports whether the tensor is an encoded image (Format set).
func (t *Tensor) IsImage() bool { return t.Format != "" }

// checkImage validates an encoded-image input: a known format, the file's
// bytes, and none of the raw tensor's fields. Whether the bytes are a
// valid image of that format is found when the agent decodes them.
func checkImage(t *Tensor) *Error {
	switch {
	case t.Format != FormatJPEG && t.Format != FormatPNG:
		return badRequest("input.format: %q is not supported (%q or %q)", t.Format, FormatJPEG, FormatPNG)
	case t.DType != "" || t.Shape != nil || t.Values != nil:
		return badRequest("input: an encoded image (format) carries no dtype, shape or values")
	case len(t.Data) == 0:
		return badRequest("input.data: required with input.format (the image file's bytes)")
	}
	return nil
}
