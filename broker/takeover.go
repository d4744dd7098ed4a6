package broker

import (
	"bytes"
	"log/slog"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// maxHandedOver bounds the messages held for one session between its
// takeover and the new connection's establishment; past it, messages are
// dropped with a log line (mochi's own bound on a session's inflight
// messages is the same).
const maxHandedOver = 1<<16 - 1

// qosStore is the part of the persistence hook that records a session's
// unacknowledged messages.
type qosStore interface {
	OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, resends int)
}

// takeoverHook works around a mochi-mqtt v2.7.9 race that loses QoS 1/2
// messages when a client reconnects to its persistent session, which is
// what an agent restarted after a crash does.
//
// mochi hands the session over in inheritClientSession: it marks the old
// client object taken over, copies its unacknowledged messages to the new
// one, clears the old one's (with persistence, one database delete per
// message), and only then registers the new client. Messages routed in
// between still find the old client object, land in its inflight map and
// are never delivered. With persistence the window lasts as long as the
// deletes, and a reconnection under load lost hundreds of messages.
//
// The hook sees those messages (OnQosPublish on a client already marked
// taken over) and hands them to the session's new connection: at once when
// it is established, or when it is (OnSessionEstablished). A message that
// the copy did carry over is recognised by its packet identifier, topic and
// payload and not sent twice.
type takeoverHook struct {
	mqtt.HookBase
	store qosStore // nil without persistence
	log   *slog.Logger

	mu sync.Mutex
	// current is the latest established connection of each session.
	current map[string]session
	// held are the messages caught on a taken-over connection before the
	// next one was established, per client ID.
	held map[string][]packets.Packet
}

type session struct {
	cl    *mqtt.Client
	clean bool // it started a clean session: nothing is handed to it
}

func newTakeoverHook(store qosStore, log *slog.Logger) *takeoverHook {
	return &takeoverHook{
		store:   store,
		log:     log,
		current: map[string]session{},
		held:    map[string][]packets.Packet{},
	}
}

func (h *takeoverHook) ID() string { return "delen-session-takeover" }

func (h *takeoverHook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnQosPublish,
		mqtt.OnSessionEstablished,
		mqtt.OnDisconnect,
		mqtt.OnClientExpired,
	}, []byte{b})
}

// OnSessionEstablished runs once the new connection is registered, has its
// CONNACK and has been resent the session's unacknowledged messages.
func (h *takeoverHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	h.mu.Lock()
	h.current[cl.ID] = session{cl: cl, clean: pk.Connect.Clean}
	held := h.held[cl.ID]
	delete(h.held, cl.ID)

	var send []packets.Packet
	if !pk.Connect.Clean { // a clean start discards the old session's messages
		for _, m := range held {
			if m, ok := h.handOver(cl, m); ok {
				send = append(send, m)
			}
		}
	}
	h.mu.Unlock()
	for _, m := range send {
		_ = cl.WritePacket(m) // a closed connection keeps m in its session
	}
}

// OnQosPublish catches messages given to a connection that was taken over.
func (h *takeoverHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if !cl.IsTakenOver() || pk.FixedHeader.Type != packets.Publish {
		return
	}
	h.mu.Lock()
	next, ok := h.current[cl.ID]
	switch {
	case ok && next.cl != cl && !next.cl.IsTakenOver():
		if next.clean { // a clean start discards the old session's messages
			h.mu.Unlock()
			return
		}
		m, send := h.handOver(next.cl, pk)
		h.mu.Unlock()
		if send {
			_ = next.cl.WritePacket(m) // outside the lock: the network may be slow
		}
		return
	case len(h.held[cl.ID]) < maxHandedOver:
		h.held[cl.ID] = append(h.held[cl.ID], pk)
	default:
		h.log.Warn("broker: message dropped during a session takeover: too many held", "client", cl.ID, "topic", pk.TopicName)
	}
	h.mu.Unlock()
}

// handOver records m as an unacknowledged message of the session's new
// connection cl (and persists it), the way mochi gives a connection a
// message; the caller then writes it, unless ok is false.
func (h *takeoverHook) handOver(cl *mqtt.Client, m packets.Packet) (_ packets.Packet, ok bool) {
	if in, used := cl.State.Inflight.Get(m.PacketID); used {
		if in.FixedHeader.Type == packets.Publish && in.TopicName == m.TopicName && bytes.Equal(in.Payload, m.Payload) {
			return m, false // carried over with the session
		}
		id, err := cl.NextPacketID()
		if err != nil {
			h.log.Warn("broker: message dropped during a session takeover: no free packet identifier", "client", cl.ID, "topic", m.TopicName)
			return m, false
		}
		m.PacketID = uint16(id)
	}
	cl.State.Inflight.Set(m)
	if h.store != nil {
		h.store.OnQosPublish(cl, m, m.Created, 0)
	}
	return m, true
}

// OnDisconnect forgets a session that ends with its connection.
func (h *takeoverHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if expire && !cl.IsTakenOver() {
		h.forget(cl)
	}
}

// OnClientExpired forgets an expired session.
func (h *takeoverHook) OnClientExpired(cl *mqtt.Client) { h.forget(cl) }

func (h *takeoverHook) forget(cl *mqtt.Client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.current[cl.ID]; ok && s.cl == cl {
		delete(h.current, cl.ID)
		delete(h.held, cl.ID)
	}
}
