package train

import (
	"os"
	"sync"
)

// sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices,
// op(X) = Xᵀ when the trans flag is set; op(A) is m×k, op(B) k×n, C m×n,
// with leading dimensions lda, ldb, ldc (as CBLAS's cblas_sgemm).
type sgemm func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// Backend is the matrix arithmetic the batch trainer runs on.
type Backend struct {
	// Name is "openblas" (the system's OpenBLAS, loaded at run time) or
	// "go" (the portable loops below).
	Name string
	gemm sgemm
}

// BackendEnv names the environment variable that picks the backend: "go"
// forces the portable loops; otherwise OpenBLAS is used when it loads.
// BLASLibEnv names a library file to load instead of the default names.
const (
	BackendEnv = "DELEN_TRAIN_BLAS"
	BLASLibEnv = "DELEN_BLAS_LIB"
)

// blasLibs are the names tried, in order, to find OpenBLAS (Debian's
// libopenblas0 package; libblas.so.3 is its alternatives link).
var blasLibs = []string{"libopenblas.so.0", "libopenblas.so", "libblas.so.3"}

var loadBLAS = sync.OnceValue(func() *Backend {
	names := blasLibs
	if p := os.Getenv(BLASLibEnv); p != "" {
		names = []string{p}
	}
	for _, n := range names {
		if g := openBLAS(n); g != nil {
			// One thread: OpenBLAS's sums differ in the last bits with
			// the thread count (TestBLASThreadsSameResult), and a seed
			// must give the same model. On a shared machine one thread is
			// also faster: the library's threads wait for each other.
			setBLASThreads(1)
			return &Backend{Name: "openblas", gemm: g}
		}
	}
	return nil
})

// NewBackend returns OpenBLAS, on one thread, when it can be loaded (it is
// opened with dlopen, so the binary does not link it and runs without it),
// and the portable Go loops otherwise, or when $DELEN_TRAIN_BLAS is "go".
func NewBackend() *Backend {
	if os.Getenv(BackendEnv) != "go" {
		if b := loadBLAS(); b != nil {
			return b
		}
	}
	return GoBackend()
}

// setThreads sets the number of threads OpenBLAS splits a product over
// (process-wide). The Go backend ignores it.
func (b *Backend) setThreads(n int) {
	if b.Name == "openblas" && n > 0 {
		setBLASThreads(n)
	}
}

// GoBackend is the portable backend: plain loops, about 1-4 GFLOP/s.
func GoBackend() *Backend { return &Backend{Name: "go", gemm: goGemm} }

// goGemm is the reference sgemm: straightforward loops, row-major.
func goGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
		} else if beta != 1 {
			for j := range row {
				row[j] *= beta
			}
		}
		for p := 0; p < k; p++ {
			var av float32
			if transA {
				av = a[p*lda+i]
			} else {
				av = a[i*lda+p]
			}
			av *= alpha
			if av == 0 {
				continue
			}
			if !transB {
				br := b[p*ldb : p*ldb+n]
				for j, bv := range br {
					row[j] += av * bv
				}
			} else {
				for j := range row {
					row[j] += av * b[j*ldb+p]
				}
			}
		}
	}
}
