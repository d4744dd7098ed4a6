package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

func dedupeGroup(tenant string, from, n int) []DedupeEntry {
	var g []DedupeEntry
	for i := from; i < from+n; i++ {
		g = append(g, DedupeEntry{Tenant: tenant, ID: strconv.Itoa(i),
			Dedupe: Dedupe{Topic: "delen/" + tenant + "/results", QoS: byte(i % 2), Payload: bytes.Repeat([]byte{byte(i)}, 200+i%50)}})
	}
	return g
}

// checkDedupes asserts that s answers every entry with its exact bytes.
func checkDedupes(t *testing.T, s *Store, es []DedupeEntry) {
	t.Helper()
	for _, e := range es {
		d, err := s.GetDedupe(e.Tenant, e.ID)
		if err != nil {
			t.Fatalf("%s/%s: %v", e.Tenant, e.ID, err)
		}
		if d.Topic != e.Dedupe.Topic || d.QoS != e.Dedupe.QoS || !bytes.Equal(d.Payload, e.Dedupe.Payload) {
			t.Fatalf("%s/%s: got %q qos %d %d bytes, want %q qos %d %d bytes", e.Tenant, e.ID,
				d.Topic, d.QoS, len(d.Payload), e.Dedupe.Topic, e.Dedupe.QoS, len(e.Dedupe.Payload))
		}
	}
}

// inBadger reports whether key is in Badger itself (not the journal).
func inBadger(t *testing.T, s *Store, tenant, id string) bool {
	t.Helper()
	err := s.db.View(func(txn *badger.Txn) error { _, err := txn.Get(DedupeKey(tenant, id)); return err })
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func journalFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, journalDir, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// fakeClock is a clock a test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openSmall opens a store with 4 KiB journal segments and no background
// upkeep (the test calls maintain), on clock c when it is not nil.
func openSmall(t *testing.T, dir string, c *fakeClock, hash func([]byte) uint64) *Store {
	t.Helper()
	o := journalOptions{segmentSize: 4 << 10, dropEvery: time.Hour, hash: hash}
	if c != nil {
		o.now = c.now
	}
	s, err := Open(dir, Options{journal: o})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJournalKeepsDedupesOutOfBadger: a record is answered with its exact
// bytes from the moment PutDedupes returns, from the journal alone: Badger
// never holds it, and after a clean close and a reopen the journal still
// answers every record.
func TestJournalKeepsDedupesOutOfBadger(t *testing.T) {
	dir := t.TempDir()
	s := openSmall(t, dir, nil, nil)
	var all []DedupeEntry
	for g := 0; g < 10; g++ { // 10 groups over several 4 KiB segments
		group := dedupeGroup("cam", g*10, 10)
		if err := s.PutDedupes(group, time.Hour); err != nil {
			t.Fatal(err)
		}
		all = append(all, group...)
	}
	checkDedupes(t, s, all)
	if n := len(journalFiles(t, dir)); n < 3 {
		t.Fatalf("%d journal segments for ~25 KB at 4 KiB each", n)
	}
	if _, err := s.GetDedupe("cam", "100"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unrecorded id: %v", err)
	}
	if n := s.DedupeRecords(); n != 100 {
		t.Fatalf("DedupeRecords: %d, want 100", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSmall(t, dir, nil, nil)
	defer s.Close()
	for _, e := range all {
		if inBadger(t, s, e.Tenant, e.ID) {
			t.Fatalf("%s is in Badger", e.ID)
		}
	}
	checkDedupes(t, s, all)
	if n := s.DedupeRecords(); n != 100 {
		t.Fatalf("DedupeRecords after reopen: %d, want 100", n)
	}
}

// TestJournalSurvivesKill: records PutDedupes accepted are all answered
// after the process that wrote them was killed with SIGKILL: the next open
// rebuilds the index from the journal.
func TestJournalSurvivesKill(t *testing.T) {
	if dir := os.Getenv("DELEN_JOURNAL_CHILD"); dir != "" {
		journalChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestJournalSurvivesKill$")
	cmd.Env = append(os.Environ(), "DELEN_JOURNAL_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	written := false
	for sc.Scan() {
		if sc.Text() == "written" {
			written = true
			break
		}
	}
	if !written {
		t.Fatalf("child ended without writing: %v", sc.Err())
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	cmd.Wait()
	if len(journalFiles(t, dir)) == 0 {
		t.Fatal("the killed process left no journal")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkDedupes(t, s, dedupeGroup("cam", 0, 300))
}

// journalChild writes 300 records in 3 groups, says so and waits to be
// killed.
func journalChild(dir string) {
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for g := 0; g < 3; g++ {
		if err := s.PutDedupes(dedupeGroup("cam", g*100, 100), time.Hour); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	fmt.Println("written")
	select {}
}

// TestJournalTornTail: a group torn by a crash mid-write is dropped at the
// next open, the groups before it are replayed, and the store goes on.
func TestJournalTornTail(t *testing.T) {
	dir := t.TempDir()
	s := openSmall(t, dir, nil, nil)
	first, torn := dedupeGroup("cam", 0, 5), dedupeGroup("cam", 5, 5)
	for _, g := range [][]DedupeEntry{first, torn} {
		if err := s.PutDedupes(g, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	crash(s)
	files := journalFiles(t, dir)
	last := files[len(files)-1]
	fi, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(last, fi.Size()-10); err != nil { // the last record loses its end
		t.Fatal(err)
	}
	s = openSmall(t, dir, nil, nil)
	defer s.Close()
	checkDedupes(t, s, first)
	checkDedupes(t, s, torn[:4])
	if _, err := s.GetDedupe("cam", torn[4].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("torn record: %v, want ErrNotFound", err)
	}
	next := dedupeGroup("cam", 10, 5)
	if err := s.PutDedupes(next, time.Hour); err != nil {
		t.Fatal(err)
	}
	checkDedupes(t, s, next)
}

// crash leaves s as a kill -9 would: nothing cleaned up.
func crash(s *Store) {
	s.closeOnce.Do(func() { close(s.stopGC) })
	<-s.gcDone
	<-s.wbDone
	if s.jnl.started {
		close(s.jnl.stop)
		<-s.jnl.stopped
	}
	s.jnl.wal.Close() // the files stay as they are
	if s.hist.started {
		close(s.hist.stop)
		<-s.hist.stopped
	}
	s.hist.wal.Close()
	s.db.Close()
}

// TestJournalExpiry: a record past its TTL is not answered, even before
// its segment goes; a segment is deleted (and its records leave the index)
// once all its records have expired, not before; an active segment older
// than rollEvery is closed so that it can go too; what is left is all
// that a reopen finds.
func TestJournalExpiry(t *testing.T) {
	dir := t.TempDir()
	c := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s := openSmall(t, dir, c, nil)
	early := dedupeGroup("cam", 0, 40) // ~10 KB: several segments
	if err := s.PutDedupes(early, time.Minute); err != nil {
		t.Fatal(err)
	}
	c.add(30 * time.Second)
	late := dedupeGroup("cam", 40, 5)
	if err := s.PutDedupes(late, time.Minute); err != nil {
		t.Fatal(err)
	}
	before := len(journalFiles(t, dir))
	s.jnl.maintain()
	if n := len(journalFiles(t, dir)); n != before {
		t.Fatalf("%d segments before any record expired, %d after maintain", before, n)
	}
	c.add(31 * time.Second) // early expired, late not
	for _, e := range early {
		if _, err := s.GetDedupe(e.Tenant, e.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired %s: %v, want ErrNotFound", e.ID, err)
		}
	}
	s.jnl.maintain()
	if n := len(journalFiles(t, dir)); n >= before {
		t.Fatalf("%d segments before, %d after their records expired", before, n)
	}
	checkDedupes(t, s, late)
	if n := s.DedupeRecords(); n < len(late) || n >= len(early) {
		t.Fatalf("DedupeRecords after the early records went: %d (late %d)", n, len(late))
	}
	c.add(31 * time.Second) // late expired; its segment is the active one, a minute old
	s.jnl.maintain()
	if n := s.DedupeRecords(); n != 0 {
		t.Fatalf("DedupeRecords with everything expired: %d", n)
	}
	if f := journalFiles(t, dir); len(f) > 1 {
		t.Fatalf("with everything expired the journal keeps %v", f)
	}
	fresh := dedupeGroup("cam", 100, 3)
	if err := s.PutDedupes(fresh, time.Minute); err != nil {
		t.Fatal(err)
	}
	crash(s)
	s = openSmall(t, dir, c, nil)
	defer s.Close()
	checkDedupes(t, s, fresh)
	if n := s.DedupeRecords(); n != len(fresh) {
		t.Fatalf("DedupeRecords after reopen: %d, want %d", n, len(fresh))
	}
}

// TestJournalHashCollisions: with every key hashed alike, each is still
// answered with its own bytes (the stored key tells them apart), written
// again it answers its newest bytes, before and after a reopen; once
// expired, nothing of them stays in the index.
func TestJournalHashCollisions(t *testing.T) {
	dir := t.TempDir()
	c := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	same := func([]byte) uint64 { return 42 }
	s := openSmall(t, dir, c, same)
	var all []DedupeEntry
	for g := 0; g < 5; g++ {
		group := dedupeGroup("cam", g*8, 8)
		if err := s.PutDedupes(group, time.Minute); err != nil {
			t.Fatal(err)
		}
		all = append(all, group...)
	}
	again := dedupeGroup("cam", 3, 1)
	again[0].Dedupe.Payload = []byte("newer bytes")
	if err := s.PutDedupes(again, time.Minute); err != nil {
		t.Fatal(err)
	}
	all[3] = again[0]
	checkDedupes(t, s, all)
	if _, err := s.GetDedupe("cam", "999"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unrecorded id with a colliding hash: %v", err)
	}
	if n := s.DedupeRecords(); n != len(all) {
		t.Fatalf("DedupeRecords: %d, want %d", n, len(all))
	}
	crash(s)
	s = openSmall(t, dir, c, same)
	defer s.Close()
	checkDedupes(t, s, all)
	if n := s.DedupeRecords(); n != len(all) {
		t.Fatalf("DedupeRecords after reopen: %d, want %d", n, len(all))
	}
	c.add(2 * time.Minute)
	s.jnl.maintain()
	if n := s.DedupeRecords(); n != 0 {
		t.Fatalf("DedupeRecords with everything expired: %d", n)
	}
}

// FuzzDecodeJournalRecord: any record body decodes or fails without a
// panic, and what encode writes decodes back the same.
func FuzzDecodeJournalRecord(f *testing.F) {
	f.Add(encodeJournalRecord(nil, &journalRec{key: "dedupe/cam/1", val: []byte{1, 2, 3}, expires: 1 << 40}))
	f.Add(encodeJournalRecord(nil, &journalRec{key: "k"}))
	f.Add([]byte{journalDedupe, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeJournalRecord(b)
		if err != nil {
			return
		}
		again, err := decodeJournalRecord(encodeJournalRecord(nil, r))
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if again.key != r.key || again.expires != r.expires || !bytes.Equal(again.val, r.val) {
			t.Fatalf("round trip: %+v then %+v", r, again)
		}
	})
}

// TestJournalLookupsDuringDrops: while groups are written and expired
// segments are deleted concurrently (4 KiB segments rolled and deleted all
// the time, the clock moving 10 s every 10 groups, records kept 20 s),
// every record is found with its exact bytes from the moment its
// PutDedupes returned until it expires.
func TestJournalLookupsDuringDrops(t *testing.T) {
	dir := t.TempDir()
	c := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s := openSmall(t, dir, c, nil)
	defer s.Close()
	const groups, size, keep = 300, 7, 20 * time.Second
	type written struct {
		es      []DedupeEntry
		expires time.Time
	}
	done := make(chan written, groups)
	errs := make(chan error, 1)
	go func() {
		defer close(done)
		for g := 0; g < groups; g++ {
			group := dedupeGroup("cam", g*size, size)
			at := c.now()
			if err := s.PutDedupes(group, keep); err != nil {
				errs <- err
				return
			}
			done <- written{group, at.Add(keep).Truncate(time.Second)}
			if g%10 == 9 {
				c.add(10 * time.Second)
				s.jnl.maintain()
			}
		}
	}()
	var recent []written
	for w := range done {
		if recent = append(recent, w); len(recent) > 15 {
			recent = recent[1:]
		}
		for _, r := range recent {
			for _, e := range r.es {
				d, err := s.GetDedupe(e.Tenant, e.ID)
				if errors.Is(err, ErrNotFound) && c.now().Before(r.expires) {
					t.Fatalf("%s not found before it expired", e.ID)
				}
				if err == nil && !bytes.Equal(d.Payload, e.Dedupe.Payload) {
					t.Fatalf("%s: wrong bytes", e.ID)
				} else if err != nil && !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
			}
		}
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if n := len(journalFiles(t, dir)); n > 20 {
		t.Fatalf("%d journal segments left: expired ones are not deleted", n)
	}
}
