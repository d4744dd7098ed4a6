package agent

import (
	"strconv"
	"time"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/energy"
	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/policies"
	"github.com/delen-edge/delen/schema"
)

// topK is how many classes a result lists in top.
const topK = 3

// work runs stages until the scheduler closes; finished jobs go to the
// results path.
func (a *Agent) work() {
	for {
		ts := a.sched.popBatch(a.cfg.MaxBatch)
		if ts == nil {
			return
		}
		// A worker never waits for a slot once it holds tasks (that would
		// let inline runners starve the task it holds); it only counts
		// itself, so inline runners keep off while the workers are busy.
		a.running.Add(1)
		done := a.step(ts, nil)
		a.running.Add(-1)
		a.results.addJobs(done)
	}
}

// runInline lets the intake goroutine that just queued a request run
// stages itself when a compute slot is free, instead of waking a worker:
// on a lightly loaded agent a request is then served without a goroutine
// hand-off. The scheduler still decides which task runs.
func (a *Agent) runInline() {
	for {
		r := a.running.Load()
		if r >= int32(a.cfg.Workers) {
			return // the workers are busy and will get to it
		}
		if a.running.CompareAndSwap(r, r+1) {
			break
		}
	}
	// While nothing but the tasks it put back waits, the runner goes on
	// with them (a lightly loaded agent serves a request to its last exit
	// without waking a worker); once other work waits, it leaves the rest
	// to the workers (the caller wakes one).
	var done []*job
	for i := 0; i < maxInlineSteps; i++ {
		ts := a.sched.tryPopBatch(a.cfg.MaxBatch)
		if ts == nil {
			break
		}
		n := len(done)
		done = a.step(ts, done)
		if a.sched.len() > len(ts)-(len(done)-n) {
			break
		}
	}
	a.running.Add(-1)
	a.results.addJobs(done)
}

// maxInlineSteps bounds the stages an intake runner runs in a row, so it
// returns to intake.
const maxInlineSteps = 8

// step gives each popped job one turn: ask its policy, run at most one
// stage (one ONNX Runtime call for all the jobs that go on, when several
// wait at the same stage of the same model), then finish each job or put
// it back in the scheduler for its next stage. Finished jobs are appended
// to done.
func (a *Agent) step(ts []*task, done []*job) []*job {
	run := make([]*job, 0, len(ts))
	for _, t := range ts {
		if j := t.job; a.before(j, &done) {
			run = append(run, j)
		}
	}
	if len(run) == 0 {
		return done
	}
	if err := a.runStage(run); err != nil {
		for _, j := range run {
			a.fail(j, err, &done)
		}
		return done
	}
	for _, j := range run {
		a.after(j, &done)
	}
	return done
}

// before asks the job's policy whether to run its next stage; when not,
// it finishes the job.
func (a *Agent) before(j *job, done *[]*job) bool {
	now := time.Now()
	wait := now.Sub(j.task.queuedAt)
	j.queue += wait
	// The queue delay other tenants' policies see excludes a company
	// wait, which is the waiting request's choice, not the queue's.
	if h := j.task.holdUntil; !h.IsZero() {
		wait = max(0, now.Sub(h))
	}
	a.observeQueueDelay(wait)
	s := a.policyStep(j, now)
	p := j.model.profile.Load()
	d := j.policy.Before(s, p)
	switch {
	case d.Action == policies.Shed && j.done == 0:
		// A hard limit (an energy budget): never served over it, whatever
		// the tenant's infeasible setting.
		j.reason = d.Reason
		a.finish(j, schema.StatusShed, done)
		return false
	case d.Action == policies.Infeasible && j.done == 0:
		j.reason = d.Reason
		if j.infeasible == schema.InfeasibleShed {
			a.finish(j, schema.StatusShed, done)
			return false
		}
		// To be served late: behind the requests that can still make
		// their deadlines, unless none waits.
		j.task.queuedAt = now
		if a.sched.demote(&j.task) {
			return false
		}
		// Serve exit 1 anyway, and stop there: short of any target a
		// bound set (j.cut), late unless the result still makes it.
		j.late, j.cut = true, true
	case d.Action != policies.Continue && j.done > 0:
		j.reason = d.Reason
		j.cut = d.Limit
		a.finish(j, "", done)
		return false
	}
	a.bookDecision(j, d, p)
	return true
}

// after decides, once a stage has run, whether the job stops at this exit
// or goes back to the scheduler for the next stage.
func (a *Agent) after(j *job, done *[]*job) {
	if j.done == j.model.m.Exits() || j.late {
		a.finish(j, "", done)
		return
	}
	p := j.model.profile.Load()
	d := j.policy.After(a.policyStep(j, time.Now()), p)
	if d.Action != policies.Continue {
		j.reason = d.Reason
		j.cut = d.Limit
		a.finish(j, "", done)
		return
	}
	a.bookDecision(j, d, p)
	j.task.queuedAt = time.Now()
	a.setNextStage(j)
	// No worker is woken: the one that ran this stage pops again (and
	// wakes another when more waits), an inline runner goes on or wakes one.
	if err := a.sched.pushWake(&j.task, false); err != nil {
		// Closing: serve what has been computed.
		a.finish(j, "", done)
	}
}

// policyStep describes the job to its policy.
func (a *Agent) policyStep(j *job, now time.Time) *policies.Step {
	return &policies.Step{
		Tenant: j.tenant, Bound: j.bound, Conditions: j.conditions,
		Exits: j.model.m.Exits(), Done: j.done, Arrival: j.arrival, Origin: j.origin, Now: now,
		EnergyMJ: j.energyMJ, ComputeMS: ms(j.compute), Confidence: j.conf,
		Load:    policies.Load{QueueDepth: a.sched.depth(j.tenant), QueueDelayMS: a.QueueDelayMS()},
		Planner: j.planner(),
	}
}

// setNextStage prepares the job's task for its next stage: the cost the
// tenant is charged and the batching group.
func (a *Agent) setNextStage(j *job) {
	j.task.cost = a.stageCost(j.model, j.done)
	j.task.stageMS, j.task.itemMS = 0, 0
	if p := j.model.profile.Load(); p != nil && j.done < len(p.Stages) {
		j.task.stageMS, j.task.itemMS = p.Stages[j.done].LatencyMS.P95, p.Stages[j.done].CPUMS.P95
	}
	j.task.group = ""
	j.task.companyWait, j.task.company = 0, 0
	if j.done < j.model.m.Exits() && j.model.m.DynamicBatch(j.done) {
		j.task.group = j.model.name + "/" + strconv.Itoa(j.done)
		// An energy-bounded request without a deadline may wait briefly
		// for company at its stage: a µs-scale stage run alone in
		// service starts with cold caches and pays the call's overhead
		// alone, and in a batch each request's share of both falls
		// (docs/architecture.md, "Energy").
		if j.bound.EnergyMJ != nil && j.task.deadline.IsZero() {
			j.task.companyWait, j.task.company = a.cfg.CompanyWait, a.cfg.CompanySize
		}
	}
}

// runStage runs the next stage of the jobs (all at the same stage of the
// same model) and records each one's exit. Several jobs run as one batch;
// each is charged the batch's time and an equal share of its energy.
func (a *Agent) runStage(jobs []*job) error {
	m := jobs[0].model
	states := make([]*models.State, len(jobs))
	for k, j := range jobs {
		if j.state == nil {
			st, err := m.m.NewState(1)
			if err != nil {
				return err
			}
			copy(st.Input(), j.input)
			m.putInput(j.input)
			j.input, j.state = nil, st
		}
		states[k] = j.state
	}
	// One measure for results, the live profile and the profiler: wall
	// time for compute_ms, the thread's CPU time for the model meter.
	w, err := energy.Measure(a.cfg.Meter, func() error { return m.m.RunBatch(states) })
	if err != nil {
		return err
	}
	if w.MeterErr != nil {
		a.log.Debug("energy reading failed", "err", w.MeterErr)
	}
	dt, mj := w.Wall, w.MJ
	exit := jobs[0].done + 1
	if len(jobs) == 1 {
		a.sched.observeStage(policies.StageWorkMS(m.profile.Load(), exit-1), ms(dt))
	}
	if now := time.Now(); m.live.observe(exit-1, w, mj, len(jobs), now) {
		m.updateProfile(func(p *profile.Profile) *profile.Profile { return m.live.refresh(p, now) })
	}
	a.metrics.stageSecondsOf(m, exit).Observe(dt.Seconds())
	a.metrics.batchSize.Observe(float64(len(jobs)))
	for _, j := range jobs {
		j.compute += dt
		j.energyMJ += mj / float64(len(jobs))
		j.done = exit
		j.class, j.conf, j.top = topClasses(j.state.Logits(exit))
	}
	return nil
}

// topClasses returns the top-1 class, its probability and the top-k, most
// likely first and, among equals, the lower class first (what a stable sort
// by probability gives). It runs after every exit: one pass that keeps the
// k best, no sort.
func topClasses(logits []float32) (int, float64, []schema.ClassProb) {
	p := make([]float32, len(logits))
	models.Softmax(p, logits)
	k := min(topK, len(p))
	top := make([]schema.ClassProb, 0, k)
	for i, v := range p {
		at := len(top) // after every class at least as likely
		for at > 0 && float64(v) > top[at-1].Prob {
			at--
		}
		if at == k {
			continue
		}
		if len(top) < k {
			top = append(top, schema.ClassProb{})
		}
		copy(top[at+1:], top[at:len(top)-1])
		top[at] = schema.ClassProb{Class: i, Prob: float64(v)}
	}
	return top[0].Class, top[0].Prob, top
}

// finish builds the job's result and hands it to the publishers. status
// is empty for a served request (ok or late, decided here).
func (a *Agent) finish(j *job, status string, done *[]*job) {
	a.sched.book(j, 0)
	if j.state != nil {
		j.state.Release()
		j.state = nil
	}
	man := j.model.m.Manifest
	r := &schema.Result{
		V: schema.Version, ID: j.req.ID, Tenant: j.tenant, Model: man.Name,
		SentAt: j.req.SentAt, Meta: j.req.Meta, Exits: j.model.m.Exits(),
		QueueMS: ms(j.queue), ComputeMS: ms(j.compute), EnergyMJ: j.energyMJ,
		EnergySource: a.cfg.Meter.Name(), DeadlineFrom: j.deadlineFrom,
	}
	if status == schema.StatusShed {
		r.Status = schema.StatusShed
		r.Error = &schema.Error{Code: schema.CodeOverloaded, Message: "bound cannot be met: " + j.reason}
		f := false
		r.BoundMet = &f
	} else {
		class := j.class
		r.Exit, r.Class, r.Confidence, r.Top = j.done, &class, j.conf, j.top
		r.AccuracyEst = policies.EstimateAccuracy(j.policy,
			&policies.Step{Bound: j.bound, Exits: j.model.m.Exits(), Done: j.done, Confidence: j.conf}, j.model.profile.Load())
		r.Status = schema.StatusOK
	}
	j.result = r
	*done = append(*done, j)
}

// fail answers a job that broke while running.
func (a *Agent) fail(j *job, err error, done *[]*job) {
	a.log.Error("stage failed", "tenant", j.tenant, "id", j.req.ID, "model", j.model.name, "err", err)
	a.sched.book(j, 0)
	if j.state != nil {
		j.state.Release()
		j.state = nil
	}
	j.result = schema.NewErrorResult(j.tenant, j.req, schema.Errorf(schema.CodeInternal, "inference failed"))
	*done = append(*done, j)
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
