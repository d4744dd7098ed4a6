package schema

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// randomResult is a result with each field set or not, at sizes and values
// that cross every boundary of msgpack's int, string and array forms.
func randomResult(rng *rand.Rand) *Result {
	ints := []int64{0, 1, 31, 32, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64}
	strs := []string{"", "a", strings.Repeat("b", 31), strings.Repeat("c", 32), strings.Repeat("d", 255),
		strings.Repeat("e", 256), strings.Repeat("f", 65536), "ünïcode"}
	floats := []float64{0, 1, -1, 0.93, 1e-300, math.MaxFloat64, math.SmallestNonzeroFloat64}
	pick := func() bool { return rng.IntN(2) == 0 }
	i := func() int64 { return ints[rng.IntN(len(ints))] }
	s := func() string { return strs[rng.IntN(len(strs))] }
	f := func() float64 { return floats[rng.IntN(len(floats))] }
	r := &Result{Status: s(), LatencyMS: f(), QueueMS: f(), ComputeMS: f(), EnergyMJ: f()}
	if pick() {
		r.V = int(i())
	}
	if pick() {
		r.ID, r.Tenant, r.Model = s(), s(), s()
	}
	if pick() {
		r.SentAt = i()
	}
	if pick() {
		r.Meta = map[string]any{"z": i(), "a": s(), "m": map[string]any{"y": f(), "b": []any{true, nil, i()}}, "bin": []byte(s())}
	}
	if pick() {
		r.Error = &Error{Code: s(), Message: s(), ID: "not on the wire"}
	}
	if pick() {
		r.Exit, r.Exits = int(i()), int(i())
	}
	if pick() {
		c := int(i())
		r.Class = &c
	}
	if pick() {
		r.Confidence, r.AccuracyEst = f(), f()
	}
	if pick() {
		for range []int{1, 3, 15, 16, 17}[rng.IntN(5)] {
			r.Top = append(r.Top, ClassProb{Class: int(i()), Prob: f()})
		}
	}
	if pick() {
		r.EnergySource, r.DeadlineFrom = s(), s()
	}
	if pick() {
		met := pick()
		r.BoundMet = &met
	}
	return r
}

// TestResultMsgpackAsTheLibraryWrites: the hand-written encoder writes
// the very bytes the msgpack library writes for the same result (sorted
// map keys, compact ints), for the results the agent sends and for random
// ones, so nothing a client sees changes.
func TestResultMsgpackAsTheLibraryWrites(t *testing.T) {
	errRes := NewErrorResult("cam1", &Request{ID: "r1", SentAt: 5, Meta: map[string]any{"a": "b"}},
		Errorf(CodeUnknownModel, "model %q is not served", "nope"))
	results := []*Result{fullResult(), errRes, {}, {Status: StatusShed, BoundMet: ptr(false)}, {Meta: map[string]any{}}}
	rng := rand.New(rand.NewPCG(13, 3))
	for range 2000 {
		results = append(results, randomResult(rng))
	}
	for _, r := range results {
		lib, err := encode(r, MsgPack, "result")
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendResultMsgpack(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, lib) {
			t.Fatalf("%+v:\n got %x\nwant %x", r, got, lib)
		}
	}
}
