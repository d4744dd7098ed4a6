package broker

import (
	"os"
	"path/filepath"
	"sort"
	"time"
)

// writebackEvery is how often the broker asks the kernel to start writing
// its value log back to disk.
const writebackEvery = 100 * time.Millisecond

// writeback keeps the broker's Badger value log written back while it
// fills, until stop is closed. Badger writes the value log through a
// shared memory map and, when a file is full, msyncs the whole file on its
// write path before the next: with nothing written back before (the
// kernel holds dirty pages for up to 30 s), that flushed a file's worth of
// frames at once, and every publish waited for it (90–150 ms for a 64 MiB
// file at 27 MB/s of frames, every few seconds). Asking for writeback as
// the file fills leaves that msync little to do, off the publish path
// (measured: the worst store-and-delete pair 14 ms instead of 91–154 ms).
func writeback(dir string, stop <-chan struct{}) {
	t := time.NewTicker(writebackEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
		sort.Strings(files) // zero-padded numbers: the newest last
		// The file being written and the one just finished.
		for _, f := range files[max(0, len(files)-2):] {
			startWriteback(f)
		}
	}
}

// startWriteback asks the kernel to start writing path's dirty pages back,
// without waiting for it; errors are of no consequence (the msync at the
// file's end still writes everything).
func startWriteback(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	_ = startFileWriteback(f)
}
