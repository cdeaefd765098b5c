// Half-precision matrix multiplication with a fused bias / ReLU epilogue on cuBLASLt (see
// sliceserve_cublaslt.h).
//
// cuBLASLt is loaded by cuda_loader.c (dlopen, never linked) and called through its `ss_cublasLt*`
// forwarders. No CUDA header is included: the constants are declared by hand in
// sliceserve_cublaslt_abi.h (an internal header, shared with the tests' mock cuBLASLt), with where
// each value comes from (CUDA 12.6's cublasLt.h, cublas_api.h and library_types.h; the same values
// in cudarc's bindings of 13.0), and the prototypes are SS_CUBLASLT_SYMBOLS of sliceserve_cuda.h
// (Scripts/check-cublaslt-abi.sh checks both against an installed cublasLt.h). The quotations below
// are cublasLt.h's (12.6).
//
// Row-major operands, through the column-major identity. cuBLASLt computes
// D = alpha·op(A)·op(B) + beta·C on matrices in CUBLASLT_ORDER_COL, the layouts' default order
// ("Leading dimension is the stride (in elements) to the beginning of next column"). A row-major
// R[r][c] (row stride c) is, element for element, the column-major c×r matrix Rᵀ with leading
// dimension c. So:
//
//   Y[m][n] row-major = Yᵀ, column-major n×m, ld n -> C and D: rows n, cols m, ld n (one layout)
//   W[n][k] row-major = Wᵀ, column-major k×n, ld k -> A: rows k, cols n, ld k; TRANSA = T: op(A) = W  (n×k)
//   X[m][k] row-major = Xᵀ, column-major k×m, ld k -> B: rows k, cols m, ld k; TRANSB = N: op(B) = Xᵀ (k×m)
//
// and D = op(A)·op(B) = W·Xᵀ = (X·Wᵀ)ᵀ = Yᵀ, which in memory is Y row-major: cuBLAS's (M, N, K)
// are our (n, m, k). Element by element: D(j, i) is stored at i·n + j, where Y[i][j] is, and
// Σ_l op(A)(j, l)·op(B)(l, i) = Σ_l W[j][l]·X[i][l]. Each ld is at least its layout's rows, as
// CUBLASLT_MATRIX_LAYOUT_LD requires for ORDER_COL.
//
// Why not CUBLASLT_MATRIX_LAYOUT_ORDER = CUBLASLT_ORDER_ROW: the bias. CUBLASLT_EPILOGUE_BIAS is
// "Bias vector length must match matrix D rows ... Bias vector is broadcasted to all columns". With
// D = Yᵀ (n rows) the bias is per output feature, bias[n], as wanted; with ROW-ordered layouts D is Y
// itself (m rows), and the epilogue would add one bias value per batch row instead. The mapping above
// also leaves every layout in the default order (ORDER_ROW is documented only as an order, with no
// word on which kernels take it) and is the "TN" arrangement (A transposed, B not).
//
// The bias's type: CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE says "Bias vector elements are the same type as
// the elements of output matrix (Dtype) with the following exceptions: IMMA kernels with
// computeType=CUDA_R_32I and Ctype=CUDA_R_8I ... fp8 kernels with an output type of CUDA_R_32F,
// CUDA_R_8F_E4M3 or CUDA_R_8F_E5M2". Neither exception is this path (half A, B, C, D with
// CUBLAS_COMPUTE_32F), so a float bias is not documented here: the bias is half, and the attribute
// stays at its default (-1: D's type).
//
// Alignment: the heuristics assume 256-byte aligned A, B, C and D unless the preference says
// otherwise (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES, "default: 256"), and they read the bias
// pointer's value, not its memory: "Routines that don't dereference this pointer, like
// cublasLtMatmulAlgoGetHeuristic() depend on its value to determine expected pointer alignment". The
// preference says 16 bytes for all four, the bias pointer holds the address 16 (aligned to 16 and no
// more) while the heuristics run, and a run refuses addresses that are not 16-byte aligned.
//
// Scalars: CUBLAS_COMPUTE_32F with scale type CUDA_R_32F, alpha 1 and beta 0 as host floats (the
// default CUBLASLT_POINTER_MODE_HOST), C = D = Y in place with one layout.
#define _GNU_SOURCE
#include "sliceserve_cublaslt.h"
#include "sliceserve_cuda.h"
#include "sliceserve_cublaslt_abi.h"
#include "library_shim.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Every device address a run takes is aligned to this, and the heuristics are told so.
enum { ALIGNMENT = 16 };
// The most algorithms asked of the heuristics: max(MIN_REQUEST, algo + 1); `algo` at most MAX_ALGO.
enum { MIN_REQUEST = 32, MAX_ALGO = 1023 };

struct ss_cublaslt_gemm {
    void *matmul;                 // cublasLtMatmulDesc_t
    void *a, *b, *cd;             // cublasLtMatrixLayout_t: A = W, B = X, C = D = Y
    ss_cublasLtMatmulAlgo algo;   // the heuristics' result, by value
    uint64_t workspace_bytes;     // its workspaceSize
    int has_bias;
};

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

static const ss_status_name status_names[] = {
    SS_STATUS_NAME(CUBLAS_STATUS_SUCCESS),          SS_STATUS_NAME(CUBLAS_STATUS_NOT_INITIALIZED),
    SS_STATUS_NAME(CUBLAS_STATUS_ALLOC_FAILED),     SS_STATUS_NAME(CUBLAS_STATUS_INVALID_VALUE),
    SS_STATUS_NAME(CUBLAS_STATUS_ARCH_MISMATCH),    SS_STATUS_NAME(CUBLAS_STATUS_MAPPING_ERROR),
    SS_STATUS_NAME(CUBLAS_STATUS_EXECUTION_FAILED), SS_STATUS_NAME(CUBLAS_STATUS_INTERNAL_ERROR),
    SS_STATUS_NAME(CUBLAS_STATUS_NOT_SUPPORTED),    SS_STATUS_NAME(CUBLAS_STATUS_LICENSE_ERROR),
};
#undef STATUS_NAME

static const char *status_name(int status) {
    return ss_status_lookup(status_names, sizeof status_names / sizeof status_names[0], status);
}

/// Writes "step: CUBLAS_STATUS_xxx (number)" into `out`; returns SS_CUBLASLT_STATUS_BASE + status
/// (SS_CUBLASLT_MISSING for a forwarder whose symbol is missing).
static int cublas_failure(char *out, size_t size, int status, const char *step) {
    const char *name = status_name(status);
    if (status == SS_LIB_NOT_LOADED) {
        ss_put(out, size, "%s: the symbol is missing from the loaded cuBLASLt (%d)", step, status);
        return SS_CUBLASLT_MISSING;
    }
    if (name != NULL)
        ss_put(out, size, "%s: %s (%d)", step, name, status);
    else
        ss_put(out, size, "%s: cuBLAS status %d", step, status);
    return SS_CUBLASLT_STATUS_BASE + status;
}

/// Checks that cuBLASLt is loaded with every entry point this file calls; -1 with the reason if not.
_Static_assert(SS_CUBLASLT_MISSING == SS_LIB_NOT_LOADED, "ss_require_library returns the shim's \"missing\" code");
static int check_cublaslt(char *out, size_t size) {
    static const char *const symbols[] = {
        "cublasLtCreate", "cublasLtDestroy", "cublasLtMatmulDescCreate", "cublasLtMatmulDescDestroy",
        "cublasLtMatmulDescSetAttribute", "cublasLtMatrixLayoutCreate", "cublasLtMatrixLayoutDestroy",
        "cublasLtMatmulPreferenceCreate", "cublasLtMatmulPreferenceDestroy", "cublasLtMatmulPreferenceSetAttribute",
        "cublasLtMatmulAlgoGetHeuristic", "cublasLtMatmul",
    };
    return ss_require_library(SS_LIB_CUBLASLT, "cuBLASLt", symbols, sizeof symbols / sizeof symbols[0], "", out, size);
}

// ---------------------------------------------------------------------------------------------
// Handles
// ---------------------------------------------------------------------------------------------

int ss_cublaslt_handle_create(void **handle, char *error, size_t error_size) {
    ss_put(error, error_size, "%s", "");
    if (handle == NULL) {
        ss_put(error, error_size, "ss_cublaslt_handle_create: handle is NULL");
        return SS_CUBLASLT_INVALID;
    }
    *handle = NULL;
    int rc = check_cublaslt(error, error_size);
    if (rc != SS_CUBLASLT_OK) return rc;
    void *created = NULL;
    int status = ss_cublasLtCreate(&created);
    if (status == CUBLAS_STATUS_SUCCESS && created == NULL) status = CUBLAS_STATUS_INTERNAL_ERROR;
    if (status != CUBLAS_STATUS_SUCCESS) return cublas_failure(error, error_size, status, "cublasLtCreate");
    *handle = created;
    return SS_CUBLASLT_OK;
}

void ss_cublaslt_handle_destroy(void *handle) {
    if (handle != NULL) ss_cublasLtDestroy(handle);
}

// ---------------------------------------------------------------------------------------------
// Gemms
// ---------------------------------------------------------------------------------------------

void ss_cublaslt_gemm_destroy(ss_cublaslt_gemm *gemm) {
    if (gemm == NULL) return;
    if (gemm->cd != NULL) ss_cublasLtMatrixLayoutDestroy(gemm->cd);
    if (gemm->b != NULL) ss_cublasLtMatrixLayoutDestroy(gemm->b);
    if (gemm->a != NULL) ss_cublasLtMatrixLayoutDestroy(gemm->a);
    if (gemm->matmul != NULL) ss_cublasLtMatmulDescDestroy(gemm->matmul);
    free(gemm);
}

/// Checks the description; SS_CUBLASLT_OK with the epilogue, or SS_CUBLASLT_INVALID /
/// SS_CUBLASLT_UNSUPPORTED with a message.
static int check_desc(const ss_cublaslt_gemm_desc *d, uint32_t *epilogue, char *out, size_t size) {
    if (d->m < 1 || d->n < 1 || d->k < 1) {
        ss_put(out, size, "invalid matmul: m %d, n %d, k %d (each at least 1)", d->m, d->n, d->k);
        return SS_CUBLASLT_INVALID;
    }
    if (isnan(d->lo) || isnan(d->hi) || d->lo > d->hi) {
        ss_put(out, size, "invalid clamp [%g, %g]", (double)d->lo, (double)d->hi);
        return SS_CUBLASLT_INVALID;
    }
    const int bias = d->has_bias != 0;
    if (isinf(d->lo) && d->lo < 0 && isinf(d->hi) && d->hi > 0) {
        *epilogue = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    } else if (d->lo == 0 && isinf(d->hi) && d->hi > 0) {
        *epilogue = bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;  // x := max(x, 0)
    } else {
        ss_put(out, size, "clamp [%g, %g] not supported by cuBLASLt's epilogues (none or ReLU [0, inf] only)",
            (double)d->lo, (double)d->hi);
        return SS_CUBLASLT_UNSUPPORTED;
    }
    return SS_CUBLASLT_OK;
}

/// Sets one attribute through `setter` (cublasLtMatmulDescSetAttribute or
/// cublasLtMatmulPreferenceSetAttribute, same signature); a failure names the call and attribute.
static int set_attribute(ss_cublasStatus (*setter)(void *, int, const void *, size_t), const char *call, void *descriptor,
                         int attribute, const char *attribute_name, const void *value, size_t size, char *out, size_t out_size) {
    int status = setter(descriptor, attribute, value, size);
    if (status == CUBLAS_STATUS_SUCCESS) return SS_CUBLASLT_OK;
    char step[128];
    snprintf(step, sizeof step, "%s(%s)", call, attribute_name);
    return cublas_failure(out, out_size, status, step);
}
#define SET_MATMUL(matmul, attribute, value, out, size)                                                        \
    set_attribute(ss_cublasLtMatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute", matmul, attribute, #attribute, \
                  &(value), sizeof(value), out, size)
#define SET_PREFERENCE(preference, attribute, value, out, size)                                                    \
    set_attribute(ss_cublasLtMatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute", preference, attribute, \
                  #attribute, &(value), sizeof(value), out, size)

/// A half column-major layout (the default order); `what` names it in a message.
static int create_layout(void **layout, const char *what, uint64_t rows, uint64_t cols, int64_t ld, char *out,
                         size_t size) {
    *layout = NULL;
    int status = ss_cublasLtMatrixLayoutCreate(layout, CUDA_R_16F, rows, cols, ld);
    if (status == CUBLAS_STATUS_SUCCESS && *layout == NULL) status = CUBLAS_STATUS_INTERNAL_ERROR;
    if (status == CUBLAS_STATUS_SUCCESS) return SS_CUBLASLT_OK;
    *layout = NULL;
    char step[160];
    snprintf(step, sizeof step, "cublasLtMatrixLayoutCreate(%s, %llu x %llu, ld %lld)", what, (unsigned long long)rows,
             (unsigned long long)cols, (long long)ld);
    return cublas_failure(out, size, status, step);
}

/// The matmul descriptor and the three layouts (see the mapping at the top of this file).
static int build(ss_cublaslt_gemm *g, const ss_cublaslt_gemm_desc *d, uint32_t epilogue, char *out, size_t size) {
    const uint64_t m = (uint64_t)d->m, n = (uint64_t)d->n, k = (uint64_t)d->k;
    int status = ss_cublasLtMatmulDescCreate(&g->matmul, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (status == CUBLAS_STATUS_SUCCESS && g->matmul == NULL) status = CUBLAS_STATUS_INTERNAL_ERROR;
    if (status != CUBLAS_STATUS_SUCCESS) {
        g->matmul = NULL;
        return cublas_failure(out, size, status, "cublasLtMatmulDescCreate(CUBLAS_COMPUTE_32F, CUDA_R_32F)");
    }
    int32_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;  // int32_t, as the header's attributes say
    const void *bias_placeholder = (const void *)(uintptr_t)ALIGNMENT;
    int rc;
    if ((rc = SET_MATMUL(g->matmul, CUBLASLT_MATMUL_DESC_TRANSA, transa, out, size)) ||
        (rc = SET_MATMUL(g->matmul, CUBLASLT_MATMUL_DESC_TRANSB, transb, out, size)) ||
        (rc = SET_MATMUL(g->matmul, CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue, out, size)) ||
        (g->has_bias && (rc = SET_MATMUL(g->matmul, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias_placeholder, out, size))) ||
        (rc = create_layout(&g->a, "A = W", k, n, (int64_t)k, out, size)) ||
        (rc = create_layout(&g->b, "B = X", k, m, (int64_t)k, out, size)) ||
        (rc = create_layout(&g->cd, "C = D = Y", n, m, (int64_t)n, out, size)))
        return rc;
    return SS_CUBLASLT_OK;
}

/// The preference: the workspace limit and 16-byte alignment of A, B, C and D.
static int create_preference(void **preference, uint64_t max_workspace, char *out, size_t size) {
    *preference = NULL;
    int status = ss_cublasLtMatmulPreferenceCreate(preference);
    if (status == CUBLAS_STATUS_SUCCESS && *preference == NULL) status = CUBLAS_STATUS_INTERNAL_ERROR;
    if (status != CUBLAS_STATUS_SUCCESS) {
        *preference = NULL;
        return cublas_failure(out, size, status, "cublasLtMatmulPreferenceCreate");
    }
    uint32_t alignment = ALIGNMENT;  // uint32_t, as the header's attributes say; max_workspace: uint64_t
    int rc;
    if ((rc = SET_PREFERENCE(*preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, max_workspace, out, size)) ||
        (rc = SET_PREFERENCE(*preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment, out, size)) ||
        (rc = SET_PREFERENCE(*preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment, out, size)) ||
        (rc = SET_PREFERENCE(*preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment, out, size)) ||
        (rc = SET_PREFERENCE(*preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment, out, size))) {
        ss_cublasLtMatmulPreferenceDestroy(*preference);
        *preference = NULL;
        return rc;
    }
    return SS_CUBLASLT_OK;
}

int ss_cublaslt_gemm_create(void *handle, const ss_cublaslt_gemm_desc *desc, int algo, uint64_t max_workspace,
                            ss_cublaslt_gemm **gemm, uint64_t *workspace_bytes, char *description,
                            size_t description_size) {
    ss_put(description, description_size, "%s", "");
    if (gemm != NULL) *gemm = NULL;
    if (workspace_bytes != NULL) *workspace_bytes = 0;
    if (handle == NULL || desc == NULL || gemm == NULL || workspace_bytes == NULL || algo < 0 || algo > MAX_ALGO) {
        ss_put(description, description_size,
            "ss_cublaslt_gemm_create: NULL handle, desc or result, or algo %d outside 0...%d", algo, MAX_ALGO);
        return SS_CUBLASLT_INVALID;
    }
    int rc = check_cublaslt(description, description_size);
    if (rc != SS_CUBLASLT_OK) return rc;
    uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    if ((rc = check_desc(desc, &epilogue, description, description_size)) != SS_CUBLASLT_OK) return rc;

    ss_cublaslt_gemm *g = calloc(1, sizeof *g);
    if (g == NULL) {
        ss_put(description, description_size, "out of memory for a gemm");
        return SS_CUBLASLT_NO_MEMORY;
    }
    g->has_bias = desc->has_bias != 0;
    if ((rc = build(g, desc, epilogue, description, description_size))) {
        ss_cublaslt_gemm_destroy(g);
        return rc;
    }

    // The heuristics, asked for at least MIN_REQUEST results so that the description can say how
    // many there are.
    const int requested = algo + 1 > MIN_REQUEST ? algo + 1 : MIN_REQUEST;
    ss_cublasLtMatmulHeuristicResult *results = calloc((size_t)requested, sizeof *results);
    if (results == NULL) {
        ss_put(description, description_size, "out of memory for %d heuristic results", requested);
        ss_cublaslt_gemm_destroy(g);
        return SS_CUBLASLT_NO_MEMORY;
    }
    void *preference = NULL;
    if ((rc = create_preference(&preference, max_workspace, description, description_size))) {
        free(results);
        ss_cublaslt_gemm_destroy(g);
        return rc;
    }
    int returned = 0;
    int status = ss_cublasLtMatmulAlgoGetHeuristic(handle, g->matmul, g->a, g->b, g->cd, g->cd, preference, requested,
                                                   results, &returned);
    ss_cublasLtMatmulPreferenceDestroy(preference);
    if (status != CUBLAS_STATUS_SUCCESS) {
        rc = cublas_failure(description, description_size, status, "cublasLtMatmulAlgoGetHeuristic");
        free(results);
        ss_cublaslt_gemm_destroy(g);
        return rc;
    }
    if (returned > requested) returned = requested;
    if (returned < 0) returned = 0;

    // The `algo`-th of the results whose state is success ("other fields are only valid if ...
    // this member is set to CUBLAS_STATUS_SUCCESS").
    int usable = 0, chosen = -1;
    for (int i = 0; i < returned; i++) {
        if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
        if (usable == algo) chosen = i;
        usable++;
    }
    if (chosen < 0) {
        ss_put(description, description_size,
            "no algo %d: cublasLtMatmulAlgoGetHeuristic offers %d usable of %d results (%d asked, workspace limit %llu bytes)",
            algo, usable, returned, requested, (unsigned long long)max_workspace);
        free(results);
        ss_cublaslt_gemm_destroy(g);
        return SS_CUBLASLT_NO_ALGO;
    }
    g->algo = results[chosen].algo;
    g->workspace_bytes = (uint64_t)results[chosen].workspaceSize;
    float waves = results[chosen].wavesCount;
    free(results);
    ss_put(description, description_size, "algo %d of %d, waves %.2f", algo, usable, (double)waves);
    *gemm = g;
    *workspace_bytes = g->workspace_bytes;
    return SS_CUBLASLT_OK;
}

int ss_cublaslt_gemm_run(void *handle, const ss_cublaslt_gemm *gemm, void *stream, uint64_t x, uint64_t w, uint64_t bias,
                         uint64_t y, uint64_t workspace, char *error, size_t error_size) {
    ss_put(error, error_size, "%s", "");
    if (handle == NULL || gemm == NULL) {
        ss_put(error, error_size, "ss_cublaslt_gemm_run: NULL handle or gemm");
        return SS_CUBLASLT_INVALID;
    }
    const int needs_workspace = gemm->workspace_bytes > 0;
    if (x == 0 || w == 0 || y == 0 || (gemm->has_bias && bias == 0) || (needs_workspace && workspace == 0)) {
        ss_put(error, error_size, "ss_cublaslt_gemm_run: a NULL device pointer (x, w, y%s%s)", gemm->has_bias ? ", bias" : "",
            needs_workspace ? ", workspace" : "");
        return SS_CUBLASLT_INVALID;
    }
    if ((x | w | y | (gemm->has_bias ? bias : 0)) % ALIGNMENT != 0) {
        char bias_text[40] = "";
        if (gemm->has_bias) snprintf(bias_text, sizeof bias_text, ", bias %#llx", (unsigned long long)bias);
        ss_put(error, error_size, "ss_cublaslt_gemm_run: a device address not %d-byte aligned (x %#llx, w %#llx, y %#llx%s)",
            ALIGNMENT, (unsigned long long)x, (unsigned long long)w, (unsigned long long)y, bias_text);
        return SS_CUBLASLT_INVALID;
    }
    int rc;
    if (gemm->has_bias) {
        const void *bias_pointer = (const void *)(uintptr_t)bias;
        if ((rc = SET_MATMUL(gemm->matmul, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias_pointer, error, error_size)))
            return rc;
    }
    const float alpha = 1.0f, beta = 0.0f;
    void *output = (void *)(uintptr_t)y;
    int status = ss_cublasLtMatmul(handle, gemm->matmul, &alpha, (const void *)(uintptr_t)w, gemm->a,
                                   (const void *)(uintptr_t)x, gemm->b, &beta, output, gemm->cd, output, gemm->cd,
                                   &gemm->algo, needs_workspace ? (void *)(uintptr_t)workspace : NULL,
                                   (size_t)gemm->workspace_bytes, (ss_CUstream)stream);
    if (status != CUBLAS_STATUS_SUCCESS) return cublas_failure(error, error_size, status, "cublasLtMatmul");
    return SS_CUBLASLT_OK;
}
