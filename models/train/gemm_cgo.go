//go:build cgo && linux

package train

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha,
	const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

static sgemm_fn delen_sgemm_p;
static void (*delen_set_threads_p)(int);

// delen_blas_open loads a CBLAS library and finds cblas_sgemm in it; 1 on
// success. The library stays loaded for the life of the process.
static int delen_blas_open(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) return 0;
	sgemm_fn f = (sgemm_fn)dlsym(h, "cblas_sgemm");
	if (!f) { dlclose(h); return 0; }
	delen_sgemm_p = f;
	delen_set_threads_p = (void (*)(int))dlsym(h, "openblas_set_num_threads");
	return 1;
}

static int delen_blas_set_threads(int n) {
	if (!delen_set_threads_p) return 0;
	delen_set_threads_p(n);
	return 1;
}

static void delen_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
	const float *b, int ldb, float beta, float *c, int ldc) {
	// 101 CblasRowMajor, 111 CblasNoTrans, 112 CblasTrans.
	delen_sgemm_p(101, ta ? 112 : 111, tb ? 112 : 111, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
*/
import "C"

import "unsafe"

// openBLAS loads the CBLAS library called name with dlopen and returns its
// sgemm, or nil when it does not load.
func openBLAS(name string) sgemm {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	if C.delen_blas_open(cs) == 0 {
		return nil
	}
	return blasGemm
}

// setBLASThreads sets OpenBLAS's thread count; false when the library
// has no openblas_set_num_threads.
func setBLASThreads(n int) bool { return C.delen_blas_set_threads(C.int(n)) == 1 }

func blasGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 || k == 0 {
		return
	}
	ta, tb := C.int(0), C.int(0)
	if transA {
		ta = 1
	}
	if transB {
		tb = 1
	}
	C.delen_sgemm(ta, tb, C.int(m), C.int(n), C.int(k), C.float(alpha),
		(*C.float)(unsafe.Pointer(&a[0])), C.int(lda), (*C.float)(unsafe.Pointer(&b[0])), C.int(ldb),
		C.float(beta), (*C.float)(unsafe.Pointer(&c[0])), C.int(ldc))
}
