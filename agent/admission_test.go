package agent

import (
	"reflect"
	"testing"

	"github.com/delen-edge/delen/schema"
)

func TestAdmit(t *testing.T) {
	ms := func(v float64) schema.Bound { return schema.Bound{LatencyMS: &v} }
	reqCond := []schema.Condition{{Metric: "confidence", Op: "greater", Threshold: 0.9}}
	defCond := []schema.Condition{{Metric: "response_time", Op: "greater", Threshold: 40}}
	d := defaults{model: "mnist-ee", policy: "bound", conditions: defCond, infeasible: "late"}
	tests := []struct {
		name string
		req  schema.Request
		set  schema.Settings
		want admission
	}{
		{"agent defaults", schema.Request{}, schema.Settings{},
			admission{topic: "delen/cam/results", model: "mnist-ee", policy: "bound", conditions: defCond, infeasible: "late"}},
		{"tenant settings over the agent's", schema.Request{},
			schema.Settings{Model: "resnet50-nano", Policy: "deadline", Bound: ms(80), Conditions: reqCond, Infeasible: "shed"},
			admission{topic: "delen/cam/results", model: "resnet50-nano", policy: "deadline", bound: ms(80), conditions: reqCond, infeasible: "shed"}},
		{"the request's own over the tenant's", schema.Request{Model: "mnist-ee-large", Policy: "adaptive", Bound: ms(30), ReplyTo: "delen/cam/replies/1"},
			schema.Settings{Model: "resnet50-nano", Policy: "deadline", Bound: ms(80)},
			admission{topic: "delen/cam/replies/1", model: "mnist-ee-large", policy: "adaptive", bound: ms(30), ownBound: true, conditions: defCond, infeasible: "late"}},
		{"a tenant's empty conditions are the agent's", schema.Request{}, schema.Settings{Conditions: nil},
			admission{topic: "delen/cam/results", model: "mnist-ee", policy: "bound", conditions: defCond, infeasible: "late"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := admit(&tc.req, "delen/cam/results", tc.set, d)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("admit:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
