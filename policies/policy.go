// Package policies turns bounds into decisions: before each stage of a
// multi-exit model, whether to run it; after each exit, whether to stop.
// It is pure logic over a request's progress and the model's profile (no
// ONNX Runtime, no MQTT), so every policy is tested with synthetic profiles
// in microseconds.
package policies

import (
	"fmt"
	"time"

	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/schema"
)

// Action is what a policy decides at a decision point.
type Action int

const (
	// Continue runs the next stage (asked before a stage) or goes on to
	// the next stage (asked after an exit).
	Continue Action = iota
	// Stop serves the exit already reached.
	Stop
	// Infeasible says that not even exit 1 can meet the bound; the agent
	// serves exit 1 late or sheds the request, as the tenant chose.
	Infeasible
	// Shed (only before the first stage) refuses the request whatever the
	// tenant's infeasible setting: serving even exit 1 would break a limit
	// that must never be exceeded (an energy budget).
	Shed
)

// String names the action for logs.
func (a Action) String() string {
	switch a {
	case Continue:
		return "continue"
	case Stop:
		return "stop"
	case Infeasible:
		return "infeasible"
	case Shed:
		return "shed"
	}
	return "unknown"
}

// Decision is an Action with the reason, for logs and traces.
type Decision struct {
	Action Action
	Reason string
	// Target is the exit the policy plans to run the request to, when it
	// plans (0: it does not say); the agent books the work up to it.
	Target int
	// Limit marks a Stop or Infeasible forced by a hard limit (the
	// latency deadline, an energy bound or budget) rather than by the
	// request's own stopping rule: a request stopped so before its
	// accuracy target misses its accuracy bound (BoundMet, Outcome.Cut).
	Limit bool
}

// Step is what a policy knows about one request at a decision point.
type Step struct {
	Tenant     string
	Bound      schema.Bound
	Conditions []schema.Condition
	// Exits is the number of exits of the model; Done how many have run.
	Exits, Done int
	// Arrival is when the request reached the agent; Now is the decision time.
	Arrival, Now time.Time
	// Origin is what a latency bound's deadline counts from: the request's
	// sent_at when the agent found it plausible, else Arrival (the zero
	// value means Arrival).
	Origin time.Time
	// EnergyMJ and ComputeMS are spent so far (stages run).
	EnergyMJ, ComputeMS float64
	// Confidence is the top-1 softmax probability at exit Done (Done > 0).
	Confidence float64
	// Load describes the agent's queues at decision time.
	Load Load
	// Planner is the agent's scheduler, for the default policy's plan of
	// a latency bound; nil without one (the policy then checks only the
	// next stage against the deadline).
	Planner Planner
}

// Load is the state of the agent's queues, for load-aware policies.
type Load struct {
	// QueueDepth counts requests waiting in the tenant's queue.
	QueueDepth int
	// QueueDelayMS is a recent estimate of how long a stage waits to run.
	QueueDelayMS float64
}

// Elapsed is the time since arrival.
func (s *Step) Elapsed() time.Duration { return s.Now.Sub(s.Arrival) }

// Deadline returns origin + latency bound (DESIGN.md: end to end from a
// plausible sent_at, else from arrival), and whether there is one.
func (s *Step) Deadline() (time.Time, bool) {
	if s.Bound.LatencyMS == nil {
		return time.Time{}, false
	}
	return s.origin().Add(time.Duration(*s.Bound.LatencyMS * float64(time.Millisecond))), true
}

// origin is Origin, or Arrival when it is unset.
func (s *Step) origin() time.Time {
	if s.Origin.IsZero() {
		return s.Arrival
	}
	return s.Origin
}

// Policy decides, for one request, which stages to run.
type Policy interface {
	// Name is the policy's registry name.
	Name() string
	// Before is asked before stage s.Done runs (0-based: it leads to exit
	// s.Done+1). Stop serves exit s.Done (only when s.Done > 0);
	// Infeasible (only when s.Done == 0) means the bound cannot be met;
	// Shed (only when s.Done == 0) that the request must not be served.
	Before(s *Step, p *profile.Profile) Decision
	// After is asked after exit s.Done ran, with s.Confidence set; Stop
	// serves it. It is not asked after the last exit.
	After(s *Step, p *profile.Profile) Decision
}

func run(reason string) Decision  { return Decision{Action: Continue, Reason: reason} }
func stop(reason string) Decision { return Decision{Action: Stop, Reason: reason} }

// stageMS is the predicted (p95) latency of stage i, in milliseconds.
func stageMS(p *profile.Profile, i int) float64 {
	if p == nil || i >= len(p.Stages) {
		return 0
	}
	return p.Stages[i].LatencyMS.P95
}

// energyQ selects a figure of a stage's energy distribution.
type energyQ int

const (
	energyMean energyQ = iota // what a stage typically costs
	energyP95                 // a cautious figure
	energyP99                 // what an energy bound and an energy budget check
)

// stageEnergy is a figure of stage i's profiled energy: the mean, or a
// quantile of its measured energies. A profile without energy quantiles
// (written before they were recorded) scales the mean by the stage's
// latency quantile ÷ mean (meters integrate power over time, so a slow run
// costs proportionally more).
func stageEnergy(p *profile.Profile, i int, q energyQ) float64 {
	if p == nil || i >= len(p.Stages) {
		return 0
	}
	s := p.Stages[i]
	if q == energyMean {
		return s.EnergyMJ
	}
	eq, lat := s.EnergyQuantilesMJ.P95, s.LatencyMS.P95
	if q == energyP99 {
		eq, lat = s.EnergyQuantilesMJ.P99, s.LatencyMS.P99
	}
	if eq > 0 {
		return max(eq, s.EnergyMJ)
	}
	if s.LatencyMS.Mean > 0 && lat > s.LatencyMS.Mean {
		return s.EnergyMJ * lat / s.LatencyMS.Mean
	}
	return s.EnergyMJ
}

// stageMJ is the cautious (p95) profiled energy of stage i.
func stageMJ(p *profile.Profile, i int) float64 { return stageEnergy(p, i, energyP95) }

// boundMJ is what an energy bound checks a stage after the first against
// before starting it: its p99 profiled energy. The bound is to hold for
// 99% of requests, and a request that goes on past exit 1 stakes it on
// that stage's cost.
func boundMJ(p *profile.Profile, i int) float64 { return stageEnergy(p, i, energyP99) }

// firstStageMJ is what an energy limit checks stage 0 against: its mean.
// Exit 1 is the least a request can be served, so a cautious figure would
// only refuse requests that would most likely have fitted; whether one that
// is served fits is judged on what it measured.
func firstStageMJ(p *profile.Profile) float64 { return stageEnergy(p, 0, energyMean) }

// exitAccuracy is the profiled accuracy of exit k (1-based).
func exitAccuracy(p *profile.Profile, k int) float64 {
	if p == nil || k < 1 || k > len(p.Exits) {
		return 0
	}
	return p.Exits[k-1].Accuracy
}

// ExitAccuracy is the profile's expected accuracy of exit k (1-based).
func ExitAccuracy(p *profile.Profile, k int) float64 { return exitAccuracy(p, k) }

// Outcome is what was served, to judge whether the bound held.
type Outcome struct {
	Exit       int
	LatencyMS  float64
	EnergyMJ   float64
	Confidence float64
	// AccuracyEst is the expected accuracy of the exit served.
	AccuracyEst float64
	// Last is true when the exit served is the model's last.
	Last bool
	// AccuracyRule says that the serving policy enforces an accuracy bound
	// itself (HonoursAccuracy): a statistical guarantee over requests, so
	// the accuracy part of the bound is missed only when Cut, not when one
	// answer's AccuracyEst is below it.
	AccuracyRule bool
	// Cut is true when a hard limit (latency, energy) stopped the request
	// before its own stopping rule fired (a Decision with Limit).
	Cut bool
}

// BoundMet reports whether an outcome satisfies every part of b. A
// confidence bound counts as met when the threshold was reached or the last
// exit was served (no deeper exit could do better). An accuracy bound
// served by a policy that enforces it (o.AccuracyRule) is met unless a hard
// limit cut the request short of its target (o.Cut): the guarantee is on
// the accuracy of what is served over many requests, so the one thing a
// single result can report is that the tenant's own latency or energy
// limit stopped it first (docs/architecture.md, "Accuracy bounds").
// Under any other policy, an accuracy bound is met when the answer's
// expected accuracy reaches it.
func BoundMet(b schema.Bound, o Outcome) bool {
	if b.LatencyMS != nil && o.LatencyMS > *b.LatencyMS {
		return false
	}
	if b.EnergyMJ != nil && o.EnergyMJ > *b.EnergyMJ {
		return false
	}
	if b.Accuracy != nil && (o.Cut || (!o.AccuracyRule && o.AccuracyEst < *b.Accuracy)) {
		return false
	}
	if b.Confidence != nil && o.Confidence < *b.Confidence && !o.Last {
		return false
	}
	if b.Exit != nil && o.Exit != *b.Exit {
		return false
	}
	return true
}

// stopOrInfeasible is the decision not to start stage i: Infeasible before
// the first stage (nothing to serve yet), Stop after it.
func stopOrInfeasible(i int, reason string) Decision {
	if i == 0 {
		return Decision{Action: Infeasible, Reason: reason}
	}
	return stop(reason)
}

// limitStop is stopOrInfeasible for a hard limit (Decision.Limit).
func limitStop(i int, reason string) Decision {
	d := stopOrInfeasible(i, reason)
	d.Limit = true
	return d
}

// nowOf is the decision time: s.Now, or the wall clock when the caller
// left it unset.
func nowOf(s *Step) time.Time {
	if s.Now.IsZero() {
		return time.Now()
	}
	return s.Now
}

// msDur converts milliseconds to a Duration.
func msDur(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// numExits is the model's number of exits: s.Exits, else the profile's,
// else 1.
func numExits(s *Step, p *profile.Profile) int {
	switch {
	case s.Exits > 0:
		return s.Exits
	case p != nil && len(p.Exits) > 0:
		return len(p.Exits)
	}
	return 1
}

// cumMJ is the cautious (p95) profiled energy of stages from..to-1 (0-based).
func cumMJ(p *profile.Profile, from, to int) float64 {
	var e float64
	for j := from; j < to; j++ {
		e += stageMJ(p, j)
	}
	return e
}

// cumMS is the predicted (p95) latency of stages from..to-1 (0-based).
func cumMS(p *profile.Profile, from, to int) float64 {
	var t float64
	for j := from; j < to; j++ {
		t += stageMS(p, j)
	}
	return t
}

// boundExitReached reports whether the request's exit bound is reached
// after s.Done exits.
func boundExitReached(s *Step) (Decision, bool) {
	if b := s.Bound.Exit; b != nil && s.Done >= *b && s.Done > 0 {
		return stop(fmt.Sprintf("exit %d reached", *b)), true
	}
	return Decision{}, false
}

// minBinSamples is how many validation samples a calibration bin needs
// before its accuracy stands for a request's.
const minBinSamples = 20

// accuracyHonouring is implemented by the policies that enforce an
// accuracy bound themselves.
type accuracyHonouring interface {
	// estimateAccuracy is the expected accuracy of the answer at exit
	// s.Done with confidence s.Confidence, when the policy knows it better
	// than the calibration table.
	estimateAccuracy(s *Step, p *profile.Profile) (float64, bool)
}

// HonoursAccuracy reports whether pol enforces an accuracy bound itself
// (bound, accuracy and static do), for Outcome.AccuracyRule.
func HonoursAccuracy(pol Policy) bool {
	_, ok := pol.(accuracyHonouring)
	return ok
}

// EstimateAccuracy is the expected accuracy of the answer a request got
// from pol at exit s.Done with top-1 probability s.Confidence: for a
// request served by a tuned cascade, the accuracy the cascade reached on
// the calibration samples it served at that exit; else ExpectedAccuracy.
func EstimateAccuracy(pol Policy, s *Step, p *profile.Profile) float64 {
	if h, ok := pol.(accuracyHonouring); ok {
		if a, ok := h.estimateAccuracy(s, p); ok {
			return a
		}
	}
	return ExpectedAccuracy(p, s.Done, s.Confidence)
}

// ExpectedAccuracy is the expected accuracy of an answer served at exit k
// (1-based) with top-1 probability conf: the profile's calibration (the
// observed accuracy of validation samples whose confidence fell in the same
// bin) when that bin has enough samples, else the exit's average accuracy.
// A confident answer at an early exit is then credited with what such
// answers really achieve, which is what lets easy inputs leave early under
// an accuracy bound.
func ExpectedAccuracy(p *profile.Profile, k int, conf float64) float64 {
	if p == nil || k < 1 || k > len(p.Exits) {
		return 0
	}
	e := p.Exits[k-1]
	for i, b := range e.Calibration {
		last := i == len(e.Calibration)-1
		if conf >= b.Lo && (conf < b.Hi || (last && conf <= b.Hi)) {
			if b.Count >= minBinSamples {
				return b.Accuracy
			}
			break
		}
	}
	return e.Accuracy
}
