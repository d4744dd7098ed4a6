package broker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// onDisk counts the messages an in-flight log's files hold, read as a
// broker starting after a kill -9 would find them (without changing them).
func onDisk(t *testing.T, dir string) int {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		r := bytes.NewReader(b)
		var rec []byte
		for {
			rec, err = readRecord(r, rec[:0], int64(r.Len()))
			if err != nil {
				break
			}
			kind, key, _, _ := splitRecord(rec)
			live[key] = kind == recPut
		}
	}
	n := 0
	for _, put := range live {
		if put {
			n++
		}
	}
	return n
}

// Records gathered in memory are in the file only once flushed; a flush
// that fails drops them as a failed append would.
func TestInflightLogGathers(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 1<<20)
	l.delay = time.Hour // no timer flush in this test
	for id := range uint16(3) {
		if err := l.put(frame("agent", id+1, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if n := onDisk(t, dir); n != 0 {
		t.Fatalf("%d records on disk before a flush", n)
	}
	if err := l.flush(); err != nil {
		t.Fatal(err)
	}
	if n := onDisk(t, dir); n != 3 {
		t.Fatalf("%d records on disk after a flush; want 3", n)
	}
	if err := l.del(inflightKey("agent", 2)); err != nil {
		t.Fatal(err)
	}
	if err := l.put(frame("agent", 4, 100)); err != nil {
		t.Fatal(err)
	}
	if ids := liveIDs(t, l, 100); fmt.Sprint(ids) != "[1 3 4]" { // messages flushes first
		t.Fatalf("live %v; want [1 3 4]", ids)
	}
	if n := onDisk(t, dir); n != 3 {
		t.Fatalf("%d records on disk; want 3", n)
	}

	// A record larger than what is gathered goes at once, after the rest.
	if err := l.put(frame("agent", 5, 100)); err != nil {
		t.Fatal(err)
	}
	if err := l.put(frame("agent", 6, maxPend+1)); err != nil {
		t.Fatal(err)
	}
	if n := onDisk(t, dir); n != 5 {
		t.Fatalf("%d records on disk after a large one; want 5", n)
	}

	// The file gone bad: the flush fails and its record is not kept.
	if err := l.put(frame("agent", 7, 100)); err != nil {
		t.Fatal(err)
	}
	l.active().f.Close()
	if err := l.flush(); err == nil {
		t.Fatal("a flush to a closed file succeeded")
	}
	l.mu.Lock()
	_, kept := l.live[inflightKey("agent", 7)]
	l.mu.Unlock()
	if kept {
		t.Fatal("a record whose write failed is still counted as stored")
	}
}

// The timer writes what no acknowledgement asks for.
func TestInflightLogFlushesAfterDelay(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 1<<20)
	l.delay = time.Millisecond
	if err := l.put(frame("agent", 1, 100)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for onDisk(t, dir) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the record was not written within 10 s of a 1 ms delay")
		}
		time.Sleep(time.Millisecond)
	}
}

// tcpPair is a loopback TCP connection: the broker's end wrapped, the
// client's end plain.
func tcpPair(t *testing.T, l *inflightLog) (*ackHoldConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ackHoldListener{Listener: ln, log: l}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close(); srv.Close() })
	return srv.(*ackHoldConn), cli
}

// readN reads exactly n bytes from c.
func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// An acknowledgement written to the connection waits for the reader's
// next Read, and goes after the log is flushed; other packets go at once.
func TestAckHoldConn(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 1<<20)
	l.delay = time.Hour
	srv, cli := tcpPair(t, l)

	publish := []byte{0x30, 0x05, 0x00, 0x01, 'a', 'x', 'y'} // QoS 0 PUBLISH to "a"
	puback := []byte{0x40, 0x02, 0x00, 0x07}
	pubrec := []byte{0x50, 0x02, 0x00, 0x08}

	// The broker stores a message, then acknowledges it, then writes a
	// result: the result reaches the client first.
	if err := l.put(frame("agent", 1, 10)); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.Write(puback); err != nil || n != len(puback) {
		t.Fatalf("write PUBACK: %d, %v", n, err)
	}
	mixed := append(append(append([]byte{}, publish...), pubrec...), publish...)
	if n, err := srv.Write(mixed); err != nil || n != len(mixed) {
		t.Fatalf("write PUBLISH, PUBREC, PUBLISH: %d, %v", n, err)
	}
	if got := readN(t, cli, 2*len(publish)); !bytes.Equal(got, append(append([]byte{}, publish...), publish...)) {
		t.Fatalf("the client read % x first; want the two PUBLISHes", got)
	}
	if n := onDisk(t, dir); n != 0 {
		t.Fatalf("%d records on disk before the reader came back", n)
	}

	// The reader comes back for input: the log is written, then the
	// acknowledgements, in one write.
	read := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := srv.Read(b[:])
		read <- err
	}()
	if got := readN(t, cli, len(puback)+len(pubrec)); !bytes.Equal(got, append(append([]byte{}, puback...), pubrec...)) {
		t.Fatalf("after the broker's Read the client read % x; want the PUBACK and the PUBREC", got)
	}
	if n := onDisk(t, dir); n != 1 {
		t.Fatalf("the client has its PUBACK and %d records are on disk; want 1", n)
	}
	cli.Write([]byte{0xc0, 0x00}) // PINGREQ: lets the Read return
	if err := <-read; err != nil {
		t.Fatal(err)
	}

	// Bytes that are not whole packets pass through, after what is held.
	srv.Write(puback)
	odd := []byte{0x30, 0x7f, 0x01}
	if _, err := srv.Write(odd); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, cli, len(puback)+len(odd)); !bytes.Equal(got, append(append([]byte{}, puback...), odd...)) {
		t.Fatalf("client read % x; want the held PUBACK, then the odd bytes", got)
	}
}

// A client that has its PUBACK finds its message stored: publish by
// publish, the message routed to a persistent session is on disk when
// the publisher's Publish returns.
func TestPubackMeansStored(t *testing.T) {
	dir := t.TempDir()
	e, err := NewEmbedded(EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// A session that takes nothing: what it is sent stays in flight.
	l, err := e.Attach(LocalConfig{ClientID: "agent", Logger: quiet,
		Subscriptions: []Subscription{{Filter: "delen/+/requests", QoS: 1, Handler: func(Message) {}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := Dial(ctx, ClientConfig{URL: e.Addr(), ClientID: "tenant", CleanSession: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	logDir := filepath.Join(dir, inflightDir)
	for i := range 20 {
		if err := c.Publish(ctx, "delen/t1/requests", 1, false, []byte(fmt.Sprint("request ", i))); err != nil {
			t.Fatal(err)
		}
		if n := onDisk(t, logDir); n != i+1 {
			t.Fatalf("after %d PUBACKs %d requests are on disk", i+1, n)
		}
	}
}

// splitPackets never panics, and the packets it finds are the input, in
// order, each a whole packet (its length as its header says).
func FuzzSplitPackets(f *testing.F) {
	f.Add([]byte{0x40, 0x02, 0x00, 0x07})
	f.Add([]byte{0x30, 0x05, 0x00, 0x01, 'a', 'x', 'y', 0x50, 0x02, 0x00, 0x08})
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, p []byte) {
		var got []byte
		ok := splitPackets(p, func(pk []byte) {
			if len(pk) < 2 {
				t.Fatalf("packet % x shorter than a header", pk)
			}
			got = append(got, pk...)
		})
		if ok && !bytes.Equal(got, p) {
			t.Fatalf("packets % x are not the input % x", got, p)
		}
	})
}
