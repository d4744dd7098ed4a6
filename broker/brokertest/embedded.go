package brokertest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/delen-edge/delen/broker"
)

// StartEmbedded starts an embedded broker for the test and closes it when
// the test ends. An empty cfg.Addr means a free loopback port
// ("127.0.0.1:0"; read it back with Addr), and a nil cfg.Logger discards the
// broker's logs.
func StartEmbedded(t testing.TB, cfg broker.EmbeddedConfig) *broker.Embedded {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e, err := broker.NewEmbedded(cfg)
	if err != nil {
		t.Fatalf("brokertest: embedded broker: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatalf("brokertest: start embedded broker: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}
