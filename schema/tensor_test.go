package schema

import (
	"math"
	"reflect"
	"testing"
)

func TestTensorAccessors(t *testing.T) {
	vals := []float32{0, 1.5, -2, math.MaxFloat32, math.SmallestNonzeroFloat32, -0}
	f := NewFloat32Tensor([]int{2, 3}, vals)
	if f.Elements() != 6 || len(f.Data) != 24 {
		t.Fatalf("elements %d, data %d", f.Elements(), len(f.Data))
	}
	got, err := f.Float32s(nil)
	if err != nil || !reflect.DeepEqual(got, vals) {
		t.Errorf("Float32s = %v, %v", got, err)
	}
	// dst is reused when large enough.
	buf := make([]float32, 0, 16)
	got, _ = f.Float32s(buf)
	if &got[0] != &buf[:1][0] {
		t.Error("Float32s did not reuse dst")
	}
	if _, err := f.Uint8s(); CodeOf(err) != CodeBadRequest {
		t.Errorf("Uint8s of float32: %v", err)
	}

	u := NewUint8Tensor([]int{3}, []byte{0, 128, 255})
	got, err = u.Float32s(nil)
	if err != nil || !reflect.DeepEqual(got, []float32{0, 128, 255}) {
		t.Errorf("uint8 Float32s = %v, %v", got, err)
	}
	b, err := u.Uint8s()
	if err != nil || !reflect.DeepEqual(b, []byte{0, 128, 255}) {
		t.Errorf("Uint8s = %v, %v", b, err)
	}

	// Values (before Validate) are read too.
	v := Tensor{DType: DTypeUint8, Shape: []int{2}, Values: []float64{3, 4}}
	if got, err := v.Float32s(nil); err != nil || !reflect.DeepEqual(got, []float32{3, 4}) {
		t.Errorf("values Float32s = %v, %v", got, err)
	}
	if b, err := v.Uint8s(); err != nil || !reflect.DeepEqual(b, []byte{3, 4}) {
		t.Errorf("values Uint8s = %v, %v", b, err)
	}

	// Mismatches are bad_request, not panics.
	short := Tensor{DType: DTypeFloat32, Shape: []int{2}, Data: []byte{1, 2, 3}}
	if _, err := short.Float32s(nil); CodeOf(err) != CodeBadRequest {
		t.Errorf("short data: %v", err)
	}
	if _, err := (&Tensor{DType: "int4", Shape: []int{1}, Data: []byte{1}}).Float32s(nil); CodeOf(err) != CodeBadRequest {
		t.Errorf("unknown dtype: %v", err)
	}
	if (&Tensor{Shape: []int{0}}).Elements() != -1 || (&Tensor{}).Elements() != -1 {
		t.Error("Elements of an invalid shape")
	}
	if DTypeSize(DTypeFloat32) != 4 || DTypeSize(DTypeUint8) != 1 || DTypeSize("x") != 0 {
		t.Error("DTypeSize")
	}
}

// The helpers copy their arguments.
func TestNewTensorCopies(t *testing.T) {
	shape := []int{2}
	raw := []byte{1, 2}
	u := NewUint8Tensor(shape, raw)
	shape[0], raw[0] = 9, 9
	if u.Shape[0] != 2 || u.Data[0] != 1 {
		t.Errorf("aliasing: %+v", u)
	}
}
