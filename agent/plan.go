package agent

import (
	"math"
	"time"

	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/policies"
)

// The plan: the scheduler's book of the stage work (ms of one worker,
// policies.StageWorkMS) planned for every admitted request with a
// deadline, by deadline, so that a decision can tell in O(log n) how much
// work is due before a request's deadline and how much slack the requests
// due after it have left (imprecise computation under EDF; see
// policies.Planner).
//
// The book is a segment tree over planSlots slots of planSlotMS each,
// counted from base: slot k holds the work booked by requests whose
// deadline falls in it. A node keeps the work of its slots (sum) and, over
// its occupied slots k, the least of m·t(k) − (work of its slots up to
// k), where t(k) is the slot's start (ms from base) and m the number of
// workers; so min over k ≥ j of the slack m·(t(k) − now) − (work due by k)
// is one range query. Deadlines before base count as due at slot 0,
// deadlines past the last slot as due at it (earlier than they are: on
// the safe side). When now nears the end of the slots the book is rebuilt
// from base = now − planPast.
const (
	planSlots  = 1 << 15
	planSlotMS = 1.0
	planPast   = time.Second
	// planMarginMS is kept free before every deadline: the result's trip
	// to the tenant and the clock's granularity.
	planMarginMS = 5.0
	// rateTau is the time constant (ms) of the arrival-rate estimate.
	rateTau = 250.0
	// shareSojourn is the time in the system, as a fraction of the bound,
	// that the fair share lets a stream's booked work ride on top of one
	// bound's capacity. A steady stream at share f holds about λ·W·f of
	// work booked (Little's law: λ arrivals a ms, W ms from admission to
	// result), so charging all of it against one bound's capacity m·B
	// settles at f = m·B / (λ·(B + W)): a saturated stream is planned at
	// B/(B+W) of the workers (about 0.7 at W = 40% of the bound), and
	// served more requests at exit 1 than the hindsight plan with its
	// deadlines met with room to spare (docs/evaluation.md, issue 11).
	// With the capacity counted as m·B·(1 + shareSojourn) the share reaches
	// the workers' full capacity at W = shareSojourn·B, and a backlog past
	// it still lowers the share. In single cells (docs/evaluation.md) 0.5
	// met 0.975-0.993 of the deadlines; 0.15 to 0.35 met 0.988-1.000, the
	// accuracy rising up to 0.25 and no further.
	shareSojourn = 0.25
)

// planBook is the segment tree; its zero value is not usable (newPlanBook).
type planBook struct {
	m     float64 // workers
	base  time.Time
	sum   []float64 // 2·planSlots: node sums
	mn    []float64 // 2·planSlots: node minima
	count []int32   // planSlots: requests booked per slot
	jobs  map[*job]struct{}
}

func newPlanBook(workers int, now time.Time) *planBook {
	b := &planBook{m: float64(max(1, workers)), sum: make([]float64, 2*planSlots), mn: make([]float64, 2*planSlots),
		count: make([]int32, planSlots), jobs: map[*job]struct{}{}}
	b.reset(now)
	return b
}

// reset empties the book and counts slots from now − planPast.
func (b *planBook) reset(now time.Time) {
	b.base = now.Add(-planPast)
	clear(b.sum)
	clear(b.count)
	for i := range b.mn {
		b.mn[i] = math.Inf(1)
	}
}

// slot is the slot of deadline d.
func (b *planBook) slot(d time.Time) int {
	k := int(float64(d.Sub(b.base)) / float64(time.Millisecond) / planSlotMS)
	return min(max(k, 0), planSlots-1)
}

// rel is t in ms from base.
func (b *planBook) rel(t time.Time) float64 {
	return float64(t.Sub(b.base)) / float64(time.Millisecond)
}

// add books w more ms at slot k, with dn more requests there.
func (b *planBook) add(k int, w float64, dn int32) {
	b.count[k] += dn
	i := k + planSlots
	b.sum[i] += w
	if b.count[k] > 0 {
		b.mn[i] = b.m*float64(k)*planSlotMS - b.sum[i]
	} else {
		b.sum[i] = 0 // no float dust in an empty slot
		b.mn[i] = math.Inf(1)
	}
	for i >>= 1; i > 0; i >>= 1 {
		l, r := 2*i, 2*i+1
		b.sum[i] = b.sum[l] + b.sum[r]
		b.mn[i] = fmin(b.mn[l], b.mn[r]-b.sum[l])
	}
}

// query combines the slots [l, r) in order: their work, and the least of
// m·t(k) − (work of slots l..k) over their occupied slots k.
func (b *planBook) query(l, r int) (sum, mn float64) {
	lsum, lmn := 0.0, math.Inf(1)
	rsum, rmn := 0.0, math.Inf(1)
	for l, r = l+planSlots, r+planSlots; l < r; l, r = l>>1, r>>1 {
		if l&1 == 1 {
			lmn = fmin(lmn, b.mn[l]-lsum)
			lsum += b.sum[l]
			l++
		}
		if r&1 == 1 {
			r--
			rmn = fmin(b.mn[r], rmn-b.sum[r])
			rsum += b.sum[r]
		}
	}
	return lsum + rsum, fmin(lmn, rmn-lsum)
}

// fmin is the smaller of a and b (no NaNs here: cheaper than math.Min).
func fmin(a, b float64) float64 {
	if a < b {
		return a
	}
	return b
}

// set books w ms for j (replacing what it had booked); w == 0 removes it.
func (b *planBook) set(j *job, w float64, now time.Time) {
	if now.Sub(b.base) > time.Duration(planSlots/2*planSlotMS)*time.Millisecond {
		b.rebuild(now)
	}
	p := &j.plan
	if p.booked {
		if w == p.work {
			return
		}
		if w <= 0 {
			b.add(p.slot, -p.work, -1)
			p.booked, p.work = false, 0
			delete(b.jobs, j)
			return
		}
		b.add(p.slot, w-p.work, 0)
		p.work = w
		return
	}
	if w <= 0 {
		return
	}
	p.slot, p.work, p.booked = b.slot(j.task.deadline), w, true
	b.add(p.slot, w, 1)
	b.jobs[j] = struct{}{}
}

// rebuild counts the slots from now − planPast again and re-books every
// booked request.
func (b *planBook) rebuild(now time.Time) {
	b.reset(now)
	for j := range b.jobs {
		j.plan.slot = b.slot(j.task.deadline)
		b.add(j.plan.slot, j.plan.work, 1)
	}
}

// budget is policies.Planner.BudgetMS for j at now, with reserveMS of
// room kept for the predicted arrivals due before j's deadline and fair
// computed from the total arrival rate (requests/ms).
func (b *planBook) budget(j *job, now time.Time, reserveMS, rate, boundMS float64) (hard, fair float64) {
	p := &j.plan
	own := 0.0
	k := b.slot(j.task.deadline)
	if p.booked {
		own, k = p.work, p.slot
	}
	ahead, _ := b.query(0, k+1)
	ahead -= own
	left := b.rel(j.task.deadline) - b.rel(now)
	hard = b.m*left - ahead - reserveMS - planMarginMS
	// The requests due later keep their booked work feasible: j may take
	// their least slack on top of what it holds, but its mandatory stage
	// goes first whatever they booked (its deadline is earlier).
	if k+1 < planSlots {
		if _, mn := b.query(k+1, planSlots); !math.IsInf(mn, 1) {
			laterSlack := mn - ahead - own - b.m*b.rel(now)
			hard = math.Min(hard, math.Max(laterSlack+own, j.plan.mandatory))
		}
	}
	// Fair share: the capacity of the next bound's worth of time (and of
	// the booked work's normal sojourn, shareSojourn), less the work
	// already booked, spread over the requests the rate predicts in the
	// bound (at least this one).
	total := b.sum[1] - own
	n := math.Max(1, rate*boundMS)
	fair = (b.m*boundMS*(1+shareSojourn) - total) / n
	return hard, fair
}

// jobPlan is a request's entry in the book and its policies.Planner.
type jobPlan struct {
	a *Agent
	j *job
	// booked: the request holds work ms at slot.
	booked bool
	slot   int
	work   float64
	// mandatory is the work (booked ms) of its first stage while it has
	// not run (0 after); first is its first stage's predicted work.
	mandatory, first float64
	u                float64 // policies.Spread of its sequence number
}

// planner is j's policies.Planner: nil without a deadline.
func (j *job) planner() policies.Planner {
	if j.task.deadline.IsZero() || j.plan.a == nil {
		return nil
	}
	return &j.plan
}

// BudgetMS implements policies.Planner.
func (p *jobPlan) BudgetMS() (hard, fair, u float64) {
	hard, fair = p.a.sched.budget(p.j, time.Now())
	return hard, fair, p.u
}

// tenantRate is a tenant's recent arrivals, for the plan's reservations.
type tenantRate struct {
	rate    float64   // requests/ms, exponentially decayed (rateTau)
	last    time.Time // of the last arrival
	boundMS float64   // its latest latency bound
	firstMS float64   // the work of its latest request's first stage
}

// decayed is the rate at now.
func (r *tenantRate) decayed(now time.Time) float64 {
	dt := float64(now.Sub(r.last)) / float64(time.Millisecond)
	if dt <= 0 {
		return r.rate
	}
	return r.rate * math.Exp(-dt/rateTau)
}

// arrive records an arrival of tenant's with a latency bound (ms) whose
// first stage is firstMS of work.
func (s *scheduler) arrive(tenant string, now time.Time, boundMS, firstMS float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rates[tenant]
	if r == nil {
		if len(s.rates) >= maxRateTenants {
			s.pruneRates(now)
		}
		r = &tenantRate{last: now}
		s.rates[tenant] = r
	}
	r.rate = r.decayed(now) + 1/rateTau
	r.last, r.boundMS, r.firstMS = now, boundMS, firstMS
}

// maxRateTenants bounds the rates kept; idle tenants go first.
const maxRateTenants = 256

// pruneRates drops the tenants whose rate has decayed to nothing.
func (s *scheduler) pruneRates(now time.Time) {
	for name, r := range s.rates {
		if r.decayed(now) < 1e-6 {
			delete(s.rates, name)
		}
	}
}

// budget computes j's Planner budgets at now, in predicted ms (the
// profile's): the book counts real ms, the predictions times the slowdown
// the workers see now (observeStage).
func (s *scheduler) budget(j *job, now time.Time) (hard, fair float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.slowdown
	left := float64(j.task.deadline.Sub(now)) / float64(time.Millisecond)
	var reserve, rate float64
	for name, r := range s.rates {
		lr := r.decayed(now)
		rate += lr
		// Arrivals due before j: those of tenants with a shorter bound,
		// in the part of j's time left that their bound leaves.
		if name != j.tenant && r.boundMS < left {
			reserve += lr * (left - r.boundMS) * r.firstMS * k
		}
	}
	boundMS := left
	if j.bound.LatencyMS != nil {
		boundMS = *j.bound.LatencyMS
	}
	// A stage is not preempted: a request may find every worker busy with
	// one and wait for it (about one first stage).
	reserve += j.plan.first * k
	hard, fair = s.plan.budget(j, now, reserve, rate, boundMS)
	// The request's own stages run one after another: however many
	// workers are free, what it still runs must fit the time it has left.
	// Its next stage must fit at a slowdown it may well meet (the recent
	// mean plus two deviations: a stage that takes 3x its profile under
	// contention must not be the one that was planned to just fit); the
	// stages after it count at the mean, since the plan is revised after
	// every stage and the request can stop at any exit. (Counting the
	// whole chain at the cautious slowdown kept requests at exit 2 that
	// had the time for exit 3.)
	var next float64
	if j.model != nil {
		next = policies.StageWorkMS(j.model.profile.Load(), j.done)
	}
	chain := (left - planMarginMS - next*(s.slowdownHigh()-k)) / k
	return math.Min(hard/k, chain), fair / k
}

// slowdownHigh is a slowdown the next stages may meet: the recent mean
// plus two standard deviations. s.mu is held.
func (s *scheduler) slowdownHigh() float64 {
	return s.slowdown + 2*math.Sqrt(s.slowdownVar)
}

// slowdownNow is the plan's current slowdown.
func (s *scheduler) slowdownNow() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slowdown
}

// observeStage records that a stage predicted to take predictedMS (of
// work, policies.StageWorkMS) took tookMS: the plan's slowdown follows the
// ratio (an exponential average over about 20 stages, and its variance
// for slowdownHigh), so that contention
// for the CPU (the intake decoding frames, other processes) shrinks the
// capacity the plan counts on as soon as the stages slow down, without
// waiting for the live profile's next refresh.
func (s *scheduler) observeStage(predictedMS, tookMS float64) {
	if !(predictedMS > 0) || !(tookMS > 0) {
		return
	}
	r := min(max(tookMS/predictedMS, 0.25), 8)
	s.mu.Lock()
	d := r - s.slowdown
	s.slowdown += d / 20
	s.slowdownVar += (d*d - s.slowdownVar) / 20
	s.mu.Unlock()
}

// book records the work j is planned to do from now on, predicted ms (0:
// none); the book holds it times the current slowdown.
func (s *scheduler) book(j *job, w float64) {
	if j.task.deadline.IsZero() {
		return
	}
	s.mu.Lock()
	s.plan.set(j, w*s.slowdown, time.Now())
	s.mu.Unlock()
}

// bookDecision books the work j, which has run j.done exits and goes on,
// is planned to do: up to the decision's target, else (a policy that does
// not plan, or exit 1 served late) its next stage.
func (a *Agent) bookDecision(j *job, d policies.Decision, p *profile.Profile) {
	if j.task.deadline.IsZero() {
		return
	}
	j.plan.first = policies.StageWorkMS(p, 0)
	j.plan.mandatory = 0
	if j.done == 0 {
		j.plan.mandatory = j.plan.first * a.sched.slowdownNow()
	}
	if d.Action == policies.Continue && d.Target > j.done {
		a.sched.book(j, policies.WorkMS(p, j.done, d.Target))
		return
	}
	a.sched.book(j, policies.StageWorkMS(p, j.done))
}

// admitPlan plans j at admission: it records the arrival for the rates,
// and books the work up to the exit its policy plans (a policies.Planning
// policy), else its mandatory first stage.
func (a *Agent) admitPlan(j *job, now time.Time) {
	j.plan = jobPlan{a: a, j: j, u: policies.Spread(j.task.seq)}
	if j.task.deadline.IsZero() {
		return
	}
	p := j.model.profile.Load()
	a.sched.arrive(j.tenant, now, *j.bound.LatencyMS, policies.StageWorkMS(p, 0))
	d := policies.Decision{Action: policies.Continue}
	if pl, ok := j.policy.(policies.Planning); ok {
		d = pl.Plan(a.policyStep(j, now), p)
	}
	a.bookDecision(j, d, p)
}
