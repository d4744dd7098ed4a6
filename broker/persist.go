package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	badgerhook "github.com/mochi-mqtt/server/v2/hooks/storage/badger"
	"github.com/mochi-mqtt/server/v2/packets"
)

// persistHook is mochi's Badger storage hook without the writes that
// protect nothing, which were most of the broker's cost per message. mochi
// writes a QoS event with a transaction of its own on the client's reader
// goroutine; per request and its result that was eight transactions. Two
// kinds of them are skipped:
//
//   - An incoming QoS 1 message's PUBACK, which mochi records in the
//     sender's in-flight set, then writes to the network, then deletes, all
//     on the same goroutine: the record never outlives the PUBACK, so a
//     restart never finds it (QoS 2's PUBREC, which waits for the sender's
//     PUBREL, is still recorded).
//   - Messages in flight to a clean session: the session, and with it what
//     it had not acknowledged, ends with its connection, a broker restart
//     included, so a stored copy is never delivered.
//
// What remains is what a restart needs: messages in flight to persistent
// sessions (the agent's requests), sessions, subscriptions and retained
// messages. A request and its result now cost two transactions: the
// delivery to the agent's session and its deletion on the agent's PUBACK.
type persistHook struct {
	*badgerhook.Hook
}

// needless reports the QoS events whose record protects nothing.
func needless(cl *mqtt.Client, pk packets.Packet) bool {
	return pk.FixedHeader.Type == packets.Puback || (cl.Properties.Clean && cl.Properties.ProtocolVersion < 5)
}

func (h persistHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, resends int) {
	if !needless(cl, pk) {
		h.Hook.OnQosPublish(cl, pk, sent, resends)
	}
}

func (h persistHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if !needless(cl, pk) {
		h.Hook.OnQosComplete(cl, pk)
	}
}

func (h persistHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if !needless(cl, pk) {
		h.Hook.OnQosDropped(cl, pk)
	}
}
