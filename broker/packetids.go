package broker

import (
	"bytes"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// packetIDHook works around a mochi-mqtt v2.7.9 bug that breaks
// at-least-once delivery for a client that both receives and publishes,
// which is what the agent does.
//
// MQTT keeps two independent packet-identifier spaces per session: the
// client numbers its PUBLISH (QoS > 0), PUBREL, SUBSCRIBE and UNSUBSCRIBE
// packets, the server numbers its own PUBLISHes (MQTT 3.1.1 section 2.3.1).
// mochi keeps both in one map (Client.State.Inflight), so when a client
// picks an identifier the server has outstanding for one of its
// deliveries, as paho does all the time since both count up from 1:
//
//   - an inbound QoS 1/2 PUBLISH deletes the server's outstanding delivery,
//     which is then never redelivered (processPublish: "Inflight.Delete"),
//     exactly as if the client had acknowledged it;
//   - an inbound QoS 2 PUBLISH overwrites it;
//   - a SUBSCRIBE or UNSUBSCRIBE is refused ("packet identifier in use"),
//     typically on reconnection while redeliveries are outstanding.
//
// The hook renumbers every client-numbered packet as it is read into an
// identifier the server is not using, and numbers the server's answer
// (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK) back as it is written, so the
// client sees its own identifiers and mochi never sees two flows share one.
// The translation is kept per client ID, so a QoS 2 flow that spans a
// reconnection keeps it; it does not survive a broker restart (a QoS 2
// publish caught by one would see its PUBREC under another identifier).
type packetIDHook struct {
	mqtt.HookBase
	mu      sync.Mutex
	clients map[string]*idMap
}

// idMap is the translation of one client's identifiers.
type idMap struct {
	toServer   map[uint16]uint16 // client's identifier -> the one mochi sees
	toClient   map[uint16]uint16 // the reverse
	lastServer uint16            // the server's last own identifier seen
}

// maxMapped bounds a client's open translations; past it, identifiers pass
// through untranslated (a client cannot have more flows open than that
// without misbehaving).
const maxMapped = 16384

func (h *packetIDHook) ID() string { return "delen-packet-ids" }

func (h *packetIDHook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnPacketRead,
		mqtt.OnPacketEncode,
		mqtt.OnSessionEstablish,
		mqtt.OnDisconnect,
		mqtt.OnClientExpired,
	}, []byte{b})
}

func (h *packetIDHook) Init(any) error {
	h.clients = map[string]*idMap{}
	return nil
}

func (h *packetIDHook) state(id string) *idMap {
	m := h.clients[id]
	if m == nil {
		m = &idMap{toServer: map[uint16]uint16{}, toClient: map[uint16]uint16{}}
		h.clients[id] = m
	}
	return m
}

// OnSessionEstablish runs before the CONNACK; a clean session starts with
// no open flows.
func (h *packetIDHook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if pk.Connect.Clean {
		h.mu.Lock()
		delete(h.clients, cl.ID)
		h.mu.Unlock()
	}
}

// OnDisconnect forgets a session that ends with the connection.
func (h *packetIDHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if expire && !cl.IsTakenOver() {
		h.mu.Lock()
		delete(h.clients, cl.ID)
		h.mu.Unlock()
	}
}

// OnClientExpired forgets an expired session.
func (h *packetIDHook) OnClientExpired(cl *mqtt.Client) {
	h.mu.Lock()
	delete(h.clients, cl.ID)
	h.mu.Unlock()
}

// OnPacketRead renumbers client-numbered packets.
func (h *packetIDHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.FixedHeader.Qos == 0 {
			return pk, nil
		}
	case packets.Pubrel, packets.Subscribe, packets.Unsubscribe:
	default:
		return pk, nil
	}
	if pk.PacketID == 0 {
		return pk, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.state(cl.ID)
	if s, ok := m.toServer[pk.PacketID]; ok {
		if pk.FixedHeader.Type == packets.Pubrel || openQoS2(cl, pk, s) {
			pk.PacketID = s // the same flow: its PUBREL, or a resend
			return pk, nil
		}
		// A new flow reusing an identifier whose translation was never
		// closed (mochi did not answer the old one): translate afresh, as
		// the server may have taken the old number since.
		delete(m.toServer, pk.PacketID)
		delete(m.toClient, s)
	}
	if len(m.toServer) >= maxMapped {
		return pk, nil
	}
	if s := m.free(cl); s != 0 {
		m.toServer[pk.PacketID] = s
		m.toClient[s] = pk.PacketID
		pk.PacketID = s
	}
	return pk, nil
}

// openQoS2 reports whether pk resends a QoS 2 PUBLISH whose flow is open
// under identifier s (mochi holds its PUBREC).
func openQoS2(cl *mqtt.Client, pk packets.Packet, s uint16) bool {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos != 2 || !pk.FixedHeader.Dup {
		return false
	}
	in, ok := cl.State.Inflight.Get(s)
	return ok && in.FixedHeader.Type == packets.Pubrec
}

// free picks an identifier that neither mochi's inflight map nor another
// translation uses, as far as possible from the server's own counter (which
// counts up and skips identifiers in the inflight map), so the server does
// not pick it for a delivery in the instant before mochi records the flow.
func (m *idMap) free(cl *mqtt.Client) uint16 {
	start := m.lastServer + 1<<15
	for i := range uint16(1<<16 - 1) {
		s := start + i
		if s == 0 {
			continue
		}
		if _, used := m.toClient[s]; used {
			continue
		}
		if _, used := cl.State.Inflight.Get(s); used {
			continue
		}
		return s
	}
	return 0
}

// OnPacketEncode numbers the server's answers to client-numbered packets
// back, and tracks the server's own numbering.
func (h *packetIDHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	final := true // the flow ends with this packet
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.FixedHeader.Qos > 0 {
			h.mu.Lock()
			h.state(cl.ID).lastServer = pk.PacketID
			h.mu.Unlock()
		}
		return pk
	case packets.Pubrec:
		final = false // the PUBREL and PUBCOMP follow
	case packets.Puback, packets.Pubcomp, packets.Suback, packets.Unsuback:
	default:
		return pk
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.clients[cl.ID]
	if m == nil {
		return pk
	}
	c, ok := m.toClient[pk.PacketID]
	if !ok {
		return pk
	}
	if final {
		delete(m.toClient, pk.PacketID)
		delete(m.toServer, c)
	}
	pk.PacketID = c
	return pk
}
