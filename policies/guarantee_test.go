package policies

import (
	"math"
	"testing"

	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/schema"
)

// heldOut serves n fresh samples (another seed of the same distribution)
// through the cascade thr and returns the share served right.
func heldOut(thr []float64, n int, seed uint64) float64 {
	v := synValidation(n, seed)
	acc, _ := simulate(v, []float64{1, 2, 3}, thr)
	return acc
}

// TestMarginHoldsOnHeldOutData: thresholds tuned on one calibration set
// with the Clopper-Pearson margin keep the accuracy measured on samples
// never seen in tuning ≥ the bound − 0.002 (the goal), on every
// one of several held-out sets, while tuning without a margin falls below
// the bound on some; the margin costs a little, and more the smaller the
// calibration set.
func TestMarginHoldsOnHeldOutData(t *testing.T) {
	cal := synValidation(10000, 1)
	cost := []float64{8, 24, 48}
	for _, target := range []float64{0.88, 0.90, 0.92} {
		plain, _, plainCost, ok1 := TuneWithMargin(cal, cost, target, 0)
		marg, accM, margCost, ok2 := TuneWithMargin(cal, cost, target, MarginAlpha)
		if !ok1 || !ok2 {
			t.Fatalf("target %v: not tuned", target)
		}
		if need := RequiredCorrect(10000, target, MarginAlpha); accM*10000 < float64(need)-1e-6 {
			t.Fatalf("target %v: calibration accuracy %.4f below the %d correct the margin needs", target, accM, need)
		}
		if margCost < plainCost {
			t.Fatalf("target %v: the margin made the cascade cheaper (%.2f < %.2f)", target, margCost, plainCost)
		}
		plainBelow := 0
		for seed := uint64(10); seed < 20; seed++ {
			if a := heldOut(marg, 10000, seed); a < target-0.002 {
				t.Errorf("target %v, held-out set %d: measured %.4f < bound − 0.002", target, seed, a)
			}
			if heldOut(plain, 10000, seed) < target {
				plainBelow++
			}
		}
		t.Logf("target %v: cost %.2f → %.2f with the margin; without it %d of 10 held-out sets measured below the bound", target, plainCost, margCost, plainBelow)
	}
}

// TestLiveGapRetunes: when labelled answers in service measured less than
// their accuracy_est promised, the cascade is tuned for the bound plus the
// shortfall, and back for the bound once the shortfall is gone.
func TestLiveGapRetunes(t *testing.T) {
	p := withValidation(10000)
	ap := &AccuracyPolicy{Alpha: MarginAlpha}
	base := ap.Tune(p, 0.9)
	cases := []struct {
		live   *profile.LiveAccuracy
		target float64
	}{
		{nil, 0.9},
		{&profile.LiveAccuracy{Samples: 100, Expected: 0.93, Measured: 0.90}, 0.9}, // too few answers
		{&profile.LiveAccuracy{Samples: 2000, Expected: 0.93, Measured: 0.91}, 0.92},
		{&profile.LiveAccuracy{Samples: 2000, Expected: 0.91, Measured: 0.93}, 0.9},  // better than promised: never below the bound
		{&profile.LiveAccuracy{Samples: 2000, Expected: 0.99, Measured: 0.80}, 0.95}, // capped
	}
	for _, c := range cases {
		q := *p
		q.Live = c.live
		tu := ap.Tune(&q, 0.9)
		if d := tu.Target - c.target; d > 1e-9 || d < -1e-9 {
			t.Errorf("live %+v: tuned for %.4f, want %.4f", c.live, tu.Target, c.target)
		}
		if c.target > 0.9 && tu.OK && tu.ExpAccuracy < c.target {
			t.Errorf("live %+v: cascade reaches %.4f on calibration data, want ≥ %.4f", c.live, tu.ExpAccuracy, c.target)
		}
		if c.target > 0.9 && tu.OK && tu.ExpCost <= base.ExpCost {
			t.Errorf("live %+v: a higher target costs no more (%.2f vs %.2f)", c.live, tu.ExpCost, base.ExpCost)
		}
	}
}

// TestAccuracyBoundByDefault: the default policy serves an accuracy bound
// with the tuned cascade (a confident answer leaves at exit 1, whose
// average accuracy is below the bound), static keeps the static rule, and
// a hard limit that stops a request before its target is marked.
func TestAccuracyBoundByDefault(t *testing.T) {
	p := withValidation(10000)
	b := schema.Bound{Accuracy: f(0.9)}
	confident := []float64{0.999, 0.999, 0.999}
	unsure := []float64{0.4, 0.4, 0.4}
	cases := []struct {
		policy string
		bound  schema.Bound
		conf   []float64
		exit   int
	}{
		{"bound", b, confident, 1},
		{"accuracy", b, confident, 1},
		{"static", b, confident, 2}, // exit 2: the first whose accuracy (0.90) reaches 0.9
		{"static", b, unsure, 2},
	}
	for _, c := range cases {
		pol := mustNew(t, c.policy, nil)
		if o := drive(pol, p, req{bound: c.bound, conf: c.conf}); o.exit != c.exit {
			t.Errorf("%s, conf %v: exit %d, want %d", c.policy, c.conf, o.exit, c.exit)
		}
		if !HonoursAccuracy(pol) {
			t.Errorf("%s does not report that it enforces accuracy bounds", c.policy)
		}
	}
	// bound and accuracy serve the same cascade.
	for _, c := range []float64{0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99} {
		conf := []float64{c, c, c}
		eb := drive(mustNew(t, "bound", nil), p, req{bound: b, conf: conf})
		ea := drive(mustNew(t, "accuracy", nil), p, req{bound: b, conf: conf})
		if eb.exit != ea.exit {
			t.Errorf("confidence %v: bound serves exit %d, accuracy exit %d", c, eb.exit, ea.exit)
		}
	}
	if HonoursAccuracy(mustNew(t, "confidence", nil)) {
		t.Error("confidence claims to enforce accuracy bounds")
	}
	// An unsure request with a deadline that leaves room for one stage
	// only: stopped by the limit, marked so.
	for _, name := range []string{"bound", "accuracy"} {
		pol := mustNew(t, name, nil)
		s := &Step{Bound: schema.Bound{Accuracy: f(0.9), LatencyMS: f(15)}, Exits: 3, Arrival: t0, Now: t0.Add(10 * 1e6), Done: 1, Confidence: 0.4}
		d := pol.After(s, p)
		if d.Action == Continue {
			d = pol.Before(s, p)
		}
		if d.Action != Stop || !d.Limit {
			t.Errorf("%s: %v (limit %v), want a Stop marked as a limit", name, d.Action, d.Limit)
		}
		// The same request stopped by its own rule is not marked.
		s.Confidence = 0.999
		if d := pol.After(s, p); d.Action != Stop || d.Limit {
			t.Errorf("%s, confident: %v (limit %v), want a Stop by the accuracy rule", name, d.Action, d.Limit)
		}
	}
}

// TestEstimateAccuracy: an answer of the tuned cascade is credited with the
// accuracy of the calibration samples the cascade serves at its exit.
func TestEstimateAccuracy(t *testing.T) {
	p := withValidation(10000)
	pol := mustNew(t, "bound", nil)
	tu := pol.(BoundPolicy).Accuracy.Tune(p, 0.9)
	for k := 1; k <= 3; k++ {
		s := &Step{Bound: schema.Bound{Accuracy: f(0.9)}, Exits: 3, Done: k, Confidence: 0.999}
		if got := EstimateAccuracy(pol, s, p); got != tu.ExitAccuracy[k-1] || got <= 0 {
			t.Errorf("exit %d: estimate %.4f, want the cascade's %.4f", k, got, tu.ExitAccuracy[k-1])
		}
	}
	s := &Step{Exits: 3, Done: 1, Confidence: 0.999} // no accuracy bound: the calibration table
	if got, want := EstimateAccuracy(pol, s, p), ExpectedAccuracy(p, 1, 0.999); got != want {
		t.Errorf("no accuracy bound: %.4f, want %.4f", got, want)
	}
}

// TestLiveGapMovesWithoutStalling: a live gap that shrinks is served by
// the cached cascade of the (stricter) target it had while the new one is
// tuned in the background; one that grows is tuned before it serves, so
// the bound never gets a laxer cascade.
func TestLiveGapMovesWithoutStalling(t *testing.T) {
	p := withValidation(10000)
	ap := &AccuracyPolicy{Alpha: MarginAlpha}
	gap := func(g float64) *profile.Profile {
		q := *p
		q.Live = &profile.LiveAccuracy{Samples: 2000, Expected: 0.95, Measured: 0.95 - g}
		return &q
	}
	for _, c := range []struct {
		gap        float64
		now, later float64 // the target served at once, and once tuning is done
	}{
		{0.005, 0.905, 0.905},  // first use: tuned at once
		{0.002, 0.905, 0.902},  // smaller: the stricter one meanwhile
		{0.008, 0.908, 0.908},  // larger: tuned at once
		{0.0075, 0.908, 0.908}, // within one step of the gap: the same cascade
	} {
		tu := ap.Tune(gap(c.gap), 0.9)
		if math.Abs(tu.Target-c.now) > 1e-9 {
			t.Errorf("gap %.4f: served a cascade for %.4f at once, want %.4f", c.gap, tu.Target, c.now)
		}
		ap.retunes.Wait()
		if tu := ap.Tune(gap(c.gap), 0.9); math.Abs(tu.Target-c.later) > 1e-9 {
			t.Errorf("gap %.4f: served a cascade for %.4f once tuned, want %.4f", c.gap, tu.Target, c.later)
		}
	}
}
