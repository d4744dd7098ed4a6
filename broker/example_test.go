package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
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

// A service in the broker's own process: attached to its session, it gets
// what tenants publish over MQTT and answers them without MQTT packets of
// its own.
func ExampleEmbedded_Attach() {
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

	// The service: it echoes each request to the tenant's results topic,
	// then acknowledges it.
	var svc *broker.Local
	ready := make(chan struct{})
	svc, err = b.Attach(broker.LocalConfig{ClientID: "echo-service", Logger: quiet,
		Subscriptions: []broker.Subscription{{Filter: "delen/+/requests", QoS: 1, Handler: func(m broker.Message) {
			<-ready
			tenant := strings.Split(m.Topic(), "/")[1]
			if err := svc.Publish(ctx, "delen/"+tenant+"/results", 1, false, m.Payload()); err == nil {
				m.Ack()
			}
		}}}})
	if err != nil {
		panic(err)
	}
	close(ready)
	defer svc.Close()

	// A tenant, over TCP.
	c, err := broker.Dial(ctx, broker.ClientConfig{URL: b.Addr(), ClientID: "cam1", CleanSession: true, Logger: quiet})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	got := make(chan string, 1)
	if err := c.Subscribe("delen/cam1/results", 1, func(m broker.Message) { got <- string(m.Payload()); m.Ack() }); err != nil {
		panic(err)
	}
	if err := c.Publish(ctx, "delen/cam1/requests", 1, false, []byte("frame 1")); err != nil {
		panic(err)
	}
	select {
	case s := <-got:
		fmt.Println("result:", s)
	case <-ctx.Done():
		fmt.Println("no result")
	}
	// Output: result: frame 1
}
