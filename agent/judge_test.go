package agent

import (
	"log/slog"
	"testing"
	"time"

	"github.com/delen-edge/delen/policies"
	"github.com/delen-edge/delen/schema"
)

// TestBoundJudgedByOutcome: a result's status and bound_met say what the
// tenant got, not what the policy predicted. A request served at exit 1
// because its bound looked infeasible (infeasible: late) is ok when the
// result still made its deadline, and late when it did not; its accuracy
// part is missed either way (exit 1 is short of the target).
func TestBoundJudgedByOutcome(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	cases := []struct {
		name       string
		bound      schema.Bound
		age        time.Duration // of the deadline's origin when the result is judged
		infeasible bool
		status     string
		met        bool
	}{
		{"within the deadline", schema.Bound{LatencyMS: f(100)}, 10 * time.Millisecond, false, schema.StatusOK, true},
		{"past the deadline", schema.Bound{LatencyMS: f(100)}, 150 * time.Millisecond, false, schema.StatusLate, false},
		{"predicted infeasible, made it", schema.Bound{LatencyMS: f(100)}, 10 * time.Millisecond, true, schema.StatusOK, true},
		{"predicted infeasible, missed", schema.Bound{LatencyMS: f(100)}, 150 * time.Millisecond, true, schema.StatusLate, false},
		{"infeasible with an accuracy target", schema.Bound{LatencyMS: f(100), Accuracy: f(0.98)}, 10 * time.Millisecond, true, schema.StatusLate, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			now := time.Now()
			j := &job{
				tenant: "cam", policy: policies.BoundPolicy{}, bound: c.bound, enc: schema.MsgPack,
				arrival: now.Add(-c.age), origin: now.Add(-c.age),
				late: c.infeasible, cut: c.infeasible,
				result: &schema.Result{V: schema.Version, ID: "r1", Tenant: "cam", Status: schema.StatusOK, Exit: 1, Exits: 3},
			}
			encodeJob(&answer{job: j}, slog.New(slog.DiscardHandler))
			r := j.result
			if r.Status != c.status || r.BoundMet == nil || *r.BoundMet != c.met {
				t.Fatalf("status %s bound_met %v, want %s %v", r.Status, r.BoundMet, c.status, c.met)
			}
		})
	}
}
