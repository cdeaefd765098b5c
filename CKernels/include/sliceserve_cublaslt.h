// sliceserve_cublaslt.h: half-precision matrix multiplication with a fused bias and ReLU on
// cuBLASLt (CUDA 12 and 13), loaded at run time.
//
// One `ss_cublaslt_gemm` is one matmul description with the algorithm chosen for it:
//     Y[m][n] = clamp(X[m][k] · W[n][k]ᵀ [+ bias[n]])      (all row-major)
// X, W and Y half precision, float accumulation, the bias half precision too (cuBLASLt's bias is
// of D's type for these types: see CKernels/cublaslt.c), the clamp none or ReLU. cuBLASLt is
// reached through the `ss_cublasLt*` forwarders of sliceserve_cuda.h (dlopen, never linked); no
// CUDA header is included. Every call must run with the CUDA context the handle was made in
// current. Implemented in CKernels/cublaslt.c.
#ifndef SLICESERVE_CUBLASLT_H
#define SLICESERVE_CUBLASLT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Return codes of the `ss_cublaslt_*` calls. A failing cuBLASLt call returns
/// SS_CUBLASLT_STATUS_BASE + its cublasStatus_t (so 1007 for CUBLAS_STATUS_INVALID_VALUE): the raw
/// statuses start at 1 (CUBLAS_STATUS_NOT_INITIALIZED), which would read as SS_CUBLASLT_NO_ALGO.
enum {
    SS_CUBLASLT_OK = 0,
    /// `ss_cublaslt_gemm_create` only: the heuristics offer fewer than algo+1 usable algorithms.
    SS_CUBLASLT_NO_ALGO = 1,
    /// cuBLASLt is not loaded, or lacks a symbol this path needs; equal to SS_LIB_NOT_LOADED.
    SS_CUBLASLT_MISSING = -1,
    /// A description this path does not build (a clamp other than none or ReLU).
    SS_CUBLASLT_UNSUPPORTED = -2,
    /// Bad arguments: a size below 1, a NaN clamp, a NULL handle or result, a missing or
    /// misaligned device pointer.
    SS_CUBLASLT_INVALID = -3,
    /// Host memory ran out.
    SS_CUBLASLT_NO_MEMORY = -4,
    /// Added to a cublasStatus_t.
    SS_CUBLASLT_STATUS_BASE = 1000,
};

/// One matmul description with its chosen algorithm.
typedef struct ss_cublaslt_gemm ss_cublaslt_gemm;

typedef struct ss_cublaslt_gemm_desc {
    /// Y[m][n] = X[m][k] · W[n][k]ᵀ (+ bias[n]), all row-major; X, W, Y and bias half.
    int m, n, k;
    int has_bias;
    /// Clamp after the bias: lo = -INF, hi = +INF for none; lo = 0, hi = +INF for ReLU; anything
    /// else is refused (SS_CUBLASLT_UNSUPPORTED; a NaN or lo > hi: SS_CUBLASLT_INVALID).
    float lo, hi;
} ss_cublaslt_gemm_desc;

/// Creates a cuBLASLt handle (cublasLtCreate) for the current device. 0 on success; else
/// SS_CUBLASLT_MISSING or SS_CUBLASLT_STATUS_BASE + the cuBLASLt status, and a message in `error`.
int ss_cublaslt_handle_create(void **handle, char *error, size_t error_size);
/// Destroys a handle from `ss_cublaslt_handle_create` (NULL is ignored). Destroy its gemms first.
void ss_cublaslt_handle_destroy(void *handle);

/// Asks cublasLtMatmulAlgoGetHeuristic (workspace limit `max_workspace`) for algorithms and takes
/// the `algo`-th usable one (0 = the heuristics' first; results whose state is not success are
/// skipped; `algo` at most 1023). Returns 0 with *gemm, *workspace_bytes (the algorithm's
/// workspaceSize) and a description such as "algo 3 of 8, waves 0.92"; SS_CUBLASLT_NO_ALGO when
/// fewer than algo+1 are offered; another nonzero status otherwise, with `description` holding the
/// error (the call that failed, the cublasStatus_t name and number).
int ss_cublaslt_gemm_create(void *handle, const ss_cublaslt_gemm_desc *desc, int algo, uint64_t max_workspace,
                            ss_cublaslt_gemm **gemm, uint64_t *workspace_bytes, char *description,
                            size_t description_size);
/// Enqueues Y = clamp(X·Wᵀ + bias) on `stream` (a CUstream; capturable into a CUDA graph).
/// Device addresses, each 16-byte aligned (the heuristics were told so); bias is ignored unless the
/// desc had one; workspace (workspace_bytes of it; best 256-byte aligned, as cuMemAlloc gives it:
/// cublasLt.h names no alignment for it) may be 0 when workspace_bytes was 0. `handle` is the one
/// the gemm was created with. Not for concurrent use of one gemm from two threads: the bias address
/// is set on the gemm's matmul descriptor before each launch.
int ss_cublaslt_gemm_run(void *handle, const ss_cublaslt_gemm *gemm, void *stream, uint64_t x, uint64_t w, uint64_t bias,
                         uint64_t y, uint64_t workspace, char *error, size_t error_size);
/// Destroys a gemm and the descriptors it owns (NULL is ignored).
void ss_cublaslt_gemm_destroy(ss_cublaslt_gemm *gemm);

#ifdef __cplusplus
}
#endif
#endif
