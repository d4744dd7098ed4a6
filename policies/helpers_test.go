package policies

import (
	"math/rand/v2"
	"time"

	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/schema"
)

// t0 is the synthetic clock's origin.
var t0 = time.Unix(1000, 0)

// req is one request driven through a policy by drive.
type req struct {
	bound schema.Bound
	conds []schema.Condition
	// conf is the top-1 probability at each exit (missing: 0.5).
	conf []float64
	// arrival is the request's arrival (zero: t0); queueMS the wait before
	// its first decision.
	arrival time.Time
	queueMS float64
	load    Load
	// exits overrides the model's exits (0: the profile's stages).
	exits int
	// energy is each stage's measured energy (nil: the profiled energy).
	energy []float64
}

// outcome is what drive served.
type outcome struct {
	exit   int // 0 when infeasible
	act    Action
	afters int       // After calls
	mj     float64   // measured energy of the stages run
	end    time.Time // when the request finished
}

// drive runs pol over p the way the agent does: Before each stage, stage i
// taking its p95 time, After each exit but the last; Infeasible sheds.
func drive(pol Policy, p *profile.Profile, r req) outcome {
	k := r.exits
	if k == 0 && p != nil {
		k = len(p.Stages)
	}
	arr := r.arrival
	if arr.IsZero() {
		arr = t0
	}
	s := &Step{Tenant: "t", Bound: r.bound, Conditions: r.conds, Exits: k, Arrival: arr,
		Now: arr.Add(msDur(r.queueMS)), Load: r.load}
	var o outcome
	for {
		d := pol.Before(s, p)
		if d.Action == Infeasible || d.Action == Shed {
			if s.Done != 0 {
				panic("Infeasible after stage 1")
			}
			o.act = d.Action
			o.end = s.Now
			return o
		}
		if d.Action == Stop {
			if s.Done == 0 {
				panic("Stop before stage 1: " + d.Reason)
			}
			o.exit, o.act, o.mj, o.end = s.Done, Stop, s.EnergyMJ, s.Now
			return o
		}
		s.Now = s.Now.Add(msDur(stageMS(p, s.Done)))
		e := stageMJ(p, s.Done)
		if r.energy != nil {
			e = r.energy[s.Done]
		}
		s.EnergyMJ += e
		s.Done++
		s.Confidence = 0.5
		if s.Done-1 < len(r.conf) {
			s.Confidence = r.conf[s.Done-1]
		}
		if s.Done == s.Exits {
			o.exit, o.act, o.mj, o.end = s.Done, Stop, s.EnergyMJ, s.Now
			return o
		}
		o.afters++
		if pol.After(s, p).Action != Continue {
			o.exit, o.act, o.mj, o.end = s.Done, Stop, s.EnergyMJ, s.Now
			return o
		}
	}
}

// oneExit is a single-exit profile.
func oneExit() *profile.Profile {
	p := &profile.Profile{Model: "one", Version: "1", Device: "test"}
	p.Stages = []profile.StageStats{{LatencyMS: profile.Quantiles{P50: 8, P95: 10}, EnergyMJ: 1}}
	p.Exits = []profile.ExitStats{{Exit: 1, Accuracy: 0.9, FLOPs: 1e9}}
	return p
}

// synValidation makes n validation samples for the synthetic 3-exit model:
// half are easy (confident and nearly always right from exit 1 on), half
// hard (unsure; right with probability 0.62, 0.81, 0.91 at exits 1-3), so
// the exits' accuracies are about 0.80, 0.90 and 0.95.
func synValidation(n int, seed uint64) *profile.Validation {
	return synValidationK(n, []float64{0.62, 0.81, 0.91}, seed)
}

// synValidationK is synValidation for len(hardP) exits, hard samples right
// with probability hardP[k] at exit k+1.
func synValidationK(n int, hardP []float64, seed uint64) *profile.Validation {
	k := len(hardP)
	rng := rand.New(rand.NewPCG(seed, 7))
	v := &profile.Validation{Confidence: make([][]float32, k), Correct: make([][]bool, k)}
	for j := range k {
		v.Confidence[j] = make([]float32, n)
		v.Correct[j] = make([]bool, n)
	}
	for s := range n {
		easy := rng.Float64() < 0.5
		for j := range k {
			if easy {
				v.Confidence[j][s] = float32(0.9 + 0.1*rng.Float64())
				v.Correct[j][s] = rng.Float64() < min(0.98+0.01*float64(j), 0.99)
			} else {
				v.Confidence[j][s] = float32(0.3 + 0.55*rng.Float64())
				v.Correct[j][s] = rng.Float64() < hardP[j]
			}
		}
	}
	return v
}

// withValidation is the synthetic profile with validation data whose
// exits' profiled accuracies are measured on it.
func withValidation(n int) *profile.Profile {
	p := synthetic()
	p.Validation = synValidation(n, 1)
	for k := range p.Exits {
		right := 0
		for _, c := range p.Validation.Correct[k] {
			if c {
				right++
			}
		}
		p.Exits[k].Accuracy = float64(right) / float64(n)
	}
	return p
}
