package agent

import (
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/schema"
)

// TestTopClasses: the top-k a result carries is the k most likely classes,
// most likely first, ties in class order, as a stable sort of all classes
// by probability gives, for any number of classes (fewer than k
// included).
func TestTopClasses(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 2))
	cases := [][]float32{
		{0}, {1, 2}, {2, 1}, {0, 0, 0, 0}, {3, 1, 3, 2, 3}, {-1, 5, 5, -1, 4, 5},
		{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1}, {1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1},
	}
	for range 200 {
		l := make([]float32, 1+rng.IntN(12))
		for i := range l {
			l[i] = float32(rng.IntN(5)) // many ties
		}
		cases = append(cases, l)
	}
	for _, logits := range cases {
		p := make([]float32, len(logits))
		models.Softmax(p, logits)
		idx := make([]int, len(p))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return p[idx[a]] > p[idx[b]] })
		var want []schema.ClassProb
		for _, i := range idx[:min(topK, len(idx))] {
			want = append(want, schema.ClassProb{Class: i, Prob: float64(p[i])})
		}
		class, prob, top := topClasses(logits)
		if !slices.Equal(top, want) || class != want[0].Class || prob != want[0].Prob {
			t.Errorf("topClasses(%v) = %d, %v, %v; want %v", logits, class, prob, top, want)
		}
	}
}
