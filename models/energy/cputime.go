package energy

import (
	"fmt"
	"time"
)

// Work is what one piece of work (a model stage) cost, as Measure takes it.
type Work struct {
	// Wall is the elapsed time of the work, descheduled time included:
	// what a deadline sees.
	Wall time.Duration
	// CPU is the CPU time of the thread that ran it (user + system), the
	// work itself: what the model meter charges. It equals Wall when the
	// platform has no per-thread CPU clock.
	CPU time.Duration
	// MJ is the energy the meter reports for the work; 0 when the reading
	// failed (MeterErr says why).
	MJ       float64
	MeterErr error
}

// Measure runs work and returns its wall time, the CPU time of the OS
// thread that ran it and the energy meter reports for it (the model
// meter: watts × that CPU time; INA3221 and RAPL: their own readings over
// the interval). It is meant for work that is one cgo call, such as an ONNX
// Runtime session run: a goroutine stays on its thread for the duration of
// a cgo call, and with one intra-op thread ONNX Runtime runs the session on
// the calling thread, so that thread's CPU time is the stage's work and
// excludes any time it spent descheduled.
//
// The thread is named before the call and its CPU clock read again after
// it by name, from wherever the goroutine has got to: the goroutine is not
// locked to its thread (a locked goroutine that loses its P during a long
// cgo call waits for that very thread to be woken to go on, which costs
// milliseconds on a busy machine). Work that moves between threads midway
// (Go code that blocks) is undercounted; the CPU time is capped at the
// wall time, and is the wall time where the platform has no thread CPU
// clock (non-Linux).
//
// Profiles, live profiles and each result's compute and energy are all
// measured by this one function, so they agree on what they measure. The
// error is the work's; a failed meter reading is Work.MeterErr.
func Measure(meter Meter, work func() error) (Work, error) {
	reading := meter.Start()
	clock, c0, ok := threadClock()
	t0 := time.Now()
	err := work()
	wall := time.Since(t0)
	w := Work{Wall: wall, CPU: wall}
	if ok {
		if c1, ok := readClock(clock); ok && c1 >= c0 {
			w.CPU = min(c1-c0, wall)
		}
	}
	if err != nil {
		return w, err
	}
	if w.MJ, w.MeterErr = reading.Stop(w.CPU); w.MeterErr != nil {
		w.MJ = 0
		w.MeterErr = fmt.Errorf("energy reading: %w", w.MeterErr)
	}
	return w, nil
}

// ThreadCPU is the CPU time the calling OS thread has used, and whether the
// platform reports it.
func ThreadCPU() (time.Duration, bool) {
	_, cpu, ok := threadClock()
	return cpu, ok
}
