package broker

import (
	"errors"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	badgerhook "github.com/mochi-mqtt/server/v2/hooks/storage/badger"
	"github.com/mochi-mqtt/server/v2/packets"
)

// persistHook is mochi's Badger storage hook for sessions, subscriptions
// and retained messages, with the messages in flight kept in an
// inflightLog instead (see there why), and without the writes that
// protect nothing. mochi writes a QoS event on the client's reader
// goroutine; per request and its result that was eight transactions. Two
// kinds of them are skipped:
//
//   - An incoming QoS 1 message's PUBACK, which mochi records in the
//     sender's in-flight set, then writes to the network, then deletes, all
//     on the same goroutine: the record never outlives the PUBACK, so a
//     restart never finds it (QoS 2's PUBREC, which waits for the sender's
//     PUBREL, is still recorded). Its completion finds nothing to delete.
//   - Messages in flight to a clean session: the session, and with it what
//     it had not acknowledged, ends with its connection, a broker restart
//     included, so a stored copy is never delivered.
//
// What remains is what a restart needs: messages in flight to persistent
// sessions (the agent's requests), sessions, subscriptions and retained
// messages. A request and its result now cost two appends to the log: the
// delivery to the agent's session and its tombstone on the agent's PUBACK.
type persistHook struct {
	*badgerhook.Hook
	inflight *inflightLog
	log      *slog.Logger
}

// Provides adds OnPublished to the Badger hook's events.
func (h *persistHook) Provides(b byte) bool {
	return b == mqtt.OnPublished || h.Hook.Provides(b)
}

// OnPublished writes what routing a client's publish stored, unless the
// client's connection does that before it acknowledges the next ones
// (ackHoldConn). The broker's own publishes (a Local's) are written by
// the log's timer, or with the next flush.
func (h *persistHook) OnPublished(cl *mqtt.Client, _ packets.Packet) {
	if _, held := cl.Net.Conn.(*ackHoldConn); held || cl.Net.Conn == nil {
		return
	}
	h.inflight.flushLogged()
}

// cleanSession reports a session whose messages in flight end with its
// connection.
func cleanSession(cl *mqtt.Client) bool {
	return cl.Properties.Clean && cl.Properties.ProtocolVersion < 5
}

// inflightKey is mochi's storage key of a message in flight to cl (the
// same as its Badger hook's, so records it stored before map one to one).
func inflightKey(client string, packetID uint16) string {
	pk := packets.Packet{PacketID: packetID}
	return storage.InflightKey + "_" + client + ":" + pk.FormatID()
}

func (h *persistHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, resends int) {
	if pk.FixedHeader.Type == packets.Puback || cleanSession(cl) {
		return
	}
	props := pk.Properties.Copy(false)
	m := &storage.Message{
		ID:          inflightKey(cl.ID, pk.PacketID),
		T:           storage.InflightKey,
		Client:      cl.ID,
		Origin:      pk.Origin,
		PacketID:    pk.PacketID,
		FixedHeader: pk.FixedHeader,
		TopicName:   pk.TopicName,
		Payload:     pk.Payload,
		Sent:        sent,
		Created:     pk.Created,
		Properties: storage.MessageProperties{
			PayloadFormat:          props.PayloadFormat,
			MessageExpiryInterval:  props.MessageExpiryInterval,
			ContentType:            props.ContentType,
			ResponseTopic:          props.ResponseTopic,
			CorrelationData:        props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier,
			TopicAlias:             props.TopicAlias,
			User:                   props.User,
		},
	}
	if err := h.inflight.put(m); err != nil {
		h.log.Error("broker: store a message in flight", "client", cl.ID, "error", err)
	}
}

// OnQosComplete is called with the PUBACK (or PUBCOMP) that ends a flow:
// one the client sent for a delivery, which ends the stored message, or
// one the broker sent for an incoming QoS 1 message, never stored (its
// identifier is not one of a delivery's: packetIDHook keeps the two
// apart), for which del finds nothing.
func (h *persistHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if !cleanSession(cl) {
		h.done(cl.ID, pk.PacketID)
	}
}

func (h *persistHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if !cleanSession(cl) {
		h.done(cl.ID, pk.PacketID)
	}
}

func (h *persistHook) done(client string, id uint16) {
	if err := h.inflight.del(inflightKey(client, id)); err != nil {
		h.log.Error("broker: record an acknowledgement", "client", client, "error", err)
	}
}

// OnDisconnect drops what was in flight to a session that ends with its
// connection, besides the Badger hook's own work.
func (h *persistHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.Hook.OnDisconnect(cl, err, expire)
	if expire && !errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) {
		h.dropClient(cl.ID)
	}
}

// OnClientExpired drops what was in flight to an expired session.
func (h *persistHook) OnClientExpired(cl *mqtt.Client) {
	h.Hook.OnClientExpired(cl)
	h.dropClient(cl.ID)
}

func (h *persistHook) dropClient(id string) {
	if err := h.inflight.dropClient(id); err != nil {
		h.log.Error("broker: drop the messages of an ended session", "client", id, "error", err)
	}
}

// StoredInflightMessages returns the messages in flight at the last stop,
// for the sessions still stored. Messages a former version kept in Badger
// are moved to the log first.
func (h *persistHook) StoredInflightMessages() ([]storage.Message, error) {
	old, err := h.Hook.StoredInflightMessages()
	if err != nil {
		return nil, err
	}
	for i := range old {
		m := &old[i]
		m.ID = inflightKey(m.Client, m.PacketID)
		if err := h.inflight.put(m); err != nil {
			return nil, err
		}
		h.Hook.OnQosComplete(&mqtt.Client{ID: m.Client}, packets.Packet{PacketID: m.PacketID})
	}
	clients, err := h.Hook.StoredClients()
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(clients))
	for _, c := range clients {
		known[c.ID] = true
	}
	msgs, err := h.inflight.messages()
	if err != nil {
		return nil, err
	}
	kept := msgs[:0]
	for _, m := range msgs {
		if known[m.Client] {
			kept = append(kept, m)
			continue
		}
		// Its session is gone: nothing will ever take it.
		if err := h.inflight.del(m.ID); err != nil {
			return nil, err
		}
	}
	return kept, nil
}

// Stop closes the Badger database and the in-flight log.
func (h *persistHook) Stop() error {
	err := h.Hook.Stop()
	if h.inflight != nil {
		err = errors.Join(err, h.inflight.close())
	}
	return err
}
