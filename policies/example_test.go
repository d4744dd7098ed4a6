package policies_test

import (
	"fmt"

	"github.com/delen-edge/delen/policies"
	"github.com/delen-edge/delen/schema"
)

// A registry resolves a tenant's policy name and parameters to an
// instance; the agent keeps one instance per tenant and asks it before
// each stage and after each exit.
func ExampleRegistry() {
	reg := policies.New()
	fmt.Println(reg.Names())
	fmt.Println(reg.Has("energy-budget"), reg.Has("nope"))

	pol, err := reg.New("confidence", policies.Params{"threshold": 0.8})
	if err != nil {
		panic(err)
	}
	s := &policies.Step{Exits: 3, Done: 1, Confidence: 0.85}
	fmt.Println(pol.Name(), pol.After(s, nil).Action)

	// A request's bound overrides the tenant's parameter.
	b := 0.9
	s.Bound = schema.Bound{Confidence: &b}
	fmt.Println(pol.Name(), pol.After(s, nil).Action)

	_, err = reg.New("static", policies.Params{"exit": 0.5})
	fmt.Println(err)
	// Output:
	// [accuracy adaptive bound conditions confidence deadline energy energy-budget static]
	// true false
	// confidence stop
	// confidence continue
	// policy static: param exit = 0.5: want a whole number ≥ 1
}
