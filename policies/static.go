package policies

import (
	"fmt"

	"github.com/delen-edge/delen/models/profile"
)

// StaticPolicy ("static") runs every request to a fixed exit: the
// request's bound.exit when given, else the tenant's Params["exit"], else,
// with an accuracy bound, the static rule — the first exit whose profiled
// accuracy reaches the bound (the last exit when none does) — else the last
// exit (the full model). An exit past the model's last runs the full
// model.
//
// It ignores every other part of the bound on purpose — latency, energy and
// confidence — so it never answers Infeasible: it is the baseline that
// shows what a fixed-depth deployment would deliver.
type StaticPolicy struct {
	// Exit is the tenant's fixed exit (1-based); 0 means the last exit.
	Exit int
}

// NewStatic makes a static policy. Params: "exit" (whole number ≥ 1,
// default: the last exit).
func NewStatic(ps Params) (*StaticPolicy, error) {
	e, err := ps.integer("exit", 0, 1)
	if err != nil {
		return nil, err
	}
	return &StaticPolicy{Exit: e}, nil
}

// Name implements Policy.
func (*StaticPolicy) Name() string { return "static" }

// target is the exit this request runs to.
func (sp *StaticPolicy) target(s *Step, p *profile.Profile) int {
	k := numExits(s, p)
	e := sp.Exit
	if s.Bound.Exit != nil {
		e = *s.Bound.Exit
	} else if e <= 0 && s.Bound.Accuracy != nil {
		e = k
		for j := 1; j <= k; j++ {
			if exitAccuracy(p, j) >= *s.Bound.Accuracy {
				e = j
				break
			}
		}
	}
	if e <= 0 || e > k {
		e = k
	}
	return e
}

// Before implements Policy.
func (sp *StaticPolicy) Before(s *Step, p *profile.Profile) Decision {
	if e := sp.target(s, p); s.Done > 0 && s.Done >= e {
		return stop(fmt.Sprintf("static exit %d reached", e))
	}
	return run("static: exit not reached")
}

// After implements Policy.
func (sp *StaticPolicy) After(s *Step, p *profile.Profile) Decision {
	return sp.Before(s, p)
}

// estimateAccuracy implements accuracyHonouring: the static rule judges
// by the exits' profiled accuracy, so that is the answer's expectation.
func (sp *StaticPolicy) estimateAccuracy(s *Step, p *profile.Profile) (float64, bool) {
	if s.Bound.Accuracy == nil || p == nil || s.Done < 1 || s.Done > len(p.Exits) {
		return 0, false
	}
	return exitAccuracy(p, s.Done), true
}
