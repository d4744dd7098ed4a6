package policies

import (
	"math"
	"testing"
)

// binomTail is P(X ≥ c) for X ~ Binomial(n, p), summed directly.
func binomTail(n, c int, p float64) float64 {
	var s float64
	for k := c; k <= n; k++ {
		a, _ := math.Lgamma(float64(n + 1))
		b, _ := math.Lgamma(float64(k + 1))
		d, _ := math.Lgamma(float64(n - k + 1))
		s += math.Exp(a - b - d + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p))
	}
	return s
}

func TestRequiredCorrect(t *testing.T) {
	tests := []struct {
		n             int
		target, alpha float64
		want          int
	}{
		{10000, 0.985, 0, 9850},
		{10000, 0.5, 0, 5000},
		{10, 1, 0.05, 11},   // the lower bound never reaches 1
		{10, 0.9, 0.05, 11}, // 10/10 has a 95% lower bound of 0.741
		{100, 0.0, 0.05, 0},
	}
	for _, tc := range tests {
		if got := RequiredCorrect(tc.n, tc.target, tc.alpha); got != tc.want {
			t.Errorf("RequiredCorrect(%d, %v, %v) = %d, want %d", tc.n, tc.target, tc.alpha, got, tc.want)
		}
	}
	// The defining property, against a direct sum: c qualifies, c-1 not.
	for _, n := range []int{50, 1000, 10000} {
		for _, target := range []float64{0.6, 0.9, 0.98, 0.985, 0.99} {
			c := RequiredCorrect(n, target, 0.05)
			if c > n {
				continue
			}
			if tail := binomTail(n, c, target); tail > 0.05 {
				t.Errorf("n %d target %v: c %d has P(X ≥ c) = %.4f > 0.05", n, target, c, tail)
			}
			if c > 0 && float64(c-1) >= target*float64(n) {
				if tail := binomTail(n, c-1, target); tail <= 0.05 {
					t.Errorf("n %d target %v: c-1 = %d qualifies too (%.4f)", n, target, c-1, tail)
				}
			}
			// About 1.645 standard errors above target·n.
			se := math.Sqrt(float64(n) * target * (1 - target))
			if z := (float64(c) - target*float64(n)) / se; n >= 1000 && (z < 1.4 || z > 2.0) {
				t.Errorf("n %d target %v: margin %.2f standard errors", n, target, z)
			}
		}
	}
}
