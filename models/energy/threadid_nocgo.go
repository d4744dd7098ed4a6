//go:build linux && !cgo

package energy

import "golang.org/x/sys/unix"

// threadID is the calling OS thread's id (gettid(2); without cgo there is
// no thread-local cache).
func threadID() int {
	tid, _, _ := unix.RawSyscall(unix.SYS_GETTID, 0, 0, 0)
	return int(tid)
}
