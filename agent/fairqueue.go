package agent

import "sync"

// fairQueue holds items per tenant and hands them out one tenant at a time,
// in turn, oldest first within a tenant: a tenant with a backlog of
// thousands delays another tenant's item by at most one of its own per turn.
// The agent keeps two: deliveries waiting for intake, and results waiting
// for a publisher. The zero value is not usable; see newFairQueue.
type fairQueue[T any] struct {
	mu      sync.Mutex
	ready   sync.Cond // signalled when an item is added or the queue closes
	pending map[string][]T
	turn    []string // tenants with pending items, in turn order
	n       int
	closed  bool
}

func newFairQueue[T any]() *fairQueue[T] {
	q := &fairQueue[T]{pending: map[string][]T{}}
	q.ready.L = &q.mu
	return q
}

// addLocked queues v under tenant; q.mu is held.
func (q *fairQueue[T]) addLocked(tenant string, v T) {
	p := q.pending[tenant]
	if len(p) == 0 {
		q.turn = append(q.turn, tenant)
	}
	q.pending[tenant] = append(p, v)
	q.n++
}

// popLocked takes the oldest item of the tenant whose turn it is; q.mu is
// held.
func (q *fairQueue[T]) popLocked() (v T, ok bool) {
	if len(q.turn) == 0 {
		return v, false
	}
	t := q.turn[0]
	q.turn[0] = ""
	q.turn = q.turn[1:]
	p := q.pending[t]
	v = p[0]
	var zero T
	p[0] = zero // let the item be collected once handled
	if p = p[1:]; len(p) == 0 {
		delete(q.pending, t)
	} else {
		q.pending[t] = p
		q.turn = append(q.turn, t)
	}
	q.n--
	return v, true
}

// push queues v under tenant and wakes one waiter.
func (q *fairQueue[T]) push(tenant string, v T) {
	q.mu.Lock()
	q.addLocked(tenant, v)
	q.mu.Unlock()
	q.ready.Signal()
}

// wait blocks until an item is queued and returns it; after close it
// returns the items left, then false.
func (q *fairQueue[T]) wait() (v T, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n == 0 && !q.closed {
		q.ready.Wait()
	}
	return q.popLocked()
}

// close wakes every waiter; items already queued are still handed out.
func (q *fairQueue[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.ready.Broadcast()
}

// len is the number of items queued.
func (q *fairQueue[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}
