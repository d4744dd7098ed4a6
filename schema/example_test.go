package schema_test

import (
	"errors"
	"fmt"

	"github.com/delen-edge/delen/schema"
)

// A client (camera, sensor, simulator) builds a request and publishes it on
// its tenant's requests topic.
func Example_client() {
	pixels := make([]float32, 28*28) // one MNIST image, already normalised
	req := &schema.Request{
		ID:     "cam1-000001",
		Model:  "mnist-ee",
		Input:  schema.NewFloat32Tensor([]int{1, 1, 28, 28}, pixels),
		Bound:  schema.Bound{LatencyMS: new(20.0), Accuracy: new(0.95)},
		SentAt: 1732550000000000,
		Meta:   map[string]any{"frame": 1},
	}
	if err := req.Validate("cam1"); err != nil { // what the agent will check
		panic(err)
	}
	payload, err := schema.EncodeRequest(req, schema.MsgPack)
	if err != nil {
		panic(err)
	}
	var topics schema.Topics // prefix "delen"
	fmt.Println("publish", len(payload), "bytes to", topics.Requests("cam1"))
	fmt.Println("subscribe to", topics.Results("cam1"))
	// Output:
	// publish 3282 bytes to delen/cam1/requests
	// subscribe to delen/cam1/results
}

// A client decodes the result it receives.
func ExampleDecodeResult() {
	payload := []byte(`{"v":1,"id":"cam1-000001","tenant":"cam1","model":"mnist-ee","status":"ok",
		"exit":2,"exits":3,"class":7,"confidence":0.981,"top":[[7,0.981],[1,0.012]],
		"latency_ms":4.2,"queue_ms":0.3,"compute_ms":3.6,"energy_mj":9.5,"energy_source":"model",
		"accuracy_est":0.975,"bound_met":true}`)
	res, _, err := schema.DecodeResult(payload, 0)
	if err != nil {
		panic(err)
	}
	switch res.Status {
	case schema.StatusOK, schema.StatusLate:
		fmt.Printf("%s: class %d (p=%.3f) at exit %d of %d in %.1f ms, bound met: %v\n",
			res.ID, *res.Class, res.Confidence, res.Exit, res.Exits, res.LatencyMS, *res.BoundMet)
		for _, t := range res.Top {
			fmt.Printf("  %d: %.3f\n", t.Class, t.Prob)
		}
	case schema.StatusError:
		fmt.Println("error:", res.Error.Code, res.Error.Message)
	}
	// Output:
	// cam1-000001: class 7 (p=0.981) at exit 2 of 3 in 4.2 ms, bound met: true
	//   7: 0.981
	//   1: 0.012
}

// The agent decodes and validates a request and answers a bad one, in the
// request's encoding and with its id.
func ExampleDecodeRequest() {
	payload := []byte(`{"id":"flow-7","input":{"dtype":"uint8","shape":[2],"values":[1,300]}}`)
	req, enc, err := schema.DecodeRequest(payload, 1<<20)
	if err == nil {
		err = req.Validate("nodered")
	}
	var e *schema.Error
	if errors.As(err, &e) {
		out, _ := schema.EncodeResult(schema.NewErrorResult("nodered", req, err), enc)
		fmt.Println(string(out))
	}
	// Output:
	// {"v":1,"id":"flow-7","tenant":"nodered","status":"error","error":{"code":"bad_request","message":"input.values[1]: 300 is not an integer in 0..255"},"latency_ms":0,"queue_ms":0,"compute_ms":0,"energy_mj":0}
}

func ExampleTopics_Parse() {
	topics := schema.Topics{Prefix: "delen"}
	tenant, kind, err := topics.Parse("delen/cam1/requests")
	fmt.Println(tenant, kind, err)
	_, _, err = topics.Parse("delen/Cam1/requests")
	fmt.Println(err)
	// Output:
	// cam1 requests <nil>
	// bad_request: topic "delen/Cam1/requests": "Cam1" is not a valid tenant name
}
