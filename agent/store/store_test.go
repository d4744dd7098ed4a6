package store

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/delen-edge/delen/models/profile"
)

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
