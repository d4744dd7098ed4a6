package broker

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// memBufSize bounds the bytes in flight in one direction of an in-process
// connection: a writer that finds it full waits for the reader, as on a
// socket whose buffer is full. 4 MiB is the largest send buffer Linux
// gives a TCP socket by default (tcp_wmem): mochi drops a message to a
// client whose writes back up beyond 8,192 pending, so the pipe should
// hold about what the socket it replaces did.
const memBufSize = 4 << 20

// memAddr is the address of both ends of an in-process connection.
type memAddr struct{}

func (memAddr) Network() string { return "inproc" }
func (memAddr) String() string  { return "inproc" }

// memDir is one direction of an in-process connection: bytes written by
// one end and not yet read by the other.
type memDir struct {
	mu     sync.Mutex
	buf    []byte
	off    int  // buf[off:] is unread
	eof    bool // the writing end closed (or shut down) its side
	broken bool // the reading end closed: writes fail

	readable chan struct{} // a token when data, eof or broken arrive
	writable chan struct{} // a token when room frees or broken arrives
}

func newMemDir() *memDir {
	return &memDir{readable: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// memConn is one end of an in-process, full-duplex, buffered connection:
// what net.Conn promises (deadlines, concurrent use, Close unblocking
// pending calls) without a socket, so the agent and its embedded broker
// exchange MQTT packets without system calls.
type memConn struct {
	in, out *memDir // in: read from; out: written to
	// wmu makes each Write whole, as a socket's does: a Write that waits
	// for room must not let another one's bytes in between.
	wmu sync.Mutex

	readDL, writeDL atomic.Int64 // deadlines, Unix nanoseconds; 0: none
	// moved is closed (and replaced) when a deadline moves earlier, to
	// wake the calls waiting under the later one. A deadline moved later
	// wakes nobody: a call woken by its old deadline looks again.
	mu        sync.Mutex
	moved     chan struct{}
	closeOnce sync.Once
	closed    chan struct{}
}

// memPipe returns the two ends of a new in-process connection.
func memPipe() (net.Conn, net.Conn) {
	ab, ba := newMemDir(), newMemDir()
	a := &memConn{in: ba, out: ab, moved: make(chan struct{}), closed: make(chan struct{})}
	b := &memConn{in: ab, out: ba, moved: make(chan struct{}), closed: make(chan struct{})}
	return a, b
}

func (c *memConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// wait blocks until ready has a token, the deadline dl may have passed,
// a deadline was moved earlier, or the connection was closed; the caller
// then looks again.
func (c *memConn) wait(ready chan struct{}, dl *atomic.Int64) {
	c.mu.Lock()
	moved := c.moved
	c.mu.Unlock()
	var timeout <-chan time.Time
	if d := dl.Load(); d != 0 {
		left := time.Until(time.Unix(0, d))
		if left <= 0 {
			return
		}
		t := time.NewTimer(left)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ready:
	case <-c.closed:
	case <-timeout:
	case <-moved:
	}
}

// Read reads what the other end has written, waiting for some if there is
// none; io.EOF once the other end has closed and everything is read.
func (c *memConn) Read(p []byte) (int, error) {
	d := c.in
	for {
		if c.isClosed() {
			return 0, &net.OpError{Op: "read", Net: "inproc", Err: net.ErrClosed}
		}
		if dl := c.readDL.Load(); dl != 0 && time.Now().UnixNano() >= dl {
			return 0, &net.OpError{Op: "read", Net: "inproc", Err: os.ErrDeadlineExceeded}
		}
		d.mu.Lock()
		if n := len(d.buf) - d.off; n > 0 {
			n = copy(p, d.buf[d.off:])
			d.off += n
			if d.off == len(d.buf) {
				d.buf, d.off = d.buf[:0], 0
			}
			d.mu.Unlock()
			signal(d.writable)
			return n, nil
		}
		if d.eof {
			d.mu.Unlock()
			return 0, io.EOF
		}
		d.mu.Unlock()
		if len(p) == 0 {
			return 0, nil
		}
		c.wait(d.readable, &c.readDL)
	}
}

// Write writes all of p, waiting while the other end's buffer is full.
func (c *memConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	d := c.out
	written := 0
	for {
		if c.isClosed() {
			return written, &net.OpError{Op: "write", Net: "inproc", Err: net.ErrClosed}
		}
		if dl := c.writeDL.Load(); dl != 0 && time.Now().UnixNano() >= dl {
			return written, &net.OpError{Op: "write", Net: "inproc", Err: os.ErrDeadlineExceeded}
		}
		d.mu.Lock()
		if d.broken || d.eof {
			d.mu.Unlock()
			return written, &net.OpError{Op: "write", Net: "inproc", Err: io.ErrClosedPipe}
		}
		if d.off > 0 && len(d.buf)+len(p)-written > cap(d.buf) {
			// Move the unread bytes to the front before growing.
			d.buf = d.buf[:copy(d.buf, d.buf[d.off:])]
			d.off = 0
		}
		if room := memBufSize - (len(d.buf) - d.off); room > 0 {
			n := min(room, len(p)-written)
			d.buf = append(d.buf, p[written:written+n]...)
			written += n
		}
		d.mu.Unlock()
		signal(d.readable)
		if written == len(p) {
			return written, nil
		}
		c.wait(d.writable, &c.writeDL)
	}
}

// CloseWrite shuts down the sending side: the other end reads io.EOF once
// it has read what was sent. Reading goes on.
func (c *memConn) CloseWrite() error {
	d := c.out
	d.mu.Lock()
	d.eof = true
	d.mu.Unlock()
	signal(d.readable)
	return nil
}

// Close closes both directions and unblocks this end's pending calls; the
// other end reads what was sent, then io.EOF, and its writes fail.
func (c *memConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.CloseWrite()
		d := c.in
		d.mu.Lock()
		d.broken, d.buf, d.off = true, nil, 0
		d.mu.Unlock()
		signal(d.writable)
	})
	return nil
}

func (c *memConn) LocalAddr() net.Addr  { return memAddr{} }
func (c *memConn) RemoteAddr() net.Addr { return memAddr{} }

func (c *memConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *memConn) SetReadDeadline(t time.Time) error  { return c.setDeadline(&c.readDL, t) }
func (c *memConn) SetWriteDeadline(t time.Time) error { return c.setDeadline(&c.writeDL, t) }

func (c *memConn) setDeadline(dl *atomic.Int64, t time.Time) error {
	if c.isClosed() {
		return &net.OpError{Op: "set deadline", Net: "inproc", Err: net.ErrClosed}
	}
	var v int64
	if !t.IsZero() {
		v = max(t.UnixNano(), 1)
	}
	if old := dl.Swap(v); v != 0 && (old == 0 || v < old) {
		c.mu.Lock()
		close(c.moved)
		c.moved = make(chan struct{})
		c.mu.Unlock()
	}
	return nil
}

// memListener accepts the in-process connections its Dial opens.
type memListener struct {
	conns     chan net.Conn
	closeOnce sync.Once
	done      chan struct{}
}

func newMemListener() *memListener {
	return &memListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept waits for the next Dial.
func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "inproc", Err: net.ErrClosed}
	}
}

// Dial opens a connection to the listener; it waits for Accept.
func (l *memListener) Dial(ctx context.Context) (net.Conn, error) {
	client, server := memPipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, &net.OpError{Op: "dial", Net: "inproc", Err: net.ErrClosed}
	case <-ctx.Done():
		return nil, &net.OpError{Op: "dial", Net: "inproc", Err: ctx.Err()}
	}
}

// Close stops Accept and Dial; connections already open stay open.
func (l *memListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *memListener) Addr() net.Addr { return memAddr{} }
