package store

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/delen-edge/delen/internal/benchx"
	"github.com/dgraph-io/badger/v4"
)

// BenchmarkPutDedupe is the store write on every request's hot path (a
// group of one: a journal write).
func BenchmarkPutDedupe(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	payload := make([]byte, 300)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if err := s.PutDedupe("cam1", fmt.Sprint(i), Dedupe{Topic: "delen/cam1/results", QoS: 1, Payload: payload}, 10*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetDedupeMiss is the lookup every new request makes.
func BenchmarkGetDedupeMiss(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	for b.Loop() {
		s.GetDedupe("cam1", "nope")
	}
}

// BenchmarkDedupeIndex is the anonymous memory of the dedupe journal's
// index at a soak's size: b.N records (345-byte results, as the soak's
// mix publishes) written in groups of 64, then the heap in use after a
// collection, less the heap before, per record, and the time a reopen
// takes to read the journal back. The journal's files are page cache, not
// the process's memory. The soak's 10 minutes at 2,000
// req/s are 1.2 M records:
//
//	go test -run XXX -bench DedupeIndex -benchtime 1200000x ./agent/store/
func BenchmarkDedupeIndex(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { s.Close() }() // s is reopened below
	payload := make([]byte, 300)
	group := make([]DedupeEntry, 64)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i += len(group) {
		n := min(len(group), b.N-i)
		for k := range group[:n] {
			group[k] = DedupeEntry{Tenant: "camera", ID: fmt.Sprintf("camera-%d", i+k),
				Dedupe: Dedupe{Topic: "delen/camera/results", QoS: 1, Payload: payload}}
		}
		if err := s.PutDedupes(group[:n], 10*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := s.DedupeRecords(); got != b.N {
		b.Fatalf("%d records indexed, want %d", got, b.N)
	}
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(b.N), "heap-B/record")
	b.ReportMetric(float64(s.jnl.wal.Stats().Bytes)/float64(b.N), "file-B/record")
	// A restart reads the journal back to rebuild the index.
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	if s, err = Open(dir, Options{}); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(began).Milliseconds()), "reopen-ms")
	if got := s.DedupeRecords(); got != b.N {
		b.Fatalf("%d records indexed after the reopen, want %d", got, b.N)
	}
}

// BenchmarkDedupeWriteStall is the worst wait of a dedupe commit (which
// every result waits for) while the value log fills: 2 KB records at
// 5,000 a second (10 MB/s, so that a run crosses file ends in seconds;
// at 2,000 requests/s of 300-byte records a 64 MiB file lasts about a
// minute, with half a minute of dirty pages left at its end). "store" is
// PutDedupe as the agent calls it (the dedupe journal, applied to Badger
// in the background, which still fills the value log); "badger-commit"
// is the store's former path, a Badger transaction per commit with the
// store's options (16 MiB files and writeback); "former-64MiB" the one
// before, 64 MiB files without writeback. What matters is max-ms: Badger
// msyncs a full file on the write path.
//
//	go test -run XXX -bench DedupeWriteStall -benchtime 40000x ./agent/store/
func BenchmarkDedupeWriteStall(b *testing.B) {
	payload := make([]byte, 2<<10)
	for _, v := range []string{"store", "badger-commit", "former-64MiB"} {
		b.Run(v, func(b *testing.B) {
			dir := b.TempDir()
			var put func(i int) error
			switch v {
			case "store", "badger-commit":
				s, err := Open(dir, Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				put = func(i int) error {
					return s.PutDedupe("cam1", fmt.Sprint(i), Dedupe{Topic: "delen/cam1/results", QoS: 1, Payload: payload}, 10*time.Minute)
				}
				if v == "badger-commit" {
					put = func(i int) error {
						d := Dedupe{Topic: "delen/cam1/results", QoS: 1, Payload: payload}
						return setRecords(s.db, []*journalRec{{key: string(DedupeKey("cam1", fmt.Sprint(i))), val: d.marshal(),
							expires: uint64(time.Now().Add(10 * time.Minute).Unix())}})
					}
				}
			default:
				db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(memTableSize).
					WithValueLogFileSize(64 << 20).WithValueThreshold(valueThreshold).WithNumMemtables(2))
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				put = func(i int) error {
					return db.Update(func(txn *badger.Txn) error {
						return txn.SetEntry(badger.NewEntry(DedupeKey("cam1", fmt.Sprint(i)), payload).WithTTL(10 * time.Minute))
					})
				}
			}
			benchx.Paced(b, 200*time.Microsecond, put)
		})
	}
}

// BenchmarkHistoryAppend is the history writer's batch (512 records with
// 345-byte published results, as the soak's mix serves) into the history
// log, reported per record with the index's heap and the log's file bytes
// per record, against "badger", the former path (a Badger write batch
// into the memory-mapped value log) on the same store:
//
//	go test -run XXX -bench HistoryAppend -benchtime 200000x ./agent/store/
func BenchmarkHistoryAppend(b *testing.B) {
	payload := make([]byte, 345)
	for _, v := range []string{"log", "badger"} {
		b.Run(v, func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{history: historyOptions{maintainEvery: -1}})
			if err != nil {
				b.Fatal(err)
			}
			hist := s.hist
			defer func() { s.hist = hist; s.Close() }()
			if v == "badger" {
				s.hist = nil // AppendHistory takes the in-memory store's path
			}
			batch := make([]Record, 512)
			at := time.Now()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += len(batch) {
				n := min(len(batch), b.N-i)
				for k := range batch[:n] {
					id := fmt.Sprintf("camera-%d", i+k)
					batch[k] = Record{Tenant: "camera", ID: id, At: at.Add(time.Duration(i+k) * time.Microsecond),
						InputDigest: "0123456789abcdef", ResultPayload: payload}
				}
				if err := s.AppendHistory(batch[:n], 7*24*time.Hour); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if v == "log" {
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(b.N), "heap-B/record")
				b.ReportMetric(float64(hist.wal.Stats().Bytes)/float64(b.N), "file-B/record")
				if got := hist.records(); got != b.N {
					b.Fatalf("%d records indexed, want %d", got, b.N)
				}
			}
		})
	}
}
