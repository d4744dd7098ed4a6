package policies

import (
	"fmt"
	"math"
	"sync"

	"github.com/delen-edge/delen/models/profile"
)

// AccuracyPolicy ("accuracy") keeps the expected accuracy of what is
// served ≥ the request's bound.accuracy (else the tenant's
// Params["accuracy"]) at the least expected cost. With the profile's
// validation data it serves a tuned cascade (see TuneThresholds): exit k
// stops a request whose top-1 confidence reaches the exit's threshold, so
// easy inputs leave early and hard ones go on, where "at least the bound
// on average" holds on the validation samples. The cost minimised is the
// cumulative p50 stage latency, or the exits' FLOPs when the profile has
// no latencies, or the number of stages.
//
// Without validation data (or when it does not match the model) it falls
// back to the simple rule: stop at the first exit whose profiled accuracy
// reaches the bound. A bound above the full model's validation accuracy
// runs the full model. The latency deadline, energy budget and fixed exit
// of the bound are hard limits, as in BoundPolicy; without any accuracy
// target the request runs the full model.
//
// Tuned thresholds are cached per validation data set (pointer) and
// target, with the costs they were tuned for: the agent refreshes profile
// latencies from live runs every few dozen stages, sharing the validation
// data, so a refreshed profile reuses the cascade unless some exit's cost
// moved by more than 10% (then it is tuned again, ~10 ms for 10,000
// samples). An AccuracyPolicy is safe for concurrent use.
type AccuracyPolicy struct {
	// Target is the tenant's default accuracy target; 0 means none.
	Target float64

	mu    sync.Mutex
	cache map[tuneKey]*tuned
}

// maxTuneCache bounds the cached tunings per policy instance; the cache is
// emptied when it is full (profiles and targets rarely change).
const maxTuneCache = 64

type tuneKey struct {
	v      *profile.Validation
	target float64
}

// tuned is a cache entry: the cascade and the costs it was tuned for.
type tuned struct {
	cost []float64
	tu   *Tuned
}

// retuneCostChange is the relative change of an exit's cost that makes a
// cached cascade stale.
const retuneCostChange = 0.10

// near reports whether every cost in a is within retuneCostChange of b's.
func near(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if math.Abs(a[k]-b[k]) > retuneCostChange*math.Abs(b[k]) {
			return false
		}
	}
	return true
}

// Tuned is the cascade an AccuracyPolicy serves for one profile and
// target, for reports.
type Tuned struct {
	// Thresholds are the per-exit thresholds of exits 1..K-1 (NeverStop:
	// the exit never stops); nil when the simple rule is used.
	Thresholds []float64
	// ExpAccuracy and ExpCost are the cascade's expected accuracy and mean
	// cost on the validation samples; CostUnit names the cost.
	ExpAccuracy, ExpCost float64
	CostUnit             string
	// OK is false when the target is above the full model's accuracy (the
	// full model is served) or when there is no usable validation data.
	OK bool
}

// NewAccuracy makes an accuracy policy. Params: "accuracy" (in (0, 1],
// default none: the request's bound sets it).
func NewAccuracy(ps Params) (*AccuracyPolicy, error) {
	a, err := ps.num("accuracy", 0, 0, 1)
	if err != nil {
		return nil, err
	}
	return &AccuracyPolicy{Target: a}, nil
}

// Name implements Policy.
func (*AccuracyPolicy) Name() string { return "accuracy" }

// target is the request's accuracy target; 0 means none.
func (ap *AccuracyPolicy) target(s *Step) float64 {
	if s.Bound.Accuracy != nil {
		return *s.Bound.Accuracy
	}
	return ap.Target
}

// Before implements Policy.
func (ap *AccuracyPolicy) Before(s *Step, p *profile.Profile) Decision {
	return hardLimits(s, p)
}

// After implements Policy.
func (ap *AccuracyPolicy) After(s *Step, p *profile.Profile) Decision {
	k := s.Done
	if d, ok := boundExitReached(s); ok {
		return d
	}
	if target := ap.target(s); target > 0 {
		tu := ap.Tune(p, target)
		switch {
		case tu.Thresholds != nil:
			if k-1 < len(tu.Thresholds) && s.Confidence >= tu.Thresholds[k-1] {
				return stop(fmt.Sprintf("confidence %.3f ≥ tuned threshold %.3f of exit %d (expected accuracy %.4f ≥ %.4f)",
					s.Confidence, tu.Thresholds[k-1], k, tu.ExpAccuracy, target))
			}
		case exitAccuracy(p, k) >= target:
			return stop(fmt.Sprintf("exit %d accuracy %.4f ≥ %.4f", k, exitAccuracy(p, k), target))
		}
	}
	if d := hardLimits(s, p); d.Action != Continue {
		return d
	}
	return run("accuracy target not reached")
}

// Tune returns the cascade served for profile p and an accuracy target,
// tuning it on p's validation data on first use. Thresholds is nil when p
// has no usable validation data for its exits (the simple rule applies).
func (ap *AccuracyPolicy) Tune(p *profile.Profile, target float64) *Tuned {
	if p == nil || p.Validation == nil || len(p.Validation.Confidence) != len(p.Exits) {
		return &Tuned{}
	}
	cost, unit := cascadeCost(p)
	key := tuneKey{p.Validation, target}
	ap.mu.Lock()
	e := ap.cache[key]
	ap.mu.Unlock()
	if e != nil && near(cost, e.cost) {
		return e.tu
	}
	// Tune outside the lock: two goroutines may both tune the same key
	// once, which is harmless, and nobody waits on an unrelated key.
	thr, acc, c, ok := TuneThresholds(p.Validation, cost, target)
	tu := &Tuned{Thresholds: thr, ExpAccuracy: acc, ExpCost: c, CostUnit: unit, OK: ok}
	ap.mu.Lock()
	if ap.cache == nil || len(ap.cache) >= maxTuneCache {
		ap.cache = map[tuneKey]*tuned{}
	}
	ap.cache[key] = &tuned{cost: cost, tu: tu}
	ap.mu.Unlock()
	return tu
}

// cascadeCost is the cumulative cost of running through each exit: p50
// stage latency when every stage has one, else the exits' (cumulative)
// FLOPs when every exit has them, else the number of stages.
func cascadeCost(p *profile.Profile) ([]float64, string) {
	k := len(p.Exits)
	cost := make([]float64, k)
	lat := len(p.Stages) >= k
	for j := 0; lat && j < k; j++ {
		lat = p.Stages[j].LatencyMS.P50 > 0
	}
	if lat {
		var sum float64
		for j := range cost {
			sum += p.Stages[j].LatencyMS.P50
			cost[j] = sum
		}
		return cost, "ms (p50)"
	}
	flops := true
	for j := 0; flops && j < k; j++ {
		flops = p.Exits[j].FLOPs > 0
	}
	for j := range cost {
		if flops {
			cost[j] = p.Exits[j].FLOPs
		} else {
			cost[j] = float64(j + 1)
		}
	}
	if flops {
		return cost, "FLOPs"
	}
	return cost, "stages"
}
