package sim

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func rng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 1)) }

func schedule(t *testing.T, a Arrival, d time.Duration) []time.Duration {
	t.Helper()
	s := &Scenario{Name: "x", Duration: Duration(d), Tenants: []Tenant{{Name: "t", Arrival: a}}}
	if err := s.Validate(); err != nil {
		t.Fatalf("validate %+v: %v", a, err)
	}
	out, err := a.Schedule(d, rng(7), "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(out) {
		t.Fatalf("schedule not sorted")
	}
	if len(out) > 0 && (out[0] < 0 || out[len(out)-1] >= d) {
		t.Fatalf("schedule outside [0, %s): %s … %s", d, out[0], out[len(out)-1])
	}
	return out
}

// count returns how many times fall in [from, to).
func count(ts []time.Duration, from, to time.Duration) int {
	n := 0
	for _, t := range ts {
		if t >= from && t < to {
			n++
		}
	}
	return n
}

// within4σ checks a Poisson count against its mean (σ = √mean).
func within4σ(t *testing.T, what string, got int, mean float64) {
	t.Helper()
	if d := math.Abs(float64(got) - mean); d > 4*math.Sqrt(mean) {
		t.Errorf("%s: %d arrivals, want %.0f ± %.0f (4σ)", what, got, mean, 4*math.Sqrt(mean))
	}
}

func TestConstantExactCount(t *testing.T) {
	for _, c := range []struct {
		rate float64
		d    time.Duration
		want int
	}{
		{5, 10 * time.Second, 50},
		{3, time.Second, 3},
		{1000, 2500 * time.Millisecond, 2500},
		{0.5, 9 * time.Second, 5}, // 0, 2, 4, 6, 8
	} {
		ts := schedule(t, Arrival{Process: ProcessConstant, Rate: c.rate}, c.d)
		if len(ts) != c.want {
			t.Errorf("constant %g/s over %s: %d arrivals, want %d", c.rate, c.d, len(ts), c.want)
		}
		gap := time.Duration(float64(time.Second) / c.rate)
		for i := 1; i < len(ts); i++ {
			if d := ts[i] - ts[i-1]; d < gap-time.Microsecond || d > gap+time.Microsecond {
				t.Fatalf("constant %g/s: gap %d is %s, want %s", c.rate, i, d, gap)
			}
		}
	}
}

func TestPoissonRate(t *testing.T) {
	const rate, horizon = 20.0, 10000 // 200,000 arrivals expected
	ts := schedule(t, Arrival{Process: ProcessPoisson, Rate: rate}, horizon*time.Second)
	within4σ(t, "poisson", len(ts), rate*horizon)

	// Counts per second are Poisson: variance ≈ mean (index of dispersion
	// 1; its standard error here is about 0.014).
	counts := make([]float64, horizon)
	for _, x := range ts {
		counts[int(x/time.Second)]++
	}
	mean, vr := 0.0, 0.0
	for _, c := range counts {
		mean += c
	}
	mean /= horizon
	for _, c := range counts {
		vr += (c - mean) * (c - mean)
	}
	vr /= horizon - 1
	if disp := vr / mean; disp < 0.94 || disp > 1.06 {
		t.Errorf("poisson: index of dispersion %.3f, want 1 ± 0.06", disp)
	}
	// Another seed gives another schedule.
	other, _ := (&Arrival{Process: ProcessPoisson, Rate: rate}).Schedule(10*time.Second, rng(8), "")
	if slices.Equal(other, ts[:len(other)]) {
		t.Error("two seeds gave the same schedule")
	}
	again, _ := (&Arrival{Process: ProcessPoisson, Rate: rate}).Schedule(horizon*time.Second, rng(7), "")
	if !slices.Equal(again, ts) {
		t.Error("the same seed gave another schedule")
	}
}

func TestBurstyShape(t *testing.T) {
	const cycles = 200
	a := Arrival{Process: ProcessBursty, Rate: 10, BurstRate: 100, Off: Duration(4 * time.Second), On: Duration(time.Second)}
	d := cycles * 5 * time.Second
	ts := schedule(t, a, d)
	quiet, burst := 0, 0
	for _, x := range ts {
		if x%(5*time.Second) < 4*time.Second {
			quiet++
		} else {
			burst++
		}
	}
	within4σ(t, "bursty quiet phases", quiet, 10*4*cycles)
	within4σ(t, "bursty bursts", burst, 100*1*cycles)

	// Evenly spaced: exact counts per phase, and a cut-off last cycle.
	a.Spacing = SpacingConstant
	ts = schedule(t, a, 12*time.Second) // off 0-4, on 4-5, off 5-9, on 9-10, off 10-12
	for _, c := range []struct {
		from, to time.Duration
		want     int
	}{{0, 4, 40}, {4, 5, 100}, {5, 9, 40}, {9, 10, 100}, {10, 12, 20}} {
		if got := count(ts, c.from*time.Second, c.to*time.Second); got != c.want {
			t.Errorf("bursty constant [%ds, %ds): %d arrivals, want %d", c.from, c.to, got, c.want)
		}
	}
}

func TestStepShape(t *testing.T) {
	a := Arrival{Process: ProcessStep, Rate: 0, Spacing: SpacingConstant,
		Steps: []RateStep{{At: Duration(10 * time.Second), Rate: 100}, {At: Duration(20 * time.Second), Rate: 10}}}
	ts := schedule(t, a, 30*time.Second)
	for _, c := range []struct {
		from, to time.Duration
		want     int
	}{{0, 10, 0}, {10, 20, 1000}, {20, 30, 100}} {
		if got := count(ts, c.from*time.Second, c.to*time.Second); got != c.want {
			t.Errorf("step [%ds, %ds): %d arrivals, want %d", c.from, c.to, got, c.want)
		}
	}

	a = Arrival{Process: ProcessStep, Rate: 10,
		Steps: []RateStep{{At: Duration(1000 * time.Second), Rate: 50}, {At: Duration(2000 * time.Second), Rate: 20}}}
	ts = schedule(t, a, 3000*time.Second)
	within4σ(t, "step 1", count(ts, 0, 1000*time.Second), 10*1000)
	within4σ(t, "step 2", count(ts, 1000*time.Second, 2000*time.Second), 50*1000)
	within4σ(t, "step 3", count(ts, 2000*time.Second, 3000*time.Second), 20*1000)
}

func TestTraceReadsCSV(t *testing.T) {
	dir := t.TempDir()
	trace := "t,camera\n# a comment\n0.5,a\n0,b\n\n1.25,c\n2.999,d\n3,e\n7.5,f\n"
	if err := os.MkdirAll(filepath.Join(dir, "traces"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "traces", "cam.csv"), []byte(trace), 0o644); err != nil {
		t.Fatal(err)
	}
	yml := "name: trace\nduration: 3s\ntenants:\n  - name: cam\n    arrival: {process: trace, file: traces/cam.csv}\n"
	if err := os.WriteFile(filepath.Join(dir, "s.yaml"), []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadScenario(filepath.Join(dir, "s.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := s.Tenants[0].Arrival.Schedule(s.Duration.D(), rng(1), s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{0, 500 * time.Millisecond, 1250 * time.Millisecond, 2999 * time.Millisecond}
	if !slices.Equal(ts, want) {
		t.Fatalf("trace schedule %v, want %v (sorted, the ones at or after 3s dropped)", ts, want)
	}

	// A bad line names the file and line.
	os.WriteFile(filepath.Join(dir, "traces", "cam.csv"), []byte("0\n1\nsoon\n"), 0o644)
	if _, err := LoadScenario(filepath.Join(dir, "s.yaml")); err == nil || !contains(err.Error(), "tenants[0].arrival.file", "cam.csv:3") {
		t.Fatalf("bad trace: %v", err)
	}
	os.Remove(filepath.Join(dir, "traces", "cam.csv"))
	if _, err := LoadScenario(filepath.Join(dir, "s.yaml")); err == nil || !contains(err.Error(), "tenants[0].arrival.file") {
		t.Fatalf("missing trace: %v", err)
	}
}
