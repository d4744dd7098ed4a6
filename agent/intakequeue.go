package agent

import (
	"time"

	"github.com/delen-edge/delen/broker"
)

// intakeRunners bounds how many deliveries are decoded and admitted at
// once. The MQTT client hands each delivery to a goroutine of its own; under
// a flood, thousands of them shared the CPU and a quiet tenant's request
// waited its turn among all of them. Intake never waits for the broker
// (answers go through the results path), so a few runners keep up.
const intakeRunners = 4

// delivery is a request as it arrives, before it is decoded.
type delivery struct {
	msg     broker.Message
	tenant  string
	arrival time.Time
}

// intakeQueue is the fair queue of deliveries waiting for intake, with
// runner slots and a window. The delivery goroutine that finds a slot free
// wakes a parked runner, which processes deliveries until none is pending
// or the window is full; the others leave theirs queued and return.
//
// The window is the agent's back-pressure: at most window deliveries are
// taken (decoded, admitted, served) and not yet answered. Past it,
// deliveries wait here undecoded, unacknowledged, so the broker's own
// in-flight window (Mosquitto's max_inflight_messages) holds the rest of a
// backlog: the agent takes from the broker at the pace it serves, and never
// refuses a request for being queued.
type intakeQueue struct {
	*fairQueue[delivery]
	runners int
	max     int
	window  int
	taken   int // deliveries taken by next and not yet given back by done
	peak    int // the most taken at once
}

func newIntakeQueue(runners, window int) *intakeQueue {
	return &intakeQueue{fairQueue: newFairQueue[delivery](), max: runners, window: window}
}

// push queues d and reports whether the caller took a runner slot and must
// now call next until it reports false.
func (q *intakeQueue) push(d delivery) (run bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(d.tenant, d)
	return q.startLocked()
}

// startLocked takes a runner slot when one is free and a delivery can be
// taken; q.mu is held.
func (q *intakeQueue) startLocked() bool {
	if q.runners < q.max && q.n > 0 && q.taken < q.window {
		q.runners++
		return true
	}
	return false
}

// next returns the next delivery, the tenants taking turns, and counts it
// in the window. When none is pending or the window is full it releases
// the caller's runner slot and reports false.
func (q *intakeQueue) next() (d delivery, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.taken >= q.window {
		q.runners--
		return d, false
	}
	if d, ok = q.popLocked(); !ok {
		q.runners--
		return d, false
	}
	q.taken++
	q.peak = max(q.peak, q.taken)
	return d, true
}

// done gives n deliveries' places in the window back (they were answered,
// or left to the broker to redeliver) and reports whether the caller took
// a runner slot for the deliveries now let in.
func (q *intakeQueue) done(n int) (run bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.taken -= n
	return q.startLocked()
}

// peakWindow is the most deliveries taken at once so far.
func (q *intakeQueue) peakWindow() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.peak
}

// inWindow is the number of deliveries taken and not yet answered.
func (q *intakeQueue) inWindow() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.taken
}
