package energy

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// threadClock names the calling OS thread's CPU clock and reads it. The
// clock id is the thread's own (Linux's MAKE_THREAD_CPUCLOCK(tid,
// CPUCLOCK_SCHED), what pthread_getcpuclockid returns), so a later
// readClock measures that thread from whichever thread the goroutine has
// moved to. The thread id comes from threadID (cached per thread where
// cgo is on: one system call fewer per stage); the clock is read with a
// raw system call, which is no scheduling point.
func threadClock() (clock int32, cpu time.Duration, ok bool) {
	clock = ^int32(threadID())<<3 | 6
	cpu, ok = readClock(clock)
	return clock, cpu, ok
}

// readClock reads a CPU clock named by threadClock.
func readClock(clock int32) (time.Duration, bool) {
	var ts unix.Timespec
	_, _, errno := unix.RawSyscall(unix.SYS_CLOCK_GETTIME, uintptr(clock), uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
