package sim

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestMatrixPlan: variants with a latency bound run at every deadline
// (their latency_ms and slo_ms set to it), the others once per arrival
// pattern; every run gets the pattern's arrivals; --only selects runs.
func TestMatrixPlan(t *testing.T) {
	s, err := ParseScenario([]byte(`
name: m
duration: 2s
tenants:
  - {name: cam, arrival: {process: constant, rate: 5}}
matrix:
  deadlines_ms: [80, 150]
  arrivals:
    - {name: slow, arrival: {process: constant, rate: 2}}
    - {name: fast, arrival: {process: bursty, rate: 5, burst_rate: 50, off: 1s, on: 1s}}
compare:
  - {name: exit1, policy: static, bound: {exit: 1}}
  - {name: default, bound: {latency_ms: 100}}
`), ".")
	if err != nil {
		t.Fatal(err)
	}
	plans, err := s.plan(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name, arrival string
		deadline      float64
		latency       float64 // of the run's bound; 0: none
		process       string
	}{
		{"slow-all-exit1", "slow", 0, 0, "constant"},
		{"slow-d80-default", "slow", 80, 80, "constant"},
		{"slow-d150-default", "slow", 150, 150, "constant"},
		{"fast-all-exit1", "fast", 0, 0, "bursty"},
		{"fast-d80-default", "fast", 80, 80, "bursty"},
		{"fast-d150-default", "fast", 150, 150, "bursty"},
	}
	if len(plans) != len(want) {
		t.Fatalf("%d runs, want %d", len(plans), len(want))
	}
	for i, w := range want {
		p := plans[i]
		tn := p.scenario.Tenants[0]
		lat := 0.0
		if tn.Bound != nil && tn.Bound.LatencyMS != nil {
			lat = *tn.Bound.LatencyMS
		}
		slo := 80.0 // an "all" run is summarised at the first deadline
		if w.deadline > 0 {
			slo = w.deadline
		}
		if p.name != w.name || p.arrival != w.arrival || p.deadlineMS != w.deadline || lat != w.latency ||
			tn.Arrival.Process != w.process || tn.SLOMS == nil || *tn.SLOMS != slo {
			t.Errorf("run %d: %s %s d%g latency %g %s slo %v, want %+v", i, p.name, p.arrival, p.deadlineMS, lat, tn.Arrival.Process, tn.SLOMS, w)
		}
	}
	// The variants' own bound is not changed.
	if *s.Compare[1].Bound.LatencyMS != 100 {
		t.Errorf("the scenario's variant was modified: %v", *s.Compare[1].Bound.LatencyMS)
	}
	only, err := s.plan(regexp.MustCompile(`^slow-(all|d80)-`))
	if err != nil || len(only) != 2 {
		t.Errorf("--only: %d runs, %v", len(only), err)
	}
	if _, err := s.plan(regexp.MustCompile(`nothing`)); err == nil {
		t.Error("--only matching nothing: no error")
	}
}

// stream is a run of n requests every gapMS, all served at exit 1..3 in
// turn (so the hindsight bound learns each exit's work and accuracy).
func stream(n int, gapMS float64, work, acc []float64) *RunReport {
	run := &RunReport{Arrival: "p"}
	t0 := time.Unix(100, 0).UnixMicro()
	for i := 0; i < n; i++ {
		k := i % len(work)
		run.Requests = append(run.Requests, Record{SentAt: t0 + int64(float64(i)*gapMS*1000), Status: "ok", Exit: k + 1,
			ComputeMS: work[k], AccuracyEst: acc[k], LatencyMS: work[k] + 1, QueueMS: 0, EnergyMJ: 5 * work[k]})
	}
	return run
}

// TestHindsightKnownOptimum: on one worker, a request every 10 ms and
// exits of 5, 15 and 30 ms (accuracy 0.5, 0.7, 0.8), the best plan that
// keeps up spends 10 ms a request on average: half at exit 1, half at
// exit 2 (0.6), a little more where the deadline lets the backlog absorb
// it; on two workers, 20 ms a request: two thirds at exit 2, one at exit 3
// (0.733); with a request every 40 ms every request gets exit 3. With a
// deadline shorter than exit 1 nothing is met.
func TestHindsightKnownOptimum(t *testing.T) {
	work, acc := []float64{5, 15, 30}, []float64{0.5, 0.7, 0.8}
	cases := []struct {
		name        string
		gapMS, d    float64
		met, lo, hi float64
		workers     int
	}{
		{"overloaded for exit 2", 10, 41, 1, 0.6, 0.61, 1},
		{"light", 40, 41, 1, 0.7999, 0.8001, 1},
		{"two workers: 20 ms a request, a third at exit 3", 10, 41, 1, 0.733, 0.745, 2},
		{"deadline below exit 1", 10, 4, 0, 0.4999, 0.5001, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := hindsight([]*RunReport{stream(600, c.gapMS, work, acc)}, c.d, c.workers)
			if h.Sent != 600 || h.DeadlineMet != c.met || h.AccuracyEst < c.lo || h.AccuracyEst > c.hi {
				t.Errorf("sent %d, met %.3f, accuracy %.4f; want met %.3f, accuracy %.2f..%.2f (exits %v)", h.Sent, h.DeadlineMet, h.AccuracyEst, c.met, c.lo, c.hi, h.Exits)
			}
		})
	}
}

// TestBoundsTableAndPlot: a matrix report judges each run at its deadline
// (the "all" runs at every one), rates accuracy against the hindsight
// bound, and draws bounds.png.
func TestBoundsTableAndPlot(t *testing.T) {
	s := &Scenario{Matrix: &Matrix{DeadlinesMS: []float64{20, 40}, Arrivals: []NamedArrival{{Name: "p"}}}}
	all := stream(300, 10, []float64{5, 15, 30}, []float64{0.5, 0.7, 0.8})
	all.Variant, all.Base = "p-all-mix", "mix"
	fast := stream(300, 10, []float64{5}, []float64{0.5})
	fast.Variant, fast.Base, fast.DeadlineMS = "p-d20-exit1", "exit1", 20
	rows := boundsTable(s, []RunReport{*all, *fast}, 1)
	// 20 ms: mix, exit1, hindsight; 40 ms: mix, hindsight.
	if len(rows) != 5 {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	mix20, exit1, h20, mix40 := rows[0], rows[1], rows[2], rows[3]
	// The mix's exit-3 requests (31 ms end to end) miss 20 ms, not 40.
	if mix20.Variant != "mix" || mix20.DeadlineMet > 0.67 || mix40.DeadlineMet != 1 {
		t.Errorf("mix met %.3f at 20 ms, %.3f at 40 ms", mix20.DeadlineMet, mix40.DeadlineMet)
	}
	if exit1.DeadlineMet != 1 || exit1.AccuracyEst != 0.5 || h20.Variant != HindsightVariant || h20.AccuracyEst < 0.5 ||
		exit1.OfHindsight != exit1.AccuracyEst/h20.AccuracyEst {
		t.Errorf("exit1 %+v, hindsight %+v", exit1, h20)
	}
	rep := &Report{Bounds: rows}
	dir := t.TempDir()
	if err := rep.writeBoundsPlot(dir); err != nil {
		t.Fatal(err)
	}
	assertPNG(t, filepath.Join(dir, FileBounds))
	if h, body := rep.SummaryTable(); h[0] != "ARRIVAL" || len(body) != 5 {
		t.Errorf("summary table: %v, %d rows", h, len(body))
	}
}

// assertPNG fails unless path is a decodable PNG of some size.
func assertPNG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil || img.Bounds().Dx() < 300 || len(b) < 5000 {
		t.Fatalf("%s: not a PNG with content: %d bytes, %v", path, len(b), err)
	}
}
