package broker

import (
	"context"
	"log/slog"
)

// connLogHandler names the record mochi's listeners log, with no message,
// when a client's connection ends with an error, and logs the routine ones
// (a client that closed its connection, a client refused at login, which
// the auth hook has logged already) at debug level, so the log of a serving
// agent is not a warning per disconnecting client.
type connLogHandler struct{ slog.Handler }

func (h connLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != "" {
		return h.Handler.Handle(ctx, r)
	}
	n := slog.NewRecord(r.Time, r.Level, "client connection ended", r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			switch a.Value.String() {
			case "EOF", "bad username or password", "not authorized":
				n.Level = slog.LevelDebug
			}
		}
		n.AddAttrs(a)
		return true
	})
	if !h.Handler.Enabled(ctx, n.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, n)
}

func (h connLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return connLogHandler{h.Handler.WithAttrs(as)}
}

func (h connLogHandler) WithGroup(name string) slog.Handler {
	return connLogHandler{h.Handler.WithGroup(name)}
}
