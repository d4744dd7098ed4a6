package agent

import (
	"math"
	"testing"
	"time"

	"github.com/delen-edge/delen/models/energy"
	"github.com/delen-edge/delen/models/profile"
)

func baseProfile() *profile.Profile {
	p := &profile.Profile{Model: "m", Version: "1", Device: "d", Source: profile.SourceMeasured}
	for i := 0; i < 3; i++ {
		q := profile.Quantiles{P50: 9, P95: 10, P99: 11, Mean: 9}
		p.Stages = append(p.Stages, profile.StageStats{Stage: i, LatencyMS: q})
		p.Exits = append(p.Exits, profile.ExitStats{Exit: i + 1})
	}
	return p
}

// TestLivePredictionsFollowASlowdown: stage 2 slows from 10 ms to 30 ms;
// after the window has turned over, its p95 (what deadlines use) and the
// exits' cumulative latency follow, while the other stages do not move.
func TestLivePredictionsFollowASlowdown(t *testing.T) {
	l := newLiveProfile(3)
	p := baseProfile()
	now := time.Unix(1000, 0)
	feed := func(n int, ms [3]float64) {
		for k := 0; k < n; k++ {
			for i := 0; i < 3; i++ {
				// A little spread, and an outlier now and then.
				v := ms[i] * (1 + 0.02*float64(k%5))
				if k%97 == 0 {
					v *= 5
				}
				now = now.Add(10 * time.Millisecond) // runs far enough apart that liveGap never holds a refresh back
				if l.observe(i, energy.Work{Wall: time.Duration(v * float64(time.Millisecond)), CPU: time.Duration(v * float64(time.Millisecond))}, v/200, 1, now) {
					p = l.refresh(p, now)
				}
			}
		}
	}
	feed(liveWindow, [3]float64{10, 10, 10})
	if got := p.Stages[1].LatencyMS.P95; got < 10 || got > 11 {
		t.Fatalf("steady: stage 2 p95 %.2f, want about 10.8", got)
	}
	if p.Source != profile.SourceLive || !l.takeDirty() {
		t.Fatalf("refreshed profile not marked live/dirty")
	}
	feed(liveWindow, [3]float64{10, 30, 10})
	if got := p.Stages[1].LatencyMS.P95; got < 30 || got > 33 {
		t.Fatalf("after the slowdown: stage 2 p95 %.2f, want about 32", got)
	}
	if got := p.Stages[0].LatencyMS.P95; got > 11 {
		t.Fatalf("stage 1 moved to %.2f", got)
	}
	if got, want := p.Exits[2].LatencyMS.P95, p.Stages[0].LatencyMS.P95+p.Stages[1].LatencyMS.P95+p.Stages[2].LatencyMS.P95; got != want {
		t.Fatalf("exit 3 cumulative p95 %.2f, want the sum %.2f", got, want)
	}
	// Energy follows too (here 1/200 of the time, mean over the window).
	if got := p.Stages[1].EnergyMJ; got < 0.15 || got > 0.17 {
		t.Fatalf("stage 2 energy %.3f mJ, want about 0.16", got)
	}
	// Outliers (1 in 97) do not move p50.
	if got := p.Stages[1].LatencyMS.P50; got > 32 {
		t.Fatalf("p50 %.2f pulled by outliers", got)
	}
}

func TestLiveNeedsEnoughRuns(t *testing.T) {
	l := newLiveProfile(3)
	p := baseProfile()
	for k := 0; k < liveMin-1; k++ {
		l.observe(0, energy.Work{Wall: 50 * time.Millisecond, CPU: 50 * time.Millisecond}, 0.25, 1, time.Now())
	}
	if q := l.refresh(p, time.Now()); q != p {
		t.Fatal("refreshed from fewer runs than liveMin")
	}
}

// TestLiveRefreshAtMostEveryGap: once the window is full, runs that come
// faster than liveGap (a busy agent) refresh the profile about once per
// liveGap, not every liveEvery runs; runs that come slowly refresh it every
// liveEvery runs. Until the window is full, every liveEvery runs.
func TestLiveRefreshAtMostEveryGap(t *testing.T) {
	for _, tc := range []struct {
		name     string
		apart    time.Duration // between runs
		runs     int           // after the window is full
		min, max int           // refreshes that changed the profile, in those runs
	}{
		{"fast", liveGap / 1000, 100 * liveEvery, 5, 7}, // 640 ms of runs
		{"slow", liveGap, 10 * liveEvery, 10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLiveProfile(1)
			p := baseProfile()
			now := time.Unix(1000, 0)
			run := func() bool {
				now = now.Add(tc.apart)
				if l.observe(0, energy.Work{Wall: time.Millisecond, CPU: time.Millisecond}, 0.01, 1, now) {
					if q := l.refresh(p, now); q != p {
						p = q
						return true
					}
				}
				return false
			}
			filling := 0
			for k := 0; k < liveWindow-1; k++ {
				if run() {
					filling++
				}
			}
			if want := (liveWindow-1)/liveEvery - liveMin/liveEvery + 1; filling != want {
				t.Fatalf("while the window filled: %d refreshes, want %d (every %d runs from %d)", filling, want, liveEvery, liveMin)
			}
			got := 0
			for k := 0; k < tc.runs; k++ {
				if run() {
					got++
				}
			}
			if got < tc.min || got > tc.max {
				t.Fatalf("%d runs %s apart: %d refreshes, want %d..%d", tc.runs, tc.apart, got, tc.min, tc.max)
			}
		})
	}
}

// TestLiveEnergyIsWhatARequestIsCharged: the live energy of a stage is
// each request's share of its runs, batched or alone (what results
// report), while its latency and CPU time come from lone runs only.
func TestLiveEnergyIsWhatARequestIsCharged(t *testing.T) {
	type run struct {
		n      int     // requests in the batch
		wallMS float64 // the run's wall and CPU time
		mj     float64 // the run's energy
		times  int
	}
	cases := []struct {
		name         string
		runs         []run
		wantMJ       float64 // stage energy (mean share)
		wantP95MS    float64 // stage latency p95
		wantLoneRuns int
	}{
		{"lone runs", []run{{1, 1, 0.4, 600}}, 0.4, 1, liveWindow},
		{"batches of 4 after lone runs", []run{{1, 1, 0.4, 300}, {4, 3, 0.8, 200}}, 0.2, 1, 300},
		{"batches that cost what their requests would alone", []run{{1, 1, 0.4, 200}, {2, 2, 0.8, 300}}, 0.4, 1, 200},
		{"one lone run per batch of 3", []run{{1, 1, 0.4, 128}, {3, 2, 0.3, 128}}, 0.175, 1, 128},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLiveProfile(1)
			p := baseProfile()
			now := time.Unix(1000, 0)
			for _, r := range c.runs {
				for range r.times {
					now = now.Add(time.Second)
					d := time.Duration(r.wallMS * float64(time.Millisecond))
					if l.observe(0, energy.Work{Wall: d, CPU: d}, r.mj, r.n, now) {
						p = l.refresh(p, now)
					}
				}
			}
			p = l.refresh(p, now)
			s := p.Stages[0]
			if math.Abs(s.EnergyMJ-c.wantMJ) > 1e-9 {
				t.Errorf("stage energy %.4f mJ, want %.4f", s.EnergyMJ, c.wantMJ)
			}
			if s.LatencyMS.P95 != c.wantP95MS || s.CPUMS.P95 != c.wantP95MS {
				t.Errorf("stage latency p95 %.3f ms, CPU p95 %.3f ms, want %.3f (lone runs only)", s.LatencyMS.P95, s.CPUMS.P95, c.wantP95MS)
			}
			if s.Runs != min(c.wantLoneRuns, liveWindow) {
				t.Errorf("runs %d, want %d", s.Runs, min(c.wantLoneRuns, liveWindow))
			}
		})
	}
}
