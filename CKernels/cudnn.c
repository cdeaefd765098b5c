// Fused convolutions on cuDNN 9's backend (graph) API (see sliceserve_cudnn.h).
//
// cuDNN is loaded by cuda_loader.c (dlopen, never linked) and called through its `ss_cudnn*`
// forwarders. No cuDNN header is included: the constants are declared by hand in
// sliceserve_cudnn_abi.h (an internal header, shared with the tests' mock cuDNN), with where each
// value comes from (cuDNN 9.6.0's `cudnn_graph.h`).
//
// The prototypes (sliceserve_cuda.h, SS_CUDNN_SYMBOLS) are the same header's. The C type behind
// each attribute type (CUDNN_TYPE_BOOLEAN: C++ bool, one byte; CUDNN_TYPE_DOUBLE for the ReLU
// clips; CUDNN_TYPE_FLOAT for alpha/beta with a float compute type; CUDNN_TYPE_HANDLE: a pointer
// to the cudnnHandle_t; CUDNN_TYPE_BACKEND_DESCRIPTOR: an array of descriptors) and the
// attributes each descriptor takes before cudnnBackendFinalize follow cuDNN's backend descriptor
// reference and NVIDIA's cudnn-frontend (its v8 builders set these attributes in this way).
// cuDNN 9.6's backend has no group-count attribute on CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR (only
// the legacy cudnnSetConvolutionGroupCount of cudnn_cnn.h), so groups > 1 is refused here.
//
// The operation graph (uids: x 1, w 2, y 3, bias 4, residual 5, virtual tensors 100 and up):
//
//   x [N,C,H,W] half ─┐
//                     ├─ CONVOLUTION_FORWARD (float compute, cross-correlation) ─> t100 float virtual
//   w [M,C,KH,KW] half┘
//   t100 ─ POINTWISE ADD  (B = bias [1,M,1,1] float) ─────────────────────────> t101 float virtual
//   t101 ─ POINTWISE ADD  (B = residual [N,M,OH,OW] half) ────────────────────> t102 float virtual
//   t102 ─ POINTWISE RELU_FWD (lower clip lo, upper clip hi) ─────────────────> y [N,M,OH,OW] half
//
// Optional steps are left out (the bias, the residual, the clamp when lo = -INF and hi = +INF);
// the last step present writes y, and the virtual ids are numbered in order from 100. Dimensions
// are in cuDNN's logical N, C, H, W order; the strides make every activation NHWC and the filter
// KRSC (stride of C 1, of W C, of H W*C, of N H*W*C); byte alignment 16 everywhere.
#define _GNU_SOURCE
#include "sliceserve_cudnn.h"
#include "sliceserve_cuda.h"
#include "sliceserve_cudnn_abi.h"
#include "library_shim.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The tensors' unique ids (the variant pack binds device pointers to them).
enum { UID_X = 1, UID_W = 2, UID_Y = 3, UID_BIAS = 4, UID_RESIDUAL = 5, UID_FIRST_VIRTUAL = 100 };
enum { TENSOR_ALIGNMENT = 16 };
// Every descriptor a plan is built from (at most 8 tensors, 1 convolution, 4 operations, 3
// pointwise descriptors, the graph, the heuristics and the chosen engine config: 19).
enum { MAX_OWNED = 24 };

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

static const ss_status_name status_names[] = {
    SS_STATUS_NAME(CUDNN_STATUS_SUCCESS),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_INITIALIZED),
    SS_STATUS_NAME(CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH),
    SS_STATUS_NAME(CUDNN_STATUS_SERIALIZATION_VERSION_MISMATCH),
    SS_STATUS_NAME(CUDNN_STATUS_DEPRECATED),
    SS_STATUS_NAME(CUDNN_STATUS_LICENSE_ERROR),
    SS_STATUS_NAME(CUDNN_STATUS_RUNTIME_IN_PROGRESS),
    SS_STATUS_NAME(CUDNN_STATUS_RUNTIME_FP_OVERFLOW),
    SS_STATUS_NAME(CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED),
    SS_STATUS_NAME(CUDNN_STATUS_BAD_PARAM),
    SS_STATUS_NAME(CUDNN_STATUS_INVALID_VALUE),
    SS_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_NULL_POINTER),
    SS_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER),
    SS_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED),
    SS_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND),
    SS_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT),
    SS_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH),
    SS_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH),
    SS_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES),
    SS_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE),
    SS_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_CUDA_GRAPH_MISMATCH),
    SS_STATUS_NAME(CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_SHAPE),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_LAYOUT),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDART),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_ARCH_MISMATCH),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_RUNTIME_PREREQUISITE_MISSING),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_PADDING),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_BAD_LAUNCH_PARAM),
    SS_STATUS_NAME(CUDNN_STATUS_NOT_SUPPORTED_CUDA_GRAPH_NATIVE_API),
    SS_STATUS_NAME(CUDNN_STATUS_INTERNAL_ERROR),
    SS_STATUS_NAME(CUDNN_STATUS_INTERNAL_ERROR_COMPILATION_FAILED),
    SS_STATUS_NAME(CUDNN_STATUS_INTERNAL_ERROR_UNEXPECTED_VALUE),
    SS_STATUS_NAME(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED),
    SS_STATUS_NAME(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED),
    SS_STATUS_NAME(CUDNN_STATUS_INTERNAL_ERROR_BAD_LAUNCH_PARAM),
    SS_STATUS_NAME(CUDNN_STATUS_INTERNAL_ERROR_TEXTURE_CREATION_FAILED),
    SS_STATUS_NAME(CUDNN_STATUS_EXECUTION_FAILED),
    SS_STATUS_NAME(CUDNN_STATUS_EXECUTION_FAILED_CUDA_DRIVER),
    SS_STATUS_NAME(CUDNN_STATUS_EXECUTION_FAILED_CUBLAS),
    SS_STATUS_NAME(CUDNN_STATUS_EXECUTION_FAILED_CUDART),
    SS_STATUS_NAME(CUDNN_STATUS_EXECUTION_FAILED_CURAND),
};
#undef STATUS_NAME

static const char *status_name(int status) {
    return ss_status_lookup(status_names, sizeof status_names / sizeof status_names[0], status);
}

/// Writes "step: CUDNN_STATUS_xxx (number): last error string" into `out` and returns `status`.
/// Call it right after the failing cuDNN call, before any other, so that the last error string
/// is that call's.
static int cudnn_failure(char *out, size_t size, int status, const char *step) {
    char last[768];
    last[0] = 0;
    ss_cudnnGetLastErrorString(last, sizeof last);  // leaves `last` empty where cuDNN lacks it
    last[sizeof last - 1] = 0;
    size_t length = strlen(last);
    while (length > 0 && (last[length - 1] == '\n' || last[length - 1] == '\r' || last[length - 1] == ' '))
        last[--length] = 0;
    const char *separator = length ? ": " : "";
    const char *name = status_name(status);
    if (status == SS_LIB_NOT_LOADED)
        ss_put(out, size, "%s: the symbol is missing from the loaded cuDNN (%d)", step, status);
    else if (name != NULL)
        ss_put(out, size, "%s: %s (%d)%s%s", step, name, status, separator, last);
    else
        ss_put(out, size, "%s: cuDNN status %d%s%s", step, status, separator, last);
    return status;
}

/// Checks that cuDNN is loaded with every entry point this file calls; -1 with the reason if not.
_Static_assert(SS_CUDNN_MISSING == SS_LIB_NOT_LOADED, "ss_require_library returns the shim's \"missing\" code");
static int check_cudnn(char *out, size_t size) {
    static const char *const symbols[] = {
        "cudnnCreate", "cudnnDestroy", "cudnnSetStream", "cudnnBackendCreateDescriptor",
        "cudnnBackendDestroyDescriptor", "cudnnBackendSetAttribute", "cudnnBackendGetAttribute",
        "cudnnBackendFinalize", "cudnnBackendExecute",
    };
    return ss_require_library(SS_LIB_CUDNN, "cuDNN", symbols, sizeof symbols / sizeof symbols[0], ": cuDNN 9 is needed", out, size);
}

// ---------------------------------------------------------------------------------------------
// Building descriptors: every one created is recorded, so that each path destroys them all
// ---------------------------------------------------------------------------------------------

typedef struct builder {
    void *owned[MAX_OWNED];  // in creation order; destroyed in reverse
    int owned_count;
    char *message;
    size_t message_size;
} builder;

static void destroy_descriptor(void *descriptor) {
    if (descriptor != NULL) ss_cudnnBackendDestroyDescriptor(descriptor);
}

static void builder_release(builder *b) {
    while (b->owned_count > 0) destroy_descriptor(b->owned[--b->owned_count]);
}

/// Takes ownership of `descriptor` (destroys it and fails if the table is full).
static int builder_adopt(builder *b, void *descriptor, const char *what) {
    if (b->owned_count == MAX_OWNED) {
        destroy_descriptor(descriptor);
        ss_put(b->message, b->message_size, "%s: more than %d descriptors (internal limit)", what, MAX_OWNED);
        return SS_CUDNN_INVALID;
    }
    b->owned[b->owned_count++] = descriptor;
    return SS_CUDNN_OK;
}

/// Creates a descriptor not (yet) owned by a builder.
static int create_descriptor(int type, void **out, const char *what, char *message, size_t message_size) {
    *out = NULL;
    int status = ss_cudnnBackendCreateDescriptor(type, out);
    if (status == CUDNN_STATUS_SUCCESS && *out == NULL) status = CUDNN_STATUS_INTERNAL_ERROR;
    if (status != CUDNN_STATUS_SUCCESS) {
        char step[160];
        snprintf(step, sizeof step, "cudnnBackendCreateDescriptor(%s)", what);
        *out = NULL;
        return cudnn_failure(message, message_size, status, step);
    }
    return SS_CUDNN_OK;
}

static int builder_create(builder *b, int type, const char *what, void **out) {
    int status = create_descriptor(type, out, what, b->message, b->message_size);
    if (status != SS_CUDNN_OK) return status;
    status = builder_adopt(b, *out, what);
    if (status != SS_CUDNN_OK) *out = NULL;
    return status;
}

static int set_attribute(char *message, size_t message_size, void *descriptor, const char *what, int attribute,
                         const char *attribute_name, int type, int64_t count, const void *elements) {
    int status = ss_cudnnBackendSetAttribute(descriptor, attribute, type, count, elements);
    if (status == CUDNN_STATUS_SUCCESS) return SS_CUDNN_OK;
    char step[192];
    snprintf(step, sizeof step, "cudnnBackendSetAttribute(%s, %s)", what, attribute_name);
    return cudnn_failure(message, message_size, status, step);
}
#define SET(b, descriptor, what, attribute, type, count, elements) \
    set_attribute((b)->message, (b)->message_size, descriptor, what, attribute, #attribute, type, count, elements)

static int get_attribute(char *message, size_t message_size, void *descriptor, const char *what, int attribute,
                         const char *attribute_name, int type, int64_t requested, int64_t *count, void *elements) {
    int status = ss_cudnnBackendGetAttribute(descriptor, attribute, type, requested, count, elements);
    if (status == CUDNN_STATUS_SUCCESS) return SS_CUDNN_OK;
    char step[192];
    snprintf(step, sizeof step, "cudnnBackendGetAttribute(%s, %s)", what, attribute_name);
    return cudnn_failure(message, message_size, status, step);
}
#define GET(message, size, descriptor, what, attribute, type, requested, count, elements) \
    get_attribute(message, size, descriptor, what, attribute, #attribute, type, requested, count, elements)

static int finalize(char *message, size_t message_size, void *descriptor, const char *what) {
    int status = ss_cudnnBackendFinalize(descriptor);
    if (status == CUDNN_STATUS_SUCCESS) return SS_CUDNN_OK;
    char step[160];
    snprintf(step, sizeof step, "cudnnBackendFinalize(%s)", what);
    return cudnn_failure(message, message_size, status, step);
}

/// Dimensions in cuDNN's logical order (N, C, H, W) with the strides of the NHWC layout (for the
/// filter: K, C, R, S with KRSC strides, the same formula).
typedef struct shape4 {
    int64_t dims[4];
    int64_t strides[4];
} shape4;

static shape4 nhwc(int64_t n, int64_t c, int64_t h, int64_t w) {
    shape4 s = {{n, c, h, w}, {h * w * c, 1, w * c, c}};
    return s;
}

static int build_tensor(builder *b, const char *what, int64_t uid, int data_type, shape4 shape, bool is_virtual,
                        void **out) {
    int64_t alignment = TENSOR_ALIGNMENT;
    void *t = NULL;
    int rc;
    if ((rc = builder_create(b, CUDNN_BACKEND_TENSOR_DESCRIPTOR, what, &t)) ||
        (rc = SET(b, t, what, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &data_type)) ||
        (rc = SET(b, t, what, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, shape.dims)) ||
        (rc = SET(b, t, what, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, shape.strides)) ||
        (rc = SET(b, t, what, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid)) ||
        (rc = SET(b, t, what, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment)) ||
        (rc = SET(b, t, what, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual)) ||
        (rc = finalize(b->message, b->message_size, t, what)))
        return rc;
    *out = t;
    return SS_CUDNN_OK;
}

/// A pointwise operation y = mode(x[, operand]) computed in float: ADD with `operand`, or RELU_FWD
/// (operand NULL) clipping to [lower, upper].
static int build_pointwise(builder *b, const char *what, int mode, double lower, double upper, void *x, void *operand,
                           void *y, void **out) {
    int math = CUDNN_DATA_FLOAT;
    float one = 1.0f;
    double slope = 0.0;
    void *pw = NULL, *op = NULL;
    int rc;
    if ((rc = builder_create(b, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, what, &pw)) ||
        (rc = SET(b, pw, what, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode)) ||
        (rc = SET(b, pw, what, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &math)))
        return rc;
    if (mode == CUDNN_POINTWISE_RELU_FWD &&
        ((rc = SET(b, pw, what, CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP, CUDNN_TYPE_DOUBLE, 1, &lower)) ||
         (rc = SET(b, pw, what, CUDNN_ATTR_POINTWISE_RELU_UPPER_CLIP, CUDNN_TYPE_DOUBLE, 1, &upper)) ||
         (rc = SET(b, pw, what, CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP_SLOPE, CUDNN_TYPE_DOUBLE, 1, &slope))))
        return rc;
    if ((rc = finalize(b->message, b->message_size, pw, what))) return rc;

    if ((rc = builder_create(b, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, what, &op)) ||
        (rc = SET(b, op, what, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw)) ||
        (rc = SET(b, op, what, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x)) ||
        (operand != NULL &&
         (rc = SET(b, op, what, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &operand))) ||
        (rc = SET(b, op, what, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y)) ||
        (rc = SET(b, op, what, CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &one)) ||
        (rc = SET(b, op, what, CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &one)) ||
        (rc = finalize(b->message, b->message_size, op, what)))
        return rc;
    *out = op;
    return SS_CUDNN_OK;
}

// ---------------------------------------------------------------------------------------------
// Handles
// ---------------------------------------------------------------------------------------------

int ss_cudnn_handle_create(void *stream, void **handle, char *error, size_t error_size) {
    ss_put(error, error_size, "%s", "");
    if (handle == NULL) {
        ss_put(error, error_size, "ss_cudnn_handle_create: handle is NULL");
        return SS_CUDNN_INVALID;
    }
    *handle = NULL;
    int rc = check_cudnn(error, error_size);
    if (rc != SS_CUDNN_OK) return rc;
    void *created = NULL;
    int status = ss_cudnnCreate(&created);
    if (status == CUDNN_STATUS_SUCCESS && created == NULL) status = CUDNN_STATUS_INTERNAL_ERROR;
    if (status != CUDNN_STATUS_SUCCESS) return cudnn_failure(error, error_size, status, "cudnnCreate");
    status = ss_cudnnSetStream(created, (ss_CUstream)stream);
    if (status != CUDNN_STATUS_SUCCESS) {
        cudnn_failure(error, error_size, status, "cudnnSetStream");
        ss_cudnnDestroy(created);
        return status;
    }
    *handle = created;
    return SS_CUDNN_OK;
}

void ss_cudnn_handle_destroy(void *handle) {
    if (handle != NULL) ss_cudnnDestroy(handle);
}

// ---------------------------------------------------------------------------------------------
// Plans
// ---------------------------------------------------------------------------------------------

struct ss_cudnn_conv {
    void *plan;                // the finalized CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR
    void *owned[MAX_OWNED];    // what it was built from, kept alive with it; destroyed after it
    int owned_count;
    int has_bias, has_residual;
    uint64_t workspace_bytes;
};

/// Checks the descriptor; SS_CUDNN_OK, or SS_CUDNN_INVALID / SS_CUDNN_UNSUPPORTED with a message.
static int check_desc(const ss_cudnn_conv_desc *d, char *out, size_t size) {
    if (d->n < 1 || d->h < 1 || d->w < 1 || d->c < 1 || d->m < 1 || d->kh < 1 || d->kw < 1 || d->groups < 1 ||
        d->oh < 1 || d->ow < 1 || d->sh < 1 || d->sw < 1 || d->dh < 1 || d->dw < 1 || d->pt < 0 || d->pl < 0 ||
        d->pb < 0 || d->pr < 0) {
        ss_put(out, size, "invalid convolution: a size, stride or dilation below 1, or a negative pad");
        return SS_CUDNN_INVALID;
    }
    if (d->c % d->groups != 0 || d->m % d->groups != 0) {
        ss_put(out, size, "invalid convolution: %d input and %d output channels in %d groups", d->c, d->m, d->groups);
        return SS_CUDNN_INVALID;
    }
    if (d->groups > 1) {
        ss_put(out, size, "grouped convolution not supported by this path (groups %d: cuDNN 9's convolution descriptor has "
            "no group-count attribute)", d->groups);
        return SS_CUDNN_UNSUPPORTED;
    }
    int64_t span_h = (int64_t)d->h + d->pt + d->pb - (int64_t)d->dh * (d->kh - 1) - 1;
    int64_t span_w = (int64_t)d->w + d->pl + d->pr - (int64_t)d->dw * (d->kw - 1) - 1;
    if (span_h < 0 || span_w < 0 || span_h / d->sh + 1 != d->oh || span_w / d->sw + 1 != d->ow) {
        ss_put(out, size, "invalid convolution: output %dx%d, but a %dx%d input with kernel %dx%d, stride %dx%d, "
            "dilation %dx%d and pads %d,%d,%d,%d gives %lldx%lld", d->oh, d->ow, d->h, d->w, d->kh, d->kw, d->sh, d->sw,
            d->dh, d->dw, d->pt, d->pl, d->pb, d->pr, span_h < 0 ? 0LL : (long long)(span_h / d->sh + 1),
            span_w < 0 ? 0LL : (long long)(span_w / d->sw + 1));
        return SS_CUDNN_INVALID;
    }
    if (isnan(d->lo) || isnan(d->hi) || d->lo > d->hi || (isinf(d->lo) && d->lo > 0) || (isinf(d->hi) && d->hi < 0)) {
        ss_put(out, size, "invalid clamp [%g, %g]", (double)d->lo, (double)d->hi);
        return SS_CUDNN_INVALID;
    }
    if (isinf(d->lo) && !isinf(d->hi)) {
        ss_put(out, size, "clamp without a lower bound not supported (lo -INF, hi %g)", (double)d->hi);
        return SS_CUDNN_UNSUPPORTED;
    }
    return SS_CUDNN_OK;
}

/// Builds the operation graph's tensors and operations and finalizes the graph.
static int build_graph(builder *b, void *handle, const ss_cudnn_conv_desc *d, void **graph_out) {
    const int64_t n = d->n, c = d->c, m = d->m, cg = d->c / d->groups;
    const bool clamp = !(isinf(d->lo) && isinf(d->hi));
    const int steps = (d->has_bias != 0) + (d->has_residual != 0) + clamp;  // pointwise steps after the conv
    const shape4 out_shape = nhwc(n, m, d->oh, d->ow);
    void *x = NULL, *w = NULL, *y = NULL, *bias = NULL, *residual = NULL;
    int rc;
    if ((rc = build_tensor(b, "tensor x", UID_X, CUDNN_DATA_HALF, nhwc(n, c, d->h, d->w), false, &x)) ||
        (rc = build_tensor(b, "tensor w", UID_W, CUDNN_DATA_HALF, nhwc(m, cg, d->kh, d->kw), false, &w)) ||
        (rc = build_tensor(b, "tensor y", UID_Y, CUDNN_DATA_HALF, out_shape, false, &y)) ||
        (d->has_bias &&
         (rc = build_tensor(b, "tensor bias", UID_BIAS, CUDNN_DATA_FLOAT, nhwc(1, m, 1, 1), false, &bias))) ||
        (d->has_residual &&
         (rc = build_tensor(b, "tensor residual", UID_RESIDUAL, CUDNN_DATA_HALF, out_shape, false, &residual))))
        return rc;

    // Each step's output: a float virtual tensor, except the last step's, which is y.
    int64_t next_virtual = UID_FIRST_VIRTUAL;
    void *outputs[4] = {0};
    for (int i = 0; i < steps; i++) {
        char what[48];
        snprintf(what, sizeof what, "virtual tensor %lld", (long long)next_virtual);
        if ((rc = build_tensor(b, what, next_virtual, CUDNN_DATA_FLOAT, out_shape, true, &outputs[i]))) return rc;
        next_virtual++;
    }
    outputs[steps] = y;

    // The convolution.
    int64_t spatial = 2;
    int64_t dilations[2] = {d->dh, d->dw}, strides[2] = {d->sh, d->sw};
    int64_t pre[2] = {d->pt, d->pl}, post[2] = {d->pb, d->pr};
    int comp = CUDNN_DATA_FLOAT, mode = CUDNN_CROSS_CORRELATION;
    float alpha = 1.0f, beta = 0.0f;
    void *conv = NULL, *conv_op = NULL;
    const char *what = "convolution";
    if ((rc = builder_create(b, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, what, &conv)) ||
        (rc = SET(b, conv, what, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp)) ||
        (rc = SET(b, conv, what, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode)) ||
        (rc = SET(b, conv, what, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &spatial)) ||
        (rc = SET(b, conv, what, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dilations)) ||
        (rc = SET(b, conv, what, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, strides)) ||
        (rc = SET(b, conv, what, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pre)) ||
        (rc = SET(b, conv, what, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, post)) ||
        (rc = finalize(b->message, b->message_size, conv, what)))
        return rc;
    what = "convolution forward operation";
    if ((rc = builder_create(b, CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, what, &conv_op)) ||
        (rc = SET(b, conv_op, what, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x)) ||
        (rc = SET(b, conv_op, what, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &w)) ||
        (rc = SET(b, conv_op, what, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                  &outputs[0])) ||
        (rc = SET(b, conv_op, what, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                  &conv)) ||
        (rc = SET(b, conv_op, what, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha)) ||
        (rc = SET(b, conv_op, what, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &beta)) ||
        (rc = finalize(b->message, b->message_size, conv_op, what)))
        return rc;

    // The pointwise steps, each reading the previous step's output.
    void *ops[4] = {conv_op};
    int64_t op_count = 1;
    if (d->has_bias &&
        (rc = build_pointwise(b, "bias add", CUDNN_POINTWISE_ADD, 0, 0, outputs[op_count - 1], bias, outputs[op_count],
                              &ops[op_count])))
        return rc;
    op_count += d->has_bias != 0;
    if (d->has_residual &&
        (rc = build_pointwise(b, "residual add", CUDNN_POINTWISE_ADD, 0, 0, outputs[op_count - 1], residual,
                              outputs[op_count], &ops[op_count])))
        return rc;
    op_count += d->has_residual != 0;
    if (clamp) {
        // ReLU with clips: max(x, lo), then min(., hi); no upper bound is float's largest value.
        double lower = d->lo, upper = isinf(d->hi) ? (double)FLT_MAX : (double)d->hi;
        if ((rc = build_pointwise(b, "clamp (relu)", CUDNN_POINTWISE_RELU_FWD, lower, upper, outputs[op_count - 1], NULL,
                                  outputs[op_count], &ops[op_count])))
            return rc;
        op_count++;
    }

    void *graph = NULL;
    what = "operation graph";
    if ((rc = builder_create(b, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, what, &graph)) ||
        (rc = SET(b, graph, what, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, op_count, ops)) ||
        (rc = SET(b, graph, what, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle)) ||
        (rc = finalize(b->message, b->message_size, graph, what)))
        return rc;
    *graph_out = graph;
    return SS_CUDNN_OK;
}

/// Runs the engine heuristics in `mode` on `graph`: *heuristics (not owned by `b`; the caller
/// destroys it) and the number of engine configs it offers.
static int run_heuristics(builder *b, void *graph, int mode, const char *what, void **heuristics, int64_t *count) {
    *heuristics = NULL;
    *count = 0;
    void *heur = NULL;
    int rc = create_descriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur, what, b->message, b->message_size);
    if (rc) return rc;
    if ((rc = SET(b, heur, what, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph)) ||
        (rc = SET(b, heur, what, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode)) ||
        (rc = finalize(b->message, b->message_size, heur, what)) ||
        (rc = GET(b->message, b->message_size, heur, what, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0,
                  count, NULL))) {
        destroy_descriptor(heur);
        *count = 0;
        return rc;
    }
    if (*count < 0) *count = 0;
    *heuristics = heur;
    return SS_CUDNN_OK;
}

/// Reads the chosen plan's engine's global index (-1 when cuDNN does not say).
static int64_t engine_index(void *config) {
    void *engine = NULL;
    int64_t index = -1, count = 0;
    if (create_descriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &engine, "engine", NULL, 0) != SS_CUDNN_OK) return -1;
    if (GET(NULL, 0, config, "engine config", CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &count,
            &engine) != SS_CUDNN_OK ||
        count != 1 ||
        GET(NULL, 0, engine, "engine", CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &count, &index) != SS_CUDNN_OK)
        index = -1;
    destroy_descriptor(engine);
    return index;
}

int ss_cudnn_conv_create(void *handle, const ss_cudnn_conv_desc *desc, int engine, ss_cudnn_conv **plan,
                         uint64_t *workspace_bytes, char *description, size_t description_size) {
    ss_put(description, description_size, "%s", "");
    if (plan != NULL) *plan = NULL;
    if (workspace_bytes != NULL) *workspace_bytes = 0;
    if (handle == NULL || desc == NULL || plan == NULL || workspace_bytes == NULL || engine < 0) {
        ss_put(description, description_size, "ss_cudnn_conv_create: NULL handle, desc or result, or engine %d < 0", engine);
        return SS_CUDNN_INVALID;
    }
    int rc = check_cudnn(description, description_size);
    if (rc != SS_CUDNN_OK) return rc;
    if ((rc = check_desc(desc, description, description_size)) != SS_CUDNN_OK) return rc;

    builder b = {.owned_count = 0, .message = description, .message_size = description_size};
    void *graph = NULL;
    if ((rc = build_graph(&b, handle, desc, &graph))) {
        builder_release(&b);
        return rc;
    }

    // Heuristics: mode A, then the fallback list when A fails or offers nothing.
    void *heur = NULL;
    int64_t count = 0;
    int fallback = 0;
    char mode_a_problem[512] = "no engine configs";
    rc = run_heuristics(&b, graph, CUDNN_HEUR_MODE_A, "engine heuristics (mode A)", &heur, &count);
    if (rc != SS_CUDNN_OK || count == 0) {
        if (rc != SS_CUDNN_OK)
            snprintf(mode_a_problem, sizeof mode_a_problem, "%s",
                     description != NULL && description_size > 0 ? description : "failed");
        destroy_descriptor(heur);
        heur = NULL;
        fallback = 1;
        rc = run_heuristics(&b, graph, CUDNN_HEUR_MODE_FALLBACK, "engine heuristics (fallback mode)", &heur, &count);
        if (rc != SS_CUDNN_OK) {
            size_t used = description != NULL ? strnlen(description, description_size) : 0;
            if (used < description_size)
                ss_put(description + used, description_size - used, " (after mode A: %s)", mode_a_problem);
            builder_release(&b);
            return rc;
        }
    }
    if ((rc = builder_adopt(&b, heur, "engine heuristics"))) {
        builder_release(&b);
        return rc;
    }

    // The engine configs, in the heuristics' order of preference.
    void **configs = count > 0 ? calloc((size_t)count, sizeof *configs) : NULL;
    if (count > 0 && configs == NULL) {
        ss_put(description, description_size, "out of memory for %lld engine configs", (long long)count);
        builder_release(&b);
        return SS_CUDNN_NO_MEMORY;
    }
    int64_t returned = 0;
    for (int64_t i = 0; i < count && rc == SS_CUDNN_OK; i++)
        rc = create_descriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &configs[i], "engine config", description,
                               description_size);
    if (rc == SS_CUDNN_OK && count > 0)
        rc = GET(description, description_size, heur, "engine heuristics", CUDNN_ATTR_ENGINEHEUR_RESULTS,
                 CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &returned, configs);
    if (returned > count) returned = count;
    if (returned < 0) returned = 0;

    // Finalize plans in that order until the `engine`-th one that finalizes.
    void *chosen = NULL;
    int64_t chosen_rank = -1;
    int finalized = 0;
    char skipped[512] = "";
    for (int64_t i = 0; rc == SS_CUDNN_OK && i < returned && chosen == NULL; i++) {
        void *candidate = NULL;
        char why[512] = "";
        int status = create_descriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &candidate, "execution plan", why,
                                       sizeof why);
        if (status == SS_CUDNN_OK)
            status = set_attribute(why, sizeof why, candidate, "execution plan", CUDNN_ATTR_EXECUTION_PLAN_HANDLE,
                                   "CUDNN_ATTR_EXECUTION_PLAN_HANDLE", CUDNN_TYPE_HANDLE, 1, &handle);
        if (status == SS_CUDNN_OK)
            status = set_attribute(why, sizeof why, candidate, "execution plan", CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                   "CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG", CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &configs[i]);
        if (status == SS_CUDNN_OK) status = finalize(why, sizeof why, candidate, "execution plan");
        if (status != SS_CUDNN_OK) {
            destroy_descriptor(candidate);
            snprintf(skipped, sizeof skipped, "heuristics rank %lld: %s", (long long)i, why);
            continue;
        }
        if (finalized == engine) {
            chosen = candidate;
            chosen_rank = i;
        } else {
            destroy_descriptor(candidate);
        }
        finalized++;
    }

    // Keep the chosen plan's engine config alive with it; destroy the others.
    void *chosen_config = chosen != NULL ? configs[chosen_rank] : NULL;
    for (int64_t i = 0; i < count; i++)
        if (configs[i] != chosen_config) destroy_descriptor(configs[i]);
    free(configs);
    if (rc != SS_CUDNN_OK) {
        builder_release(&b);
        return rc;
    }
    if (chosen == NULL) {
        ss_put(description, description_size, "no engine %d: %d of %lld engine configs from the %s heuristics finalize%s%s",
            engine, finalized, (long long)returned, fallback ? "fallback" : "mode A", skipped[0] ? "; last failure: " : "",
            skipped);
        builder_release(&b);
        return SS_CUDNN_NO_ENGINE;
    }
    if ((rc = builder_adopt(&b, chosen_config, "engine config"))) {
        destroy_descriptor(chosen);
        builder_release(&b);
        return rc;
    }

    int64_t workspace = 0, elements = 0;
    rc = GET(description, description_size, chosen, "execution plan", CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
             CUDNN_TYPE_INT64, 1, &elements, &workspace);
    if (rc == SS_CUDNN_OK && workspace < 0) {
        ss_put(description, description_size, "execution plan: negative workspace size %lld", (long long)workspace);
        rc = SS_CUDNN_INVALID;
    }
    ss_cudnn_conv *result = rc == SS_CUDNN_OK ? calloc(1, sizeof *result) : NULL;
    if (rc == SS_CUDNN_OK && result == NULL) {
        ss_put(description, description_size, "out of memory for a plan");
        rc = SS_CUDNN_NO_MEMORY;
    }
    if (rc != SS_CUDNN_OK) {
        destroy_descriptor(chosen);
        builder_release(&b);
        return rc;
    }

    int64_t global_index = engine_index(chosen_config);
    result->plan = chosen;
    memcpy(result->owned, b.owned, sizeof b.owned);
    result->owned_count = b.owned_count;
    result->has_bias = desc->has_bias != 0;
    result->has_residual = desc->has_residual != 0;
    result->workspace_bytes = (uint64_t)workspace;
    // A plan from the fallback list says why mode A gave none (a misuse of the heuristics would
    // otherwise hide behind the fallback).
    char via[600] = "";
    if (fallback) snprintf(via, sizeof via, " (fallback heuristics; mode A: %s)", mode_a_problem);
    if (global_index >= 0)
        ss_put(description, description_size, "engine %lld, heuristics rank %lld%s", (long long)global_index,
            (long long)chosen_rank, via);
    else
        ss_put(description, description_size, "engine ?, heuristics rank %lld%s", (long long)chosen_rank, via);
    *plan = result;
    *workspace_bytes = result->workspace_bytes;
    return SS_CUDNN_OK;
}

int ss_cudnn_conv_run(void *handle, const ss_cudnn_conv *plan, uint64_t x, uint64_t w, uint64_t bias, uint64_t residual,
                      uint64_t y, uint64_t workspace, char *error, size_t error_size) {
    ss_put(error, error_size, "%s", "");
    if (handle == NULL || plan == NULL) {
        ss_put(error, error_size, "ss_cudnn_conv_run: NULL handle or plan");
        return SS_CUDNN_INVALID;
    }
    if (x == 0 || w == 0 || y == 0 || (plan->has_bias && bias == 0) || (plan->has_residual && residual == 0) ||
        (plan->workspace_bytes > 0 && workspace == 0)) {
        ss_put(error, error_size, "ss_cudnn_conv_run: a NULL device pointer (x, w, y%s%s%s)", plan->has_bias ? ", bias" : "",
            plan->has_residual ? ", residual" : "", plan->workspace_bytes > 0 ? ", workspace" : "");
        return SS_CUDNN_INVALID;
    }
    int64_t uids[5] = {UID_X, UID_W, UID_Y};
    void *pointers[5] = {(void *)(uintptr_t)x, (void *)(uintptr_t)w, (void *)(uintptr_t)y};
    int64_t count = 3;
    if (plan->has_bias) {
        uids[count] = UID_BIAS;
        pointers[count++] = (void *)(uintptr_t)bias;
    }
    if (plan->has_residual) {
        uids[count] = UID_RESIDUAL;
        pointers[count++] = (void *)(uintptr_t)residual;
    }
    void *workspace_pointer = plan->workspace_bytes > 0 ? (void *)(uintptr_t)workspace : NULL;

    // A variant pack per call: the pointers change from one call to the next.
    void *pack = NULL;
    const char *what = "variant pack";
    int rc = create_descriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack, what, error, error_size);
    if (rc) return rc;
    if ((rc = set_attribute(error, error_size, pack, what, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
                            "CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS", CUDNN_TYPE_INT64, count, uids)) ||
        (rc = set_attribute(error, error_size, pack, what, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                            "CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS", CUDNN_TYPE_VOID_PTR, count, pointers)) ||
        (rc = set_attribute(error, error_size, pack, what, CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                            "CUDNN_ATTR_VARIANT_PACK_WORKSPACE", CUDNN_TYPE_VOID_PTR, 1, &workspace_pointer)) ||
        (rc = finalize(error, error_size, pack, what))) {
        destroy_descriptor(pack);
        return rc;
    }
    int status = ss_cudnnBackendExecute(handle, plan->plan, pack);
    if (status != CUDNN_STATUS_SUCCESS) cudnn_failure(error, error_size, status, "cudnnBackendExecute");
    destroy_descriptor(pack);
    return status;
}

void ss_cudnn_conv_destroy(ss_cudnn_conv *plan) {
    if (plan == NULL) return;
    destroy_descriptor(plan->plan);
    while (plan->owned_count > 0) destroy_descriptor(plan->owned[--plan->owned_count]);
    free(plan);
}
