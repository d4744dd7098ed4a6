package energy_test

import (
	"fmt"
	"os"
	"time"

	"github.com/delen-edge/delen/models/energy"
)

// A stage is measured by calling Start before it runs and Stop after, with
// its compute time.
func ExampleNew() {
	m, err := energy.New("model", "/", energy.Options{Watts: 10})
	if err != nil {
		panic(err)
	}
	r := m.Start()
	// ... run the stage ...
	mJ, err := r.Stop(25 * time.Millisecond)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s: %.0f mJ\n", m.Name(), mJ)
	// Output: model: 250 mJ
}

// Detect falls back to the model meter on a machine with neither an INA3221
// nor readable RAPL counters.
func ExampleDetect() {
	root, err := os.MkdirTemp("", "sysfs")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(root)

	m, err := energy.Detect(root, energy.Options{})
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Name())
	// Output: model
}
