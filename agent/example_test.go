package agent_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/schema"
)

// Embed the agent with an embedded broker, and serve one request from a
// tenant client: what `delen serve` and `delen send` do.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, _ := os.MkdirTemp("", "delen-example-")
	defer os.RemoveAll(dir)

	emb, err := broker.NewEmbedded(broker.EmbeddedConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	if err := emb.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer emb.Close()
	st, err := store.Open(filepath.Join(dir, "store"), store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	a, err := agent.New(ctx, agent.Config{
		// The agent attaches to the broker it embeds, in-process;
		// tenants connect over TCP.
		BrokerURL: emb.Addr(), Embedded: emb, Store: st, AgentID: "example"})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	if err := a.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}

	// A tenant: subscribe to its results, publish a request.
	c, err := broker.Dial(ctx, broker.ClientConfig{URL: emb.Addr(), ClientID: "cam1-example", CleanSession: true})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	var topics schema.Topics
	results := make(chan *schema.Result, 1)
	c.Subscribe(topics.Results("cam1"), 1, func(m broker.Message) {
		m.Ack()
		if r, _, err := schema.DecodeResult(m.Payload(), 1<<20); err == nil {
			results <- r
		}
	})
	set, _ := mnist.Test()
	exit := 1
	req := &schema.Request{ID: "frame-1", Input: schema.NewUint8Tensor([]int{1, 28, 28}, set.Images[0]), Bound: schema.Bound{Exit: &exit}}
	payload, _ := schema.EncodeRequest(req, schema.MsgPack)
	if err := c.Publish(ctx, topics.Requests("cam1"), 1, false, payload); err != nil {
		log.Fatal(err)
	}
	select {
	case r := <-results:
		fmt.Printf("%s: %s, exit %d of %d, class %d\n", r.ID, r.Status, r.Exit, r.Exits, *r.Class)
	case <-time.After(10 * time.Second):
		fmt.Println("no result")
	}
	cancel()
	<-done
	// Output: frame-1: ok, exit 1 of 3, class 7
}
