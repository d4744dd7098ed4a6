package broker

import (
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// dropHook logs the messages mochi drops instead of delivering because
// the client's pending writes are full (MaximumClientWritesPending: its
// connection is not read fast enough). mochi logs it at debug level only,
// and for a persistent session it also takes the message out of the
// session's in-flight set without telling the storage hooks: a reconnect
// does not resend it, and only the in-flight log (persistHook), which
// still holds it under its packet id until mochi reuses the id, delivers
// it again, at the broker's next start: a loss the operator must see. (A full in-flight
// window mochi logs itself.) The logger collapses repeats into one line
// per interval with a count.
type dropHook struct {
	mqtt.HookBase
	log *slog.Logger
}

func (h *dropHook) ID() string { return "delen-drops" }

func (h *dropHook) Provides(b byte) bool { return b == mqtt.OnPublishDropped }

func (h *dropHook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	h.log.Warn("message to a client dropped: its pending writes are full", "client", cl.ID, "topic", pk.TopicName, "qos", pk.FixedHeader.Qos)
}
