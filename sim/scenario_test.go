package sim

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delen-edge/delen/schema"
)

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

const validScenario = `
name: demo
duration: 1m30s
seed: 3
tenants:
  - name: cam
    arrival: {process: poisson, rate: 50}
    bound: {latency_ms: 5, confidence: 0.9}
    policy: deadline
    model: mnist-ee
    qos: 0
    encoding: json
    input: {dtype: float32, offset: 10}
    controls:
      - at: 0
        params: {joules: 2, window_s: 10}
        policy: energy-budget
      - at: 30s
        bound: {latency_ms: 2}
        weight: 3
        infeasible: shed
        queue_limit: 8
        rate_limit: 100
        conditions:
          - {metric: response_time, op: greater, threshold: 4}
  - name: sensor
    arrival:
      process: step
      rate: 5
      steps: [{at: 10s, rate: 50}, {at: 20, rate: 5}]
    reset: false
compare:
  - name: static
    policy: static
    bound: {exit: 3}
  - name: cond
    policy: conditions
    slo_ms: 4
    settings:
      conditions: [{metric: response_time, op: greater, threshold: 3}]
`

func TestParseScenario(t *testing.T) {
	s, err := ParseScenario([]byte(validScenario), "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Duration.D() != 90*time.Second || s.Seed != 3 || len(s.Tenants) != 2 || len(s.Compare) != 2 {
		t.Fatalf("parsed %+v", s)
	}
	cam := s.Tenants[0]
	if *cam.Bound.LatencyMS != 5 || *cam.Bound.Confidence != 0.9 || *cam.QoS != 0 || cam.Input.Offset != 10 {
		t.Fatalf("cam %+v", cam)
	}
	if c := cam.Controls[1]; c.At.D() != 30*time.Second || *c.QueueLimit != 8 || len(c.Conditions) != 1 || c.Conditions[0].Threshold != 4 {
		t.Fatalf("control %+v", c)
	}
	if st := s.Tenants[1].Arrival.Steps; st[1].At.D() != 20*time.Second {
		t.Fatalf("a number of seconds: %v", st[1].At)
	}
	if got := s.Models(); len(got) != 1 || got[0] != "mnist-ee" {
		t.Fatalf("models %v", got)
	}

	// A variant replaces policy and bound and prepends its settings.
	v := s.variant(s.Compare[1])
	if v.Tenants[0].Policy != "conditions" || *v.Tenants[0].SLOMS != 4 || len(v.Tenants[0].Controls) != 3 ||
		v.Tenants[0].Controls[0].Conditions[0].Threshold != 3 || v.Compare != nil {
		t.Fatalf("variant %+v", v.Tenants[0])
	}
	if s.Tenants[0].Policy != "deadline" || len(s.Tenants[0].Controls) != 2 {
		t.Fatal("variant changed the scenario")
	}
}

func TestScenarioErrorsNameTheKey(t *testing.T) {
	base := "name: x\nduration: 10s\ntenants:\n  - name: cam\n"
	for _, c := range []struct{ yaml, want string }{
		{"duration: 10s\ntenants: [{name: a, arrival: {process: poisson, rate: 1}}]\n", "name: required"},
		{"name: x\ntenants: [{name: a, arrival: {process: poisson, rate: 1}}]\n", "duration: required"},
		{"name: x\nduration: soon\n", "not a duration"},
		{"name: x\nduration: 10s\n", "tenants: at least one"},
		{"name: x\nduration: 10s\nspeed: 2\n", "field speed not found"},
		{base + "    arrival: {process: poisson}\n", "tenants[0].arrival.rate: must be > 0"},
		{base + "    arrival: {process: poisson, rate: -1}\n", "tenants[0].arrival.rate: must be a finite number ≥ 0"},
		{base + "    arrival: {process: uniform, rate: 1}\n", `tenants[0].arrival.process: "uniform"`},
		{base + "    arrival: {rate: 1}\n", "tenants[0].arrival.process: required"},
		{base + "    arrival: {process: poisson, rate: 1, burst_rate: 5}\n", "tenants[0].arrival.burst_rate: only for process bursty"},
		{base + "    arrival: {process: bursty, rate: 1, burst_rate: 5, off: 1s}\n", "tenants[0].arrival.on: required"},
		{base + "    arrival: {process: bursty, rate: 1, on: 1s, off: 1s}\n", "tenants[0].arrival.burst_rate: required"},
		{base + "    arrival: {process: step, rate: 1}\n", "tenants[0].arrival.steps: required"},
		{base + "    arrival: {process: step, steps: [{at: 5s, rate: 1}, {at: 2s, rate: 3}]}\n", "tenants[0].arrival.steps[1].at: steps must be in increasing time order"},
		{base + "    arrival: {process: step, steps: [{at: 12s, rate: 1}]}\n", "tenants[0].arrival.steps[0].at: 12s is outside"},
		{base + "    arrival: {process: trace}\n", "tenants[0].arrival.file: required"},
		{base + "    arrival: {process: constant, rate: 1e9}\n", "at most 5000000 per tenant"},
		{"name: x\nduration: 10s\ntenants:\n  - name: Cam\n    arrival: {process: poisson, rate: 1}\n", `tenants[0].name: "Cam" is not a valid tenant name`},
		{"name: x\nduration: 10s\ntenants:\n  - {name: a, arrival: {process: poisson, rate: 1}}\n  - {name: a, arrival: {process: poisson, rate: 1}}\n", `tenants[1].name: "a" appears twice`},
		{base + "    arrival: {process: poisson, rate: 1}\n    bound: {latency_ms: 0}\n", "tenants[0].bound.latency_ms: must be a finite number > 0"},
		{base + "    arrival: {process: poisson, rate: 1}\n    bound: {accuracy: 2}\n", "tenants[0].bound.accuracy: must be in (0, 1]"},
		{base + "    arrival: {process: poisson, rate: 1}\n    bound: {exit: 0}\n", "tenants[0].bound.exit: must be >= 1"},
		{base + "    arrival: {process: poisson, rate: 1}\n    bound: {latency: 3}\n", "field latency not found"},
		{base + "    arrival: {process: poisson, rate: 1}\n    qos: 2\n", "tenants[0].qos: 2: want 0 or 1"},
		{base + "    arrival: {process: poisson, rate: 1}\n    encoding: cbor\n", `tenants[0].encoding: "cbor"`},
		{base + "    arrival: {process: poisson, rate: 1}\n    input: {dtype: int8}\n", `tenants[0].input.dtype: "int8"`},
		{base + "    arrival: {process: poisson, rate: 1}\n    input: {source: camera}\n", `tenants[0].input.source: "camera"`},
		{base + "    arrival: {process: poisson, rate: 1}\n    input: {shape: [3, 4]}\n", "tenants[0].input.shape: MNIST images"},
		{base + "    arrival: {process: poisson, rate: 1}\n    controls: [{at: 1s}]\n", "tenants[0].controls[0]: sets nothing"},
		{base + "    arrival: {process: poisson, rate: 1}\n    controls: [{at: 1s, wieght: 2}]\n", "field wieght not found in a control"},
		{base + "    arrival: {process: poisson, rate: 1}\n    controls: [{at: 1s, weight: heavy}]\n", "weight: expected a number"},
		{base + "    arrival: {process: poisson, rate: 1}\n    controls: [{at: 20s, weight: 1}]\n", "tenants[0].controls[0].at: 20s is outside"},
		{base + "    arrival: {process: poisson, rate: 1}\n    controls: [{at: 2s, weight: 1}, {at: 1s, weight: 2}]\n", "tenants[0].controls[1].at: controls must be in time order"},
		{base + "    arrival: {process: poisson, rate: 1}\n    controls: [{at: 1s, weight: 5000}]\n", "tenants[0].controls[0].weight: must be in (0, 1000]"},
		{base + "    arrival: {process: poisson, rate: 1}\n    controls: [{at: 1s, infeasible: drop}]\n", "tenants[0].controls[0].infeasible"},
		{base + "    arrival: {process: poisson, rate: 1}\n    controls: [{at: 1s, bound: {confidence: 0}}]\n", "tenants[0].controls[0].bound.confidence"},
		{base + "    arrival: {process: poisson, rate: 1}\n    controls: [{at: 1s, conditions: [{metric: speed, op: less, threshold: 1}]}]\n", "tenants[0].controls[0].conditions[0].metric"},
		{base + "    arrival: {process: poisson, rate: 1}\ncompare: [{name: A}]\n", `compare[0].name: "A"`},
		{base + "    arrival: {process: poisson, rate: 1}\ncompare: [{name: a, settings: {at: 1s, weight: 2}}]\n", "compare[0].settings.at"},
		{base + "    arrival: {process: poisson, rate: 1}\ncompare: [{name: a, slo_ms: -1}]\n", "compare[0].slo_ms: must be > 0"},
	} {
		_, err := ParseScenario([]byte(c.yaml), "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant an error containing %q", c.yaml, err, c.want)
		}
	}
}

func TestDeadlineFollowsBoundAndControls(t *testing.T) {
	lat := func(v float64) *float64 { return &v }
	tr := &tenantRun{spec: &Tenant{Controls: []ControlSpec{
		{At: 0, Control: schema.Control{Bound: &schema.Bound{LatencyMS: lat(10)}}},
		{At: Duration(5 * time.Second), Control: schema.Control{Weight: lat(2)}},
		{At: Duration(8 * time.Second), Control: schema.Control{Bound: &schema.Bound{Accuracy: lat(0.9)}}},
	}}}
	for _, c := range []struct {
		at   time.Duration
		want float64
	}{{0, 10}, {6 * time.Second, 10}, {9 * time.Second, 0}} {
		if got := tr.deadlineMS(c.at); got != c.want {
			t.Errorf("tenant default at %s: deadline %g, want %g", c.at, got, c.want)
		}
	}
	tr.bound = (&BoundSpec{LatencyMS: lat(3)}).Schema()
	if got := tr.deadlineMS(9 * time.Second); got != 3 {
		t.Errorf("request bound: deadline %g, want 3", got)
	}
	tr.spec.SLOMS = lat(7)
	if got := tr.deadlineMS(0); got != 7 {
		t.Errorf("slo_ms: deadline %g, want 7", got)
	}
}

func TestBundledScenariosLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("scenarios", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"single-step.yaml": false, "multi-tenant.yaml": false, "energy-budget.yaml": false, "policy-compare.yaml": false, "bounds-under-bursts.yaml": false}
	for _, f := range files {
		s, err := LoadScenario(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		want[filepath.Base(f)] = true
		runs := max(1, len(s.Compare))
		limit := 100 * time.Second
		if s.Matrix != nil {
			// A matrix is the complete evaluation (it documents a shorter
			// run); it must still finish within a quarter of an hour.
			plans, err := s.plan(nil)
			if err != nil {
				t.Fatal(err)
			}
			runs, limit = len(plans), 15*time.Minute
		}
		if total := time.Duration(runs) * s.Duration.D(); total > limit {
			t.Errorf("%s: %s of sending; the bundled scenarios must run in under %s", f, total, limit)
		}
	}
	for f, ok := range want {
		if !ok {
			t.Errorf("scenarios/%s missing", f)
		}
	}
}
