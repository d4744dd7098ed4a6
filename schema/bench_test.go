package schema

import "testing"

// mnistRequest is a typical request: one 28×28 float32 image.
func mnistRequest() *Request {
	px := make([]float32, 28*28)
	for i := range px {
		px[i] = float32(i%255) / 255
	}
	return &Request{
		ID: "cam1-000042", Model: "mnist-ee", Input: NewFloat32Tensor([]int{1, 1, 28, 28}, px),
		Bound: Bound{LatencyMS: ptr(20.0)}, SentAt: 1732550000123456, Meta: map[string]any{"frame": int64(42)},
	}
}

func benchDecode(b *testing.B, payload []byte) {
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		req, _, err := DecodeRequest(payload, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := req.Validate("cam1"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRequestMsgpack(b *testing.B) {
	payload, err := EncodeRequest(mnistRequest(), MsgPack)
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, payload)
}

func BenchmarkDecodeRequestJSON(b *testing.B) {
	payload, err := EncodeRequest(mnistRequest(), JSON)
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, payload)
}

// Node-RED style: the image as a JSON array of numbers.
func BenchmarkDecodeRequestJSONValues(b *testing.B) {
	req := mnistRequest()
	px, _ := req.Input.Float32s(nil)
	req.Input.Data = nil
	for _, v := range px {
		req.Input.Values = append(req.Input.Values, float64(v))
	}
	payload, err := EncodeRequest(req, JSON)
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, payload)
}

func BenchmarkEncodeResult(b *testing.B) {
	noMeta := fullResult()
	noMeta.Meta = nil
	for _, tc := range []struct {
		name string
		res  *Result
	}{{"", fullResult()}, {"-nometa", noMeta}} {
		for _, enc := range []Encoding{MsgPack, JSON} {
			b.Run(enc.String()+tc.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := EncodeResult(tc.res, enc); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		// The msgpack library on its own, what EncodeResult used before.
		b.Run("msgpack-library"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := encode(tc.res, MsgPack, "result"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A control message with every field, JSON as tenants send it.
func BenchmarkDecodeControlJSON(b *testing.B) {
	payload := []byte(`{"bound":{"latency_ms":30,"exit":2},"policy":"deadline","model":"mnist-ee","weight":2,` +
		`"conditions":[{"metric":"confidence","op":"greater_eq","threshold":0.9}],"params":{"joules":5,"window_s":60},` +
		`"infeasible":"shed","queue_limit":8,"rate_limit":20}`)
	b.ReportAllocs()
	for b.Loop() {
		c, _, err := DecodeControl(payload, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			b.Fatal(err)
		}
		_ = Settings{Weight: 1}.Apply(c)
	}
}
