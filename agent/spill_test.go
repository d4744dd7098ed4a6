package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent/store"
)

func TestSpillDedupe(t *testing.T) {
	now := time.Now()
	var s spillDedupe
	s.put("cam/a", store.Dedupe{Topic: "delen/cam/results", Payload: []byte("A")}, now.Add(time.Minute))
	s.put("cam/b", store.Dedupe{Payload: []byte("B")}, now.Add(time.Second))
	s.put("cam/a", store.Dedupe{Payload: []byte("A2")}, now.Add(time.Minute)) // replaced, not counted twice
	for _, tc := range []struct {
		key  string
		at   time.Time
		want string // "" for none
	}{
		{"cam/a", now, "A2"},
		{"cam/b", now, "B"},
		{"cam/b", now.Add(2 * time.Second), ""}, // expired
		{"cam/c", now, ""},
		{"other/a", now, ""},
	} {
		d, ok := s.get(tc.key, tc.at)
		if got := ""; ok {
			got = string(d.Payload)
			if got != tc.want {
				t.Errorf("get(%s) = %q, want %q", tc.key, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("get(%s) found nothing, want %q", tc.key, tc.want)
		}
	}

	// Bounded: the oldest go first.
	for i := range maxSpilled + 10 {
		s.put(fmt.Sprintf("t/%d", i), store.Dedupe{}, now.Add(time.Hour))
	}
	if len(s.recs) != maxSpilled || len(s.order) != maxSpilled {
		t.Fatalf("%d records, %d in order; want %d", len(s.recs), len(s.order), maxSpilled)
	}
	if _, ok := s.get("t/9", now); ok {
		t.Error("an evicted record is still there")
	}
	if _, ok := s.get(fmt.Sprintf("t/%d", maxSpilled+9), now); !ok {
		t.Error("the newest record is gone")
	}
}
