// Package atomicfile replaces small files so that a crash or a power cut
// leaves either the old content or the new, never a torn or empty file.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// TempSuffix is appended to a file's name for the temporary file that
// WriteFile writes first. A crash can leave one behind; it is never read
// as the file, and the next WriteFile of the same name overwrites it.
const TempSuffix = ".tmp"

// WriteFile replaces name with data, crash-safely: it writes
// name+TempSuffix in the same folder, fsyncs it, renames it over name and
// fsyncs the folder, so that once it returns nil the new content survives
// a power cut, and before that name holds its old content (or is absent,
// if it was). On an error name is untouched and the temporary file is
// removed where it can be.
//
// Writes of one name must not run concurrently (they share the temporary
// file); the caller orders them.
func WriteFile(name string, data []byte, perm fs.FileMode) error {
	tmp := name + TempSuffix
	if err := writeSynced(tmp, data, perm); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("atomicfile: %w", err)
	}
	return SyncDir(filepath.Dir(name))
}

// writeSynced writes data to a new file name (removing one a crash left
// behind, so that it takes perm rather than that one's mode) and fsyncs it.
func writeSynced(name string, data []byte, perm fs.FileMode) error {
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("atomicfile: %w", err)
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", name, err)
	}
	return nil
}

// SyncDir fsyncs folder dir, so that the names created, renamed or
// removed in it are durable (a power cut keeps them).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("atomicfile: sync folder: %w", err)
	}
	return nil
}
