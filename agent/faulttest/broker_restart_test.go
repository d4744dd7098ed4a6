//go:build linux

package faulttest

import (
	"strings"
	"testing"
	"time"
)

// TestMosquittoRestartMidLoad restarts a real Mosquitto (SIGTERM, which
// saves its persistence file, one second down, then a start on the same
// port) while a load runs. The agent reconnects on its own, in the same process; the tenant,
// a persistent session too, retries a publish that fails during the
// restart (the same request id, so it may reach the broker twice). Every
// request must be answered, each with one result content.
func TestMosquittoRestartMidLoad(t *testing.T) {
	requireSetup(t)
	const n, rate = 600, 200.0
	const outage = time.Second
	began := time.Now()
	m := startMosquitto(t)
	ag := newAgent(t, m.URL(), newDataDir(t, t.TempDir()), true)
	ag.start()
	cam := newTenant(t, m.URL(), "cam")
	l := cam.sendLoad("r", n, rate, exitBound(2))
	if !cam.waitAnswered(ag, l.ids, n/3, 20*time.Second, 10*time.Second) {
		t.Fatalf("only %d of %d answered before the restart", cam.answered(l.ids), n/3)
	}
	atRestart := cam.answered(l.ids)
	restartBegan := time.Now()
	m.Stop()
	// The broker stays down for a while (fault duration, not
	// synchronisation): publishes on both sides wait or fail meanwhile.
	time.Sleep(outage)
	m.Restart() // Stop does nothing now; starts it on the same port and config
	restartTook := time.Since(restartBegan)
	l.wait(t)
	if !cam.waitAnswered(ag, l.ids, n, 30*time.Second, 5*time.Second) {
		t.Errorf("after the broker restart, %d of %d answered", cam.answered(l.ids), n)
	}
	cam.settle(300*time.Millisecond, 3*time.Second)
	if !ag.running() {
		t.Fatal("the agent exited when the broker restarted")
	}
	lost := ag.log.count(`msg="broker connection lost"`)
	reconnected := ag.log.count(`msg="broker connected"`)
	if lost < 1 || reconnected < 2 {
		t.Errorf("agent log: %d connection losses, %d connections; want ≥ 1 and ≥ 2", lost, reconnected)
	}
	deduped := ag.metric("delen_deduplicated_total")
	publishFailed := ag.log.count(`msg="publish result"`)
	ag.stop()
	tl := cam.tally(l.ids, int(l.sent.Load()))
	t.Logf("mosquitto down for %s at %d answered: %s; deduplicated by the agent %.0f, result publishes failed %d; %s",
		restartTook.Round(time.Millisecond), atRestart, tl, deduped, publishFailed, time.Since(began).Round(time.Millisecond))
	tl.check(t)
	if t.Failed() && !strings.Contains(m.Log(), "Saving in-memory database") {
		t.Log("mosquitto did not report saving its database on SIGTERM")
	}
}
