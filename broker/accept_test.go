package broker

import (
	"fmt"
	"net"
	"syscall"
	"testing"
)

// failingListener fails its first Accepts with err, then accepts.
type failingListener struct {
	net.Listener
	fails int
	err   error
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: l.err}
	}
	return l.Listener.Accept()
}

// A listener out of descriptors keeps accepting once they are back; an
// error that is not a shortage ends it, as before.
func TestRetryListener(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool // the connection is accepted
	}{
		{fmt.Errorf("accept4: %w", syscall.EMFILE), true},
		{syscall.ENFILE, true},
		{syscall.ECONNABORTED, true},
		{net.ErrClosed, false},
		{syscall.EINVAL, false},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l := retryListener{Listener: &failingListener{Listener: ln, fails: 3, err: tc.err}, log: quiet}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		got, err := l.Accept()
		if tc.want && err != nil {
			t.Errorf("after %v: %v; want the connection", tc.err, err)
		}
		if !tc.want && err == nil {
			t.Errorf("after %v: accepted; want the error", tc.err)
		}
		if got != nil {
			got.Close()
		}
		c.Close()
		ln.Close()
	}
}
