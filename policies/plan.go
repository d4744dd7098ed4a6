package policies

import (
	"math"

	"github.com/delen-edge/delen/models/profile"
)

// Planner is the agent's scheduler as the default policy sees it when it
// plans a request with a latency bound (imprecise computation: exit 1 is
// the mandatory part, deeper stages are optional). The agent keeps the
// planned stage work of every admitted request, ordered by deadline, across
// tenants and workers; a Planner answers for one request.
type Planner interface {
	// BudgetMS is how much more predicted stage work (ms of one worker) the
	// request may be given now. hard keeps the request's own deadline and
	// the planned work of every admitted request with a later deadline
	// feasible under earliest-deadline-first on the agent's workers, after
	// the work already planned ahead of it and room for the requests that
	// the tenants' recent arrival rates predict with earlier deadlines.
	// fair is its share, as a whole request (stages run included), of the
	// capacity left for the arrivals the recent rates predict within its
	// bound, so that a burst does not find the slack already spent. u in [0, 1) spreads requests between two exits
	// when the share falls between them.
	BudgetMS() (hard, fair, u float64)
}

// Planning is implemented by the policies that plan a request's target
// exit when it is admitted (with the agent's Planner in the Step), before
// its first stage is asked for: Plan is Before for stage 1, without side
// effects.
type Planning interface {
	Plan(s *Step, p *profile.Profile) Decision
}

// StageWorkMS is the predicted work of stage i (0-based) for planning: its
// mean time alone (p50 when the profile has no mean). The agent books the
// same figure for the requests it plans, so it is the one source of both.
func StageWorkMS(p *profile.Profile, i int) float64 {
	if p == nil || i < 0 || i >= len(p.Stages) {
		return 0
	}
	q := p.Stages[i].LatencyMS
	if q.Mean > 0 {
		return q.Mean
	}
	return q.P50
}

// WorkMS is the predicted work (StageWorkMS) of stages from..to-1.
func WorkMS(p *profile.Profile, from, to int) float64 {
	var w float64
	for i := from; i < to; i++ {
		w += StageWorkMS(p, i)
	}
	return w
}

// PlanExit chooses the exit to run a request to, after done exits, given
// budgets for the work still to do (ms): the deepest exit whose remaining
// work fits hard,
// and among those the one its share fair buys on the upper concave hull
// of (work, accuracy) from exit done on: a share between two hull points
// takes the deeper one with the probability its position between them
// gives, decided by u, so that a stream of requests spends its share on
// average where the accuracy per ms is best. It returns done when no
// further stage fits hard (0 with done == 0: not even exit 1 fits).
// Exit 1 is mandatory: with done == 0 it is chosen whenever it fits hard,
// whatever the share.
func PlanExit(p *profile.Profile, exits, done int, hard, fair, u float64) int {
	// The deepest exit that fits the hard budget.
	limit := done
	for e := done + 1; e <= exits; e++ {
		if WorkMS(p, done, e) > hard {
			break
		}
		limit = e
	}
	if limit <= done {
		return done
	}
	first := done + 1
	if done > 0 {
		first = done // the exit already served is a candidate: stop there
	}
	// Upper concave hull of (work from done, accuracy) over first..limit.
	type pt struct {
		e    int
		w, a float64
	}
	hull := make([]pt, 0, 8)
	for e := first; e <= limit; e++ {
		q := pt{e, WorkMS(p, done, e), exitAccuracy(p, e)}
		if len(hull) > 0 && q.a <= hull[len(hull)-1].a {
			continue // a deeper exit that is no more accurate is never worth it
		}
		for len(hull) >= 2 {
			a, b := hull[len(hull)-2], hull[len(hull)-1]
			// b is under the chord a–q: drop it.
			if (b.a-a.a)*(q.w-a.w) <= (q.a-a.a)*(b.w-a.w) {
				hull = hull[:len(hull)-1]
				continue
			}
			break
		}
		hull = append(hull, q)
	}
	if len(hull) == 0 {
		return limit
	}
	if fair <= hull[0].w {
		return hull[0].e
	}
	for k := 1; k < len(hull); k++ {
		lo, hi := hull[k-1], hull[k]
		if fair < hi.w {
			if frac := (fair - lo.w) / (hi.w - lo.w); u < frac {
				return hi.e
			}
			return lo.e
		}
	}
	return hull[len(hull)-1].e
}

// Spread is a low-discrepancy sequence in [0, 1) (the golden-ratio
// sequence) for Planner.BudgetMS's u: consecutive requests n, n+1, ...
// cover [0, 1) evenly, so a share between two exits splits a stream of
// requests between them in the right proportion without randomness.
func Spread(n uint64) float64 {
	const phi = 0.6180339887498949
	_, f := math.Modf(float64(n%(1<<40)) * phi)
	return f
}
