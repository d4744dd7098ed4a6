package broker

import (
	"fmt"
	"slices"
	"testing"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"
)

// BenchmarkFrameStore is the broker store's part of a camera frame's trip:
// the stored copy of a 150 KB frame (270 KB as mochi stores it) written
// and deleted, 100 frames a second, with the broker's Badger options, with
// and without the value log's background writeback. What matters is the
// worst wait (max-ms, p99-ms): a publish waits for it.
//
//	go test -run XXX -bench FrameStore -benchtime 1000x ./broker/
func BenchmarkFrameStore(b *testing.B) {
	for _, bg := range []bool{false, true} {
		b.Run(fmt.Sprintf("writeback=%v", bg), func(b *testing.B) {
			dir := b.TempDir()
			db, err := badgerdb.Open(storeOptions(dir).WithLogger(nil))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			stop := make(chan struct{})
			defer close(stop)
			if bg {
				go writeback(dir, stop)
			}
			val := make([]byte, 270<<10)
			lat := make([]time.Duration, 0, b.N)
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				<-tick.C
				k := []byte(fmt.Sprintf("frame-%d", i))
				t0 := time.Now()
				if err := db.Update(func(txn *badgerdb.Txn) error { return txn.Set(k, val) }); err != nil {
					b.Fatal(err)
				}
				if err := db.Update(func(txn *badgerdb.Txn) error { return txn.Delete(k) }); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
			b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
		})
	}
}
