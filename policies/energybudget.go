package policies

import (
	"fmt"
	"sync"
	"time"

	"github.com/delen-edge/delen/models/profile"
)

// EnergyBudgetPolicy ("energy-budget") gives a tenant Params["joules"] of
// energy per Params["window_s"] seconds (default 1 J per 60 s), as on a
// battery or solar node. Windows are tumbling: the first decision starts
// one, and each window's budget is fresh (unspent energy does not carry
// over). Time is the decision time, Step.Now.
//
// Spending less as the budget runs low: before a request's first stage it
// estimates how many requests will still arrive in the window (arrival
// rate over the previous and the current window × time left) and serves
// the deepest exit whose cumulative cautious (p95) profiled energy fits
// the remaining budget divided by that number (this request included).
//
// The budget is a hard limit: a request it cannot cover is shed (Shed,
// whatever the tenant's infeasible setting), never served over budget.
// Starting a stage reserves its p99 profiled energy, and a stage starts
// only when that reservation plus a guard (the largest p99 − mean spread
// of the model's stage energies, which absorbs a stage costing that much
// more than its p99) fits what is left; a request whose first stage does not fit is shed, one
// whose later stage does not fit is served the exit it reached. When the
// request's own bound makes it Infeasible (a deadline exit 1 cannot
// meet), exit 1 is reserved before the tenant's infeasible setting serves
// it late, or the request is shed if the budget cannot cover it.
//
// Accounting, each request counted once: at the request's last decision —
// a Stop, or the Continue that starts the last stage — the difference
// between the measured energy of the stages run (Step.EnergyMJ) and their
// reservations is charged (or refunded) once. The last stage of a
// full-model run and a late exit 1 stay charged at their reservation,
// since no decision follows them. Nothing is reconciled when nothing was
// measured (Step.EnergyMJ = 0). A refund for a request that arrived in an
// earlier window is dropped. With profiled energies of zero only measured
// energy is charged, and no stage starts once the budget is spent.
//
// The request's bound is honoured too: its deadline, energy budget and
// fixed exit are hard limits, as in BoundPolicy. An EnergyBudgetPolicy is
// safe for concurrent use.
type EnergyBudgetPolicy struct {
	// BudgetMJ is the energy per window in millijoules; Window its length.
	BudgetMJ float64
	Window   time.Duration

	mu       sync.Mutex
	start    time.Time // current window's start; zero before the first decision
	spent    float64   // mJ charged in the current window
	arrivals int       // requests whose first decision fell in the current window
	prev     int       // arrivals in the previous window
	havePrev bool      // whether a previous window has been seen
}

// NewEnergyBudget makes an energy-budget policy. Params: "joules" (> 0,
// default 1) and "window_s" (> 0, default 60).
func NewEnergyBudget(ps Params) (*EnergyBudgetPolicy, error) {
	j, err := ps.positive("joules", 1)
	if err != nil {
		return nil, err
	}
	w, err := ps.positive("window_s", 60)
	if err != nil {
		return nil, err
	}
	win := time.Duration(w * float64(time.Second))
	if win <= 0 {
		return nil, fmt.Errorf("param window_s = %v: too short", w)
	}
	return &EnergyBudgetPolicy{BudgetMJ: j * 1000, Window: win}, nil
}

// Name implements Policy.
func (*EnergyBudgetPolicy) Name() string { return "energy-budget" }

// Spent returns the energy charged in the window that holds now, in mJ,
// and the budget left.
func (eb *EnergyBudgetPolicy) Spent(now time.Time) (spent, left float64) {
	eb.mu.Lock()
	defer eb.mu.Unlock()
	eb.roll(now)
	return eb.spent, eb.BudgetMJ - eb.spent
}

// roll moves to the window that holds now. Decisions that arrive slightly
// out of order (from concurrent workers) count in the current window.
func (eb *EnergyBudgetPolicy) roll(now time.Time) {
	if eb.start.IsZero() {
		eb.start = now
		return
	}
	if now.Before(eb.start.Add(eb.Window)) {
		return
	}
	n := now.Sub(eb.start) / eb.Window
	if n == 1 {
		eb.prev = eb.arrivals
	} else {
		eb.prev = 0 // whole windows went by without a decision
	}
	eb.havePrev = true
	eb.start = eb.start.Add(n * eb.Window)
	eb.spent, eb.arrivals = 0, 0
}

// allowance is the energy one request may spend now: what is left divided
// by the requests expected in the rest of the window, this one included.
func (eb *EnergyBudgetPolicy) allowance(now time.Time, left float64) float64 {
	elapsed := now.Sub(eb.start)
	if elapsed < 0 {
		elapsed = 0
	}
	// Rate from the previous and current windows; the span is at least a
	// tenth of a window so the first arrivals do not make it explode.
	span := elapsed
	count := max(eb.arrivals-1, 0) // the others: this request is counted below
	if eb.havePrev {
		span += eb.Window
		count += eb.prev
	}
	if minSpan := eb.Window / 10; span < minSpan {
		span = minSpan
	}
	remaining := eb.Window - elapsed
	if remaining < 0 {
		remaining = 0
	}
	expected := 1 + float64(count)*remaining.Seconds()/span.Seconds()
	return left / expected
}

// target is the deepest exit whose cumulative profiled energy fits the
// request's allowance (at least 1). spentHere is the profiled energy of
// the stages this request already ran, added back to what is left so the
// comparison is the same at every stage.
func (eb *EnergyBudgetPolicy) target(s *Step, p *profile.Profile, now time.Time) (int, float64) {
	k := numExits(s, p)
	left := eb.BudgetMJ - eb.spent + cumMJ(p, 0, s.Done)
	allow := eb.allowance(now, left)
	t := 1
	for e := 2; e <= k; e++ {
		if cumMJ(p, 0, e) <= allow {
			t = e
		}
	}
	return t, allow
}

// reserveMJ is what starting stage i reserves: its p99 profiled energy.
func reserveMJ(p *profile.Profile, i int) float64 { return stageEnergy(p, i, energyP99) }

// guardMJ is the budget held back from reservations: the largest spread
// between a stage's reservation (p99) and its mean, so that a stage that
// costs up to that much more than its reservation is still covered.
func guardMJ(p *profile.Profile) float64 {
	var g float64
	if p != nil {
		for i := range p.Stages {
			g = max(g, reserveMJ(p, i)-p.Stages[i].EnergyMJ)
		}
	}
	return g
}

// reconcile charges the difference between the measured energy of the
// stages the request ran and their reservations; called once per
// request, at its last decision. The lock is held.
func (eb *EnergyBudgetPolicy) reconcile(s *Step, p *profile.Profile) {
	if s.Done == 0 || s.EnergyMJ <= 0 {
		return
	}
	var reserved float64
	for i := range s.Done {
		reserved += reserveMJ(p, i)
	}
	d := s.EnergyMJ - reserved
	if d < 0 && s.Arrival.Before(eb.start) {
		return
	}
	eb.spent += d
}

// covers reports whether the window's budget covers reserving stage i.
func (eb *EnergyBudgetPolicy) covers(p *profile.Profile, i int) (need, left float64, ok bool) {
	need, left = reserveMJ(p, i), eb.BudgetMJ-eb.spent
	return need, left, left > 0 && need+guardMJ(p) <= left
}

// Before implements Policy.
func (eb *EnergyBudgetPolicy) Before(s *Step, p *profile.Profile) Decision {
	now := nowOf(s)
	eb.mu.Lock()
	defer eb.mu.Unlock()
	eb.roll(now)
	if s.Done == 0 {
		eb.arrivals++
	}
	if d := hardLimits(s, p); d.Action != Continue {
		switch d.Action {
		case Stop:
			eb.reconcile(s, p)
		case Infeasible:
			// The tenant's setting may serve exit 1 late: reserve it, or
			// shed the request when the budget cannot cover it.
			need, left, ok := eb.covers(p, 0)
			if !ok {
				return Decision{Action: Shed, Limit: true, Reason: fmt.Sprintf("%s; energy budget: stage 1 needs %.3f mJ, %.3f mJ left of %.3f mJ per %v",
					d.Reason, need, left, eb.BudgetMJ, eb.Window)}
			}
			eb.spent += need
		}
		return d
	}
	t, allow := eb.target(s, p, now)
	if s.Done > 0 && s.Done >= t {
		eb.reconcile(s, p)
		return stop(fmt.Sprintf("energy budget: exit %d is what %.3f mJ per request allows", t, allow))
	}
	need, left, ok := eb.covers(p, s.Done)
	if !ok {
		reason := fmt.Sprintf("energy budget: stage %d needs %.3f mJ, %.3f mJ left of %.3f mJ per %v",
			s.Done+1, need, left, eb.BudgetMJ, eb.Window)
		if s.Done == 0 {
			return Decision{Action: Shed, Limit: true, Reason: reason}
		}
		eb.reconcile(s, p)
		d := stop(reason)
		d.Limit = true
		return d
	}
	eb.spent += need
	if s.Done == numExits(s, p)-1 {
		eb.reconcile(s, p) // the last stage: no decision follows
	}
	return run(fmt.Sprintf("energy budget: stage %d reserved %.3f mJ, target exit %d", s.Done+1, need, t))
}

// After implements Policy: it stops at the target exit, saving the request
// a trip through the queue.
func (eb *EnergyBudgetPolicy) After(s *Step, p *profile.Profile) Decision {
	now := nowOf(s)
	eb.mu.Lock()
	defer eb.mu.Unlock()
	eb.roll(now)
	if d, ok := boundExitReached(s); ok {
		eb.reconcile(s, p)
		return d
	}
	t, allow := eb.target(s, p, now)
	if s.Done >= t {
		eb.reconcile(s, p)
		return stop(fmt.Sprintf("energy budget: exit %d is what %.3f mJ per request allows", t, allow))
	}
	return run("energy budget: target exit not reached")
}
