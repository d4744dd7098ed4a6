package policies

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/schema"
)

// ConditionsPolicy ("conditions") runs the reference implementation's exit
// conditions, Step.Conditions (the tenant's, set by control or from a
// condition file, see LoadConditions): condition k-1 belongs to exit k,
// and after exit k the request stops when `metric op threshold` holds.
// Exits without a condition (fewer conditions than exits) run on; the
// last exit always stops. Metrics, at exit k:
//
//   - response_time: ms since the request's arrival;
//   - confidence: the exit's top-1 probability;
//   - accuracy: the exit's profiled accuracy;
//   - energy: the energy spent so far, mJ;
//   - computation: the profile's cumulative FLOPs through exit k, in
//     GFLOPs;
//   - exit: k.
//
// Ops: less, less_eq, equal, greater, greater_eq. The reference's typical
// condition is {response_time, greater, T}: stop once T ms have been used.
// A condition with an unknown metric or op never fires. The request's
// bound still applies as hard limits (deadline, energy budget, fixed exit)
// as in BoundPolicy; without a bound this is the reference's behaviour.
type ConditionsPolicy struct{}

// Name implements Policy.
func (ConditionsPolicy) Name() string { return "conditions" }

// Before implements Policy.
func (ConditionsPolicy) Before(s *Step, p *profile.Profile) Decision {
	return hardLimits(s, p)
}

// After implements Policy.
func (ConditionsPolicy) After(s *Step, p *profile.Profile) Decision {
	k := s.Done
	if k >= 1 && k-1 < len(s.Conditions) {
		c := s.Conditions[k-1]
		v, ok := conditionMetric(s, p, c.Metric)
		if ok {
			if holds, known := compare(v, c.Op, c.Threshold); known && holds {
				return stop(fmt.Sprintf("exit %d: %s %.4g %s %.4g", k, c.Metric, v, c.Op, c.Threshold))
			}
		}
	}
	if d := hardLimits(s, p); d.Action != Continue {
		return d
	}
	return run(fmt.Sprintf("exit %d: condition not met", k))
}

// conditionMetric is the value of a condition's metric at exit s.Done.
func conditionMetric(s *Step, p *profile.Profile, metric string) (float64, bool) {
	k := s.Done
	switch metric {
	case schema.MetricResponseTime:
		return float64(nowOf(s).Sub(s.Arrival)) / 1e6, true
	case schema.MetricConfidence:
		return s.Confidence, true
	case schema.MetricAccuracy:
		return exitAccuracy(p, k), true
	case schema.MetricEnergy:
		return s.EnergyMJ, true
	case schema.MetricComputation:
		if p == nil || k < 1 || k > len(p.Exits) {
			return 0, true
		}
		return p.Exits[k-1].FLOPs / 1e9, true
	case schema.MetricExit:
		return float64(k), true
	}
	return 0, false
}

// isMetric reports whether m is a condition metric.
func isMetric(m string) bool {
	switch m {
	case schema.MetricResponseTime, schema.MetricConfidence, schema.MetricAccuracy,
		schema.MetricEnergy, schema.MetricComputation, schema.MetricExit:
		return true
	}
	return false
}

// compare evaluates `v op t`; known is false for an unknown op. equal
// allows a relative rounding error of 1e-9.
func compare(v float64, op string, t float64) (holds, known bool) {
	switch op {
	case schema.OpLess:
		return v < t, true
	case schema.OpLessEq:
		return v <= t, true
	case schema.OpEqual:
		return math.Abs(v-t) <= 1e-9*math.Max(1, math.Abs(t)), true
	case schema.OpGreater:
		return v > t, true
	case schema.OpGreaterEq:
		return v >= t, true
	}
	return false, false
}

// opAliases are the spellings LoadConditions accepts for each op.
var opAliases = map[string]string{
	"<": schema.OpLess, "lt": schema.OpLess,
	"<=": schema.OpLessEq, "le": schema.OpLessEq, "lesseq": schema.OpLessEq, "less_equal": schema.OpLessEq,
	"==": schema.OpEqual, "=": schema.OpEqual, "eq": schema.OpEqual,
	">": schema.OpGreater, "gt": schema.OpGreater,
	">=": schema.OpGreaterEq, "ge": schema.OpGreaterEq, "greatereq": schema.OpGreaterEq, "greater_equal": schema.OpGreaterEq,
}

// LoadConditions reads a condition file of the reference implementation:
// a JSON list of objects {"metric", "op", "threshold"}, one per exit (the
// list may also be the "conditions" member of an object). Keys match in
// any case; metric and op values are trimmed and lower-cased, ops may also
// be written <, <=, ==, >, >=; a threshold may be a number or a numeric
// string. Unknown metrics and ops are errors.
func LoadConditions(path string) ([]schema.Condition, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cs, err := ParseConditions(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cs, nil
}

// ParseConditions parses the contents of a condition file (see
// LoadConditions).
func ParseConditions(b []byte) ([]schema.Condition, error) {
	var raw []map[string]json.RawMessage
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(t, &obj); err != nil {
			return nil, fmt.Errorf("conditions: %w", err)
		}
		list, ok := lookup(obj, "conditions")
		if !ok {
			return nil, fmt.Errorf("conditions: an object needs a \"conditions\" list")
		}
		b = list
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("conditions: want a list of {metric, op, threshold}: %w", err)
	}
	out := make([]schema.Condition, 0, len(raw))
	for i, o := range raw {
		c, err := parseCondition(o)
		if err != nil {
			return nil, fmt.Errorf("conditions[%d]: %w", i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// lookup finds key in obj in any case.
func lookup(obj map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	if v, ok := obj[key]; ok {
		return v, true
	}
	for k, v := range obj {
		if strings.EqualFold(strings.TrimSpace(k), key) {
			return v, true
		}
	}
	return nil, false
}

func parseCondition(o map[string]json.RawMessage) (schema.Condition, error) {
	var c schema.Condition
	str := func(key string) (string, error) {
		raw, ok := lookup(o, key)
		if !ok {
			return "", fmt.Errorf("missing %q", key)
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%s: want a string", key)
		}
		return strings.ToLower(strings.TrimSpace(s)), nil
	}
	var err error
	if c.Metric, err = str("metric"); err != nil {
		return c, err
	}
	if !isMetric(c.Metric) {
		return c, fmt.Errorf("metric %q is not one of response_time, confidence, accuracy, energy, computation, exit", c.Metric)
	}
	if c.Op, err = str("op"); err != nil {
		return c, err
	}
	if a, ok := opAliases[c.Op]; ok {
		c.Op = a
	}
	if _, known := compare(0, c.Op, 0); !known {
		return c, fmt.Errorf("op %q is not one of less, less_eq, equal, greater, greater_eq", c.Op)
	}
	raw, ok := lookup(o, "threshold")
	if !ok {
		return c, fmt.Errorf("missing \"threshold\"")
	}
	if err := json.Unmarshal(raw, &c.Threshold); err != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return c, fmt.Errorf("threshold: want a number")
		}
		if c.Threshold, err = strconv.ParseFloat(strings.TrimSpace(s), 64); err != nil {
			return c, fmt.Errorf("threshold: %q is not a number", s)
		}
	}
	if math.IsNaN(c.Threshold) || math.IsInf(c.Threshold, 0) {
		return c, fmt.Errorf("threshold: must be finite")
	}
	return c, nil
}
