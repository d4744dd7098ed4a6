package energy

import (
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestThreadIDIsTheCallingThread: on every thread, each new one after
// the last has ended, threadID is what gettid(2) says, every time (a
// cache shared between threads would give the first thread's id), so the
// clock Measure names is the thread that runs the work and no other's.
func TestThreadIDIsTheCallingThread(t *testing.T) {
	var wg sync.WaitGroup
	const threads = 8
	errs := make(chan string, threads)
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // a thread of its own, ended with the goroutine
			for range 100 {
				if got, want := threadID(), unix.Gettid(); got != want {
					errs <- "threadID() differs from gettid"
					return
				}
			}
		}()
		wg.Wait() // one at a time, so the next goroutine gets a new thread
	}
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// BenchmarkThreadID: the thread id Measure names a clock with, against
// the system call it replaces.
func BenchmarkThreadID(b *testing.B) {
	b.Run("threadID", func(b *testing.B) {
		for b.Loop() {
			threadID()
		}
	})
	b.Run("gettid", func(b *testing.B) {
		for b.Loop() {
			unix.RawSyscall(unix.SYS_GETTID, 0, 0, 0)
		}
	})
}
