package broker

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// mochi's listeners log a connection's end as a warning with no message;
// the broker's log names it, and keeps routine ends at debug level.
func TestConnLogHandler(t *testing.T) {
	cases := []struct {
		name string
		log  func(*slog.Logger)
		want string // "" : nothing at info level
	}{
		{"client closed", func(l *slog.Logger) { l.Warn("", "error", io.EOF) }, ""},
		{"refused login", func(l *slog.Logger) { l.Warn("", "error", errors.New("bad username or password")) }, ""},
		{"other error", func(l *slog.Logger) { l.Warn("", "error", errors.New("read: connection reset by peer")) },
			`level=WARN msg="client connection ended" listener=t1 error="read: connection reset by peer"`},
		{"named record", func(l *slog.Logger) { l.Warn("client refused", "client", "c1") }, `level=WARN msg="client refused" listener=t1 client=c1`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			inner := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}})
			c.log(slog.New(connLogHandler{inner}).With("listener", "t1"))
			if got := strings.TrimSpace(buf.String()); got != c.want {
				t.Errorf("logged %q, want %q", got, c.want)
			}
		})
	}
}
