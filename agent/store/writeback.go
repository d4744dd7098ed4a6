package store

import (
	"os"
	"path/filepath"
	"sort"
	"time"
)

// writebackEvery is how often the store asks the kernel to start writing
// its value log back to disk.
const writebackEvery = time.Second

// valueLogFileSize is the size of the store's value-log files: small
// enough that the msync Badger does when one is full is short (with the
// writeback below, there is little left for it to write), large enough
// that rotations are rare (a minute or more of results at 2,000
// requests/s).
const valueLogFileSize = 16 << 20

// writeback keeps the store's value log written back while it fills,
// until stop is closed. Badger writes the value log through a shared
// memory map and, when a file is full, msyncs the whole file on its write
// path before the next write: with nothing written back before (the
// kernel holds dirty pages for up to 30 s), that wrote tens of MB at once
// while every dedupe commit, and so every result, waited for it.
func writeback(dir string, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
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
