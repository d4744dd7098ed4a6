package agent

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func mk(s *scheduler, tenant string, deadlineMS int, cost float64) *task {
	t := &task{tenant: tenant, seq: s.nextSeq(), cost: cost, job: &job{}}
	if deadlineMS > 0 {
		t.deadline = time.Unix(0, 0).Add(time.Duration(deadlineMS) * time.Millisecond)
	}
	return t
}

func TestEDFWithinWindow(t *testing.T) {
	s := newScheduler(time.Hour) // window so large that it is pure EDF
	a := mk(s, "a", 50, 1)
	b := mk(s, "b", 10, 1)
	c := mk(s, "c", 0, 1)
	d := mk(s, "a", 20, 1)
	for _, x := range []*task{a, b, c, d} {
		if err := s.push(x); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []*task{b, d, a, c} {
		if got := s.pop(); got != want {
			t.Fatalf("pop %d: tenant %s deadline %v, want tenant %s deadline %v", i, got.tenant, got.deadline, want.tenant, want.deadline)
		}
	}
}

// TestFloodCannotStarve: tenant "flood" queues 1,000 tasks with earlier
// deadlines than the light tenant's; with a small window the light tenant
// still gets every other stage.
func TestFloodCannotStarve(t *testing.T) {
	s := newScheduler(2 * time.Millisecond)
	for i := 0; i < 1000; i++ {
		s.push(mk(s, "flood", 1+i, 1))
	}
	for i := 0; i < 10; i++ {
		s.push(mk(s, "light", 5000+i, 1))
	}
	// Within 40 pops the light tenant's 10 tasks must all have run.
	light := 0
	for i := 0; i < 40; i++ {
		if s.pop().tenant == "light" {
			light++
		}
	}
	if light != 10 {
		t.Fatalf("light tenant got %d of its 10 stages in the first 40, want all 10", light)
	}
}

func TestWeightsShareService(t *testing.T) {
	s := newScheduler(0)
	s.setWeight("heavy", 3)
	for i := 0; i < 400; i++ {
		s.push(mk(s, "heavy", 0, 1))
		s.push(mk(s, "light", 0, 1))
	}
	n := map[string]int{}
	for i := 0; i < 400; i++ {
		n[s.pop().tenant]++
	}
	if n["heavy"] < 290 || n["heavy"] > 310 {
		t.Fatalf("weight 3 vs 1 gave %v stages, want about 300:100", n)
	}
}

func TestIdleTenantBanksNoCredit(t *testing.T) {
	s := newScheduler(0)
	for i := 0; i < 100; i++ {
		s.push(mk(s, "busy", 0, 1))
	}
	for i := 0; i < 50; i++ {
		s.pop()
	}
	// A tenant arriving now starts at the current virtual time: it shares
	// from here on instead of taking the next 50 stages alone.
	for i := 0; i < 50; i++ {
		s.push(mk(s, "late", 0, 1))
	}
	n := map[string]int{}
	for i := 0; i < 20; i++ {
		n[s.pop().tenant]++
	}
	if n["busy"] < 8 {
		t.Fatalf("after a new tenant arrived, the busy one got %d of 20 stages", n["busy"])
	}
}

func TestCloseWakesWorkers(t *testing.T) {
	s := newScheduler(time.Millisecond)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); s.pop() }()
	}
	s.close()
	wg.Wait()
	if err := s.push(mk(s, "a", 0, 1)); !errors.Is(err, errClosed) {
		t.Fatalf("push after close: %v", err)
	}
}

func TestPopBatchTakesSameStageOnly(t *testing.T) {
	s := newScheduler(time.Hour)
	mkg := func(tenant string, deadline int, group string) *task {
		x := mk(s, tenant, deadline, 1)
		x.group = group
		return x
	}
	a1 := mkg("a", 10, "m/0")
	b1 := mkg("b", 20, "m/0")
	a2 := mkg("a", 30, "m/1")
	c1 := mkg("c", 40, "m/0")
	d1 := mkg("d", 5, "") // not batchable, but earliest
	for _, x := range []*task{a1, b1, a2, c1, d1} {
		s.push(x)
	}
	if got := s.popBatch(8); len(got) != 1 || got[0] != d1 {
		t.Fatalf("an unbatchable head comes alone: %v", got)
	}
	got := s.popBatch(2)
	if len(got) != 2 || got[0] != a1 || got[1] != b1 {
		t.Fatalf("batch of 2 at m/0: got %d tasks", len(got))
	}
	got = s.popBatch(8)
	if len(got) != 1 || got[0] != a2 {
		t.Fatalf("next is a2 alone (m/1), got %d tasks", len(got))
	}
	if got = s.popBatch(8); len(got) != 1 || got[0] != c1 || s.len() != 0 {
		t.Fatalf("last is c1, then empty; %d left", s.len())
	}
}

func TestBatchNeverCostsADeadline(t *testing.T) {
	s := newScheduler(time.Hour)
	s.batchBudget = 1000 // only the deadline limits the batch here
	now := time.Now()
	mkd := func(tenant string, in time.Duration) *task {
		x := mk(s, tenant, 0, 1)
		x.group, x.stageMS = "m/0", 10
		if in > 0 {
			x.deadline = now.Add(in)
		}
		return x
	}
	tight := mkd("a", 25*time.Millisecond) // room for a batch of 2 (20 ms), not 3
	loose1 := mkd("b", 0)
	loose2 := mkd("c", 0)
	for _, x := range []*task{tight, loose1, loose2} {
		s.push(x)
	}
	got := s.popBatch(8)
	if len(got) != 2 || got[0] != tight {
		t.Fatalf("batch of %d with a 25 ms deadline and 10 ms stages, want 2", len(got))
	}
	if got = s.popBatch(8); len(got) != 1 {
		t.Fatalf("the rest: %d", len(got))
	}
}

// TestHeavyStagesAreNotBatched: a batch is predicted to take the stage's
// time alone plus each further member's work alone, and may take no more
// than the batch budget (2 ms) or one stage alone: heavy stages run alone,
// small ones batched, and a small stage whose time alone is long because
// it was descheduled (its work is short) is still batched.
func TestHeavyStagesAreNotBatched(t *testing.T) {
	cases := []struct {
		name            string
		stageMS, itemMS float64
		want            int
	}{
		{"100 ms stages", 100, 0, 1},
		{"100 ms stages, 90 ms of work", 100, 90, 1},
		{"0.2 ms stages: 10 fit 2 ms, max is 8", 0.2, 0, 8},
		{"1.5 ms stages of 1.5 ms work", 1.5, 1.5, 1},
		{"1.5 ms stages of 0.1 ms work: 1.5 + 5 × 0.1 fits 2 ms", 1.5, 0.1, 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newScheduler(time.Hour)
			for range 10 {
				x := mk(s, "a", 0, 1)
				x.group, x.stageMS, x.itemMS = "m/0", c.stageMS, c.itemMS
				s.push(x)
			}
			if got := s.popBatch(8); len(got) != c.want {
				t.Fatalf("batch of %d, want %d", len(got), c.want)
			}
		})
	}
}

// TestWorkerOutlivesStolenTasks: a worker woken for a task that an inline
// runner takes first goes back to waiting. It used to get nil, which ends
// a worker: over a long run the agent lost its workers one by one, and
// tasks re-entering for their next stage were stranded (found by the soak:
// 4 requests never answered, queue depth 4 at the end).
func TestWorkerOutlivesStolenTasks(t *testing.T) {
	s := newScheduler(0)
	var closing atomic.Bool
	workerGotNil := make(chan bool, 1)
	go func() { // a worker, as in Agent.work
		for {
			if s.popBatch(4) == nil {
				workerGotNil <- closing.Load()
				return
			}
		}
	}()
	// An inline runner: push (waking the worker), then try to take a task
	// itself, as the intake does.
	for range 50000 {
		if err := s.push(mk(s, "a", 0, 1)); err != nil {
			t.Fatal(err)
		}
		s.tryPopBatch(4)
	}
	closing.Store(true)
	s.close()
	if afterClose := <-workerGotNil; !afterClose {
		t.Fatal("popBatch returned nil while the scheduler was open: the worker would have stopped")
	}
}

// TestOneWakeReachesEveryWorker: tasks queued without waking anyone (as
// a stage's follow-up and inline intake queue them) and then a single
// wake: every waiting worker gets a task, because a worker that pops
// while more waits wakes the next.
func TestOneWakeReachesEveryWorker(t *testing.T) {
	s := newScheduler(time.Hour)
	const workers = 3
	got := make(chan *task, workers)
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := s.popBatch(1)
			got <- ts[0]
			<-release // busy: this worker pops nothing more
		}()
	}
	for {
		s.mu.Lock()
		n := s.waiting
		s.mu.Unlock()
		if n == workers {
			break
		}
		runtime.Gosched()
	}
	for i := 0; i < workers; i++ {
		if err := s.pushWake(mk(s, "a", 0, 1), false); err != nil {
			t.Fatal(err)
		}
	}
	s.wakeIfQueued()
	for i := 0; i < workers; i++ {
		select {
		case <-got: // each worker holds one task: the chain reached it
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d waiting workers were woken for the %d queued tasks", i, workers, workers)
		}
	}
	if n := s.len(); n != 0 {
		t.Fatalf("%d tasks left queued, want 0", n)
	}
	close(release)
	wg.Wait()
}

// TestCompanyWait: a task with a company wait is not handed out until its
// company (a batch of that many tasks of its stage, any tenant) is queued,
// then they run as one batch, or until its wait ends; a task that does not
// wait runs at once and takes the waiting ones along only when the batch
// comes to their company; without a wait, at a stage whose recent arrivals
// make company unlikely within it, or at one whose batch budget lets no
// batch run, it runs at once; closing the scheduler hands it out.
func TestCompanyWait(t *testing.T) {
	cases := []struct {
		name string
		// script: one step per character. "w": push a task of tenant
		// sensor at stage m/0 that waits for company (3 with the
		// case's wait and stage time); "x": push a task of tenant load
		// at m/0 that does not wait; "y": push a task of sensor at m/1
		// that does not wait; "c": close; a digit n: tryPopBatch(8)
		// must hand out n tasks ("0": none), all of one stage.
		script  string
		wait    time.Duration
		stageMS float64
		// firstY: the batches of one task are the "y" task.
		firstY bool
	}{
		{"no wait runs at once", "w1", 0, 0.01, false},
		{"waits, then runs with its company", "w0w0w3", time.Hour, 0.01, false},
		{"a task that does not wait goes alone", "w0x1w0", time.Hour, 0.01, false},
		{"and takes waiting ones along once the batch comes to their company", "w0w0x3", time.Hour, 0.01, false},
		{"waiting and not waiting tasks make the company together", "w0xx3", time.Hour, 0.01, false},
		{"the tenant's task that does not wait goes before its waiting ones", "w0y1", time.Hour, 0.01, true},
		{"closing ends the wait", "w0w0c2", time.Hour, 0.01, false},
		{"company unlikely within a short wait", "w1", time.Microsecond, 0.01, false},
		{"the batch budget lets no batch of this stage run", "w1", time.Hour, 1.5, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newScheduler(time.Hour)
			push := func(tenant, group string, wait time.Duration) {
				x := mk(s, tenant, 0, 1)
				x.group, x.stageMS, x.companyWait, x.company = group, c.stageMS, wait, 3
				if err := s.push(x); err != nil {
					t.Fatal(err)
				}
			}
			for i, step := range c.script {
				switch step {
				case 'w':
					push("sensor", "m/0", c.wait)
				case 'x':
					push("load", "m/0", 0)
				case 'y':
					push("sensor", "m/1", 0)
				case 'c':
					s.close()
				default:
					want := int(step - '0')
					got := s.tryPopBatch(8)
					if len(got) != want {
						t.Fatalf("step %d: handed out %d tasks, want %d", i, len(got), want)
					}
					for _, x := range got {
						if x.group != got[0].group {
							t.Fatalf("step %d: a batch of stages %s and %s", i, got[0].group, x.group)
						}
					}
					if want == 1 && c.firstY && got[0].group != "m/1" {
						t.Fatalf("step %d: stage %s handed out, want the task that does not wait", i, got[0].group)
					}
				}
			}
		})
	}
}

// TestCompanyWaitEnds: a task whose company never comes is handed out by a
// blocked popBatch once its wait has ended.
func TestCompanyWaitEnds(t *testing.T) {
	s := newScheduler(time.Hour)
	// A recent stream of arrivals at the stage makes company likely.
	for range 50 {
		x := mk(s, "load", 0, 1)
		x.group = "m/0"
		s.push(x)
		s.tryPopBatch(1)
	}
	w := mk(s, "sensor", 0, 1)
	w.group, w.companyWait, w.company = "m/0", 20*time.Millisecond, 2
	s.push(w)
	if w.holdUntil.IsZero() {
		t.Fatal("the task does not wait for company despite recent arrivals at its stage")
	}
	got := s.popBatch(8) // returns when the wait's timer fires
	if len(got) != 1 || got[0] != w || time.Now().Before(w.holdUntil) {
		t.Fatalf("popBatch gave %d tasks before the wait ended", len(got))
	}
}

// A task demoted for being unable to make its deadline goes after every
// task that still can (whatever their deadlines), before the tasks
// without one, and is demoted once only.
func TestDemotedGoesAfterFeasible(t *testing.T) {
	for _, tc := range []struct {
		name    string
		others  []int // deadlines (ms) of the other tasks; 0: none
		demoted bool  // whether demote moves the late task
		want    []int // the order of pops after it, by deadline; -1: the late task
	}{
		{"nothing else queued", nil, false, []int{-1}},
		{"behind later deadlines", []int{30, 20}, true, []int{20, 30, -1}},
		{"before no deadline", []int{0, 40}, true, []int{40, -1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScheduler(time.Hour)
			late := mk(s, "cam", 5, 1)
			if err := s.push(late); err != nil {
				t.Fatal(err)
			}
			for _, d := range tc.others {
				if err := s.push(mk(s, "other", d, 1)); err != nil {
					t.Fatal(err)
				}
			}
			if got := s.pop(); got != late {
				t.Fatalf("first pop: deadline %v, want the earliest (the late task)", got.deadline)
			}
			if got := s.demote(late); got != tc.demoted {
				t.Fatalf("demote = %v, want %v", got, tc.demoted)
			}
			if !tc.demoted {
				return
			}
			for i, w := range tc.want {
				got := s.pop()
				if w == -1 {
					if got != late {
						t.Fatalf("pop %d: deadline %v, want the late task", i, got.deadline)
					}
					if s.demote(got) {
						t.Fatal("demoted twice")
					}
					continue
				}
				if got == late || (w == 0) != got.deadline.IsZero() || (w > 0 && got.deadline.UnixMilli() != int64(w)) {
					t.Fatalf("pop %d: deadline %v (late task %v), want %d ms", i, got.deadline, got == late, w)
				}
			}
		})
	}
}
