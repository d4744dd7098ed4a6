package brokertest

import (
	"testing"
)

// recorder is a testing.TB that records how a helper gave up.
type recorder struct {
	testing.TB
	skipped, failed bool
}

type stop struct{}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(string, ...any) {
	r.skipped = true
	panic(stop{})
}
func (r *recorder) Fatalf(string, ...any) {
	r.failed = true
	panic(stop{})
}

func run(r *recorder, f func()) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stop); !ok {
				panic(v)
			}
		}
	}()
	f()
}

func TestMissingMosquittoSkipsOnlyOutsideCI(t *testing.T) {
	opts := MosquittoOptions{Binary: "/nonexistent/mosquitto"}

	t.Setenv("CI", "")
	r := &recorder{TB: t}
	run(r, func() { StartMosquitto(r, opts) })
	if !r.skipped || r.failed {
		t.Errorf("without CI: skipped %t failed %t; want a skip", r.skipped, r.failed)
	}

	t.Setenv("CI", "true")
	r = &recorder{TB: t}
	run(r, func() { StartMosquitto(r, opts) })
	if r.skipped || !r.failed {
		t.Errorf("in CI: skipped %t failed %t; want a failure", r.skipped, r.failed)
	}
}

func TestMosquittoRestartKeepsPort(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{ExtraConfig: []string{"max_inflight_messages 50"}})
	url := m.URL()
	m.Restart()
	if m.URL() != url {
		t.Fatalf("URL changed across Restart: %s -> %s", url, m.URL())
	}
	m.Stop()
	m.Stop() // stopping twice is fine
}
