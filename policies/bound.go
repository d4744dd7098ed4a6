package policies

import (
	"fmt"

	"github.com/delen-edge/delen/models/profile"
)

// BoundPolicy applies the stopping rules of every bound the request carries
// (docs/protocol.md, "Bound"): it stops at the first exit where a
// stopping rule fires and never starts a stage that would break a hard
// limit (latency, energy). Without any bound it runs the whole model.
//
//   - latency_ms: with the agent's Planner (Step.Planner), the request is
//     planned as imprecise computation: exit 1 is mandatory, the deeper
//     stages optional. At every decision (before each stage and after each
//     exit) PlanExit picks the target exit from the Planner's budgets: the
//     hard one keeps every admitted request's planned work feasible under
//     earliest-deadline-first across tenants and workers, the fair one
//     spends only the slack that the arrivals the recent rates predict
//     leave. When exit 1 itself does not fit, Infeasible. Without a Planner
//     (and as a last check in any case): before a stage, predict its finish
//     as now + the stage's p95 latency; do not start it if that passes the
//     deadline.
//   - energy_mj: do not start a stage whose cautious (p99) profiled energy
//     would take the measured energy spent so far past the bound; exit 1 is
//     infeasible only when its mean energy is above the bound.
//   - accuracy: the tuned cascade of Accuracy (an AccuracyPolicy: per-exit
//     confidence thresholds tuned on the calibration data with a margin for
//     sampling error, re-tuned from live labels); with Accuracy nil (the
//     zero value) or no calibration data, the static rule: stop at the
//     first exit whose profiled accuracy reaches it.
//   - confidence: stop at the first exit whose top-1 probability reaches it.
//   - exit: run exactly to that exit.
//
// New's "bound" has an Accuracy; its zero value applies the static rule.
type BoundPolicy struct {
	// Accuracy tunes and caches the cascade for accuracy bounds.
	Accuracy *AccuracyPolicy
}

// Name implements Policy.
func (BoundPolicy) Name() string { return "bound" }

// Before implements Policy.
func (BoundPolicy) Before(s *Step, p *profile.Profile) Decision {
	d := hardLimits(s, p)
	if d.Action != Continue {
		return d
	}
	return planLatency(s, p, d)
}

// Plan implements Planning: the decision Before would take for stage 1.
func (b BoundPolicy) Plan(s *Step, p *profile.Profile) Decision { return b.Before(s, p) }

// planLatency is the Planner's part of a decision to go on (d): it plans
// the target exit and stops (or, before exit 1, finds the bound
// infeasible) when no further stage fits. Without a latency bound or a
// Planner it returns d.
func planLatency(s *Step, p *profile.Profile, d Decision) Decision {
	if s.Planner == nil || s.Bound.LatencyMS == nil || p == nil {
		return d
	}
	hard, fair, u := s.Planner.BudgetMS()
	exits := numExits(s, p)
	// The share is for the whole request: what is left of it after the
	// stages run so far.
	fair -= WorkMS(p, 0, s.Done)
	t := PlanExit(p, exits, s.Done, hard, fair, u)
	if b := s.Bound.Exit; b != nil && t > *b {
		t = *b
	}
	if t <= s.Done {
		if hard < StageWorkMS(p, s.Done) {
			return limitStop(s.Done, fmt.Sprintf("stage %d does not fit the deadline with the work queued ahead (%.2f ms of room)", s.Done+1, hard))
		}
		return Decision{Action: Stop, Reason: fmt.Sprintf("planned exit %d reached (share %.2f ms)", s.Done, fair), Target: s.Done, Limit: true}
	}
	return Decision{Action: Continue, Reason: fmt.Sprintf("planned exit %d (room %.2f ms, share %.2f ms)", t, hard, fair), Target: t}
}

// hardLimits is the latency, energy and fixed-exit check before a stage,
// shared by the policies that honour hard limits.
func hardLimits(s *Step, p *profile.Profile) Decision {
	i := s.Done
	b := s.Bound
	if b.Exit != nil && i >= *b.Exit {
		return stop(fmt.Sprintf("exit %d reached", *b.Exit))
	}
	if d, late := deadlineCheck(s, p, 0); late {
		return d
	}
	if b.EnergyMJ != nil {
		need := s.EnergyMJ + boundMJ(p, i)
		if i == 0 {
			need = firstStageMJ(p)
		}
		if need > *b.EnergyMJ {
			return limitStop(i, fmt.Sprintf("stage %d would spend %.3f mJ of a %.3f mJ budget", i+1, need, *b.EnergyMJ))
		}
	}
	return run("within limits")
}

// deadlineCheck predicts the finish of stage s.Done as now + its p95
// latency + marginMS; when that passes the request's deadline it returns
// the decision (Infeasible before stage 0, else Stop) and true.
func deadlineCheck(s *Step, p *profile.Profile, marginMS float64) (Decision, bool) {
	deadline, ok := s.Deadline()
	if !ok {
		return Decision{}, false
	}
	i := s.Done
	finish := nowOf(s).Add(msDur(stageMS(p, i) + marginMS))
	if !finish.After(deadline) {
		return Decision{}, false
	}
	reason := fmt.Sprintf("stage %d would finish %.2f ms after the deadline", i+1, float64(finish.Sub(deadline))/1e6)
	return limitStop(i, reason), true
}

// After implements Policy.
func (bp BoundPolicy) After(s *Step, p *profile.Profile) Decision {
	k := s.Done
	b := s.Bound
	if b.Exit != nil && k >= *b.Exit {
		return stop(fmt.Sprintf("exit %d reached", *b.Exit))
	}
	if b.Confidence != nil && s.Confidence >= *b.Confidence {
		return stop(fmt.Sprintf("confidence %.3f ≥ %.3f", s.Confidence, *b.Confidence))
	}
	if b.Accuracy != nil {
		if bp.Accuracy != nil {
			if d, ok := bp.Accuracy.rule(s, p, *b.Accuracy); ok {
				return d
			}
		} else if exitAccuracy(p, k) >= *b.Accuracy {
			return stop(fmt.Sprintf("exit %d accuracy %.4f ≥ %.4f", k, exitAccuracy(p, k), *b.Accuracy))
		}
	}
	// Revise the plan now, so a request whose target dropped stops here
	// instead of waiting in the queue again.
	return planLatency(s, p, run("no stopping rule fired"))
}

// estimateAccuracy implements accuracyHonouring.
func (bp BoundPolicy) estimateAccuracy(s *Step, p *profile.Profile) (float64, bool) {
	if bp.Accuracy == nil || s.Bound.Accuracy == nil {
		return 0, false
	}
	return bp.Accuracy.estimateAccuracy(s, p)
}
