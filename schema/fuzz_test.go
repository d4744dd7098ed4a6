package schema

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// fuzzMax is the payload limit under fuzzing: small, so that too_large is
// exercised too.
const fuzzMax = 1 << 16

func requestSeeds(f *testing.F) {
	reqs := []*Request{fullRequest(), validRequest(), {
		ID: "v", Input: Tensor{DType: DTypeUint8, Shape: []int{2, 1}, Values: []float64{0, 255}},
		Bound: Bound{Exit: ptr(1)}, Label: ptr(3),
	}, {ID: "img", Input: Tensor{Format: FormatPNG, Data: []byte("\x89PNG\r\n\x1a\n")}}}
	for _, r := range reqs {
		for _, enc := range []Encoding{MsgPack, JSON} {
			b, err := EncodeRequest(r, enc)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(`{"id":"j","input":{"dtype":"float32","shape":[1,3],"values":[0.5,-1,2e3]},"bound":{"confidence":0.9},"meta":{"a":[1,{"b":null}]}}`))
	f.Add([]byte(`{"id":"j","input":{"dtype":"uint8","shape":[2],"data":"AQI="},"reply_to":"delen/fuzz/r"}`))
	f.Add([]byte(`{"id":"jpg","input":{"format":"jpeg","data":"/9j/4AAQ"}}`))
	f.Add([]byte(`{"id":"both","input":{"format":"png","dtype":"uint8","shape":[1],"data":"AQ=="}}`))
	f.Add([]byte(` {"id":"trunc","input":{"dtype":`))
	f.Add([]byte(`{"input":7,"id":"late-id"}`))
	f.Add(deepMsgpack(MaxMetaDepth + 1))
	f.Add(deepJSON(MaxMetaDepth, "[", "]"))
	f.Add(truncatedAfterID(f))
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
}

// FuzzDecodeRequest: the decoder never panics, fails only with this
// package's errors, recovers only valid ids, and any request that validates
// re-encodes (in its encoding) and decodes to an equal request.
func FuzzDecodeRequest(f *testing.F) {
	requestSeeds(f)
	f.Fuzz(func(t *testing.T, payload []byte) {
		req, enc, err := DecodeRequest(payload, fuzzMax)
		if req == nil {
			t.Fatal("nil request")
		}
		if enc != DetectEncoding(payload) {
			t.Fatalf("encoding %v, detected %v", enc, DetectEncoding(payload))
		}
		if err == nil {
			err = req.Validate("fuzz")
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("not a *schema.Error: %T %v", err, err)
			}
			if e.Code != CodeBadRequest && e.Code != CodeTooLarge {
				t.Fatalf("unexpected code: %v", e)
			}
			if e.ID != "" && !validID(e.ID) {
				t.Fatalf("invalid id recovered: %q", e.ID)
			}
			// The agent can always answer, in either encoding.
			res := NewErrorResult("fuzz", req, err)
			for _, enc := range []Encoding{MsgPack, JSON} {
				if _, err := EncodeResult(res, enc); err != nil {
					t.Fatalf("error result does not encode in %v: %v", enc, err)
				}
			}
			return
		}
		b, err := EncodeRequest(req, enc)
		if err != nil {
			t.Fatalf("valid request does not encode: %v", err)
		}
		again, enc2, err := DecodeRequest(b, 0)
		if err != nil {
			t.Fatalf("re-encoded request does not decode: %v\n%q", err, b)
		}
		if enc2 != enc {
			t.Fatalf("re-encoded as %v, detected %v", enc, enc2)
		}
		if !reflect.DeepEqual(again, req) {
			t.Fatalf("round trip differs:\n got %#v\nwant %#v", again, req)
		}
		if err := again.Validate("fuzz"); err != nil {
			t.Fatalf("re-decoded request does not validate: %v", err)
		}
	})
}

// FuzzDecodeControl: never panics, fails only with bad_request (or
// too_large), and a control that validates round-trips.
func FuzzDecodeControl(f *testing.F) {
	controls := []*Control{
		{Bound: &Bound{LatencyMS: ptr(30.0), Exit: ptr(2)}, Policy: ptr("deadline"), Model: ptr("mnist-ee"), Weight: ptr(2.0)},
		{Bound: &Bound{}, Policy: ptr(""), Conditions: []Condition{}},
		{Policy: ptr("conditions"), Conditions: []Condition{{MetricConfidence, OpGreaterEq, 0.9}, {MetricExit, OpEqual, 2}}},
	}
	for _, c := range controls {
		for _, enc := range []Encoding{MsgPack, JSON} {
			b, err := EncodeControl(c, enc)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(`{"weight":1e400}`))
	f.Add([]byte(`{"conditions":[{"metric":"energy","op":"less","threshold":5,"x":[]}]}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, payload []byte) {
		c, enc, err := DecodeControl(payload, fuzzMax)
		if c == nil {
			t.Fatal("nil control")
		}
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			if code := CodeOf(err); code != CodeBadRequest && code != CodeTooLarge {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		b, err := EncodeControl(c, enc)
		if err != nil {
			t.Fatalf("valid control does not encode: %v", err)
		}
		again, _, err := DecodeControl(b, 0)
		if err != nil {
			t.Fatalf("re-encoded control does not decode: %v\n%q", err, b)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip differs:\n got %#v\nwant %#v", again, c)
		}
		// The effective settings after applying it encode and decode too.
		s := Settings{Weight: 1}.Apply(c)
		sb, err := EncodeSettings(&s, enc)
		if err != nil {
			t.Fatal(err)
		}
		if s2, _, err := DecodeSettings(sb, 0); err != nil || !reflect.DeepEqual(*s2, s) {
			t.Fatalf("settings round trip: %#v vs %#v (%v)", s2, s, err)
		}
	})
}

// FuzzDecodeResult: the client-side decoder never panics, and whatever it
// decodes re-encodes stably (encoding is deterministic: map keys sorted).
func FuzzDecodeResult(f *testing.F) {
	for _, r := range []*Result{fullResult(), NewErrorResult("t", &Request{ID: "x"}, Errorf(CodeOverloaded, "queue full"))} {
		for _, enc := range []Encoding{MsgPack, JSON} {
			b, err := EncodeResult(r, enc)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(`{"top":[[1,0.5],[2]],"status":"ok"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		res, enc, err := DecodeResult(payload, fuzzMax)
		if err != nil {
			if code := CodeOf(err); code != CodeBadRequest && code != CodeTooLarge {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		b1, err := EncodeResult(res, enc)
		if err != nil {
			return // e.g. a NaN in JSON: not a result the agent sends
		}
		res2, _, err := DecodeResult(b1, 0)
		if err != nil {
			t.Fatalf("re-encoded result does not decode: %v\n%q", err, b1)
		}
		b2, err := EncodeResult(res2, enc)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("unstable encoding:\n%q\n%q (%v)", b1, b2, err)
		}
	})
}
