package agent

import (
	"time"

	"github.com/delen-edge/delen/broker"
)

// intakeRunners bounds how many deliveries are decoded and admitted at
// once. The MQTT client hands each delivery to a goroutine of its own; under
// a flood, thousands of them shared the CPU and a quiet tenant's request
// waited its turn among all of them. Most of an intake's time is spent
// waiting for the broker (error results and republished duplicates are
// published synchronously), so the bound is well above the core count.
const intakeRunners = 64

// delivery is a request as it arrives, before it is decoded.
type delivery struct {
	msg     broker.Message
	tenant  string
	arrival time.Time
}

// intakeQueue is the fair queue of deliveries waiting for intake, with
// runner slots: the delivery goroutine that finds a slot free becomes a
// runner and processes deliveries until none is pending; the others leave
// theirs queued and return.
type intakeQueue struct {
	*fairQueue[delivery]
	runners int
	max     int
}

func newIntakeQueue(max int) *intakeQueue {
	return &intakeQueue{fairQueue: newFairQueue[delivery](), max: max}
}

// push queues d and reports whether the caller took a runner slot and must
// now call next until it reports false.
func (q *intakeQueue) push(d delivery) (run bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(d.tenant, d)
	if q.runners < q.max {
		q.runners++
		return true
	}
	return false
}

// next returns the next delivery, the tenants taking turns. When none is
// pending it releases the caller's runner slot and reports false.
func (q *intakeQueue) next() (d delivery, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if d, ok = q.popLocked(); !ok {
		q.runners--
	}
	return d, ok
}
