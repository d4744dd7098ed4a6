package policies

import "math"

// MarginAlpha is the one-sided error level of the accuracy bound's margin
// for sampling error: thresholds are tuned so that the Clopper-Pearson
// lower confidence bound, at confidence 1 − MarginAlpha, on the accuracy the
// cascade reaches on the calibration samples is ≥ the bound.
const MarginAlpha = 0.05

// RequiredCorrect is the least number of correct answers out of n
// calibration samples whose one-sided Clopper-Pearson lower bound at level
// 1 − alpha on the accuracy is ≥ target: the smallest c with
// P(X ≥ c) ≤ alpha for X ~ Binomial(n, target), since the lower bound of c
// successes reaches target exactly when so few successes as c would be
// that unlikely at an accuracy of target. It returns n+1 when no count
// qualifies (target 1, or n too small for the level), and ceil(target·n)
// when alpha ≤ 0 (no margin).
//
// Clopper-Pearson rather than Wilson or the normal approximation: the
// bounds are needed at accuracies of 0.98-0.99, close to 1, where the
// approximate intervals cover less than their nominal level, while the
// exact interval never does; with 10,000 samples it costs about 1.7
// standard errors (0.002 at 0.985).
func RequiredCorrect(n int, target, alpha float64) int {
	if n <= 0 {
		return 1
	}
	plain := int(math.Ceil(target*float64(n) - 1e-9))
	if alpha <= 0 {
		return plain
	}
	if target <= 0 {
		return 0
	}
	if target >= 1 {
		return n + 1
	}
	lp, lq := math.Log(target), math.Log1p(-target)
	lgn, _ := math.Lgamma(float64(n + 1))
	pmf := func(k int) float64 {
		a, _ := math.Lgamma(float64(k + 1))
		b, _ := math.Lgamma(float64(n - k + 1))
		return math.Exp(lgn - a - b + float64(k)*lp + float64(n-k)*lq)
	}
	// Walk the upper tail down from n while it stays ≤ alpha.
	tail := pmf(n)
	if tail > alpha {
		return n + 1
	}
	c := n
	for c > 0 {
		next := tail + pmf(c-1)
		if next > alpha {
			break
		}
		tail = next
		c--
	}
	return max(c, plain)
}
