package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// mp encodes v with the msgpack library, as a foreign client would.
func mp(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// js encodes v with encoding/json, as a foreign client would.
func js(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ptr[T any](v T) *T { return &v }

// fullRequest sets every field of a Request.
func fullRequest() *Request {
	return &Request{
		V:     1,
		ID:    "cam1-000042",
		Model: "mnist-ee",
		Input: NewFloat32Tensor([]int{1, 1, 2, 2}, []float32{0, 0.5, -1.25, 3e-7}),
		Bound: Bound{
			LatencyMS:  ptr(25.5),
			Accuracy:   ptr(0.97),
			EnergyMJ:   ptr(120.0),
			Confidence: ptr(0.8),
			Exit:       ptr(2),
		},
		Policy:  "deadline",
		SentAt:  1732550000123456,
		ReplyTo: "delen/cam1/replies/x",
		Label:   ptr(0),
		Meta: map[string]any{
			"frame": int64(17),
			"where": "gate",
			"tags":  []any{"a", int64(-3), 2.5, true, nil},
			"deep":  map[string]any{"k": map[string]any{"z": []any{}}},
		},
	}
}

func TestRequestRoundTrip(t *testing.T) {
	minimal := &Request{ID: "x", Input: NewUint8Tensor([]int{3}, []byte{1, 2, 255})}
	zeroLabel := &Request{ID: "y", Input: NewUint8Tensor([]int{1}, []byte{0}), Label: ptr(0), Bound: Bound{Exit: ptr(1)}}
	mpMeta := fullRequest()
	mpMeta.Meta = map[string]any{
		"bin": []byte{0, 1, 2}, "empty_bin": []byte{}, "f32": float32(1.5), "f64": 1.0,
		"big": uint64(math.MaxUint64), "neg": int64(math.MinInt64), "nil": nil,
	}
	tests := []struct {
		name string
		req  *Request
		encs []Encoding
	}{
		{"full", fullRequest(), []Encoding{MsgPack, JSON}},
		{"minimal", minimal, []Encoding{MsgPack, JSON}},
		{"label 0 and exit bound", zeroLabel, []Encoding{MsgPack, JSON}},
		{"msgpack-only meta types", mpMeta, []Encoding{MsgPack}},
	}
	for _, tc := range tests {
		for _, enc := range tc.encs {
			t.Run(tc.name+"/"+enc.String(), func(t *testing.T) {
				if err := tc.req.Validate("cam1"); err != nil {
					t.Fatalf("fixture does not validate: %v", err)
				}
				b, err := EncodeRequest(tc.req, enc)
				if err != nil {
					t.Fatal(err)
				}
				if got := DetectEncoding(b); got != enc {
					t.Fatalf("encoded as %v, detected %v", enc, got)
				}
				got, genc, err := DecodeRequest(b, 0)
				if err != nil {
					t.Fatalf("decode: %v\npayload %q", err, b)
				}
				if genc != enc {
					t.Errorf("encoding = %v, want %v", genc, enc)
				}
				if !reflect.DeepEqual(got, tc.req) {
					t.Errorf("round trip differs\n got %#v\nwant %#v", got, tc.req)
				}
				if err := got.Validate("cam1"); err != nil {
					t.Errorf("decoded request does not validate: %v", err)
				}
			})
		}
	}
}

// The struct tags and the hand-written decoder agree: what the msgpack and
// JSON libraries make of a Request decodes back to it.
func TestTagsMatchDecoder(t *testing.T) {
	req := fullRequest()
	for name, b := range map[string][]byte{"msgpack": mp(t, req), "json": js(t, req)} {
		got, _, err := DecodeRequest(b, 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, req) {
			t.Errorf("%s: got %#v\nwant %#v", name, got, req)
		}
	}
	// And the other way: the libraries read what we encode (meta aside,
	// whose integer types the library picks itself).
	req.Meta = nil
	for _, enc := range []Encoding{MsgPack, JSON} {
		b, err := EncodeRequest(req, enc)
		if err != nil {
			t.Fatal(err)
		}
		var got Request
		if enc == JSON {
			err = json.Unmarshal(b, &got)
		} else {
			err = msgpack.Unmarshal(b, &got)
		}
		if err != nil {
			t.Fatalf("%v: %v", enc, err)
		}
		if !reflect.DeepEqual(&got, req) {
			t.Errorf("%v: library decode differs\n got %#v\nwant %#v", enc, &got, req)
		}
	}
}

func TestJSONTensorForms(t *testing.T) {
	want := NewFloat32Tensor([]int{2, 2}, []float32{1, -2.5, 0, 1e-3})
	tests := []struct {
		name, payload string
		want          Tensor
	}{
		{"values", `{"id":"a","input":{"dtype":"float32","shape":[2,2],"values":[1,-2.5,0,1e-3]}}`, want},
		{"base64 data", `{"id":"a","input":{"dtype":"float32","shape":[2,2],"data":"AACAPwAAIMAAAAAAbxKDOg=="}}`, want},
		{"unpadded base64", `{"id":"a","input":{"dtype":"float32","shape":[2,2],"data":"AACAPwAAIMAAAAAAbxKDOg"}}`, want},
		{"uint8 values", "\n\t {\"id\":\"a\",\"input\":{\"dtype\":\"uint8\",\"shape\":[3],\"values\":[0,7.0,255]}}", NewUint8Tensor([]int{3}, []byte{0, 7, 255})},
		{"values with spaces", "{\"id\":\"a\",\"input\":{\"dtype\":\"uint8\",\"shape\":[3],\"values\":[ 1 ,\n2\t, 3E0 ]}}", NewUint8Tensor([]int{3}, []byte{1, 2, 3})},
		{"integral float dims", `{"id":"a","input":{"dtype":"uint8","shape":[1.0,3e0],"values":[1,2,3]}}`, NewUint8Tensor([]int{1, 3}, []byte{1, 2, 3})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, enc, err := DecodeRequest([]byte(tc.payload), 0)
			if err != nil {
				t.Fatal(err)
			}
			if enc != JSON {
				t.Fatalf("encoding %v", enc)
			}
			if err := req.Validate("t"); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(req.Input, tc.want) {
				t.Errorf("input = %+v, want %+v", req.Input, tc.want)
			}
		})
	}
	// msgpack accepts values too, and data sent as str (old "raw" encoders).
	b := mp(t, map[string]any{"id": "a", "input": map[string]any{"dtype": "uint8", "shape": []int{2}, "values": []any{1, 2.0}}})
	req, _, err := DecodeRequest(b, 0)
	if err != nil || req.Validate("t") != nil || !bytes.Equal(req.Input.Data, []byte{1, 2}) {
		t.Errorf("msgpack values: %+v %v", req, err)
	}
	b = mp(t, map[string]any{"id": "a", "input": map[string]any{"dtype": "uint8", "shape": []int{2}, "data": "\x01\xff"}})
	req, _, err = DecodeRequest(b, 0)
	if err != nil || req.Validate("t") != nil || !bytes.Equal(req.Input.Data, []byte{1, 255}) {
		t.Errorf("msgpack data as str: %+v %v", req, err)
	}
}

func TestUnknownFieldsAndNulls(t *testing.T) {
	payloads := map[string][]byte{
		"json": []byte(`{"x":{"y":[1,{"z":null}]},"id":"a","model":null,"bound":{"latency_ms":5,"future":[1]},` +
			`"input":{"dtype":"uint8","shape":[1],"data":"AQ==","layout":"nchw"},"meta":null,"label":null,"extra":"\u00e9"}`),
		"msgpack": mp(t, map[string]any{
			"x": map[string]any{"y": []any{1, map[string]any{"z": nil}}}, "id": "a", "model": nil,
			"bound": map[string]any{"latency_ms": 5, "future": []int{1}},
			"input": map[string]any{"dtype": "uint8", "shape": []int{1}, "data": []byte{1}, "layout": "nchw"},
			"meta":  nil, "label": nil, "ext": msgpackTime(t),
		}),
	}
	want := &Request{ID: "a", Input: NewUint8Tensor([]int{1}, []byte{1}), Bound: Bound{LatencyMS: ptr(5.0)}}
	for name, b := range payloads {
		got, _, err := DecodeRequest(b, 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, want %#v", name, got, want)
		}
	}
	// Deeply nested unknown fields are skipped.
	b := []byte(`{"x":` + strings.Repeat(`[{"a":`, 500) + "1" + strings.Repeat("}]", 500) + `,"id":"deep"}`)
	if got, _, err := DecodeRequest(b, 0); err != nil || got.ID != "deep" {
		t.Errorf("deep unknown field: %+v, %v", got, err)
	}
	// A map with a non-string key at the top level is an unknown field.
	b = []byte{0x82, 0x01, 0x02, 0xa2, 'i', 'd', 0xa1, 'q'}
	got, _, err := DecodeRequest(b, 0)
	if err != nil || got.ID != "q" {
		t.Errorf("non-string key: %+v, %v", got, err)
	}
}

func msgpackTime(t testing.TB) msgpack.RawMessage {
	// fixext 8, type -1: a msgpack timestamp, which the decoder skips.
	return msgpack.RawMessage{0xd7, 0xff, 0, 0, 0, 0, 0x5e, 0, 0, 0}
}

func wantError(t *testing.T, err error, code, msgPart string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *schema.Error", err, err)
	}
	if e.Code != code {
		t.Errorf("code = %q, want %q (%v)", e.Code, code, e)
	}
	if !strings.Contains(e.Message, msgPart) {
		t.Errorf("message %q does not mention %q", e.Message, msgPart)
	}
	return e
}

// deepMsgpack nests n single-key maps below "meta".
func deepMsgpack(n int) []byte {
	b := []byte{0x82, 0xa2, 'i', 'd', 0xa1, 'd', 0xa4, 'm', 'e', 't', 'a'}
	for i := 0; i < n; i++ {
		b = append(b, 0x81, 0xa1, 'a')
	}
	return append(b, 0xc0)
}

func deepJSON(n int, open, close string) []byte {
	return []byte(`{"id":"d","meta":{"a":` + strings.Repeat(open, n) + "1" + strings.Repeat(close, n) + "}}")
}

func TestDecodeRequestErrors(t *testing.T) {
	valid := map[string]any{"dtype": "uint8", "shape": []int{1}, "data": []byte{1}}
	tests := []struct {
		name    string
		payload []byte
		code    string
		msg     string // part of the message
		id      string // id recovered
	}{
		{"empty", []byte("  \n"), CodeBadRequest, "empty", ""},
		{"msgpack not a map", mp(t, []int{1, 2}), CodeBadRequest, "expected a map", ""},
		{"json array", []byte(` [1,2]`), CodeBadRequest, "expected", ""},
		{"json truncated after id", []byte(`{"id":"abc","input":{"dtype":"uint8",`), CodeBadRequest, "malformed JSON", "abc"},
		{"json garbage", []byte(`{"id":"abc" "input"}`), CodeBadRequest, "malformed JSON", "abc"},
		{"json trailing data", []byte(`{"id":"abc"} {}`), CodeBadRequest, "trailing", "abc"},
		{"msgpack truncated after id", mp(t, map[string]any{"id": "abc"})[:7], CodeBadRequest, "malformed msgpack", ""},
		{"msgpack truncated input", truncatedAfterID(t), CodeBadRequest, "malformed msgpack", "abc"},
		{"msgpack trailing", append(mp(t, map[string]any{"id": "abc"}), 0x01), CodeBadRequest, "trailing", "abc"},
		{"msgpack reserved byte", []byte{0x82, 0xa2, 'i', 'd', 0xa1, 'z', 0xa1, 'x', 0xc1}, CodeBadRequest, "0xc1", "z"},
		{"id not a string", mp(t, map[string]any{"id": 5}), CodeBadRequest, "id: expected a string, got an integer", ""},
		{"input wrong type, id first", []byte(`{"id":"abc","input":[1]}`), CodeBadRequest, "input: expected an object, got an array", "abc"},
		{"input wrong type, id last", []byte(`{"input":"x","id":"abc"}`), CodeBadRequest, "input: expected an object, got a string", "abc"},
		{"msgpack id last", mp(t, map[string]any{"bound": 3, "id": "abc"}), CodeBadRequest, "bound: expected a map", "abc"},
		{"dtype not a string", []byte(`{"id":"i","input":{"dtype":1}}`), CodeBadRequest, "input.dtype: expected a string", "i"},
		{"shape not an array", []byte(`{"id":"i","input":{"shape":"28x28"}}`), CodeBadRequest, "input.shape: expected an array", "i"},
		{"shape dim not an integer", []byte(`{"id":"i","input":{"shape":[1.5]}}`), CodeBadRequest, "input.shape: must be an integer", "i"},
		{"shape dim string", []byte(`{"id":"i","input":{"shape":["1"]}}`), CodeBadRequest, "input.shape: expected a number, got a string", "i"},
		{"shape dim huge", []byte(`{"id":"i","input":{"shape":[99999999999999999999]}}`), CodeBadRequest, "input.shape", "i"},
		{"shape product overflow", []byte(`{"id":"i","input":{"shape":[4294967296,4294967296,4294967296]}}`), CodeBadRequest, "more than 16777216 elements", "i"},
		{"shape product over limit", mp(t, map[string]any{"id": "i", "input": map[string]any{"shape": []int{4096, 4097}}}), CodeBadRequest, "more than 16777216 elements", "i"},
		{"shape zero dim", []byte(`{"id":"i","input":{"shape":[3,0]}}`), CodeBadRequest, "input.shape[1]: must be >= 1", "i"},
		{"shape rank", []byte(`{"id":"i","input":{"shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}}`), CodeBadRequest, "more than 16 dimensions", "i"},
		{"msgpack huge array header", []byte{0x82, 0xa2, 'i', 'd', 0xa1, 'h', 0xa5, 'i', 'n', 'p', 'u', 't', 0x81, 0xa5, 's', 'h', 'a', 'p', 'e', 0xdd, 0xff, 0xff, 0xff, 0xff}, CodeBadRequest, "malformed msgpack", "h"},
		{"msgpack huge bin header", []byte{0x82, 0xa2, 'i', 'd', 0xa1, 'h', 0xa5, 'i', 'n', 'p', 'u', 't', 0x81, 0xa4, 'd', 'a', 't', 'a', 0xc6, 0xff, 0xff, 0xff, 0xff}, CodeBadRequest, "malformed msgpack", "h"},
		{"msgpack huge map header", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa2, 'i', 'd', 0xa1, 'h'}, CodeBadRequest, "malformed msgpack", ""},
		{"data not base64", []byte(`{"id":"i","input":{"data":"%%%"}}`), CodeBadRequest, "input.data: invalid base64", "i"},
		{"data and values", []byte(`{"id":"i","input":{"dtype":"uint8","shape":[1],"data":"AQ==","values":[1]}}`), CodeBadRequest, "mutually exclusive", "i"},
		{"values not numbers", []byte(`{"id":"i","input":{"values":[1,"2"]}}`), CodeBadRequest, "input.values: expected a number, got a string", "i"},
		{"values null element", []byte(`{"id":"i","input":{"values":[1,null]}}`), CodeBadRequest, "input.values: expected a number, got null", "i"},
		{"values string with comma", []byte(`{"id":"i","input":{"values":[1,"2,3"]}}`), CodeBadRequest, "input.values: expected a number, got a string", "i"},
		{"values nested", []byte(`{"id":"i","input":{"values":[[1,2]]}}`), CodeBadRequest, "input.values: expected a number, got an array", "i"},
		{"values object", []byte(`{"id":"i","input":{"values":{"0":1}}}`), CodeBadRequest, "input.values: expected an array, got an object", "i"},
		{"values malformed", []byte(`{"id":"i","input":{"values":[1 2]}}`), CodeBadRequest, "malformed JSON", "i"},
		{"values out of range", []byte(`{"id":"i","input":{"values":[1e999]}}`), CodeBadRequest, "out of range", "i"},
		{"bound field type", []byte(`{"id":"i","bound":{"latency_ms":"50"}}`), CodeBadRequest, "bound.latency_ms: expected a number, got a string", "i"},
		{"bound exit fraction", mp(t, map[string]any{"id": "i", "bound": map[string]any{"exit": 1.5}}), CodeBadRequest, "bound.exit: must be an integer", "i"},
		{"label string", []byte(`{"id":"i","label":"3"}`), CodeBadRequest, "label: expected a number", "i"},
		{"label huge", mp(t, map[string]any{"id": "i", "label": uint64(math.MaxUint64)}), CodeBadRequest, "label: 18446744073709551615 is out of range", "i"},
		{"sent_at float overflow", []byte(`{"id":"i","sent_at":1e30}`), CodeBadRequest, "sent_at: 1e+30 is out of range", "i"},
		{"v string", []byte(`{"id":"i","v":"1"}`), CodeBadRequest, "v: expected a number", "i"},
		{"meta not a map", []byte(`{"id":"i","meta":[1]}`), CodeBadRequest, "meta: expected a map", "i"},
		{"meta msgpack non-string key", []byte{0x82, 0xa2, 'i', 'd', 0xa1, 'i', 0xa4, 'm', 'e', 't', 'a', 0x81, 0x01, 0x02}, CodeBadRequest, "meta: map keys must be strings", "i"},
		{"meta msgpack ext", mp(t, map[string]any{"id": "i", "meta": map[string]any{"t": msgpackTime(t)}}), CodeBadRequest, "extension types", "i"},
		{"meta msgpack NaN", mp(t, map[string]any{"id": "i", "meta": map[string]any{"x": math.NaN()}}), CodeBadRequest, "NaN", "i"},
		{"meta msgpack float32 Inf", mp(t, map[string]any{"id": "i", "meta": map[string]any{"x": float32(math.Inf(1))}}), CodeBadRequest, "NaN and Inf", "i"},
		{"meta too deep msgpack", deepMsgpack(MaxMetaDepth + 1), CodeBadRequest, "meta: nested deeper than 16 levels", "d"},
		{"meta too deep json maps", deepJSON(MaxMetaDepth, `{"a":`, "}"), CodeBadRequest, "meta: nested deeper than 16 levels", "d"},
		{"meta too deep json arrays", deepJSON(MaxMetaDepth, "[", "]"), CodeBadRequest, "meta: nested deeper than 16 levels", "d"},
		{"json too deep elsewhere", []byte(`{"id":"d","x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + "}"), CodeBadRequest, "malformed JSON", "d"},
		{"meta too large", js(t, map[string]any{"id": "i", "meta": map[string]any{"blob": strings.Repeat("x", MaxMetaBytes)}}), CodeBadRequest, "at most 65536", "i"},
		{"invalid UTF-8 id msgpack", mp(t, map[string]any{"id": "a\xffb"}), CodeBadRequest, "id: invalid UTF-8", ""},
		{"invalid UTF-8 id json", []byte("{\"id\":\"a\xffb\"}"), CodeBadRequest, "id: invalid UTF-8", ""},
		{"invalid UTF-8 model json", []byte("{\"id\":\"i\",\"model\":\"m\xc3\"}"), CodeBadRequest, "model: invalid UTF-8", "i"},
		{"invalid UTF-8 meta value", mp(t, map[string]any{"id": "i", "meta": map[string]any{"k": "\xed\xa0\x80"}}), CodeBadRequest, "meta: invalid UTF-8", "i"},
		{"invalid UTF-8 meta key json", []byte("{\"id\":\"i\",\"meta\":{\"k\xff\":1}}"), CodeBadRequest, "meta: invalid UTF-8 in a key", "i"},
		{"invalid UTF-8 top-level key", []byte("{\"id\":\"i\",\"\xff\":1}"), CodeBadRequest, "payload: invalid UTF-8 in a key", "i"},
		{"id too long is not echoed", []byte(`{"id":"` + strings.Repeat("x", 129) + `","input":1}`), CodeBadRequest, "input", ""},
		{"valid input then bad id type", mp(t, map[string]any{"input": valid, "id": true}), CodeBadRequest, "id: expected a string, got a bool", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _, err := DecodeRequest(tc.payload, 1<<20)
			if req == nil {
				t.Fatal("nil request with the error")
			}
			e := wantError(t, err, tc.code, tc.msg)
			if e.ID != tc.id {
				t.Errorf("Error.ID = %q, want %q", e.ID, tc.id)
			}
			if req.ID != tc.id {
				t.Errorf("partial Request.ID = %q, want %q", req.ID, tc.id)
			}
		})
	}
}

// truncatedAfterID is a msgpack request cut inside "input", after "id".
func truncatedAfterID(t testing.TB) []byte {
	b := []byte{0x82, 0xa2, 'i', 'd', 0xa3, 'a', 'b', 'c', 0xa5, 'i', 'n', 'p', 'u', 't'}
	in := mp(t, map[string]any{"dtype": "uint8", "shape": []int{4}, "data": []byte{1, 2, 3, 4}})
	return append(b, in[:len(in)-2]...)
}

func TestMetaDepthLimitIsExact(t *testing.T) {
	// meta itself is level 1: MaxMetaDepth-1 nested maps below it fit.
	for name, b := range map[string][]byte{
		"msgpack": deepMsgpack(MaxMetaDepth),
		"json":    deepJSON(MaxMetaDepth-1, `{"a":`, "}"),
	} {
		if _, _, err := DecodeRequest(b, 0); err != nil {
			t.Errorf("%s at the depth limit: %v", name, err)
		}
	}
}

func TestTooLarge(t *testing.T) {
	req := fullRequest()
	for _, enc := range []Encoding{MsgPack, JSON} {
		b, err := EncodeRequest(req, enc)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := DecodeRequest(b, len(b)); err != nil {
			t.Errorf("%v: at the limit: %v", enc, err)
		}
		got, genc, err := DecodeRequest(b, len(b)-1)
		e := wantError(t, err, CodeTooLarge, "at most")
		if genc != enc {
			t.Errorf("too_large encoding = %v, want %v (to answer in kind)", genc, enc)
		}
		if e.ID != req.ID || got.ID != req.ID {
			t.Errorf("too_large id = %q/%q, want %q (looked for in the payload's first bytes)", e.ID, got.ID, req.ID)
		}
	}
	// A 5 MB request: the id in its first bytes is found, one after the
	// first IDScanBytes is not (the payload is not decoded).
	pad := strings.Repeat("x", 5<<20)
	for _, tc := range []struct {
		name    string
		payload []byte
		want    string
	}{
		{"json-id-first", []byte(`{"id":"big-1","meta":{"pad":"` + pad + `"}}`), "big-1"},
		{"json-id-after-bulk", []byte(`{"meta":{"pad":"` + pad + `"},"id":"big-2"}`), ""},
		{"json-truncated-id", []byte(`{"meta":{"pad":"` + strings.Repeat("x", IDScanBytes-20) + `"},"id":"big-3-which-straddles-the-window"` + pad + `}`), ""},
		{"msgpack-id-first", mustMsgpack(t, map[string]any{"id": "big-4", "meta": map[string]any{"pad": pad}}), "big-4"},
		{"msgpack-no-id", mustMsgpack(t, map[string]any{"meta": map[string]any{"pad": pad}}), ""},
	} {
		got, _, err := DecodeRequest(tc.payload, 4<<20)
		e := wantError(t, err, CodeTooLarge, "at most")
		if e.ID != tc.want || got.ID != tc.want {
			t.Errorf("%s: too_large id = %q/%q, want %q", tc.name, e.ID, got.ID, tc.want)
		}
		if res := NewErrorResult("cam1", got, err); res.ID != tc.want {
			t.Errorf("%s: error result id = %q, want %q", tc.name, res.ID, tc.want)
		}
	}
	// maxBytes <= 0 means DefaultMaxBytes.
	big := make([]byte, DefaultMaxBytes+1)
	_, _, err := DecodeRequest(big, 0)
	wantError(t, err, CodeTooLarge, "8388608")
	_, _, err = DecodeControl(big, -1)
	wantError(t, err, CodeTooLarge, "8388608")
}

func TestJSONMetaNumbers(t *testing.T) {
	b := []byte(`{"id":"m","meta":{"i":1,"f":1.0,"e":1e2,"h":1.5,"neg0":-0.0,` +
		`"u":18446744073709551615,"big":1e20,"tiny":1e-400,"s":"\u00e9\ud800"}}`)
	req, _, err := DecodeRequest(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"i": int64(1), "f": int64(1), "e": int64(100), "h": 1.5, "neg0": int64(0),
		"u": uint64(math.MaxUint64), "big": 1e20, "tiny": int64(0), "s": "é\uFFFD",
	}
	if !reflect.DeepEqual(req.Meta, want) {
		t.Errorf("meta = %#v\nwant %#v", req.Meta, want)
	}
	// Stable: encoding and decoding again changes nothing.
	again, err := EncodeRequest(req, JSON)
	if err != nil {
		t.Fatal(err)
	}
	req2, _, err := DecodeRequest(again, 0)
	if err != nil || !reflect.DeepEqual(req2.Meta, want) {
		t.Errorf("second round: %#v, %v", req2.Meta, err)
	}
}

func fullResult() *Result {
	return &Result{
		V: Version, ID: "cam1-000042", Tenant: "cam1", Model: "mnist-ee", SentAt: 1732550000123456,
		Meta:   map[string]any{"frame": int64(17)},
		Status: StatusOK, Exit: 2, Exits: 3, Class: ptr(0), Confidence: 0.93,
		Top:       []ClassProb{{0, 0.93}, {6, 0.05}, {8, 0.01}},
		LatencyMS: 3.25, QueueMS: 0.5, ComputeMS: 2.5, EnergyMJ: 11.5, EnergySource: "ina3221",
		AccuracyEst: 0.978, BoundMet: ptr(true), DeadlineFrom: DeadlineFromSentAt,
	}
}

func TestResultRoundTrip(t *testing.T) {
	errRes := NewErrorResult("cam1", &Request{ID: "r1", SentAt: 5, Meta: map[string]any{"a": "b"}},
		Errorf(CodeUnknownModel, "model %q is not served", "nope"))
	shed := &Result{V: Version, ID: "s", Tenant: "t", Status: StatusShed, BoundMet: ptr(false), LatencyMS: 0.1}
	for name, res := range map[string]*Result{"ok": fullResult(), "error": errRes, "shed": shed} {
		for _, enc := range []Encoding{MsgPack, JSON} {
			b, err := EncodeResult(res, enc)
			if err != nil {
				t.Fatal(err)
			}
			got, genc, err := DecodeResult(b, 0)
			if err != nil || genc != enc {
				t.Fatalf("%s/%v: %v %v", name, enc, err, genc)
			}
			if !reflect.DeepEqual(got, res) {
				t.Errorf("%s/%v:\n got %#v\nwant %#v", name, enc, got, res)
			}
			// The libraries read it too (top as [class, prob] pairs).
			var lib Result
			if enc == JSON {
				err = json.Unmarshal(b, &lib)
			} else {
				err = msgpack.Unmarshal(b, &lib)
			}
			if err != nil || !reflect.DeepEqual(lib.Top, res.Top) || lib.Status != res.Status {
				t.Errorf("%s/%v: library decode: %+v %v", name, enc, lib, err)
			}
		}
	}
}

func TestResultWireShape(t *testing.T) {
	b, err := EncodeResult(fullResult(), JSON)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"v", "id", "tenant", "model", "sent_at", "meta", "status", "exit", "exits", "class",
		"confidence", "top", "latency_ms", "queue_ms", "compute_ms", "energy_mj", "energy_source", "accuracy_est", "bound_met", "deadline_from"} {
		if _, ok := m[k]; !ok {
			t.Errorf("result JSON lacks %q: %s", k, b)
		}
	}
	if !strings.Contains(string(b), `"top":[[0,0.93],[6,0.05],[8,0.01]]`) || !strings.Contains(string(b), `"class":0`) {
		t.Errorf("top or class 0 not as specified: %s", b)
	}
	e := NewErrorResult("cam1", nil, Errorf(CodeBadRequest, "id: required"))
	b, _ = EncodeResult(e, JSON)
	if !strings.Contains(string(b), `"status":"error","error":{"code":"bad_request","message":"id: required"}`) ||
		strings.Contains(string(b), `"class"`) || strings.Contains(string(b), `"bound_met"`) {
		t.Errorf("error result: %s", b)
	}
}

func TestNewErrorResult(t *testing.T) {
	// The id recovered by the decoder reaches the error result.
	req, enc, err := DecodeRequest([]byte(`{"meta":{"cam":"n"},"input":7,"id":"abc","sent_at":9}`), 0)
	if enc != JSON || err == nil {
		t.Fatal(enc, err)
	}
	res := NewErrorResult("cam1", req, err)
	if res.ID != "abc" || res.Status != StatusError || res.Error.Code != CodeBadRequest || res.Tenant != "cam1" || res.V != Version {
		t.Errorf("%+v", res)
	}
	if res.Meta["cam"] != "n" {
		t.Errorf("meta decoded before the error is echoed: %+v", res.Meta)
	}
	// A plain error is internal.
	res = NewErrorResult("t", nil, errors.New("boom"))
	if res.Error.Code != CodeInternal || res.Error.Message != "boom" || res.ID != "" {
		t.Errorf("%+v", res.Error)
	}
	// Error.ID alone (nil request) is used.
	res = NewErrorResult("t", nil, &Error{Code: CodeTooLarge, ID: "z"})
	if res.ID != "z" {
		t.Errorf("id %q", res.ID)
	}
}

func TestErrorsAsAndIs(t *testing.T) {
	_, _, err := DecodeRequest([]byte(`{"id":1}`), 0)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeBadRequest {
		t.Fatal(err)
	}
	if !errors.Is(err, &Error{Code: CodeBadRequest}) || errors.Is(err, &Error{Code: CodeTooLarge}) {
		t.Error("errors.Is by code")
	}
	if CodeOf(err) != CodeBadRequest || CodeOf(nil) != "" || CodeOf(errors.New("x")) != CodeInternal {
		t.Error("CodeOf")
	}
	if got := e.Error(); got != "bad_request: id: expected a string, got a number" {
		t.Errorf("Error() = %q", got)
	}
}

func TestControlRoundTrip(t *testing.T) {
	full := &Control{
		Bound:  &Bound{Accuracy: ptr(0.9), Exit: ptr(3)},
		Policy: ptr("conditions"), Model: ptr("mnist-ee"), Weight: ptr(2.5),
		Conditions: []Condition{{MetricConfidence, OpGreaterEq, 0.9}, {MetricResponseTime, OpLess, 12}, {MetricExit, OpEqual, 3}},
	}
	clear := &Control{Bound: &Bound{}, Policy: ptr(""), Conditions: []Condition{}}
	for name, c := range map[string]*Control{"full": full, "clearing": clear, "weight only": {Weight: ptr(1.0)}} {
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, enc := range []Encoding{MsgPack, JSON} {
			b, err := EncodeControl(c, enc)
			if err != nil {
				t.Fatal(err)
			}
			got, genc, err := DecodeControl(b, 0)
			if err != nil || genc != enc {
				t.Fatalf("%s/%v: %v", name, enc, err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Errorf("%s/%v:\n got %#v\nwant %#v\npayload %s", name, enc, got, c, b)
			}
		}
	}
	// Empty payload: the retained message was cleared; nothing changes.
	c, _, err := DecodeControl(nil, 0)
	if err != nil || !c.IsEmpty() {
		t.Errorf("empty control: %+v %v", c, err)
	}
}

func TestControlErrors(t *testing.T) {
	tests := []struct {
		name, payload, msg string
	}{
		{"not a map", `[1]`, "expected"},
		{"bound type", `{"bound":1}`, "bound: expected an object"},
		{"policy type", `{"policy":1}`, "policy: expected a string"},
		{"weight type", `{"weight":"x"}`, "weight: expected a number"},
		{"conditions type", `{"conditions":{}}`, "conditions: expected an array"},
		{"condition type", `{"conditions":[1]}`, "conditions[]: expected an object"},
		{"threshold type", `{"conditions":[{"metric":"exit","op":"equal","threshold":"2"}]}`, "conditions[].threshold: expected a number"},
		{"too many conditions", `{"conditions":[` + strings.TrimSuffix(strings.Repeat(`{"metric":"exit","op":"equal","threshold":1},`, MaxConditions+1), ",") + `]}`, "more than 64"},
		{"malformed", `{"policy":"x"`, "malformed JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DecodeControl([]byte(tc.payload), 0)
			wantError(t, err, CodeBadRequest, tc.msg)
		})
	}
}

func TestSettingsRoundTripAndApply(t *testing.T) {
	s := Settings{Bound: Bound{LatencyMS: ptr(40.0)}, Policy: "deadline", Model: "mnist-ee", Weight: 1}
	c := &Control{Bound: &Bound{Confidence: ptr(0.9)}, Weight: ptr(3.0),
		Conditions: []Condition{{MetricAccuracy, OpGreater, 0.95}}}
	got := s.Apply(c)
	want := Settings{Bound: Bound{Confidence: ptr(0.9)}, Policy: "deadline", Model: "mnist-ee", Weight: 3,
		Conditions: []Condition{{MetricAccuracy, OpGreater, 0.95}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Apply = %#v", got)
	}
	*c.Bound.Confidence = 0.1 // Apply copied, not aliased
	if *got.Bound.Confidence != 0.9 {
		t.Error("Apply aliases the control's bound")
	}
	got = got.Apply(&Control{Conditions: []Condition{}, Policy: ptr("")})
	if got.Conditions != nil || got.Policy != "" || got.Model != "mnist-ee" {
		t.Errorf("clearing Apply = %#v", got)
	}
	if err := want.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, enc := range []Encoding{MsgPack, JSON} {
		b, err := EncodeSettings(&want, enc)
		if err != nil {
			t.Fatal(err)
		}
		dec, genc, err := DecodeSettings(b, 0)
		if err != nil || genc != enc || !reflect.DeepEqual(*dec, want) {
			t.Errorf("%v: %#v %v", enc, dec, err)
		}
	}
	if _, _, err := DecodeSettings([]byte(`{"weight":"1"}`), 0); CodeOf(err) != CodeBadRequest {
		t.Errorf("bad settings: %v", err)
	}
}

func TestDetectEncoding(t *testing.T) {
	for payload, want := range map[string]Encoding{
		"{}": JSON, " \t\r\n{": JSON, "": MsgPack, "\x81": MsgPack, "[1]": MsgPack, "\x00{": MsgPack,
	} {
		if got := DetectEncoding([]byte(payload)); got != want {
			t.Errorf("DetectEncoding(%q) = %v", payload, got)
		}
	}
}

// Unknown fields of every msgpack type are skipped, in every size class.
func TestMsgpackSkipsEveryType(t *testing.T) {
	values := [][]byte{
		{0x05}, {0xe0}, {0xc0}, {0xc2}, {0xc3},
		{0xc4, 1, 'x'}, {0xc5, 0, 1, 'x'}, {0xc6, 0, 0, 0, 1, 'x'}, // bin
		{0xc7, 1, 9, 'x'}, {0xc8, 0, 1, 9, 'x'}, {0xc9, 0, 0, 0, 1, 9, 'x'}, // ext
		{0xca, 0, 0, 0, 0}, {0xcb, 0, 0, 0, 0, 0, 0, 0, 0}, // floats
		{0xcc, 1}, {0xcd, 0, 1}, {0xce, 0, 0, 0, 1}, {0xcf, 0, 0, 0, 0, 0, 0, 0, 1}, // uints
		{0xd0, 1}, {0xd1, 0, 1}, {0xd2, 0, 0, 0, 1}, {0xd3, 0, 0, 0, 0, 0, 0, 0, 1}, // ints
		{0xd4, 1, 0}, {0xd5, 1, 0, 0}, {0xd6, 1, 0, 0, 0, 0}, // fixext 1, 2, 4
		append([]byte{0xd7, 1}, make([]byte, 8)...), append([]byte{0xd8, 1}, make([]byte, 16)...),
		{0xa1, 'x'}, {0xd9, 1, 'x'}, {0xda, 0, 1, 'x'}, {0xdb, 0, 0, 0, 1, 'x'}, // str
		{0x91, 0x01}, {0xdc, 0, 1, 0x01}, {0xdd, 0, 0, 0, 1, 0x01}, // arrays
		{0x81, 0x01, 0x02}, {0xde, 0, 1, 0x01, 0x02}, {0xdf, 0, 0, 0, 1, 0x01, 0x02}, // maps
	}
	for _, v := range values {
		b := []byte{0x82, 0xa1, 'z'}
		b = append(b, v...)
		b = append(b, 0xa2, 'i', 'd', 0xa1, 'k')
		req, _, err := DecodeRequest(b, 0)
		if err != nil || req.ID != "k" {
			t.Errorf("skipping % x: %+v %v", v, req, err)
		}
		// Truncated anywhere, it is a bad_request (never a panic).
		for i := 4; i < 3+len(v); i++ {
			if _, _, err := DecodeRequest(b[:i], 0); CodeOf(err) != CodeBadRequest {
				t.Errorf("truncated % x: %v", b[:i], err)
			}
		}
	}
}

// Every msgpack number type reads into integer and float fields (an integer
// field takes a float only when it is integral).
func TestMsgpackNumberTypes(t *testing.T) {
	for _, n := range []any{int8(-3), int16(-300), int32(-70000), int64(-1 << 40), uint8(200), uint16(60000),
		uint32(1 << 31), uint64(1 << 40), float32(4), 4.0, float32(2.5), 2.5} {
		want := reflect.ValueOf(n).Convert(reflect.TypeFor[float64]()).Float()
		b := mp(t, map[string]any{"id": "n", "sent_at": n, "bound": map[string]any{"latency_ms": n}})
		req, _, err := DecodeRequest(b, 0)
		if want != math.Trunc(want) {
			wantError(t, err, CodeBadRequest, "sent_at: must be an integer")
			continue
		}
		if err != nil || float64(req.SentAt) != want || *req.Bound.LatencyMS != want {
			t.Errorf("%T(%v): %+v %v", n, n, req, err)
		}
	}
}

// mustMsgpack encodes v as msgpack with sorted map keys.
func mustMsgpack(t testing.TB, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := msgpack.NewEncoder(&b)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
