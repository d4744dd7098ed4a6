package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delen-edge/delen/internal/slogx"
	badgerdb "github.com/dgraph-io/badger/v4"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	badgerhook "github.com/mochi-mqtt/server/v2/hooks/storage/badger"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// DefaultAddr is the TCP address the embedded broker listens on when
// EmbeddedConfig.Addr is empty.
const DefaultAddr = "127.0.0.1:1883"

// DefaultTLSAddr is the address of the TLS listener when a certificate is
// configured and EmbeddedConfig.TLSAddr is empty.
const DefaultTLSAddr = "127.0.0.1:8883"

// ErrClosed is returned by operations on a broker or client that was closed.
var ErrClosed = errors.New("broker: closed")

// EmbeddedConfig configures an Embedded broker. The zero value is a broker
// on 127.0.0.1:1883 without TLS, without persistence, that accepts every
// client.
type EmbeddedConfig struct {
	// Addr is the host:port of the plain TCP listener; "" means DefaultAddr.
	// Port 0 picks a free port; Embedded.Addr reports the one chosen.
	Addr string

	// TLSCertFile and TLSKeyFile, both PEM, enable a second listener that
	// speaks MQTT over TLS on TLSAddr.
	TLSCertFile string
	TLSKeyFile  string
	// TLSAddr is the host:port of the TLS listener; "" means DefaultTLSAddr.
	TLSAddr string
	// TLSClientCAFile, a PEM bundle, makes the TLS listener require a
	// client certificate signed by one of its CAs (mutual TLS). The plain
	// listener is not affected; passwords and ACLs (Auth) still apply.
	TLSClientCAFile string

	// DataDir, when set, persists sessions, subscriptions, queued QoS 1/2
	// messages and retained messages in a Badger database in this folder
	// (mochi's Badger storage hook), so they survive a restart. Use a folder
	// of its own, not the agent's store.
	DataDir string

	// Auth, when set, authenticates clients and checks every publish and
	// subscribe against its ACL. Nil accepts every client, anonymous or not,
	// on every topic.
	Auth *Authenticator

	// MessageExpiry bounds how long retained messages and messages queued for
	// offline sessions are kept. Zero keeps them until they are replaced or
	// delivered (mochi's own default would drop them after 24 hours, which
	// loses retained state and status topics on a long-running edge box).
	MessageExpiry time.Duration

	// SessionExpiry bounds how long the session of a disconnected client
	// (CleanSession false) is kept. Zero keeps it forever, like Mosquitto's
	// default.
	SessionExpiry time.Duration

	// Logger receives the broker's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Embedded is an in-process MQTT broker (mochi-mqtt). It supports MQTT 3.1.1
// and 5, QoS 0-2, retained messages, persistent sessions, last will and
// shared subscriptions ($share/<group>/<filter>; mochi gives each message
// to a random member of the group, which may be a disconnected persistent
// session that then holds it until it returns). It also works around a
// mochi bug that made a client's own packet identifiers acknowledge or
// refuse unrelated flows (see packetIDHook). A client in the same process
// reaches it without a connection through Attach (Local).
type Embedded struct {
	cfg EmbeddedConfig
	log *slog.Logger
	tls *tls.Config

	mu      sync.Mutex
	srv     *mqtt.Server
	tcp     *listeners.Net
	tlsl    *listeners.Net
	mem     *memListener // in-process connections (Dial)
	local   *localHook   // Local clients (Attach)
	store   *persistHook // nil without persistence
	started bool
	closed  bool
	// down is set by Close and read without the lock: a Local's
	// handler runs on a client's goroutine that Close may wait for, so
	// what it calls must not take the lock.
	down atomic.Bool
}

// NewEmbedded validates cfg and returns a broker that is not yet listening;
// call Start.
func NewEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("broker: listen address %q: %w", cfg.Addr, err)
	}
	e := &Embedded{cfg: cfg, log: cfg.Logger}
	if e.log == nil {
		e.log = slog.Default()
	}
	// mochi logs a warning per dropped message, for instance: one line per
	// interval with a count instead.
	e.log = slogx.Collapse(e.log, slogx.DefaultEvery)
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("broker: TLS needs both a certificate and a key file")
	}
	if cfg.TLSClientCAFile != "" && cfg.TLSCertFile == "" {
		return nil, errors.New("broker: a TLS client CA needs the TLS listener (certificate and key)")
	}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("broker: TLS key pair: %w", err)
		}
		e.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if cfg.TLSClientCAFile != "" {
			pool, err := loadCertPool(cfg.TLSClientCAFile)
			if err != nil {
				return nil, fmt.Errorf("broker: TLS client CA: %w", err)
			}
			e.tls.ClientCAs, e.tls.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		if e.cfg.TLSAddr == "" {
			e.cfg.TLSAddr = DefaultTLSAddr
		}
		if _, _, err := net.SplitHostPort(e.cfg.TLSAddr); err != nil {
			return nil, fmt.Errorf("broker: TLS listen address %q: %w", e.cfg.TLSAddr, err)
		}
	}
	if cfg.Auth != nil {
		if err := cfg.Auth.validate(); err != nil {
			return nil, err
		}
	}
	if cfg.MessageExpiry < 0 || cfg.SessionExpiry < 0 {
		return nil, errors.New("broker: negative expiry")
	}
	return e, nil
}

// Start opens the listeners (and the persistence database) and serves in
// the background; the broker accepts connections when Start returns. The
// context bounds start-up only: stop the broker with Close. An Embedded can
// be started once.
func (e *Embedded) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if e.started {
		return errors.New("broker: already started")
	}

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumMessageExpiryInterval = int64(e.cfg.MessageExpiry / time.Second)
	if e.cfg.MessageExpiry > 0 && caps.MaximumMessageExpiryInterval == 0 {
		caps.MaximumMessageExpiryInterval = 1
	}
	// A client may hold up to 65,535 unacknowledged QoS 1/2 messages
	// (mochi's default, 8,192, drops the rest): the agent acknowledges a
	// request only once its result is out, so a burst is held at the broker
	// for it rather than lost.
	caps.MaximumInflight = math.MaxUint16
	caps.MaximumSessionExpiryInterval = math.MaxUint32
	if e.cfg.SessionExpiry > 0 {
		caps.MaximumSessionExpiryInterval = uint32(min(int64(e.cfg.SessionExpiry/time.Second)+1, math.MaxUint32))
	}
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       slog.New(connLogHandler{e.log.Handler()}),
		// $SYS topics every 30 s instead of every second: cheaper on a Nano.
		SysTopicResendInterval: 30,
	})

	fail := func(err error) error {
		_ = srv.Close() // closes listeners and hooks added so far
		return err
	}

	if err := srv.AddHook(&dropHook{log: e.log}, nil); err != nil {
		return fail(fmt.Errorf("broker: drop hook: %w", err))
	}
	if err := srv.AddHook(new(packetIDHook), nil); err != nil {
		return fail(fmt.Errorf("broker: packet ID hook: %w", err))
	}
	if e.cfg.Auth != nil {
		if err := srv.AddHook(&authHook{a: e.cfg.Auth, sessions: srv.Clients}, nil); err != nil {
			return fail(fmt.Errorf("broker: auth hook: %w", err))
		}
	} else {
		if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
			return fail(fmt.Errorf("broker: auth hook: %w", err))
		}
	}
	var store qosStore
	var ph *persistHook
	if e.cfg.DataDir != "" {
		bh, err := e.addStorage(ctx, srv)
		if err != nil {
			return fail(fmt.Errorf("broker: persistence in %s: %w", e.cfg.DataDir, err))
		}
		store, ph = bh, bh
	}
	if err := srv.AddHook(newTakeoverHook(store, e.log), nil); err != nil {
		return fail(fmt.Errorf("broker: session takeover hook: %w", err))
	}
	// After the persistence hook: a message is stored before a Local has it.
	local := newLocalHook()
	if err := srv.AddHook(local, nil); err != nil {
		return fail(fmt.Errorf("broker: local client hook: %w", err))
	}

	var inflight *inflightLog
	if ph != nil {
		inflight = ph.inflight
	}
	tcp, err := addListener(srv, "tcp", e.cfg.Addr, nil, inflight, e.log)
	if err != nil {
		return fail(err)
	}
	var tlsl *listeners.Net
	if e.tls != nil {
		if tlsl, err = addListener(srv, "tls", e.cfg.TLSAddr, e.tls, inflight, e.log); err != nil {
			return fail(err)
		}
	}
	mem := newMemListener()
	if err := srv.AddListener(listeners.NewNet("inproc", mem)); err != nil {
		return fail(fmt.Errorf("broker: in-process listener: %w", err))
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if err := srv.Serve(); err != nil {
		return fail(fmt.Errorf("broker: serve: %w", err))
	}
	e.srv, e.tcp, e.tlsl, e.mem, e.local, e.store, e.started = srv, tcp, tlsl, mem, local, ph, true
	return nil
}

// addListener listens on addr and serves MQTT there, over TLS when tc is
// set. The socket is ours: it keeps accepting through a shortage of
// descriptors (retryListener), and with persistence (inflight set) its
// connections hold acknowledgements until the in-flight log is written
// (ackHoldConn), wrapped above TLS because mochi writes its packets in the
// clear there.
func addListener(srv *mqtt.Server, id, addr string, tc *tls.Config, inflight *inflightLog, log *slog.Logger) (*listeners.Net, error) {
	nl, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("broker: listen on %s: %w", addr, err)
	}
	var l net.Listener = retryListener{Listener: nl, log: log}
	if tc != nil {
		l = tls.NewListener(l, tc)
	}
	ln := listeners.NewNet(id, ackHoldListener{Listener: l, log: inflight})
	if err := srv.AddListener(ln); err != nil {
		nl.Close()
		return nil, fmt.Errorf("broker: listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Dial opens an in-process connection to the started broker: MQTT as over
// TCP (sessions, QoS, acknowledgements, persistence, authentication), with
// no socket and no system call. Pass it as ClientConfig.Dial to a client in
// the same process, such as the agent serving this broker.
func (e *Embedded) Dial(ctx context.Context) (net.Conn, error) {
	e.mu.Lock()
	mem, closed := e.mem, e.closed
	e.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if mem == nil {
		return nil, errors.New("broker: Dial before Start")
	}
	return mem.Dial(ctx)
}

// storeOptions are the Badger options of the broker's store in dir:
// sessions, subscriptions and retained messages (the messages in flight
// are in the inflightLog). Modest sizes: the broker's state is small, the
// edge box's memory is not large, and the agent runs a Badger of its own.
func storeOptions(dir string) badgerdb.Options {
	return badgerdb.DefaultOptions(dir).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(16 << 20).
		WithValueLogFileSize(16 << 20)
}

// inflightFlushDelay bounds how long a record of the in-flight log waits
// in memory for a flush that no acknowledgement asks for (the agent's
// acknowledgements, the results it publishes).
const inflightFlushDelay = 2 * time.Millisecond

// inflightDir is the in-flight log's folder within the data folder.
const inflightDir = "inflight"

// gcInterval is how often (seconds) the Badger store's value log is
// collected.
const gcInterval = 60

// lockWait bounds how long Start waits for the persistence folder's lock.
const lockWait = 3 * time.Second

// addStorage opens the Badger database through mochi's storage hook, and
// then, under the lock Badger holds on the folder, the in-flight log. A
// database just closed (a restart in the same process) can stay locked for
// a moment: Badger flocks its folder, and a child process forked at that
// instant by any goroutine holds a copy of the descriptor until it execs.
// So a lock conflict is retried briefly before it is reported.
func (e *Embedded) addStorage(ctx context.Context, srv *mqtt.Server) (*persistHook, error) {
	deadline := time.Now().Add(lockWait)
	for {
		opts := storeOptions(e.cfg.DataDir)
		bh := &persistHook{Hook: new(badgerhook.Hook), log: e.log}
		err := srv.AddHook(bh, &badgerhook.Options{Path: e.cfg.DataDir, Options: &opts, GcInterval: gcInterval})
		if err == nil {
			bh.inflight, err = openInflightLog(filepath.Join(e.cfg.DataDir, inflightDir), inflightSegSize, e.log)
			if bh.inflight != nil {
				bh.inflight.delay = inflightFlushDelay
			}
			return bh, err
		}
		if !strings.Contains(err.Error(), "Cannot acquire directory lock") || time.Now().After(deadline) {
			return nil, err
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// Addr returns the URL of the plain TCP listener, e.g.
// "tcp://127.0.0.1:1883", with the actual port once started (so a
// configured port 0 reports the port chosen). Before Start it returns the
// configured address.
func (e *Embedded) Addr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tcp != nil {
		return "tcp://" + e.tcp.Address()
	}
	return "tcp://" + e.cfg.Addr
}

// TLSAddr returns the URL of the TLS listener, e.g. "mqtts://127.0.0.1:8883",
// or "" when TLS is not configured.
func (e *Embedded) TLSAddr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.tls == nil:
		return ""
	case e.tlsl != nil:
		return "mqtts://" + e.tlsl.Address()
	default:
		return "mqtts://" + e.cfg.TLSAddr
	}
}

// Close stops the listeners, disconnects every client and closes the
// persistence database; sessions of persistent clients are kept there for
// the next start. (Whether mochi publishes the wills of the clients it
// disconnects depends on timing: do not rely on it.) It is safe to call
// more than once.
func (e *Embedded) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.down.Store(true)
	if e.srv == nil {
		return nil
	}
	// mochi's Server.Close lists each listener's clients with
	// Clients.GetByListener, which takes the clients' read lock and, under
	// it, again (through Len): a client leaving at that moment queues for
	// the write lock between the two, and Close deadlocks (it hung a
	// go test ./broker once). The listeners are closed first with a closer
	// that takes the lock once; Server.Close then finds them closed and
	// lists no clients.
	e.srv.Listeners.CloseAll(e.disconnectListener)
	return e.srv.Close()
}

// disconnectListener disconnects the clients of one listener as mochi's
// own closer does, shutting down.
func (e *Embedded) disconnectListener(listener string) {
	for _, cl := range e.srv.Clients.GetAll() {
		if cl.Net.Listener == listener && !cl.Closed() {
			_ = e.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}
