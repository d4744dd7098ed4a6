// Package procs sizes Go's scheduler (GOMAXPROCS) to the CPU a process
// uses.
//
// With more Ps than the work needs, every goroutine made runnable wakes an
// idle P's thread, which spins looking for work and parks again: on a
// 2-core box serving mnist-ee that was 12–29% of the agent's CPU per
// request at 1,500–12,000 req/s (docs/evaluation.md, "The tenth session:
// Go's scheduler sized to the agent's CPU use"). A Tuner keeps
// the Ps near what the process uses, with headroom, and gives them back
// as soon as it needs them.
package procs

import (
	"context"
	"log/slog"
	"math"
	"runtime"
	"syscall"
	"time"
)

// Tuner decides the process's GOMAXPROCS from its CPU use, sampled every
// Interval. Its zero value is ready to Run: between 1 and the GOMAXPROCS
// the process had when Run started.
type Tuner struct {
	// Max is the most Ps; 0 means runtime.GOMAXPROCS(0) when Run starts
	// (the CPUs the process may use).
	Max int
	// Floor, when set, is the fewest Ps the process may run on now; it is
	// asked every Interval. The agent's MinProcs: more than one while a
	// model's stages take milliseconds, so that intake and the network
	// never wait for a stage.
	Floor func() int
	// Interval between decisions; 0 means 500 ms.
	Interval time.Duration
	// Log gets a line for every change; nil means none.
	Log *slog.Logger

	// For tests: the process's CPU time, the setter, the clock.
	cpu func() (time.Duration, error)
	set func(int) int
	now func() time.Time
}

// Thresholds of a decision, as a share of a P's time (the process's CPU
// per P over an interval).
const (
	// up: above this the process runs short of Ps, and gets twice what
	// it used (at least one more).
	up = 0.9
	// down: below this share of one P fewer, for holdDown intervals in a
	// row, it gives one back. The gap to up keeps it from flapping: the
	// same load costs less CPU on fewer Ps.
	down     = 0.75
	holdDown = 3
	// grow is the headroom of a raise: Ps for twice the CPU used.
	grow = 0.5
)

// decide is the next GOMAXPROCS for a process on cur Ps that used cores
// (CPU seconds per second) over the last interval, after low intervals in
// a row low enough to give a P back; it returns the new low count. Pure:
// the rule, tested apart.
func decide(cur, lo, hi int, cores float64, low int) (next, lowAfter int) {
	hi = max(hi, 1)
	lo = min(max(lo, 1), hi)
	switch {
	case cur < lo:
		return lo, 0
	case cur > hi:
		return hi, 0
	case cores > up*float64(cur) && cur < hi:
		want := max(cur+1, int(math.Ceil(cores/grow)))
		return min(want, hi), 0
	case cur > lo && cores < down*float64(cur-1):
		if low+1 >= holdDown {
			return cur - 1, 0
		}
		return cur, low + 1
	default:
		return cur, 0
	}
}

// Run tunes GOMAXPROCS until ctx is done, then puts back the value it
// found. Run only one Tuner per process: GOMAXPROCS is the process's.
func (t *Tuner) Run(ctx context.Context) {
	cpu, set, now := t.cpu, t.set, t.now
	if cpu == nil {
		cpu = processCPU
	}
	if set == nil {
		set = runtime.GOMAXPROCS
	}
	if now == nil {
		now = time.Now
	}
	every := t.Interval
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	log := t.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := set(0)
	defer set(start)
	hi := t.Max
	if hi <= 0 {
		hi = start
	}
	cur := start
	c0, err := cpu()
	if err != nil {
		log.Warn("GOMAXPROCS left as it is: the process's CPU time is not readable", "err", err)
		return
	}
	t0 := now()
	low := 0
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c1, err := cpu()
		if err != nil {
			continue
		}
		t1 := now()
		wall := t1.Sub(t0)
		if wall <= 0 {
			continue
		}
		cores := (c1 - c0).Seconds() / wall.Seconds()
		c0, t0 = c1, t1
		lo := 1
		if t.Floor != nil {
			lo = t.Floor()
		}
		next, l := decide(cur, lo, hi, cores, low)
		low = l
		if next != cur {
			set(next)
			log.Info("GOMAXPROCS changed", "from", cur, "to", next, "cpu_cores", math.Round(cores*100)/100, "floor", lo)
			cur = next
		}
	}
}

// processCPU is the process's user + system CPU time.
func processCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
