package agent

import (
	"container/heap"
	"errors"
	"math"
	"sort"
	"sync"
	"time"
)

// errClosed is returned by push after close.
var errClosed = errors.New("scheduler closed")

// task is one request's unit of scheduling: it waits for its next stage.
type task struct {
	tenant   string
	deadline time.Time // zero: no latency bound
	seq      uint64    // arrival order, for ties
	cost     float64   // predicted ms of the next stage, charged to the tenant
	// group names the model stage the task waits for ("model/stage") when
	// that stage can run batched; tasks of one group may run together.
	group string
	// stageMS is the stage's predicted (p95) time alone, itemMS its
	// predicted (p95) work alone (the thread's CPU time); a batch of n is
	// predicted to take stageMS + (n-1) × itemMS (batchMS).
	stageMS, itemMS float64
	// companyWait is how long the task may wait for company at its stage
	// (other tasks of its group to run with as one batch of company
	// tasks, itself included) while fewer are queued there; 0: never.
	// holdUntil is when such a wait ends, set at push (zero: not
	// waiting).
	companyWait time.Duration
	company     int
	holdUntil   time.Time
	queuedAt    time.Time
	// demoted: the task was found unable to make its deadline even at
	// exit 1 and is to be served late (infeasible: late); it goes after
	// every task that can still make its own (see scheduler.demote).
	demoted bool
	job     *job
	index   int // in the tenant's heap
}

// rank is a task's class in the order: deadlines that can still be met,
// then demoted tasks, then tasks without a deadline.
func (t *task) rank() int {
	switch {
	case t.deadline.IsZero():
		return 2
	case t.demoted:
		return 1
	}
	return 0
}

// before orders tasks: earliest deadline first among those that can
// still make it, then the demoted ones (earliest deadline first), then no
// deadline, then arrival order (so a request that has started goes
// before newer ones).
func (a *task) before(b *task) bool {
	if ra, rb := a.rank(), b.rank(); ra != rb {
		return ra < rb
	}
	if ad, bd := a.deadline, b.deadline; !ad.Equal(bd) {
		return ad.Before(bd)
	}
	return a.seq < b.seq
}

type taskHeap []*task

func (h taskHeap) Len() int           { return len(h) }
func (h taskHeap) Less(i, j int) bool { return h[i].before(h[j]) }
func (h taskHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *taskHeap) Push(x any)        { t := x.(*task); t.index = len(*h); *h = append(*h, t) }
func (h *taskHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return t
}

// tenantQueue is one tenant's waiting tasks and its share accounting.
type tenantQueue struct {
	name   string
	weight float64
	tasks  taskHeap
	// vt is the tenant's virtual time: weighted service received (ms/weight).
	vt float64
}

// defaultBatchBudgetMS bounds a batch's predicted time.
const defaultBatchBudgetMS = 2.0

// scheduler holds one queue per tenant and hands the next stage to run to
// the workers. Across tenants it runs earliest deadline first among the
// tenants whose weighted service is within window of the least-served
// active tenant, so a flooding tenant cannot starve the others (weighted
// fair sharing at stage granularity) while deadlines still order the rest.
// A request re-enters after each stage, so a long request never holds a
// worker for more than one stage while a shorter one waits.
type scheduler struct {
	mu   sync.Mutex
	cond *sync.Cond
	// waiting is how many workers wait in popBatch.
	waiting int
	queues  map[string]*tenantQueue
	active  map[*tenantQueue]struct{}
	window  float64 // ms of weighted service
	// batchBudget is the longest a batch may be predicted to take (ms).
	batchBudget float64
	seq         uint64
	closed      bool
	length      int
	// vfloor is the virtual time a tenant starts from when it becomes
	// active: no tenant banks credit while idle.
	vfloor float64
	// plan books the work planned for the requests with deadlines, and
	// rates the tenants' recent arrivals (plan.go).
	plan  *planBook
	rates map[string]*tenantRate
	// slowdown is how much longer stages take than predicted, recently
	// (the mean ratio); slowdownVar is the ratio's recent variance.
	slowdown, slowdownVar float64
	// groups counts the queued tasks of each batching group, and
	// groupRates rates the group's recent arrivals, for company waits.
	groups     map[string]int
	groupRates map[string]*tenantRate
	// holdTimer wakes the workers when the earliest company wait ends
	// (holdAt); nil when none is armed.
	holdTimer *time.Timer
	holdAt    time.Time
}

// maxGroupRates bounds the group rates kept (models × stages).
const maxGroupRates = 1024

func newScheduler(window time.Duration) *scheduler {
	s := &scheduler{queues: map[string]*tenantQueue{}, active: map[*tenantQueue]struct{}{},
		window: float64(window) / float64(time.Millisecond), batchBudget: defaultBatchBudgetMS,
		plan: newPlanBook(1, time.Now()), rates: map[string]*tenantRate{}, slowdown: 1,
		groups: map[string]int{}, groupRates: map[string]*tenantRate{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// setWorkers tells the plan how many workers run stages; it empties the
// plan, so it is called before requests are admitted.
func (s *scheduler) setWorkers(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.plan = newPlanBook(n, time.Now())
}

// setWeight sets a tenant's share weight (> 0).
func (s *scheduler) setWeight(tenant string, w float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue(tenant).weight = w
}

func (s *scheduler) queue(tenant string) *tenantQueue {
	q := s.queues[tenant]
	if q == nil {
		q = &tenantQueue{name: tenant, weight: 1}
		s.queues[tenant] = q
	}
	return q
}

// nextSeq numbers a new request.
func (s *scheduler) nextSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.seq
}

// push queues t (a new request, or one re-entering after a stage); it
// fails only once the scheduler is closed. The tenant's cap on unanswered
// requests is applied at admission, before.
func (s *scheduler) push(t *task) error {
	return s.pushWake(t, true)
}

// pushWake is push; with wake false no waiting worker is woken (the
// caller is about to run the task itself, and calls wakeIfQueued after).
func (s *scheduler) pushWake(t *task, wake bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	q := s.queue(t.tenant)
	if _, ok := s.active[q]; !ok {
		q.vt = math.Max(q.vt, s.vfloor)
		s.active[q] = struct{}{}
	}
	t.holdUntil = time.Time{}
	if t.group != "" {
		now := time.Now()
		s.groups[t.group]++
		r := s.groupRates[t.group]
		if r == nil {
			if len(s.groupRates) >= maxGroupRates {
				clear(s.groupRates)
			}
			r = &tenantRate{last: now}
			s.groupRates[t.group] = r
		}
		r.rate = r.decayed(now) + 1/rateTau
		r.last = now
		// Short of its company at its stage, with company expected soon:
		// wait for it. It waits only where the stage's recent arrival
		// rate promises company within the wait (else waiting only adds
		// latency), and for no bigger a batch than the batch budget lets
		// run.
		if t.companyWait > 0 && r.rate*float64(t.companyWait)/float64(time.Millisecond) >= 1 {
			t.company = min(t.company, s.batchMax(t))
			if s.groups[t.group] < t.company {
				t.holdUntil = now.Add(t.companyWait)
			}
		}
	}
	heap.Push(&q.tasks, t)
	s.length++
	if wake {
		s.cond.Signal()
	}
	return nil
}

// demote puts t, just taken for its first stage and found unable to make
// its deadline, back behind every task that can still make its own: it
// will be served late (infeasible: late), but not first. Under EDF a
// request already late has the earliest deadline of all, so serving it
// first makes the next one late too, and so on through a burst (the
// domino effect of EDF under overload); demoted, it costs only itself
// its deadline. Its share is refunded (it ran nothing) and its planned
// work unbooked: it runs only where no planned work waits. It reports
// false, and does nothing, when t was demoted before or when nothing else
// is queued (serving it now delays no one).
func (s *scheduler) demote(t *task) bool {
	s.mu.Lock()
	if t.demoted || s.length == 0 || s.closed {
		s.mu.Unlock()
		return false
	}
	t.demoted = true
	q := s.queue(t.tenant)
	q.vt -= t.cost / q.weight
	s.plan.set(t.job, 0, time.Now())
	s.mu.Unlock()
	return s.pushWake(t, false) == nil
}

// wakeIfQueued wakes a waiting worker when tasks are queued.
func (s *scheduler) wakeIfQueued() {
	s.mu.Lock()
	n := s.length
	s.mu.Unlock()
	if n > 0 {
		s.cond.Signal()
	}
}

// pop blocks until a task is ready and returns it, or returns nil once the
// scheduler is closed and empty.
func (s *scheduler) pop() *task {
	ts := s.popBatch(1)
	if ts == nil {
		return nil
	}
	return ts[0]
}

// popBatch is pop, plus up to max-1 more tasks waiting for the same model
// stage (any tenant, best first), to run as one batch. It takes only what
// is already queued, so batching never delays a task, except one that
// waits for company (task.companyWait): it is not handed out while fewer
// than its company are queued at its stage and its wait has not ended.
func (s *scheduler) popBatch(max int) []*task {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.length == 0 {
			if s.closed {
				return nil
			}
			s.waiting++
			s.cond.Wait()
			s.waiting--
			continue
		}
		// Taken under the same lock as the wait: were it released in
		// between, an inline runner could take the task first, and a nil
		// here would end the worker.
		if ts := s.popBatchLocked(max); ts != nil {
			if s.length > 0 {
				// More waits than this worker took: wake another one
				// (pushes after a stage wake nobody; see Agent.after).
				s.cond.Signal()
			}
			return ts
		}
		// Everything queued waits for company.
		s.armHold()
		s.waiting++
		s.cond.Wait()
		s.waiting--
	}
}

// holding reports whether t is waiting for company at now: it has a wait
// that has not ended and fewer than its company of tasks of its group are
// queued (plus extra taken out for a batch). On a closed scheduler nothing
// waits.
func (s *scheduler) holding(t *task, now time.Time, extra int) bool {
	return !t.holdUntil.IsZero() && now.Before(t.holdUntil) && s.groups[t.group]+extra < t.company && !s.closed
}

// ready is the task of q to hand out next at now: its best task that does
// not wait for company; nil when all of them do. s.mu is held.
func (s *scheduler) ready(q *tenantQueue, now time.Time) *task {
	if t := q.tasks[0]; !s.holding(t, now, 0) {
		return t
	}
	var best *task
	for _, t := range q.tasks[1:] {
		if !s.holding(t, now, 0) && (best == nil || t.before(best)) {
			best = t
		}
	}
	return best
}

// batchMS is the predicted time of a batch of n of t's stage: the stage's
// time alone, plus each further member's work alone. The time alone holds
// what the stage waits for besides its work (descheduled on a busy
// machine, where its p95 can be many times its work): a batch waits that
// once, not once per member. (A member's share of the work is less than
// its work alone: the call's overhead is paid once.)
func batchMS(t *task, n int) float64 {
	item := t.itemMS
	if item <= 0 || item > t.stageMS {
		item = t.stageMS
	}
	return t.stageMS + float64(n-1)*item
}

// batchMax is the largest batch of t's stage that the batch budget lets
// run (popBatchLocked).
func (s *scheduler) batchMax(t *task) int {
	limit := math.Max(t.stageMS, s.batchBudget)
	n := 1
	for n < math.MaxInt16 && batchMS(t, n+1) <= limit {
		n++
	}
	return n
}

// armHold makes sure the workers are woken when the earliest company wait
// of a queue's next task ends. s.mu is held.
func (s *scheduler) armHold() {
	var at time.Time
	for q := range s.active {
		for _, t := range q.tasks {
			if !t.holdUntil.IsZero() && (at.IsZero() || t.holdUntil.Before(at)) {
				at = t.holdUntil
			}
		}
	}
	if at.IsZero() || (s.holdTimer != nil && !s.holdAt.After(at)) {
		return
	}
	if s.holdTimer != nil {
		s.holdTimer.Stop()
	}
	s.holdAt = at
	s.holdTimer = time.AfterFunc(time.Until(at), func() {
		s.mu.Lock()
		s.holdTimer, s.holdAt = nil, time.Time{}
		s.mu.Unlock()
		s.cond.Broadcast()
	})
}

// popBatchLocked takes a batch, or nil when every queued task waits for
// company; s.mu is held and the scheduler is not empty.
func (s *scheduler) popBatchLocked(max int) []*task {
	first := s.take()
	if first == nil {
		return nil
	}
	out := []*task{first}
	if max <= 1 || first.group == "" || s.length == 0 {
		return out
	}
	// A task waiting for company joins a batch that has come to its
	// company (counting the first task), or one whose first task's wait
	// is over; else it waits on for a batch that size, rather than be
	// taken along by every task that does not wait.
	now := time.Now()
	over := !first.holdUntil.IsZero()
	var more []*task
	for q := range s.active {
		for _, t := range q.tasks {
			if t.group == first.group && (over || !s.holding(t, now, 1)) {
				more = append(more, t)
			}
		}
	}
	sort.Slice(more, func(i, j int) bool { return more[i].before(more[j]) })
	// A task joins only while the batch, predicted to take batchMS, still
	// ends before every member's deadline: riding in a batch
	// must not cost anyone a deadline.
	earliest := first.deadline
	if !earliest.After(now) {
		earliest = time.Time{}
	}
	joined := more[:0]
	for _, t := range more {
		if len(joined)+1 >= max {
			break
		}
		d := earliest
		if !t.deadline.IsZero() && t.deadline.After(now) && (d.IsZero() || t.deadline.Before(d)) {
			d = t.deadline
		}
		n := batchMS(first, len(joined)+2)
		// A batch may not take much longer than one stage would (else it
		// holds a worker that a newly arrived request with a tight
		// deadline needs): batching pays for small stages, where the
		// per-call overhead dominates, not for heavy ones.
		if n > math.Max(first.stageMS, s.batchBudget) {
			break
		}
		// (A deadline already passed cannot be saved by running alone.)
		if !d.IsZero() && d.After(now) && now.Add(time.Duration(n*float64(time.Millisecond))).After(d) {
			continue
		}
		earliest = d
		joined = append(joined, t)
	}
	more = joined
	for _, t := range more {
		q := s.queues[t.tenant]
		heap.Remove(&q.tasks, t.index)
		s.account(q, t)
		out = append(out, t)
	}
	return out
}

// tryPopBatch is popBatch without waiting: nil when nothing is queued
// (or all of it waits for company).
func (s *scheduler) tryPopBatch(max int) []*task {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.length == 0 {
		return nil
	}
	return s.popBatchLocked(max)
}

// take removes the next task by the scheduling rule, passing over the
// tasks that wait for company (a tenant's next task that does not wait
// goes instead); nil when every queued task waits. s.mu is
// held and the scheduler is not empty.
func (s *scheduler) take() *task {
	minVT := math.Inf(1)
	for q := range s.active {
		minVT = math.Min(minVT, q.vt)
	}
	now := time.Now()
	var best *tenantQueue
	var bt *task
	for q := range s.active {
		if q.vt > minVT+s.window {
			continue
		}
		t := s.ready(q, now)
		if t == nil {
			continue
		}
		if best == nil || t.before(bt) || (!bt.before(t) && q.vt < best.vt) {
			best, bt = q, t
		}
	}
	if best == nil {
		// Every eligible queue's tasks wait for company; the share window
		// may have left out one that does not.
		for q := range s.active {
			if t := s.ready(q, now); t != nil && (best == nil || q.vt < best.vt) {
				best, bt = q, t
			}
		}
		if best == nil {
			return nil
		}
	}
	t := heap.Remove(&best.tasks, bt.index).(*task)
	s.vfloor = math.Max(s.vfloor, minVT)
	s.account(best, t)
	return t
}

// account books a task taken out of q.
func (s *scheduler) account(q *tenantQueue, t *task) {
	s.length--
	if t.group != "" {
		if s.groups[t.group]--; s.groups[t.group] <= 0 {
			delete(s.groups, t.group)
		}
	}
	q.vt += t.cost / q.weight
	if len(q.tasks) == 0 {
		delete(s.active, q)
	}
}

// depth is the number of tasks waiting for tenant.
func (s *scheduler) depth(tenant string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.queues[tenant]; q != nil {
		return len(q.tasks)
	}
	return 0
}

// len is the number of tasks waiting in all queues.
func (s *scheduler) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.length
}

// close wakes every waiting pop; tasks already queued are still handed out.
func (s *scheduler) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cond.Broadcast()
}
