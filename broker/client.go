package broker

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delen-edge/delen/internal/slogx"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// ErrNotAuthorized is Dial's error (with FailFast) when the broker refuses
// the client's username and password.
var ErrNotAuthorized = errors.New("not authorized")

// Defaults of ClientConfig.
const (
	// DefaultConnectTimeout bounds one connection attempt.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultKeepAlive is the MQTT keep-alive interval.
	DefaultKeepAlive = 30 * time.Second
	// MaxReconnectInterval caps the back-off between reconnection attempts.
	MaxReconnectInterval = 2 * time.Second
	// subscribeTimeout bounds the wait for a SUBACK.
	subscribeTimeout = 10 * time.Second
	// closeQuiesce is how long paho waits for the DISCONNECT to be written.
	closeQuiesce = 250 // ms
	// closeTimeout bounds how long Close waits for the broker to read
	// everything sent before the DISCONNECT and close its side.
	closeTimeout = 2 * time.Second
	// maxPending bounds the messages kept for subscriptions not yet made.
	maxPending = 1024
)

// Will is a last-will message: the broker publishes it when the client's
// connection ends without a DISCONNECT (crash, network loss, keep-alive
// timeout).
type Will struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Retained bool
}

// ClientConfig configures Dial.
type ClientConfig struct {
	// URL of the broker: tcp://host:port (or mqtt://), ssl://, tls:// or
	// mqtts:// for MQTT over TLS, ws:// or wss://. A bare host:port means
	// tcp://.
	URL string
	// ClientID identifies the session; required when CleanSession is false.
	ClientID string
	// Username and Password, if the broker wants them.
	Username string
	Password string
	// CleanSession false asks the broker to keep the session (subscriptions
	// and unacknowledged QoS 1/2 messages) while the client is away and to
	// redeliver those messages when it comes back with the same ClientID.
	CleanSession bool
	// TLS is used for ssl://, tls://, mqtts:// and wss:// URLs; nil means the
	// system roots and the URL's host name.
	TLS *tls.Config
	// Will, when set, is registered with every connection.
	Will *Will
	// ConnectTimeout bounds each connection attempt (TCP, TLS and CONNACK);
	// 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// KeepAlive is the MQTT keep-alive; 0 means DefaultKeepAlive.
	KeepAlive time.Duration
	// FailFast makes Dial return the first attempt's error (a refused
	// connection, ErrNotAuthorized) instead of retrying until ctx is done:
	// for one-shot tools, where a person waits. Once connected, the client
	// reconnects on its own either way.
	FailFast bool
	// Logger receives connection events; nil means slog.Default().
	Logger *slog.Logger
	// OnConnect is called after every successful connection, the first one
	// and reconnections, once the client's subscriptions have been renewed;
	// it runs in a goroutine of its own (for the first connection, possibly
	// before Dial returns).
	OnConnect func()
	// OnConnectionLost is called, in a goroutine of its own, when an
	// established connection drops; the client then reconnects on its own.
	OnConnectionLost func(error)

	// Subscriptions are made with the first connection, and their handlers
	// are in place before it: a persistent session's queued messages,
	// which the broker sends right after its CONNACK, reach them instead of
	// waiting (bounded) for a Subscribe call. Subscribe adds more later.
	Subscriptions []Subscription

	// Dial, when set, opens the client's connections instead of dialing
	// URL (which still names the broker in logs and errors), for instance
	// Embedded.Dial for an in-process connection to an embedded broker. TLS
	// is not applied to its connections.
	Dial func(ctx context.Context) (net.Conn, error)

	// AckDelay, when set, holds each acknowledgement (PUBACK) for up to
	// that long so that it goes to the broker with the next packet the
	// client writes, not in a write of its own: an agent that publishes a
	// result for every request it acknowledges then spends one system
	// call where it spent two. The broker holds the message that long
	// more in its in-flight window; a connection lost meanwhile loses the
	// acknowledgement, and the broker redelivers the message, as with
	// one lost on the wire. 0 writes each acknowledgement at once.
	AckDelay time.Duration

	// connHook, set by tests only, sees every network connection opened.
	connHook func(net.Conn)
	// connWrap, set by tests only, wraps every connection opened.
	connWrap func(net.Conn) net.Conn
}

// Message is one message received on a subscription.
type Message interface {
	// Topic is the topic the message was published to.
	Topic() string
	// Payload is the message body; do not modify it.
	Payload() []byte
	// QoS is the delivery QoS (the lower of publish and subscription QoS).
	QoS() byte
	// Duplicate reports the DUP flag: the broker may have sent this message
	// before. It is a hint; deduplicate on content.
	Duplicate() bool
	// Retained reports that the message was a retained one delivered
	// because of a (re)subscription.
	Retained() bool
	// Ack acknowledges the message to the broker (PUBACK for QoS 1, PUBREC
	// for QoS 2; nothing for QoS 0). It may be called from any goroutine, at
	// any time, more than once (later calls do nothing). An Ack after the
	// connection the message came on was lost is dropped: the broker will
	// redeliver the message if the session is persistent.
	Ack()
}

// Client is an MQTT 3.1.1 client with automatic reconnection, subscriptions
// that are renewed on every connection, and manual acknowledgement of
// received messages. It is safe for concurrent use.
type Client struct {
	cfg ClientConfig
	url string // for logs, without password
	log *slog.Logger
	pc  paho.Client

	mu      sync.Mutex
	subs    map[string]*subscription
	pending []paho.Message // received with no matching subscription yet
	// dropped counts messages dropped for want of a subscription since
	// droppedLog, when the last line about them was logged.
	dropped    int
	droppedLog time.Time
	closed     bool
	// up is true from the start of onConnect until the next reconnection
	// attempt: while it is false, a new subscription is left to onConnect.
	up bool

	firstConnect chan struct{} // closed by the first onConnect
	firstOnce    sync.Once
	closing      atomic.Bool                  // Close has begun
	conn         atomic.Pointer[gracefulConn] // the latest network connection
	lastErr      atomic.Pointer[error]        // last connection failure, for Dial's error
}

type subscription struct {
	filter  string
	qos     byte
	handler func(Message)
}

// Subscription is a topic filter, its QoS and the handler of its messages,
// as Subscribe takes them.
type Subscription struct {
	Filter  string
	QoS     byte
	Handler func(Message)
}

// Dial connects to the broker and returns when the connection is up (the
// broker's CONNACK accepted it) or ctx is done; bound it with a deadline,
// since a broker that is down is retried until then. Once connected, the
// client reconnects on its own after any loss, backing off up to
// MaxReconnectInterval between attempts.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	raw := cfg.URL
	if raw == "" {
		return nil, errors.New("broker: Dial: empty URL")
	}
	if !strings.Contains(raw, "://") {
		raw = "tcp://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("broker: Dial: URL: %w", err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return nil, fmt.Errorf("broker: Dial: unsupported scheme %q", u.Scheme)
	}
	if !cfg.CleanSession && cfg.ClientID == "" {
		return nil, errors.New("broker: Dial: a persistent session (CleanSession false) needs a ClientID")
	}
	if w := cfg.Will; w != nil {
		if err := ValidateTopic(w.Topic); err != nil {
			return nil, fmt.Errorf("broker: Dial: will: %w", err)
		}
		if w.QoS > 2 {
			return nil, fmt.Errorf("broker: Dial: will: QoS %d", w.QoS)
		}
	}
	subs := map[string]*subscription{}
	for _, sub := range cfg.Subscriptions {
		if err := ValidateFilter(sub.Filter); err != nil {
			return nil, fmt.Errorf("broker: Dial: subscription: %w", err)
		}
		if sub.QoS > 2 || sub.Handler == nil {
			return nil, fmt.Errorf("broker: Dial: subscription %s: QoS %d or no handler", sub.Filter, sub.QoS)
		}
		subs[sub.Filter] = &subscription{filter: sub.Filter, qos: sub.QoS, handler: sub.Handler}
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	c := &Client{cfg: cfg, url: u.Redacted(), log: cfg.Logger, subs: subs, firstConnect: make(chan struct{})}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = slogx.Collapse(c.log, slogx.DefaultEvery).With("mqtt_client", cfg.ClientID)

	opts := paho.NewClientOptions().
		AddBroker(u.String()).
		SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetCleanSession(cfg.CleanSession).
		SetProtocolVersion(4). // MQTT 3.1.1, no silent fallback to 3.1
		SetTLSConfig(cfg.TLS).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetKeepAlive(cfg.KeepAlive).
		SetPingTimeout(cfg.ConnectTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(!cfg.FailFast).
		SetConnectRetryInterval(500 * time.Millisecond).
		SetMaxReconnectInterval(MaxReconnectInterval).
		// Subscriptions are renewed in onConnect, which also survives a
		// broker that lost them; ResumeSubs would only replay SUBSCRIBEs
		// still unacknowledged when the connection dropped.
		SetResumeSubs(false).
		// Handlers run in their own goroutines, so a slow handler never
		// stalls the network loop (with ordered delivery, a handler waiting
		// for a PUBACK would deadlock it).
		SetOrderMatters(false).
		SetAutoAckDisabled(true).
		SetDefaultPublishHandler(c.onMessage).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(c.onConnectionLost).
		SetReconnectingHandler(c.onReconnecting).
		SetConnectionNotificationHandler(c.onNotification)
	if w := cfg.Will; w != nil {
		opts.SetBinaryWill(w.Topic, w.Payload, w.QoS, w.Retained)
	}
	if cfg.Dial != nil || (u.Scheme != "ws" && u.Scheme != "wss") {
		// Our own dialing, to close connections gracefully (see gracefulConn).
		opts.SetCustomOpenConnectionFn(c.open)
	}
	c.pc = paho.NewClient(opts)

	tok := c.pc.Connect()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			c.pc.Disconnect(0)
			if errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
				err = fmt.Errorf("%w (%w)", ErrNotAuthorized, err)
			}
			return nil, fmt.Errorf("broker: connect to %s: %w", u.Redacted(), err)
		}
		// Wait for onConnect too, so a Subscribe right after Dial is not
		// sent twice (once by Subscribe, once by onConnect).
		select {
		case <-c.firstConnect:
		case <-ctx.Done():
			c.pc.Disconnect(0)
			return nil, fmt.Errorf("broker: connect to %s: %w", u.Redacted(), ctx.Err())
		}
	case <-ctx.Done():
		c.pc.Disconnect(0)
		if last := c.lastErr.Load(); last != nil {
			return nil, fmt.Errorf("broker: connect to %s: %w (last attempt: %v)", u.Redacted(), ctx.Err(), *last)
		}
		return nil, fmt.Errorf("broker: connect to %s: %w", u.Redacted(), ctx.Err())
	}
	return c, nil
}

// Connected reports whether the connection to the broker is up now.
func (c *Client) Connected() bool {
	return c.pc.IsConnectionOpen()
}

// Publish sends a message and waits until it is done: written to the
// network for QoS 0, PUBACK received for QoS 1, PUBCOMP for QoS 2. It
// returns ctx's error if ctx ends first; a QoS 1/2 message may still be
// delivered after that (paho keeps it and resends it after a reconnect).
// While the client is reconnecting, a QoS 1/2 message waits for the new
// connection; a QoS 0 message is dropped (paho reports success for it).
func (c *Client) Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error {
	if err := ValidateTopic(topic); err != nil {
		return fmt.Errorf("broker: publish: %w", err)
	}
	if qos > 2 {
		return fmt.Errorf("broker: publish to %s: QoS %d", topic, qos)
	}
	if c.isClosed() {
		return ErrClosed
	}
	if payload == nil {
		payload = []byte{}
	}
	tok := c.pc.Publish(topic, qos, retained, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("broker: publish to %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("broker: publish to %s: %w", topic, ctx.Err())
	}
}

// Pending is a publish under way (see PublishAsync).
type Pending struct {
	tok paho.Token
	err error
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Done is closed when the publish is complete: written to the network for
// QoS 0, PUBACK received for QoS 1, PUBCOMP for QoS 2, or failed.
func (p *Pending) Done() <-chan struct{} {
	if p.tok == nil {
		return closedChan
	}
	return p.tok.Done()
}

// Err is the publish's error once Done is closed (nil: delivered to the
// broker).
func (p *Pending) Err() error {
	if p.tok == nil {
		return p.err
	}
	return p.tok.Error()
}

// PublishAsync hands a message to the connection and returns at once (or
// once the connection's writer has taken it): no goroutine waits for the
// broker's acknowledgement, which Done reports. While the client is
// reconnecting a QoS 1/2 message waits for the new connection, as with
// Publish.
func (c *Client) PublishAsync(topic string, qos byte, retained bool, payload []byte) *Pending {
	if err := ValidateTopic(topic); err != nil {
		return &Pending{err: fmt.Errorf("broker: publish: %w", err)}
	}
	if qos > 2 {
		return &Pending{err: fmt.Errorf("broker: publish to %s: QoS %d", topic, qos)}
	}
	if c.isClosed() {
		return &Pending{err: ErrClosed}
	}
	if payload == nil {
		payload = []byte{}
	}
	return &Pending{tok: c.pc.Publish(topic, qos, retained, payload)}
}

// Corked runs fn with the connection's writes gathered: the packets fn
// has the client send (publishes, acknowledgements) and any others
// written meanwhile go to the broker in one write when fn returns, not
// one write each (the last one or two packets fn handed to paho may still
// be on their way through its goroutines then, and follow in writes of
// their own). fn must not wait for anything those packets bring about (a
// PUBACK, a result): they are sent only after it returns.
func (c *Client) Corked(fn func()) {
	g := c.conn.Load()
	if g == nil {
		fn()
		return
	}
	g.cork()
	defer g.uncork()
	fn()
}

// Subscribe subscribes to a topic filter (wildcards and
// "$share/<group>/<filter>" allowed) and calls handler for every message
// that matches it; a message matching several subscriptions goes to each
// of their handlers, and is acknowledged once all of them called Ack.
//
// handler runs in a goroutine of its own per message and should return
// quickly, handing long work to other goroutines; the message is
// acknowledged only when Ack is called, so a QoS 1 message whose handler
// never calls Ack stays unacknowledged and is redelivered to the next
// session of a persistent client.
//
// The subscription lasts for the life of the Client: it is renewed on every
// (re)connection, so it survives a broker restart that lost it. Messages
// that arrive before their subscription is made (a persistent session's
// redeliveries come right after the CONNACK) are kept, up to 1024, and
// handed to the first Subscribe whose filter matches them.
//
// Subscribe returns when the broker has granted the subscription, or at
// once when the client is disconnected (it is then made on reconnection). It
// returns an error, and drops the subscription, if the filter or QoS is
// invalid or the broker refuses it. Subscribing again to the same filter
// replaces the handler.
func (c *Client) Subscribe(filter string, qos byte, handler func(Message)) error {
	if err := ValidateFilter(filter); err != nil {
		return fmt.Errorf("broker: subscribe: %w", err)
	}
	if qos > 2 {
		return fmt.Errorf("broker: subscribe to %s: QoS %d", filter, qos)
	}
	if handler == nil {
		return fmt.Errorf("broker: subscribe to %s: nil handler", filter)
	}
	sub := &subscription{filter: filter, qos: qos, handler: handler}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.subs[filter] = sub
	up := c.up
	var backlog []paho.Message
	kept := c.pending[:0]
	for _, m := range c.pending {
		if MatchTopic(filter, m.Topic()) {
			backlog = append(backlog, m)
		} else {
			kept = append(kept, m)
		}
	}
	clear(c.pending[len(kept):])
	c.pending = kept
	c.mu.Unlock()

	var err error
	if up {
		err = c.subscribe(map[string]byte{filter: qos})
	}
	if err != nil && c.pc.IsConnectionOpen() {
		c.mu.Lock()
		if c.subs[filter] == sub {
			delete(c.subs, filter)
		}
		c.pending = append(c.pending, backlog...)
		c.mu.Unlock()
		return err
	}
	if err != nil {
		c.log.Debug("subscription deferred until reconnection", "filter", filter, "error", err)
	}
	for _, m := range backlog {
		go c.deliver(m, []func(Message){handler})
	}
	return nil
}

// Unsubscribe ends a subscription made with Subscribe (the same filter
// string) and waits, bounded, for the broker's UNSUBACK.
func (c *Client) Unsubscribe(filter string) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	delete(c.subs, filter)
	c.mu.Unlock()
	if !c.pc.IsConnectionOpen() {
		return nil
	}
	tok := c.pc.Unsubscribe(filter)
	if !tok.WaitTimeout(subscribeTimeout) {
		return fmt.Errorf("broker: unsubscribe from %s: no UNSUBACK within %s", filter, subscribeTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("broker: unsubscribe from %s: %w", filter, err)
	}
	return nil
}

// Close disconnects cleanly: the will is not published, Acks and publishes
// already handed to the connection are sent before the DISCONNECT, and
// Close waits (up to about 3 s) until the broker has read them and closed
// its side, so a new session with the same client ID sees their effect.
// Messages not yet acknowledged stay with the broker's session. Close is
// safe to call more than once.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.pending = nil
	c.mu.Unlock()
	c.closing.Store(true)
	c.pc.Disconnect(closeQuiesce)
	// paho's Disconnect returns after the quiesce even while the
	// connection is still closing; wait for it, bounded.
	if g := c.conn.Load(); g != nil {
		t := time.NewTimer(closeTimeout + time.Second)
		defer t.Stop()
		select {
		case <-g.closed:
		case <-t.C:
		}
	}
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// subscribe sends one SUBSCRIBE and waits for the SUBACK.
func (c *Client) subscribe(filters map[string]byte) error {
	tok := c.pc.SubscribeMultiple(filters, nil)
	if !tok.WaitTimeout(subscribeTimeout) {
		return fmt.Errorf("broker: subscribe: no SUBACK within %s", subscribeTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("broker: subscribe: %w", err)
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		var refused []string
		for f, code := range st.Result() {
			if code > 2 {
				refused = append(refused, f)
			}
		}
		if len(refused) > 0 {
			return fmt.Errorf("broker: subscribe: refused by the broker: %s", strings.Join(refused, ", "))
		}
	}
	return nil
}

// onConnect renews every subscription, then calls the user's OnConnect.
// paho runs it in a goroutine of its own after each connection.
func (c *Client) onConnect(paho.Client) {
	c.mu.Lock()
	c.up = true
	filters := make(map[string]byte, len(c.subs))
	for f, s := range c.subs {
		filters[f] = s.qos
	}
	closed := c.closed
	c.mu.Unlock()
	if len(filters) > 0 && !closed {
		if err := c.subscribe(filters); err != nil {
			c.log.Error("renewing subscriptions failed", "error", err)
		}
	}
	c.firstOnce.Do(func() { close(c.firstConnect) })
	if closed {
		return
	}
	c.log.Info("mqtt connected", "url", c.url, "subscriptions", len(filters))
	if c.cfg.OnConnect != nil {
		c.cfg.OnConnect()
	}
}

// onReconnecting runs before every reconnection attempt, in the goroutine
// that then starts onConnect, so the two never race.
func (c *Client) onReconnecting(paho.Client, *paho.ClientOptions) {
	c.mu.Lock()
	c.up = false
	c.mu.Unlock()
}

func (c *Client) onConnectionLost(_ paho.Client, err error) {
	c.log.Warn("mqtt connection lost; reconnecting", "error", err)
	if c.cfg.OnConnectionLost != nil {
		c.cfg.OnConnectionLost(err)
	}
}

func (c *Client) onNotification(_ paho.Client, n paho.ConnectionNotification) {
	var err error
	switch n := n.(type) {
	case paho.ConnectionNotificationFailed:
		err = n.Reason
	case paho.ConnectionNotificationBrokerFailed:
		err = n.Reason
	}
	if err != nil {
		c.lastErr.Store(&err)
	}
}

// onMessage is paho's handler for every received message; paho calls it in
// a goroutine of its own (OrderMatters false).
func (c *Client) onMessage(_ paho.Client, m paho.Message) {
	c.mu.Lock()
	var handlers []func(Message)
	for _, s := range c.subs {
		if MatchTopic(s.filter, m.Topic()) {
			handlers = append(handlers, s.handler)
		}
	}
	if len(handlers) == 0 {
		switch {
		case c.closed:
		case m.Qos() == 0:
			c.log.Debug("QoS 0 message without subscription dropped", "topic", m.Topic())
		case len(c.pending) >= maxPending:
			// At most one line a minute, with the count since the last.
			c.dropped++
			if now := time.Now(); now.Sub(c.droppedLog) >= time.Minute {
				c.log.Warn("messages without subscription dropped unacknowledged; they are redelivered on the next session", "topic", m.Topic(), "count", c.dropped)
				c.droppedLog, c.dropped = now, 0
			}
		default:
			c.pending = append(c.pending, m)
			c.log.Debug("message kept until a matching Subscribe", "topic", m.Topic())
		}
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.deliver(m, handlers)
}

// deliver calls each handler with its own view of m; m is acknowledged when
// every handler has called Ack. A panicking handler is logged and its
// message stays unacknowledged.
func (c *Client) deliver(m paho.Message, handlers []func(Message)) {
	g := &ackGroup{m: m}
	g.left.Store(int32(len(handlers)))
	for _, h := range handlers {
		func() {
			defer func() {
				if r := recover(); r != nil {
					c.log.Error("message handler panicked", "topic", m.Topic(), "panic", r)
				}
			}()
			h(&message{g: g})
		}()
	}
}

type ackGroup struct {
	m    paho.Message
	left atomic.Int32
}

type message struct {
	g    *ackGroup
	once sync.Once
}

func (m *message) Topic() string   { return m.g.m.Topic() }
func (m *message) Payload() []byte { return m.g.m.Payload() }
func (m *message) QoS() byte       { return m.g.m.Qos() }
func (m *message) Duplicate() bool { return m.g.m.Duplicate() }
func (m *message) Retained() bool  { return m.g.m.Retained() }
func (m *message) Ack() {
	m.once.Do(func() {
		if m.g.left.Add(-1) == 0 {
			m.g.m.Ack()
		}
	})
}

// open dials the broker for paho (tcp, mqtt, ssl, tls, mqtts URLs).
func (c *Client) open(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	d := &net.Dialer{Timeout: o.ConnectTimeout}
	var conn net.Conn
	var err error
	switch {
	case c.cfg.Dial != nil:
		ctx, cancel := context.WithTimeout(context.Background(), o.ConnectTimeout)
		conn, err = c.cfg.Dial(ctx)
		cancel()
	case uri.Scheme == "tcp" || uri.Scheme == "mqtt":
		conn, err = d.Dial("tcp", uri.Host)
	default:
		conn, err = tls.DialWithDialer(d, "tcp", uri.Host, o.TLSConfig)
	}
	if err != nil {
		return nil, err
	}
	if c.cfg.connHook != nil {
		c.cfg.connHook(conn)
	}
	if c.cfg.connWrap != nil {
		conn = c.cfg.connWrap(conn)
	}
	g := &gracefulConn{Conn: conn, r: bufio.NewReaderSize(conn, readBuffer), closing: &c.closing, eof: make(chan struct{}), closed: make(chan struct{}),
		ackDelay: c.cfg.AckDelay}
	c.conn.Store(g)
	return g, nil
}

// readBuffer is the size of a connection's read buffer. paho reads each
// packet's fixed header a byte at a time and then its body, straight from
// the connection: three or four read system calls per packet unbuffered.
// Buffered, one read takes everything the broker has sent so far (many
// packets under load; a request and the PUBACKs that came with it).
const readBuffer = 32 << 10

// gracefulConn makes Client.Close reliable. paho closes the socket right
// after writing DISCONNECT; a broker that has not read everything yet may
// then lose what was sent last (acks, in particular): mochi drops the
// unread packets of a connection whose session is taken over by a quick
// reconnection with the same client ID, and an abortive close can reset
// the connection. When the client is closing, Close shuts down only the
// sending side and waits, bounded, for the broker to close its side, which
// it does after processing the DISCONNECT.
//
// It also buffers reads (see readBuffer).
type gracefulConn struct {
	net.Conn
	r       *bufio.Reader // over Conn; only paho's reading goroutine uses it
	closing *atomic.Bool

	eof     chan struct{} // closed when a Read fails (the broker closed)
	eofOnce sync.Once

	closeOnce sync.Once
	closed    chan struct{}
	err       error

	// Writes made while corked gather in wbuf and go out in one write
	// when the last cork is lifted (Client.Corked); wmu orders them with
	// the writes made uncorked. Acknowledgements held for ackDelay
	// (ClientConfig.AckDelay) wait in wbuf too, for the next write or
	// ackTimer, whichever comes first.
	wmu      sync.Mutex
	corked   int
	wbuf     []byte
	ackDelay time.Duration
	ackTimer *time.Timer
	ackArmed bool // ackTimer runs for what waits in wbuf
}

// pubackHeader is the first byte of an MQTT PUBACK packet; publishType
// the packet type of a PUBLISH (its first byte's high nibble).
const (
	pubackHeader = 0x40
	publishType  = 3
)

func (g *gracefulConn) Write(p []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.corked > 0 {
		g.wbuf = append(g.wbuf, p...)
		return len(p), nil
	}
	if g.ackDelay > 0 && len(p) == 4 && p[0] == pubackHeader && p[1] == 2 {
		// paho writes each packet with one Write: p is one PUBACK (MQTT
		// 3.1.1: the header, length 2, the packet identifier).
		g.wbuf = append(g.wbuf, p...)
		if !g.ackArmed {
			g.ackArmed = true
			if g.ackTimer == nil {
				g.ackTimer = time.AfterFunc(g.ackDelay, g.flushAcks)
			} else {
				g.ackTimer.Reset(g.ackDelay)
			}
		}
		return len(p), nil
	}
	if len(g.wbuf) == 0 {
		return g.Conn.Write(p)
	}
	// Held acknowledgements go in the same write: after a PUBLISH (usually
	// a result on its way to a tenant), so that the broker reads it first
	// and the acknowledgements, which nobody waits for, after it (MQTT
	// orders acknowledgements only among themselves); before anything else
	// (DISCONNECT must come last).
	n := len(g.wbuf)
	g.wbuf = append(g.wbuf, p...)
	if len(p) > 0 && p[0]>>4 == publishType {
		copy(g.wbuf[len(p):], g.wbuf[:n])
		copy(g.wbuf, p)
	}
	if err := g.flushLocked(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flushAcks writes the acknowledgements still held when ackTimer fires.
func (g *gracefulConn) flushAcks() {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	g.ackArmed = false
	if g.corked == 0 && len(g.wbuf) > 0 {
		g.flushLocked()
	}
}

// flushLocked writes wbuf in one write; wmu is held. A failed write closes
// the connection, so that paho sees it and reconnects.
func (g *gracefulConn) flushLocked() error {
	_, err := g.Conn.Write(g.wbuf)
	if cap(g.wbuf) > 64<<10 {
		g.wbuf = nil
	} else {
		g.wbuf = g.wbuf[:0]
	}
	if g.ackArmed {
		g.ackTimer.Stop()
		g.ackArmed = false
	}
	if err != nil {
		g.Conn.Close()
	}
	return err
}

func (g *gracefulConn) cork() {
	g.wmu.Lock()
	g.corked++
	g.wmu.Unlock()
}

// uncork lifts one cork; the last one sends what gathered (held
// acknowledgements included).
func (g *gracefulConn) uncork() {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.corked--; g.corked > 0 || len(g.wbuf) == 0 {
		return
	}
	g.flushLocked()
}

func (g *gracefulConn) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err != nil {
		g.eofOnce.Do(func() { close(g.eof) })
	}
	return n, err
}

func (g *gracefulConn) Close() error {
	g.closeOnce.Do(func() {
		defer close(g.closed)
		// Held acknowledgements go out before the connection closes (paho
		// writes DISCONNECT first, which takes them along, unless the
		// connection is being dropped).
		g.wmu.Lock()
		if len(g.wbuf) > 0 {
			g.flushLocked()
		}
		g.wmu.Unlock()
		if cw, ok := g.Conn.(interface{ CloseWrite() error }); ok && g.closing.Load() && cw.CloseWrite() == nil {
			t := time.NewTimer(closeTimeout)
			select {
			case <-g.eof:
			case <-t.C:
			}
			t.Stop()
		}
		g.err = g.Conn.Close()
	})
	return g.err
}
