package policies

import (
	"testing"
	"time"

	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/schema"
)

// budgets is a Planner with fixed answers: the policy's input, as the
// agent's scheduler would give it.
type budgets struct{ hard, fair, u float64 }

func (b budgets) BudgetMS() (float64, float64, float64) { return b.hard, b.fair, b.u }

// TestPlanExit: on the synthetic profile (work 8, 16, 24 ms: exits at 8,
// 24 and 48 ms of work, accuracy 0.80, 0.90, 0.95) the plan is the
// deepest exit that fits the hard budget, and among those the share buys
// on the concave hull, split between two exits by u.
func TestPlanExit(t *testing.T) {
	notBetter := synthetic()
	notBetter.Exits[2].Accuracy = 0.89 // exit 3 no better than exit 2
	cases := []struct {
		name       string
		p          *profile.Profile
		done       int
		hard, fair float64
		u          float64
		want       int
	}{
		{"exit 1 does not fit", synthetic(), 0, 7, 100, 0, 0},
		{"everything fits", synthetic(), 0, 100, 100, 0, 3},
		{"hard stops at exit 2", synthetic(), 0, 30, 100, 0, 2},
		{"share below exit 1: exit 1 is mandatory", synthetic(), 0, 100, 1, 0, 1},
		{"share half-way to exit 2, u low", synthetic(), 0, 100, 16, 0.3, 2},
		{"share half-way to exit 2, u high", synthetic(), 0, 100, 16, 0.7, 1},
		{"after exit 1, no share left: stop", synthetic(), 1, 100, 0, 0, 1},
		{"after exit 1, share for exit 2", synthetic(), 1, 100, 16, 0.9, 2},
		{"after exit 2, hard too small for stage 3", synthetic(), 2, 20, 100, 0, 2},
		{"a deeper exit that is not better is skipped", notBetter, 0, 100, 100, 0, 2},
	}
	for _, c := range cases {
		if got := PlanExit(c.p, 3, c.done, c.hard, c.fair, c.u); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
	}
}

// TestSpreadSplitsEvenly: a share 30% of the way between two exits sends
// 30% of consecutive requests to the deeper one.
func TestSpreadSplitsEvenly(t *testing.T) {
	p := synthetic()
	deeper := 0
	for n := uint64(0); n < 1000; n++ {
		if PlanExit(p, 3, 0, 100, 8+0.3*16, Spread(n)) == 2 {
			deeper++
		}
	}
	if deeper < 290 || deeper > 310 {
		t.Errorf("%d of 1000 at exit 2, want 300", deeper)
	}
}

// TestBoundPolicyPlans: with the agent's Planner, the default policy
// plans a latency bound: Infeasible when exit 1 does not fit the hard
// budget, the planned exit as the decision's target, a stop once the
// share is spent; the exit bound caps the plan. Without a latency bound
// the Planner is not asked.
func TestBoundPolicyPlans(t *testing.T) {
	t0 := time.Unix(1000, 0)
	lat := schema.Bound{LatencyMS: f(1000)}
	cases := []struct {
		name   string
		bound  schema.Bound
		done   int
		b      budgets
		act    Action
		target int
	}{
		{"exit 1 does not fit", lat, 0, budgets{5, 100, 0}, Infeasible, 0},
		{"planned to exit 2", lat, 0, budgets{30, 100, 0}, Continue, 2},
		{"share spent after exit 1", lat, 1, budgets{100, 8, 0}, Stop, 1},
		{"share left after exit 1", lat, 1, budgets{100, 48, 0}, Continue, 3},
		{"exit bound caps the plan", schema.Bound{LatencyMS: f(1000), Exit: i(2)}, 0, budgets{100, 100, 0}, Continue, 2},
		{"no latency bound", schema.Bound{}, 0, budgets{0, 0, 0}, Continue, 0},
	}
	for _, c := range cases {
		s := &Step{Bound: c.bound, Exits: 3, Done: c.done, Arrival: t0, Now: t0, Planner: c.b}
		var d Decision
		if c.done == 0 {
			d = BoundPolicy{}.Before(s, synthetic())
		} else {
			d = BoundPolicy{}.After(s, synthetic())
		}
		if d.Action != c.act || d.Target != c.target {
			t.Errorf("%s: %v target %d (%s), want %v target %d", c.name, d.Action, d.Target, d.Reason, c.act, c.target)
		}
	}
}
