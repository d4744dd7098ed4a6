package policies

import (
	"fmt"
	"sync"

	"github.com/delen-edge/delen/models/profile"
)

// AdaptivePolicy ("adaptive") is load-aware: it keeps a per-tenant target
// exit, lowers it when queueing threatens deadlines and raises it back
// when slack returns, with hysteresis so that it does not oscillate.
//
// The latency budget D is the request's bound.latency_ms, else the
// tenant's Params["target_ms"]; with neither the policy runs the full
// model and does not adapt. At each request's first decision (Before
// stage 1: one adaptation decision per request) it predicts, for exit k,
// the request's latency:
//
//	P(k) = elapsed (since the deadline's origin: sent_at or arrival) + Σ p95 of stages 1..k + (k-1) × q
//
// where q is the wait of each later stage in the queue: Load.QueueDelayMS,
// or, when the agent gives none, Load.QueueDepth × the mean p50 stage
// latency / Params["workers"]. Then, with T the current target:
//
//   - P(T) > D × high: lower T to the deepest exit with P ≤ D × high (at
//     least exit 1);
//   - else P(T+1) < D × low for raise_after consecutive decisions: raise T
//     by one exit;
//   - else hold.
//
// Raising needs the deeper exit to fit under the low watermark, lowering
// needs the current one to break the high watermark, so a steady load
// causes at most one change. The request itself stops at the target
// exit; the latency deadline, energy budget and fixed exit of its bound
// are hard limits, as in BoundPolicy. The target is kept as a number of
// exits below the model's last, so one instance serves models of
// different depths. An AdaptivePolicy is safe for concurrent use.
type AdaptivePolicy struct {
	// TargetMS is the latency budget used without a latency bound; 0 none.
	TargetMS float64
	// High and Low are the watermarks, as fractions of the budget.
	High, Low float64
	// RaiseAfter is how many consecutive calm decisions raise the target.
	RaiseAfter int
	// Workers divides the queue delay estimated from the queue depth.
	Workers float64

	mu      sync.Mutex
	drop    int // the target is the last exit minus drop
	calm    int // consecutive decisions under the low watermark
	changes int // target changes so far
}

// NewAdaptive makes an adaptive policy. Params: "target_ms" (> 0, default
// none), "high" (default 0.9) and "low" (default 0.6) with 0 < low < high
// ≤ 1, "raise_after" (whole number ≥ 1, default 5), "workers" (> 0,
// default 1).
func NewAdaptive(ps Params) (*AdaptivePolicy, error) {
	a := &AdaptivePolicy{}
	var err error
	if a.TargetMS, err = ps.positive("target_ms", 0); err != nil {
		return nil, err
	}
	if a.High, err = ps.num("high", 0.9, 0, 1); err != nil {
		return nil, err
	}
	if a.Low, err = ps.num("low", 0.6, 0, 1); err != nil {
		return nil, err
	}
	if a.Low <= 0 || a.Low >= a.High {
		return nil, fmt.Errorf("params low = %v, high = %v: want 0 < low < high ≤ 1", a.Low, a.High)
	}
	if a.RaiseAfter, err = ps.integer("raise_after", 5, 1); err != nil {
		return nil, err
	}
	if a.Workers, err = ps.positive("workers", 1); err != nil {
		return nil, err
	}
	return a, nil
}

// Name implements Policy.
func (*AdaptivePolicy) Name() string { return "adaptive" }

// Target returns the current target exit for a model of k exits and how
// many times the target has changed.
func (a *AdaptivePolicy) Target(k int) (exit, changes int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.targetLocked(k), a.changes
}

func (a *AdaptivePolicy) targetLocked(k int) int {
	return max(1, k-a.drop)
}

// budget is the request's latency budget in ms; 0 means none.
func (a *AdaptivePolicy) budget(s *Step) float64 {
	if s.Bound.LatencyMS != nil {
		return *s.Bound.LatencyMS
	}
	return a.TargetMS
}

// queueMS is the predicted wait of each later stage in the queue.
func (a *AdaptivePolicy) queueMS(s *Step, p *profile.Profile) float64 {
	if s.Load.QueueDelayMS > 0 {
		return s.Load.QueueDelayMS
	}
	if s.Load.QueueDepth <= 0 || p == nil || len(p.Stages) == 0 {
		return 0
	}
	var mean float64
	for _, st := range p.Stages {
		mean += st.LatencyMS.P50
	}
	mean /= float64(len(p.Stages))
	return float64(s.Load.QueueDepth) * mean / a.Workers
}

// adapt updates the target from one request's first decision.
func (a *AdaptivePolicy) adapt(s *Step, p *profile.Profile, k int) {
	d := a.budget(s)
	if d <= 0 {
		return
	}
	elapsed := float64(nowOf(s).Sub(s.origin())) / 1e6
	q := a.queueMS(s, p)
	predict := func(e int) float64 { return elapsed + cumMS(p, 0, e) + float64(e-1)*q }
	t := a.targetLocked(k)
	switch {
	case predict(t) > d*a.High:
		nt := 1
		for e := t - 1; e > 1; e-- {
			if predict(e) <= d*a.High {
				nt = e
				break
			}
		}
		if nt != t {
			a.drop = k - nt
			a.changes++
		}
		a.calm = 0
	case t < k && predict(t+1) < d*a.Low:
		a.calm++
		if a.calm >= a.RaiseAfter {
			a.drop = k - (t + 1)
			a.changes++
			a.calm = 0
		}
	default:
		a.calm = 0
	}
}

// Before implements Policy.
func (a *AdaptivePolicy) Before(s *Step, p *profile.Profile) Decision {
	k := numExits(s, p)
	a.mu.Lock()
	if s.Done == 0 {
		a.adapt(s, p, k)
	}
	t := a.targetLocked(k)
	a.mu.Unlock()
	if s.Done > 0 && s.Done >= t {
		return stop(fmt.Sprintf("adaptive: target exit %d reached", t))
	}
	if d := hardLimits(s, p); d.Action != Continue {
		return d
	}
	return run(fmt.Sprintf("adaptive: target exit %d", t))
}

// After implements Policy: it stops at the target exit, or when the next
// stage breaks a hard limit.
func (a *AdaptivePolicy) After(s *Step, p *profile.Profile) Decision {
	return a.Before(s, p)
}
