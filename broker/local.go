package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// LocalListener is the listener name of a Local's session.
const LocalListener = "local"

// LocalConfig configures Embedded.Attach.
type LocalConfig struct {
	// ClientID names the persistent session the client attaches to, as an
	// MQTT client's ClientID with CleanSession false: the same session, so
	// a client that attached here before, or connected over MQTT with this
	// ID, finds what arrived for it meanwhile. Required.
	ClientID string
	// Subscriptions are the session's subscriptions from the attach on
	// (others it had are ended); their handlers receive its messages.
	// Shared subscriptions ($share/…) are not supported: dial the broker
	// for those.
	Subscriptions []Subscription
	// Logger receives the client's logs; nil means the broker's.
	Logger *slog.Logger
}

// Local is a client of an Embedded broker in the broker's own process: a
// persistent session like an MQTT client's with CleanSession false (the
// broker keeps its subscriptions and, persisted with the broker's
// DataDir, the messages not yet acknowledged), reached without MQTT
// packets. A message for it is handed to its handler as the broker routes
// it, on the publisher's goroutine, and its Ack takes it out of the
// session; Publish routes a message as the broker routes one it received.
// Nothing is encoded, decoded or written to a connection on the way, and
// no goroutine hands it on: an agent serving the broker it runs in spends
// the CPU of MQTT only on its tenants' connections.
//
// Messages the session holds when it is attached (those of the last run
// not acknowledged, those that arrived while nothing was attached) are
// handed to the handlers by Attach; the broker's retained messages that
// match a subscription are too, as a broker sends them on SUBSCRIBE.
//
// Its methods are safe for concurrent use.
type Local struct {
	e     *Embedded
	cl    *mqtt.Client
	prev  *mqtt.Client // the session's client object before the attach, if any
	log   *slog.Logger
	subs  []Subscription
	store *persistHook // nil without persistence

	// given are the packet identifiers of the messages handed out and
	// not yet acknowledged, so that a message is handed out once.
	mu     sync.Mutex
	given  map[uint16]bool
	closed atomic.Bool
}

// Attach attaches a Local client to the started broker's session
// cfg.ClientID, creating the session if there is none, and hands the
// subscriptions' handlers what the session holds before it returns. A
// session in use by a connected client, or by another Local, is refused.
func (e *Embedded) Attach(cfg LocalConfig) (*Local, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("broker: attach: no client ID")
	}
	for _, s := range cfg.Subscriptions {
		if err := ValidateFilter(s.Filter); err != nil {
			return nil, fmt.Errorf("broker: attach: %w", err)
		}
		if strings.HasPrefix(s.Filter, "$share/") {
			return nil, fmt.Errorf("broker: attach: shared subscription %s: dial the broker for it", s.Filter)
		}
		if s.QoS > 2 || s.Handler == nil {
			return nil, fmt.Errorf("broker: attach: subscription %s: QoS %d or no handler", s.Filter, s.QoS)
		}
	}
	e.mu.Lock()
	srv, closed, hook, store := e.srv, e.closed, e.local, e.store
	e.mu.Unlock()
	switch {
	case closed:
		return nil, ErrClosed
	case srv == nil:
		return nil, errors.New("broker: Attach before Start")
	}
	log := cfg.Logger
	if log == nil {
		log = e.log
	}

	// A fresh client object for the session: one loaded from the store is
	// stopped, and a stopped session expires (SessionExpiry). It takes
	// over the old object's messages and subscriptions; the maps are
	// shared, so a message that a publisher routes to the old object at
	// this moment is still the session's.
	cl := srv.NewClient(nil, LocalListener, cfg.ClientID, true)
	cl.Properties.ProtocolVersion = 4
	cl.Properties.Clean = false
	l := &Local{e: e, cl: cl, log: log, subs: cfg.Subscriptions, store: store, given: map[uint16]bool{}}
	if !hook.attach(l) {
		return nil, fmt.Errorf("broker: attach: session %s already has a local client", cfg.ClientID)
	}
	old, ok := settled(srv, cfg.ClientID)
	if ok && !old.Closed() {
		hook.detach(l)
		return nil, fmt.Errorf("broker: attach: session %s is in use by a connection from %s", cfg.ClientID, old.Net.Remote)
	}
	if ok {
		l.prev = old
		cl.State.Inflight = old.State.Inflight
		cl.State.Subscriptions = old.State.Subscriptions
		// The quota is the Inflight's: a session restored from the store
		// has none, and mochi disconnects a client that publishes
		// without (an inline client's is unbounded).
		cl.State.Inflight.ResetReceiveQuota(math.MaxInt32)
	}
	srv.Clients.Add(cl)
	if store != nil {
		store.OnSessionEstablished(cl, packets.Packet{})
	}
	// The session's subscriptions are the client's: one an earlier run
	// made and this one does not (a share group's, say) would keep
	// collecting messages nobody takes.
	for filter := range cl.State.Subscriptions.GetAll() {
		if !slices.ContainsFunc(cfg.Subscriptions, func(s Subscription) bool { return s.Filter == filter }) {
			cl.State.Subscriptions.Delete(filter)
			if srv.Topics.Unsubscribe(filter, cl.ID) {
				atomic.AddInt64(&srv.Info.Subscriptions, -1)
			}
			if store != nil {
				store.OnUnsubscribed(cl, packets.Packet{Filters: packets.Subscriptions{{Filter: filter}}})
			}
		}
	}
	for _, s := range cfg.Subscriptions {
		sub := packets.Subscription{Filter: s.Filter, Qos: s.QoS}
		if have, ok := cl.State.Subscriptions.Get(s.Filter); !ok || have.Qos != s.QoS {
			if srv.Topics.Subscribe(cl.ID, sub) {
				atomic.AddInt64(&srv.Info.Subscriptions, 1)
			}
			cl.State.Subscriptions.Add(s.Filter, sub)
			if store != nil {
				store.OnSubscribed(cl, packets.Packet{Filters: packets.Subscriptions{sub}}, []byte{s.QoS})
			}
		}
	}

	// What the session holds, oldest first, then the retained messages.
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type == packets.Publish {
			pk.FixedHeader.Dup = true
			l.deliver(pk)
		}
	}
	for _, s := range cfg.Subscriptions {
		for _, pk := range srv.Topics.Messages(s.Filter) {
			pk.FixedHeader.Qos = min(pk.FixedHeader.Qos, s.QoS)
			l.handle(&localMessage{l: l, pk: pk, retained: true})
		}
	}
	return l, nil
}

// closingWait bounds how long Attach waits for a connection that holds the
// session to finish closing.
const closingWait = time.Second

// settled returns the session's client object once no connection is
// ending with it: mochi closes a leaving connection's socket before it
// marks its client closed, and removes a clean session from its clients
// after that, so a client that has just disconnected may still look
// connected for a moment, or its clean session vanish under the Local's.
// A connection still open after closingWait is returned as it is.
func settled(srv *mqtt.Server, id string) (*mqtt.Client, bool) {
	deadline := time.Now().Add(closingWait)
	for {
		old, ok := srv.Clients.Get(id)
		ending := ok && (!old.Closed() || cleanSession(old))
		if !ending || time.Now().After(deadline) {
			return old, ok
		}
		time.Sleep(time.Millisecond) // mochi offers nothing to wait on
	}
}

// Connected reports whether the client is attached to a running broker:
// not closed, and its session not taken over by an MQTT connection with
// the same client ID (which then gets the session's messages).
func (l *Local) Connected() bool {
	return !l.closed.Load() && !l.e.down.Load() && !l.cl.IsTakenOver()
}

// Publish routes a message to the broker's subscribers as the broker
// routes one it received: when it returns, the message is delivered to
// each connected subscriber's connection (its pending writes) and stored
// for each persistent session, as when an MQTT client has its PUBACK. The
// broker's ACL does not apply to the broker's own process.
func (l *Local) Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("broker: publish to %s: %w", topic, err)
	}
	if err := ValidateTopic(topic); err != nil {
		return fmt.Errorf("broker: publish: %w", err)
	}
	if qos > 2 {
		return fmt.Errorf("broker: publish to %s: QoS %d", topic, qos)
	}
	if !l.Connected() {
		return ErrClosed
	}
	if payload == nil {
		payload = []byte{}
	}
	err := l.e.srv.InjectPacket(l.cl, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retained},
		TopicName:   topic,
		Payload:     payload,
		PacketID:    uint16(qos), // mochi checks that a QoS 1/2 publish has one; it is not used
	})
	if err != nil {
		return fmt.Errorf("broker: publish to %s: %w", topic, err)
	}
	return nil
}

// PublishAsync is Publish, which does not wait for anything: the Pending
// it returns is done.
func (l *Local) PublishAsync(topic string, qos byte, retained bool, payload []byte) *Pending {
	return &Pending{err: l.Publish(context.Background(), topic, qos, retained, payload)}
}

// Corked runs fn. (A Local writes to no connection: there is nothing to
// gather.)
func (l *Local) Corked(fn func()) { fn() }

// Close detaches the client. The session stays with the broker, its
// subscriptions and the messages not yet acknowledged included, for the
// next Attach or MQTT connection with the same client ID; an Ack after
// Close still takes its message out of the session.
func (l *Local) Close() {
	if l.closed.Swap(true) {
		return
	}
	l.e.local.detach(l)
	// A client object that is stopped counts as disconnected, so the
	// session expires as an MQTT client's would.
	l.cl.Stop(packets.CodeDisconnect)
}

// deliver hands a message of the session to the handlers once: a message
// already handed out and not yet acknowledged, or no longer in the session
// (acknowledged since Attach listed it), is not handed out again.
func (l *Local) deliver(pk packets.Packet) {
	l.mu.Lock()
	in, ok := l.cl.State.Inflight.Get(pk.PacketID)
	if l.given[pk.PacketID] || !ok || !samePacket(in, pk) {
		l.mu.Unlock()
		return
	}
	l.given[pk.PacketID] = true
	l.mu.Unlock()
	l.handle(&localMessage{l: l, pk: pk})
}

// samePacket reports whether a and b are one message of a session (the
// session's copies share the payload's bytes), not two that had the same
// packet identifier one after the other.
func samePacket(a, b packets.Packet) bool {
	if a.Created != b.Created || a.TopicName != b.TopicName || len(a.Payload) != len(b.Payload) {
		return false
	}
	return len(a.Payload) == 0 || &a.Payload[0] == &b.Payload[0]
}

// handle calls the handler of every subscription that matches m (in
// order: one message, one call each), and acknowledges it once each has
// called Ack. A panicking handler is logged and its message stays in the
// session.
func (l *Local) handle(m *localMessage) {
	var hs []func(Message)
	for _, s := range l.subs {
		if MatchTopic(s.Filter, m.pk.TopicName) {
			hs = append(hs, s.Handler)
		}
	}
	if len(hs) == 0 {
		// The session's subscription from an earlier run that this
		// client no longer makes: nobody here takes its messages.
		l.log.Warn("broker: local client has no handler for a message of its session; it stays in the session", "client", l.cl.ID, "topic", m.pk.TopicName)
		return
	}
	m.left.Store(int32(len(hs)))
	for _, h := range hs {
		func() {
			defer func() {
				if r := recover(); r != nil {
					l.log.Error("message handler panicked", "topic", m.pk.TopicName, "panic", r)
				}
			}()
			h(&localView{m: m})
		}()
	}
}

// ack takes a delivered QoS 1/2 message out of the session, as the
// broker does with a client's PUBACK.
func (l *Local) ack(pk packets.Packet) {
	l.mu.Lock()
	delete(l.given, pk.PacketID)
	in, ok := l.cl.State.Inflight.Get(pk.PacketID)
	// Not there: acknowledged already (by a Local attached before this
	// one), or the identifier was given to another message since.
	ok = ok && samePacket(in, pk) && l.cl.State.Inflight.Delete(pk.PacketID)
	l.mu.Unlock()
	if !ok {
		return
	}
	atomic.AddInt64(&l.e.srv.Info.Inflight, -1)
	l.cl.State.Inflight.IncreaseSendQuota()
	if l.store != nil {
		l.store.OnQosComplete(l.cl, pk)
	}
}

// localMessage is a message handed to a Local's handlers.
type localMessage struct {
	l        *Local
	pk       packets.Packet
	retained bool
	left     atomic.Int32
}

// localView is one handler's view of a localMessage (its own Ack).
type localView struct {
	m    *localMessage
	once sync.Once
}

func (v *localView) Topic() string   { return v.m.pk.TopicName }
func (v *localView) Payload() []byte { return v.m.pk.Payload }
func (v *localView) QoS() byte       { return v.m.pk.FixedHeader.Qos }
func (v *localView) Duplicate() bool { return v.m.pk.FixedHeader.Dup }
func (v *localView) Retained() bool  { return v.m.retained }
func (v *localView) Ack() {
	v.once.Do(func() {
		m := v.m
		if m.left.Add(-1) == 0 && m.pk.FixedHeader.Qos > 0 && !m.retained {
			m.l.ack(m.pk)
		}
	})
}

// localHook hands the messages the broker routes to an attached Local's
// session to the Local. A QoS 1/2 message is handed over once mochi has
// put it in the session (and persisted it: the hook runs after the
// persistence hook), as mochi would then send it to a connection; a QoS 0
// message, which mochi drops for a session without a connection, once it
// was published.
type localHook struct {
	mqtt.HookBase
	mu    sync.RWMutex
	local map[string]*Local // by client ID
}

func newLocalHook() *localHook { return &localHook{local: map[string]*Local{}} }

func (h *localHook) ID() string { return "delen-local" }

func (h *localHook) Provides(b byte) bool { return b == mqtt.OnQosPublish || b == mqtt.OnPublished }

func (h *localHook) attach(l *Local) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.local[l.cl.ID]; ok {
		return false
	}
	h.local[l.cl.ID] = l
	return true
}

func (h *localHook) detach(l *Local) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.local[l.cl.ID] == l {
		delete(h.local, l.cl.ID)
	}
}

func (h *localHook) get(id string) *Local {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.local[id]
}

// OnQosPublish sees a QoS 1/2 message put in a session (mochi passes
// resends > 0 only for a connection's resends, which a Local has none of).
func (h *localHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, resends int) {
	if pk.FixedHeader.Type != packets.Publish || resends > 0 {
		return
	}
	// The session's object, or the one it replaced (a publisher may have
	// found that one just before the attach); not a connection's that
	// took the session over since.
	if l := h.get(cl.ID); l != nil && (cl == l.cl || cl == l.prev) && !l.cl.IsTakenOver() {
		l.deliver(pk)
	}
}

// OnPublished sees every message published; those that reach a Local's
// subscriptions at QoS 0 are handed to it (mochi routes them to no session
// without a connection).
func (h *localHook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	h.mu.RLock()
	var to []*Local
	for _, l := range h.local {
		if l.cl != cl && l.atQoS0(pk) {
			to = append(to, l)
		}
	}
	h.mu.RUnlock()
	for _, l := range to {
		m := &localMessage{l: l, pk: pk}
		m.pk.FixedHeader.Qos, m.pk.FixedHeader.Retain = 0, false
		l.handle(m)
	}
}

// atQoS0 reports whether pk reaches one of the client's subscriptions at
// QoS 0 and none at a higher QoS (those come through the session).
func (l *Local) atQoS0(pk packets.Packet) bool {
	match, higher := false, false
	for _, s := range l.subs {
		if MatchTopic(s.Filter, pk.TopicName) {
			match = true
			higher = higher || min(pk.FixedHeader.Qos, s.QoS) > 0
		}
	}
	return match && !higher
}
