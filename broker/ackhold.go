package broker

import (
	"net"
	"sync"
)

// ackHoldListener gives each accepted connection an ackHoldConn; without
// a log it passes them on as they are.
type ackHoldListener struct {
	net.Listener
	log *inflightLog // nil: no persistence, nothing to wait for
}

func (l ackHoldListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || l.log == nil {
		return c, err
	}
	return &ackHoldConn{Conn: c, log: l.log}, nil
}

// ackHoldConn is a client's connection to the embedded broker on which
// the broker's acknowledgements of the client's publishes (PUBACK,
// PUBREC) wait until the messages they acknowledge are stored: a client
// that has its PUBACK finds its message after a kill -9.
//
// mochi writes a PUBACK before it routes the message, and the in-flight
// log stores the message for the sessions it is routed to during that
// routing, on the same goroutine, the connection's reader. So the
// connection holds every acknowledgement it is given to write, and writes
// them when the reader comes back for more input (Read): by then the
// messages it read before are routed, and the log is flushed first. The
// reader reads again as soon as it has handled what it had read, so an
// acknowledgement waits a routing's time; under load, the records of all
// the publishes read in one go are one write to the log and their
// acknowledgements one write to the client, where each was a write of its
// own. Other packets (results, PINGRESP, …) pass through at once.
//
// mochi writes whole packets (it encodes each into a buffer, and gathers
// several in one buffer when the connection's writes back up), so the
// acknowledgements are found by walking each write's packet headers.
type ackHoldConn struct {
	net.Conn
	log *inflightLog

	mu   sync.Mutex
	held []byte // acknowledgements waiting for the next Read
	out  []byte // the reader's buffer for writing them (only Read uses it)
}

// isAck reports a PUBACK or PUBREC: the packets that tell the client the
// broker took its message.
func isAck(b byte) bool { t := b >> 4; return t == 4 || t == 5 }

// splitPackets calls f with each whole packet of p; false if p does not
// parse as whole packets.
func splitPackets(p []byte, f func(pk []byte)) bool {
	for len(p) > 0 {
		n, mul, i := 0, 1, 1
		for ; ; i++ {
			if i >= len(p) || i > 4 {
				return false
			}
			n += int(p[i]&0x7f) * mul
			mul <<= 7
			if p[i]&0x80 == 0 {
				break
			}
		}
		end := i + 1 + n
		if end > len(p) {
			return false
		}
		f(p[:end])
		p = p[end:]
	}
	return true
}

func (c *ackHoldConn) Write(p []byte) (int, error) {
	acks, others := 0, 0
	whole := splitPackets(p, func(pk []byte) {
		if isAck(pk[0]) {
			acks++
		} else {
			others++
		}
	})
	switch {
	case !whole:
		// Not whole packets (never from mochi): nothing is held, and
		// what is held goes first, after the log.
		return c.writeThrough(p)
	case acks == 0:
		return c.Conn.Write(p)
	}
	var rest []byte
	if others > 0 {
		rest = make([]byte, 0, len(p))
	}
	c.mu.Lock()
	splitPackets(p, func(pk []byte) {
		if isAck(pk[0]) {
			c.held = append(c.held, pk...)
		} else {
			rest = append(rest, pk...)
		}
	})
	c.mu.Unlock()
	if len(rest) > 0 {
		if _, err := c.Conn.Write(rest); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// writeThrough flushes the log, then writes what is held and p.
func (c *ackHoldConn) writeThrough(p []byte) (int, error) {
	c.mu.Lock()
	buf := append(c.held[:len(c.held):len(c.held)], p...)
	c.held = c.held[:0]
	c.mu.Unlock()
	c.log.flushLogged()
	if _, err := c.Conn.Write(buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Read writes the acknowledgements held, after the log, then reads.
func (c *ackHoldConn) Read(p []byte) (int, error) {
	if err := c.release(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// release flushes the in-flight log and writes the acknowledgements held;
// only the reader calls it. A log that cannot be written does not hold
// them back: its error is logged, and those messages are kept in memory
// only, as when an append fails.
func (c *ackHoldConn) release() error {
	c.mu.Lock()
	if len(c.held) == 0 {
		c.mu.Unlock()
		return nil
	}
	c.out, c.held = c.held, c.out[:0]
	c.mu.Unlock()
	c.log.flushLogged()
	_, err := c.Conn.Write(c.out)
	return err
}
