// Package faulttest holds fault tests of the real delen binary: the agent
// is built once, run as a subprocess against a real broker (the embedded
// one in the test process, or Mosquitto), and killed, restarted, cut off
// from its broker or starved of disk while a tenant sends a bounded load.
// Every test checks the delivery contract (docs/protocol.md): every request gets
// exactly one result content; a redelivered result is byte-identical.
//
// The package has no non-test code; run it with
//
//	go test -race ./agent/faulttest/
package faulttest
