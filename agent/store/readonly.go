package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	badger "github.com/dgraph-io/badger/v4"
)

// ErrReadOnly reports a data folder the store cannot write to: a file
// system mounted read-only (an SD card the kernel remounted after errors,
// a read-only root) or a folder without write permission.
var ErrReadOnly = errors.New("data folder is read-only")

// keptFromReadOnly are the key prefixes copied from a read-only store into
// the in-memory one: what the agent needs to serve as configured.
var keptFromReadOnly = []string{"tenant/", "profile/", "validation/"}

// OpenWritableOrMemory opens the store in dir like Open. When dir cannot be
// written to, it returns an in-memory store holding the tenant settings and
// profiles found in dir (read without modifying it, when a store is there),
// and an error wrapping ErrReadOnly that says so; the caller logs it and
// serves on. Other failures are returned as they are, with a nil store.
//
// A folder whose file system has less than 32 MiB free is treated the same
// way, with an error wrapping ErrNoSpace: Badger creates and maps new log
// files when it opens, and writing to a mapped page the file system cannot
// back kills the process (SIGBUS), so a full disk would be a crash loop.
func OpenWritableOrMemory(dir string, opt Options) (*Store, error) {
	why := probeWritable(dir)
	switch {
	case why == nil:
		free, err := freeBytes(dir)
		if err != nil || free >= minFree {
			return Open(dir, opt)
		}
		why = fmt.Errorf("%w (%d MiB free, the store needs %d MiB)", ErrNoSpace, free>>20, minFree>>20)
	case errors.Is(why, syscall.EROFS) || errors.Is(why, fs.ErrPermission):
		why = fmt.Errorf("%w (%v)", ErrReadOnly, why)
	default:
		return nil, fmt.Errorf("open store %s: %w", dir, why)
	}
	mem, err := Open("", Options{Logger: opt.Logger, InMemory: true})
	if err != nil {
		return nil, err
	}
	copied, err := copyFromReadOnly(dir, mem)
	if err != nil {
		return mem, fmt.Errorf("%s: %w; serving from memory, without the stored settings and profiles (%v)", dir, why, err)
	}
	return mem, fmt.Errorf("%s: %w; serving from memory with %d stored settings and profiles; history, dedupe records and changes are lost at exit", dir, why, copied)
}

// freeBytes is the space available to the store in dir's file system.
func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}

// probeWritable creates (if needed) dir and a file in it.
func probeWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".write-probe-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// copyFromReadOnly copies the kept prefixes of the store in dir, opened
// read-only, into mem. A folder without a store copies nothing.
func copyFromReadOnly(dir string, mem *Store) (int, error) {
	if _, err := os.Stat(dir + "/MANIFEST"); errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	ro, err := badger.Open(badger.DefaultOptions(dir).WithReadOnly(true).WithLogger(nil).
		WithMemTableSize(memTableSize).WithBlockCacheSize(1 << 20).WithIndexCacheSize(1 << 20))
	if err != nil {
		return 0, err
	}
	defer ro.Close()
	n := 0
	err = ro.View(func(txn *badger.Txn) error {
		return mem.db.Update(func(mtxn *badger.Txn) error {
			for _, prefix := range keptFromReadOnly {
				it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true})
				for it.Rewind(); it.Valid(); it.Next() {
					v, err := it.Item().ValueCopy(nil)
					if err != nil {
						it.Close()
						return err
					}
					if err := mtxn.Set(it.Item().KeyCopy(nil), v); err != nil {
						it.Close()
						return err
					}
					n++
				}
				it.Close()
			}
			return nil
		})
	})
	return n, err
}

// InMemory reports whether the store keeps nothing on disk.
func (s *Store) InMemory() bool { return s.dir == "" }
