//go:build linux

package faulttest

import (
	"bytes"
	"testing"
	"time"

	"github.com/delen-edge/delen/schema"
)

// shareGroup is the scale-out tests' --share-group.
const shareGroup = "scale"

// TestScaleOutKillOneAgent runs two agents (own data folders, agent ids and
// HTTP addresses) with --share-group on a real Mosquitto, so that they
// split one tenant's load. Once a quarter of the load is answered, agent B
// is killed with kill -9; agent A must keep serving while B is down (its
// delen_requests_total grows), and B is restarted on its data folder. Every
// request must then have exactly one result content: what B had received
// and not acknowledged stays in B's persistent session at Mosquitto and is
// redelivered to B when it is back, and B's dedupe records answer what it
// had already published with the same bytes.
//
// Afterwards the tenant retransmits some answered requests (its own
// at-least-once retry): the share group hands each to either agent; the
// one that served it answers from its dedupe record with the same bytes,
// the other, which has no record of it, serves it again (same class and
// exit; timings differ). docs/scale-out.md explains both.
func TestScaleOutKillOneAgent(t *testing.T) {
	requireSetup(t)
	const n, rate = 800, 200.0
	began := time.Now()
	m := startMosquitto(t)
	a := newAgent(t, m.URL(), newDataDir(t, t.TempDir()), true, "--agent-id", "scale-a", "--share-group", shareGroup)
	b := newAgent(t, m.URL(), newDataDir(t, t.TempDir()), true, "--agent-id", "scale-b", "--share-group", shareGroup)
	a.start()
	b.start()
	cam := newTenant(t, m.URL(), "cam")
	l := cam.sendLoad("r", n, rate, exitBound(2))
	if !cam.waitAnswered(a, l.ids, n/4, 20*time.Second, 10*time.Second) {
		t.Fatalf("only %d of %d answered before the kill", cam.answered(l.ids), n/4)
	}
	servedA, servedB := a.metric("delen_requests_total"), b.metric("delen_requests_total")
	if servedA == 0 || servedB == 0 {
		t.Errorf("before the kill, agent A served %.0f and B %.0f: the share group does not split the load", servedA, servedB)
	}
	b.kill()
	killedAt := time.Now()
	atKill := cam.answered(l.ids)
	aAtKill := a.metric("delen_requests_total")
	// While B is down, A goes on: wait until it has served another 100
	// requests (or the load is over), then keep B down a moment longer.
	for deadline := time.Now().Add(20 * time.Second); a.metric("delen_requests_total") < aAtKill+100; {
		if time.Now().After(deadline) {
			t.Fatalf("agent A served %.0f requests in 20 s while B was down", a.metric("delen_requests_total")-aAtKill)
		}
		select {
		case <-cam.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
	aWhileDown := a.metric("delen_requests_total") - aAtKill
	answeredWhileDown := cam.answered(l.ids) - atKill
	down := time.Since(killedAt)
	b.start()
	l.wait(t)
	if !cam.waitAnswered(a, l.ids, n, 30*time.Second, 5*time.Second) {
		t.Errorf("after B's restart, %d of %d answered", cam.answered(l.ids), n)
	}
	cam.settle(300*time.Millisecond, 3*time.Second)
	tl := cam.tally(l.ids, int(l.sent.Load()))
	finalA, finalB := a.metric("delen_requests_total"), b.metric("delen_requests_total")
	dedupedB := b.metric("delen_deduplicated_total")
	t.Logf("two agents, share group on mosquitto, B killed (kill -9) at %d answered, down %s: %s; "+
		"A served %.0f while B was down (tenant saw %d results meanwhile); served in all: A %.0f, B %.0f before the kill + %.0f after its restart (dedupe hits %.0f)",
		atKill, down.Round(time.Millisecond), tl, aWhileDown, answeredWhileDown, finalA, servedB, finalB, dedupedB)
	tl.check(t)

	// The tenant retransmits answered requests: a duplicate may land on
	// the agent that did not serve it.
	again := cam.lastAnswered(40)
	before := a.metric("delen_deduplicated_total") + b.metric("delen_deduplicated_total")
	cam.resend(a, l, again)
	cam.settle(300*time.Millisecond, 3*time.Second)
	identical, reserved := 0, 0
	for _, id := range again {
		cam.mu.Lock()
		raw := cam.deliveries[id]
		cam.mu.Unlock()
		if len(raw) < 2 {
			t.Errorf("%s: no result for the retransmission", id)
			continue
		}
		last := raw[len(raw)-1]
		if bytes.Equal(last, raw[0]) {
			identical++
			continue
		}
		reserved++
		r0, r1 := cam.result(id), decodeResult(t, last)
		if r1.Status != r0.Status || r1.Exit != r0.Exit || r1.Class == nil || r0.Class == nil || *r1.Class != *r0.Class {
			t.Errorf("%s: served again with a different answer: %+v, first %+v", id, r1, r0)
		}
	}
	deduped := a.metric("delen_deduplicated_total") + b.metric("delen_deduplicated_total") - before
	t.Logf("%d answered requests retransmitted by the tenant: %d answered with the same bytes (dedupe hits %.0f), %d served again by the other agent (same class and exit); %s",
		len(again), identical, deduped, reserved, time.Since(began).Round(time.Millisecond))
	a.stop()
	b.stop()
}

func decodeResult(t *testing.T, raw []byte) *schema.Result {
	t.Helper()
	r, _, err := schema.DecodeResult(raw, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
