package sim

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"runtime"
	"strconv"

	"github.com/delen-edge/delen/schema"
)

// Matrix runs a compare scenario's variants at several deadlines and
// arrival patterns, all on the same arrivals per pattern (the scenario's
// seed), for a bounds report (Report.Bounds, bounds.png):
//
//	matrix:
//	  deadlines_ms: [80, 100, 150]
//	  arrivals:
//	    - {name: b7, arrival: {process: bursty, rate: 15, burst_rate: 80, off: 4s, on: 3s}}
//	    - {name: b5, arrival: {process: bursty, rate: 20, burst_rate: 90, off: 3s, on: 2s}}
//
// Each arrival pattern replaces every tenant's arrival in turn. A variant
// whose bound has latency_ms runs once per deadline, with latency_ms set to
// it (run name <arrival>-d<deadline>-<variant>); a variant without one
// (a static exit, reference conditions) does not depend on the deadline,
// so it runs once per pattern (<arrival>-all-<variant>) and is judged at
// every deadline. Every run's slo_ms is its deadline (the first for the
// "all" runs; the bounds table judges them at each).
type Matrix struct {
	// DeadlinesMS are the deadlines, ms, end to end from sent_at.
	DeadlinesMS []float64 `yaml:"deadlines_ms" json:"deadlines_ms"`
	// Arrivals are the arrival patterns.
	Arrivals []NamedArrival `yaml:"arrivals" json:"arrivals"`
}

// NamedArrival is one arrival pattern of a Matrix.
type NamedArrival struct {
	// Name names the pattern in run names (lower case, digits, _ and -).
	Name string `yaml:"name" json:"name"`
	// Arrival replaces every tenant's arrival.
	Arrival Arrival `yaml:"arrival" json:"arrival"`
}

func (m *Matrix) validate(s *Scenario) error {
	if len(s.Compare) == 0 {
		return errors.New("matrix: needs compare variants")
	}
	if len(m.DeadlinesMS) == 0 || len(m.Arrivals) == 0 {
		return errors.New("matrix: needs deadlines_ms and arrivals")
	}
	for i, d := range m.DeadlinesMS {
		if !(d > 0) || math.IsInf(d, 1) {
			return fmt.Errorf("matrix.deadlines_ms[%d]: %v: want > 0", i, d)
		}
	}
	seen := map[string]bool{}
	for i := range m.Arrivals {
		a := &m.Arrivals[i]
		key := fmt.Sprintf("matrix.arrivals[%d]", i)
		if !schema.ValidTenant(a.Name) || seen[a.Name] {
			return fmt.Errorf("%s.name: %q: want a new name of lower-case letters, digits, _ and -", key, a.Name)
		}
		seen[a.Name] = true
		if err := a.Arrival.validate(key+".arrival", s); err != nil {
			return err
		}
	}
	return nil
}

// runPlan is one run of a scenario: a compare variant, or one cell of a
// matrix.
type runPlan struct {
	name       string
	scenario   *Scenario
	arrival    string
	deadlineMS float64
	base       string
}

// plan lists the runs of s, only those whose name matches only (nil: all).
func (s *Scenario) plan(only *regexp.Regexp) ([]runPlan, error) {
	var out []runPlan
	add := func(p runPlan) {
		if only == nil || only.MatchString(p.name) {
			out = append(out, p)
		}
	}
	switch {
	case len(s.Compare) == 0:
		add(runPlan{scenario: s})
	case s.Matrix == nil:
		for _, v := range s.Compare {
			add(runPlan{name: v.Name, scenario: s.variant(v), base: v.Name})
		}
	default:
		for _, a := range s.Matrix.Arrivals {
			for _, v := range s.Compare {
				if v.Bound == nil || v.Bound.LatencyMS == nil {
					add(s.matrixRun(a, v, s.Matrix.DeadlinesMS[0], "all"))
					continue
				}
				for _, d := range s.Matrix.DeadlinesMS {
					add(s.matrixRun(a, v, d, "d"+strconv.FormatFloat(d, 'f', -1, 64)))
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no run matches %v", only)
	}
	return out, nil
}

// matrixRun is variant v on arrival pattern a at deadline d.
func (s *Scenario) matrixRun(a NamedArrival, v Variant, d float64, tag string) runPlan {
	v.SLOMS = &d
	if v.Bound != nil && v.Bound.LatencyMS != nil {
		b := *v.Bound
		b.LatencyMS = &d
		v.Bound = &b
	}
	sc := s.variant(v)
	for i := range sc.Tenants {
		sc.Tenants[i].Arrival = a.Arrival
	}
	p := runPlan{name: a.Name + "-" + tag + "-" + v.Name, scenario: sc, arrival: a.Name, base: v.Name}
	if tag != "all" {
		p.deadlineMS = d
	}
	return p
}

// workers is o.Workers, else the CPUs of this machine.
func (o RunOptions) workers() int {
	if o.Workers > 0 {
		return o.Workers
	}
	return runtime.NumCPU()
}
