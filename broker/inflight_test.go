package broker

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/delen-edge/delen/internal/benchx"
	"github.com/delen-edge/delen/internal/wal"
	badgerdb "github.com/dgraph-io/badger/v4"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func frame(client string, id uint16, size int) *storage.Message {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(int(id) + i)
	}
	return &storage.Message{
		ID: inflightKey(client, id), T: storage.InflightKey, Client: client, PacketID: id,
		TopicName: "delen/camera/requests", Payload: p,
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
	}
}

func openLog(t testing.TB, dir string, segSize int64) *inflightLog {
	t.Helper()
	l, err := openInflightLog(dir, segSize, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.close() })
	return l
}

// liveIDs are the packet IDs of the messages l holds, in record order, and
// checks that each payload is the one frame() made for it.
func liveIDs(t *testing.T, l *inflightLog, size int) []uint16 {
	t.Helper()
	msgs, err := l.messages()
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint16
	for _, m := range msgs {
		if want := frame(m.Client, m.PacketID, size); !bytes.Equal(m.Payload, want.Payload) || m.TopicName != want.TopicName || m.ID != want.ID {
			t.Fatalf("message %s came back changed", m.ID)
		}
		ids = append(ids, m.PacketID)
	}
	return ids
}

func segFiles(t *testing.T, dir string) int {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return len(names)
}

// What a restart finds after a sequence of deliveries and acknowledgements.
func TestInflightLogReplay(t *testing.T) {
	type op struct {
		put bool
		id  uint16
	}
	put := func(id uint16) op { return op{true, id} }
	ack := func(id uint16) op { return op{false, id} }
	for _, tc := range []struct {
		name string
		ops  []op
		want []uint16
	}{
		{"nothing", nil, nil},
		{"one in flight", []op{put(1)}, []uint16{1}},
		{"acknowledged", []op{put(1), ack(1)}, nil},
		{"some acknowledged", []op{put(1), put(2), put(3), ack(2)}, []uint16{1, 3}},
		{"packet ID reused", []op{put(1), ack(1), put(1)}, []uint16{1}},
		{"resent", []op{put(1), put(2), put(1)}, []uint16{2, 1}},
		{"ack of nothing", []op{ack(7), put(1)}, []uint16{1}},
		{"across segments", []op{put(1), put(2), put(3), put(4), put(5), ack(1), ack(4)}, []uint16{2, 3, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// Segments of ~2 frames, so that the ops cross segment files.
			l := openLog(t, dir, 5000)
			for _, o := range tc.ops {
				var err error
				if o.put {
					err = l.put(frame("agent", o.id, 2000))
				} else {
					err = l.del(inflightKey("agent", o.id))
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if got := liveIDs(t, l, 2000); !slices.Equal(got, tc.want) {
				t.Fatalf("before the restart: %v, want %v", got, tc.want)
			}
			l.close()
			l = openLog(t, dir, 5000)
			if got := liveIDs(t, l, 2000); !slices.Equal(got, tc.want) {
				t.Fatalf("after the restart: %v, want %v", got, tc.want)
			}
		})
	}
}

// A crash mid-append leaves a torn record: the next open drops it and what
// follows, keeps what precedes, and appends after it.
func TestInflightLogTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		// damage changes the file whose last record is n bytes.
		damage func(b []byte, n int) []byte
	}{
		{"cut in the payload", func(b []byte, n int) []byte { return b[:len(b)-100] }},
		{"cut in the header", func(b []byte, n int) []byte { return b[:len(b)-n+5] }},
		{"cut after the header", func(b []byte, n int) []byte { return b[:len(b)-n+wal.Header+2] }},
		{"flipped byte", func(b []byte, n int) []byte { b[len(b)-10] ^= 0xff; return b }},
		{"zeros after it", func(b []byte, n int) []byte { return append(b, make([]byte, 4096)...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, 1<<20)
			for id := uint16(1); id <= 3; id++ {
				if err := l.put(frame("agent", id, 2000)); err != nil {
					t.Fatal(err)
				}
			}
			name := l.active().f.Name()
			n := int(l.live[inflightKey("agent", 3)].n)
			l.close()
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, tc.damage(b, n), 0o644); err != nil {
				t.Fatal(err)
			}
			l = openLog(t, dir, 1<<20)
			want := []uint16{1, 2}
			if tc.name == "zeros after it" {
				want = []uint16{1, 2, 3}
			}
			if got := liveIDs(t, l, 2000); !slices.Equal(got, want) {
				t.Fatalf("after the damage: %v, want %v", got, want)
			}
			if err := l.put(frame("agent", 9, 2000)); err != nil {
				t.Fatal(err)
			}
			l.close()
			l = openLog(t, dir, 1<<20)
			if got := liveIDs(t, l, 2000); !slices.Equal(got, append(want, 9)) {
				t.Fatalf("after one more append and a restart: %v, want %v", got, append(want, 9))
			}
		})
	}
}

// Frames acknowledged as they come leave the disk as they come; one that
// is never acknowledged does not hold the rest on disk, and survives.
func TestInflightLogStaysSmall(t *testing.T) {
	const size, seg = 150 << 10, 1 << 20 // 150 KB frames, ~6 to a segment
	for _, straggler := range []bool{false, true} {
		t.Run(fmt.Sprintf("straggler=%v", straggler), func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, seg)
			if straggler {
				if err := l.put(frame("away", 1, size)); err != nil {
					t.Fatal(err)
				}
			}
			most := 0
			for i := range 2000 { // 300 MB of frames
				id := uint16(i%60000 + 1)
				if err := l.put(frame("agent", id, size)); err != nil {
					t.Fatal(err)
				}
				if err := l.del(inflightKey("agent", id)); err != nil {
					t.Fatal(err)
				}
				most = max(most, segFiles(t, dir))
			}
			if most > 4 {
				t.Fatalf("%d segment files (of %d bytes) at once for one frame in flight", most, seg)
			}
			l.close()
			l = openLog(t, dir, seg)
			msgs, err := l.messages()
			if err != nil {
				t.Fatal(err)
			}
			if straggler != (len(msgs) == 1) || (straggler && msgs[0].Client != "away") {
				t.Fatalf("after a restart %d messages in flight; straggler %v", len(msgs), straggler)
			}
		})
	}
}

// An ended session's messages go with it.
func TestInflightLogDropClient(t *testing.T) {
	l := openLog(t, t.TempDir(), 1<<20)
	for _, c := range []string{"a", "ab", "a"} {
		for id := uint16(1); id <= 2; id++ {
			if err := l.put(frame(c, id, 10)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.dropClient("a"); err != nil {
		t.Fatal(err)
	}
	msgs, err := l.messages()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Client != "ab" {
			t.Fatalf("message of %q kept", m.Client)
		}
	}
	if len(msgs) != 2 {
		t.Fatalf("%d messages of ab, want 2", len(msgs))
	}
}

// FuzzInflightLogOpen: whatever a segment file holds, opening the log
// neither panics nor fails, and the log then works.
func FuzzInflightLogOpen(f *testing.F) {
	good := appendRecord(nil, recPut, "ifm_a:1", []byte{2, 0, 0, 0}, []byte("{}xy"))
	f.Add(good)
	f.Add(appendRecord(good, recDel, "ifm_a:1"))
	f.Add(good[:len(good)-1])
	f.Add([]byte{})
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x.log", 1)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := openInflightLog(dir, 1<<20, quiet)
		if err != nil {
			t.Fatal(err)
		}
		defer l.close()
		before, _ := l.messages() // a record may check out and still not decode
		if err := l.put(frame("z", 5, 10)); err != nil {
			t.Fatal(err)
		}
		after, _ := l.messages()
		if len(after) < 1 || after[len(after)-1].Client != "z" || len(after) > len(before)+1 {
			t.Fatalf("%d messages, then %d after one put", len(before), len(after))
		}
	})
}

// BenchmarkFrameStore is the broker store's part of a camera frame's trip:
// the stored copy of a 150 KB frame written and deleted, 100 frames a
// second, in the in-flight log and, for comparison, in Badger with the
// frame in its LSM tree (Badger's default) and in its value log. What
// matters is the worst wait (max-ms, p99-ms), which a publish waits for,
// and what is left on disk (disk-MB).
//
//	go test -run XXX -bench FrameStore -benchtime 1000x ./broker/
func BenchmarkFrameStore(b *testing.B) {
	val := frame("agent", 1, 150<<10)
	type store struct {
		put func(i int) error
		del func(i int) error
		end func() error
	}
	badger := func(b *testing.B, dir string, threshold int64) store {
		db, err := badgerdb.Open(storeOptions(dir).WithValueThreshold(threshold).WithLogger(nil))
		if err != nil {
			b.Fatal(err)
		}
		body, err := val.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		k := func(i int) []byte { return []byte(fmt.Sprintf("frame-%d", i)) }
		return store{
			put: func(i int) error { return db.Update(func(txn *badgerdb.Txn) error { return txn.Set(k(i), body) }) },
			del: func(i int) error { return db.Update(func(txn *badgerdb.Txn) error { return txn.Delete(k(i)) }) },
			end: db.Close,
		}
	}
	for _, v := range []struct {
		name string
		open func(b *testing.B, dir string) store
	}{
		{"inflight-log", func(b *testing.B, dir string) store {
			l := openLog(b, dir, inflightSegSize)
			return store{
				put: func(i int) error { m := *val; m.ID = fmt.Sprint(i); return l.put(&m) },
				del: func(i int) error { return l.del(fmt.Sprint(i)) },
				end: l.close,
			}
		}},
		{"badger-lsm", func(b *testing.B, dir string) store { return badger(b, dir, 1<<20) }},
		{"badger-vlog", func(b *testing.B, dir string) store { return badger(b, dir, 4<<10) }},
	} {
		b.Run(v.name, func(b *testing.B) {
			dir := b.TempDir()
			s := v.open(b, dir)
			benchx.Paced(b, 10*time.Millisecond, func(i int) error {
				if err := s.put(i); err != nil {
					return err
				}
				return s.del(i)
			})
			if err := s.end(); err != nil {
				b.Fatal(err)
			}
			var disk int64
			filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					disk += fi.Size()
				}
				return nil
			})
			b.ReportMetric(float64(disk)/1e6, "disk-MB")
		})
	}
}
