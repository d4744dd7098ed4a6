package agent_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/schema"
)

// accEvery is how often the agent refreshes a model's live accuracy
// window (agent/liveprofile.go).
const accEvery = 50

// TestLiveAccuracyFromLabels: labelled requests feed their model's live
// accuracy window, which shows up where a tenant or operator looks: the
// profile (what the accuracy policy re-tunes from), the metrics, each
// history record and the tenant's state.
func TestLiveAccuracyFromLabels(t *testing.T) {
	url := startEmbedded(t, broker.EmbeddedConfig{}).Addr()
	r := startAgent(t, url, t.TempDir(), func(c *agent.Config) { c.StatusInterval = 100 * time.Millisecond })
	tc := newTenant(t, url, "labels")
	const n = 250 // five refreshes of the window
	for i := range n {
		tc.send(digit(fmt.Sprintf("l%d", i), i, schema.Bound{Accuracy: f64(0.98)}), schema.MsgPack)
	}
	right := 0
	for i := range n {
		res := tc.wait(fmt.Sprintf("l%d", i))
		if res.Class != nil && *res.Class == testSet.Label(i) {
			right++
		}
	}
	measured := float64(right) / n
	// The state shows it (republished at the status interval once the
	// window has all n answers).
	var state struct {
		Live *struct {
			Model    string  `msgpack:"model"`
			Measured float64 `msgpack:"measured"`
			Samples  int     `msgpack:"samples"`
		} `msgpack:"live_accuracy"`
	}
	for state.Live == nil || state.Live.Samples != n {
		select {
		case b := <-tc.state:
			if err := msgpack.Unmarshal(b, &state); err != nil {
				t.Fatalf("state %q: %v", b, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no state with the live accuracy (last %+v)", state.Live)
		}
	}
	if state.Live.Model != "mnist-ee" || state.Live.Measured != measured {
		t.Errorf("state's live accuracy %+v, want mnist-ee at %.4f", state.Live, measured)
	}
	// The profile and the metrics have what the state showed.
	live := r.a.Profile("mnist-ee").Live
	if live == nil || live.Samples != n || live.Measured != measured || live.Expected <= 0 {
		t.Fatalf("profile's live accuracy %+v, want %d samples measuring %.4f", live, n, measured)
	}
	mfs, err := r.a.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var gauge float64 = -1
	for _, mf := range mfs {
		if mf.GetName() == "delen_live_accuracy_ratio" {
			gauge = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if gauge != measured {
		t.Errorf("delen_live_accuracy_ratio %v, want %v", gauge, measured)
	}
	// The history records carry it (records are written in batches: stop
	// the agent to flush them).
	r.shutdown()
	st, err := store.Open(filepath.Join(r.dir, "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.History("labels", time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	withLive := 0
	for _, rec := range recs {
		if rec.LiveAccuracy != nil && *rec.LiveAccuracy > 0 {
			withLive++
		}
	}
	if len(recs) != n || withLive < n-accEvery {
		t.Errorf("%d history records, %d with a live accuracy, want %d and ≥ %d", len(recs), withLive, n, n-accEvery)
	}
}
