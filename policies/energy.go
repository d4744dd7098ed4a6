package policies

import (
	"fmt"

	"github.com/delen-edge/delen/models/profile"
)

// EnergyPolicy ("energy") gives each request an energy budget: the
// request's bound.energy_mj, else the tenant's Params["mj"]. It does not
// start a stage whose energy would take the request past the budget: the
// energy spent so far (measured, Step.EnergyMJ; the profiled energy of the
// stages run when nothing was measured) plus the stage's cautious (p99)
// profiled energy. When stage 1's mean energy is above the budget, the
// request is Infeasible. Without a budget
// it runs the full model. The latency deadline and a fixed exit of the
// bound are honoured as hard limits too.
type EnergyPolicy struct {
	// BudgetMJ is the tenant's default budget; 0 means none.
	BudgetMJ float64
}

// NewEnergy makes an energy policy. Params: "mj" (> 0, default none).
func NewEnergy(ps Params) (*EnergyPolicy, error) {
	mj, err := ps.positive("mj", 0)
	if err != nil {
		return nil, err
	}
	return &EnergyPolicy{BudgetMJ: mj}, nil
}

// Name implements Policy.
func (*EnergyPolicy) Name() string { return "energy" }

// Before implements Policy.
func (ep *EnergyPolicy) Before(s *Step, p *profile.Profile) Decision {
	budget := ep.BudgetMJ
	if s.Bound.EnergyMJ != nil {
		budget = *s.Bound.EnergyMJ
	}
	if budget > 0 {
		spent := s.EnergyMJ
		if spent <= 0 {
			spent = cumMJ(p, 0, s.Done)
		}
		need := spent + boundMJ(p, s.Done)
		if s.Done == 0 {
			need = firstStageMJ(p)
		}
		if need > budget {
			return limitStop(s.Done, fmt.Sprintf("stage %d would spend %.3f mJ of a %.3f mJ budget", s.Done+1, need, budget))
		}
	}
	// The energy check is done; hardLimits does latency and exit.
	t := *s
	t.Bound.EnergyMJ = nil
	return hardLimits(&t, p)
}

// After implements Policy: it stops as soon as the next stage cannot fit.
func (ep *EnergyPolicy) After(s *Step, p *profile.Profile) Decision {
	return ep.Before(s, p)
}
