// Package benchx holds what the project's latency benchmarks share.
package benchx

import (
	"slices"
	"testing"
	"time"
)

// Paced runs op(i) for i in [0, b.N), one start every interval, and
// reports the worst waits a caller would see: p99-ms, p999-ms and max-ms
// (what a paced writer waits for matters, not the mean). The benchmark's
// timer covers the loop only.
func Paced(b *testing.B, every time.Duration, op func(i int) error) {
	lat := make([]time.Duration, 0, b.N)
	tick := time.NewTicker(every)
	defer tick.Stop()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		<-tick.C
		t0 := time.Now()
		if err := op(i); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)*999/1000]), "p999-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
}
