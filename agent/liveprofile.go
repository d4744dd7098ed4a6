package agent

import (
	"sync"
	"time"

	"github.com/delen-edge/delen/models/energy"
	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/schema"
)

// Live profile refresh: the deadline and energy predictions use the
// profile's stage latency quantiles and stage energy, so they must follow
// the device (thermal throttling, contention, another process on the
// accelerator) and the service path (a stage run between requests finds
// the caches cold and costs several times what a tight profiling loop
// measures; docs/architecture.md, "Energy"). Every stage run alone
// (batch of one) is recorded in a window of the latest liveWindow runs per
// stage (wall and CPU time: what one run takes), and every request's share
// of every run's energy, alone or batched, in a window of the latest
// liveWindow shares (what a request is charged, as its result reports it:
// with company waits most energy-bounded requests run batched, and a lone
// run's cold cost would overstate theirs); every liveEvery runs the stage's
// quantiles are recomputed from its windows. Window quantiles are robust: a few outliers move p50 not at all
// and p95 little, while a lasting change takes over the window within
// liveWindow runs.
//
// A refresh sorts every stage's windows (~0.2 ms for mnist-ee); at a few
// thousand requests a second, every 64 runs meant more than a hundred
// refreshes a second, ~3% of the agent's CPU. So a refresh also waits for
// liveGap since the last: the profile still follows within a fraction of
// a second, which is less than the window's own turnover at that rate.
// Until a stage's window is full, refreshes come every liveEvery runs.
const (
	liveWindow = 512
	liveEvery  = 64
	liveGap    = 100 * time.Millisecond
	// liveMin is how many runs a stage needs before its window replaces
	// the measured profile.
	liveMin = 128
)

// liveProfile collects recent stage costs of one model, measured as the
// profiler measures them (energy.Measure): wall time, the thread's CPU
// time, energy.
type liveProfile struct {
	mu     sync.Mutex
	window [][]float64 // ring buffer per stage: wall time of lone runs, in ms
	cpu    [][]float64 // the same runs' thread CPU time, in ms
	energy [][]float64 // ring buffer per stage: requests' energy shares, in mJ
	count  []int       // lone runs seen per stage
	shares []int       // energy shares seen per stage
	since  int         // runs since the last refresh
	last   time.Time   // the last refresh
	dirty  bool        // refreshed since the last persist
}

func newLiveProfile(stages int) *liveProfile {
	l := &liveProfile{window: make([][]float64, stages), cpu: make([][]float64, stages),
		energy: make([][]float64, stages), count: make([]int, stages), shares: make([]int, stages)}
	for i := range l.window {
		l.window[i] = make([]float64, 0, liveWindow)
		l.cpu[i] = make([]float64, 0, liveWindow)
		l.energy[i] = make([]float64, 0, liveWindow)
	}
	return l
}

// observe records a run of stage i for a batch of n requests (its wall and
// CPU time when n is 1, and each request's share of its energy, mj/n),
// ended at now; it reports whether the profile is due for a refresh
// (liveEvery runs and, once the stage's window is full, liveGap since the
// last).
func (l *liveProfile) observe(i int, w energy.Work, mj float64, n int, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	n = max(n, 1)
	if n == 1 {
		wall, cpu := ms(w.Wall), ms(w.CPU)
		if len(l.window[i]) < liveWindow {
			l.window[i] = append(l.window[i], wall)
			l.cpu[i] = append(l.cpu[i], cpu)
		} else {
			at := l.count[i] % liveWindow
			l.window[i][at], l.cpu[i][at] = wall, cpu
		}
		l.count[i]++
	}
	share := mj / float64(n)
	for range n {
		if len(l.energy[i]) < liveWindow {
			l.energy[i] = append(l.energy[i], share)
		} else {
			l.energy[i][l.shares[i]%liveWindow] = share
		}
		l.shares[i]++
	}
	l.since++
	if l.since < liveEvery {
		return false
	}
	// Until the stage's windows are full (an agent's first minutes), every
	// liveEvery runs: the profile learns the service path's costs quickly.
	// (Once the energy window is full, the gap holds too: where most runs
	// are batched the lone-run window may take long to fill.)
	return (l.count[i] < liveWindow && l.shares[i] < liveWindow) || now.Sub(l.last) >= liveGap
}

// refresh returns a copy of p whose stage latencies (and the exits'
// cumulative latencies) come from the live windows of the stages that have
// enough runs; p itself is not changed.
func (l *liveProfile) refresh(p *profile.Profile, now time.Time) *profile.Profile {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.since = 0
	q := *p
	q.Stages = append([]profile.StageStats(nil), p.Stages...)
	q.Exits = append([]profile.ExitStats(nil), p.Exits...)
	changed := false
	for i := range q.Stages {
		if i >= len(l.window) {
			continue
		}
		if len(l.window[i]) >= liveMin {
			q.Stages[i].LatencyMS = profile.Summarize(append([]float64(nil), l.window[i]...))
			q.Stages[i].CPUMS = profile.Summarize(append([]float64(nil), l.cpu[i]...))
			q.Stages[i].Runs = len(l.window[i])
			changed = true
		}
		if len(l.energy[i]) >= liveMin {
			eq := profile.Summarize(append([]float64(nil), l.energy[i]...))
			q.Stages[i].EnergyMJ, q.Stages[i].EnergyQuantilesMJ = eq.Mean, eq
			changed = true
		}
	}
	if !changed {
		return p
	}
	l.last = now // a refresh that changed nothing (too few runs) holds none back
	var cum profile.Quantiles
	var cumMJ float64
	for i := range q.Exits {
		if i < len(q.Stages) {
			s := q.Stages[i].LatencyMS
			cum = profile.Quantiles{P50: cum.P50 + s.P50, P95: cum.P95 + s.P95, P99: cum.P99 + s.P99, Mean: cum.Mean + s.Mean}
			cumMJ += q.Stages[i].EnergyMJ
		}
		q.Exits[i].LatencyMS = cum
		q.Exits[i].EnergyMJ = cumMJ
	}
	q.UpdatedAt = now.UTC()
	q.Source = profile.SourceLive
	l.dirty = true
	return &q
}

// takeDirty reports whether the profile changed since the last call.
func (l *liveProfile) takeDirty() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.dirty
	l.dirty = false
	return d
}

// Live accuracy: every served answer to a request that carries a label
// joins a window of the latest accWindow labelled answers of its model (one
// agent runs on one device, so per model and device); every accEvery
// answers the window's measured accuracy and the mean of its answers'
// accuracy_est become the profile's Live figures, from which the accuracy
// policy re-tunes its cascade (policies.LiveGap) and which the metrics,
// the tenants' state and the history show.
const (
	accWindow = 2000
	accEvery  = 50
)

// liveAccuracy is the window of one model's labelled answers.
type liveAccuracy struct {
	mu    sync.Mutex
	right []bool
	est   []float64
	count int // answers seen
}

// observe adds one labelled answer; it returns the window's figures and
// true every accEvery answers.
func (l *liveAccuracy) observe(correct bool, est float64) (profile.LiveAccuracy, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.right) < accWindow {
		l.right = append(l.right, correct)
		l.est = append(l.est, est)
	} else {
		at := l.count % accWindow
		l.right[at], l.est[at] = correct, est
	}
	l.count++
	if l.count%accEvery != 0 {
		return profile.LiveAccuracy{}, false
	}
	var right int
	var sum float64
	for i, ok := range l.right {
		if ok {
			right++
		}
		sum += l.est[i]
	}
	n := len(l.right)
	return profile.LiveAccuracy{Samples: n, Measured: float64(right) / float64(n), Expected: sum / float64(n)}, true
}

// updateProfile replaces the model's profile by f(profile), retrying when
// another goroutine replaced it meanwhile (live latencies and live
// accuracy are refreshed from different goroutines).
func (sm *servedModel) updateProfile(f func(*profile.Profile) *profile.Profile) {
	for {
		old := sm.profile.Load()
		if old == nil {
			return
		}
		if sm.profile.CompareAndSwap(old, f(old)) {
			return
		}
	}
}

// observeLabel feeds a served answer whose request carried a label to its
// model's live accuracy window, and publishes the window's figures when
// they are due.
func (a *Agent) observeLabel(j *job, r *schema.Result) {
	if j.req.Label == nil || r.Class == nil || r.Exit == 0 {
		return
	}
	j.owner.labelled.Store(true)
	la, due := j.model.acc.observe(*j.req.Label == *r.Class, r.AccuracyEst)
	if !due {
		return
	}
	la.UpdatedAt = time.Now().UTC()
	j.model.updateProfile(func(p *profile.Profile) *profile.Profile {
		q := *p
		q.Live = &la
		return &q
	})
	j.model.live.markDirty()
	a.metrics.liveAccuracy.WithLabelValues(j.model.name).Set(la.Measured)
	a.metrics.liveAccuracyExpected.WithLabelValues(j.model.name).Set(la.Expected)
}

// markDirty asks for the profile to be persisted at the next status
// interval.
func (l *liveProfile) markDirty() {
	l.mu.Lock()
	l.dirty = true
	l.mu.Unlock()
}

// liveState is the live accuracy a tenant's state shows: its model's
// window (measured from labels, expected from accuracy_est, how many).
type liveState struct {
	Model    string  `msgpack:"model" json:"model"`
	Measured float64 `msgpack:"measured" json:"measured"`
	Expected float64 `msgpack:"expected" json:"expected"`
	Samples  int     `msgpack:"samples" json:"samples"`
}

// liveStateOf is the live accuracy of the model tenant t is served with
// (settings set), and records it as shown; nil when the tenant sends no
// labels or the model has no figures yet.
func (a *Agent) liveStateOf(t *tenant, set schema.Settings) *liveState {
	if !t.labelled.Load() {
		return nil
	}
	name := a.modelName(set.Model)
	sm := a.models.get(name)
	if sm == nil {
		return nil
	}
	defer sm.release()
	p := sm.profile.Load()
	if p == nil || p.Live == nil {
		return nil
	}
	t.mu.Lock()
	t.stateLive = p.Live
	t.mu.Unlock()
	return &liveState{Model: name, Measured: p.Live.Measured, Expected: p.Live.Expected, Samples: p.Live.Samples}
}

// publishLiveStates republishes the state of every tenant that sends
// labels whose model's live accuracy changed since its state last showed
// it (called at every status interval).
func (a *Agent) publishLiveStates() {
	type due struct {
		name string
		t    *tenant
	}
	var list []due
	a.tenants.each(func(name string, t *tenant) {
		if t.labelled.Load() {
			list = append(list, due{name, t})
		}
	})
	for _, d := range list {
		set := d.t.get()
		sm := a.models.get(a.modelName(set.Model))
		if sm == nil {
			continue
		}
		live := sm.profile.Load().Live
		sm.release()
		d.t.mu.Lock()
		shown, enc := d.t.stateLive, d.t.stateEnc
		d.t.mu.Unlock()
		if live != nil && live != shown {
			a.publishState(d.name, set, enc, nil)
		}
	}
}
