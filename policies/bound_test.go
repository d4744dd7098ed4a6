package policies

import (
	"testing"
	"time"

	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/schema"
)

// synthetic is a 3-exit profile: stages of 10, 20 and 30 ms (p95), 1, 2
// and 3 mJ, exits of accuracy 0.80, 0.90 and 0.95.
func synthetic() *profile.Profile {
	p := &profile.Profile{Model: "syn", Version: "1", Device: "test"}
	for i, ms := range []float64{10, 20, 30} {
		p.Stages = append(p.Stages, profile.StageStats{Stage: i, LatencyMS: profile.Quantiles{P50: ms * 0.8, P95: ms, P99: ms * 1.1}, EnergyMJ: float64(i + 1)})
		p.Exits = append(p.Exits, profile.ExitStats{Exit: i + 1, Accuracy: []float64{0.80, 0.90, 0.95}[i]})
	}
	return p
}

func f(v float64) *float64 { return &v }
func i(v int) *int         { return &v }

// serve runs the policy over the synthetic model the way the agent does,
// with stage i taking its p95 time and energy, and the confidences given
// per exit; it returns the exit served (0 when infeasible).
func serve(pol Policy, b schema.Bound, conf []float64, queueMS float64) (int, Action) {
	p := synthetic()
	t0 := time.Unix(1000, 0)
	s := &Step{Bound: b, Exits: 3, Arrival: t0, Now: t0.Add(time.Duration(queueMS * float64(time.Millisecond)))}
	for {
		d := pol.Before(s, p)
		if d.Action == Infeasible || d.Action == Shed {
			return 0, d.Action
		}
		if d.Action == Stop {
			return s.Done, Stop
		}
		s.Now = s.Now.Add(time.Duration(p.Stages[s.Done].LatencyMS.P95 * float64(time.Millisecond)))
		s.EnergyMJ += p.Stages[s.Done].EnergyMJ
		s.Done++
		s.Confidence = conf[s.Done-1]
		if s.Done == s.Exits {
			return s.Done, Stop
		}
		if pol.After(s, p).Action == Stop {
			return s.Done, Stop
		}
	}
}

func TestBoundPolicy(t *testing.T) {
	low := []float64{0.5, 0.6, 0.7}
	high := []float64{0.99, 0.99, 0.99}
	cases := []struct {
		name     string
		bound    schema.Bound
		conf     []float64
		queueMS  float64
		wantExit int
		want     Action
	}{
		{"no bound runs the whole model", schema.Bound{}, low, 0, 3, Stop},
		{"exit 2", schema.Bound{Exit: i(2)}, low, 0, 2, Stop},
		{"exit 1", schema.Bound{Exit: i(1)}, high, 0, 1, Stop},
		{"latency fits everything", schema.Bound{LatencyMS: f(100)}, low, 0, 3, Stop},
		{"latency fits two stages", schema.Bound{LatencyMS: f(35)}, low, 0, 2, Stop},
		{"latency fits one stage", schema.Bound{LatencyMS: f(15)}, low, 0, 1, Stop},
		{"latency exactly at a stage boundary", schema.Bound{LatencyMS: f(30)}, low, 0, 2, Stop},
		{"queueing eats the slack", schema.Bound{LatencyMS: f(35)}, low, 20, 1, Stop},
		{"deadline passed on arrival", schema.Bound{LatencyMS: f(5)}, low, 10, 0, Infeasible},
		{"latency below exit 1", schema.Bound{LatencyMS: f(5)}, low, 0, 0, Infeasible},
		{"accuracy 0.85", schema.Bound{Accuracy: f(0.85)}, low, 0, 2, Stop},
		{"accuracy 0.8", schema.Bound{Accuracy: f(0.8)}, low, 0, 1, Stop},
		{"accuracy above every exit", schema.Bound{Accuracy: f(0.99)}, low, 0, 3, Stop},
		{"energy 3.5", schema.Bound{EnergyMJ: f(3.5)}, low, 0, 2, Stop},
		{"energy 1", schema.Bound{EnergyMJ: f(1)}, low, 0, 1, Stop},
		{"energy below exit 1", schema.Bound{EnergyMJ: f(0.5)}, low, 0, 0, Infeasible},
		{"confident early", schema.Bound{Confidence: f(0.9)}, high, 0, 1, Stop},
		{"never confident", schema.Bound{Confidence: f(0.9)}, low, 0, 3, Stop},
		{"confidence at exit 2", schema.Bound{Confidence: f(0.55)}, low, 0, 2, Stop},
		{"accuracy wants 3, latency allows 2", schema.Bound{Accuracy: f(0.95), LatencyMS: f(35)}, low, 0, 2, Stop},
		{"confidence fires before accuracy", schema.Bound{Accuracy: f(0.95), Confidence: f(0.9)}, high, 0, 1, Stop},
		{"energy caps exit bound", schema.Bound{Exit: i(3), EnergyMJ: f(3)}, low, 0, 2, Stop},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			exit, act := serve(BoundPolicy{}, c.bound, c.conf, c.queueMS)
			if exit != c.wantExit || act != c.want {
				t.Fatalf("served exit %d (%v), want exit %d (%v)", exit, act, c.wantExit, c.want)
			}
		})
	}
}

func TestBoundMet(t *testing.T) {
	cases := []struct {
		b    schema.Bound
		o    Outcome
		want bool
	}{
		{schema.Bound{}, Outcome{Exit: 1}, true},
		{schema.Bound{LatencyMS: f(10)}, Outcome{LatencyMS: 9.9}, true},
		{schema.Bound{LatencyMS: f(10)}, Outcome{LatencyMS: 10.1}, false},
		{schema.Bound{Accuracy: f(0.9)}, Outcome{AccuracyEst: 0.89}, false},
		// A policy that enforces the accuracy bound: missed only when a
		// hard limit cut the request short.
		{schema.Bound{Accuracy: f(0.9)}, Outcome{AccuracyEst: 0.6, AccuracyRule: true}, true},
		{schema.Bound{Accuracy: f(0.9)}, Outcome{AccuracyEst: 0.99, AccuracyRule: true, Cut: true}, false},
		{schema.Bound{LatencyMS: f(10)}, Outcome{LatencyMS: 5, Cut: true}, true},
		{schema.Bound{EnergyMJ: f(1)}, Outcome{EnergyMJ: 1.5}, false},
		{schema.Bound{Confidence: f(0.9)}, Outcome{Confidence: 0.5, Last: true}, true},
		{schema.Bound{Confidence: f(0.9)}, Outcome{Confidence: 0.5}, false},
		{schema.Bound{Exit: i(2)}, Outcome{Exit: 1}, false},
	}
	for n, c := range cases {
		if got := BoundMet(c.b, c.o); got != c.want {
			t.Errorf("case %d: BoundMet = %v, want %v", n, got, c.want)
		}
	}
}

func TestRegistry(t *testing.T) {
	r := New()
	if p, err := r.New("", nil); err != nil || p.Name() != Default {
		t.Fatalf("default policy: %v %v", p, err)
	}
	if _, err := r.New("nope", nil); err == nil {
		t.Fatal("unknown policy accepted")
	}
}

func TestExpectedAccuracyUsesCalibration(t *testing.T) {
	p := synthetic()
	p.Exits[0].Calibration = []profile.Bin{
		{Lo: 0, Hi: 0.5, Count: 100, Accuracy: 0.4},
		{Lo: 0.5, Hi: 0.9, Count: 5, Accuracy: 0.7}, // too few samples
		{Lo: 0.9, Hi: 1, Count: 900, Accuracy: 0.99},
	}
	cases := []struct {
		conf, want float64
	}{{0.2, 0.4}, {0.95, 0.99}, {1.0, 0.99}, {0.6, 0.80}}
	for _, c := range cases {
		if got := ExpectedAccuracy(p, 1, c.conf); got != c.want {
			t.Errorf("confidence %.2f: expected accuracy %.2f, want %.2f", c.conf, got, c.want)
		}
	}
	if got := ExpectedAccuracy(p, 2, 0.99); got != 0.90 {
		t.Errorf("exit without calibration: %.2f, want the exit's 0.90", got)
	}
}

// TestDeadlineCountsFromOrigin: the deadline is Origin + bound (the
// request's plausible sent_at), Arrival + bound without an Origin.
func TestDeadlineCountsFromOrigin(t *testing.T) {
	t0 := time.Unix(1000, 0)
	cases := []struct {
		name   string
		origin time.Time
		want   time.Time
	}{
		{"from sent_at", t0.Add(-30 * time.Millisecond), t0.Add(70 * time.Millisecond)},
		{"from arrival", time.Time{}, t0.Add(100 * time.Millisecond)},
	}
	for _, c := range cases {
		s := &Step{Bound: schema.Bound{LatencyMS: f(100)}, Exits: 3, Arrival: t0, Origin: c.origin, Now: t0.Add(55 * time.Millisecond)}
		if d, ok := s.Deadline(); !ok || !d.Equal(c.want) {
			t.Errorf("%s: deadline %v %v, want %v", c.name, d, ok, c.want)
		}
		// 55 ms after arrival, stage 2 (20 ms) fits only the deadline
		// counted from arrival.
		s.Done = 1
		got := BoundPolicy{}.Before(s, synthetic()).Action
		if want := map[bool]Action{true: Stop, false: Continue}[!c.origin.IsZero()]; got != want {
			t.Errorf("%s: before stage 2 at 55 ms: %v, want %v", c.name, got, want)
		}
	}
}

// TestEnergyBoundUsesMeasuredSpread: with measured energy quantiles, exit 1
// is refused only when its mean does not fit the bound, while a later
// stage must fit with its p99.
func TestEnergyBoundUsesMeasuredSpread(t *testing.T) {
	p := synthetic()
	for i := range p.Stages { // p95 = 2 × mean, p99 = 3 × mean
		m := p.Stages[i].EnergyMJ
		p.Stages[i].EnergyQuantilesMJ = profile.Quantiles{Mean: m, P50: m, P95: 2 * m, P99: 3 * m}
	}
	tests := []struct {
		bound float64
		spent []float64 // measured energy of the stages run
		exit  int
		act   Action
	}{
		{1.5, []float64{1, 2, 3}, 1, Stop},       // exit 1 mean 1 fits, p95 2 would not
		{0.9, []float64{1, 2, 3}, 0, Infeasible}, // exit 1's mean is above the bound
		{4.5, []float64{1, 2, 3}, 1, Stop},       // 1 + p95 of stage 2 (4) = 5 > 4.5
		{5.5, []float64{1, 2, 3}, 1, Stop},       // 1 + p95 (4) would fit, 1 + p99 (6) does not
		{7.5, []float64{1, 2, 3}, 2, Stop},       // 1 + 6 fits; 3 + p99 of stage 3 (9) does not
	}
	for _, pol := range []Policy{BoundPolicy{}, &EnergyPolicy{}} {
		for _, tc := range tests {
			o := drive(pol, p, req{bound: schema.Bound{EnergyMJ: f(tc.bound)}, energy: tc.spent})
			if o.exit != tc.exit || o.act != tc.act {
				t.Errorf("%s, bound %v mJ: %v exit %d, want %v exit %d", pol.Name(), tc.bound, o.act, o.exit, tc.act, tc.exit)
			}
		}
	}
}
