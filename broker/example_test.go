package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/delen-edge/delen/broker"
)

// An embedded broker on a free port, a client that subscribes with manual
// acknowledgement, and a QoS 1 publish.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)

	b, err := broker.NewEmbedded(broker.EmbeddedConfig{Addr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		panic(err)
	}
	if err := b.Start(ctx); err != nil {
		panic(err)
	}
	defer b.Close()

	c, err := broker.Dial(ctx, broker.ClientConfig{URL: b.Addr(), ClientID: "example", CleanSession: true, Logger: quiet})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	got := make(chan string, 1)
	err = c.Subscribe("delen/+/requests", 1, func(m broker.Message) {
		got <- fmt.Sprintf("%s: %s", m.Topic(), m.Payload())
		m.Ack() // the agent acks only after it published the result
	})
	if err != nil {
		panic(err)
	}
	if err := c.Publish(ctx, "delen/cam1/requests", 1, false, []byte("hello")); err != nil {
		panic(err)
	}
	select {
	case s := <-got:
		fmt.Println(s)
	case <-ctx.Done():
		fmt.Println("no message")
	}
	// Output: delen/cam1/requests: hello
}
