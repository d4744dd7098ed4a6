package broker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// syncBuffer is a bytes.Buffer safe for the broker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDroppedMessageLogged: a subscriber that stops reading makes mochi
// drop messages once its pending writes are full; the operator sees a
// warning (mochi's own line is at debug level).
func TestDroppedMessageLogged(t *testing.T) {
	var logs syncBuffer
	e, err := NewEmbedded(EmbeddedConfig{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	// A subscriber spoken to by hand, in-process, that never reads after
	// its SUBACK.
	conn, err := e.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion, cp.CleanSession, cp.ClientIdentifier, cp.Keepalive = "MQTT", 4, true, "stalled", 60
	if err := cp.Write(conn); err != nil {
		t.Fatal(err)
	}
	if p, err := packets.ReadPacket(conn); err != nil {
		t.Fatalf("CONNACK: %v", err)
	} else if ack, ok := p.(*packets.ConnackPacket); !ok || ack.ReturnCode != 0 {
		t.Fatalf("CONNACK: %v", p)
	}
	sp := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
	sp.MessageID, sp.Topics, sp.Qoss = 1, []string{"flood/#"}, []byte{0}
	if err := sp.Write(conn); err != nil {
		t.Fatal(err)
	}
	if p, err := packets.ReadPacket(conn); err != nil {
		t.Fatalf("SUBACK: %v", err)
	} else if _, ok := p.(*packets.SubackPacket); !ok {
		t.Fatalf("SUBACK: %v", p)
	}

	pub, err := e.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	cp.ClientIdentifier = "flooder"
	if err := cp.Write(pub); err != nil {
		t.Fatal(err)
	}
	if _, err := packets.ReadPacket(pub); err != nil {
		t.Fatalf("flooder CONNACK: %v", err)
	}
	// The pipe holds memBufSize bytes, mochi 8,192 pending writes; 1 KiB
	// messages past both.
	payload := make([]byte, 1<<10)
	n := memBufSize/len(payload) + 8192 + 1000
	for i := range n {
		pp := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		pp.TopicName, pp.Payload = fmt.Sprintf("flood/%d", i%8), payload
		if err := pp.Write(pub); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	// The flooder's own PINGRESP comes after mochi has routed every
	// publish before it.
	if err := packets.NewControlPacket(packets.Pingreq).Write(pub); err != nil {
		t.Fatal(err)
	}
	if p, err := packets.ReadPacket(pub); err != nil {
		t.Fatalf("PINGRESP: %v", err)
	} else if _, ok := p.(*packets.PingrespPacket); !ok {
		t.Fatalf("want PINGRESP, got %v", p)
	}
	if got := logs.String(); !strings.Contains(got, "message to a client dropped") || !strings.Contains(got, "client=stalled") {
		t.Fatalf("no warning for the messages dropped to the stalled client; logs:\n%.2000s", got)
	}
}
