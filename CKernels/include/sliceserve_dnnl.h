// sliceserve_dnnl.h: the CPU executor's fast path on oneDNN (libdnnl.so.2), loaded at run time.
//
// A network (`ss_dnnl_net`) is built step by step from SliceServe's optimized graph: values
// (tensors, plain or in oneDNN's blocked channel layout nChw16c/nChw8c), then primitives that
// read and write them (convolution with fused bias, residual sum and activation; pooling,
// element-wise, binary, inner product, softmax, concat, reorder). `finalize` lays out every
// intermediate value in one arena by lifetime; `run` binds the input and output and executes
// the steps in order. Nothing here includes a oneDNN header: the few types and constants used
// are those of oneDNN's 2.x ABI (soname libdnnl.so.2), which the loader checks by version.
#ifndef SLICESERVE_DNNL_H
#define SLICESERVE_DNNL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// What `ss_dnnl_load` found: loaded, or why not; the library's path, version and the ISA its
/// kernels use.
typedef struct ss_dnnl_info {
    int loaded;
    char path[512];
    char version[32];
    char isa[48];
    char problem[768];
} ss_dnnl_info;

/// Loads libdnnl.so.2 once: SLICESERVE_LIBDNNL (a path, or "none" to disable), else the release
/// bundle's `<executable>/../lib`, else the loader's path. Thread-safe; later calls return the
/// first answer. oneDNN's own DNNL_MAX_CPU_ISA (AVX2, AVX512_CORE, ...) caps its kernels' ISA.
const ss_dnnl_info *ss_dnnl_load(void);

typedef struct ss_dnnl_net ss_dnnl_net;
/// Packed weights shared by the networks of one model (one per batch size).
typedef struct ss_dnnl_weights ss_dnnl_weights;

ss_dnnl_weights *ss_dnnl_weights_create(void);
void ss_dnnl_weights_destroy(ss_dnnl_weights *cache);

/// A network whose primitives run on `threads` OpenMP threads, its packed weights kept in
/// `cache` (required). NULL when oneDNN is not loaded.
ss_dnnl_net *ss_dnnl_net_create(int threads, ss_dnnl_weights *cache);
void ss_dnnl_net_destroy(ss_dnnl_net *net);
/// The last error's message ("" when none).
const char *ss_dnnl_net_error(const ss_dnnl_net *net);

/// Layouts of a value.
enum {
    /// Row-major (NCHW for 4-D).
    SS_DNNL_PLAIN = 0,
    /// Channels in blocks of 16 (AVX-512) or 8 (AVX2), padded: nChw16c / nChw8c. 4-D only.
    SS_DNNL_BLOCKED = 1,
};

/// Adds a value of `ndims` (1...5) dimensions; returns its index, or -1.
int ss_dnnl_net_value(ss_dnnl_net *net, int ndims, const int64_t *dims, int layout);
/// Adds a constant value: `data` (row-major float32) copied into `layout`. Returns its index or -1.
int ss_dnnl_net_constant(ss_dnnl_net *net, int ndims, const int64_t *dims, int layout, const float *data);
/// Adds a value that shares `base`'s memory (plain) with other dimensions of the same count.
int ss_dnnl_net_view(ss_dnnl_net *net, int base, int ndims, const int64_t *dims);

/// Convolution: src [N,C,H,W] → dst [N,O,OH,OW], weights [O, C/groups, KH, KW] row-major,
/// bias [O] or NULL. `residual` (a value index, or -1) is added before the activation
/// (`in_place`: dst already is the residual's memory). The activation clamps to [low, high]
/// (±INFINITY for none). `weights_key` names the weights in the shared cache.
int ss_dnnl_net_conv(ss_dnnl_net *net, int src, int dst, const float *weights, const float *bias,
                     const int64_t *kernel, const int64_t *strides, const int64_t *dilations,
                     const int64_t *pad_begin, const int64_t *pad_end, int64_t groups,
                     int residual, int in_place, float low, float high, int weights_key);

/// A 1x1 convolution (stride 1, no padding, clamp [low, high]) with the 3x3 depthwise
/// convolution that reads its output (padding 1, `dw_stride` 1 or 2, clamp [dw_low, dw_high])
/// fused in, so the wide intermediate tensor is never written: src [N,C,H,W] → dst [N,O,H/s,W/s].
/// `dw_weights` [O,1,3,3]; `dw_bias` [O] or NULL. Returns 0 with the fused step added; 1, adding
/// no step, where the two convolutions apart measured faster; -1, adding no step, where oneDNN
/// has no fused kernel.
int ss_dnnl_net_conv_dw(ss_dnnl_net *net, int src, int dst, const float *weights, const float *bias, float low, float high,
                        int weights_key, const float *dw_weights, const float *dw_bias, int64_t dw_stride, float dw_low,
                        float dw_high, int dw_weights_key);

enum {
    SS_DNNL_RELU = 0,
    SS_DNNL_CLIP = 1,
    SS_DNNL_SIGMOID = 2,
    SS_DNNL_HARDSWISH = 3,
};
/// Element-wise: dst = f(src); CLIP uses alpha (low) and beta (high).
int ss_dnnl_net_eltwise(ss_dnnl_net *net, int src, int dst, int kind, float alpha, float beta);

enum { SS_DNNL_ADD = 0, SS_DNNL_SUB = 1, SS_DNNL_MUL = 2, SS_DNNL_DIV = 3 };
/// Binary with broadcasting of b (dims of 1): dst = a op b.
int ss_dnnl_net_binary(ss_dnnl_net *net, int a, int b, int dst, int kind);

enum { SS_DNNL_MAX_POOL = 0, SS_DNNL_AVG_POOL_INCLUDE_PAD = 1, SS_DNNL_AVG_POOL_EXCLUDE_PAD = 2 };
int ss_dnnl_net_pool(ss_dnnl_net *net, int src, int dst, int kind, const int64_t *kernel,
                     const int64_t *strides, const int64_t *pad_begin, const int64_t *pad_end);

/// Inner product: src [N,K] plain, weights [M,K] row-major, bias [M] or NULL, dst [N,M].
int ss_dnnl_net_inner_product(ss_dnnl_net *net, int src, int dst, const float *weights, const float *bias,
                              int weights_key);
/// Softmax along `axis` (plain values).
int ss_dnnl_net_softmax(ss_dnnl_net *net, int src, int dst, int axis);
/// Concatenation along `axis`.
int ss_dnnl_net_concat(ss_dnnl_net *net, int count, const int *srcs, int dst, int axis);
/// A layout change between two values of the same dimensions.
int ss_dnnl_net_reorder(ss_dnnl_net *net, int src, int dst);

/// Marks the input and output values (bound to the caller's memory on each run) and lays out
/// the intermediate values in an arena of `ss_dnnl_net_arena_bytes` bytes, which the caller
/// provides at run time (networks that never run at the same time can share one). After this,
/// no more values or steps.
int ss_dnnl_net_finalize(ss_dnnl_net *net, int input, int output);
/// Bytes of the arena the network's intermediate values need.
size_t ss_dnnl_net_arena_bytes(const ss_dnnl_net *net);

/// Runs the network: `input` and `output` are row-major float32; `arena` (64-byte aligned,
/// `arena_size` ≥ the arena bytes) holds the intermediate values. With `step_ms` (one per step),
/// waits after each step and records its time.
int ss_dnnl_net_run(ss_dnnl_net *net, const float *input, float *output, void *arena, size_t arena_size, double *step_ms);

int ss_dnnl_net_step_count(const ss_dnnl_net *net);
/// The step's kind ("conv", "pool", ...) and the oneDNN implementation that runs it.
const char *ss_dnnl_net_step_kind(const ss_dnnl_net *net, int step);
const char *ss_dnnl_net_step_impl(const ss_dnnl_net *net, int step);

#ifdef __cplusplus
}
#endif

#endif
