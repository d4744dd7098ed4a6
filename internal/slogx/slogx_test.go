package slogx

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the flush timer's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

func TestCollapse(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  func(l *slog.Logger)
		// want: the lines logged before the interval ends, then after it.
		before, after []string
	}{
		{"one warning", func(l *slog.Logger) { l.Warn("w", "k", 1) },
			[]string{"level=WARN msg=w k=1"}, []string{"level=WARN msg=w k=1"}},
		{"repeats", func(l *slog.Logger) {
			for i := 0; i < 1000; i++ {
				l.Warn("dropped", "topic", i)
			}
		}, []string{"level=WARN msg=dropped topic=0"},
			[]string{"level=WARN msg=dropped topic=0", "level=WARN msg=dropped topic=999 repeated=999 within=50ms"}},
		{"info untouched", func(l *slog.Logger) {
			l.Info("i")
			l.Info("i")
		}, []string{"level=INFO msg=i", "level=INFO msg=i"}, []string{"level=INFO msg=i", "level=INFO msg=i"}},
		{"distinct messages and levels", func(l *slog.Logger) {
			l.Warn("a")
			l.Error("a")
			l.Warn("b")
			l.Warn("a")
		}, []string{"level=WARN msg=a", "level=ERROR msg=a", "level=WARN msg=b"},
			[]string{"level=WARN msg=a", "level=ERROR msg=a", "level=WARN msg=b", "level=WARN msg=a repeated=1 within=50ms"}},
		{"shared through With", func(l *slog.Logger) {
			l.With("c", 1).Warn("x")
			l.With("c", 2).Warn("x")
		}, []string{"level=WARN msg=x c=1"}, []string{"level=WARN msg=x c=1", "level=WARN msg=x c=2 repeated=1 within=50ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := &syncBuffer{}
			every := 50 * time.Millisecond
			l := Collapse(slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				}})), every)
			if Collapse(l, time.Hour) != l {
				t.Fatal("Collapse of a collapsed logger wrapped it again")
			}
			tc.log(l)
			if got := buf.lines(); !equal(got, tc.before) {
				t.Fatalf("before the interval:\n%q\nwant\n%q", got, tc.before)
			}
			// The summary comes when the interval ends: poll for it (a
			// deadline far past the interval, not a sleep that syncs).
			deadline := time.Now().Add(10 * time.Second)
			for !equal(buf.lines(), tc.after) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := buf.lines(); !equal(got, tc.after) {
				t.Fatalf("after the interval:\n%q\nwant\n%q", got, tc.after)
			}
		})
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
