// Package slogx holds log/slog helpers shared by the agent and the broker.
package slogx

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultEvery is the interval within which Collapse prints a repeated
// warning once.
const DefaultEvery = 10 * time.Second

// maxKeys bounds the distinct messages tracked; past it, further new
// messages are logged as they come.
const maxKeys = 1024

// Collapse returns a logger whose warnings and errors do not flood: the
// first record of a message (same level and text, whatever its attributes)
// is logged at once; its repeats within every are counted, and when every
// has passed one line is logged, the last repeat with repeated=N and
// within=every added. Records below Warn pass untouched. A logger that
// Collapse made already is returned as it is, so its count is shared.
func Collapse(l *slog.Logger, every time.Duration) *slog.Logger {
	if l == nil {
		return nil
	}
	if _, ok := l.Handler().(*handler); ok {
		return l
	}
	if every <= 0 {
		every = DefaultEvery
	}
	return slog.New(&handler{inner: l.Handler(), st: &state{every: every, seen: map[key]*entry{}}})
}

type key struct {
	level slog.Level
	msg   string
}

type entry struct {
	n    int          // repeats since the last line
	last slog.Record  // the latest repeat
	h    slog.Handler // the handler (with its attributes) it came through
}

type state struct {
	every time.Duration
	mu    sync.Mutex
	seen  map[key]*entry
}

type handler struct {
	inner slog.Handler
	st    *state
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{inner: h.inner.WithAttrs(as), st: h.st}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{inner: h.inner.WithGroup(name), st: h.st}
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.inner.Handle(ctx, r)
	}
	st := h.st
	k := key{r.Level, r.Message}
	st.mu.Lock()
	if e := st.seen[k]; e != nil {
		e.n++
		e.last, e.h = r.Clone(), h.inner
		st.mu.Unlock()
		return nil
	}
	if len(st.seen) < maxKeys {
		st.seen[k] = &entry{}
		time.AfterFunc(st.every, func() { st.flush(k) })
	}
	st.mu.Unlock()
	return h.inner.Handle(ctx, r)
}

// flush logs the repeats of k counted in the interval that just ended, and
// keeps counting for one more interval; an interval without repeats ends
// the tracking, so the next record is logged at once again.
func (st *state) flush(k key) {
	st.mu.Lock()
	e := st.seen[k]
	if e.n == 0 {
		delete(st.seen, k)
		st.mu.Unlock()
		return
	}
	n, last, h := e.n, e.last, e.h
	e.n, e.last, e.h = 0, slog.Record{}, nil
	time.AfterFunc(st.every, func() { st.flush(k) })
	st.mu.Unlock()
	last.AddAttrs(slog.Int("repeated", n), slog.Duration("within", st.every))
	_ = h.Handle(context.Background(), last)
}
