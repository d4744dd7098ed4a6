package broker

import (
	"net"
	"path/filepath"
	"testing"
)

// WithConnHook returns cfg with a hook that sees every network connection
// the client opens (tcp:// URLs only), so tests can cut a connection without
// an MQTT DISCONNECT, as a crash or a network loss would.
func WithConnHook(cfg ClientConfig, hook func(net.Conn)) ClientConfig {
	cfg.connHook = hook
	return cfg
}

// WithConnWrap returns cfg with a wrapper around every connection the
// client opens, so tests can see what the client writes.
func WithConnWrap(cfg ClientConfig, wrap func(net.Conn) net.Conn) ClientConfig {
	cfg.connWrap = wrap
	return cfg
}

// InflightOnDisk counts the messages in flight that the embedded broker
// with data folder dir has in its log's files, as a start after a kill -9
// would find them.
func InflightOnDisk(t *testing.T, dir string) int {
	return onDisk(t, filepath.Join(dir, inflightDir))
}
