package agent

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/schema"
	dto "github.com/prometheus/client_model/go"
)

// TestHistoryKeepsTheNewestPerTenant: the writer trims each tenant it wrote
// for to its newest keep records, and counts what it deleted.
func TestHistoryKeepsTheNewestPerTenant(t *testing.T) {
	for _, tc := range []struct {
		name       string
		keep       int
		wantLeft   int
		wantOldest string
	}{
		{"bounded", 5, 5, "r15"},
		{"unbounded", -1, 20, "r00"},
	} {
		trimmed := float64(20 - tc.wantLeft)
		t.Run(tc.name, func(t *testing.T) {
			st, err := store.Open(t.TempDir(), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			m := newMetrics()
			h := newHistoryWriter(st, time.Hour, tc.keep, slog.New(slog.DiscardHandler), m)
			h.trimEvery = 0 // after every flush
			done := make(chan struct{})
			go func() { h.run(); close(done) }()
			t0 := time.Now()
			for i := range 20 {
				id := fmt.Sprintf("r%02d", i)
				h.add(store.Record{Tenant: "cam", ID: id, At: t0.Add(time.Duration(i) * time.Millisecond), Result: &schema.Result{Tenant: "cam", ID: id}})
			}
			h.close()
			<-done // flushed and trimmed
			left, err := st.History("cam", time.Time{}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(left) != tc.wantLeft || left[0].ID != tc.wantOldest {
				t.Fatalf("%d records left, oldest %s; want %d from %s", len(left), left[0].ID, tc.wantLeft, tc.wantOldest)
			}
			var c dto.Metric
			if err := m.historyTrimmed.Write(&c); err != nil {
				t.Fatal(err)
			}
			if got := c.GetCounter().GetValue(); got != trimmed {
				t.Errorf("delen_history_trimmed_total = %v, want %v", got, trimmed)
			}
		})
	}
}
