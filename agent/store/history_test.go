package store_test

import (
	"errors"
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

// A limit keeps the newest records (users ask for the last few), given
// oldest first, for one tenant and across tenants.
func TestHistoryLimitGivesTheNewest(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Unix(1_800_000_000, 0)
	var recs []store.Record
	// a-00..a-09 at seconds 0,2,..,18; ab-00..ab-09 at 1,3,..,19; "ab" shares a's prefix.
	for i := range 10 {
		for j, tenant := range []string{"a", "ab"} {
			id := fmt.Sprintf("%s-%02d", tenant, i)
			recs = append(recs, store.Record{Tenant: tenant, ID: id, At: t0.Add(time.Duration(2*i+j) * time.Second),
				Result: &schema.Result{Tenant: tenant, ID: id}})
		}
	}
	if err := st.AppendHistory(recs, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, tenant string
		since        time.Time
		limit        int
		want         []string
	}{
		{"tenant, limit", "a", time.Time{}, 3, []string{"a-07", "a-08", "a-09"}},
		{"other tenant, limit", "ab", time.Time{}, 2, []string{"ab-08", "ab-09"}},
		{"all tenants, limit", "", time.Time{}, 3, []string{"ab-08", "a-09", "ab-09"}},
		{"since and limit", "a", t0.Add(15 * time.Second), 3, []string{"a-08", "a-09"}},
		{"all tenants since", "", t0.Add(16 * time.Second), 0, []string{"a-08", "ab-08", "a-09", "ab-09"}},
		{"limit beyond the records", "a", t0.Add(14 * time.Second), 100, []string{"a-07", "a-08", "a-09"}},
		{"unknown tenant", "zz", time.Time{}, 3, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.History(tc.tenant, tc.since, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range got {
				ids = append(ids, r.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
				t.Errorf("History(%q, %d) = %v, want %v", tc.tenant, tc.limit, ids, tc.want)
			}
		})
	}
	all, err := st.History("a", time.Time{}, 0)
	if err != nil || len(all) != 10 || all[0].ID != "a-00" || all[9].ID != "a-09" {
		t.Fatalf("no limit: %d records, %v", len(all), err)
	}
}

// A second process (here: a second Open) gets ErrInUse, which callers
// turn into "stop the running agent first".
func TestOpenInUse(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := store.Open(dir, store.Options{}); !errors.Is(err, store.ErrInUse) {
		t.Fatalf("second Open: %v, want ErrInUse", err)
	}
}
