package broker

import "net"

// WithConnHook returns cfg with a hook that sees every network connection
// the client opens (tcp:// URLs only), so tests can cut a connection without
// an MQTT DISCONNECT, as a crash or a network loss would.
func WithConnHook(cfg ClientConfig, hook func(net.Conn)) ClientConfig {
	cfg.connHook = hook
	return cfg
}
