//go:build !linux

package energy

import "time"

// threadClock is not available here: Measure falls back to wall time.
func threadClock() (clock int32, cpu time.Duration, ok bool) { return 0, 0, false }

func readClock(int32) (time.Duration, bool) { return 0, false }
