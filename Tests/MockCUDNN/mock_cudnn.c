/* A mock libcudnn.so.9 (cuDNN 9.6's backend API) for the control-flow tests of CKernels/cudnn.c: no
 * GPU, no NVIDIA header. It keeps every handle and descriptor it hands out in a registry and
 * checks how they are used: each attribute set on the descriptor type that owns it, with the
 * attribute type cuDNN expects and a sane count; descriptors referenced only once finalized;
 * nothing set after finalization; finalize only with the attributes cuDNN requires (tensors NHWC
 * packed, the convolution's output size and channels consistent, the graph a chain conv ->
 * pointwise ... -> y through float virtual tensors); heuristics results, engines, workspace sizes
 * and execution as cuDNN reports them. A misuse is counted (mock_cudnn_misuses) and answered
 * with cuDNN's error status.
 *
 * Heuristics: mode A offers mock_cudnn_configs_a engine configs, the fallback mode
 * mock_cudnn_configs_fallback; the config of rank r has engine global index 10 + r, and a
 * workspace of 4096 bytes when r is odd (else 0).
 *
 * Failure injection (the test program sets these through dlsym; 0 = off):
 *   mock_cudnn_fail_set_at = n        the n-th cudnnBackendSetAttribute (counted in
 *                                     mock_cudnn_set_calls) returns mock_cudnn_fail_set_status
 *   mock_cudnn_fail_create_at = n     the n-th cudnnBackendCreateDescriptor (mock_cudnn_create_calls)
 *                                     returns CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED
 *   mock_cudnn_plan_fail_mask         bit r: the execution plan of the rank-r config does not finalize
 *   mock_cudnn_heur_fail_modes        bit m: heuristics in mode m do not finalize
 *   mock_cudnn_fail_execute, mock_cudnn_fail_handle_create, mock_cudnn_fail_set_stream:
 *                                     the status those calls return
 * cudnnGetLastErrorString returns the injected failure's text (with a trailing newline, as
 * cuDNN's may have). Observations: mock_cudnn_live (handles + descriptors alive), the last
 * graph's operation count, the last heuristics mode, the last ReLU clips, the last execution's
 * unique ids, pointers and workspace.
 *
 * Built by Scripts/build-plugins.sh as .build/sliceserve-plugins/libmock_cudnn.so.9; the
 * constants come from SliceServe's own CKernels/include/sliceserve_cudnn_abi.h, the prototypes
 * from sliceserve_cuda.h (SS_CUDNN_SYMBOLS, declared below so that a drift is a compile error). */
#include "sliceserve_cuda.h"
#include "sliceserve_cudnn_abi.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The loader's prototypes: every definition below must match them. */
#define MOCK_PROTOTYPE(ret, name, base, version, required, params, args) ret name params;
SS_CUDNN_SYMBOLS(MOCK_PROTOTYPE)
#undef MOCK_PROTOTYPE

/* ------------------------------------------------------------------------------------------- */
/* Knobs and observations (exported: the test reads and writes them through dlsym)              */
/* ------------------------------------------------------------------------------------------- */

int mock_cudnn_live = 0, mock_cudnn_misuses = 0;
char mock_cudnn_first_misuse[256] = "";
int mock_cudnn_set_calls = 0, mock_cudnn_fail_set_at = 0, mock_cudnn_fail_set_status = CUDNN_STATUS_BAD_PARAM;
int mock_cudnn_create_calls = 0, mock_cudnn_fail_create_at = 0;
int mock_cudnn_configs_a = 5, mock_cudnn_configs_fallback = 2, mock_cudnn_plan_fail_mask = 0, mock_cudnn_heur_fail_modes = 0;
int mock_cudnn_fail_execute = 0, mock_cudnn_fail_handle_create = 0, mock_cudnn_fail_set_stream = 0;
int mock_cudnn_exec_calls = 0, mock_cudnn_graph_ops = 0, mock_cudnn_heur_mode = -1;
double mock_cudnn_relu_lower = 0, mock_cudnn_relu_upper = 0;
void *mock_cudnn_last_stream = NULL;
int64_t mock_cudnn_last_uid_count = 0, mock_cudnn_last_uids[8];
void *mock_cudnn_last_pointers[8], *mock_cudnn_last_workspace = (void *)1;

static char last_error[256];

/* A misuse is counted, kept as the last error string, and the first one is kept for the test. */
#define MISUSE(...)                                                                                   \
    do {                                                                                              \
        snprintf(last_error, sizeof last_error, "mock cuDNN: misuse: " __VA_ARGS__);                   \
        if (mock_cudnn_misuses++ == 0)                                                                \
            snprintf(mock_cudnn_first_misuse, sizeof mock_cudnn_first_misuse, "%s", last_error);      \
    } while (0)

/* ------------------------------------------------------------------------------------------- */
/* Handles and descriptors                                                                      */
/* ------------------------------------------------------------------------------------------- */

enum { MAX_ATTRS = 16, ATTR_BYTES = 256, MAX_LIVE = 256 };
typedef struct attr { int name, type; int64_t count; unsigned char data[ATTR_BYTES]; } attr;
typedef struct desc {
    int type, finalized;
    int nattrs;
    attr attrs[MAX_ATTRS];
    int rank;              /* engine config / engine / plan: heuristics rank */
    struct desc *graph;    /* engine config / plan: the operation graph it is for */
    void *handle;          /* plan: its handle */
} desc;

/* Everything alive, so that a stale or foreign pointer is caught instead of dereferenced. */
static void *live_objects[MAX_LIVE];
static bool track(void *p) {
    for (int i = 0; i < MAX_LIVE; i++) if (!live_objects[i]) { live_objects[i] = p; mock_cudnn_live++; return true; }
    return false;
}
static bool alive(const void *p) {
    if (!p) return false;
    for (int i = 0; i < MAX_LIVE; i++) if (live_objects[i] == p) return true;
    return false;
}
static void untrack(void *p) {
    for (int i = 0; i < MAX_LIVE; i++) if (live_objects[i] == p) { live_objects[i] = NULL; mock_cudnn_live--; return; }
}

/* Handles are 16-byte blocks whose first word is this tag (descriptors are never that small). */
static const uint64_t HANDLE_TAG = 0x686e646c636e6e64ull;
static bool is_handle(const void *h) { return alive(h) && *(const uint64_t *)h == HANDLE_TAG; }
static desc *as_desc(void *d) { return alive(d) && !is_handle(d) ? (desc *)d : NULL; }

static const attr *find(const desc *x, int name) {
    for (int i = 0; x && i < x->nattrs; i++) if (x->attrs[i].name == name) return &x->attrs[i];
    return NULL;
}
static bool has(const desc *x, int name) { return find(x, name) != NULL; }
static int64_t i64(const desc *x, int name, int i) {
    const attr *a = find(x, name);
    return a && i < a->count ? ((const int64_t *)a->data)[i] : 0;
}
static int i32(const desc *x, int name) { const attr *a = find(x, name); return a ? *(const int *)a->data : -1; }
static bool boolean(const desc *x, int name) { const attr *a = find(x, name); return a && *(const bool *)a->data; }
static double f64(const desc *x, int name) { const attr *a = find(x, name); return a ? *(const double *)a->data : 0; }
static desc *ref(const desc *x, int name, int i) {
    const attr *a = find(x, name);
    return a && i < a->count ? ((desc *const *)a->data)[i] : NULL;
}

/* ------------------------------------------------------------------------------------------- */
/* Library, handles                                                                             */
/* ------------------------------------------------------------------------------------------- */

size_t cudnnGetVersion(void) { return SS_CUDNN_ABI_VERSION; }
/* cudnnGetCudartVersion is left out: the loader treats it as optional. */
const char *cudnnGetErrorString(ss_cudnnStatus status) { (void)status; return "mock cuDNN status"; }
void cudnnGetLastErrorString(char *message, size_t max_size) {
    if (message && max_size) snprintf(message, max_size, "%s\n", last_error);
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle) {
    if (!handle) { MISUSE("cudnnCreate(NULL)"); return CUDNN_STATUS_BAD_PARAM_NULL_POINTER; }
    if (mock_cudnn_fail_handle_create) {
        snprintf(last_error, sizeof last_error, "injected cudnnCreate failure");
        return mock_cudnn_fail_handle_create;
    }
    uint64_t *h = calloc(2, sizeof *h);
    if (!h || !track(h)) { free(h); return CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED; }
    h[0] = HANDLE_TAG;
    *handle = h;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
    if (!is_handle(handle)) { MISUSE("cudnnDestroy of a dead or foreign handle"); return CUDNN_STATUS_BAD_PARAM; }
    untrack(handle);
    *(uint64_t *)handle = 0;
    free(handle);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, ss_CUstream stream) {
    if (!is_handle(handle)) { MISUSE("cudnnSetStream on a dead or foreign handle"); return CUDNN_STATUS_BAD_PARAM; }
    if (mock_cudnn_fail_set_stream) {
        snprintf(last_error, sizeof last_error, "injected cudnnSetStream failure");
        return mock_cudnn_fail_set_stream;
    }
    mock_cudnn_last_stream = (void *)stream;
    return CUDNN_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------------------------------- */
/* Descriptors                                                                                  */
/* ------------------------------------------------------------------------------------------- */

static bool known_descriptor_type(int type) {
    switch (type) {
    case CUDNN_BACKEND_POINTWISE_DESCRIPTOR: case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR:
    case CUDNN_BACKEND_ENGINE_DESCRIPTOR: case CUDNN_BACKEND_ENGINECFG_DESCRIPTOR:
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR: case CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR:
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR: return true;
    default: return false;
    }
}

cudnnStatus_t cudnnBackendCreateDescriptor(cudnnBackendDescriptorType_t type, cudnnBackendDescriptor_t *descriptor) {
    if (++mock_cudnn_create_calls == mock_cudnn_fail_create_at) {
        snprintf(last_error, sizeof last_error, "injected failure at create %d", mock_cudnn_create_calls);
        return CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    }
    if (!descriptor) { MISUSE("cudnnBackendCreateDescriptor(%d, NULL)", type); return CUDNN_STATUS_BAD_PARAM_NULL_POINTER; }
    if (!known_descriptor_type(type)) { MISUSE("cudnnBackendCreateDescriptor of unexpected type %d", type); return CUDNN_STATUS_NOT_SUPPORTED; }
    desc *x = calloc(1, sizeof *x);
    if (!x || !track(x)) { free(x); return CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED; }
    x->type = type;
    x->rank = -1;
    *descriptor = x;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnBackendDestroyDescriptor(cudnnBackendDescriptor_t descriptor) {
    desc *x = as_desc(descriptor);
    if (!x) { MISUSE("destroy of a dead, NULL or foreign descriptor"); return CUDNN_STATUS_BAD_PARAM; }
    untrack(x);
    free(x);
    return CUDNN_STATUS_SUCCESS;
}

/* The attribute type cuDNN expects for each attribute name. */
static int expected_type(int name) {
    switch (name) {
    case CUDNN_ATTR_POINTWISE_MODE: return CUDNN_TYPE_POINTWISE_MODE;
    case CUDNN_ATTR_POINTWISE_MATH_PREC: case CUDNN_ATTR_CONVOLUTION_COMP_TYPE: case CUDNN_ATTR_TENSOR_DATA_TYPE: return CUDNN_TYPE_DATA_TYPE;
    case CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP: case CUDNN_ATTR_POINTWISE_RELU_UPPER_CLIP: case CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP_SLOPE: return CUDNN_TYPE_DOUBLE;
    case CUDNN_ATTR_CONVOLUTION_CONV_MODE: return CUDNN_TYPE_CONVOLUTION_MODE;
    case CUDNN_ATTR_CONVOLUTION_DILATIONS: case CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES: case CUDNN_ATTR_CONVOLUTION_POST_PADDINGS:
    case CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS: case CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS: case CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT:
    case CUDNN_ATTR_TENSOR_DIMENSIONS: case CUDNN_ATTR_TENSOR_STRIDES: case CUDNN_ATTR_TENSOR_UNIQUE_ID:
    case CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS: case CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE: case CUDNN_ATTR_ENGINE_GLOBAL_INDEX: return CUDNN_TYPE_INT64;
    case CUDNN_ATTR_ENGINEHEUR_MODE: return CUDNN_TYPE_HEUR_MODE;
    case CUDNN_ATTR_EXECUTION_PLAN_HANDLE: case CUDNN_ATTR_OPERATIONGRAPH_HANDLE: return CUDNN_TYPE_HANDLE;
    case CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA: case CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA:
    case CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1: case CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2: return CUDNN_TYPE_FLOAT;
    case CUDNN_ATTR_TENSOR_IS_VIRTUAL: return CUDNN_TYPE_BOOLEAN;
    case CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS: case CUDNN_ATTR_VARIANT_PACK_WORKSPACE: return CUDNN_TYPE_VOID_PTR;
    default: return CUDNN_TYPE_BACKEND_DESCRIPTOR;
    }
}
/* The descriptor type an attribute name belongs to (cuDNN numbers them in blocks), or -1. */
static int owner_type(int name) {
    if (name < 0) return -1;
    if (name < 100) return CUDNN_BACKEND_POINTWISE_DESCRIPTOR;
    if (name < 200) return CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR;
    if (name < 300) return CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR;
    if (name < 400) return CUDNN_BACKEND_ENGINECFG_DESCRIPTOR;
    if (name < 500) return CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR;
    if (name >= 700 && name < 750) return CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR;
    if (name >= 750 && name < 770) return CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR;
    if (name >= 800 && name < 900) return CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR;
    if (name >= 900 && name < 1000) return CUDNN_BACKEND_TENSOR_DESCRIPTOR;
    if (name >= 1000 && name < 1100) return CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR;
    if (name >= 1300 && name < 1400) return CUDNN_BACKEND_ENGINE_DESCRIPTOR;
    return -1;
}
/* Bytes per element of an attribute type (cuDNN's enums are int-sized; CUDNN_TYPE_BOOLEAN is C++ bool). */
static size_t type_size(int type) {
    switch (type) {
    case CUDNN_TYPE_BOOLEAN: return 1;
    case CUDNN_TYPE_INT64: case CUDNN_TYPE_DOUBLE: case CUDNN_TYPE_VOID_PTR: case CUDNN_TYPE_HANDLE:
    case CUDNN_TYPE_BACKEND_DESCRIPTOR: return 8;
    default: return 4;
    }
}

cudnnStatus_t cudnnBackendSetAttribute(cudnnBackendDescriptor_t descriptor, cudnnBackendAttributeName_t name,
                                       cudnnBackendAttributeType_t type, int64_t count, const void *elements) {
    if (++mock_cudnn_set_calls == mock_cudnn_fail_set_at) {
        snprintf(last_error, sizeof last_error, "injected failure at set %d", mock_cudnn_set_calls);
        return mock_cudnn_fail_set_status;
    }
    desc *x = as_desc(descriptor);
    if (!x) { MISUSE("set %d on a dead, NULL or foreign descriptor", name); return CUDNN_STATUS_BAD_PARAM; }
    if (x->finalized) { MISUSE("set %d on a finalized descriptor of type %d", name, x->type); return CUDNN_STATUS_BAD_PARAM; }
    if (owner_type(name) != x->type) { MISUSE("attribute %d on descriptor type %d", name, x->type); return CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE; }
    if (expected_type(name) != type) { MISUSE("attribute %d with type %d, expected %d", name, type, expected_type(name)); return CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE; }
    if (count < 1 || (size_t)count * type_size(type) > ATTR_BYTES || !elements) {
        MISUSE("attribute %d: count %lld, elements %p", name, (long long)count, elements);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (type == CUDNN_TYPE_BACKEND_DESCRIPTOR) {
        for (int64_t i = 0; i < count; i++) {
            desc *r = as_desc(((void *const *)elements)[i]);
            if (!r || !r->finalized) { MISUSE("attribute %d refers to a dead or unfinalized descriptor", name); return CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED; }
        }
    }
    if (type == CUDNN_TYPE_HANDLE && !is_handle(*(void *const *)elements)) {
        MISUSE("attribute %d: not a pointer to a live cudnnHandle_t", name);
        return CUDNN_STATUS_BAD_PARAM;
    }
    attr *a = (attr *)find(x, name);
    if (!a) {
        if (x->nattrs == MAX_ATTRS) { MISUSE("more than %d attributes on one descriptor", MAX_ATTRS); return CUDNN_STATUS_BAD_PARAM; }
        a = &x->attrs[x->nattrs++];
    }
    a->name = name;
    a->type = type;
    a->count = count;
    memcpy(a->data, elements, (size_t)count * type_size(type));
    return CUDNN_STATUS_SUCCESS;
}

static int64_t heuristics_count(const desc *heur) {
    int mode = i32(heur, CUDNN_ATTR_ENGINEHEUR_MODE);
    return mode == CUDNN_HEUR_MODE_A ? mock_cudnn_configs_a : mode == CUDNN_HEUR_MODE_FALLBACK ? mock_cudnn_configs_fallback : 0;
}
/* The output tensor of a convolution or pointwise operation. */
static desc *output_of(const desc *op) {
    return op->type == CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR ? ref(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, 0)
                                                                               : ref(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, 0);
}

#define REQUIRE(a)                                                                                    \
    do {                                                                                              \
        if (!has(x, a)) {                                                                             \
            MISUSE("finalize of descriptor type %d without %s", x->type, #a);                          \
            return CUDNN_STATUS_BAD_PARAM;                                                            \
        }                                                                                             \
    } while (0)
#define CHECK(condition, status, ...)                                                                 \
    do {                                                                                              \
        if (!(condition)) { MISUSE(__VA_ARGS__); return status; }                                     \
    } while (0)

static cudnnStatus_t finalize_graph(desc *x) {
    REQUIRE(CUDNN_ATTR_OPERATIONGRAPH_OPS);
    REQUIRE(CUDNN_ATTR_OPERATIONGRAPH_HANDLE);
    const attr *ops_attr = find(x, CUDNN_ATTR_OPERATIONGRAPH_OPS);
    int n = (int)ops_attr->count;
    desc *const *ops = (desc *const *)ops_attr->data;
    mock_cudnn_graph_ops = n;
    CHECK(ops[0]->type == CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, CUDNN_STATUS_BAD_PARAM,
          "graph: the first operation is not the convolution");
    /* A chain: op i's Y is op i+1's X, a float virtual tensor; the pointwise operands are real tensors. */
    for (int i = 0; i < n; i++) {
        CHECK(i == 0 || ops[i]->type == CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, CUDNN_STATUS_BAD_PARAM,
              "graph: operation %d is not pointwise", i);
        desc *operand = i > 0 ? ref(ops[i], CUDNN_ATTR_OPERATION_POINTWISE_BDESC, 0) : NULL;
        CHECK(!operand || (!boolean(operand, CUDNN_ATTR_TENSOR_IS_VIRTUAL) &&
                           ((i64(operand, CUDNN_ATTR_TENSOR_UNIQUE_ID, 0) == 4 && i32(operand, CUDNN_ATTR_TENSOR_DATA_TYPE) == CUDNN_DATA_FLOAT) ||
                            (i64(operand, CUDNN_ATTR_TENSOR_UNIQUE_ID, 0) == 5 && i32(operand, CUDNN_ATTR_TENSOR_DATA_TYPE) == CUDNN_DATA_HALF))),
              CUDNN_STATUS_BAD_PARAM, "graph: operand of operation %d is not the float bias (uid 4) or the half residual (uid 5)", i);
        if (i + 1 == n) break;
        desc *y = output_of(ops[i]);
        CHECK(y == ref(ops[i + 1], CUDNN_ATTR_OPERATION_POINTWISE_XDESC, 0), CUDNN_STATUS_BAD_PARAM, "graph not chained at operation %d", i);
        CHECK(boolean(y, CUDNN_ATTR_TENSOR_IS_VIRTUAL), CUDNN_STATUS_BAD_PARAM, "intermediate %d not virtual", i);
        CHECK(i32(y, CUDNN_ATTR_TENSOR_DATA_TYPE) == CUDNN_DATA_FLOAT, CUDNN_STATUS_BAD_PARAM, "intermediate %d not float", i);
    }
    desc *y = output_of(ops[n - 1]);
    CHECK(y && i64(y, CUDNN_ATTR_TENSOR_UNIQUE_ID, 0) == 3 && !boolean(y, CUDNN_ATTR_TENSOR_IS_VIRTUAL) &&
              i32(y, CUDNN_ATTR_TENSOR_DATA_TYPE) == CUDNN_DATA_HALF,
          CUDNN_STATUS_BAD_PARAM, "graph: the final output is not y (uid 3, half, real)");
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendFinalize(cudnnBackendDescriptor_t descriptor) {
    desc *x = as_desc(descriptor);
    if (!x) { MISUSE("finalize of a dead, NULL or foreign descriptor"); return CUDNN_STATUS_BAD_PARAM; }
    if (x->finalized) { MISUSE("finalize twice (type %d)", x->type); return CUDNN_STATUS_BAD_PARAM; }
    switch (x->type) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR: {
        REQUIRE(CUDNN_ATTR_TENSOR_DATA_TYPE); REQUIRE(CUDNN_ATTR_TENSOR_DIMENSIONS); REQUIRE(CUDNN_ATTR_TENSOR_STRIDES);
        REQUIRE(CUDNN_ATTR_TENSOR_UNIQUE_ID); REQUIRE(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT);
        CHECK(find(x, CUDNN_ATTR_TENSOR_DIMENSIONS)->count == 4 && find(x, CUDNN_ATTR_TENSOR_STRIDES)->count == 4,
              CUDNN_STATUS_BAD_PARAM, "tensor: not 4 dimensions and 4 strides");
        /* NHWC packed (dimensions in N, C, H, W order): stride of C 1, of W C, of H W*C, of N H*W*C. */
        int64_t c = i64(x, CUDNN_ATTR_TENSOR_DIMENSIONS, 1), h = i64(x, CUDNN_ATTR_TENSOR_DIMENSIONS, 2), w = i64(x, CUDNN_ATTR_TENSOR_DIMENSIONS, 3);
        CHECK(i64(x, CUDNN_ATTR_TENSOR_STRIDES, 1) == 1 && i64(x, CUDNN_ATTR_TENSOR_STRIDES, 3) == c &&
                  i64(x, CUDNN_ATTR_TENSOR_STRIDES, 2) == w * c && i64(x, CUDNN_ATTR_TENSOR_STRIDES, 0) == h * w * c,
              CUDNN_STATUS_BAD_PARAM, "tensor uid %lld: strides not NHWC", (long long)i64(x, CUDNN_ATTR_TENSOR_UNIQUE_ID, 0));
        break;
    }
    case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR:
        REQUIRE(CUDNN_ATTR_CONVOLUTION_COMP_TYPE); REQUIRE(CUDNN_ATTR_CONVOLUTION_CONV_MODE); REQUIRE(CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS);
        REQUIRE(CUDNN_ATTR_CONVOLUTION_DILATIONS); REQUIRE(CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES);
        REQUIRE(CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS); REQUIRE(CUDNN_ATTR_CONVOLUTION_POST_PADDINGS);
        break;
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR: {
        REQUIRE(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X); REQUIRE(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W);
        REQUIRE(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y); REQUIRE(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC);
        desc *X = ref(x, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, 0), *W = ref(x, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, 0);
        desc *Y = ref(x, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, 0), *C = ref(x, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, 0);
        for (int s = 0; s < 2; s++) {
            int64_t in = i64(X, CUDNN_ATTR_TENSOR_DIMENSIONS, 2 + s), k = i64(W, CUDNN_ATTR_TENSOR_DIMENSIONS, 2 + s);
            int64_t out = i64(Y, CUDNN_ATTR_TENSOR_DIMENSIONS, 2 + s);
            int64_t pre = i64(C, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, s), post = i64(C, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, s);
            int64_t stride = i64(C, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, s), dilation = i64(C, CUDNN_ATTR_CONVOLUTION_DILATIONS, s);
            CHECK(stride > 0 && (in + pre + post - dilation * (k - 1) - 1) / stride + 1 == out, CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH,
                  "convolution: output size mismatch in spatial dimension %d", s);
        }
        CHECK(i64(X, CUDNN_ATTR_TENSOR_DIMENSIONS, 1) == i64(W, CUDNN_ATTR_TENSOR_DIMENSIONS, 1) &&
                  i64(W, CUDNN_ATTR_TENSOR_DIMENSIONS, 0) == i64(Y, CUDNN_ATTR_TENSOR_DIMENSIONS, 1),
              CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH, "convolution: channels of x, w and y disagree");
        break;
    }
    case CUDNN_BACKEND_POINTWISE_DESCRIPTOR:
        REQUIRE(CUDNN_ATTR_POINTWISE_MODE); REQUIRE(CUDNN_ATTR_POINTWISE_MATH_PREC);
        if (i32(x, CUDNN_ATTR_POINTWISE_MODE) == CUDNN_POINTWISE_RELU_FWD) {
            mock_cudnn_relu_lower = f64(x, CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP);
            mock_cudnn_relu_upper = f64(x, CUDNN_ATTR_POINTWISE_RELU_UPPER_CLIP);
        }
        break;
    case CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR: {
        REQUIRE(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR); REQUIRE(CUDNN_ATTR_OPERATION_POINTWISE_XDESC);
        REQUIRE(CUDNN_ATTR_OPERATION_POINTWISE_YDESC);
        int mode = i32(ref(x, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, 0), CUDNN_ATTR_POINTWISE_MODE);
        if (mode == CUDNN_POINTWISE_ADD) REQUIRE(CUDNN_ATTR_OPERATION_POINTWISE_BDESC);
        CHECK(mode != CUDNN_POINTWISE_RELU_FWD || !has(x, CUDNN_ATTR_OPERATION_POINTWISE_BDESC), CUDNN_STATUS_BAD_PARAM,
              "pointwise: ReLU with a B operand");
        break;
    }
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: {
        cudnnStatus_t status = finalize_graph(x);
        if (status != CUDNN_STATUS_SUCCESS) return status;
        break;
    }
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: {
        REQUIRE(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH); REQUIRE(CUDNN_ATTR_ENGINEHEUR_MODE);
        int mode = i32(x, CUDNN_ATTR_ENGINEHEUR_MODE);
        mock_cudnn_heur_mode = mode;
        if (mode >= 0 && mode < 31 && (mock_cudnn_heur_fail_modes & (1 << mode))) {
            snprintf(last_error, sizeof last_error, "injected: no heuristics in mode %d", mode);
            return CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN;
        }
        break;
    }
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: {
        REQUIRE(CUDNN_ATTR_EXECUTION_PLAN_HANDLE); REQUIRE(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG);
        desc *config = ref(x, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, 0);
        CHECK(config->type == CUDNN_BACKEND_ENGINECFG_DESCRIPTOR && config->rank >= 0, CUDNN_STATUS_BAD_PARAM,
              "execution plan: the engine config is not one from the heuristics");
        x->rank = config->rank;
        x->graph = config->graph;
        x->handle = *(void *const *)find(x, CUDNN_ATTR_EXECUTION_PLAN_HANDLE)->data;
        if (x->rank < 31 && (mock_cudnn_plan_fail_mask & (1 << x->rank))) {
            snprintf(last_error, sizeof last_error, "engine of rank %d does not fit", x->rank);
            return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
        }
        break;
    }
    case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR:
        REQUIRE(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS); REQUIRE(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS); REQUIRE(CUDNN_ATTR_VARIANT_PACK_WORKSPACE);
        CHECK(find(x, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS)->count == find(x, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS)->count,
              CUDNN_STATUS_BAD_PARAM, "variant pack: %lld unique ids, %lld pointers",
              (long long)find(x, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS)->count, (long long)find(x, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS)->count);
        break;
    default:
        MISUSE("finalize of unexpected descriptor type %d", x->type);
        return CUDNN_STATUS_BAD_PARAM;
    }
    x->finalized = 1;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendGetAttribute(cudnnBackendDescriptor_t const descriptor, cudnnBackendAttributeName_t name,
                                       cudnnBackendAttributeType_t type, int64_t requested, int64_t *count, void *elements) {
    desc *x = as_desc(descriptor);
    if (!x) { MISUSE("get %d on a dead, NULL or foreign descriptor", name); return CUDNN_STATUS_BAD_PARAM; }
    if (owner_type(name) != x->type) { MISUSE("get %d on descriptor type %d", name, x->type); return CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE; }
    if (expected_type(name) != type) { MISUSE("get %d with type %d, expected %d", name, type, expected_type(name)); return CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE; }
    if (!x->finalized) { MISUSE("get %d before finalize", name); return CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED; }
    if (!count || (requested > 0 && !elements) || requested < 0) { MISUSE("get %d: NULL count or elements", name); return CUDNN_STATUS_BAD_PARAM_NULL_POINTER; }
    switch (name) {
    case CUDNN_ATTR_ENGINEHEUR_RESULTS: {
        int64_t available = heuristics_count(x);
        if (requested == 0) { *count = available; return CUDNN_STATUS_SUCCESS; }
        int64_t k = requested < available ? requested : available;
        for (int64_t i = 0; i < k; i++) {
            desc *config = as_desc(((void **)elements)[i]);
            CHECK(config && config->type == CUDNN_BACKEND_ENGINECFG_DESCRIPTOR && !config->finalized, CUDNN_STATUS_BAD_PARAM,
                  "heuristics results: element %lld is not a fresh engine config", (long long)i);
            config->rank = (int)i;
            config->graph = ref(x, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, 0);
            config->finalized = 1;
        }
        *count = k;
        return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_ATTR_ENGINECFG_ENGINE: {
        CHECK(requested >= 1, CUDNN_STATUS_BAD_PARAM, "engine config's engine: requested %lld", (long long)requested);
        desc *engine = as_desc(*(void **)elements);
        CHECK(engine && engine->type == CUDNN_BACKEND_ENGINE_DESCRIPTOR, CUDNN_STATUS_BAD_PARAM, "engine config's engine: not an engine descriptor");
        engine->rank = x->rank;
        engine->finalized = 1;
        *count = 1;
        return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_ATTR_ENGINE_GLOBAL_INDEX:
        CHECK(requested >= 1, CUDNN_STATUS_BAD_PARAM, "engine index: requested %lld", (long long)requested);
        *(int64_t *)elements = 10 + x->rank;
        *count = 1;
        return CUDNN_STATUS_SUCCESS;
    case CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE:
        CHECK(requested >= 1, CUDNN_STATUS_BAD_PARAM, "workspace size: requested %lld", (long long)requested);
        *(int64_t *)elements = (x->rank & 1) ? 4096 : 0;
        *count = 1;
        return CUDNN_STATUS_SUCCESS;
    default:
        MISUSE("unexpected get %d", name);
        return CUDNN_STATUS_BAD_PARAM;
    }
}

/* The unique ids of the real (non-virtual) tensors of `graph`, as a bit set. */
static uint64_t graph_uids(const desc *graph) {
    uint64_t bits = 0;
    const attr *ops = find(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS);
    for (int64_t i = 0; ops && i < ops->count; i++) {
        const desc *op = ((desc *const *)ops->data)[i];
        const desc *tensors[4] = {0};
        if (op->type == CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR) {
            tensors[0] = ref(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, 0);
            tensors[1] = ref(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, 0);
            tensors[2] = ref(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, 0);
        } else {
            tensors[0] = ref(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, 0);
            tensors[1] = ref(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, 0);
            tensors[2] = ref(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, 0);
        }
        for (int t = 0; t < 4; t++) {
            int64_t uid = tensors[t] ? i64(tensors[t], CUDNN_ATTR_TENSOR_UNIQUE_ID, 0) : -1;
            if (tensors[t] && !boolean(tensors[t], CUDNN_ATTR_TENSOR_IS_VIRTUAL) && uid >= 0 && uid < 64) bits |= 1ull << uid;
        }
    }
    return bits;
}

cudnnStatus_t cudnnBackendExecute(cudnnHandle_t handle, cudnnBackendDescriptor_t execution_plan, cudnnBackendDescriptor_t variant_pack) {
    desc *plan = as_desc(execution_plan), *pack = as_desc(variant_pack);
    CHECK(is_handle(handle), CUDNN_STATUS_BAD_PARAM, "execute: dead or foreign handle");
    CHECK(plan && plan->finalized && plan->type == CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, CUDNN_STATUS_BAD_PARAM,
          "execute: not a finalized execution plan");
    CHECK(pack && pack->finalized && pack->type == CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, CUDNN_STATUS_BAD_PARAM,
          "execute: not a finalized variant pack");
    CHECK(plan->handle == handle, CUDNN_STATUS_BAD_PARAM, "execute: the plan was made on another handle");
    CHECK(as_desc(plan->graph) == plan->graph && plan->graph && plan->graph->type == CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR,
          CUDNN_STATUS_BAD_PARAM, "execute: the plan's operation graph was destroyed");
    if (mock_cudnn_fail_execute) {
        snprintf(last_error, sizeof last_error, "injected execution failure");
        return mock_cudnn_fail_execute;
    }
    mock_cudnn_exec_calls++;
    const attr *uids = find(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS), *pointers = find(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS);
    CHECK(uids->count <= 8, CUDNN_STATUS_BAD_PARAM, "execute: %lld tensors in the variant pack", (long long)uids->count);
    uint64_t bound = 0;
    mock_cudnn_last_uid_count = uids->count;
    for (int64_t i = 0; i < uids->count; i++) {
        int64_t uid = ((const int64_t *)uids->data)[i];
        void *pointer = ((void *const *)pointers->data)[i];
        mock_cudnn_last_uids[i] = uid;
        mock_cudnn_last_pointers[i] = pointer;
        CHECK(uid >= 0 && uid < 64 && !(bound & (1ull << uid)), CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES, "execute: uid %lld twice or out of range", (long long)uid);
        CHECK(pointer != NULL, CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "execute: NULL pointer for uid %lld", (long long)uid);
        bound |= 1ull << uid;
    }
    CHECK(bound == graph_uids(plan->graph), CUDNN_STATUS_BAD_PARAM, "execute: the variant pack binds uids %#llx, the graph has %#llx",
          (unsigned long long)bound, (unsigned long long)graph_uids(plan->graph));
    mock_cudnn_last_workspace = *(void *const *)find(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE)->data;
    CHECK(!(plan->rank & 1) || mock_cudnn_last_workspace != NULL, CUDNN_STATUS_BAD_PARAM_NULL_POINTER,
          "execute: no workspace for a plan that needs 4096 bytes");
    return CUDNN_STATUS_SUCCESS;
}
