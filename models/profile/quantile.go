package profile

import (
	"math"
	"slices"
)

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of sorted, which must be in
// ascending order: linearly interpolated between the two order statistics
// around position q·(n−1) (Hyndman and Fan's definition 7, the default of
// NumPy and R). Quantile(sorted, 0.5) is the usual median (the mean of the
// middle two of an even count). It returns 0 for no values.
//
// This is the one quantile definition of the project: profiles (Summarize),
// the simulator's reports and the benchmarks' medians all use it.
func Quantile(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	pos := q * float64(n-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, n-1)
	return sorted[lo] + (sorted[hi]-sorted[lo])*(pos-float64(lo))
}

// Median returns Quantile(v, 0.5) of v in any order, leaving v unchanged.
func Median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return Quantile(s, 0.5)
}
