package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// collect opens dir and returns the log and every replayed body.
func collect(t testing.TB, dir string, opt Options) (*Log, [][]byte) {
	t.Helper()
	var got [][]byte
	l, err := Open(dir, opt, func(_ uint64, _ int64, body []byte) error {
		got = append(got, slices.Clone(body))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l, got
}

// writeRecords writes n records of 80 bytes, record i filled with i+1:
// with SegmentSize 100, one segment each.
func writeRecords(t *testing.T, l *Log, n int) {
	t.Helper()
	for i := range n {
		if _, _, err := l.Write(AppendRecord(nil, bytes.Repeat([]byte{byte(i + 1)}, 80))); err != nil {
			t.Fatal(err)
		}
	}
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestReplayInOrderAcrossSegments: records written in groups, across
// segment rolls, come back whole and in order after the log is reopened
// without a clean close (as after a kill -9), each with its segment and
// offset; ReadAt reads each back at the position Write and the replay
// gave, and Scan hands back a segment's records.
func TestReplayInOrderAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	l, got := collect(t, dir, Options{SegmentSize: 1000})
	if len(got) != 0 {
		t.Fatalf("a new log replayed %d records", len(got))
	}
	var want [][]byte
	segOf := map[string]uint64{}
	offOf := map[string]int64{}
	for g := 0; g < 20; g++ {
		var buf []byte
		var offs []int64
		for i := 0; i < 3; i++ {
			body := bytes.Repeat([]byte{byte(g*3 + i)}, 40+g)
			want = append(want, body)
			offs = append(offs, int64(len(buf)))
			buf = AppendRecord(buf, body)
		}
		seg, off, err := l.Write(buf)
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range want[len(want)-3:] {
			segOf[string(b)], offOf[string(b)] = seg, off+offs[i]
			got, err := l.ReadAt(seg, off+offs[i], nil)
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("ReadAt after Write: %x, %v; want %x", got, err, b)
			}
		}
	}
	st := l.Stats()
	if st.Segments < 3 {
		t.Fatalf("%d segments for %d bytes at 1000 a segment", st.Segments, st.Bytes)
	}
	for _, s := range l.segs {
		if s.size > 1000 {
			t.Fatalf("segment %d holds %d bytes, over its size", s.id, s.size)
		}
	}
	// No Close: the files are what a killed process leaves.
	var order [][]byte
	var segs []uint64
	var offs []int64
	l2, err := Open(dir, Options{SegmentSize: 1000}, func(seg uint64, off int64, body []byte) error {
		order = append(order, slices.Clone(body))
		segs = append(segs, seg)
		offs = append(offs, off)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if len(order) != len(want) {
		t.Fatalf("replayed %d records, want %d", len(order), len(want))
	}
	for i := range want {
		if !bytes.Equal(order[i], want[i]) {
			t.Fatalf("record %d: %x, want %x", i, order[i], want[i])
		}
		if segs[i] != segOf[string(want[i])] || offs[i] != offOf[string(want[i])] {
			t.Fatalf("record %d replayed from segment %d at %d, written to %d at %d", i, segs[i], offs[i],
				segOf[string(want[i])], offOf[string(want[i])])
		}
		if got, err := l2.ReadAt(segs[i], offs[i], nil); err != nil || !bytes.Equal(got, want[i]) {
			t.Fatalf("ReadAt after reopen, record %d: %x, %v", i, got, err)
		}
	}
	var scanned [][]byte
	for _, id := range slices.Compact(slices.Clone(segs)) {
		if err := l2.Scan(id, func(off int64, body []byte) error {
			scanned = append(scanned, slices.Clone(body))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.EqualFunc(scanned, want, bytes.Equal) {
		t.Fatalf("Scan of every segment gave %d records, not the %d written in order", len(scanned), len(want))
	}
	if err := l2.DropBefore(segs[len(segs)-1]); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.ReadAt(segs[0], offs[0], nil); !errors.Is(err, ErrNoSegment) {
		t.Fatalf("ReadAt in a dropped segment: %v, want ErrNoSegment", err)
	}
	if a := l2.Active(); a <= segs[len(segs)-1] {
		t.Fatalf("reopened log writes to segment %d, not after the replayed %d", a, segs[len(segs)-1])
	}
}

// TestTornTailDropped: a record cut short by a crash mid-write, or with a
// flipped bit, is dropped with the rest of its segment; the records before
// it replay, the file is cut back to them, and writing goes on.
func TestTornTailDropped(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"cut in the body", func(b []byte) []byte { return b[:len(b)-5] }},
		{"cut in the header", func(b []byte) []byte { return b[:len(b)-(Header+100)+3] }},
		{"flipped bit", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		{"length past the end", func(b []byte) []byte {
			b[len(b)-(Header+100)] = 0xff
			return b
		}},
		{"zeros appended", func(b []byte) []byte { return append(b, make([]byte, 64)...) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l, _ := collect(t, dir, Options{})
			var buf []byte
			for i := 0; i < 4; i++ {
				buf = AppendRecord(buf, bytes.Repeat([]byte{byte('a' + i)}, 100))
			}
			if _, _, err := l.Write(buf); err != nil {
				t.Fatal(err)
			}
			name := l.active().f.Name()
			l.Close()
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, c.damage(b), 0o644); err != nil {
				t.Fatal(err)
			}
			l, got := collect(t, dir, Options{})
			want := 3
			if c.name == "zeros appended" {
				want = 4
			}
			if len(got) != want {
				t.Fatalf("replayed %d records, want %d", len(got), want)
			}
			for i, g := range got {
				if !bytes.Equal(g, bytes.Repeat([]byte{byte('a' + i)}, 100)) {
					t.Fatalf("record %d: %q", i, g)
				}
			}
			fi, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != int64(want*(Header+100)) {
				t.Fatalf("damaged segment is %d bytes, want %d", fi.Size(), want*(Header+100))
			}
			if _, _, err := l.Write(AppendRecord(nil, []byte("after"))); err != nil {
				t.Fatal(err)
			}
			l.Close()
			_, got = collect(t, dir, Options{})
			if len(got) != want+1 || string(got[want]) != "after" {
				t.Fatalf("after a further write: %d records, last %q", len(got), got[len(got)-1])
			}
		})
	}
}

// TestDropBeforeDeletesFiles: DropBefore deletes the older segments'
// files and never the active one; Close deletes an empty active segment.
func TestDropBeforeDeletesFiles(t *testing.T) {
	dir := t.TempDir()
	l, _ := collect(t, dir, Options{SegmentSize: 100})
	for i := 0; i < 5; i++ {
		if _, _, err := l.Write(AppendRecord(nil, bytes.Repeat([]byte{1}, 80))); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(files(t, dir)); n != 5 {
		t.Fatalf("%d files, want 5", n)
	}
	active := l.Active()
	if err := l.DropBefore(active); err != nil {
		t.Fatal(err)
	}
	if f := files(t, dir); len(f) != 1 || filepath.Base(f[0]) != fmt.Sprintf("%016x%s", active, ext) {
		t.Fatalf("after DropBefore(active): %v", f)
	}
	if err := l.DropBefore(active + 10); err != nil { // never the active one
		t.Fatal(err)
	}
	if n := len(files(t, dir)); n != 1 {
		t.Fatalf("the active segment was deleted: %d files", n)
	}
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	if err := l.DropBefore(l.Active()); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if f := files(t, dir); len(f) != 0 {
		t.Fatalf("a log holding nothing left %v", f)
	}
}

// TestDropAnySegment: Drop deletes a segment in the middle of the log
// (reads of it then fail with ErrNoSegment), never the active one, and a
// reopen replays the segments left, ids after the gap included.
func TestDropAnySegment(t *testing.T) {
	dir := t.TempDir()
	l, _ := collect(t, dir, Options{SegmentSize: 100})
	writeRecords(t, l, 4)
	ids := l.Segments()
	if len(ids) != 4 {
		t.Fatalf("segments %v, want 4", ids)
	}
	if err := l.Drop(ids[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReadAt(ids[1], 0, nil); !errors.Is(err, ErrNoSegment) {
		t.Fatalf("read of a dropped segment: %v, want ErrNoSegment", err)
	}
	if err := l.Drop(ids[3]); err == nil {
		t.Fatal("the active segment was dropped")
	}
	if err := l.Drop(ids[1]); err != nil {
		t.Fatalf("dropping a segment twice: %v", err)
	}
	if got := l.Segments(); !slices.Equal(got, []uint64{ids[0], ids[2], ids[3]}) {
		t.Fatalf("segments %v after dropping %d", got, ids[1])
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, got := collect(t, dir, Options{SegmentSize: 100})
	defer l.Close()
	if len(got) != 3 || got[0][0] != 1 || got[1][0] != 3 || got[2][0] != 4 {
		t.Fatalf("reopened: %d records", len(got))
	}
	if n := len(files(t, dir)); n != 4 { // three and the new active one
		t.Fatalf("%d files after the reopen, want 4", n)
	}
}

// TestSync: syncing segments, the active one or an id not in the log
// succeeds and leaves their records readable after a reopen; a closed log
// refuses.
func TestSync(t *testing.T) {
	dir := t.TempDir()
	l, _ := collect(t, dir, Options{SegmentSize: 100})
	writeRecords(t, l, 3)
	ids := l.Segments()
	for _, tc := range []struct {
		name string
		ids  []uint64
	}{
		{"none", nil},
		{"an old one", ids[:1]},
		{"all", ids},
		{"not in the log", []uint64{ids[len(ids)-1] + 10}},
	} {
		if err := l.Sync(tc.ids...); err != nil {
			t.Errorf("Sync %s: %v", tc.name, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(ids...); err == nil {
		t.Error("Sync after Close succeeded")
	}
	l, got := collect(t, dir, Options{SegmentSize: 100})
	defer l.Close()
	if len(got) != 3 {
		t.Fatalf("reopened: %d records, want 3", len(got))
	}
}

// FuzzOpen: any bytes in a segment file open without a panic, replay a
// prefix of whole records (re-framing them gives the file's first bytes)
// and leave the file cut to that prefix.
func FuzzOpen(f *testing.F) {
	var two []byte
	two = AppendRecord(two, []byte("first record"))
	two = AppendRecord(two, []byte{0})
	f.Add(two)
	f.Add(two[:len(two)-3])
	f.Add(append(slices.Clone(two), 0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4))
	f.Add([]byte{})
	f.Add(make([]byte, Header))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		name := filepath.Join(dir, fmt.Sprintf("%016x%s", 1, ext))
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
		l, got := collect(t, dir, Options{})
		defer l.Close()
		var again []byte
		for _, g := range got {
			again = AppendRecord(again, g)
		}
		if !bytes.HasPrefix(b, again) {
			t.Fatalf("replayed records are not a prefix of the file")
		}
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != int64(len(again)) {
			t.Fatalf("file left at %d bytes, its whole records take %d", fi.Size(), len(again))
		}
	})
}
