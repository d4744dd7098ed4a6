//go:build !cgo || !linux

package train

// openBLAS is unavailable without cgo on Linux: the Go loops are used.
func openBLAS(string) sgemm { return nil }

func setBLASThreads(int) bool { return false }
