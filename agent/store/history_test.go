package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/schema"
)

func TestTrimHistoryKeepsTheNewest(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Unix(1_800_000_000, 0)
	var recs []store.Record
	for _, tc := range []struct {
		tenant string
		n      int
	}{{"a", 50}, {"ab", 10}, {"b", 10}} { // "ab" shares a's prefix but not its key space
		for i := range tc.n {
			recs = append(recs, store.Record{At: t0.Add(time.Duration(i) * time.Second),
				Result: &schema.Result{Tenant: tc.tenant, ID: fmt.Sprintf("%s-%02d", tc.tenant, i)}})
		}
	}
	for i := range recs {
		recs[i].Tenant = recs[i].Result.Tenant
		recs[i].ID = recs[i].Result.ID
	}
	if err := st.AppendHistory(recs, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tenant        string
		keep, deleted int
		first         string // oldest id left
	}{
		{"a", 20, 30, "a-30"},
		{"a", 20, 0, "a-30"}, // already trimmed
		{"ab", 100, 0, "ab-00"},
		{"b", 0, 10, ""},
	} {
		n, err := st.TrimHistory(tc.tenant, tc.keep)
		if err != nil || n != tc.deleted {
			t.Fatalf("TrimHistory(%s, %d) = %d, %v; want %d deleted", tc.tenant, tc.keep, n, err, tc.deleted)
		}
		left, err := st.History(tc.tenant, time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := min(tc.keep, map[string]int{"a": 50, "ab": 10, "b": 10}[tc.tenant]); len(left) != want {
			t.Fatalf("%s: %d records left, want %d", tc.tenant, len(left), want)
		}
		if len(left) > 0 && left[0].ID != tc.first {
			t.Errorf("%s: oldest left %s, want %s", tc.tenant, left[0].ID, tc.first)
		}
	}
}
