package agent

import (
	"sync"
	"time"

	"github.com/delen-edge/delen/models/energy"
	"github.com/delen-edge/delen/models/profile"
)

// Live profile refresh: the deadline and energy predictions use the
// profile's stage latency quantiles and stage energy, so they must follow
// the device (thermal throttling, contention, another process on the
// accelerator) and the service path (a stage run between requests finds
// the caches cold and costs several times what a tight profiling loop
// measures; docs/architecture.md, "Energy"). Every stage run alone
// (batch of one) is recorded in a window of the latest liveWindow runs per
// stage; every liveEvery runs the stage's quantiles are recomputed from its
// window. Window quantiles are robust: a few outliers move p50 not at all
// and p95 little, while a lasting change takes over the window within
// liveWindow runs.
const (
	liveWindow = 512
	liveEvery  = 64
	// liveMin is how many runs a stage needs before its window replaces
	// the measured profile.
	liveMin = 128
)

// liveProfile collects recent stage costs of one model, measured as the
// profiler measures them (energy.Measure): wall time, the thread's CPU
// time, energy.
type liveProfile struct {
	mu     sync.Mutex
	window [][]float64 // ring buffer per stage: wall time, in ms
	cpu    [][]float64 // the same runs' thread CPU time, in ms
	energy [][]float64 // the same runs' energy, in mJ
	count  []int       // runs seen per stage
	since  int         // runs since the last refresh
	dirty  bool        // refreshed since the last persist
}

func newLiveProfile(stages int) *liveProfile {
	l := &liveProfile{window: make([][]float64, stages), cpu: make([][]float64, stages),
		energy: make([][]float64, stages), count: make([]int, stages)}
	for i := range l.window {
		l.window[i] = make([]float64, 0, liveWindow)
		l.cpu[i] = make([]float64, 0, liveWindow)
		l.energy[i] = make([]float64, 0, liveWindow)
	}
	return l
}

// observe records a run of stage i (its wall and CPU time, and its energy
// in mJ); it reports whether the profile is due for a refresh.
func (l *liveProfile) observe(i int, w energy.Work, mj float64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	wall, cpu := ms(w.Wall), ms(w.CPU)
	if len(l.window[i]) < liveWindow {
		l.window[i] = append(l.window[i], wall)
		l.cpu[i] = append(l.cpu[i], cpu)
		l.energy[i] = append(l.energy[i], mj)
	} else {
		at := l.count[i] % liveWindow
		l.window[i][at], l.cpu[i][at], l.energy[i][at] = wall, cpu, mj
	}
	l.count[i]++
	l.since++
	return l.since >= liveEvery
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
		if i >= len(l.window) || len(l.window[i]) < liveMin {
			continue
		}
		q.Stages[i].LatencyMS = profile.Summarize(append([]float64(nil), l.window[i]...))
		q.Stages[i].CPUMS = profile.Summarize(append([]float64(nil), l.cpu[i]...))
		q.Stages[i].Runs = len(l.window[i])
		eq := profile.Summarize(append([]float64(nil), l.energy[i]...))
		q.Stages[i].EnergyMJ, q.Stages[i].EnergyQuantilesMJ = eq.Mean, eq
		changed = true
	}
	if !changed {
		return p
	}
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
