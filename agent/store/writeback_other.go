//go:build !linux

package store

import "os"

// startFileWriteback is a no-op where sync_file_range does not exist.
func startFileWriteback(*os.File) error { return nil }
