/* A mock libcublasLt.so (the cuBLASLt matmul API of CUDA 12.6 / 13.0) for the control-flow tests of
 * CKernels/cublaslt.c: no GPU, no NVIDIA header, no arithmetic. It keeps every handle, matmul
 * descriptor, matrix layout and preference it hands out in a registry and checks how they are
 * used, by cublasLt.h's rules: each attribute id known and set with the size of the C type the
 * header gives it (int32_t / uint32_t 4 bytes, uint64_t / int64_t / pointers 8), a scale type that
 * goes with the compute type, transposes N or T, the epilogues the shim may ask for, a bias of D's
 * type; layouts half, column-major, ld >= rows; A, B, C and D consistent as op(A) M x K, op(B) K x N,
 * C = D M x N; each object destroyed once, by its own Destroy. cublasLtMatmul checks that the algo
 * is one the heuristics gave for this very description, the scalars (1 and 0), the pointers (not
 * NULL; C = D; each as aligned as the heuristics were told, the bias's alignment read from its
 * address during the heuristics as cuBLASLt does), the workspace, and records them. A misuse is
 * counted (mock_cublaslt_misuses) and answered with a cuBLAS error status.
 *
 * Heuristics: result r (r = 0 ... mock_cublaslt_algos - 1) needs a workspace of 4096 bytes when r
 * is odd (else 0), and is left out when that exceeds CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES; its
 * wavesCount is 0.25 * (r + 1); its state is CUBLAS_STATUS_NOT_SUPPORTED when bit r of
 * mock_cublaslt_bad_state_mask is set. At most requestedAlgoCount results are written.
 *
 * Failure injection (the test program sets these through dlsym; 0 = off):
 *   mock_cublaslt_fail_at = n         the n-th call (counted in mock_cublaslt_calls: every entry point
 *                                     but the Destroy and version calls) returns mock_cublaslt_fail_status
 *                                     and writes its name to mock_cublaslt_failed_call
 *   mock_cublaslt_fail_create, mock_cublaslt_heuristic_status, mock_cublaslt_fail_matmul:
 *                                     the status cublasLtCreate, cublasLtMatmulAlgoGetHeuristic and
 *                                     cublasLtMatmul return
 * Observations: mock_cublaslt_live (handles + descriptors + layouts + preferences alive), what the last
 * heuristics saw (GEMM sizes, transposes, epilogue, bias type and address, layouts, types,
 * preference), what the last matmul was given.
 *
 * Built by Scripts/build-plugins.sh as .build/sliceserve-plugins/libmock_cublaslt.so; the
 * constants come from SliceServe's own CKernels/include/sliceserve_cublaslt_abi.h, the prototypes
 * from sliceserve_cuda.h (SS_CUBLASLT_SYMBOLS, declared below so that a drift is a compile error). */
#include "sliceserve_cuda.h"
#include "sliceserve_cublaslt_abi.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The loader's prototypes: every definition below must match them. */
#define MOCK_PROTOTYPE(ret, name, base, version, required, params, args) ret name params;
SS_CUBLASLT_SYMBOLS(MOCK_PROTOTYPE)
#undef MOCK_PROTOTYPE

/* ------------------------------------------------------------------------------------------- */
/* Knobs and observations (exported: the test reads and writes them through dlsym)              */
/* ------------------------------------------------------------------------------------------- */

int mock_cublaslt_live = 0, mock_cublaslt_misuses = 0;
char mock_cublaslt_first_misuse[256] = "";
int mock_cublaslt_calls = 0, mock_cublaslt_fail_at = 0, mock_cublaslt_fail_status = CUBLAS_STATUS_INVALID_VALUE;
char mock_cublaslt_failed_call[64] = "";
int mock_cublaslt_algos = 5, mock_cublaslt_bad_state_mask = 0;
int mock_cublaslt_fail_create = 0, mock_cublaslt_heuristic_status = 0, mock_cublaslt_fail_matmul = 0;
/* The last heuristics. */
int mock_cublaslt_heuristic_calls = 0, mock_cublaslt_requested = 0;
int64_t mock_cublaslt_gemm_m = 0, mock_cublaslt_gemm_n = 0, mock_cublaslt_gemm_k = 0;
int mock_cublaslt_transa = -1, mock_cublaslt_transb = -1, mock_cublaslt_epilogue = -1, mock_cublaslt_bias_type = -2;
int mock_cublaslt_compute_type = -1, mock_cublaslt_scale_type = -1;
const void *mock_cublaslt_heuristic_bias = NULL;
int64_t mock_cublaslt_layouts[3][3];  /* A, B, D: rows, cols, ld */
uint64_t mock_cublaslt_max_workspace = 0;
uint32_t mock_cublaslt_min_alignment[4];
/* The last matmul. */
int mock_cublaslt_matmul_calls = 0, mock_cublaslt_algo_rank = -1;
const void *mock_cublaslt_a = NULL, *mock_cublaslt_b = NULL, *mock_cublaslt_c = NULL, *mock_cublaslt_bias = NULL;
void *mock_cublaslt_d = NULL, *mock_cublaslt_workspace = (void *)1, *mock_cublaslt_stream = NULL;
size_t mock_cublaslt_workspace_size = 99;
float mock_cublaslt_alpha = -1, mock_cublaslt_beta = -1;

/* A misuse is counted, and the first one is kept for the test. */
#define MISUSE(...)                                                                                   \
    do {                                                                                              \
        if (mock_cublaslt_misuses++ == 0)                                                             \
            snprintf(mock_cublaslt_first_misuse, sizeof mock_cublaslt_first_misuse, "mock cuBLASLt: " __VA_ARGS__); \
    } while (0)
#define CHECK(condition, status, ...)                                                                 \
    do {                                                                                              \
        if (!(condition)) { MISUSE(__VA_ARGS__); return status; }                                     \
    } while (0)

/* Counts a call; true when this one is to fail. */
static bool inject(const char *name) {
    if (++mock_cublaslt_calls != mock_cublaslt_fail_at) return false;
    snprintf(mock_cublaslt_failed_call, sizeof mock_cublaslt_failed_call, "%s", name);
    return true;
}

/* ------------------------------------------------------------------------------------------- */
/* Objects                                                                                      */
/* ------------------------------------------------------------------------------------------- */

enum { HANDLE = 1, MATMUL, LAYOUT, PREFERENCE };
static const char *const kind_names[] = {"?", "handle", "matmul descriptor", "matrix layout", "preference"};

/* The attributes of a matmul descriptor this mock knows, by id; `set` marks those set. */
enum { MAX_ATTRIBUTE = 32 };
typedef struct object {
    uint64_t tag;
    int kind;
    /* matmul descriptor */
    int compute_type, scale_type;
    bool set[MAX_ATTRIBUTE];
    int32_t transa, transb, bias_type, pointer_mode;
    uint32_t epilogue;
    const void *bias;
    /* layout */
    int type;
    uint64_t rows, cols;
    int64_t ld;
    /* preference */
    uint64_t max_workspace;
    uint32_t min_alignment[4];
} object;

static const uint64_t OBJECT_TAG = 0x6d6f636b626c6173ull, ALGO_TAG = 0x616c676f6d6f636bull;

enum { MAX_LIVE = 256 };
static object *live_objects[MAX_LIVE];
static bool track(object *p) {
    for (int i = 0; i < MAX_LIVE; i++) if (!live_objects[i]) { live_objects[i] = p; mock_cublaslt_live++; return true; }
    return false;
}
static object *as(const void *p, int kind) {
    if (!p) return NULL;
    for (int i = 0; i < MAX_LIVE; i++)
        if (live_objects[i] == p) return live_objects[i]->kind == kind ? live_objects[i] : NULL;
    return NULL;
}
static void untrack(object *p) {
    for (int i = 0; i < MAX_LIVE; i++) if (live_objects[i] == p) { live_objects[i] = NULL; mock_cublaslt_live--; return; }
}

static cublasStatus_t create(void **out, int kind, object **created) {
    *created = NULL;
    CHECK(out != NULL, CUBLAS_STATUS_INVALID_VALUE, "create of a %s into NULL", kind_names[kind]);
    object *x = calloc(1, sizeof *x);
    if (!x || !track(x)) { free(x); return CUBLAS_STATUS_ALLOC_FAILED; }
    x->tag = OBJECT_TAG;
    x->kind = kind;
    x->bias_type = -1;  /* CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE's default */
    x->epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    x->transa = x->transb = CUBLAS_OP_N;
    for (int i = 0; i < 4; i++) x->min_alignment[i] = 256;  /* CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES' default */
    *out = x;
    *created = x;
    return CUBLAS_STATUS_SUCCESS;
}
static cublasStatus_t destroy(void *p, int kind, const char *call) {
    object *x = as(p, kind);
    CHECK(x != NULL, CUBLAS_STATUS_INVALID_VALUE, "%s of a dead, NULL or foreign %s (%p)", call, kind_names[kind], p);
    untrack(x);
    x->tag = 0;
    free(x);
    return CUBLAS_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------------------------------- */
/* Library and handles                                                                          */
/* ------------------------------------------------------------------------------------------- */

size_t cublasLtGetVersion(void) { return SS_CUBLASLT_ABI_VERSION; }
/* cublasLtGetCudartVersion is left out: the loader treats it as optional. */

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle) {
    if (inject("cublasLtCreate")) return mock_cublaslt_fail_status;
    if (mock_cublaslt_fail_create) return mock_cublaslt_fail_create;
    object *x;
    return create(handle, HANDLE, &x);
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) { return destroy(handle, HANDLE, "cublasLtDestroy"); }

/* ------------------------------------------------------------------------------------------- */
/* Matmul descriptors                                                                           */
/* ------------------------------------------------------------------------------------------- */

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, int compute_type, int scale_type) {
    if (inject("cublasLtMatmulDescCreate")) return mock_cublaslt_fail_status;
    /* Half A, B, C, D with float accumulation: CUBLAS_COMPUTE_32F, whose scale type is CUDA_R_32F. */
    CHECK(compute_type == CUBLAS_COMPUTE_32F, CUBLAS_STATUS_NOT_SUPPORTED, "compute type %d, not CUBLAS_COMPUTE_32F", compute_type);
    CHECK(scale_type == CUDA_R_32F, CUBLAS_STATUS_INVALID_VALUE, "scale type %d with CUBLAS_COMPUTE_32F, not CUDA_R_32F", scale_type);
    object *x;
    cublasStatus_t status = create(desc, MATMUL, &x);
    if (x) { x->compute_type = compute_type; x->scale_type = scale_type; }
    return status;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) { return destroy(desc, MATMUL, "cublasLtMatmulDescDestroy"); }

/* The size of the C type cublasLt.h gives each matmul descriptor attribute (0: unknown id). */
static size_t matmul_attribute_size(int attribute) {
    switch (attribute) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: case CUBLASLT_MATMUL_DESC_SCALE_TYPE: case CUBLASLT_MATMUL_DESC_POINTER_MODE:
    case CUBLASLT_MATMUL_DESC_TRANSA: case CUBLASLT_MATMUL_DESC_TRANSB: case CUBLASLT_MATMUL_DESC_TRANSC:
    case CUBLASLT_MATMUL_DESC_FILL_MODE: case CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET: case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
        return sizeof(int32_t);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return sizeof(uint32_t);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return sizeof(void *);
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE: return sizeof(int64_t);
    default: return 0;
    }
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, int attribute, const void *buffer, size_t size) {
    if (inject("cublasLtMatmulDescSetAttribute")) return mock_cublaslt_fail_status;
    object *x = as(desc, MATMUL);
    CHECK(x != NULL, CUBLAS_STATUS_INVALID_VALUE, "set %d on a dead, NULL or foreign matmul descriptor", attribute);
    size_t want = matmul_attribute_size(attribute);
    CHECK(want != 0, CUBLAS_STATUS_INVALID_VALUE, "unknown or unexpected matmul attribute %d", attribute);
    CHECK(buffer != NULL && size == want, CUBLAS_STATUS_INVALID_VALUE, "matmul attribute %d: %zu bytes at %p, expected %zu",
          attribute, size, buffer, want);
    int32_t i32;
    memcpy(&i32, buffer, sizeof i32 <= size ? sizeof i32 : size);
    switch (attribute) {
    case CUBLASLT_MATMUL_DESC_TRANSA: case CUBLASLT_MATMUL_DESC_TRANSB:
        CHECK(i32 == CUBLAS_OP_N || i32 == CUBLAS_OP_T, CUBLAS_STATUS_INVALID_VALUE, "transpose %d", i32);
        *(attribute == CUBLASLT_MATMUL_DESC_TRANSA ? &x->transa : &x->transb) = i32;
        break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: {
        uint32_t e;
        memcpy(&e, buffer, sizeof e);
        CHECK(e == CUBLASLT_EPILOGUE_DEFAULT || e == CUBLASLT_EPILOGUE_RELU || e == CUBLASLT_EPILOGUE_BIAS ||
                  e == CUBLASLT_EPILOGUE_RELU_BIAS,
              CUBLAS_STATUS_INVALID_VALUE, "epilogue %u, not DEFAULT, RELU, BIAS or RELU_BIAS", e);
        x->epilogue = e;
        break;
    }
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: memcpy(&x->bias, buffer, sizeof x->bias); break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: x->bias_type = i32; break;
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: x->pointer_mode = i32; break;
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: x->compute_type = i32; break;
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: x->scale_type = i32; break;
    case CUBLASLT_MATMUL_DESC_TRANSC:
        CHECK(i32 == CUBLAS_OP_N, CUBLAS_STATUS_NOT_SUPPORTED, "TRANSC %d (\"Currently only CUBLAS_OP_N is supported\")", i32);
        break;
    default: break;
    }
    x->set[attribute] = true;
    return CUBLAS_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------------------------------- */
/* Layouts and preferences                                                                      */
/* ------------------------------------------------------------------------------------------- */

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, int type, uint64_t rows, uint64_t cols, int64_t ld) {
    if (inject("cublasLtMatrixLayoutCreate")) return mock_cublaslt_fail_status;
    CHECK(type == CUDA_R_16F, CUBLAS_STATUS_NOT_SUPPORTED, "layout of type %d, not CUDA_R_16F", type);
    /* "Usually only values that can be expressed as int32_t are supported"; for ORDER_COL (the
     * default) ld "greater or equal to CUBLASLT_MATRIX_LAYOUT_ROWS". */
    CHECK(rows >= 1 && cols >= 1 && rows <= INT32_MAX && cols <= INT32_MAX, CUBLAS_STATUS_INVALID_VALUE,
          "layout %llu x %llu", (unsigned long long)rows, (unsigned long long)cols);
    CHECK(ld >= 0 && (uint64_t)ld >= rows, CUBLAS_STATUS_INVALID_VALUE, "layout %llu x %llu with ld %lld < rows",
          (unsigned long long)rows, (unsigned long long)cols, (long long)ld);
    object *x;
    cublasStatus_t status = create(layout, LAYOUT, &x);
    if (x) { x->type = type; x->rows = rows; x->cols = cols; x->ld = ld; }
    return status;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    return destroy(layout, LAYOUT, "cublasLtMatrixLayoutDestroy");
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *preference) {
    if (inject("cublasLtMatmulPreferenceCreate")) return mock_cublaslt_fail_status;
    object *x;
    return create(preference, PREFERENCE, &x);
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t preference) {
    return destroy(preference, PREFERENCE, "cublasLtMatmulPreferenceDestroy");
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t preference, int attribute, const void *buffer,
                                                    size_t size) {
    if (inject("cublasLtMatmulPreferenceSetAttribute")) return mock_cublaslt_fail_status;
    object *x = as(preference, PREFERENCE);
    CHECK(x != NULL, CUBLAS_STATUS_INVALID_VALUE, "set %d on a dead, NULL or foreign preference", attribute);
    size_t want = 0;
    switch (attribute) {
    case CUBLASLT_MATMUL_PREF_SEARCH_MODE: case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: want = sizeof(uint32_t); break;
    case CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT: want = sizeof(float); break;
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: case CUBLASLT_MATMUL_PREF_IMPL_MASK: want = sizeof(uint64_t); break;
    default: break;
    }
    CHECK(want != 0, CUBLAS_STATUS_INVALID_VALUE, "unknown preference attribute %d", attribute);
    CHECK(buffer != NULL && size == want, CUBLAS_STATUS_INVALID_VALUE, "preference attribute %d: %zu bytes at %p, expected %zu",
          attribute, size, buffer, want);
    if (attribute == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) memcpy(&x->max_workspace, buffer, sizeof x->max_workspace);
    if (attribute >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && attribute <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES) {
        uint32_t a;
        memcpy(&a, buffer, sizeof a);
        CHECK(a != 0 && (a & (a - 1)) == 0, CUBLAS_STATUS_INVALID_VALUE, "alignment %u is not a power of two", a);
        x->min_alignment[attribute - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = a;
    }
    return CUBLAS_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------------------------------- */
/* Heuristics and matmul                                                                        */
/* ------------------------------------------------------------------------------------------- */

typedef struct problem { int64_t m, n, k; uint64_t signature; } problem;

/* Checks one matmul description (D = op(A) op(B) + C, C = D in place) and returns its GEMM sizes
 * and a signature of everything that shapes the algorithm (not the bias address). */
static cublasStatus_t describe(object *op, object *a, object *b, object *c, object *d, const char *call, problem *out) {
    CHECK(op && a && b && c && d, CUBLAS_STATUS_INVALID_VALUE, "%s: a dead, NULL or foreign descriptor or layout", call);
    int64_t a_rows = (int64_t)(op->transa == CUBLAS_OP_N ? a->rows : a->cols), a_cols = (int64_t)(op->transa == CUBLAS_OP_N ? a->cols : a->rows);
    int64_t b_rows = (int64_t)(op->transb == CUBLAS_OP_N ? b->rows : b->cols), b_cols = (int64_t)(op->transb == CUBLAS_OP_N ? b->cols : b->rows);
    CHECK(a_cols == b_rows, CUBLAS_STATUS_INVALID_VALUE, "%s: op(A) is %lld x %lld, op(B) %lld x %lld", call, (long long)a_rows,
          (long long)a_cols, (long long)b_rows, (long long)b_cols);
    CHECK((int64_t)d->rows == a_rows && (int64_t)d->cols == b_cols, CUBLAS_STATUS_INVALID_VALUE,
          "%s: D is %llu x %llu, op(A) op(B) %lld x %lld", call, (unsigned long long)d->rows, (unsigned long long)d->cols,
          (long long)a_rows, (long long)b_cols);
    CHECK(c->rows == d->rows && c->cols == d->cols && c->ld == d->ld, CUBLAS_STATUS_INVALID_VALUE,
          "%s: C's layout differs from D's (C = D in place)", call);
    CHECK(op->pointer_mode == 0, CUBLAS_STATUS_INVALID_VALUE, "%s: pointer mode %d (the shim passes host scalars)", call,
          op->pointer_mode);
    if (op->epilogue & CUBLASLT_EPILOGUE_BIAS)
        /* "Bias vector elements are the same type as the elements of output matrix (Dtype)" here
         * (neither the IMMA nor the fp8 exception): unset (-1) or D's type. */
        CHECK(op->bias_type == -1 || op->bias_type == d->type, CUBLAS_STATUS_NOT_SUPPORTED,
              "%s: bias type %d with a D of type %d", call, op->bias_type, d->type);
    out->m = a_rows;
    out->n = b_cols;
    out->k = a_cols;
    const uint64_t parts[] = {(uint64_t)out->m, (uint64_t)out->n, (uint64_t)out->k, (uint64_t)op->transa, (uint64_t)op->transb,
                              op->epilogue, (uint64_t)op->bias_type, a->ld, b->ld, d->ld, (uint64_t)op->compute_type};
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) h = (h ^ parts[i]) * 1099511628211ull;
    out->signature = h;
    return CUBLAS_STATUS_SUCCESS;
}

/* The largest power of two (up to 2^20) that divides an address; NULL: 2^20 (no bound). */
static uint64_t alignment_of(const void *p) {
    uint64_t v = (uint64_t)(uintptr_t)p, a = 1;
    while (a < (1u << 20) && (v & a) == 0) a <<= 1;
    return a;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a_desc,
                                              cublasLtMatrixLayout_t b_desc, cublasLtMatrixLayout_t c_desc,
                                              cublasLtMatrixLayout_t d_desc, cublasLtMatmulPreference_t preference,
                                              int requested, ss_cublasLtMatmulHeuristicResult *results, int *returned) {
    if (inject("cublasLtMatmulAlgoGetHeuristic")) return mock_cublaslt_fail_status;
    mock_cublaslt_heuristic_calls++;
    CHECK(as(handle, HANDLE), CUBLAS_STATUS_NOT_INITIALIZED, "heuristics on a dead, NULL or foreign handle");
    object *op = as(desc, MATMUL), *pref = as(preference, PREFERENCE);
    object *a = as(a_desc, LAYOUT), *b = as(b_desc, LAYOUT), *c = as(c_desc, LAYOUT), *d = as(d_desc, LAYOUT);
    CHECK(pref, CUBLAS_STATUS_INVALID_VALUE, "heuristics with a dead, NULL or foreign preference");
    CHECK(requested > 0, CUBLAS_STATUS_INVALID_VALUE, "heuristics: requestedAlgoCount %d", requested);
    CHECK(results && returned, CUBLAS_STATUS_INVALID_VALUE, "heuristics: NULL results or count");
    problem p;
    cublasStatus_t status = describe(op, a, b, c, d, "heuristics", &p);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    mock_cublaslt_requested = requested;
    mock_cublaslt_gemm_m = p.m;
    mock_cublaslt_gemm_n = p.n;
    mock_cublaslt_gemm_k = p.k;
    mock_cublaslt_transa = op->transa;
    mock_cublaslt_transb = op->transb;
    mock_cublaslt_epilogue = (int)op->epilogue;
    mock_cublaslt_bias_type = op->bias_type;
    mock_cublaslt_compute_type = op->compute_type;
    mock_cublaslt_scale_type = op->scale_type;
    mock_cublaslt_heuristic_bias = op->bias;
    object *layouts[3] = {a, b, d};
    for (int i = 0; i < 3; i++) {
        mock_cublaslt_layouts[i][0] = (int64_t)layouts[i]->rows;
        mock_cublaslt_layouts[i][1] = (int64_t)layouts[i]->cols;
        mock_cublaslt_layouts[i][2] = layouts[i]->ld;
    }
    mock_cublaslt_max_workspace = pref->max_workspace;
    memcpy(mock_cublaslt_min_alignment, pref->min_alignment, sizeof mock_cublaslt_min_alignment);
    if (mock_cublaslt_heuristic_status) return mock_cublaslt_heuristic_status;

    int count = 0;
    for (int r = 0; r < mock_cublaslt_algos && count < requested; r++) {
        uint64_t workspace = (r & 1) ? 4096 : 0;
        if (workspace > pref->max_workspace) continue;
        ss_cublasLtMatmulHeuristicResult *x = &results[count++];
        memset(x, 0, sizeof *x);
        x->algo.data[0] = ALGO_TAG;
        x->algo.data[1] = (uint64_t)r;
        x->algo.data[2] = p.signature;
        x->algo.data[3] = workspace;
        for (int i = 0; i < 4; i++) x->algo.data[4] |= (uint64_t)(pref->min_alignment[i] & 0xffff) << (16 * i);
        x->algo.data[5] = alignment_of(op->bias);
        x->workspaceSize = workspace;
        x->state = (r < 31 && (mock_cublaslt_bad_state_mask & (1 << r))) ? CUBLAS_STATUS_NOT_SUPPORTED : CUBLAS_STATUS_SUCCESS;
        x->wavesCount = 0.25f * (float)(r + 1);
    }
    *returned = count;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha, const void *a_pointer,
                              cublasLtMatrixLayout_t a_desc, const void *b_pointer, cublasLtMatrixLayout_t b_desc,
                              const void *beta, const void *c_pointer, cublasLtMatrixLayout_t c_desc, void *d_pointer,
                              cublasLtMatrixLayout_t d_desc, const ss_cublasLtMatmulAlgo *algo, void *workspace,
                              size_t workspace_size, ss_CUstream stream) {
    if (inject("cublasLtMatmul")) return mock_cublaslt_fail_status;
    CHECK(as(handle, HANDLE), CUBLAS_STATUS_NOT_INITIALIZED, "matmul on a dead, NULL or foreign handle");
    object *op = as(desc, MATMUL);
    object *a = as(a_desc, LAYOUT), *b = as(b_desc, LAYOUT), *c = as(c_desc, LAYOUT), *d = as(d_desc, LAYOUT);
    problem p;
    cublasStatus_t status = describe(op, a, b, c, d, "matmul", &p);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    CHECK(algo && algo->data[0] == ALGO_TAG, CUBLAS_STATUS_INVALID_VALUE, "matmul: not an algo from the heuristics");
    CHECK(algo->data[2] == p.signature, CUBLAS_STATUS_INVALID_VALUE,
          "matmul: the algo was chosen for another description (sizes, transposes, epilogue or types changed)");
    CHECK(alpha && beta && *(const float *)alpha == 1.0f && *(const float *)beta == 0.0f, CUBLAS_STATUS_INVALID_VALUE,
          "matmul: alpha and beta are not host floats 1 and 0");
    CHECK(a_pointer && b_pointer && c_pointer && d_pointer, CUBLAS_STATUS_INVALID_VALUE, "matmul: a NULL matrix");
    CHECK(c_pointer == d_pointer, CUBLAS_STATUS_INVALID_VALUE, "matmul: C %p is not D %p", c_pointer, d_pointer);
    const void *pointers[4] = {a_pointer, b_pointer, c_pointer, d_pointer};
    for (int i = 0; i < 4; i++) {
        uint64_t told = (algo->data[4] >> (16 * i)) & 0xffff;
        CHECK(alignment_of(pointers[i]) >= told, CUBLAS_STATUS_INVALID_VALUE,
              "matmul: %c at %p is less aligned than the heuristics were told (%llu bytes)", "ABCD"[i], pointers[i],
              (unsigned long long)told);
    }
    if (op->epilogue & CUBLASLT_EPILOGUE_BIAS) {
        CHECK(op->bias != NULL, CUBLAS_STATUS_INVALID_VALUE, "matmul: a bias epilogue without a bias pointer");
        CHECK(alignment_of(op->bias) >= algo->data[5], CUBLAS_STATUS_INVALID_VALUE,
              "matmul: the bias at %p is less aligned than its address during the heuristics said (%llu bytes)", op->bias,
              (unsigned long long)algo->data[5]);
    }
    /* "CUBLAS_STATUS_INVALID_VALUE ... when workspaceSizeInBytes is less than workspace required by configured algo" */
    CHECK(workspace_size >= algo->data[3] && (workspace_size == 0 || workspace != NULL), CUBLAS_STATUS_INVALID_VALUE,
          "matmul: workspace %p of %zu bytes for an algo that needs %llu", workspace, workspace_size,
          (unsigned long long)algo->data[3]);
    if (mock_cublaslt_fail_matmul) return mock_cublaslt_fail_matmul;
    mock_cublaslt_matmul_calls++;
    mock_cublaslt_algo_rank = (int)algo->data[1];
    mock_cublaslt_a = a_pointer;
    mock_cublaslt_b = b_pointer;
    mock_cublaslt_c = c_pointer;
    mock_cublaslt_d = d_pointer;
    mock_cublaslt_bias = (op->epilogue & CUBLASLT_EPILOGUE_BIAS) ? op->bias : NULL;
    mock_cublaslt_workspace = workspace;
    mock_cublaslt_workspace_size = workspace_size;
    mock_cublaslt_stream = (void *)stream;
    mock_cublaslt_alpha = *(const float *)alpha;
    mock_cublaslt_beta = *(const float *)beta;
    return CUBLAS_STATUS_SUCCESS;
}
