// sliceserve_cudnn.h: fused convolutions on cuDNN 9's backend (graph) API, loaded at run time.
//
// One `ss_cudnn_conv` is one finalized execution plan of the operation graph
//     y = clamp(conv(x, w) [+ bias] [+ residual], lo, hi)
// in half precision (NHWC activations, KRSC filters) with float accumulation and float
// intermediates. cuDNN is reached through the `ss_cudnn*` forwarders of sliceserve_cuda.h (dlopen,
// never linked); no cuDNN header is included. Every call must run with the CUDA context of the
// handle's stream current. Implemented in CKernels/cudnn.c.
#ifndef SLICESERVE_CUDNN_H
#define SLICESERVE_CUDNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Return codes of the `ss_cudnn_*` calls besides cuDNN's own statuses (cudnnStatus_t: 0 for
/// success, else 1000 and up), so that no value is ambiguous.
enum {
    SS_CUDNN_OK = 0,
    /// `ss_cudnn_conv_create` only: fewer than engine+1 of the heuristics' engine configs finalize.
    SS_CUDNN_NO_ENGINE = 1,
    /// cuDNN is not loaded, or lacks a symbol this path needs (cuDNN older than 9); equal to
    /// SS_LIB_NOT_LOADED.
    SS_CUDNN_MISSING = -1,
    /// A descriptor this path does not build (grouped convolution, a clamp without a lower bound).
    SS_CUDNN_UNSUPPORTED = -2,
    /// Bad arguments: inconsistent sizes, a NULL plan or handle, a missing device pointer.
    SS_CUDNN_INVALID = -3,
    /// Host memory ran out.
    SS_CUDNN_NO_MEMORY = -4,
};

/// One finalized execution plan of one fused convolution.
typedef struct ss_cudnn_conv ss_cudnn_conv;

typedef struct ss_cudnn_conv_desc {
    /// Input: NHWC, half.
    int n, h, w, c;
    /// Filters: [M][KH][KW][C/groups] (KRSC), half.
    int m, kh, kw, groups;
    /// Output: NHWC [N][OH][OW][M], half.
    int oh, ow;
    /// Strides, pads (top, left, bottom, right), dilations.
    int sh, sw, pt, pl, pb, pr, dh, dw;
    /// Bias: float[M], added to every pixel.
    int has_bias;
    /// Residual: half NHWC [N][OH][OW][M], added after the bias.
    int has_residual;
    /// Clamp after the additions: lo = -INF and hi = +INF for none; lo = 0, hi = +INF is ReLU; else
    /// ReLU with lower and upper clip.
    float lo, hi;
} ss_cudnn_conv_desc;

/// Creates a handle on `stream` (a CUstream). 0 on success; else the cuDNN status (or -1 when cuDNN
/// or a symbol is missing) and a message in `error`.
int ss_cudnn_handle_create(void *stream, void **handle, char *error, size_t error_size);
/// Destroys a handle from `ss_cudnn_handle_create` (NULL is ignored). Destroy its plans first.
void ss_cudnn_handle_destroy(void *handle);

/// Builds the operation graph conv -> [+bias] -> [+residual] -> [clamp], asks the heuristics (mode
/// A, falling back to fallback mode when A gives none) for engine configs, and finalizes the
/// `engine`-th of those that finalize (0 = heuristics' first choice). Returns 0 with *plan,
/// *workspace_bytes and a description such as "engine 12, heuristics rank 0"; 1 when fewer than
/// engine+1 configs finalize (no such engine); another nonzero status with `description` holding
/// the error (the step that failed, the cuDNN status name/number and cudnnGetLastErrorString's text
/// when available). Finalizing a plan can compile kernels (runtime-fusion engines), and this call
/// finalizes up to engine+1 of them.
int ss_cudnn_conv_create(void *handle, const ss_cudnn_conv_desc *desc, int engine, ss_cudnn_conv **plan,
                         uint64_t *workspace_bytes, char *description, size_t description_size);
/// Enqueues the plan on the handle's stream (capturable into a CUDA graph when the engine allows).
/// Pointers are device addresses, 16-byte aligned; bias/residual ignored unless the desc had them;
/// workspace may be NULL when workspace_bytes was 0. `handle` is the one the plan was created on.
int ss_cudnn_conv_run(void *handle, const ss_cudnn_conv *plan, uint64_t x, uint64_t w, uint64_t bias, uint64_t residual,
                      uint64_t y, uint64_t workspace, char *error, size_t error_size);
/// Destroys a plan and every descriptor it was built from (NULL is ignored).
void ss_cudnn_conv_destroy(ss_cudnn_conv *plan);

#ifdef __cplusplus
}
#endif
#endif
