package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// startFileWriteback starts the writeback of f's dirty pages
// (sync_file_range SYNC_FILE_RANGE_WRITE: initiate, do not wait).
func startFileWriteback(f *os.File) error {
	return unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
