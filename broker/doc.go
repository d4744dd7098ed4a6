// Package broker owns Dělen's MQTT side: an embedded broker (mochi-mqtt)
// that the agent runs by default, and Client, a thin wrapper over
// paho.mqtt.golang that the agent, the simulator and the CLI use to talk to
// the embedded broker or to an external one (Mosquitto, EMQX, ...).
//
// # Delivery semantics
//
// Client acknowledges QoS 1 messages manually: a handler receives a
// Message and the PUBACK is sent only when Message.Ack is called, from any
// goroutine, at any later time. The agent acks a request only after its
// result is published, so a crash or a lost connection means the broker
// redelivers the request (with the DUP flag when it had been sent before) to
// the next session with the same client ID and CleanSession false. Duplicates
// are therefore possible and must be absorbed by the receiver (the agent's
// dedupe store); Message.Duplicate is a hint only: mochi sets it on every
// message it resends from a stored session, including messages that were
// queued while the client was offline and never sent before.
//
// Handlers run in their own goroutines (paho's OrderMatters is false), so two
// messages on the same topic may be handled concurrently and out of order.
package broker
