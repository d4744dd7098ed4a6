package train

// LargeName is the name of the built-in model of realistic cost.
const LargeName = "mnist-ee-large"

// LargeArch is mnist-ee-large: three exits, about 103 MFLOPs at the last
// and 0.11 MFLOPs at the first, so that its last stage takes milliseconds
// (DESIGN.md, "Models"). Input 1×28×28, pixels scaled to 0..1:
//
//	stage 0: conv 1→8, pool                      → features 8×14×14
//	         exit 1: dense 1568→10
//	stage 1: conv 8→32                           → features 32×14×14
//	         exit 2: dense 6272→10
//	stage 2: conv 32→64, pool, conv 64→128, conv 128→256, conv 256→256, pool
//	                                             → 256×3×3
//	         exit 3: dense 2304→128, ReLU, dense 128→10
//
// Every conv is 3×3 with padding 1 and ReLU; every pool is 2×2 max.
func LargeArch() Arch {
	return Arch{
		Name:        LargeName,
		Description: "Multi-exit CNN for MNIST digits of realistic cost (3 exits, ~103 MFLOPs at the last), trained by `delen models train mnist-ee-large`.",
		Input:       Shape{1, side, side},
		Classes:     classes,
		Stages: []StageArch{
			{Body: []Op{Conv(8), Pool()}},
			{Body: []Op{Conv(32)}},
			{Body: []Op{Conv(64), Pool(), Conv(128), Conv(256), Conv(256), Pool()}, Head: []int{128}},
		},
	}
}

// LargeEpochs is mnist-ee-large's default number of passes over the
// training split.
const LargeEpochs = 1
