package agent_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/schema"
	"github.com/vmihailenco/msgpack/v5"
)

// badMaxPayload is the agent's payload limit in the bad-input tests: small,
// so that too_large is cheap to provoke.
const badMaxPayload = 64 << 10

// wraps784 × 5 = 2^64 + 784 (≡ 784 in wrapping 64-bit arithmetic).
const wraps784 = 3689348814741910480

// badRow is one malformed request of the catalogue and what the agent must
// answer: a result with status error, code, and id (empty when the id
// cannot be read from the payload: the result then carries none).
type badRow struct {
	name    string
	payload []byte
	code    string
	id      string
}

// del marks a key to drop in with.
type del struct{}

// with returns a copy of m with the given key/value pairs set (del{}
// removes the key).
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m)+len(kv)/2)
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if _, ok := kv[i+1].(del); ok {
			delete(out, k)
			continue
		}
		out[k] = kv[i+1]
	}
	return out
}

// mp encodes v as msgpack with sorted map keys ("id" < "input" < "meta" <
// "model" < "reply_to"), so payloads are deterministic.
func mp(t testing.TB, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := msgpack.NewEncoder(&b)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// deepMeta nests maps n levels deep: {"a": {"a": ... {"a": 1}}}.
func deepMeta(n int) map[string]any {
	var v any = 1
	for i := 1; i < n; i++ {
		v = map[string]any{"a": v}
	}
	return map[string]any{"a": v}
}

func float32Data(vals ...float32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// badCatalogue is the catalogue of malformed requests, in both encodings.
func badCatalogue(t testing.TB) []badRow {
	// A valid mnist-ee input, and a request around it.
	in := map[string]any{"dtype": "uint8", "shape": []int{1, 28, 28}, "data": make([]byte, 28*28)}
	req := func(id string, kv ...any) map[string]any {
		return with(map[string]any{"id": id, "input": in}, kv...)
	}
	inWith := func(kv ...any) map[string]any { return with(in, kv...) }

	zeros := base64.StdEncoding.EncodeToString(make([]byte, 28*28))
	jin := `{"dtype":"uint8","shape":[1,28,28],"data":"` + zeros + `"}`
	jreq := func(id, rest string) []byte {
		return []byte(`{"id":"` + id + `","input":` + jin + rest + `}`)
	}
	jvalues := func(last string) string {
		var b strings.Builder
		for i := 0; i < 28*28-1; i++ {
			b.WriteString("0,")
		}
		return b.String() + last
	}

	// A valid msgpack request, cut short after its id.
	full, err := schema.EncodeRequest(digit("mp-truncated", 0, schema.Bound{}), schema.MsgPack)
	if err != nil {
		t.Fatal(err)
	}
	// A data field that claims 4 GiB: the decoder must not believe it.
	hugeBin := append(mp(t, "id"), mp(t, "mp-huge-bin")...)
	hugeBin = append(hugeBin, mp(t, "input")...)
	hugeBin = append(hugeBin, 0x83)
	hugeBin = append(hugeBin, mp(t, "dtype")...)
	hugeBin = append(hugeBin, mp(t, "uint8")...)
	hugeBin = append(hugeBin, mp(t, "shape")...)
	hugeBin = append(hugeBin, mp(t, []int{28, 28})...)
	hugeBin = append(hugeBin, mp(t, "data")...)
	hugeBin = append([]byte{0x82}, append(hugeBin, 0xc6, 0xff, 0xff, 0xff, 0xff, 0, 0)...)
	// A shape array that claims 4 G elements.
	hugeArray := append([]byte{0x82}, mp(t, "id")...)
	hugeArray = append(hugeArray, mp(t, "mp-huge-array")...)
	hugeArray = append(hugeArray, mp(t, "input")...)
	hugeArray = append(hugeArray, 0x81)
	hugeArray = append(hugeArray, mp(t, "shape")...)
	hugeArray = append(hugeArray, 0xdd, 0xff, 0xff, 0xff, 0xff, 1, 1)

	deepJSON := func(levels int) string {
		return strings.Repeat(`{"a":`, levels) + "1" + strings.Repeat("}", levels)
	}
	bigPad := strings.Repeat("x", badMaxPayload)
	long := strings.Repeat("i", schema.MaxIDBytes+1)

	rows := []badRow{
		// --- msgpack: broken encodings
		{"mp-empty", []byte{}, schema.CodeBadRequest, ""},
		{"mp-blank", []byte("  \n\t "), schema.CodeBadRequest, ""},
		{"mp-nil", []byte{0xc0}, schema.CodeBadRequest, ""},
		{"mp-garbage", []byte{0xc1, 0xff, 0x00, 0x13, 0x37}, schema.CodeBadRequest, ""},
		{"mp-array-not-map", mp(t, []any{"id", "x"}), schema.CodeBadRequest, ""},
		{"mp-truncated", full[:len(full)/2], schema.CodeBadRequest, "mp-truncated"},
		{"mp-trailing-bytes", append(mp(t, req("mp-trailing")), 0x01), schema.CodeBadRequest, "mp-trailing"},
		{"mp-huge-map-header", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, schema.CodeBadRequest, ""},
		{"mp-huge-bin-length", hugeBin, schema.CodeBadRequest, "mp-huge-bin"},
		{"mp-huge-array-length", hugeArray, schema.CodeBadRequest, "mp-huge-array"},
		// --- msgpack: wrong field types, missing fields
		{"mp-id-number", mp(t, with(req(""), "id", 42)), schema.CodeBadRequest, ""},
		{"mp-id-empty", mp(t, req("")), schema.CodeBadRequest, ""},
		{"mp-no-id", mp(t, with(req(""), "id", del{})), schema.CodeBadRequest, ""},
		{"mp-no-input", mp(t, req("mp-no-input", "input", del{})), schema.CodeBadRequest, "mp-no-input"},
		{"mp-input-string", mp(t, req("mp-input-string", "input", "pixels")), schema.CodeBadRequest, "mp-input-string"},
		{"mp-shape-string", mp(t, req("mp-shape-string", "input", inWith("shape", "1x28x28"))), schema.CodeBadRequest, "mp-shape-string"},
		{"mp-shape-floats", mp(t, req("mp-shape-floats", "input", inWith("shape", []float64{1, 28.5, 28}))), schema.CodeBadRequest, "mp-shape-floats"},
		{"mp-dtype-array", mp(t, req("mp-dtype-array", "input", inWith("dtype", []string{"uint8"}))), schema.CodeBadRequest, "mp-dtype-array"},
		{"mp-data-number", mp(t, req("mp-data-number", "input", inWith("data", 7))), schema.CodeBadRequest, "mp-data-number"},
		{"mp-no-data", mp(t, req("mp-no-data", "input", inWith("data", del{}))), schema.CodeBadRequest, "mp-no-data"},
		{"mp-data-and-values", mp(t, req("mp-data-and-values", "input", inWith("values", make([]float64, 784)))), schema.CodeBadRequest, "mp-data-and-values"},
		{"mp-bound-string", mp(t, req("mp-bound-string", "bound", "fast")), schema.CodeBadRequest, "mp-bound-string"},
		{"mp-meta-array", mp(t, req("mp-meta-array", "meta", []int{1, 2})), schema.CodeBadRequest, "mp-meta-array"},
		// --- msgpack: shapes
		{"mp-zero-dim", mp(t, req("mp-zero-dim", "input", inWith("shape", []int{0, 28, 28}, "data", []byte{}))), schema.CodeBadRequest, "mp-zero-dim"},
		{"mp-negative-dim", mp(t, req("mp-negative-dim", "input", inWith("shape", []int{-1, 28, 28}))), schema.CodeBadRequest, "mp-negative-dim"},
		{"mp-negative-pair", mp(t, req("mp-negative-pair", "input", inWith("shape", []int{-1, -784}))), schema.CodeBadRequest, "mp-negative-pair"},
		{"mp-empty-shape", mp(t, req("mp-empty-shape", "input", inWith("shape", []int{}))), schema.CodeBadRequest, "mp-empty-shape"},
		{"mp-huge-dim", mp(t, req("mp-huge-dim", "input", inWith("shape", []int64{1 << 62}))), schema.CodeBadRequest, "mp-huge-dim"},
		{"mp-dim-over-uint64", mp(t, req("mp-dim-over-uint64", "input", inWith("shape", []uint64{math.MaxUint64}))), schema.CodeBadRequest, "mp-dim-over-uint64"},
		{"mp-product-overflows-int64", mp(t, req("mp-product-overflows", "input", inWith("shape", []int64{1 << 31, 1 << 31, 1 << 31}))), schema.CodeBadRequest, "mp-product-overflows"},
		{"mp-product-wraps-to-zero", mp(t, req("mp-product-zero", "input", inWith("shape", []int64{1 << 32, 1 << 32, 784}))), schema.CodeBadRequest, "mp-product-zero"},
		// 5 × 3689348814741910480 = 2^64 + 784: a product computed with
		// wrapping arithmetic is exactly the 784 bytes of data sent.
		{"mp-product-wraps-to-784", mp(t, req("mp-product-784", "input", inWith("shape", []int64{5, wraps784}))), schema.CodeBadRequest, "mp-product-784"},
		{"mp-rank-17", mp(t, req("mp-rank-17", "input", inWith("shape", make17Ones()))), schema.CodeBadRequest, "mp-rank-17"},
		// --- msgpack: data vs shape and dtype, values
		{"mp-data-short", mp(t, req("mp-data-short", "input", inWith("data", make([]byte, 783)))), schema.CodeBadRequest, "mp-data-short"},
		{"mp-data-long", mp(t, req("mp-data-long", "input", inWith("data", make([]byte, 785)))), schema.CodeBadRequest, "mp-data-long"},
		{"mp-float32-data-uint8-size", mp(t, req("mp-f32-size", "input", inWith("dtype", "float32"))), schema.CodeBadRequest, "mp-f32-size"},
		{"mp-float32-nan", mp(t, req("mp-nan", "input", inWith("dtype", "float32", "shape", []int{28, 28}, "data", append(float32Data(make([]float32, 783)...), float32Data(float32(math.NaN()))...)))), schema.CodeBadRequest, "mp-nan"},
		{"mp-float32-inf", mp(t, req("mp-inf", "input", inWith("dtype", "float32", "shape", []int{28, 28}, "data", append(float32Data(float32(math.Inf(-1))), float32Data(make([]float32, 783)...)...)))), schema.CodeBadRequest, "mp-inf"},
		{"mp-values-nan", mp(t, req("mp-values-nan", "input", inWith("dtype", "float32", "data", del{}, "values", append(make([]float64, 783), math.NaN())))), schema.CodeBadRequest, "mp-values-nan"},
		{"mp-values-uint8-range", mp(t, req("mp-values-range", "input", inWith("data", del{}, "values", append(make([]float64, 783), 256)))), schema.CodeBadRequest, "mp-values-range"},
		{"mp-values-count", mp(t, req("mp-values-count", "input", inWith("data", del{}, "values", make([]float64, 10)))), schema.CodeBadRequest, "mp-values-count"},
		{"mp-unknown-dtype", mp(t, req("mp-unknown-dtype", "input", inWith("dtype", "int64"))), schema.CodeBadRequest, "mp-unknown-dtype"},
		// --- msgpack: the model, bounds, version, label
		{"mp-unknown-model", mp(t, req("mp-unknown-model", "model", "resnet-9000")), schema.CodeUnknownModel, "mp-unknown-model"},
		{"mp-shape-mismatch", mp(t, req("mp-shape-mismatch", "input", inWith("shape", []int{1, 28}, "data", make([]byte, 28)))), schema.CodeShapeMismatch, "mp-shape-mismatch"},
		{"mp-long-model-name", mp(t, req("mp-long-model", "model", strings.Repeat("m", 200))), schema.CodeBadRequest, "mp-long-model"},
		{"mp-unknown-policy", mp(t, req("mp-unknown-policy", "policy", "yolo")), schema.CodeBadRequest, "mp-unknown-policy"},
		{"mp-negative-latency", mp(t, req("mp-neg-latency", "bound", map[string]any{"latency_ms": -5})), schema.CodeBadRequest, "mp-neg-latency"},
		{"mp-accuracy-2", mp(t, req("mp-accuracy-2", "bound", map[string]any{"accuracy": 2})), schema.CodeBadRequest, "mp-accuracy-2"},
		{"mp-exit-0", mp(t, req("mp-exit-0", "bound", map[string]any{"exit": 0})), schema.CodeBadRequest, "mp-exit-0"},
		{"mp-exit-99", mp(t, req("mp-exit-99", "bound", map[string]any{"exit": 99})), schema.CodeBadRequest, "mp-exit-99"},
		{"mp-version-2", mp(t, req("mp-version-2", "v", 2)), schema.CodeBadRequest, "mp-version-2"},
		{"mp-negative-label", mp(t, req("mp-negative-label", "label", -1)), schema.CodeBadRequest, "mp-negative-label"},
		// --- msgpack: reply_to
		{"mp-reply-to-other-tenant", mp(t, req("mp-reply-other", "reply_to", "delen/other/results")), schema.CodeBadRequest, "mp-reply-other"},
		{"mp-reply-to-plus", mp(t, req("mp-reply-plus", "reply_to", "delen/cam1/+/x")), schema.CodeBadRequest, "mp-reply-plus"},
		{"mp-reply-to-hash", mp(t, req("mp-reply-hash", "reply_to", "delen/cam1/#")), schema.CodeBadRequest, "mp-reply-hash"},
		{"mp-reply-to-own-requests", mp(t, req("mp-reply-requests", "reply_to", "delen/cam1/requests")), schema.CodeBadRequest, "mp-reply-requests"},
		{"mp-reply-to-outside-prefix", mp(t, req("mp-reply-outside", "reply_to", "elsewhere/cam1/r")), schema.CodeBadRequest, "mp-reply-outside"},
		// --- msgpack: ids, strings, meta
		{"mp-oversized-id", mp(t, req(long)), schema.CodeBadRequest, ""},
		{"mp-invalid-utf8-id", mp(t, req("bad-\xff\xfe-id")), schema.CodeBadRequest, ""},
		{"mp-invalid-utf8-model", mp(t, req("mp-utf8-model", "model", "mnist-\xc3\x28")), schema.CodeBadRequest, "mp-utf8-model"},
		{"mp-invalid-utf8-meta", mp(t, req("mp-utf8-meta", "meta", map[string]any{"cam": "\xed\xa0\x80"})), schema.CodeBadRequest, "mp-utf8-meta"},
		{"mp-invalid-utf8-meta-key", mp(t, req("mp-utf8-key", "meta", map[string]any{"\xff": 1})), schema.CodeBadRequest, "mp-utf8-key"},
		{"mp-meta-int-key", mp(t, req("mp-meta-int-key", "meta", map[any]any{1: "x"})), schema.CodeBadRequest, "mp-meta-int-key"},
		{"mp-meta-ext-type", mp(t, req("mp-meta-ext", "meta", map[string]any{"x": msgpack.RawMessage{0xd4, 0x01, 0x00}})), schema.CodeBadRequest, "mp-meta-ext"},
		{"mp-meta-nan", mp(t, req("mp-meta-nan", "meta", map[string]any{"x": math.NaN()})), schema.CodeBadRequest, "mp-meta-nan"},
		{"mp-meta-depth-17", mp(t, req("mp-meta-17", "meta", deepMeta(schema.MaxMetaDepth+1))), schema.CodeBadRequest, "mp-meta-17"},
		{"mp-meta-depth-5000", mp(t, req("mp-meta-5000", "meta", deepMeta(5000))), schema.CodeBadRequest, "mp-meta-5000"},
		{"mp-oversized-payload", mp(t, req("mp-too-large", "meta", map[string]any{"pad": bigPad})), schema.CodeTooLarge, "mp-too-large"},

		// --- JSON: broken encodings
		{"json-garbage", []byte(`{garbage`), schema.CodeBadRequest, ""},
		{"json-only-brace", []byte(` {`), schema.CodeBadRequest, ""},
		{"json-truncated", []byte(`{"id":"json-truncated","input":{"dtype":"uint8","sha`), schema.CodeBadRequest, "json-truncated"},
		{"json-trailing", append(jreq("json-trailing", ""), []byte(`{}`)...), schema.CodeBadRequest, "json-trailing"},
		{"json-array", []byte(`[{"id":"x"}]`), schema.CodeBadRequest, ""},
		{"json-bad-base64", []byte(`{"id":"json-b64","input":{"dtype":"uint8","shape":[28,28],"data":"!!not base64!!"}}`), schema.CodeBadRequest, "json-b64"},
		// --- JSON: wrong types, missing fields
		{"json-id-number", []byte(`{"id":42,"input":` + jin + `}`), schema.CodeBadRequest, ""},
		{"json-id-null", []byte(`{"id":null,"input":` + jin + `}`), schema.CodeBadRequest, ""},
		{"json-no-id", []byte(`{"input":` + jin + `}`), schema.CodeBadRequest, ""},
		{"json-no-input", []byte(`{"id":"json-no-input"}`), schema.CodeBadRequest, "json-no-input"},
		{"json-shape-string", []byte(`{"id":"json-shape-str","input":{"dtype":"uint8","shape":"28x28","data":"` + zeros + `"}}`), schema.CodeBadRequest, "json-shape-str"},
		{"json-dtype-array", []byte(`{"id":"json-dtype-arr","input":{"dtype":["uint8"],"shape":[28,28],"data":"` + zeros + `"}}`), schema.CodeBadRequest, "json-dtype-arr"},
		{"json-shape-bool", []byte(`{"id":"json-shape-bool","input":{"dtype":"uint8","shape":[true,28],"data":"` + zeros + `"}}`), schema.CodeBadRequest, "json-shape-bool"},
		{"json-values-strings", []byte(`{"id":"json-values-str","input":{"dtype":"uint8","shape":[2],"values":["1","2"]}}`), schema.CodeBadRequest, "json-values-str"},
		// --- JSON: shapes and data
		{"json-zero-dim", []byte(`{"id":"json-zero","input":{"dtype":"uint8","shape":[28,0],"data":""}}`), schema.CodeBadRequest, "json-zero"},
		{"json-negative-dim", []byte(`{"id":"json-neg","input":{"dtype":"uint8","shape":[-28,-28],"data":"` + zeros + `"}}`), schema.CodeBadRequest, "json-neg"},
		{"json-huge-dim", []byte(`{"id":"json-huge","input":{"dtype":"uint8","shape":[1e300],"data":""}}`), schema.CodeBadRequest, "json-huge"},
		{"json-dim-beyond-int64", []byte(`{"id":"json-big-int","input":{"dtype":"uint8","shape":[99999999999999999999999],"data":""}}`), schema.CodeBadRequest, "json-big-int"},
		{"json-product-overflows-int64", []byte(`{"id":"json-overflow","input":{"dtype":"uint8","shape":[4294967296,4294967296,4294967296],"data":""}}`), schema.CodeBadRequest, "json-overflow"},
		{"json-product-wraps-to-784", []byte(`{"id":"json-wraps","input":{"dtype":"uint8","shape":[5,` + strconv.FormatInt(wraps784, 10) + `],"data":"` + zeros + `"}}`), schema.CodeBadRequest, "json-wraps"},
		{"json-data-length", []byte(`{"id":"json-len","input":{"dtype":"float32","shape":[28,28],"data":"` + zeros + `"}}`), schema.CodeBadRequest, "json-len"},
		{"json-values-inf", []byte(`{"id":"json-inf","input":{"dtype":"float32","shape":[28,28],"values":[` + jvalues("1e39") + `]}}`), schema.CodeBadRequest, "json-inf"},
		{"json-values-huge-exponent", []byte(`{"id":"json-1e999","input":{"dtype":"float32","shape":[28,28],"values":[` + jvalues("1e999") + `]}}`), schema.CodeBadRequest, "json-1e999"},
		{"json-unknown-dtype", []byte(`{"id":"json-dtype","input":{"dtype":"float64","shape":[28,28],"data":"` + zeros + `"}}`), schema.CodeBadRequest, "json-dtype"},
		// --- JSON: model, reply_to, ids, strings, meta
		{"json-unknown-model", jreq("json-model", `,"model":"no-such-model"`), schema.CodeUnknownModel, "json-model"},
		{"json-shape-mismatch", []byte(`{"id":"json-mismatch","input":{"dtype":"uint8","shape":[2],"values":[1,2]}}`), schema.CodeShapeMismatch, "json-mismatch"},
		{"json-reply-to-other-tenant", jreq("json-reply-other", `,"reply_to":"delen/cam2/results"`), schema.CodeBadRequest, "json-reply-other"},
		{"json-reply-to-wildcard", jreq("json-reply-wild", `,"reply_to":"delen/cam1/#"`), schema.CodeBadRequest, "json-reply-wild"},
		{"json-reply-to-nul", jreq("json-reply-nul", `,"reply_to":"delen/cam1/a\u0000b"`), schema.CodeBadRequest, "json-reply-nul"},
		{"json-oversized-id", jreq(long, ""), schema.CodeBadRequest, ""},
		{"json-invalid-utf8-id", jreq("bad-\xff-id", ""), schema.CodeBadRequest, ""},
		{"json-invalid-utf8-model", jreq("json-utf8-model", ",\"model\":\"\xc0\xaf\""), schema.CodeBadRequest, "json-utf8-model"},
		{"json-invalid-utf8-meta", jreq("json-utf8-meta", ",\"meta\":{\"k\":\"\xf5\x80\"}"), schema.CodeBadRequest, "json-utf8-meta"},
		{"json-meta-depth-17", jreq("json-meta-17", `,"meta":`+deepJSON(schema.MaxMetaDepth+1)), schema.CodeBadRequest, "json-meta-17"},
		{"json-meta-depth-10000", jreq("json-meta-10000", `,"meta":`+deepJSON(10000)), schema.CodeBadRequest, "json-meta-10000"},
		{"json-meta-array-depth-30000", jreq("json-arrays", `,"meta":{"a":`+strings.Repeat("[", 30000)+strings.Repeat("]", 30000)+`}`), schema.CodeBadRequest, "json-arrays"},
		{"json-oversized-payload", jreq("json-too-large", `,"meta":{"pad":"`+bigPad+`"}`), schema.CodeTooLarge, "json-too-large"},
		{"json-oversized-id-after-bulk", []byte(`{"meta":{"pad":"` + bigPad + `"},"id":"json-late-id","input":` + jin + `}`), schema.CodeTooLarge, ""},
	}
	return rows
}

func make17Ones() []int {
	s := make([]int, schema.MaxRank+1)
	for i := range s {
		s[i] = 1
	}
	s[0] = 784
	return s
}

// badTopics are request-like publishes on topics that name no valid tenant
// (delivered to the agent through its delen/+/requests subscription:
// dropped and counted), and one it does not subscribe to at all.
var badTopics = []struct {
	topic     string
	delivered bool
}{
	{"delen/BAD_TENANT/requests", true},
	{"delen/_agents/requests", true},
	{"delen//requests", true},
	{"delen/-cam/requests", true},
	{"delen/cam1/requests/extra", false},
}

// stream is a tenant client that hands over every result in arrival order.
type stream struct {
	t      *testing.T
	c      *broker.Client
	tenant string
	ch     chan streamed
}

type streamed struct {
	res *schema.Result
	raw []byte
}

func newStream(t *testing.T, url, tenant string) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := broker.Dial(ctx, broker.ClientConfig{URL: url, ClientID: fmt.Sprintf("stream-%s-%d", tenant, time.Now().UnixNano()),
		CleanSession: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s := &stream{t: t, c: c, tenant: tenant, ch: make(chan streamed, 1<<14)}
	if err := c.Subscribe(schema.Topics{}.Results(tenant), 1, func(m broker.Message) {
		m.Ack()
		raw := append([]byte(nil), m.Payload()...)
		r, _, err := schema.DecodeResult(raw, 1<<20)
		if err != nil {
			t.Errorf("undecodable result %q: %v", raw, err)
			return
		}
		s.ch <- streamed{r, raw}
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *stream) publishTo(topic string, payload []byte) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.c.Publish(ctx, topic, 1, false, payload); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stream) publish(payload []byte) { s.publishTo(schema.Topics{}.Requests(s.tenant), payload) }

// next returns the next result, failing the test after 20 s.
func (s *stream) next(what string) streamed {
	s.t.Helper()
	select {
	case r := <-s.ch:
		return r
	case <-time.After(20 * time.Second):
		s.t.Fatalf("%s: no result within 20 s", what)
	}
	return streamed{}
}

// goodPayload is a valid, cheap (exit 1) msgpack request.
func goodPayload(t testing.TB, id string, i int) []byte {
	b, err := schema.EncodeRequest(digit(id, i%1000, schema.Bound{Exit: intp(1)}), schema.MsgPack)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// scrape reads the agent's /metrics.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// metricValue is the sum of the samples of name whose labels include all
// of labels ("k", "v", ...) in Prometheus' text format.
func metricValue(body, name string, labels ...string) float64 {
	sum := 0.0
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest == "" || (rest[0] != '{' && rest[0] != ' ')) {
			continue
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(rest, labels[i]+`="`+labels[i+1]+`"`) {
				match = false
			}
		}
		if !match {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// TestBadInputCatalogue sends every malformed request of the catalogue to a
// real agent, one at a time: each gets exactly one result, with status
// error, the expected code, the id when it can be read and the request's
// encoding; after each, a good request is served. Requests on topics that
// name no tenant get no result, are counted as dropped, and the agent keeps
// serving.
func TestBadInputCatalogue(t *testing.T) {
	rows := badCatalogue(t)
	if len(rows) < 30 {
		t.Fatalf("catalogue of %d rows", len(rows))
	}
	brokers(t, func(t *testing.T, url string) {
		r := startAgent(t, url, t.TempDir(), func(c *agent.Config) { c.MaxPayload = badMaxPayload })
		cam := newStream(t, url, "cam1")
		codes := map[string]int{}
		for i, row := range rows {
			cam.publish(row.payload)
			got := cam.next(row.name)
			res := got.res
			switch {
			case res.Status != schema.StatusError || res.Error == nil:
				t.Errorf("%s: status %q error %+v, want error %s", row.name, res.Status, res.Error, row.code)
			case res.Error.Code != row.code:
				t.Errorf("%s: code %s (%s), want %s", row.name, res.Error.Code, res.Error.Message, row.code)
			}
			if res.ID != row.id {
				t.Errorf("%s: result id %q, want %q", row.name, res.ID, row.id)
			}
			if res.Tenant != "cam1" {
				t.Errorf("%s: tenant %q", row.name, res.Tenant)
			}
			if wantJSON, isJSON := schema.DetectEncoding(row.payload) == schema.JSON, got.raw[0] == '{'; wantJSON != isJSON {
				t.Errorf("%s: result in the wrong encoding: %q", row.name, got.raw)
			}
			if testing.Verbose() && res.Error != nil {
				t.Logf("%-32s → %s %q", row.name, res.Error.Code, res.Error.Message)
			}
			codes[row.code]++
			// The agent keeps serving.
			id := fmt.Sprintf("good-after-%d", i)
			cam.publish(goodPayload(t, id, i))
			if g := cam.next(id).res; g.ID != id || g.Status != schema.StatusOK || g.Exit != 1 {
				t.Fatalf("good request after %s: id %q status %s exit %d error %+v", row.name, g.ID, g.Status, g.Exit, g.Error)
			}
		}

		// Topics that name no tenant.
		for _, bt := range badTopics {
			cam.publishTo(bt.topic, goodPayload(t, "on-a-bad-topic", 0))
		}
		cam.publish(goodPayload(t, "after-bad-topics", 1))
		if g := cam.next("after-bad-topics").res; g.ID != "after-bad-topics" || g.Status != schema.StatusOK {
			t.Fatalf("after the bad topics: %+v (a bad topic was answered?)", g)
		}
		delivered := 0
		for _, bt := range badTopics {
			if bt.delivered {
				delivered++
			}
		}
		h := r.a.Metrics().Handler()
		deadline := time.Now().Add(10 * time.Second)
		var dropped float64
		for {
			dropped = metricValue(scrape(t, h), "delen_dropped_total", "reason", "bad_topic")
			if int(dropped) >= delivered || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond) // polling a counter, bounded
		}
		if int(dropped) != delivered {
			t.Errorf(`delen_dropped_total{reason="bad_topic"} = %v, want %d`, dropped, delivered)
		}
		select {
		case extra := <-cam.ch:
			t.Errorf("unexpected result: %+v", extra.res)
		default:
		}

		// Every refusal is counted under its code.
		body := scrape(t, h)
		for code, n := range codes {
			if got := metricValue(body, "delen_requests_total", "tenant", "cam1", "status", "error", "code", code); int(got) != n {
				t.Errorf(`delen_requests_total{tenant="cam1",status="error",code=%q} = %v, want %d`, code, got, n)
			}
		}
		t.Logf("%d malformed requests answered (%v), %d bad topics dropped, %d good requests served in between", len(rows), codes, delivered, len(rows)+1)
	})
}

// TestBadInputMemoryBounded sends the whole catalogue (and the bad topics)
// many times, with a good request per round, and checks that the agent's
// process (agent and embedded broker share it) keeps answering everything
// and that the live heap after a GC and the goroutine count stay bounded.
func TestBadInputMemoryBounded(t *testing.T) {
	rounds := 200
	if testing.Short() {
		rounds = 20
	}
	rows := badCatalogue(t)
	url := startEmbedded(t, broker.EmbeddedConfig{}).Addr()
	startAgent(t, url, t.TempDir(), func(c *agent.Config) { c.MaxPayload = badMaxPayload })
	cam := newStream(t, url, "cam1")
	round := func(k int) {
		for _, row := range rows {
			cam.publish(row.payload)
		}
		for _, bt := range badTopics {
			cam.publishTo(bt.topic, goodPayload(t, "on-a-bad-topic", k))
		}
		id := fmt.Sprintf("good-%d", k)
		cam.publish(goodPayload(t, id, k))
		errs, good := 0, 0
		for i := 0; i < len(rows)+1; i++ {
			res := cam.next(fmt.Sprintf("round %d, result %d of %d", k, i+1, len(rows)+1)).res
			switch {
			case res.ID == id && res.Status == schema.StatusOK:
				good++
			case res.Status == schema.StatusError:
				errs++
			default:
				t.Fatalf("round %d: unexpected result %+v", k, res)
			}
		}
		if errs != len(rows) || good != 1 {
			t.Fatalf("round %d: %d errors and %d served, want %d and 1", k, errs, good, len(rows))
		}
	}
	heap := func() (uint64, int) {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc, runtime.NumGoroutine()
	}
	// Warm up: first-use allocations (pools, Badger tables) are not growth.
	for k := 0; k < 5; k++ {
		round(1_000_000 + k)
	}
	baseHeap, baseG := heap()
	start := time.Now()
	for k := 0; k < rounds; k++ {
		round(k)
	}
	elapsed := time.Since(start)
	endHeap, endG := heap()
	growth := int64(endHeap) - int64(baseHeap)
	t.Logf("%d rounds × %d malformed requests + %d bad topics + 1 good in %s: heap %.1f → %.1f MiB (%+.1f MiB), goroutines %d → %d",
		rounds, len(rows), len(badTopics), elapsed.Round(time.Millisecond), mib(baseHeap), mib(endHeap), float64(growth)/(1<<20), baseG, endG)
	if growth > 64<<20 {
		t.Errorf("heap grew by %.1f MiB over %d rounds of malformed requests, want < 64 MiB", float64(growth)/(1<<20), rounds)
	}
	if endG > baseG+50 {
		t.Errorf("goroutines grew from %d to %d", baseG, endG)
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
