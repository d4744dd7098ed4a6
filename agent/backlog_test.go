package agent_test

import (
	"fmt"
	"testing"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/broker/brokertest"
	"github.com/delen-edge/delen/schema"
)

// TestBacklogServedWhole: thousands of requests without deadlines queue at
// the broker while the agent is down; when it starts, every one of them is
// served ok (none refused overloaded for being queued), on the embedded
// broker and on a Mosquitto that sends the whole backlog at once
// (max_inflight_messages 0), while the agent holds at most its window of
// them at a time.
func TestBacklogServedWhole(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 1500
	}
	const window = 64
	for _, b := range []struct {
		name  string
		start func(t *testing.T) string
	}{
		{"embedded", func(t *testing.T) string { return startEmbedded(t, broker.EmbeddedConfig{}).Addr() }},
		{"mosquitto", func(t *testing.T) string {
			return brokertest.StartMosquitto(t, brokertest.MosquittoOptions{ExtraConfig: []string{
				"max_queued_messages 20000", "max_inflight_messages 0"}}).URL()
		}},
	} {
		t.Run(b.name, func(t *testing.T) {
			url := b.start(t)
			dir := t.TempDir()
			edit := func(c *agent.Config) { c.MaxInflight = window }
			// The agent's persistent session subscribes, then it stops: the
			// broker queues what comes for it.
			startAgent(t, url, dir, edit).shutdown()
			cam := newTenant(t, url, "cam")
			for i := 0; i < n; i++ {
				cam.send(digit(fmt.Sprintf("b%d", i), i%1000, schema.Bound{}), schema.MsgPack)
			}
			r := startAgent(t, url, dir, edit)
			byStatus := map[string]int{}
			for i := 0; i < n; i++ {
				res := cam.wait(fmt.Sprintf("b%d", i))
				s := res.Status
				if res.Error != nil {
					s += ":" + res.Error.Code
				}
				byStatus[s]++
			}
			if byStatus[schema.StatusOK] != n {
				t.Fatalf("backlog of %d: results %v, want all ok", n, byStatus)
			}
			if got := r.a.PeakInflight(); got > window {
				t.Errorf("the agent held %d requests at once, window %d", got, window)
			}
		})
	}
}
