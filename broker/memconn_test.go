package broker

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// TestMemConnConformance runs the standard library's net.Conn conformance
// suite (basic I/O, ping-pong, concurrent use, past, present and future
// deadlines, Close unblocking calls) on the in-process connection.
func TestMemConnConformance(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		c1, c2 = memPipe()
		return c1, c2, func() { c1.Close(); c2.Close() }, nil
	})
}

// TestMemConnHalfClose is what the client's graceful close relies on: after
// CloseWrite the other end reads everything sent, then io.EOF, and can
// still answer; after Close the other end's writes fail.
func TestMemConnHalfClose(t *testing.T) {
	a, b := memPipe()
	big := make([]byte, 3*memBufSize+17) // more than one buffer's worth
	for i := range big {
		big[i] = byte(i * 7)
	}
	go func() {
		a.Write(big)
		a.(*memConn).CloseWrite()
	}()
	got, err := io.ReadAll(b)
	if err != nil || len(got) != len(big) {
		t.Fatalf("read %d bytes, %v; want %d and EOF", len(got), err, len(big))
	}
	for i := range got {
		if got[i] != big[i] {
			t.Fatalf("byte %d: got %d, want %d", i, got[i], big[i])
		}
	}
	if _, err := b.Write([]byte("bye")); err != nil {
		t.Fatalf("write after the other side's CloseWrite: %v", err)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "bye" {
		t.Fatalf("read after CloseWrite: %q, %v", buf, err)
	}
	b.Close()
	if _, err := a.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("write to a closed end: %v, want io.ErrClosedPipe", err)
	}
}

// TestMemConnDeadlineMovedEarlier: a Read blocked under a far deadline
// returns when the deadline is moved into the past (how connections are
// aborted).
func TestMemConnDeadlineMovedEarlier(t *testing.T) {
	a, _ := memPipe()
	a.SetReadDeadline(time.Now().Add(time.Hour))
	done := make(chan error, 1)
	go func() {
		_, err := a.Read(make([]byte, 1))
		done <- err
	}()
	a.SetReadDeadline(time.Unix(1, 0))
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: %v, want a deadline error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("read still blocked after its deadline moved into the past")
	}
}

func TestMemListener(t *testing.T) {
	l := newMemListener()
	go func() {
		c, err := l.Accept()
		if err == nil {
			io.Copy(c, c) // echo
			c.Close()
		}
	}()
	c, err := l.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	c.Close()
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	if _, err := l.Dial(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Dial after Close: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newMemListener().Dial(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial with a cancelled context and nobody accepting: %v", err)
	}
}
