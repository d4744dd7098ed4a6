package policies

import (
	"math"
	"slices"

	"github.com/delen-edge/delen/models/profile"
)

// NeverStop is the threshold of an exit that never stops a request: no
// top-1 probability reaches it.
const NeverStop = 2.0

// gridBins is how many quantile bins of each exit's confidences the greedy
// phase of TuneThresholds steps through.
const gridBins = 64

// seedBins is how many quantile values of exit 1's threshold
// TuneThresholds starts coordinate descent from.
const seedBins = 32

// seedPasses caps the coordinate-descent passes from each seed; the best
// seed is then polished without the cap.
const seedPasses = 3

// TuneThresholds chooses per-exit confidence thresholds for a cascade: a
// sample leaves at the first exit k whose top-1 confidence reaches
// thresholds[k-1]; the last exit always stops, so there are K-1
// thresholds for K exits (NeverStop: the exit never stops). Simulated on
// the validation samples v, the cascade's expected accuracy (the share of
// samples served a correct answer) stays ≥ target at the least expected
// cost, where cost[k-1] is the cumulative cost of running through exit k
// (latency, FLOPs, ...); a nil cost counts stages (1, 2, ..., K).
//
// The full model (all NeverStop) is the starting point and the accuracy
// ceiling: when its accuracy is below target, no cascade is tried (a
// cascade that beats the full model on validation data is most likely
// overfitting it) and TuneThresholds returns the full model with ok false.
// It also returns ok false, with nil thresholds, when v is unusable (nil,
// no exits, more than 64, no samples, ragged, a confidence outside [0, 1])
// or cost has the wrong length or a non-finite value.
//
// The search, after sorting each exit's confidences once (N samples, K
// exits):
//
//  1. Greedy by marginal efficiency: from the full model, repeatedly lower
//     one exit's threshold by one of 64 quantile bins of its confidences,
//     choosing the move that saves the most cost per unit of accuracy lost
//     (moves that lose nothing first) while the accuracy stays ≥ target,
//     until no move fits; O(K²·N).
//  2. Coordinate descent: for each exit in turn, with the others fixed,
//     the exactly best threshold over every distinct confidence value, by
//     one sweep over the samples in confidence order with running sums of
//     the change in correctness and cost, O(K·N) per exit; repeated until
//     nothing changes.
//
// Coordinate descent also starts from the full model (exits tried last to
// first, and first to last) and from each of 32 quantiles of exit 1's
// confidences as its threshold, tuning the later exits (for a 3-exit
// model: exactly, given exit 1). The best result, polished by coordinate
// descent over all exits, is returned; on 3 exits it is never worse than
// an exhaustive search over a 32×32 quantile grid, and in practice
// matches or beats one over 64×64.
// expAcc and expCost are the result's accuracy and mean cost on v.
func TuneThresholds(v *profile.Validation, cost []float64, target float64) (thresholds []float64, expAcc, expCost float64, ok bool) {
	return TuneWithMargin(v, cost, target, 0)
}

// TuneWithMargin is TuneThresholds with a margin for sampling error: the
// cascade's number of correct answers on v must reach RequiredCorrect(n,
// target, alpha), so that the Clopper-Pearson lower bound (level 1 − alpha)
// on its accuracy is ≥ target. alpha ≤ 0 is TuneThresholds.
func TuneWithMargin(v *profile.Validation, cost []float64, target, alpha float64) (thresholds []float64, expAcc, expCost float64, ok bool) {
	t := newTuner(v, cost)
	if t == nil {
		return nil, 0, 0, false
	}
	n := t.n
	need := RequiredCorrect(n, target, alpha)
	full := t.fresh()
	if full.correct < need {
		return full.thresholds(), full.acc(n), full.meanCost(n), false
	}
	if t.k == 1 {
		return []float64{}, full.acc(n), full.meanCost(n), true
	}
	best := full
	g := t.fresh()
	t.greedy(g, need)
	t.descend(g, need, false)
	best = better(best, g)
	for _, rev := range []bool{true, false} {
		c := t.fresh()
		t.descend(c, need, rev)
		best = better(best, c)
	}
	// Exit 1 over a grid of its quantiles, the other exits by coordinate
	// descent (exactly optimal for 3 exits, given exit 1).
	for _, b := range t.boundaries(0, seedBins) {
		c := t.fresh()
		th := t.conf[0][t.order[0][b-1]]
		for i, v := range t.conf[0] {
			if v >= th {
				c.exit[i] = 0
			}
		}
		c.t[0] = float64(th)
		t.total(c)
		// From an infeasible start a sweep only takes feasible values.
		t.descendExits(c, need, 1, false, seedPasses)
		if c.correct >= need {
			best = better(best, c)
		}
	}
	t.descend(best, need, false)
	return best.thresholds(), best.acc(n), best.meanCost(n), true
}

// tuner holds the validation data in the layout the search needs.
type tuner struct {
	k, n  int
	conf  [][]float32 // conf[k][i]
	right []uint64    // right[i]: bit k set when sample i is correct at exit k+1
	cost  []float64   // cumulative cost through exit k+1
	order [][]int32   // order[k]: sample indices by conf[k] descending (k < K-1)
}

// cascade is one assignment of thresholds and its outcome per sample.
type cascade struct {
	t       []float64 // K-1 thresholds
	cursor  []int     // greedy: samples of order[k] inside threshold k
	exit    []int8    // exit (0-based) each sample leaves at
	correct int       // samples served a correct answer
	cost    float64   // total cost over the samples
}

func (c *cascade) acc(n int) float64      { return float64(c.correct) / float64(n) }
func (c *cascade) meanCost(n int) float64 { return c.cost / float64(n) }
func (c *cascade) thresholds() []float64  { return slices.Clone(c.t) }

// better returns the cheaper of two feasible cascades (the more accurate
// on a tie); a keeps a tie.
func better(a, b *cascade) *cascade {
	if b.cost < a.cost-1e-9*math.Abs(a.cost) || (b.cost <= a.cost && b.correct > a.correct) {
		return b
	}
	return a
}

func newTuner(v *profile.Validation, cost []float64) *tuner {
	if v == nil || len(v.Confidence) == 0 || len(v.Confidence) != len(v.Correct) || len(v.Confidence) > 64 {
		return nil
	}
	k := len(v.Confidence)
	n := len(v.Confidence[0])
	if n == 0 {
		return nil
	}
	for j := range k {
		if len(v.Confidence[j]) != n || len(v.Correct[j]) != n {
			return nil
		}
		for _, c := range v.Confidence[j] {
			if !(c >= 0 && c <= 1) {
				return nil // not a probability (or NaN)
			}
		}
	}
	if cost == nil {
		cost = make([]float64, k)
		for j := range cost {
			cost[j] = float64(j + 1)
		}
	}
	if len(cost) != k {
		return nil
	}
	for _, c := range cost {
		if math.IsNaN(c) || math.IsInf(c, 0) {
			return nil
		}
	}
	t := &tuner{k: k, n: n, conf: v.Confidence, cost: cost, right: make([]uint64, n)}
	for j, col := range v.Correct {
		for i, ok := range col {
			if ok {
				t.right[i] |= 1 << j
			}
		}
	}
	// Sort (confidence, index) pairs packed in a uint64: the bits of a
	// non-negative float32 order like its value, complemented for
	// descending order.
	t.order = make([][]int32, k-1)
	keys := make([]uint64, n)
	for j := range k - 1 {
		for i, c := range v.Confidence[j] {
			keys[i] = uint64(^math.Float32bits(c))<<32 | uint64(i)
		}
		slices.Sort(keys)
		o := make([]int32, n)
		for p, key := range keys {
			o[p] = int32(uint32(key))
		}
		t.order[j] = o
	}
	return t
}

// fresh is the full model: every sample leaves at the last exit.
func (t *tuner) fresh() *cascade {
	c := &cascade{t: make([]float64, t.k-1), cursor: make([]int, t.k-1), exit: make([]int8, t.n)}
	for j := range c.t {
		c.t[j] = NeverStop
	}
	last := t.k - 1
	for i := range c.exit {
		c.exit[i] = int8(last)
	}
	t.total(c)
	return c
}

// boundaries are the cursor positions of the greedy grid for exit j: about
// gridBins equal-count bins of order[j], never splitting equal confidences.
func (t *tuner) boundaries(j, bins int) []int {
	o, c := t.order[j], t.conf[j]
	var out []int
	for q := 1; q <= bins; q++ {
		p := q * t.n / bins
		for p < t.n && p > 0 && c[o[p-1]] == c[o[p]] {
			p++
		}
		if p > 0 && (len(out) == 0 || p > out[len(out)-1]) {
			out = append(out, p)
		}
	}
	return out
}

// greedy lowers thresholds bin by bin, most cost saved per accuracy lost
// first, while the accuracy stays ≥ need correct samples.
func (t *tuner) greedy(c *cascade, need int) {
	grids := make([][]int, t.k-1)
	next := make([]int, t.k-1) // index into grids[j] of the next cursor
	for j := range grids {
		grids[j] = t.boundaries(j, gridBins)
	}
	for {
		bestJ, bestFree := -1, false
		var bestScore float64
		var bestDA int
		var bestDC float64
		for j := range grids {
			if next[j] >= len(grids[j]) {
				continue
			}
			dA, dC := t.moveDelta(c, j, c.cursor[j], grids[j][next[j]])
			if c.correct+dA < need {
				continue
			}
			free := dA >= 0 && dC <= 0
			var score float64
			switch {
			case free:
				score = -dC + float64(dA)
			case dC < 0:
				score = -dC / float64(-dA)
			default:
				continue // costs more: never worth it here
			}
			if bestJ < 0 || (free && !bestFree) || (free == bestFree && score > bestScore) {
				bestJ, bestFree, bestScore, bestDA, bestDC = j, free, score, dA, dC
			}
		}
		if bestJ < 0 {
			t.total(c)
			return
		}
		j := bestJ
		to := grids[j][next[j]]
		o := t.order[j]
		for p := c.cursor[j]; p < to; p++ {
			if i := o[p]; int(c.exit[i]) > j {
				c.exit[i] = int8(j)
			}
		}
		c.cursor[j] = to
		c.t[j] = float64(t.conf[j][o[to-1]])
		c.correct += bestDA
		c.cost += bestDC
		next[j]++
	}
}

// moveDelta is the change in correct samples and total cost when the
// samples at positions [from, to) of order[j] that reach exit j stop there.
func (t *tuner) moveDelta(c *cascade, j, from, to int) (int, float64) {
	var dA int
	var dC float64
	o := t.order[j]
	for p := from; p < to; p++ {
		i := o[p]
		if e := int(c.exit[i]); e > j {
			dA += t.gain(int(i), j, e)
			dC += t.cost[j] - t.cost[e]
		}
	}
	return dA, dC
}

// descend runs coordinate descent over the thresholds until a pass
// changes nothing (at most 20 passes); rev tries the exits last to first.
func (t *tuner) descend(c *cascade, need int, rev bool) {
	t.descendExits(c, need, 0, rev, 20)
}

// descendExits runs coordinate descent over the thresholds of exits from+1
// and on, leaving the earlier ones as they are, for at most passes passes.
func (t *tuner) descendExits(c *cascade, need, from int, rev bool, passes int) {
	down := make([]int8, t.n)
	for range passes {
		changed := false
		for s := from; s < t.k-1; s++ {
			j := s
			if rev {
				j = t.k - 2 - (s - from)
			}
			if t.coordinate(c, j, need, down) {
				changed = true
			}
		}
		if !changed || from == t.k-2 {
			return // one coordinate: its sweep is exact
		}
	}
}

// coordinate sets threshold j to its best value with the others fixed and
// reports whether it changed. down is scratch space.
func (t *tuner) coordinate(c *cascade, j, need int, down []int8) bool {
	// Where each sample reaching exit j goes when j does not stop it, and
	// the totals when exit j never stops.
	baseA, baseC := c.correct, c.cost
	for i, e := range c.exit {
		switch {
		case int(e) > j:
			down[i] = e
		case int(e) == j:
			d := t.k - 1
			for m := j + 1; m < t.k-1; m++ {
				if float64(t.conf[m][i]) >= c.t[m] {
					d = m
					break
				}
			}
			down[i] = int8(d)
			baseA -= t.gain(i, j, d)
			baseC += t.cost[d] - t.cost[j]
		}
	}
	// Sweep the thresholds from high to low: each candidate stops every
	// reaching sample whose confidence is at least it.
	bestT, bestA, bestC := NeverStop, baseA, baseC
	if baseA < need {
		bestA, bestC = -1, math.Inf(1)
	}
	o, conf := t.order[j], t.conf[j]
	a, cs := baseA, baseC
	for p, i := range o {
		if int(c.exit[i]) >= j {
			d := down[i]
			a += t.gain(int(i), j, int(d))
			cs += t.cost[j] - t.cost[d]
		}
		if p+1 < len(o) && conf[o[p+1]] == conf[i] {
			continue // not a boundary between distinct confidences
		}
		if a >= need && (cs < bestC-1e-9*math.Abs(bestC) || (cs <= bestC && a > bestA)) {
			bestT, bestA, bestC = float64(conf[i]), a, cs
		}
	}
	if bestA < 0 {
		return false // cannot happen from a feasible cascade
	}
	old := c.t[j]
	c.t[j] = bestT
	for i, e := range c.exit {
		if int(e) >= j {
			if float64(conf[i]) >= bestT {
				c.exit[i] = int8(j)
			} else {
				c.exit[i] = down[i]
			}
		}
	}
	t.total(c)
	return old != bestT
}

// total recounts a cascade's correct samples and cost from its exits (the
// sweeps add up deltas; this keeps rounding from drifting).
func (t *tuner) total(c *cascade) {
	var count [64]int
	c.correct, c.cost = 0, 0
	for i, e := range c.exit {
		c.correct += int(t.right[i] >> uint(e) & 1)
		count[e&63]++
	}
	for e, m := range count[:t.k] {
		c.cost += float64(m) * t.cost[e]
	}
}

// gain is the change in correctness (-1, 0, 1) when sample i leaves at
// exit j instead of exit e.
func (t *tuner) gain(i, j, e int) int {
	r := t.right[i]
	return int(r>>uint(j)&1) - int(r>>uint(e)&1)
}
