package policies

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/schema"
)

func newBudget(t *testing.T, joules, windowS float64) *EnergyBudgetPolicy {
	t.Helper()
	return mustNew(t, "energy-budget", Params{"joules": joules, "window_s": windowS}).(*EnergyBudgetPolicy)
}

// TestEnergyBudgetExhaustion: a burst of requests in one window lowers the
// exits served, never spends more than the budget, then is Infeasible; the
// next window's budget serves again.
func TestEnergyBudgetExhaustion(t *testing.T) {
	eb := newBudget(t, 0.02, 10) // 20 mJ per 10 s; the model costs 1, 3, 6 mJ cumulative
	p := synthetic()
	var served, shed int
	var spentMJ float64
	var exits []int
	for n := range 40 {
		at := t0.Add(time.Duration(n) * 100 * time.Millisecond)
		o := drive(eb, p, req{arrival: at})
		if o.act == Shed {
			shed++
			continue
		}
		served++
		spentMJ += o.mj
		exits = append(exits, o.exit)
		if spentMJ > eb.BudgetMJ+1e-9 {
			t.Fatalf("request %d: %.3f mJ spent of %.3f", n, spentMJ, eb.BudgetMJ)
		}
	}
	if exits[0] != 3 {
		t.Errorf("first request served exit %d, want the full model", exits[0])
	}
	for k := 1; k < len(exits); k++ {
		if exits[k] > exits[0] {
			t.Errorf("exits served %v: not spending less as the budget runs low", exits)
		}
	}
	if shed == 0 || spentMJ < eb.BudgetMJ-1 {
		t.Fatalf("served %d (%.1f mJ), shed %d: budget not used up", served, spentMJ, shed)
	}
	if spent, left := eb.Spent(t0.Add(5 * time.Second)); math.Abs(spent-spentMJ) > 1e-9 || left < 0 {
		t.Fatalf("accounted %.3f mJ (left %.3f), served %.3f", spent, left, spentMJ)
	}
	t.Logf("window 1: exits %v, %d shed, %.1f of %.1f mJ", exits, shed, spentMJ, eb.BudgetMJ)
	// Next window: the budget refills.
	o := drive(eb, p, req{arrival: t0.Add(10*time.Second + time.Millisecond)})
	if o.act != Stop || o.exit < 1 {
		t.Fatalf("next window: %v exit %d", o.act, o.exit)
	}
	if spent, _ := eb.Spent(t0.Add(10*time.Second + time.Second)); spent != o.mj {
		t.Fatalf("next window spent %.3f, request used %.3f", spent, o.mj)
	}
	// Several windows later, with no requests between: fresh again.
	if spent, left := eb.Spent(t0.Add(95 * time.Second)); spent != 0 || left != eb.BudgetMJ {
		t.Fatalf("idle windows: spent %.3f left %.3f", spent, left)
	}
}

// TestEnergyBudgetSparse: requests far apart each get the full model.
func TestEnergyBudgetSparse(t *testing.T) {
	eb := newBudget(t, 1, 60)
	for n := range 10 {
		o := drive(eb, synthetic(), req{arrival: t0.Add(time.Duration(n) * 30 * time.Second)})
		if o.exit != 3 {
			t.Fatalf("request %d served exit %d (%v)", n, o.exit, o.act)
		}
	}
}

// TestEnergyBudgetAccounting: each request's measured energy is charged
// once, at its last decision, whichever way it ends.
func TestEnergyBudgetAccounting(t *testing.T) {
	cases := []struct {
		name   string
		r      req
		exit   int
		charge float64
	}{
		// Full model: the last stage stays at its profiled 3 mJ.
		{"full model, measured above profile", req{energy: []float64{1.5, 2.5, 9}}, 3, 1.5 + 2.5 + 3},
		{"full model, measured below profile", req{energy: []float64{0.5, 1, 9}}, 3, 0.5 + 1 + 3},
		{"stop after exit 1", req{bound: schema.Bound{Exit: i(1)}, energy: []float64{1.5, 0, 0}}, 1, 1.5},
		{"stop before stage 3", req{bound: schema.Bound{LatencyMS: f(35)}, energy: []float64{1.5, 2.5, 0}}, 2, 4},
		{"nothing measured", req{energy: []float64{0, 0, 0}}, 3, 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			eb := newBudget(t, 1, 60)
			for n := 1; n <= 3; n++ {
				c.r.arrival = t0.Add(time.Duration(n) * time.Second)
				o := drive(eb, synthetic(), c.r)
				if o.exit != c.exit {
					t.Fatalf("served exit %d (%v), want %d", o.exit, o.act, c.exit)
				}
				if spent, _ := eb.Spent(t0.Add(4 * time.Second)); math.Abs(spent-float64(n)*c.charge) > 1e-9 {
					t.Fatalf("after %d requests: %.3f mJ charged, want %.3f", n, spent, float64(n)*c.charge)
				}
			}
		})
	}
}

// TestEnergyBudgetStageLimit: a stage whose profiled energy exceeds what
// is left is not started, even mid-request.
func TestEnergyBudgetStageLimit(t *testing.T) {
	eb := newBudget(t, 0.004, 60) // 4 mJ: exit 2 (3 mJ) fits, exit 3 (6 mJ) does not
	o := drive(eb, synthetic(), req{})
	if o.exit != 2 {
		t.Fatalf("served exit %d, want 2", o.exit)
	}
	o = drive(eb, synthetic(), req{arrival: t0.Add(time.Second)})
	if o.exit != 1 { // 1 mJ left: exit 1 exactly
		t.Fatalf("served exit %d (%v), want 1", o.exit, o.act)
	}
	if o = drive(eb, synthetic(), req{arrival: t0.Add(2 * time.Second)}); o.act != Shed {
		t.Fatalf("empty budget: %v exit %d", o.act, o.exit)
	}
	if spent, left := eb.Spent(t0.Add(3 * time.Second)); spent != 4 || left != 0 {
		t.Fatalf("spent %.3f left %.3f", spent, left)
	}
}

func TestEnergyBudgetParams(t *testing.T) {
	eb := newBudget(t, 2, 3600)
	if eb.BudgetMJ != 2000 || eb.Window != time.Hour {
		t.Fatalf("budget %v per %v", eb.BudgetMJ, eb.Window)
	}
	def := mustNew(t, "energy-budget", nil).(*EnergyBudgetPolicy)
	if def.BudgetMJ != 1000 || def.Window != time.Minute {
		t.Fatalf("defaults: %v per %v", def.BudgetMJ, def.Window)
	}
	for _, bad := range []Params{{"joules": 0}, {"window_s": -1}, {"window_s": math.Inf(1)}} {
		if _, err := NewEnergyBudget(bad); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}

// adaptiveRun drives one request with per-stage queue delay q (ms) and
// returns the exit served and the policy's target after it.
func adaptiveRun(a *AdaptivePolicy, n int, q, queueMS float64) (int, int) {
	o := drive(a, synthetic(), req{arrival: t0.Add(time.Duration(n) * time.Second), queueMS: queueMS, load: Load{QueueDelayMS: q}})
	tg, _ := a.Target(3)
	return o.exit, tg
}

func newAdaptive(t *testing.T, ps Params) *AdaptivePolicy {
	t.Helper()
	return mustNew(t, "adaptive", ps).(*AdaptivePolicy)
}

// TestAdaptiveRamp: a load ramp up lowers the target exit, the ramp down
// raises it back, each monotonically. With a 120 ms budget the watermarks
// are 108 ms and 72 ms; the full path takes 60 ms + 2 queue waits.
func TestAdaptiveRamp(t *testing.T) {
	a := newAdaptive(t, Params{"target_ms": 120, "raise_after": 3})
	var ramp []float64
	for q := 0.0; q <= 100; q += 10 {
		ramp = append(ramp, q, q, q, q)
	}
	up := len(ramp)
	for q := 100.0; q >= 0; q -= 10 {
		ramp = append(ramp, q, q, q, q)
	}
	var targets []int
	n := 0
	for _, q := range ramp {
		exit, tg := adaptiveRun(a, n, q, 0)
		n++
		if exit > tg && exit != 1 {
			t.Fatalf("q=%v: served exit %d above the target %d", q, exit, tg)
		}
		targets = append(targets, tg)
	}
	for k := 1; k < len(targets); k++ {
		if k < up && targets[k] > targets[k-1] {
			t.Fatalf("target rose during the ramp up: %v", targets)
		}
		if k >= up && targets[k] < targets[k-1] {
			t.Fatalf("target fell during the ramp down: %v", targets)
		}
	}
	if targets[0] != 3 || targets[up-1] != 1 || targets[len(targets)-1] != 3 {
		t.Fatalf("targets %v: want 3, down to 1, back to 3", targets)
	}
	if _, changes := a.Target(3); changes != 4 {
		t.Fatalf("%d changes (targets %v), want 4", changes, targets)
	}
}

// TestAdaptiveFlat: a flat load at the high watermark, with jitter around
// it, changes the target at most once.
func TestAdaptiveFlat(t *testing.T) {
	for name, jitter := range map[string]float64{"at the watermark": 0, "jitter around it": 0.2} {
		a := newAdaptive(t, Params{"target_ms": 120, "raise_after": 2})
		for n := range 300 {
			q := 24.0 // full path: 60 + 2×24 = 108 ms = 0.9 × 120
			if n%2 == 1 {
				q += jitter
			} else {
				q -= jitter
			}
			adaptiveRun(a, n, q, 0)
		}
		tg, changes := a.Target(3)
		if changes > 1 {
			t.Fatalf("%s: %d target changes (now %d)", name, changes, tg)
		}
		t.Logf("%s: target %d after %d changes", name, tg, changes)
	}
}

func TestAdaptiveSignals(t *testing.T) {
	cases := []struct {
		name    string
		params  Params
		r       req
		want    int // target after the request
		changes int
	}{
		{"no budget: full model, no adapting", nil, req{load: Load{QueueDelayMS: 1000}}, 3, 0},
		{"idle", Params{"target_ms": 120}, req{}, 3, 0},
		{"queue delay", Params{"target_ms": 120}, req{load: Load{QueueDelayMS: 30}}, 2, 1},
		// Depth 5 × mean p50 16 ms = 80 ms per stage: only exit 1 fits.
		{"queue depth without delay", Params{"target_ms": 120}, req{load: Load{QueueDepth: 5}}, 1, 1},
		{"depth shared by workers", Params{"target_ms": 120, "workers": 4}, req{load: Load{QueueDepth: 5}}, 3, 0},
		{"slack eaten by queueing", Params{"target_ms": 120}, req{queueMS: 50}, 2, 1},
		{"latency bound over target_ms", Params{"target_ms": 1000}, req{bound: schema.Bound{LatencyMS: f(120)}, load: Load{QueueDelayMS: 30}}, 2, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newAdaptive(t, c.params)
			o := drive(a, synthetic(), c.r)
			tg, ch := a.Target(3)
			if tg != c.want || ch != c.changes || o.exit != tg {
				t.Fatalf("target %d after %d changes, served %d; want %d after %d", tg, ch, o.exit, c.want, c.changes)
			}
		})
	}
	a := newAdaptive(t, nil)
	if o := drive(a, synthetic(), req{bound: schema.Bound{LatencyMS: f(5)}, queueMS: 10}); o.act != Infeasible {
		t.Fatalf("passed deadline: %v", o.act)
	}
	if o := drive(newAdaptive(t, nil), synthetic(), req{bound: schema.Bound{EnergyMJ: f(3)}}); o.exit != 2 {
		t.Fatalf("energy hard limit: exit %d", o.exit)
	}
}

// TestEnergyBudgetIsAHardLimit: a request the budget cannot cover is Shed
// (never left to the tenant's infeasible setting), and a request the
// tenant may be served late (a deadline exit 1 cannot meet) has exit 1
// reserved first, so serving it never overdraws the budget.
func TestEnergyBudgetIsAHardLimit(t *testing.T) {
	p := synthetic()
	for i := range p.Stages { // measured spread: p99 = 1.5 × mean
		m := p.Stages[i].EnergyMJ
		p.Stages[i].EnergyQuantilesMJ = profile.Quantiles{Mean: m, P50: m, P95: 1.3 * m, P99: 1.5 * m}
	}
	eb := newBudget(t, 0.005, 60) // 5 mJ; stage 1 reserves 1.5 mJ, the guard is 1.5 mJ
	late := schema.Bound{LatencyMS: f(1)}
	var acts []Action
	for n := range 4 {
		o := drive(eb, p, req{bound: late, arrival: t0.Add(time.Duration(n) * time.Millisecond)})
		acts = append(acts, o.act)
	}
	want := []Action{Infeasible, Infeasible, Shed, Shed}
	if !slices.Equal(acts, want) {
		t.Fatalf("late-bound requests: %v, want %v", acts, want)
	}
	if spent, _ := eb.Spent(t0.Add(time.Second)); spent != 3 {
		t.Fatalf("charged %.3f mJ for two exit-1 reservations, want 3", spent)
	}
}
