package policies

import (
	"fmt"

	"github.com/delen-edge/delen/models/profile"
)

// DeadlinePolicy ("deadline") looks at latency only: it runs as deep as
// the request's deadline (Step.Deadline: sent_at or arrival +
// bound.latency_ms) allows. Before each
// stage it predicts the stage's finish as now + its p95 latency + a safety
// margin and does not start it when that passes the deadline; a request
// that cannot even finish stage 1 (for instance because its deadline
// passed while it queued) is Infeasible. Without a deadline it runs the
// full model. Every other part of the bound is ignored.
type DeadlinePolicy struct {
	// MarginMS is added to every stage's predicted latency.
	MarginMS float64
}

// NewDeadline makes a deadline policy. Params: "margin_ms" (≥ 0, default 0).
func NewDeadline(ps Params) (*DeadlinePolicy, error) {
	m, err := ps.num("margin_ms", 0, 0, 1e9)
	if err != nil {
		return nil, err
	}
	return &DeadlinePolicy{MarginMS: m}, nil
}

// Name implements Policy.
func (*DeadlinePolicy) Name() string { return "deadline" }

// Before implements Policy.
func (dp *DeadlinePolicy) Before(s *Step, p *profile.Profile) Decision {
	if d, late := deadlineCheck(s, p, dp.MarginMS); late {
		return d
	}
	if _, ok := s.Deadline(); !ok {
		return run("no deadline: full model")
	}
	return run(fmt.Sprintf("stage %d fits the deadline", s.Done+1))
}

// After implements Policy: it stops as soon as the next stage cannot fit,
// saving the request a trip through the queue.
func (dp *DeadlinePolicy) After(s *Step, p *profile.Profile) Decision {
	return dp.Before(s, p)
}
