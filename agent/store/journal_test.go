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

// openApplyingNever opens a store whose journal is applied only when the
// test says so (apply) or at close.
func openApplyingNever(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{journal: journalOptions{applyEvery: time.Hour, segmentSize: 4 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJournalLookupsBeforeApply: a record is answered with its exact bytes
// from the moment PutDedupes returns, while it is only in the journal;
// applying moves it to Badger and deletes the segments it was in, and the
// answers stay the same.
func TestJournalLookupsBeforeApply(t *testing.T) {
	dir := t.TempDir()
	s := openApplyingNever(t, dir)
	defer s.Close()
	var all []DedupeEntry
	for g := 0; g < 10; g++ { // 10 groups over several 4 KiB segments
		group := dedupeGroup("cam", g*10, 10)
		if err := s.PutDedupes(group, time.Hour); err != nil {
			t.Fatal(err)
		}
		all = append(all, group...)
	}
	checkDedupes(t, s, all)
	if inBadger(t, s, "cam", "0") || inBadger(t, s, "cam", "99") {
		t.Fatal("records in Badger before the journal was applied")
	}
	if n := len(journalFiles(t, dir)); n < 3 {
		t.Fatalf("%d journal segments for ~25 KB at 4 KiB each", n)
	}
	if _, err := s.GetDedupe("cam", "100"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unrecorded id: %v", err)
	}
	if n := s.DedupeWaiting(); n != 100 {
		t.Fatalf("DedupeWaiting before apply: %d, want 100", n)
	}
	if !s.jnl.apply() {
		t.Fatal("apply failed")
	}
	for _, e := range all {
		if !inBadger(t, s, e.Tenant, e.ID) {
			t.Fatalf("%s not in Badger after apply", e.ID)
		}
	}
	checkDedupes(t, s, all)
	if s.DedupeWaiting() != 0 || len(s.jnl.pending) != 0 || s.jnl.bytes != 0 {
		t.Fatalf("after apply the journal still indexes %d records (%d bytes)", len(s.jnl.pending), s.jnl.bytes)
	}
	if n := len(journalFiles(t, dir)); n > 1 {
		t.Fatalf("%d journal segments left after everything was applied", n)
	}
}

// TestJournalAppliesInBackground: with the store's own settings, records
// reach Badger without being asked, and the journal's segments go.
func TestJournalAppliesInBackground(t *testing.T) {
	dir := t.TempDir()
	applied := make(chan int, 100)
	s, err := Open(dir, Options{journal: journalOptions{applyEvery: time.Millisecond,
		onApply: func(n int) { applied <- n }}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	group := dedupeGroup("cam", 0, 50)
	if err := s.PutDedupes(group, time.Hour); err != nil {
		t.Fatal(err)
	}
	checkDedupes(t, s, group)
	for n := 0; n < len(group); n += <-applied {
	}
	for _, e := range group {
		if !inBadger(t, s, e.Tenant, e.ID) {
			t.Fatalf("%s not in Badger after the background apply", e.ID)
		}
	}
	checkDedupes(t, s, group)
	if n := len(journalFiles(t, dir)); n > 1 {
		t.Fatalf("%d journal segments left", n)
	}
}

// TestJournalSurvivesKill: records PutDedupes accepted are all there after
// the process that wrote them was killed with SIGKILL before the journal
// was applied: the next open replays them into Badger.
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
	all := dedupeGroup("cam", 0, 300)
	for _, e := range all {
		if !inBadger(t, s, e.Tenant, e.ID) {
			t.Fatalf("%s not replayed into Badger at open", e.ID)
		}
	}
	checkDedupes(t, s, all)
	if n := len(journalFiles(t, dir)); n > 1 {
		t.Fatalf("%d journal segments left after the replay", n)
	}
}

// journalChild writes 300 records in 3 groups to a store that never
// applies them, says so and waits to be killed.
func journalChild(dir string) {
	s, err := Open(dir, Options{journal: journalOptions{applyEvery: time.Hour}})
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
	s := openApplyingNever(t, dir)
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
	s = openApplyingNever(t, dir)
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

// crash leaves s as a kill -9 would: nothing applied, nothing cleaned up.
func crash(s *Store) {
	s.closeOnce.Do(func() { close(s.stopGC) })
	<-s.gcDone
	<-s.wbDone
	if s.jnl.started {
		close(s.jnl.stop)
		<-s.jnl.stopped
	}
	s.jnl.wal.Close() // the files stay as they are
	s.db.Close()
}

// TestJournalExpiry: a record past its TTL is not answered from the
// journal, nor replayed into Badger; a clean close applies the rest and
// leaves no journal file.
func TestJournalExpiry(t *testing.T) {
	dir := t.TempDir()
	s := openApplyingNever(t, dir)
	past := uint64(time.Now().Add(-time.Second).Unix())
	old := &journalRec{key: string(DedupeKey("cam", "old")), val: (&Dedupe{Topic: "t", Payload: []byte("x")}).marshal(), expires: past}
	if err := s.jnl.put([]*journalRec{old}); err != nil {
		t.Fatal(err)
	}
	live := dedupeGroup("cam", 0, 3)
	if err := s.PutDedupes(live, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDedupe("cam", "old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired record in the journal: %v, want ErrNotFound", err)
	}
	crash(s)
	s = openApplyingNever(t, dir)
	if inBadger(t, s, "cam", "old") {
		t.Fatal("expired record replayed into Badger")
	}
	checkDedupes(t, s, live)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if f := journalFiles(t, dir); len(f) != 0 {
		t.Fatalf("a clean close left %v", f)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkDedupes(t, s, live)
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

// TestJournalLookupsDuringApply: while groups are written and applied
// concurrently (an apply every millisecond, 4 KiB segments rolled and
// deleted all the time), every record is found with its exact bytes from
// the moment its PutDedupes returned: in the index, during its Badger
// commit, and after.
func TestJournalLookupsDuringApply(t *testing.T) {
	dir := t.TempDir()
	applied := make(chan int, 1<<12)
	s, err := Open(dir, Options{journal: journalOptions{applyEvery: time.Millisecond, segmentSize: 4 << 10,
		onApply: func(n int) {
			select {
			case applied <- n:
			default:
			}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const groups, size = 300, 7
	done := make(chan []DedupeEntry, groups)
	errs := make(chan error, 2)
	go func() {
		for g := 0; g < groups; g++ {
			if g == groups/2 {
				<-applied // the second half is written while records are applied
			}
			group := dedupeGroup("cam", g*size, size)
			if err := s.PutDedupes(group, time.Hour); err != nil {
				errs <- err
				return
			}
			done <- group
		}
		close(done)
	}()
	var all []DedupeEntry
	for group := range done {
		all = append(all, group...)
		checkDedupes(t, s, group)
		checkDedupes(t, s, all[len(all)*7/10:][:1]) // an older one, maybe applied meanwhile
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if len(all) != groups*size {
		t.Fatalf("%d records written, want %d", len(all), groups*size)
	}
	checkDedupes(t, s, all)
}
