package agent

import (
	"fmt"
	"sort"
	"time"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/policies"
	"github.com/delen-edge/delen/schema"
)

// topK is how many classes a result lists in top.
const topK = 3

// work runs stages until the scheduler closes.
func (a *Agent) work() {
	for {
		t := a.sched.pop()
		if t == nil {
			return
		}
		a.step(t.job)
	}
}

// step gives a job one turn: ask the policy, run at most one stage, then
// finish the job or put it back in the scheduler for its next stage.
func (a *Agent) step(j *job) {
	now := time.Now()
	j.queue += now.Sub(j.task.queuedAt)
	prof := j.model.profile.Load()
	s := &policies.Step{
		Tenant: j.tenant, Bound: j.bound, Conditions: j.conditions,
		Exits: j.model.m.Exits(), Done: j.done, Arrival: j.arrival, Now: now,
		EnergyMJ: j.energyMJ, ComputeMS: ms(j.compute), Confidence: j.conf,
		Load: policies.Load{QueueDepth: a.sched.depth(j.tenant)},
	}
	d := j.policy.Before(s, prof)
	switch {
	case d.Action == policies.Infeasible && j.done == 0:
		if j.infeasible == "shed" {
			j.reason = d.Reason
			a.finish(j, schema.StatusShed)
			return
		}
		j.late = true
		j.reason = d.Reason
		if err := a.runStage(j); err != nil {
			a.fail(j, err)
			return
		}
		a.finish(j, "")
		return
	case d.Action != policies.Continue && j.done > 0:
		j.reason = d.Reason
		a.finish(j, "")
		return
	}
	if err := a.runStage(j); err != nil {
		a.fail(j, err)
		return
	}
	if j.done == s.Exits {
		a.finish(j, "")
		return
	}
	s.Now, s.Done, s.Confidence = time.Now(), j.done, j.conf
	s.EnergyMJ, s.ComputeMS = j.energyMJ, ms(j.compute)
	if d := j.policy.After(s, prof); d.Action != policies.Continue {
		j.reason = d.Reason
		a.finish(j, "")
		return
	}
	j.task.queuedAt = time.Now()
	j.task.cost = a.stageCost(j.model, j.done)
	if err := a.sched.push(&j.task, true, 0); err != nil {
		// Closing: serve what has been computed.
		a.finish(j, "")
	}
}

// runStage runs the job's next stage and records its exit.
func (a *Agent) runStage(j *job) error {
	if j.state == nil {
		st, err := j.model.m.NewState(1)
		if err != nil {
			return err
		}
		copy(st.Input(), j.input)
		j.state = st
	}
	reading := a.cfg.Meter.Start()
	t0 := time.Now()
	logits, err := j.state.RunStage()
	dt := time.Since(t0)
	if err != nil {
		return err
	}
	mj, err := reading.Stop(dt)
	if err != nil {
		a.log.Debug("energy reading failed", "err", err)
	}
	j.compute += dt
	j.energyMJ += mj
	j.done++
	a.metrics.stageSeconds.WithLabelValues(j.model.name, fmt.Sprint(j.done)).Observe(dt.Seconds())
	j.class, j.conf, j.top = topClasses(logits)
	return nil
}

// topClasses returns the top-1 class, its probability and the top-k.
func topClasses(logits []float32) (int, float64, []schema.ClassProb) {
	p := make([]float32, len(logits))
	models.Softmax(p, logits)
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return p[idx[a]] > p[idx[b]] })
	k := min(topK, len(idx))
	top := make([]schema.ClassProb, k)
	for i := 0; i < k; i++ {
		top[i] = schema.ClassProb{Class: idx[i], Prob: float64(p[idx[i]])}
	}
	return idx[0], float64(p[idx[0]]), top
}

// finish builds the job's result and hands it to the publishers. status
// is empty for a served request (ok or late, decided here).
func (a *Agent) finish(j *job, status string) {
	if j.state != nil {
		j.state.Release()
		j.state = nil
	}
	man := j.model.m.Manifest
	r := &schema.Result{
		V: schema.Version, ID: j.req.ID, Tenant: j.tenant, Model: man.Name,
		SentAt: j.req.SentAt, Meta: j.req.Meta, Exits: j.model.m.Exits(),
		QueueMS: ms(j.queue), ComputeMS: ms(j.compute), EnergyMJ: j.energyMJ,
		EnergySource: a.cfg.Meter.Name(),
	}
	if status == schema.StatusShed {
		r.Status = schema.StatusShed
		r.Error = &schema.Error{Code: schema.CodeOverloaded, Message: "bound cannot be met: " + j.reason}
		f := false
		r.BoundMet = &f
	} else {
		class := j.class
		r.Exit, r.Class, r.Confidence, r.Top = j.done, &class, j.conf, j.top
		r.AccuracyEst = policies.ExitAccuracy(j.model.profile.Load(), j.done)
		r.Status = schema.StatusOK
	}
	j.result = r
	a.results <- j
}

// fail answers a job that broke while running.
func (a *Agent) fail(j *job, err error) {
	a.log.Error("stage failed", "tenant", j.tenant, "id", j.req.ID, "model", j.model.name, "err", err)
	if j.state != nil {
		j.state.Release()
		j.state = nil
	}
	j.result = schema.NewErrorResult(j.tenant, j.req, schema.Errorf(schema.CodeInternal, "inference failed"))
	a.results <- j
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
