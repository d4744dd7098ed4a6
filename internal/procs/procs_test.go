package procs

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name           string
		cur, lo, hi    int
		cores          float64
		low            int
		next, lowAfter int
	}{
		{"quiet on one P stays", 1, 1, 2, 0.3, 0, 1, 0},
		{"one P near full gets a second", 1, 1, 2, 0.95, 0, 2, 0},
		{"one P at 0.85 stays", 1, 1, 2, 0.85, 0, 1, 0},
		{"one P saturated on 8 CPUs doubles", 1, 1, 8, 1.0, 0, 2, 0},
		{"two Ps saturated on 8 CPUs: Ps for twice the use", 2, 1, 8, 1.9, 0, 4, 0},
		{"never above hi", 4, 1, 4, 3.9, 0, 4, 0},
		{"light load on two Ps counts an interval", 2, 1, 2, 0.7, 0, 2, 1},
		{"light load on two Ps for holdDown intervals gives one back", 2, 1, 2, 0.4, holdDown - 1, 1, 0},
		{"a busy interval resets the count", 2, 1, 2, 0.8, holdDown - 1, 2, 0},
		{"between down and up: stays", 2, 1, 2, 0.8, 0, 2, 0},
		{"two Ps saturated on 2 CPUs stay", 2, 1, 2, 1.9, 0, 2, 0},
		{"the floor holds the Ps up", 3, 3, 4, 0.1, holdDown - 1, 3, 0},
		{"a raised floor takes effect at once", 1, 3, 4, 0.1, 0, 3, 0},
		{"a floor above hi is hi", 1, 9, 4, 0.1, 0, 4, 0},
		{"hi lowered below cur", 6, 1, 4, 0.1, 0, 4, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, low := decide(tc.cur, tc.lo, tc.hi, tc.cores, tc.low)
			if next != tc.next || low != tc.lowAfter {
				t.Errorf("decide(cur %d, lo %d, hi %d, cores %.2f, low %d) = %d, %d; want %d, %d",
					tc.cur, tc.lo, tc.hi, tc.cores, tc.low, next, low, tc.next, tc.lowAfter)
			}
		})
	}
}

// fakeProcess is a process whose CPU use the test sets: each reading of
// its CPU time moves its clock on by one interval and its CPU time by
// cores × that interval.
type fakeProcess struct {
	mu    sync.Mutex
	procs int
	cores float64
	cpu   time.Duration
	clock time.Time
	sets  chan int // every set, as it happens
}

const every = time.Millisecond

func (f *fakeProcess) set(n int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	prev := f.procs
	if n > 0 {
		f.procs = n
		f.sets <- n
	}
	return prev
}

func (f *fakeProcess) readCPU() (time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock = f.clock.Add(every)
	f.cpu += time.Duration(f.cores * float64(every))
	return f.cpu, nil
}

func (f *fakeProcess) readClock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock
}

func (f *fakeProcess) setCores(c float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cores = c
}

// The tuner gives a P back after light intervals, takes it again when the
// load comes, and puts the starting value back when it stops.
func TestRunFollowsTheLoad(t *testing.T) {
	f := &fakeProcess{procs: 2, cores: 0.3, clock: time.Unix(0, 0), sets: make(chan int, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	tu := &Tuner{Interval: every, cpu: f.readCPU, set: f.set, now: f.readClock}
	go func() {
		defer close(done)
		tu.Run(ctx)
	}()
	if got := <-f.sets; got != 1 {
		t.Fatalf("at 0.3 cores on 2 Ps: set %d; want 1", got)
	}
	f.setCores(0.95)
	if got := <-f.sets; got != 2 {
		t.Fatalf("at 0.95 cores on 1 P: set %d; want 2", got)
	}
	cancel()
	<-done
	if got := <-f.sets; got != 2 {
		t.Fatalf("after Run: set %d; want the starting 2", got)
	}
}

// A floor above one keeps the Ps up however light the load.
func TestRunKeepsTheFloor(t *testing.T) {
	f := &fakeProcess{procs: 4, cores: 0.05, clock: time.Unix(0, 0), sets: make(chan int, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	floor := make(chan int, 1)
	floor <- 3
	var lo int
	tu := &Tuner{Interval: every, cpu: f.readCPU, set: f.set, now: f.readClock, Floor: func() int {
		select {
		case lo = <-floor:
		default:
		}
		return lo
	}}
	go func() {
		defer close(done)
		tu.Run(ctx)
	}()
	if got := <-f.sets; got != 3 {
		t.Fatalf("floor 3 at 0.05 cores on 4 Ps: set %d; want 3", got)
	}
	floor <- 1
	if got := <-f.sets; got != 2 {
		t.Fatalf("floor lowered to 1: set %d; want 2 (one P at a time)", got)
	}
	cancel()
	<-done
}
