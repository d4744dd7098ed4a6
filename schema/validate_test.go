package schema

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"
)

func TestValidateErrors(t *testing.T) {
	nanData := NewFloat32Tensor([]int{2}, []float32{1, 0})
	binary.LittleEndian.PutUint32(nanData.Data[4:], 0x7fc00000)
	infData := NewFloat32Tensor([]int{2}, []float32{float32(math.Inf(-1)), 0})

	tests := []struct {
		name   string
		mutate func(r *Request)
		tenant string
		msg    string // part of the message; the code is always bad_request
		noID   bool   // the error does not carry the id (the id is invalid)
	}{
		{"tenant name", func(r *Request) {}, "Cam1", "not a valid tenant", false},
		{"future version", func(r *Request) { r.V = 2 }, "", "v: unsupported schema version 2", false},
		{"negative version", func(r *Request) { r.V = -1 }, "", "v: unsupported", false},
		{"id missing", func(r *Request) { r.ID = "" }, "", "id: required", true},
		{"id too long", func(r *Request) { r.ID = strings.Repeat("x", 129) }, "", "id: 129 bytes, at most 128", true},
		{"id invalid UTF-8", func(r *Request) { r.ID = "a\xff" }, "", "id: invalid UTF-8", true},
		{"model too long", func(r *Request) { r.Model = strings.Repeat("m", 129) }, "", "model: 129 bytes", false},
		{"policy invalid UTF-8", func(r *Request) { r.Policy = "\xc0" }, "", "policy: invalid UTF-8", false},
		{"input missing", func(r *Request) { r.Input = Tensor{} }, "", "input: required", false},
		{"dtype missing", func(r *Request) { r.Input.DType = "" }, "", "input.dtype: required", false},
		{"dtype unknown", func(r *Request) { r.Input.DType = "float64" }, "", `input.dtype: "float64" is not supported`, false},
		{"shape empty", func(r *Request) { r.Input.Shape = nil }, "", "input.shape: must have at least one dimension", false},
		{"shape zero dim", func(r *Request) { r.Input.Shape = []int{1, 0, 4} }, "", "input.shape[1]: must be >= 1", false},
		{"shape negative dim", func(r *Request) { r.Input.Shape = []int{-4, -1} }, "", "input.shape[0]: must be >= 1", false},
		{"shape product overflow", func(r *Request) { r.Input.Shape = []int{1 << 40, 1 << 40, 1 << 40} }, "", "more than 16777216 elements", false},
		{"shape too many elements", func(r *Request) { r.Input.Shape = []int{MaxElements + 1} }, "", "more than 16777216 elements", false},
		{"shape rank", func(r *Request) { r.Input.Shape = make([]int, MaxRank+1) }, "", "17 dimensions, at most 16", false},
		{"no data", func(r *Request) { r.Input.Data = nil }, "", "one of data or values is required", false},
		{"data and values", func(r *Request) { r.Input.Values = []float64{1, 2, 3, 4} }, "", "mutually exclusive", false},
		{"data short", func(r *Request) { r.Input.Data = r.Input.Data[:15] }, "", "input.data: 15 bytes, but shape [2 2] of float32 needs 16", false},
		{"data long", func(r *Request) { r.Input.Data = append(r.Input.Data, 0) }, "", "input.data: 17 bytes", false},
		{"data NaN", func(r *Request) { r.Input = nanData }, "", "input.data: element 1 is NaN", false},
		{"data -Inf", func(r *Request) { r.Input = infData }, "", "input.data: element 0 is -Inf", false},
		{"values count", func(r *Request) { r.Input.Data, r.Input.Values = nil, []float64{1, 2, 3} }, "", "input.values: 3 values, but the shape has 4", false},
		{"values NaN", func(r *Request) { r.Input.Data, r.Input.Values = nil, []float64{1, math.NaN(), 3, 4} }, "", "input.values[1]: NaN", false},
		{"values Inf", func(r *Request) { r.Input.Data, r.Input.Values = nil, []float64{1, 2, 3, math.Inf(1)} }, "", "input.values[3]: NaN and Inf", false},
		{"values beyond float32", func(r *Request) { r.Input.Data, r.Input.Values = nil, []float64{1, 2, 1e39, 4} }, "", "input.values[2]: 1e+39 is out of float32 range", false},
		{"uint8 values fraction", func(r *Request) {
			r.Input = Tensor{DType: DTypeUint8, Shape: []int{2}, Values: []float64{1, 2.5}}
		}, "", "input.values[1]: 2.5 is not an integer in 0..255", false},
		{"uint8 values range", func(r *Request) {
			r.Input = Tensor{DType: DTypeUint8, Shape: []int{2}, Values: []float64{256, 0}}
		}, "", "input.values[0]: 256 is not an integer in 0..255", false},
		{"uint8 values negative", func(r *Request) {
			r.Input = Tensor{DType: DTypeUint8, Shape: []int{2}, Values: []float64{0, -1}}
		}, "", "input.values[1]: -1 is not an integer", false},
		{"uint8 data length", func(r *Request) { r.Input = Tensor{DType: DTypeUint8, Shape: []int{3}, Data: []byte{1}} }, "", "input.data: 1 bytes, but shape [3] of uint8 needs 3", false},
		{"image format unknown", func(r *Request) { r.Input = Tensor{Format: "gif", Data: []byte("GIF89a")} }, "", `input.format: "gif" is not supported ("jpeg" or "png")`, false},
		{"image format case", func(r *Request) { r.Input = Tensor{Format: "JPEG", Data: []byte{0xff, 0xd8}} }, "", `input.format: "JPEG" is not supported`, false},
		{"image without data", func(r *Request) { r.Input = Tensor{Format: FormatPNG} }, "", "input.data: required with input.format", false},
		{"image with empty data", func(r *Request) { r.Input = Tensor{Format: FormatJPEG, Data: []byte{}} }, "", "input.data: required with input.format", false},
		{"image with dtype", func(r *Request) { r.Input = Tensor{Format: FormatPNG, DType: DTypeUint8, Data: []byte{1}} }, "", "an encoded image (format) carries no dtype, shape or values", false},
		{"image with shape", func(r *Request) { r.Input = Tensor{Format: FormatPNG, Shape: []int{1}, Data: []byte{1}} }, "", "carries no dtype, shape or values", false},
		{"image with values", func(r *Request) { r.Input = Tensor{Format: FormatJPEG, Values: []float64{1}} }, "", "carries no dtype, shape or values", false},
		{"latency 0", func(r *Request) { r.Bound.LatencyMS = ptr(0.0) }, "", "bound.latency_ms: must be a finite number > 0", false},
		{"latency negative", func(r *Request) { r.Bound.LatencyMS = ptr(-5.0) }, "", "bound.latency_ms", false},
		{"latency NaN", func(r *Request) { r.Bound.LatencyMS = ptr(math.NaN()) }, "", "bound.latency_ms", false},
		{"latency Inf", func(r *Request) { r.Bound.LatencyMS = ptr(math.Inf(1)) }, "", "bound.latency_ms", false},
		{"accuracy 0", func(r *Request) { r.Bound.Accuracy = ptr(0.0) }, "", "bound.accuracy: must be in (0, 1]", false},
		{"accuracy above 1", func(r *Request) { r.Bound.Accuracy = ptr(1.01) }, "", "bound.accuracy", false},
		{"energy 0", func(r *Request) { r.Bound.EnergyMJ = ptr(0.0) }, "", "bound.energy_mj: must be a finite number > 0", false},
		{"confidence 0", func(r *Request) { r.Bound.Confidence = ptr(0.0) }, "", "bound.confidence: must be in (0, 1]", false},
		{"confidence NaN", func(r *Request) { r.Bound.Confidence = ptr(math.NaN()) }, "", "bound.confidence", false},
		{"exit 0", func(r *Request) { r.Bound.Exit = ptr(0) }, "", "bound.exit: must be >= 1", false},
		{"reply_to other tenant", func(r *Request) { r.ReplyTo = "delen/cam2/results" }, "", `reply_to: "delen/cam2/results" must lie under delen/cam1/`, false},
		{"reply_to bare prefix", func(r *Request) { r.ReplyTo = "delen/cam1/" }, "", "must lie under", false},
		{"reply_to prefix trick", func(r *Request) { r.ReplyTo = "delen/cam1x/r" }, "", "must lie under", false},
		{"reply_to outside", func(r *Request) { r.ReplyTo = "other/cam1/r" }, "", "must lie under", false},
		{"reply_to plus", func(r *Request) { r.ReplyTo = "delen/cam1/+" }, "", "without wildcards", false},
		{"reply_to hash", func(r *Request) { r.ReplyTo = "delen/cam1/a/#" }, "", "without wildcards", false},
		{"reply_to NUL", func(r *Request) { r.ReplyTo = "delen/cam1/a\x00" }, "", "without wildcards", false},
		{"reply_to requests loop", func(r *Request) { r.ReplyTo = "delen/cam1/requests" }, "", "the agent reads or owns", false},
		{"reply_to control", func(r *Request) { r.ReplyTo = "delen/cam1/control" }, "", "the agent reads or owns", false},
		{"reply_to state", func(r *Request) { r.ReplyTo = "delen/cam1/state" }, "", "the agent reads or owns", false},
		{"label negative", func(r *Request) { r.Label = ptr(-1) }, "", "label: must be >= 0", false},
		{"meta NaN", func(r *Request) { r.Meta = map[string]any{"x": []any{math.NaN()}} }, "", "meta: NaN", false},
		{"meta type", func(r *Request) { r.Meta = map[string]any{"x": struct{}{}} }, "", "meta: values of type struct {}", false},
		{"meta deep", func(r *Request) {
			m := map[string]any{}
			r.Meta = m
			for i := 0; i < MaxMetaDepth; i++ {
				n := map[string]any{}
				m["a"] = n
				m = n
			}
		}, "", "meta: nested deeper than 16", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := validRequest()
			tc.mutate(r)
			tenant := tc.tenant
			if tenant == "" {
				tenant = "cam1"
			}
			e := wantError(t, r.Validate(tenant), CodeBadRequest, tc.msg)
			wantID := r.ID
			if tc.noID {
				wantID = ""
			}
			if e.ID != wantID {
				t.Errorf("Error.ID = %q, want %q", e.ID, wantID)
			}
		})
	}
}

func validRequest() *Request {
	return &Request{ID: "req-1", Input: NewFloat32Tensor([]int{2, 2}, []float32{1, 2, 3, 4})}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(r *Request)
	}{
		{"minimal", func(r *Request) {}},
		{"v 1", func(r *Request) { r.V = 1 }},
		{"id 128 bytes", func(r *Request) { r.ID = strings.Repeat("é", 64) }},
		{"bound edges", func(r *Request) {
			r.Bound = Bound{LatencyMS: ptr(1e-9), Accuracy: ptr(1.0), EnergyMJ: ptr(1e-9), Confidence: ptr(1.0), Exit: ptr(1)}
		}},
		{"reply_to", func(r *Request) { r.ReplyTo = "delen/cam1/results" }},
		{"reply_to deep", func(r *Request) { r.ReplyTo = "delen/cam1/replies/requests" }},
		{"label 0", func(r *Request) { r.Label = ptr(0) }},
		{"jpeg image", func(r *Request) { r.Input = Tensor{Format: FormatJPEG, Data: []byte{0xff, 0xd8, 0xff}} }},
		{"png image", func(r *Request) { r.Input = Tensor{Format: FormatPNG, Data: []byte("\x89PNG")} }},
		{"max elements", func(r *Request) { r.Input = NewUint8Tensor([]int{1 << 12, 1 << 12}, make([]byte, MaxElements)) }},
		{"meta at the depth limit", func(r *Request) {
			m := map[string]any{}
			r.Meta = m
			for i := 1; i < MaxMetaDepth; i++ {
				n := map[string]any{"i": i, "f": float32(1), "b": []byte{1}}
				m["a"] = n
				m = n
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := validRequest()
			tc.mutate(r)
			if err := r.Validate("cam1"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestValidateWithPrefix(t *testing.T) {
	r := validRequest()
	r.ReplyTo = "site1/delen/cam1/out"
	topics := Topics{Prefix: "site1/delen"}
	if err := r.ValidateWith(topics, "cam1"); err != nil {
		t.Fatal(err)
	}
	wantError(t, r.Validate("cam1"), CodeBadRequest, "must lie under delen/cam1/")
}

func TestValidateConvertsValues(t *testing.T) {
	r := validRequest()
	r.Input = Tensor{DType: DTypeFloat32, Shape: []int{3}, Values: []float64{1, -0.5, 1e-3}}
	if err := r.Validate("cam1"); err != nil {
		t.Fatal(err)
	}
	want := NewFloat32Tensor([]int{3}, []float32{1, -0.5, 1e-3})
	if r.Input.Values != nil || !bytes.Equal(r.Input.Data, want.Data) {
		t.Errorf("input after Validate = %+v, want data %v", r.Input, want.Data)
	}
	// A failed Validate leaves the request as it was.
	r.Input = Tensor{DType: DTypeUint8, Shape: []int{2}, Values: []float64{1, 2}}
	r.Label = ptr(-1)
	if r.Validate("cam1") == nil || r.Input.Data != nil || r.Input.Values == nil {
		t.Errorf("failed Validate changed the input: %+v", r.Input)
	}
}

func TestControlValidate(t *testing.T) {
	ok := []*Control{
		{},
		{Weight: ptr(MaxWeight * 1.0)},
		{Bound: &Bound{}, Policy: ptr(""), Model: ptr("")},
		{Conditions: []Condition{{MetricEnergy, OpLessEq, 10}, {MetricComputation, OpGreater, -1}}},
	}
	for i, c := range ok {
		if err := c.Validate(); err != nil {
			t.Errorf("%d: %v", i, err)
		}
	}
	bad := []struct {
		c   Control
		msg string
	}{
		{Control{Bound: &Bound{Accuracy: ptr(2.0)}}, "bound.accuracy"},
		{Control{Policy: ptr(strings.Repeat("p", 129))}, "policy: 129 bytes"},
		{Control{Model: ptr("\xff")}, "model: invalid UTF-8"},
		{Control{Weight: ptr(0.0)}, "weight: must be in (0, 1000]"},
		{Control{Weight: ptr(1001.0)}, "weight"},
		{Control{Weight: ptr(math.NaN())}, "weight"},
		{Control{Conditions: []Condition{{"latency", OpLess, 1}}}, `conditions[0].metric: "latency" is not one of`},
		{Control{Conditions: []Condition{{MetricExit, OpEqual, 1}, {MetricExit, "eq", 2}}}, `conditions[1].op: "eq"`},
		{Control{Conditions: []Condition{{MetricExit, OpEqual, math.Inf(1)}}}, "conditions[0].threshold: must be finite"},
		{Control{Conditions: make([]Condition, MaxConditions+1)}, "65 entries, at most 64"},
	}
	for _, tc := range bad {
		wantError(t, tc.c.Validate(), CodeBadRequest, tc.msg)
	}
	s := Settings{Weight: 0}
	if err := s.Validate(); err != nil {
		t.Errorf("zero settings: %v", err)
	}
	if err := (Bound{Exit: ptr(-1)}).Validate(); CodeOf(err) != CodeBadRequest {
		t.Errorf("Bound.Validate: %v", err)
	}
	if err := (Bound{}).Validate(); err != nil {
		t.Errorf("zero Bound.Validate: %v", err)
	}
}
