package policies

import (
	"fmt"
	"math"
)

// num returns the parameter key, or def when it is absent. A present value
// must be finite and within [lo, hi].
func (ps Params) num(key string, def, lo, hi float64) (float64, error) {
	v, ok := ps[key]
	if !ok {
		return def, nil
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v < lo || v > hi {
		return 0, fmt.Errorf("param %s = %v: want a number in [%v, %v]", key, v, lo, hi)
	}
	return v, nil
}

// positive returns the parameter key, or def when it is absent. A present
// value must be finite and > 0.
func (ps Params) positive(key string, def float64) (float64, error) {
	v, ok := ps[key]
	if !ok {
		return def, nil
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return 0, fmt.Errorf("param %s = %v: want a number > 0", key, v)
	}
	return v, nil
}

// integer returns the parameter key, or def when it is absent. A present
// value must be a whole number ≥ lo.
func (ps Params) integer(key string, def, lo int) (int, error) {
	v, ok := ps[key]
	if !ok {
		return def, nil
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v != math.Trunc(v) || v < float64(lo) || v > 1<<30 {
		return 0, fmt.Errorf("param %s = %v: want a whole number ≥ %d", key, v, lo)
	}
	return int(v), nil
}
