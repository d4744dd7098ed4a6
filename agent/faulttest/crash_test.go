//go:build linux

package faulttest

import (
	"testing"
	"time"
)

// brokers runs a test against the embedded broker (in the test process,
// persistent) and against a real Mosquitto.
func brokers(t *testing.T, run func(t *testing.T, url string)) {
	requireSetup(t)
	t.Run("embedded", func(t *testing.T) { run(t, startEmbedded(t)) })
	t.Run("mosquitto", func(t *testing.T) { run(t, startMosquitto(t).URL()) })
}

// resendAfterCrash is how many requests answered just before a kill the
// tenant sends again after the restart: whether the broker redelivers
// anything already answered depends on the instant of the kill, so the
// dedupe records written by the killed agent are also read back on
// purpose.
const resendAfterCrash = 20

// TestKillAgentMidLoad kills the agent with SIGKILL once about half of a
// load is answered, and restarts it on the same data folder: the broker
// redelivers what was not acknowledged, the dedupe records answer what was
// already published with the same bytes, and every request is answered
// exactly once in content.
func TestKillAgentMidLoad(t *testing.T) {
	brokers(t, func(t *testing.T, url string) {
		killMidLoad(t, newAgent(t, url, newDataDir(t, t.TempDir()), true), "kill -9")
	})
}

// TestKillServeMidLoad kills `delen serve` with its own embedded broker
// (what `make run` starts: the agent attached to the broker in its
// process) once about half of a load is answered, and starts it again on
// the same data folder and port. The broker and the agent die together:
// a request the tenant had its PUBACK for must be in the broker's
// in-flight log and come to the agent again, one it had none for the
// tenant's client sends again when it reconnects, and a result the broker
// had stored for the tenant's persistent session reaches it then.
func TestKillServeMidLoad(t *testing.T) {
	killMidLoad(t, newServingAgent(t, newDataDir(t, t.TempDir()), true), "kill -9 of delen serve")
}

// killMidLoad runs a load of 600 requests at 200 a second against ag,
// kills it with SIGKILL once half are answered, starts it again, and
// checks that every request is answered exactly once in content.
func killMidLoad(t *testing.T, ag *agentProc, what string) {
	const n, rate = 600, 200.0
	began := time.Now()
	ag.start()
	cam := newTenant(t, ag.brokerURL, "cam")
	l := cam.sendLoad("r", n, rate, exitBound(2))
	if !cam.waitAnswered(ag, l.ids, n/2, 20*time.Second, 10*time.Second) {
		t.Fatalf("only %d of %d answered before the kill", cam.answered(l.ids), n/2)
	}
	ag.kill()
	atKill := cam.answered(l.ids)
	// The last results before the kill: their dedupe records were
	// written just before the crash.
	again := cam.lastAnswered(resendAfterCrash)
	ag.start()
	l.wait(t)
	if !cam.waitAnswered(ag, l.ids, n, 30*time.Second, 5*time.Second) {
		t.Errorf("after the restart, %d of %d answered", cam.answered(l.ids), n)
	}
	cam.resend(ag, l, again)
	cam.settle(300*time.Millisecond, 3*time.Second)
	deduped := ag.metric("delen_deduplicated_total")
	ag.stop()
	tl := cam.tally(l.ids, int(l.sent.Load()))
	t.Logf("%s at %d answered: %s (incl. %d answered before the kill and resent after it); deduplicated by the restarted agent %.0f; %s",
		what, atKill, tl, len(again), deduped, time.Since(began).Round(time.Millisecond))
	tl.check(t)
}

// TestRequestsQueuedWhileAgentIsDown publishes requests while the agent is
// stopped: its persistent session (clean session off, stable client id)
// and its subscription stay at the broker, which queues the QoS 1 requests
// and hands them over when the agent comes back.
//
// Only an agent id that has connected before has such a session. With a
// fresh agent id, requests published before the agent first subscribed
// are not queued by MQTT: a broker keeps messages only for existing
// subscriptions, and without one it drops them (there is nothing the
// agent could do; a tenant that needs them must resend, or the agent must
// have connected once, e.g. at provisioning). That case is deliberately
// not tested.
func TestRequestsQueuedWhileAgentIsDown(t *testing.T) {
	brokers(t, func(t *testing.T, url string) {
		const n = 300
		began := time.Now()
		ag := newAgent(t, url, newDataDir(t, t.TempDir()), false)
		ag.start()
		ag.stop() // graceful: the session and its subscription remain
		cam := newTenant(t, url, "queued")
		l := cam.sendLoad("q", n, 0, exitBound(1))
		l.wait(t) // all n acknowledged by the broker while no agent runs
		if got := cam.answered(l.ids); got != 0 {
			t.Fatalf("%d results while the agent was stopped", got)
		}
		ag.start()
		if !cam.waitAnswered(ag, l.ids, n, 30*time.Second, 5*time.Second) {
			t.Errorf("%d of %d queued requests answered after the restart", cam.answered(l.ids), n)
		}
		cam.settle(300*time.Millisecond, 3*time.Second)
		ag.stop()
		tl := cam.tally(l.ids, int(l.sent.Load()))
		t.Logf("queued while stopped: %s; %s", tl, time.Since(began).Round(time.Millisecond))
		tl.check(t)
	})
}
