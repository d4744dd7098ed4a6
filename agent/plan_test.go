package agent

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/policies"
	"github.com/delen-edge/delen/schema"
)

// planJob is a job with a latency bound and deadline, for the plan's tests.
func planJob(seq uint64, deadline time.Time, boundMS float64) *job {
	j := &job{tenant: "cam", bound: schema.Bound{LatencyMS: &boundMS}}
	j.task = task{tenant: "cam", seq: seq, deadline: deadline, job: j}
	j.plan.j = j
	return j
}

// TestPlanBookMatchesBruteForce: after random bookings, changes and
// removals, the book's work due by a deadline and the least slack of the
// requests due after it are what a scan of every booked request gives.
func TestPlanBookMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Unix(5000, 0)
	b := newPlanBook(2, now)
	var jobs []*job
	for n := 0; n < 3000; n++ {
		switch op := rng.IntN(10); {
		case op < 6 || len(jobs) == 0:
			j := planJob(uint64(n), now.Add(time.Duration(rng.IntN(4000)-500)*time.Millisecond), 100)
			b.set(j, 1+rng.Float64()*40, now)
			jobs = append(jobs, j)
		case op < 8:
			b.set(jobs[rng.IntN(len(jobs))], rng.Float64()*40, now)
		default:
			k := rng.IntN(len(jobs))
			b.set(jobs[k], 0, now)
			jobs = append(jobs[:k], jobs[k+1:]...)
		}
		if n%97 != 0 {
			continue
		}
		// Brute force over the booked jobs, by slot.
		type e struct {
			slot int
			w    float64
		}
		var es []e
		for _, j := range jobs {
			if j.plan.booked {
				es = append(es, e{j.plan.slot, j.plan.work})
			}
		}
		sort.Slice(es, func(i, k int) bool { return es[i].slot < es[k].slot })
		for _, cut := range []int{0, 400, 1000, 2500, planSlots - 1} {
			var due, run float64
			least := math.Inf(1)
			for i, x := range es {
				run += x.w
				if x.slot <= cut {
					due = run
				} else if i == len(es)-1 || es[i+1].slot != x.slot {
					least = math.Min(least, b.m*float64(x.slot)-run)
				}
			}
			got, _ := b.query(0, cut+1)
			_, mn := b.query(cut+1, planSlots)
			mn -= got
			if math.Abs(got-due) > 1e-6 || (math.IsInf(least, 1) != math.IsInf(mn, 1)) || (!math.IsInf(least, 1) && math.Abs(mn-least) > 1e-6) {
				t.Fatalf("step %d, cut %d: due %.3f least slack %.3f, want %.3f %.3f", n, cut, got, mn, due, least)
			}
		}
	}
	// Rebuilt from a later base, the book holds the same work.
	before := b.sum[1]
	b.rebuild(now.Add(20 * time.Second))
	if math.Abs(b.sum[1]-before) > 1e-6 {
		t.Fatalf("rebuild: %.3f ms booked, had %.3f", b.sum[1], before)
	}
}

// TestPlanBudgets: the hard budget is the time to the deadline on the
// workers less the work due before it; a request due later that has booked
// its slack full limits an earlier one to its mandatory stage; the fair
// share divides the capacity of a bound's worth of time (and of the booked
// work's normal sojourn), less the booked work, by the arrivals the rate
// predicts.
func TestPlanBudgets(t *testing.T) {
	now := time.Unix(5000, 0)
	// Two workers, a 100 ms bound.
	capMS := 200 * (1 + shareSojourn)
	cases := []struct {
		name      string
		booked    [][2]float64 // deadline ms from now, work ms
		deadline  float64      // of the request planned, ms from now
		mandatory float64
		rate      float64 // requests/ms
		hard      float64 // want
		fair      float64
		slow, dev float64 // slowdown mean and deviation (0: 1 and 0)
		next      float64 // the request's next stage's work (0: no model)
	}{
		// Two free workers, but the request's own stages run one after
		// another: what fits is its time left.
		{"empty", nil, 100, 10, 0, 100 - planMarginMS, capMS, 0, 0, 10},
		{"work ahead", [][2]float64{{50, 60}, {80, 40}}, 100, 10, 0, 200 - 100 - planMarginMS, capMS - 100, 0, 0, 10},
		{"more work ahead", [][2]float64{{50, 100}, {80, 40}}, 100, 10, 0, 200 - 140 - planMarginMS, capMS - 140, 0, 0, 10},
		// The later request (due at 120 ms, 230 ms booked) has 240 −
		// 230 = 10 ms of slack: the earlier one may take 10 ms.
		{"later request's slack", [][2]float64{{120, 230}}, 100, 5, 0, 10, capMS - 230, 0, 0, 10},
		// It has none left: the earlier one still gets its mandatory stage.
		{"later request full", [][2]float64{{120, 250}}, 100, 5, 0, 5, capMS - 250, 0, 0, 10},
		{"burst predicted", nil, 100, 10, 0.08, 100 - planMarginMS, capMS / 8, 0, 0, 10},
		// Stages take 1.5x their profile, give or take 0.25: the next
		// stage (10 ms) is planned at 2x, the rest of the chain and the
		// capacity at 1.5x: 10 + x ms fit when 2·10 + 1.5·x ≤ 95.
		{"slow and unsteady", nil, 100, 10, 0, 10 + (100-planMarginMS-2*10)/1.5, capMS / 1.5, 1.5, 0.25, 10},
		// A longer next stage (40 ms) takes more of the margin.
		{"slow, long next stage", nil, 100, 10, 0, 40 + (100-planMarginMS-2*40)/1.5, capMS / 1.5, 1.5, 0.25, 40},
		{"slow, work ahead", [][2]float64{{50, 130}}, 100, 10, 0, (200 - 130 - planMarginMS) / 1.5, (capMS - 130) / 1.5, 1.5, 0.25, 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newScheduler(time.Hour)
			s.setWorkers(2)
			s.plan.reset(now)
			if c.slow > 0 {
				s.slowdown, s.slowdownVar = c.slow, c.dev*c.dev
			}
			for i, bk := range c.booked {
				s.plan.set(planJob(uint64(i+1), now.Add(time.Duration(bk[0]*float64(time.Millisecond))), 100), bk[1], now)
			}
			j := planJob(99, now.Add(time.Duration(c.deadline*float64(time.Millisecond))), 100)
			j.plan.mandatory = c.mandatory
			j.model = &servedModel{}
			j.model.profile.Store(&profile.Profile{Stages: []profile.StageStats{{LatencyMS: profile.Quantiles{Mean: c.next}}}})
			if c.rate > 0 {
				s.rates["cam"] = &tenantRate{rate: c.rate, last: now, boundMS: 100, firstMS: c.mandatory}
			}
			hard, fair := s.budget(j, now)
			if math.Abs(hard-c.hard) > 0.01 || math.Abs(fair-c.fair) > 0.01 {
				t.Errorf("hard %.2f fair %.2f, want %.2f %.2f", hard, fair, c.hard, c.fair)
			}
		})
	}
}

// TestPlanReservesForShorterBounds: a tenant with a shorter bound whose
// recent rate predicts arrivals due before this request's deadline gets
// their first stages reserved.
func TestPlanReservesForShorterBounds(t *testing.T) {
	now := time.Unix(5000, 0)
	s := newScheduler(time.Hour)
	s.setWorkers(2)
	s.plan.reset(now)
	// Work due earlier, so that the workers' capacity, not the request's
	// own time left, is what binds.
	s.plan.set(planJob(2, now.Add(50*time.Millisecond), 100), 150, now)
	j := planJob(1, now.Add(100*time.Millisecond), 100)
	s.rates["cam"] = &tenantRate{rate: 0.01, last: now, boundMS: 100, firstMS: 10}
	alone, _ := s.budget(j, now)
	// 0.05 requests/ms due 20 ms after arriving: over the 80 ms in which
	// their deadlines come before this one's, 4 arrivals × 5 ms.
	s.rates["tight"] = &tenantRate{rate: 0.05, last: now, boundMS: 20, firstMS: 5}
	shared, _ := s.budget(j, now)
	if math.Abs(alone-shared-20) > 0.01 {
		t.Errorf("budget alone %.2f, next to the tight tenant %.2f: want 20 ms reserved", alone, shared)
	}
}

// BenchmarkPlanDecision is one scheduling decision of the default policy
// for a latency bound with 10,000 requests booked in the plan, as a worker
// takes it before a stage: the budgets, the planned exit, and booking the
// planned work.
func BenchmarkPlanDecision(b *testing.B) {
	for _, queued := range []int{100, 10_000} {
		b.Run(fmt.Sprintf("queued=%d", queued), func(b *testing.B) {
			now := time.Now()
			s := newScheduler(time.Hour)
			s.setWorkers(2)
			p := replicaLikeProfile()
			for i := 0; i < queued; i++ {
				j := planJob(uint64(i), now.Add(time.Duration(i%5000)*time.Millisecond), 100)
				s.plan.set(j, policies.WorkMS(p, 0, 1+i%4), now)
			}
			s.arrive("cam", now, 100, policies.StageWorkMS(p, 0))
			s.arrive("other", now, 40, policies.StageWorkMS(p, 0))
			j := planJob(1<<40, now.Add(80*time.Millisecond), 100)
			j.plan.u = 0.3
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			defer func() {
				// CPU time per decision, which descheduling on a shared
				// machine does not inflate as it does ns/op.
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			}()
			for i := 0; i < b.N; i++ {
				hard, fair := s.budget(j, now)
				t := policies.PlanExit(p, 4, 0, hard, fair, j.plan.u)
				s.mu.Lock()
				s.plan.set(j, policies.WorkMS(p, 0, max(t, 1))+float64(i&1), now)
				s.mu.Unlock()
			}
		})
	}
}

// replicaLikeProfile is resnet50-nano's shape: stage times in proportion
// to its FLOPs (8.1, 10.6, 14.6, 8.1 ms), its exits' reference accuracies.
func replicaLikeProfile() *profile.Profile {
	p := &profile.Profile{Model: "replica-like"}
	for i, ms := range []float64{8.1, 10.6, 14.6, 8.1} {
		p.Stages = append(p.Stages, profile.StageStats{Stage: i, LatencyMS: profile.Quantiles{P50: ms, P95: ms * 1.2, P99: ms * 1.4, Mean: ms}})
		p.Exits = append(p.Exits, profile.ExitStats{Exit: i + 1, Accuracy: []float64{0.4354, 0.6803, 0.7675, 0.7657}[i]})
	}
	return p
}

// cpuTime is the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
