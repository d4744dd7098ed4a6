package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/schema"
)

// TestDeadlineEndToEnd: a latency bound's deadline counts from the
// request's sent_at when the agent finds it plausible (at most 50 ms in
// the future, at most 60 s old by default, both configurable), else from
// arrival; the result says which. A sent_at a few seconds old is
// plausible, so a 5 s deadline counted from it has passed on arrival: the
// request is served at exit 1, late. With a maximum age below those few
// seconds the same request counts from arrival and is served in time.
func TestDeadlineEndToEnd(t *testing.T) {
	url := startEmbedded(t, broker.EmbeddedConfig{}).Addr()
	startAgent(t, url, t.TempDir(), nil)
	strict := startEmbedded(t, broker.EmbeddedConfig{}).Addr()
	startAgent(t, strict, t.TempDir(), func(c *agent.Config) { c.SentAtMaxAge = 6 * time.Second; c.SentAtFuture = time.Second })
	second := schema.Bound{LatencyMS: f64(5000)}
	cases := []struct {
		name   string
		url    string
		sentAt time.Duration // from now; 0: absent
		bound  schema.Bound
		// want
		from   string
		status string
		exit   int // 0: any
	}{
		{"plausible sent_at", url, -time.Millisecond, second, schema.DeadlineFromSentAt, schema.StatusOK, 3},
		{"absent", url, 0, second, schema.DeadlineFromArrival, schema.StatusOK, 3},
		{"in the future", url, 10 * time.Second, second, schema.DeadlineFromArrival, schema.StatusOK, 3},
		{"slightly ahead (clock skew within 50 ms)", url, 20 * time.Millisecond, second, schema.DeadlineFromSentAt, schema.StatusOK, 3},
		{"too old", url, -2 * time.Minute, second, schema.DeadlineFromArrival, schema.StatusOK, 3},
		{"old but plausible: deadline passed before arrival", url, -8 * time.Second, second, schema.DeadlineFromSentAt, schema.StatusLate, 1},
		{"older than the configured maximum age", strict, -8 * time.Second, second, schema.DeadlineFromArrival, schema.StatusOK, 3},
		{"ahead within the configured tolerance", strict, 500 * time.Millisecond, second, schema.DeadlineFromSentAt, schema.StatusOK, 3},
		{"no latency bound", url, -5 * time.Second, schema.Bound{Exit: intp(2)}, "", schema.StatusOK, 2},
	}
	clients := map[string]*tenantClient{url: newTenant(t, url, "cam1"), strict: newTenant(t, strict, "cam1")}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc := clients[c.url]
			req := digit(fmt.Sprintf("d%d", i), i, c.bound)
			req.SentAt = 0
			if c.sentAt != 0 {
				req.SentAt = time.Now().Add(c.sentAt).UnixMicro()
			}
			tc.send(req, schema.MsgPack)
			r := tc.wait(req.ID)
			if r.DeadlineFrom != c.from || r.Status != c.status || (c.exit != 0 && r.Exit != c.exit) {
				t.Errorf("deadline_from %q status %s exit %d, want %q %s %d", r.DeadlineFrom, r.Status, r.Exit, c.from, c.status, c.exit)
			}
			if r.BoundMet == nil || *r.BoundMet != (c.status == schema.StatusOK) {
				t.Errorf("bound_met %v with status %s", r.BoundMet, r.Status)
			}
			if r.SentAt != req.SentAt {
				t.Errorf("sent_at echoed %d, want %d", r.SentAt, req.SentAt)
			}
		})
	}
}
