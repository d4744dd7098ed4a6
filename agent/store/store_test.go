package store

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/delen-edge/delen/models/profile"
	"github.com/dgraph-io/badger/v4"
)

// reopen closes s and opens the store in dir again.
func reopen(t testing.TB, s *Store, dir string) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestProfileSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := &profile.Profile{Model: "m", Version: "2", Device: "dev", CreatedAt: time.Unix(100, 0).UTC(),
		EnergySource: "model",
		Stages:       []profile.StageStats{{Stage: 0, Runs: 200, LatencyMS: profile.Quantiles{P50: 1, P95: 2, P99: 3}}},
		Exits:        []profile.ExitStats{{Exit: 1, Accuracy: 0.9}}}
	if err := s.PutProfile(p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Profile("m", "1", "dev"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other version: %v, want ErrNotFound", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Profile("m", "2", "dev")
	if err != nil {
		t.Fatal(err)
	}
	if got.Stages[0].LatencyMS.P95 != 2 || got.Exits[0].Accuracy != 0.9 || !got.CreatedAt.Equal(p.CreatedAt) {
		t.Fatalf("profile after reopen: %+v", got)
	}
	all, err := s.Profiles()
	if err != nil || len(all) != 1 {
		t.Fatalf("Profiles: %v, %d entries", err, len(all))
	}
}

// TestReopenFindsLevelZeroEmpty: a store closed after writes opens with no
// table in level 0, so opening it starts no compaction (a table written
// through a memory map, which kills the process with SIGBUS when the data
// folder fills meanwhile: TestFullDataFolder in agent/faulttest).
func TestReopenFindsLevelZeroEmpty(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		p := &profile.Profile{Model: "m", Version: strconv.Itoa(i), Device: "dev", CreatedAt: time.Unix(100, 0).UTC(), EnergySource: "model",
			Stages: []profile.StageStats{{Stage: 0, Runs: 200, LatencyMS: profile.Quantiles{P50: 1, P95: 2, P99: 3}}},
			Exits:  []profile.ExitStats{{Exit: 1, Accuracy: 0.9}}}
		if err := s.PutProfile(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if l0 := s.db.Levels()[0]; l0.NumTables != 0 {
		t.Errorf("level 0 holds %d tables after a reopen, want 0", l0.NumTables)
	}
	if all, err := s.Profiles(); err != nil || len(all) != 50 {
		t.Fatalf("Profiles after reopen: %v, %d entries, want 50", err, len(all))
	}
}

// TestProfileValidationWrittenOnce: a profile's validation data goes to a
// key of its own, written again only when the profile carries other data
// than was written last, so storing a live-refreshed profile every status
// interval does not write hundreds of KB each time; it reads back with the
// profile, and a profile stored inline by an older version reads too.
func TestProfileValidationWrittenOnce(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := 2000
	val := &profile.Validation{Confidence: [][]float32{make([]float32, n)}, Correct: [][]bool{make([]bool, n)}}
	for i := range n {
		val.Confidence[0][i], val.Correct[0][i] = float32(i)/float32(n), i%3 == 0
	}
	p := &profile.Profile{Model: "m", Version: "1", Device: "dev", EnergySource: "model",
		Stages:     []profile.StageStats{{Stage: 0, Runs: 200, LatencyMS: profile.Quantiles{P50: 1, P95: 2, P99: 3}}},
		Exits:      []profile.ExitStats{{Exit: 1, Accuracy: 0.9}},
		Validation: val}
	valVersion := func() uint64 {
		t.Helper()
		var v uint64
		err := s.db.View(func(txn *badger.Txn) error {
			it, err := txn.Get(validationKey(profileKey("m", "1", "dev")))
			if errors.Is(err, badger.ErrKeyNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			v = it.Version()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := s.PutProfile(p); err != nil {
		t.Fatal(err)
	}
	first := valVersion()
	if first == 0 {
		t.Fatal("no validation key after the first PutProfile")
	}
	// Live refreshes: new stage figures, the same validation data.
	for i := range 20 {
		q := *p
		q.Stages = []profile.StageStats{{Stage: 0, Runs: 200 + i, LatencyMS: profile.Quantiles{P50: 1, P95: 2, P99: float64(3 + i)}}}
		if err := s.PutProfile(&q); err != nil {
			t.Fatal(err)
		}
	}
	if v := valVersion(); v != first {
		t.Errorf("validation key rewritten by refreshes with the same data (version %d, first %d)", v, first)
	}
	got, err := s.Profile("m", "1", "dev")
	if err != nil {
		t.Fatal(err)
	}
	if got.Stages[0].LatencyMS.P99 != 22 || got.Validation == nil || len(got.Validation.Confidence[0]) != n || got.Validation.Correct[0][3] != true {
		t.Fatalf("profile read back: P99 %v, validation %v", got.Stages[0].LatencyMS.P99, got.Validation != nil)
	}
	// Other data is written; none deletes it.
	q := *p
	q.Validation = &profile.Validation{Confidence: [][]float32{{0.25}}, Correct: [][]bool{{true}}}
	if err := s.PutProfile(&q); err != nil {
		t.Fatal(err)
	}
	if v := valVersion(); v == first {
		t.Error("new validation data not written")
	}
	q.Validation = nil
	if err := s.PutProfile(&q); err != nil {
		t.Fatal(err)
	}
	if v := valVersion(); v != 0 {
		t.Error("validation key kept for a profile without validation data")
	}
	// An older version's profile, validation inline.
	old := *p
	old.Model = "old"
	b, err := json.Marshal(&old)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(profileKey("old", "1", "dev"), b) }); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, dir)
	defer s.Close()
	all, err := s.Profiles()
	if err != nil || len(all) != 2 {
		t.Fatalf("Profiles after reopen: %v, %d entries, want 2", err, len(all))
	}
	for _, p := range all {
		if want := p.Model == "old"; (p.Validation != nil) != want {
			t.Errorf("%s: validation %v after reopen, want %v", p.Model, p.Validation != nil, want)
		}
	}
}

func TestInvalidProfileRefused(t *testing.T) {
	s, err := Open("", Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.PutProfile(&profile.Profile{Model: "m"}); err == nil {
		t.Fatal("stored a profile without version, device or stages")
	}
}
