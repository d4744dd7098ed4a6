package policies

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/schema"
)

var (
	low  = []float64{0.5, 0.6, 0.7}
	high = []float64{0.99, 0.99, 0.99}
)

// mustNew makes the named policy from the registry.
func mustNew(t testing.TB, name string, ps Params) Policy {
	t.Helper()
	p, err := New().New(name, ps)
	if err != nil {
		t.Fatalf("New(%q, %v): %v", name, ps, err)
	}
	if p.Name() != name {
		t.Fatalf("New(%q).Name() = %q", name, p.Name())
	}
	return p
}

// policyCase is one request through one policy over the synthetic profile.
type policyCase struct {
	name     string
	params   Params
	r        req
	wantExit int
	want     Action
}

func runCases(t *testing.T, policy string, cases []policyCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pol := mustNew(t, policy, c.params)
			o := drive(pol, synthetic(), c.r)
			if o.exit != c.wantExit || o.act != c.want {
				t.Fatalf("served exit %d (%v), want exit %d (%v)", o.exit, o.act, c.wantExit, c.want)
			}
		})
	}
}

func TestStatic(t *testing.T) {
	runCases(t, "static", []policyCase{
		{"default is the full model", nil, req{conf: high}, 3, Stop},
		{"param exit 2", Params{"exit": 2}, req{conf: low}, 2, Stop},
		{"param exit 1", Params{"exit": 1}, req{conf: low}, 1, Stop},
		{"bound exit overrides param", Params{"exit": 2}, req{bound: schema.Bound{Exit: i(1)}}, 1, Stop},
		{"exit past the model runs it all", Params{"exit": 7}, req{}, 3, Stop},
		{"ignores a passed deadline", nil, req{bound: schema.Bound{LatencyMS: f(5)}, queueMS: 10}, 3, Stop},
		{"ignores energy and confidence", Params{"exit": 2}, req{bound: schema.Bound{EnergyMJ: f(0.1), Confidence: f(0.5)}, conf: high}, 2, Stop},
	})
	for _, bad := range []Params{{"exit": 0}, {"exit": 1.5}, {"exit": -1}, {"exit": math.NaN()}} {
		if _, err := New().New("static", bad); err == nil {
			t.Errorf("static accepted %v", bad)
		}
	}
}

func TestConfidence(t *testing.T) {
	runCases(t, "confidence", []policyCase{
		{"confident at exit 1 (default 0.9)", nil, req{conf: high}, 1, Stop},
		{"never confident", nil, req{conf: low}, 3, Stop},
		{"param threshold 0.55", Params{"threshold": 0.55}, req{conf: low}, 2, Stop},
		{"bound overrides param", Params{"threshold": 0.55}, req{bound: schema.Bound{Confidence: f(0.65)}, conf: low}, 3, Stop},
		{"threshold exactly reached", Params{"threshold": 0.6}, req{conf: low}, 2, Stop},
		{"latency is a hard limit", nil, req{bound: schema.Bound{LatencyMS: f(35)}, conf: low}, 2, Stop},
		{"energy is a hard limit", nil, req{bound: schema.Bound{EnergyMJ: f(1)}, conf: low}, 1, Stop},
		{"deadline passed on arrival", nil, req{bound: schema.Bound{LatencyMS: f(5)}, queueMS: 10}, 0, Infeasible},
		{"energy below exit 1", nil, req{bound: schema.Bound{EnergyMJ: f(0.5)}}, 0, Infeasible},
	})
	for _, bad := range []Params{{"threshold": 0}, {"threshold": 1.5}, {"threshold": -0.1}} {
		if _, err := New().New("confidence", bad); err == nil {
			t.Errorf("confidence accepted %v", bad)
		}
	}
}

func TestDeadline(t *testing.T) {
	runCases(t, "deadline", []policyCase{
		{"no deadline runs the full model", nil, req{conf: high}, 3, Stop},
		{"fits everything", nil, req{bound: schema.Bound{LatencyMS: f(100)}}, 3, Stop},
		{"fits two stages", nil, req{bound: schema.Bound{LatencyMS: f(35)}}, 2, Stop},
		{"fits one stage", nil, req{bound: schema.Bound{LatencyMS: f(15)}}, 1, Stop},
		{"exactly at a stage boundary", nil, req{bound: schema.Bound{LatencyMS: f(30)}}, 2, Stop},
		{"margin still fits", Params{"margin_ms": 5}, req{bound: schema.Bound{LatencyMS: f(35)}}, 2, Stop},
		{"margin costs a stage", Params{"margin_ms": 6}, req{bound: schema.Bound{LatencyMS: f(35)}}, 1, Stop},
		{"queueing eats the slack", nil, req{bound: schema.Bound{LatencyMS: f(35)}, queueMS: 20}, 1, Stop},
		{"deadline passed on arrival", nil, req{bound: schema.Bound{LatencyMS: f(5)}, queueMS: 10}, 0, Infeasible},
		{"margin makes exit 1 infeasible", Params{"margin_ms": 10}, req{bound: schema.Bound{LatencyMS: f(15)}}, 0, Infeasible},
		{"ignores confidence, accuracy and energy", nil, req{bound: schema.Bound{EnergyMJ: f(0.1), Confidence: f(0.5), Accuracy: f(0.5)}, conf: high}, 3, Stop},
	})
	if _, err := New().New("deadline", Params{"margin_ms": -1}); err == nil {
		t.Error("deadline accepted a negative margin")
	}
}

func TestEnergy(t *testing.T) {
	runCases(t, "energy", []policyCase{
		{"no budget runs the full model", nil, req{}, 3, Stop},
		{"param 3.5 mJ", Params{"mj": 3.5}, req{}, 2, Stop},
		{"bound overrides param", Params{"mj": 100}, req{bound: schema.Bound{EnergyMJ: f(1)}}, 1, Stop},
		{"exactly the full model", nil, req{bound: schema.Bound{EnergyMJ: f(6)}}, 3, Stop},
		{"exit 1 infeasible", Params{"mj": 0.5}, req{}, 0, Infeasible},
		{"measured energy above the profile", Params{"mj": 3.5}, req{energy: []float64{2, 2, 3}}, 1, Stop},
		{"latency is a hard limit", Params{"mj": 100}, req{bound: schema.Bound{LatencyMS: f(15)}}, 1, Stop},
	})
	if _, err := New().New("energy", Params{"mj": 0}); err == nil {
		t.Error("energy accepted a zero budget")
	}
}

// TestEnergyNoMeasurement: without measured energy the profiled energy of
// the stages run counts.
func TestEnergyNoMeasurement(t *testing.T) {
	o := drive(mustNew(t, "energy", Params{"mj": 3.5}), synthetic(), req{energy: []float64{0, 0, 0}})
	if o.exit != 2 {
		t.Fatalf("served exit %d, want 2", o.exit)
	}
}

func TestConditions(t *testing.T) {
	p := synthetic()
	for k, g := range []float64{0.81, 1.87, 3.33} {
		p.Exits[k].FLOPs = g * 1e9
	}
	c := func(m, op string, th float64) schema.Condition {
		return schema.Condition{Metric: m, Op: op, Threshold: th}
	}
	cases := []struct {
		name  string
		conds []schema.Condition
		r     req
		want  int
	}{
		{"no conditions run the full model", nil, req{conf: high}, 3},
		{"response_time greater 5 after exit 1", []schema.Condition{c("response_time", "greater", 5)}, req{}, 1},
		{"response_time greater 15: exit 2", []schema.Condition{c("response_time", "greater", 15), c("response_time", "greater", 15)}, req{}, 2},
		{"fewer conditions than exits run on", []schema.Condition{c("response_time", "greater", 15)}, req{}, 3},
		{"queueing counts in response time", []schema.Condition{c("response_time", "greater_eq", 30)}, req{queueMS: 20}, 1},
		{"confidence greater_eq", []schema.Condition{c("confidence", "greater_eq", 0.9), c("confidence", "greater_eq", 0.6)}, req{conf: low}, 2},
		{"accuracy greater", []schema.Condition{c("accuracy", "greater", 0.85), c("accuracy", "greater", 0.85)}, req{}, 2},
		{"energy less_eq", []schema.Condition{c("energy", "less_eq", 0.5), c("energy", "less_eq", 3)}, req{}, 2},
		{"computation in GFLOPs", []schema.Condition{c("computation", "greater", 1), c("computation", "greater", 1)}, req{}, 2},
		{"exit equal 2", []schema.Condition{c("exit", "equal", 2), c("exit", "equal", 2)}, req{}, 2},
		{"exit less 1 never fires", []schema.Condition{c("exit", "less", 1), c("exit", "less", 1)}, req{}, 3},
		{"unknown op never fires", []schema.Condition{c("exit", "eq", 1)}, req{}, 3},
		{"unknown metric never fires", []schema.Condition{c("latency", "greater", -1)}, req{}, 3},
		{"latency bound is a hard limit", nil, req{bound: schema.Bound{LatencyMS: f(15)}}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.conds = tc.conds
			o := drive(mustNew(t, "conditions", nil), p, tc.r)
			if o.exit != tc.want {
				t.Fatalf("served exit %d (%v), want %d", o.exit, o.act, tc.want)
			}
		})
	}
	o := drive(mustNew(t, "conditions", nil), p, req{bound: schema.Bound{LatencyMS: f(5)}, queueMS: 10})
	if o.act != Infeasible {
		t.Fatalf("passed deadline: %v, want infeasible", o.act)
	}
}

func TestLoadConditions(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	want := []schema.Condition{
		{Metric: "response_time", Op: "greater", Threshold: 12.5},
		{Metric: "confidence", Op: "greater_eq", Threshold: 0.9},
		{Metric: "exit", Op: "equal", Threshold: 3},
	}
	good := map[string]string{
		"list.json": `[{"metric":"response_time","op":"greater","threshold":12.5},
			{"metric":"confidence","op":"greater_eq","threshold":0.9},{"metric":"exit","op":"equal","threshold":3}]`,
		"case.json": `[{"Metric":"Response_Time","OP":"GREATER","Threshold":"12.5"},
			{"METRIC":"confidence","Op":">=","threshold":0.9},{"metric":" exit ","op":"==","threshold":3}]`,
		"object.json": `{"Conditions":[{"metric":"response_time","op":"greater","threshold":12.5},
			{"metric":"confidence","op":"greater_eq","threshold":0.9},{"metric":"exit","op":"equal","threshold":3}]}`,
	}
	for name, body := range good {
		got, err := LoadConditions(write(name, body))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: got %v, want %v", name, got, want)
		}
	}
	bad := map[string]string{
		"metric.json":    `[{"metric":"latency","op":"greater","threshold":1}]`,
		"op.json":        `[{"metric":"exit","op":"approx","threshold":1}]`,
		"threshold.json": `[{"metric":"exit","op":"equal","threshold":"three"}]`,
		"missing.json":   `[{"metric":"exit","op":"equal"}]`,
		"shape.json":     `{"metric":"exit"}`,
		"syntax.json":    `[{"metric":`,
	}
	for name, body := range bad {
		if _, err := LoadConditions(write(name, body)); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if _, err := LoadConditions(filepath.Join(dir, "absent.json")); err == nil {
		t.Error("missing file accepted")
	}
	empty, err := LoadConditions(write("empty.json", `[]`))
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty list: %v %v", empty, err)
	}
}

// TestSingleExit: on a one-exit model every policy starts stage 1 (Before
// at stage 0 neither stops nor fails) and the request ends after exit 1
// without an After.
func TestSingleExit(t *testing.T) {
	params := map[string]Params{"static": {"exit": 3}, "energy": {"mj": 100}, "adaptive": {"target_ms": 1}}
	for _, name := range New().Names() {
		for _, r := range []req{
			{conf: high},
			{bound: schema.Bound{Accuracy: f(0.99), Confidence: f(0.99), Exit: i(2)}, conf: low},
			{conds: []schema.Condition{{Metric: "exit", Op: "equal", Threshold: 2}}},
		} {
			pol := mustNew(t, name, params[name])
			o := drive(pol, oneExit(), r)
			if o.exit != 1 || o.act != Stop || o.afters != 0 {
				t.Errorf("%s %+v: exit %d (%v), %d Afters; want exit 1, no After", name, r.bound, o.exit, o.act, o.afters)
			}
		}
	}
}

// TestMissingProfileFields: nil profiles, zero latencies and energies and
// no validation data must not panic, and a bound-free request runs.
func TestMissingProfileFields(t *testing.T) {
	zero := &profile.Profile{Model: "z", Version: "1", Device: "d",
		Stages: make([]profile.StageStats, 3), Exits: make([]profile.ExitStats, 3)}
	short := synthetic()
	short.Stages = short.Stages[:1]
	short.Exits = short.Exits[:1]
	for _, name := range New().Names() {
		for pn, p := range map[string]*profile.Profile{"nil": nil, "zero": zero, "short": short} {
			for _, r := range []req{
				{exits: 3},
				{exits: 3, bound: schema.Bound{LatencyMS: f(50), Accuracy: f(0.9), EnergyMJ: f(5)}, conf: low},
			} {
				o := drive(mustNew(t, name, nil), p, r)
				if o.act == Infeasible || o.exit < 1 || o.exit > 3 {
					t.Errorf("%s on %s profile %+v: exit %d (%v)", name, pn, r.bound, o.exit, o.act)
				}
			}
		}
	}
}

// TestConcurrent drives many requests through one instance of every
// policy from many goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	p := withValidation(500)
	params := map[string]Params{"energy-budget": {"joules": 0.2, "window_s": 1}, "adaptive": {"target_ms": 60}}
	bounds := []schema.Bound{{}, {LatencyMS: f(35)}, {Accuracy: f(0.9)}, {EnergyMJ: f(3.5)}, {Confidence: f(0.8)}, {Exit: i(2)}}
	for _, name := range New().Names() {
		t.Run(name, func(t *testing.T) {
			pol := mustNew(t, name, params[name])
			var wg sync.WaitGroup
			for g := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := range 100 {
						r := req{
							bound:   bounds[(g+n)%len(bounds)],
							conf:    []float64{0.5 + 0.05*float64(n%10), 0.8, 0.9},
							arrival: t0.Add(time.Duration(n) * 5 * time.Millisecond),
							queueMS: float64(g),
							load:    Load{QueueDepth: g, QueueDelayMS: float64(n % 30)},
							conds:   []schema.Condition{{Metric: "confidence", Op: "greater", Threshold: 0.7}},
						}
						if o := drive(pol, p, r); o.act != Infeasible && o.act != Shed && (o.exit < 1 || o.exit > 3) {
							t.Errorf("exit %d", o.exit)
						}
					}
				}()
			}
			wg.Wait()
			if eb, ok := pol.(*EnergyBudgetPolicy); ok {
				if spent, _ := eb.Spent(t0.Add(499 * time.Millisecond)); spent > eb.BudgetMJ+1e-9 {
					t.Fatalf("spent %.3f mJ of %.3f", spent, eb.BudgetMJ)
				}
			}
		})
	}
}

func TestRegistryNames(t *testing.T) {
	want := "accuracy adaptive bound conditions confidence deadline energy energy-budget static"
	if got := strings.Join(New().Names(), " "); got != want {
		t.Fatalf("Names() = %s, want %s", got, want)
	}
	for _, n := range New().Names() {
		p, err := New().New(n, nil)
		if err != nil || p == nil || p.Name() != n {
			t.Errorf("New(%q) = %v, %v", n, p, err)
		}
	}
	if _, err := New().New("adaptive", Params{"low": 0.9, "high": 0.5}); err == nil {
		t.Error("adaptive accepted low > high")
	}
	if p, err := New().New("energy-budget", Params{"joules": -1}); err == nil || p != nil {
		t.Errorf("energy-budget accepted negative joules: %v", p)
	}
}
