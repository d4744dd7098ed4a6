package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/delen-edge/delen/internal/atomicfile"
	"github.com/delen-edge/delen/internal/wal"
	"github.com/delen-edge/delen/schema"
	badger "github.com/dgraph-io/badger/v4"
)

var histT0 = time.Unix(1_800_000_000, 0).UTC()

// openHist opens a store in dir with history segments of segSize bytes
// and no background upkeep (tests call maintain), on clock c.
func openHist(t testing.TB, dir string, c *fakeClock, segSize int64) *Store {
	t.Helper()
	s, err := Open(dir, Options{history: historyOptions{segmentSize: segSize, maintainEvery: -1, now: c.now}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// histRecs are n records of tenant, ids tenant-<from+i>, arriving a second
// apart from t0 + from seconds, each with a result of ~pad bytes.
func histRecs(tenant string, from, n, pad int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		id := fmt.Sprintf("%s-%03d", tenant, from+i)
		recs[i] = Record{Tenant: tenant, ID: id, At: histT0.Add(time.Duration(from+i) * time.Second),
			Result: &schema.Result{Tenant: tenant, ID: id, Model: strings.Repeat("m", pad)}}
	}
	return recs
}

// histIDs are the ids of the records s.History gives, in order.
func histIDs(t testing.TB, s *Store, tenant string, since time.Time, limit int) []string {
	t.Helper()
	recs, err := s.History(tenant, since, limit)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		if r.Result == nil || r.Result.ID != r.ID {
			t.Fatalf("record %s has result %+v", r.ID, r.Result)
		}
		out = append(out, r.ID)
	}
	return out
}

func idRange(tenant string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s-%03d", tenant, i))
	}
	return out
}

func historyFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, historyDir, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestHistoryLogQueries: since and limit, per tenant and across tenants,
// records appended out of arrival order, read the same from the log as
// written, after a clean reopen and after a crash (no close).
func TestHistoryLogQueries(t *testing.T) {
	dir := t.TempDir()
	c := &fakeClock{t: histT0}
	s := openHist(t, dir, c, 4<<10)
	a := histRecs("a", 0, 30, 40)
	ab := histRecs("ab", 0, 10, 40) // shares a's prefix, not its records
	// Out of arrival order within and across appends.
	slices.Reverse(a[10:20])
	for _, batch := range [][]Record{a[20:], ab[5:], a[:20], ab[:5]} {
		if err := s.AppendHistory(batch, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, tenant string
		since        time.Time
		limit        int
		want         []string
	}{
		{"all of a", "a", time.Time{}, 0, idRange("a", 0, 30)},
		{"limit", "a", time.Time{}, 3, idRange("a", 27, 30)},
		{"since", "a", histT0.Add(25 * time.Second), 0, idRange("a", 25, 30)},
		{"since and limit", "a", histT0.Add(25 * time.Second), 2, idRange("a", 28, 30)},
		{"limit beyond since", "ab", histT0.Add(8 * time.Second), 5, idRange("ab", 8, 10)},
		{"all tenants since", "", histT0.Add(9 * time.Second), 0,
			append([]string{"a-009", "ab-009"}, idRange("a", 10, 30)...)},
		{"all tenants, limit", "", time.Time{}, 2, idRange("a", 28, 30)},
		{"unknown tenant", "zz", time.Time{}, 0, nil},
		{"since after everything", "a", histT0.Add(time.Hour), 0, nil},
	}
	check := func(stage string) {
		t.Helper()
		for _, tc := range cases {
			got := histIDs(t, s, tc.tenant, tc.since, tc.limit)
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s, %s: %v, want %v", stage, tc.name, got, tc.want)
			}
		}
	}
	check("written")
	if len(historyFiles(t, dir)) < 2 {
		t.Fatalf("one segment for %d records: the test means several", len(a)+len(ab))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openHist(t, dir, c, 4<<10)
	check("reopened")
	crash(s)
	s = openHist(t, dir, c, 4<<10)
	defer s.Close()
	check("after a crash")
	if n := s.hist.records(); n != 40 {
		t.Errorf("%d records indexed, want 40", n)
	}
	// Badger holds none of them.
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("hist/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			return fmt.Errorf("history key %q in Badger", it.Item().Key())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTrimHistories: trimming several tenants in one call keeps each one's
// newest records, the trims hold across a crash, and nothing trimmed
// writes no trims file.
func TestTrimHistories(t *testing.T) {
	for _, tc := range []struct {
		name    string
		keep    int
		trimmed int
		want    map[string][]string
	}{
		{"keep two", 2, 3 + 1, map[string][]string{"a": idRange("a", 3, 5), "b": idRange("b", 1, 3), "c": idRange("c", 0, 1)}},
		{"keep none", 0, 5 + 3 + 1, map[string][]string{"a": nil, "b": nil, "c": nil}},
		{"keep all", 10, 0, map[string][]string{"a": idRange("a", 0, 5), "b": idRange("b", 0, 3), "c": idRange("c", 0, 1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := &fakeClock{t: histT0}
			s := openHist(t, dir, c, 2<<10)
			for name, n := range map[string]int{"a": 5, "b": 3, "c": 1} {
				if err := s.AppendHistory(histRecs(name, 0, n, 30), time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			cuts := filepath.Join(dir, historyDir, cutsFile)
			before, _ := os.Stat(cuts)
			n, err := s.TrimHistories([]string{"a", "b", "c"}, tc.keep)
			if err != nil || n != tc.trimmed {
				t.Fatalf("TrimHistories = %d, %v; want %d", n, err, tc.trimmed)
			}
			after, err := os.Stat(cuts)
			switch {
			case tc.trimmed == 0 && err == nil && (before == nil || !os.SameFile(before, after)):
				t.Errorf("trims file written with nothing trimmed")
			case tc.trimmed > 0 && err != nil:
				t.Fatalf("trims file not written: %v", err)
			}
			crash(s)
			s = openHist(t, dir, c, 2<<10)
			defer s.Close()
			for name, want := range tc.want {
				if got := histIDs(t, s, name, time.Time{}, 0); !slices.Equal(got, want) {
					t.Errorf("%s after a crash: %v, want %v", name, got, want)
				}
			}
		})
	}
}

// TestHistoryLogTrimsSurviveReopen: what a trim removed stays removed
// after a clean reopen, after a crash, and after a crash that left a
// half-written temporary trims file behind (killed mid-save), whatever
// keep the next trim asks for, and a tenant holds as many records after
// the reopen as before it; a trim after such a reopen is saved and holds
// across the next reopen.
func TestHistoryLogTrimsSurviveReopen(t *testing.T) {
	for _, tc := range []struct {
		name       string
		n, keep    int
		more       int // appended after the trim
		laterKeep  int // a trim after the reopen (a larger keep brings nothing back)
		want       []string
		wantTrimed int
	}{
		{"keep some", 50, 20, 5, 1000, idRange("a", 30, 55), 30},
		{"keep none", 20, 0, 3, 100, idRange("a", 20, 23), 20},
		{"keep all", 10, 10, 2, 100, idRange("a", 0, 12), 0},
		{"keep more than held", 10, 100, 0, 1000, idRange("a", 0, 10), 0},
	} {
		for _, how := range []string{"close", "crash", "crash mid-save"} {
			t.Run(tc.name+"/"+how, func(t *testing.T) {
				dir := t.TempDir()
				c := &fakeClock{t: histT0}
				s := openHist(t, dir, c, 2<<10)
				if err := s.AppendHistory(histRecs("a", 0, tc.n, 30), time.Hour); err != nil {
					t.Fatal(err)
				}
				if err := s.AppendHistory(histRecs("b", 0, 5, 30), time.Hour); err != nil {
					t.Fatal(err)
				}
				n, err := s.TrimHistory("a", tc.keep)
				if err != nil || n != tc.wantTrimed {
					t.Fatalf("TrimHistory = %d, %v; want %d", n, err, tc.wantTrimed)
				}
				if err := s.AppendHistory(histRecs("a", tc.n, tc.more, 30), time.Hour); err != nil {
					t.Fatal(err)
				}
				if how == "close" {
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
				} else {
					crash(s)
				}
				cuts := filepath.Join(dir, historyDir, cutsFile)
				if how == "crash mid-save" {
					if err := os.WriteFile(cuts+atomicfile.TempSuffix, []byte(`{"a":{"at":1`), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				s = openHist(t, dir, c, 2<<10)
				defer func() { s.Close() }()
				if got := histIDs(t, s, "a", time.Time{}, 0); !slices.Equal(got, tc.want) {
					t.Fatalf("after the reopen: %v, want %v", got, tc.want)
				}
				if got := histIDs(t, s, "b", time.Time{}, 0); !slices.Equal(got, idRange("b", 0, 5)) {
					t.Fatalf("another tenant after the reopen: %v", got)
				}
				if n, err := s.TrimHistory("a", tc.laterKeep); err != nil || n != 0 {
					t.Fatalf("a larger keep after the reopen: %d, %v", n, err)
				}
				s.hist.maintain(true)
				if got := histIDs(t, s, "a", time.Time{}, 0); !slices.Equal(got, tc.want) {
					t.Fatalf("after upkeep: %v, want %v", got, tc.want)
				}
				// A trim after the reopen replaces the file (and any
				// leftover temporary one) and holds across the next.
				if n, err := s.TrimHistory("b", 2); err != nil || n != 3 {
					t.Fatalf("TrimHistory(b, 2) after the reopen = %d, %v; want 3", n, err)
				}
				if _, err := os.Stat(cuts + atomicfile.TempSuffix); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("temporary trims file left after a save (%v)", err)
				}
				crash(s)
				s = openHist(t, dir, c, 2<<10)
				if got := histIDs(t, s, "b", time.Time{}, 0); !slices.Equal(got, idRange("b", 3, 5)) {
					t.Errorf("b after its trim and a crash: %v, want %v", got, idRange("b", 3, 5))
				}
				if got := histIDs(t, s, "a", time.Time{}, 0); !slices.Equal(got, tc.want) {
					t.Errorf("a after b's trim and a crash: %v, want %v", got, tc.want)
				}
			})
		}
	}
}

// TestHistoryLogExpiry: a record past its TTL is not returned, leaves the
// index at the next round, its segments are deleted, and it does not come
// back after a reopen.
func TestHistoryLogExpiry(t *testing.T) {
	dir := t.TempDir()
	c := &fakeClock{t: histT0}
	s := openHist(t, dir, c, 2<<10)
	if err := s.AppendHistory(histRecs("a", 0, 40, 30), time.Minute); err != nil {
		t.Fatal(err)
	}
	c.add(30 * time.Second)
	if err := s.AppendHistory(histRecs("a", 40, 5, 30), time.Minute); err != nil {
		t.Fatal(err)
	}
	before := len(historyFiles(t, dir))
	if gone := s.hist.maintain(true); len(gone) != 0 {
		t.Fatalf("segments %v deleted before any record expired", gone)
	}
	c.add(31 * time.Second)
	if got := histIDs(t, s, "a", time.Time{}, 0); !slices.Equal(got, idRange("a", 40, 45)) {
		t.Fatalf("with the first 40 expired: %v", got)
	}
	s.hist.maintain(true)
	if n := len(historyFiles(t, dir)); n >= before {
		t.Fatalf("%d segments before, %d after their records expired", before, n)
	}
	if n := s.hist.records(); n != 5 {
		t.Fatalf("%d records indexed, want 5", n)
	}
	crash(s)
	s = openHist(t, dir, c, 2<<10)
	defer s.Close()
	if got := histIDs(t, s, "a", time.Time{}, 0); !slices.Equal(got, idRange("a", 40, 45)) {
		t.Fatalf("after the reopen: %v", got)
	}
	c.add(time.Minute)
	s.hist.maintain(true)
	if n := s.hist.records(); n != 0 {
		t.Fatalf("%d records indexed with all expired", n)
	}
	if f := historyFiles(t, dir); len(f) > 1 {
		t.Fatalf("with everything expired the log keeps %v", f)
	}
}

// TestHistoryLogStats: what HistoryLog reports (the metrics' source) is
// the history log's files on disk, their size, and the records a query
// can return, through appends, a trim, expiry and upkeep, and a reopen;
// an in-memory store reports nothing.
func TestHistoryLogStats(t *testing.T) {
	dir := t.TempDir()
	c := &fakeClock{t: histT0}
	s := openHist(t, dir, c, 2<<10)
	defer func() { s.Close() }()
	for _, step := range []struct {
		name        string
		do          func(t *testing.T)
		wantRecords int
	}{
		{"empty", func(*testing.T) {}, 0},
		{"appended", func(t *testing.T) {
			if err := s.AppendHistory(histRecs("a", 0, 40, 30), time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := s.AppendHistory(histRecs("b", 0, 10, 30), 2*time.Hour); err != nil {
				t.Fatal(err)
			}
		}, 50},
		{"a trimmed to 15", func(t *testing.T) {
			if _, err := s.TrimHistory("a", 15); err != nil {
				t.Fatal(err)
			}
		}, 25},
		{"upkeep", func(*testing.T) { s.hist.maintain(true) }, 25},
		{"a expired, upkeep", func(*testing.T) { c.add(90 * time.Minute); s.hist.maintain(true) }, 10},
		{"reopened", func(t *testing.T) {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openHist(t, dir, c, 2<<10)
		}, 10},
	} {
		step.do(t)
		got := s.HistoryLog()
		var ids int
		for _, tenant := range []string{"a", "b"} {
			ids += len(histIDs(t, s, tenant, time.Time{}, 0))
		}
		if got.Records != step.wantRecords || got.Records != ids {
			t.Errorf("%s: %d records reported, %d returned; want %d", step.name, got.Records, ids, step.wantRecords)
		}
		files := historyFiles(t, dir)
		var size int64
		for _, f := range files {
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			size += fi.Size()
		}
		if got.Segments != len(files) || got.Bytes != size {
			t.Errorf("%s: %d segments of %d bytes reported; on disk %d files, %d bytes", step.name, got.Segments, got.Bytes, len(files), size)
		}
		if step.wantRecords > 0 && (got.Segments < 2 || got.Bytes == 0) {
			t.Errorf("%s: %d segments of %d bytes for %d records: the test means several segments", step.name, got.Segments, got.Bytes, got.Records)
		}
	}
	mem, err := Open("", Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	if err := mem.AppendHistory(histRecs("a", 0, 3, 30), time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := mem.HistoryLog(); got != (HistoryLogStats{}) {
		t.Errorf("in-memory store: %+v, want zeros", got)
	}
}

// TestHistoryLogCompaction: a fast tenant trimmed to a few records and a
// slow one that keeps all of its; the upkeep deletes dead segments and
// copies the slow tenant's records out of mostly dead ones, so that the
// files stay within twice the live records plus two segments; every
// record left reads back, also after a reopen.
func TestHistoryLogCompaction(t *testing.T) {
	const seg = 4 << 10
	for _, tc := range []struct {
		name          string
		rounds        int
		fast, slow    int // records a round
		keepFast      int
		maintainEvery int // rounds between upkeep
	}{
		{"slow tenant", 60, 20, 1, 20, 1},
		{"upkeep every 5 rounds", 60, 20, 1, 20, 5},
		{"two even tenants", 40, 10, 10, 30, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := &fakeClock{t: histT0}
			s := openHist(t, dir, c, seg)
			compacted := false
			for r := range tc.rounds {
				if err := s.AppendHistory(histRecs("fast", r*tc.fast, tc.fast, 60), time.Hour); err != nil {
					t.Fatal(err)
				}
				if err := s.AppendHistory(histRecs("slow", r*tc.slow, tc.slow, 60), time.Hour); err != nil {
					t.Fatal(err)
				}
				if _, err := s.TrimHistory("fast", tc.keepFast); err != nil {
					t.Fatal(err)
				}
				if r%tc.maintainEvery != 0 {
					continue
				}
				active := s.hist.wal.Active()
				for _, id := range s.hist.maintain(true) {
					if id == active {
						t.Fatalf("the active segment %d was deleted", id)
					}
				}
				s.hist.mu.Lock()
				var live int64
				for _, st := range s.hist.segs {
					live += st.live
				}
				for id, st := range s.hist.segs {
					if id != s.hist.wal.Active() && 2*st.live < st.size {
						t.Errorf("round %d: segment %d is %d of %d bytes live after upkeep", r, id, st.live, st.size)
					}
				}
				s.hist.mu.Unlock()
				if size := s.hist.wal.Stats().Bytes; size > 2*live+2*seg {
					t.Fatalf("round %d: %d bytes of files for %d live", r, size, live)
				}
				compacted = compacted || len(s.hist.wal.Segments()) < int(s.hist.wal.Active()-s.hist.wal.Segments()[0])+1
			}
			if !compacted {
				t.Error("no segment deleted out of order: nothing was compacted")
			}
			want := func() ([]string, []string) {
				n := tc.rounds * tc.fast
				return idRange("fast", n-tc.keepFast, n), idRange("slow", 0, tc.rounds*tc.slow)
			}
			for _, stage := range []string{"live", "reopened"} {
				wf, ws := want()
				if got := histIDs(t, s, "fast", time.Time{}, 0); !slices.Equal(got, wf) {
					t.Fatalf("%s: fast %v, want %v", stage, got, wf)
				}
				if got := histIDs(t, s, "slow", time.Time{}, 0); !slices.Equal(got, ws) {
					t.Fatalf("%s: slow %d records, want %d", stage, len(got), len(ws))
				}
				if stage == "live" {
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s = openHist(t, dir, c, seg)
				}
			}
			s.Close()
		})
	}
}

// TestHistoryLogCrashMidCompaction: killed after a round copied live
// records forward but before it deleted their segments, the store reopens
// with each record once.
func TestHistoryLogCrashMidCompaction(t *testing.T) {
	dir := t.TempDir()
	c := &fakeClock{t: histT0}
	s := openHist(t, dir, c, 2<<10)
	for r := range 10 {
		if err := s.AppendHistory(append(histRecs("fast", r*10, 10, 40), histRecs("slow", r, 1, 40)...), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.TrimHistory("fast", 0); err != nil {
		t.Fatal(err)
	}
	ids0 := s.hist.wal.Segments()
	moved, err := s.hist.compact(ids0[:len(ids0)-1])
	if err != nil || len(moved) == 0 {
		t.Fatalf("compact: %v, %v", moved, err)
	}
	crash(s) // the copies and the originals are both on disk
	s = openHist(t, dir, c, 2<<10)
	defer s.Close()
	if got := histIDs(t, s, "slow", time.Time{}, 0); !slices.Equal(got, idRange("slow", 0, 10)) {
		t.Fatalf("after the crash: %v", got)
	}
	if got := histIDs(t, s, "fast", time.Time{}, 0); len(got) != 0 {
		t.Fatalf("trimmed records back after the crash: %v", got)
	}
	s.hist.maintain(true)
	if got := histIDs(t, s, "slow", time.Time{}, 0); !slices.Equal(got, idRange("slow", 0, 10)) {
		t.Fatalf("after upkeep: %v", got)
	}
}

// TestHistoryLogTornTail: a batch torn by a crash mid-write is dropped at
// the next open; the batches before it read back.
func TestHistoryLogTornTail(t *testing.T) {
	dir := t.TempDir()
	c := &fakeClock{t: histT0}
	s := openHist(t, dir, c, 1<<20)
	if err := s.AppendHistory(histRecs("a", 0, 10, 30), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendHistory(histRecs("a", 10, 10, 30), time.Hour); err != nil {
		t.Fatal(err)
	}
	crash(s)
	files := historyFiles(t, dir)
	last := files[len(files)-1]
	fi, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(last, fi.Size()-20); err != nil {
		t.Fatal(err)
	}
	s = openHist(t, dir, c, 1<<20)
	defer s.Close()
	if got := histIDs(t, s, "a", time.Time{}, 0); !slices.Equal(got, idRange("a", 0, 19)) {
		t.Fatalf("after the torn tail: %v", got)
	}
	if err := s.AppendHistory(histRecs("a", 19, 1, 30), time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := histIDs(t, s, "a", time.Time{}, 0); !slices.Equal(got, idRange("a", 0, 20)) {
		t.Fatalf("written after the torn tail: %v", got)
	}
}

// TestHistoryOldBadgerRecordsTrimmed: records an older version left in
// Badger are read beside the log's and count first (as the oldest) when
// trimming; once trimmed they stay gone.
func TestHistoryOldBadgerRecordsTrimmed(t *testing.T) {
	dir := t.TempDir()
	c := &fakeClock{t: time.Now()} // Badger's TTL goes by the real clock
	s := openHist(t, dir, c, 4<<10)
	old := histRecs("a", 0, 10, 30)
	if err := s.db.Update(func(txn *badger.Txn) error {
		for _, r := range old {
			b, err := r.marshal()
			if err != nil {
				return err
			}
			if err := txn.SetEntry(badger.NewEntry(HistoryKey(r.Tenant, r.At, r.ID), b).WithTTL(time.Hour)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openHist(t, dir, c, 4<<10)
	defer s.Close()
	if err := s.AppendHistory(histRecs("a", 10, 10, 30), time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		keep, trimmed int
		want          []string
	}{
		{25, 0, idRange("a", 0, 20)},
		{15, 5, idRange("a", 5, 20)}, // Badger's oldest first
		{12, 3, idRange("a", 8, 20)}, // still Badger's
		{6, 6, idRange("a", 14, 20)}, // Badger's last two and four of the log's
		{6, 0, idRange("a", 14, 20)}, // already trimmed
	} {
		n, err := s.TrimHistory("a", tc.keep)
		if err != nil || n != tc.trimmed {
			t.Fatalf("TrimHistory(a, %d) = %d, %v; want %d", tc.keep, n, err, tc.trimmed)
		}
		if got := histIDs(t, s, "a", time.Time{}, 0); !slices.Equal(got, tc.want) {
			t.Fatalf("keep %d: %v, want %v", tc.keep, got, tc.want)
		}
		if got := histIDs(t, s, "a", time.Time{}, 3); !slices.Equal(got, tc.want[len(tc.want)-3:]) {
			t.Fatalf("keep %d, limit 3: %v", tc.keep, got)
		}
	}
}

// FuzzSplitHistoryFrame: any body the log hands back parses or fails,
// never panics, and one that parses frames back to the same bytes.
func FuzzSplitHistoryFrame(f *testing.F) {
	for _, r := range historyCases() {
		b, err := r.marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append(appendHistoryFrame(nil, r.Tenant, atKey(r.At), 1_800_000_000), b...))
	}
	f.Add(appendHistoryFrame(nil, "", 0, 0))
	f.Add([]byte{histFrame, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		tenant, at, expires, rec, err := splitHistoryFrame(b)
		if err != nil {
			return
		}
		again := append(appendHistoryFrame(nil, string(tenant), at, expires), rec...)
		if !bytes.Equal(again, b) && binaryCanonical(b) {
			t.Fatalf("reframed %x as %x", b, again)
		}
		var r Record
		_ = unmarshalRecord(rec, &r) // the record's own decoder: FuzzUnmarshalRecord
		// Framed in the log, it replays as it was.
		framed := wal.AppendRecord(nil, b)
		body, err := wal.ReadRecord(bytes.NewReader(framed), nil, int64(len(framed)))
		if err != nil || !bytes.Equal(body, b) {
			t.Fatalf("log framing: %v", err)
		}
	})
}

// binaryCanonical reports whether b's tenant length is in its shortest
// uvarint form (a longer one parses the same but reframes shorter).
func binaryCanonical(b []byte) bool {
	n, k := binary.Uvarint(b[17:])
	return k == len(binary.AppendUvarint(nil, n))
}
