package policies

import (
	"fmt"

	"github.com/delen-edge/delen/models/profile"
)

// ConfidencePolicy ("confidence") is BranchyNet's rule: stop at the first
// exit whose top-1 softmax probability reaches the threshold — the
// request's bound.confidence, else the tenant's Params["threshold"], else
// 0.9. It also honours the hard limits of the bound (latency deadline,
// energy budget, fixed exit) like BoundPolicy; the last exit always stops.
type ConfidencePolicy struct {
	// Threshold is the tenant's default threshold, in (0, 1].
	Threshold float64
}

// DefaultConfidence is the confidence policy's default threshold.
const DefaultConfidence = 0.9

// NewConfidence makes a confidence policy. Params: "threshold" (in (0, 1],
// default 0.9).
func NewConfidence(ps Params) (*ConfidencePolicy, error) {
	t, err := ps.num("threshold", DefaultConfidence, 0, 1)
	if err == nil && t == 0 {
		err = fmt.Errorf("param threshold = 0: want a number in (0, 1]")
	}
	if err != nil {
		return nil, err
	}
	return &ConfidencePolicy{Threshold: t}, nil
}

// Name implements Policy.
func (*ConfidencePolicy) Name() string { return "confidence" }

// Before implements Policy.
func (*ConfidencePolicy) Before(s *Step, p *profile.Profile) Decision {
	return hardLimits(s, p)
}

// After implements Policy.
func (cp *ConfidencePolicy) After(s *Step, p *profile.Profile) Decision {
	t := cp.Threshold
	if s.Bound.Confidence != nil {
		t = *s.Bound.Confidence
	}
	if s.Confidence >= t {
		return stop(fmt.Sprintf("confidence %.3f ≥ %.3f", s.Confidence, t))
	}
	if d := hardLimits(s, p); d.Action != Continue {
		return d
	}
	return run(fmt.Sprintf("confidence %.3f < %.3f", s.Confidence, t))
}
