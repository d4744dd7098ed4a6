package models_test

import (
	"fmt"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/models/zoo"
)

// Run mnist-ee one stage at a time and stop at the first exit that is
// confident enough: conditional execution by hand.
func Example() {
	m, err := zoo.New().Load("mnist-ee", models.LoadOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	set, _ := mnist.Test()
	st, err := m.NewState(1)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Release()
	set.Sample(0, st.Input())
	for !st.Done() {
		logits, err := st.RunStage()
		if err != nil {
			fmt.Println(err)
			return
		}
		class, conf := models.Top1(logits)
		if conf >= 0.99 || st.Done() {
			fmt.Printf("exit %d of %d: digit %d (label %d)\n", st.Next(), m.Exits(), class, set.Label(0))
			break
		}
	}
	// Output: exit 1 of 3: digit 7 (label 7)
}
