package broker

import (
	"errors"
	"log/slog"
	"net"
	"syscall"
	"time"
)

// retryListener keeps accepting through the errors a busy box recovers
// from (out of file descriptors or buffers, a connection reset before it
// was accepted): mochi's listeners stop serving for good at the first
// Accept error, so one burst of connections past the descriptor limit
// would leave the broker deaf until a restart. It waits between attempts
// (5 ms, doubling to 1 s) and logs each run of failures once.
type retryListener struct {
	net.Listener
	log *slog.Logger
}

// transient reports an Accept error worth retrying.
func transient(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (l retryListener) Accept() (net.Conn, error) {
	wait := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err == nil || !transient(err) {
			return c, err
		}
		if wait == 5*time.Millisecond {
			l.log.Warn("broker: accepting a connection failed; retrying", "addr", l.Addr().String(), "error", err)
		}
		time.Sleep(wait) // back-off, as net/http's Serve does
		wait = min(2*wait, time.Second)
	}
}
