package policies

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/schema"
)

// simulate runs the cascade thr over v and returns its accuracy and mean
// cost, independently of the tuner.
func simulate(v *profile.Validation, cost, thr []float64) (acc, meanCost float64) {
	k, n := len(v.Confidence), len(v.Confidence[0])
	right := 0
	var total float64
	for s := range n {
		e := k - 1
		for j := 0; j < k-1; j++ {
			if float64(v.Confidence[j][s]) >= thr[j] {
				e = j
				break
			}
		}
		if v.Correct[e][s] {
			right++
		}
		total += cost[e]
	}
	return float64(right) / float64(n), total / float64(n)
}

// simpleCost is the cost of the simple rule: every sample runs to the
// first exit whose profiled accuracy reaches target.
func simpleCost(p *profile.Profile, cost []float64, target float64) float64 {
	for k, e := range p.Exits {
		if e.Accuracy >= target {
			return cost[k]
		}
	}
	return cost[len(cost)-1]
}

func TestTuneThresholds(t *testing.T) {
	p := withValidation(10000)
	cost, unit := cascadeCost(p)
	if unit != "ms (p50)" || cost[0] != 8 || cost[1] != 24 || cost[2] != 48 {
		t.Fatalf("cascade cost %v %s", cost, unit)
	}
	for _, target := range []float64{0.80, 0.85, 0.88, 0.9, 0.93} {
		start := time.Now()
		thr, acc, c, ok := TuneThresholds(p.Validation, cost, target)
		took := time.Since(start)
		if !ok || len(thr) != 2 {
			t.Fatalf("target %.2f: ok %v, thresholds %v", target, ok, thr)
		}
		simAcc, simCost := simulate(p.Validation, cost, thr)
		if math.Abs(simAcc-acc) > 1e-12 || math.Abs(simCost-c) > 1e-9 {
			t.Fatalf("target %.2f: reported %.5f/%.3f, simulated %.5f/%.3f", target, acc, c, simAcc, simCost)
		}
		if acc < target {
			t.Fatalf("target %.2f: expected accuracy %.4f", target, acc)
		}
		simple := simpleCost(p, cost, target)
		if c >= simple {
			t.Fatalf("target %.2f: tuned cost %.3f not below the simple rule's %.3f", target, c, simple)
		}
		t.Logf("target %.2f: thresholds %.4f, accuracy %.4f, cost %.2f ms (simple rule %.2f ms), %v",
			target, thr, acc, c, simple, took)
	}
}

// TestTuneNearOptimal compares the tuner with an exhaustive search over
// a grid of each exit's confidence quantiles.
func TestTuneNearOptimal(t *testing.T) {
	p := withValidation(2000)
	v := p.Validation
	cost, _ := cascadeCost(p)
	grid := func(k int) []float64 {
		tu := newTuner(v, cost)
		out := []float64{NeverStop}
		for _, b := range tu.boundaries(k, gridBins) {
			out = append(out, float64(v.Confidence[k][tu.order[k][b-1]]))
		}
		return out
	}
	g0, g1 := grid(0), grid(1)
	for _, target := range []float64{0.85, 0.9, 0.93} {
		best := math.Inf(1)
		for _, a := range g0 {
			for _, b := range g1 {
				if acc, c := simulate(v, cost, []float64{a, b}); acc >= target && c < best {
					best = c
				}
			}
		}
		_, _, c, ok := TuneThresholds(v, cost, target)
		if !ok || c > best*1.0001 {
			t.Fatalf("target %.2f: tuned cost %.4f, grid optimum %.4f", target, c, best)
		}
	}
}

func TestTuneThresholdsEdges(t *testing.T) {
	p := withValidation(1000)
	v := p.Validation
	last := p.Exits[2].Accuracy
	// A target above the full model's accuracy: the full model, not ok.
	thr, acc, c, ok := TuneThresholds(v, nil, last+0.01)
	if ok || len(thr) != 2 || thr[0] != NeverStop || thr[1] != NeverStop || acc != last || c != 3 {
		t.Fatalf("unreachable target: %v %v %v %v", thr, acc, c, ok)
	}
	// Exactly the full model's accuracy is reachable.
	if _, acc, _, ok := TuneThresholds(v, nil, last); !ok || acc < last {
		t.Fatalf("target = full model: %v %v", acc, ok)
	}
	// One exit: no thresholds.
	one := &profile.Validation{Confidence: v.Confidence[:1], Correct: v.Correct[:1]}
	if thr, acc, c, ok := TuneThresholds(one, []float64{5}, 0.5); !ok || len(thr) != 0 || acc != p.Exits[0].Accuracy || c != 5 {
		t.Fatalf("one exit: %v %v %v %v", thr, acc, c, ok)
	}
	// Unusable input.
	ragged := &profile.Validation{Confidence: [][]float32{{0.5, 0.6}, {0.7}}, Correct: [][]bool{{true, false}, {true}}}
	for name, in := range map[string]*profile.Validation{"nil": nil, "empty": {}, "ragged": ragged,
		"no samples": {Confidence: [][]float32{{}}, Correct: [][]bool{{}}},
		"NaN":        {Confidence: [][]float32{{float32(math.NaN())}}, Correct: [][]bool{{true}}},
		"above 1":    {Confidence: [][]float32{{1.5}}, Correct: [][]bool{{true}}}} {
		if thr, _, _, ok := TuneThresholds(in, nil, 0.5); ok || thr != nil {
			t.Errorf("%s: %v %v", name, thr, ok)
		}
	}
	if thr, _, _, ok := TuneThresholds(v, []float64{1, 2}, 0.5); ok || thr != nil {
		t.Errorf("short cost: %v %v", thr, ok)
	}
	// Easy data: everything leaves at exit 1.
	easy := &profile.Validation{Confidence: [][]float32{{0.99, 0.98}, {0.99, 0.99}}, Correct: [][]bool{{true, true}, {true, true}}}
	if thr, acc, c, ok := TuneThresholds(easy, []float64{1, 2}, 1); !ok || thr[0] > float64(float32(0.98)) || acc != 1 || c != 1 {
		t.Errorf("easy: %v %v %v %v", thr, acc, c, ok)
	}
}

func TestCascadeCost(t *testing.T) {
	p := synthetic()
	for k := range p.Stages {
		p.Stages[k].LatencyMS = profile.Quantiles{}
		p.Exits[k].FLOPs = float64(k+1) * 1e9
	}
	if c, unit := cascadeCost(p); unit != "FLOPs" || c[2] != 3e9 {
		t.Fatalf("FLOPs cost: %v %s", c, unit)
	}
	p.Exits[1].FLOPs = 0
	if c, unit := cascadeCost(p); unit != "stages" || c[2] != 3 {
		t.Fatalf("stage cost: %v %s", c, unit)
	}
}

// TestAccuracyPolicy drives every validation sample through the policy:
// what it serves has the tuned accuracy and cost, and confident requests
// leave at exit 1 though exit 1's average accuracy is below the target.
func TestAccuracyPolicy(t *testing.T) {
	p := withValidation(3000)
	v := p.Validation
	cost, _ := cascadeCost(p)
	const target = 0.9
	for _, ps := range []Params{nil, {"accuracy": target}} {
		pol := mustNew(t, "accuracy", ps).(*AccuracyPolicy)
		var b schema.Bound
		if ps == nil {
			b.Accuracy = f(target)
		}
		right := 0
		var total float64
		for s := range len(v.Confidence[0]) {
			conf := []float64{float64(v.Confidence[0][s]), float64(v.Confidence[1][s]), float64(v.Confidence[2][s])}
			o := drive(pol, p, req{bound: b, conf: conf})
			if o.act != Stop {
				t.Fatalf("sample %d: %v", s, o.act)
			}
			if v.Correct[o.exit-1][s] {
				right++
			}
			total += cost[o.exit-1]
		}
		n := float64(len(v.Confidence[0]))
		tu := pol.Tune(p, target)
		if !tu.OK || math.Abs(float64(right)/n-tu.ExpAccuracy) > 1e-12 || math.Abs(total/n-tu.ExpCost) > 1e-9 {
			t.Fatalf("served accuracy %.4f cost %.3f, tuned %+v", float64(right)/n, total/n, tu)
		}
		if tu.ExpAccuracy < target || tu.ExpCost >= simpleCost(p, cost, target) {
			t.Fatalf("tuned %+v, simple rule cost %.2f", tu, simpleCost(p, cost, target))
		}
	}
	pol := mustNew(t, "accuracy", nil)
	if o := drive(pol, p, req{bound: schema.Bound{Accuracy: f(target)}, conf: high}); o.exit != 1 {
		t.Fatalf("confident request served exit %d, want 1", o.exit)
	}
	if o := drive(pol, p, req{bound: schema.Bound{Accuracy: f(target)}, conf: []float64{0.3, 0.3, 0.3}}); o.exit != 3 {
		t.Fatalf("unsure request served exit %d, want 3", o.exit)
	}
	// Above the full model: the full model even for confident requests.
	if o := drive(pol, p, req{bound: schema.Bound{Accuracy: f(0.999)}, conf: high}); o.exit != 3 {
		t.Fatalf("unreachable target served exit %d, want 3", o.exit)
	}
	// Hard limits still apply.
	if o := drive(pol, p, req{bound: schema.Bound{Accuracy: f(0.999), LatencyMS: f(35)}, conf: high}); o.exit != 2 {
		t.Fatalf("latency-capped request served exit %d, want 2", o.exit)
	}
	if o := drive(pol, p, req{bound: schema.Bound{Accuracy: f(target), LatencyMS: f(5)}, queueMS: 10}); o.act != Infeasible {
		t.Fatalf("passed deadline: %v", o.act)
	}
}

// TestAccuracyFallback: without validation data (or with data that does
// not match the model) the simple rule applies.
func TestAccuracyFallback(t *testing.T) {
	mismatched := withValidation(100)
	mismatched.Validation.Confidence = mismatched.Validation.Confidence[:2]
	mismatched.Validation.Correct = mismatched.Validation.Correct[:2]
	mismatched.Exits[0].Accuracy, mismatched.Exits[1].Accuracy, mismatched.Exits[2].Accuracy = 0.8, 0.9, 0.95
	for name, p := range map[string]*profile.Profile{"no validation": synthetic(), "mismatched": mismatched} {
		cases := []struct {
			b    schema.Bound
			conf []float64
			want int
		}{
			{schema.Bound{Accuracy: f(0.85)}, high, 2},
			{schema.Bound{Accuracy: f(0.8)}, low, 1},
			{schema.Bound{Accuracy: f(0.99)}, high, 3},
			{schema.Bound{}, high, 3},
			{schema.Bound{Accuracy: f(0.8), Exit: i(2)}, low, 1},
			{schema.Bound{Accuracy: f(0.99), Exit: i(2)}, low, 2},
		}
		for _, c := range cases {
			pol := mustNew(t, "accuracy", nil)
			if o := drive(pol, p, req{bound: c.b, conf: c.conf}); o.exit != c.want {
				t.Errorf("%s %+v: served exit %d, want %d", name, c.b, o.exit, c.want)
			}
		}
	}
}

func TestAccuracyCache(t *testing.T) {
	p := withValidation(500)
	pol := mustNew(t, "accuracy", nil).(*AccuracyPolicy)
	a := pol.Tune(p, 0.9)
	if b := pol.Tune(p, 0.9); a != b {
		t.Fatal("same profile and target tuned twice")
	}
	if b := pol.Tune(p, 0.85); a == b {
		t.Fatal("another target shares the tuning")
	}
	// A live refresh: a new profile sharing the validation data, latencies
	// a little different, reuses the cascade; a big change tunes again.
	q := *p
	q.Stages = append([]profile.StageStats(nil), p.Stages...)
	q.Stages[0].LatencyMS.P50 *= 1.05
	q.UpdatedAt = time.Unix(5, 0)
	if b := pol.Tune(&q, 0.9); a != b {
		t.Fatal("a 5% latency change tuned again")
	}
	// Every stage twice as slow (a busier machine): the same thresholds,
	// no tuning, the expected cost doubled.
	s2 := *p
	s2.Stages = append([]profile.StageStats(nil), p.Stages...)
	for i := range s2.Stages {
		s2.Stages[i].LatencyMS.P50 *= 2
	}
	if b := pol.Tune(&s2, 0.9); b == a || !slices.Equal(b.Thresholds, a.Thresholds) || math.Abs(b.ExpCost-2*a.ExpCost) > 1e-9*a.ExpCost {
		t.Fatalf("all costs doubled: thresholds %v (were %v), expected cost %g (was %g)", b.Thresholds, a.Thresholds, b.ExpCost, a.ExpCost)
	}
	pol.retunes.Wait()
	if b := pol.Tune(&s2, 0.9); !slices.Equal(b.Thresholds, a.Thresholds) {
		t.Fatal("all costs doubled: tuned again")
	}
	if b := pol.Tune(p, 0.9); !slices.Equal(b.Thresholds, a.Thresholds) || math.Abs(b.ExpCost-a.ExpCost) > 1e-9*a.ExpCost {
		t.Fatalf("back to the first costs: expected cost %g, want %g", b.ExpCost, a.ExpCost)
	}
	a = pol.Tune(p, 0.9)
	q.Stages[0].LatencyMS.P50 *= 2
	// A big change of shape is re-tuned in the background; the old
	// cascade serves until the new one is ready.
	if b := pol.Tune(&q, 0.9); b != a {
		t.Fatal("a 2x latency change made the caller wait for a new tuning")
	}
	pol.retunes.Wait()
	b := pol.Tune(&q, 0.9)
	if a == b {
		t.Fatal("a 2x latency change kept the old tuning")
	}
	if c := pol.Tune(&q, 0.9); c != b {
		t.Fatal("the retuned cascade was not cached")
	}
	// Other validation data: tuned again.
	r := withValidation(500)
	if b := pol.Tune(r, 0.9); a == b {
		t.Fatal("new validation data kept the old tuning")
	}
	for n := range 2 * maxTuneCache {
		pol.Tune(p, 0.5+float64(n)/1000)
	}
	if len(pol.cache) > maxTuneCache {
		t.Fatalf("cache holds %d tunings", len(pol.cache))
	}
}

// BenchmarkTuneThresholds tunes 10,000 validation samples × 3 exits (and
// × 4 and 6 exits, for deeper models).
func BenchmarkTuneThresholds(b *testing.B) {
	for _, hardP := range [][]float64{{0.62, 0.81, 0.91}, {0.55, 0.7, 0.82, 0.9}, {0.5, 0.6, 0.7, 0.8, 0.86, 0.9}} {
		v := synValidationK(10000, hardP, 1)
		cost := make([]float64, len(hardP))
		for k := range cost {
			cost[k] = float64(8 * (k + 1) * (k + 2) / 2) // 8, 24, 48, ... ms
		}
		b.Run(fmt.Sprintf("10000x%d", len(hardP)), func(b *testing.B) {
			for range b.N {
				if _, _, _, ok := TuneThresholds(v, cost, 0.9); !ok {
					b.Fatal("not ok")
				}
			}
		})
	}
}
