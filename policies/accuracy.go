package policies

import (
	"fmt"
	"math"
	"sync"

	"github.com/delen-edge/delen/models/profile"
)

// AccuracyPolicy ("accuracy") keeps the accuracy of what is served ≥ the
// request's bound.accuracy (else the tenant's Params["accuracy"]) at the
// least expected cost. With the profile's calibration data
// (profile.Validation) it serves a tuned cascade (TuneWithMargin): exit k
// stops a request whose top-1 confidence reaches the exit's threshold, so
// easy inputs leave early and hard ones go on, where the cascade's accuracy
// on the calibration samples is ≥ the target with a margin for sampling
// error (the one-sided Clopper-Pearson lower bound at level 1 − Alpha; see
// RequiredCorrect). The cost minimised is the cumulative p50 stage
// latency, or the exits' FLOPs when the profile has no latencies, or the
// number of stages.
//
// Online re-tuning: the agent keeps, per model and device, a window of the
// latest labelled answers (profile.Live); when their measured accuracy is
// below what their accuracy_est promised, the target the cascade is tuned
// for is raised by the difference (LiveGap), so a calibration set that
// flatters the model in service is corrected from the labels tenants send.
//
// Without calibration data (or when it does not match the model) it falls
// back to the static rule: stop at the first exit whose profiled accuracy
// reaches the bound. A target above what the full model reaches (with the
// margin) runs the full model. The latency deadline, energy bound and
// fixed exit of the bound are hard limits, as in BoundPolicy; a request
// they stop before the cascade's rule fired is reported as missing its
// accuracy bound (Decision.Limit, BoundMet). Without any accuracy target
// the request runs the full model.
//
// Tuned thresholds are cached per calibration data set (pointer) and
// effective target, with the costs they were tuned for: the agent
// refreshes profile latencies from live runs every few dozen stages,
// sharing the calibration data, so a refreshed profile reuses the cascade
// unless the costs' shape changed: the cascade minimises the mean cost,
// so costs all scaled by one factor (a machine that got busier or
// quieter) pick the same thresholds, and only the cascade's expected cost
// is rescaled. When some exit's cost moved by more than 10% relative to
// the last exit's, the cascade is tuned again in the background (~10 ms
// for 10,000 samples, the old cascade serving meanwhile). An
// AccuracyPolicy is safe for concurrent use.
type AccuracyPolicy struct {
	// Target is the tenant's default accuracy target; 0 means none.
	Target float64
	// Alpha is the margin's one-sided error level (MarginAlpha by
	// default; 0: no margin).
	Alpha float64

	mu    sync.Mutex
	cache map[tuneKey]*tuned
	// retunes counts re-tunings running in the background (tests wait on it).
	retunes sync.WaitGroup
}

// maxTuneCache bounds the cached tunings per policy instance; the cache is
// emptied when it is full (profiles and targets rarely change).
const maxTuneCache = 64

type tuneKey struct {
	v      *profile.Validation
	target float64
	alpha  float64
}

// tuned is a cache entry: the cascade and the costs it was tuned for.
type tuned struct {
	cost []float64
	tu   *Tuned
	// refreshing is set while a background re-tune for new costs runs.
	refreshing bool
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

// scale is the factor f with a ≈ f·b when the cumulative costs a and b
// have the same shape (every exit's cost relative to the last exit's
// within retuneCostChange), and false otherwise. Thresholds tuned for b
// are then the ones tuned for a: the tuner minimises a mean of costs, and
// scaling every cost by f > 0 scales every cascade's mean by f.
func scale(a, b []float64) (float64, bool) {
	n := len(a)
	if n == 0 || n != len(b) || !(a[n-1] > 0) || !(b[n-1] > 0) {
		return 0, false
	}
	f := a[n-1] / b[n-1]
	for k := range a {
		if math.Abs(a[k]/a[n-1]-b[k]/b[n-1]) > retuneCostChange*b[k]/b[n-1] {
			return 0, false
		}
	}
	return f, true
}

// Tuned is the cascade an AccuracyPolicy serves for one profile and
// target, for reports.
type Tuned struct {
	// Target is the accuracy the cascade was tuned for: the bound plus
	// LiveGap (capped at 1).
	Target float64
	// Thresholds are the per-exit thresholds of exits 1..K-1 (NeverStop:
	// the exit never stops); nil when the static rule is used.
	Thresholds []float64
	// ExpAccuracy and ExpCost are the cascade's accuracy and mean cost on
	// the calibration samples; CostUnit names the cost.
	ExpAccuracy, ExpCost float64
	CostUnit             string
	// ExitAccuracy is, per exit, the accuracy of the calibration samples
	// the cascade serves there (0 when it serves none): the expected
	// accuracy of an answer the cascade gives at that exit.
	ExitAccuracy []float64
	// OK is false when the target is above what the full model reaches
	// with the margin (the full model is served) or when there is no
	// usable calibration data.
	OK bool
}

// NewAccuracy makes an accuracy policy. Params: "accuracy" (in (0, 1],
// default none: the request's bound sets it), "alpha" (the margin's error
// level in [0, 0.5], default MarginAlpha).
func NewAccuracy(ps Params) (*AccuracyPolicy, error) {
	a, err := ps.num("accuracy", 0, 0, 1)
	if err != nil {
		return nil, err
	}
	alpha, err := ps.num("alpha", MarginAlpha, 0, 0.5)
	if err != nil {
		return nil, err
	}
	return &AccuracyPolicy{Target: a, Alpha: alpha}, nil
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
	if d, ok := boundExitReached(s); ok {
		return d
	}
	if target := ap.target(s); target > 0 {
		if d, ok := ap.rule(s, p, target); ok {
			return d
		}
	}
	if d := hardLimits(s, p); d.Action != Continue {
		return d
	}
	return run("accuracy target not reached")
}

// rule is the accuracy stopping rule after exit s.Done: the tuned
// cascade's threshold, or the static rule without calibration data.
func (ap *AccuracyPolicy) rule(s *Step, p *profile.Profile, target float64) (Decision, bool) {
	k := s.Done
	tu := ap.Tune(p, target)
	switch {
	case tu.Thresholds != nil:
		if k-1 < len(tu.Thresholds) && s.Confidence >= tu.Thresholds[k-1] {
			return stop(fmt.Sprintf("confidence %.3f ≥ tuned threshold %.3f of exit %d (cascade tuned for %.4f: %.4f on calibration data)",
				s.Confidence, tu.Thresholds[k-1], k, tu.Target, tu.ExpAccuracy)), true
		}
	case exitAccuracy(p, k) >= target:
		return stop(fmt.Sprintf("exit %d accuracy %.4f ≥ %.4f", k, exitAccuracy(p, k), target)), true
	}
	return Decision{}, false
}

// estimateAccuracy implements accuracyHonouring: an answer the tuned
// cascade gave (its exit's threshold reached, or the last exit) is
// credited with what the cascade reached on the calibration samples it
// served at that exit.
func (ap *AccuracyPolicy) estimateAccuracy(s *Step, p *profile.Profile) (float64, bool) {
	target := ap.target(s)
	if target <= 0 || p == nil || s.Done < 1 || s.Done > len(p.Exits) {
		return 0, false
	}
	tu := ap.Tune(p, target)
	k := s.Done
	if tu.Thresholds == nil || k > len(tu.ExitAccuracy) || tu.ExitAccuracy[k-1] <= 0 {
		return 0, false
	}
	if k == len(p.Exits) || (k-1 < len(tu.Thresholds) && s.Confidence >= tu.Thresholds[k-1]) {
		return tu.ExitAccuracy[k-1], true
	}
	return 0, false
}

// maxLiveGap caps how far LiveGap raises a target.
const maxLiveGap = 0.05

// MinLiveSamples is how many labelled answers the live window needs before
// LiveGap counts.
const MinLiveSamples = 200

// LiveGap is how much the accuracy measured in service (p.Live) falls short
// of what the answers' accuracy_est promised, in [0, 0.05]; 0 with fewer
// than MinLiveSamples labelled answers.
func LiveGap(p *profile.Profile) float64 {
	if p == nil || p.Live == nil || p.Live.Samples < MinLiveSamples {
		return 0
	}
	return min(max(p.Live.Expected-p.Live.Measured, 0), maxLiveGap)
}

// effectiveTarget is the target a cascade is tuned for: the bound plus
// LiveGap rounded up to liveGapStep (so a gap that drifts a little does
// not tune a new cascade at every refresh), rounded up to 1e-4, at most 1.
func effectiveTarget(p *profile.Profile, target float64) float64 {
	g := math.Ceil(LiveGap(p)/liveGapStep-1e-6) * liveGapStep
	return min(math.Ceil((target+g)*1e4-1e-6)/1e4, 1)
}

// liveGapStep is the step the live gap moves the effective target by.
const liveGapStep = 1e-3

// stricterSpan is how much stricter a cached cascade's target may be than
// the one asked for, to serve while that one is tuned (see Tune).
const stricterSpan = 0.01

// Tune returns the cascade served for profile p and an accuracy target,
// tuning it on p's calibration data on first use. Thresholds is nil when p
// has no usable calibration data for its exits (the static rule applies).
func (ap *AccuracyPolicy) Tune(p *profile.Profile, target float64) *Tuned {
	if p == nil || p.Validation == nil || len(p.Validation.Confidence) != len(p.Exits) {
		return &Tuned{Target: target}
	}
	eff := effectiveTarget(p, target)
	cost, unit := cascadeCost(p)
	key := tuneKey{p.Validation, eff, ap.Alpha}
	ap.mu.Lock()
	e := ap.cache[key]
	if e != nil {
		// Costs that moved (a live profile refresh) are re-tuned in the
		// background while the old cascade keeps serving: tuning takes
		// ~10 ms for 10,000 samples, and the caller is a worker that other
		// tenants' stages wait for.
		if !near(cost, e.cost) && !e.refreshing {
			if f, ok := scale(cost, e.cost); ok {
				// The same cascade; only its expected cost moves.
				tu := *e.tu
				tu.ExpCost *= f
				ap.cache[key] = &tuned{cost: cost, tu: &tu}
				ap.mu.Unlock()
				return &tu
			}
			e.refreshing = true
			ap.retune(key, cost, unit)
		}
		ap.mu.Unlock()
		return e.tu
	}
	// A new effective target (the live gap moved down, or a tenant's
	// bound did, a little): a cached cascade of a slightly stricter
	// target on the same data serves while the new one is tuned in the
	// background, so that the worker, which other tenants' stages wait
	// for, does not tune. (A target that moved up is tuned here: serving
	// a laxer cascade meanwhile would break the bound.)
	if st := ap.stricterLocked(key); st != nil {
		ap.cache[key] = &tuned{cost: cost, tu: st.tu, refreshing: true}
		ap.retune(key, cost, unit)
		ap.mu.Unlock()
		return st.tu
	}
	ap.mu.Unlock()
	// First use: tune outside the lock (two goroutines may both tune the
	// same key once, which is harmless, and nobody waits on an unrelated
	// key).
	tu := ap.tune(p.Validation, cost, eff, unit)
	ap.store(key, cost, tu)
	return tu
}

// retune tunes key's cascade for cost in the background and caches it
// when done; the entry under key serves meanwhile.
func (ap *AccuracyPolicy) retune(key tuneKey, cost []float64, unit string) {
	ap.retunes.Add(1)
	go func() {
		defer ap.retunes.Done()
		ap.store(key, cost, ap.tune(key.v, cost, key.target, unit))
	}()
}

// tune tunes the cascade for one calibration set, cost vector and target.
func (ap *AccuracyPolicy) tune(v *profile.Validation, cost []float64, eff float64, unit string) *Tuned {
	thr, acc, c, ok := TuneWithMargin(v, cost, eff, ap.Alpha)
	return &Tuned{Target: eff, Thresholds: thr, ExpAccuracy: acc, ExpCost: c, CostUnit: unit, OK: ok,
		ExitAccuracy: exitAccuracies(v, thr)}
}

// stricterLocked is the cached cascade for key's data and margin whose
// target is the least at or above key's, within stricterSpan, tuned and
// OK; nil if none. ap.mu is held.
func (ap *AccuracyPolicy) stricterLocked(key tuneKey) *tuned {
	var best *tuned
	var bestT float64
	for k, e := range ap.cache {
		if k.v != key.v || k.alpha != key.alpha || k.target < key.target || k.target > key.target+stricterSpan ||
			e.tu == nil || !e.tu.OK || e.tu.Target != k.target {
			continue
		}
		if best == nil || k.target < bestT {
			best, bestT = e, k.target
		}
	}
	return best
}

// store caches tu for key, tuned for cost.
func (ap *AccuracyPolicy) store(key tuneKey, cost []float64, tu *Tuned) {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	if ap.cache == nil || len(ap.cache) >= maxTuneCache {
		ap.cache = map[tuneKey]*tuned{}
	}
	ap.cache[key] = &tuned{cost: cost, tu: tu}
}

// exitAccuracies is, per exit, the accuracy of the calibration samples the
// cascade thr serves there (0 where it serves none); nil without thr.
func exitAccuracies(v *profile.Validation, thr []float64) []float64 {
	if thr == nil || v == nil || len(v.Confidence) == 0 {
		return nil
	}
	k := len(v.Confidence)
	right, count := make([]int, k), make([]int, k)
	for i := range v.Confidence[0] {
		e := k - 1
		for j := 0; j < k-1 && j < len(thr); j++ {
			if float64(v.Confidence[j][i]) >= thr[j] {
				e = j
				break
			}
		}
		count[e]++
		if v.Correct[e][i] {
			right[e]++
		}
	}
	out := make([]float64, k)
	for e := range out {
		if count[e] > 0 {
			out[e] = float64(right[e]) / float64(count[e])
		}
	}
	return out
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
