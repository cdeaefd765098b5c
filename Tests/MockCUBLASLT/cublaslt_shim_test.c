/* cublaslt_shim_test: CKernels/cublaslt.c (half matmuls with a bias / ReLU epilogue on cuBLASLt,
 * through the run-time loader of CKernels/cuda_loader.c) against the mock cuBLASLt of
 * mock_cublaslt.c. No GPU.
 *
 *   cublaslt_shim_test [-v] [path/to/libmock_cublaslt.so]
 *
 * The mock's path is the argument, or else SLICESERVE_LIBCUBLASLT; it is loaded through
 * SLICESERVE_LIBCUBLASLT like a real cuBLASLt, and its knobs and observations are reached with
 * dlsym. Covered: handle creation and its failure; the four epilogues (none, bias, ReLU, bias +
 * ReLU) with the row-major mapping (GEMM sizes, transposes, layouts), the types, the preference and
 * the pointers each run passes; algorithm selection (0, k, past the end, results whose state is not
 * success, the workspace limit, workspaces at run time); heuristics failing or offering nothing;
 * refused clamps and sizes; NULL arguments; a failure injected at each cuBLASLt call of a full
 * build and of a run (no descriptor leaks, the call and cuBLAS's status in the message). The mock
 * checks every call against cublasLt.h's rules and counts misuses, which must stay 0.
 *
 * Prints one line per failed check (-v: also what was seen along the way), then
 * "cublaslt shim test: N checks, F failed"; exits 0 only when F is 0. Built by
 * Scripts/build-plugins.sh as .build/sliceserve-plugins/cublaslt_shim_test, with cublaslt.c and
 * cuda_loader.c. */
#define _GNU_SOURCE
#include "sliceserve_cuda.h"
#include "sliceserve_cublaslt.h"
#include "sliceserve_cublaslt_abi.h"

#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHIM_TEST_NAME "cublaslt"
#include "../MockSupport/shim_test.h"

/* The mock's knobs and observations (see mock_cublaslt.c). */
static struct {
    int *live, *misuses;
    char *first_misuse;
    int *calls, *fail_at, *fail_status;
    char *failed_call;
    int *algos, *bad_state_mask, *fail_create, *heuristic_status, *fail_matmul;
    int *heuristic_calls, *requested;
    int64_t *gemm_m, *gemm_n, *gemm_k;
    int *transa, *transb, *epilogue, *bias_type, *compute_type, *scale_type;
    const void **heuristic_bias;
    int64_t (*layouts)[3];
    uint64_t *max_workspace;
    uint32_t *min_alignment;
    int *matmul_calls, *algo_rank;
    const void **a, **b, **c, **bias;
    void **d, **workspace, **stream;
    size_t *workspace_size;
    float *alpha, *beta;
} mock;

static bool resolve_mock(void *library) {
    bool complete = true;
#define RESOLVE(field)                                                                                \
    if ((mock.field = dlsym(library, "mock_cublaslt_" #field)) == NULL) {                             \
        CHECK(false, "the library lacks mock_cublaslt_" #field ": not the mock cuBLASLt (Tests/MockCUBLASLT)"); \
        complete = false;                                                                             \
    }
    RESOLVE(live) RESOLVE(misuses) RESOLVE(first_misuse)
    RESOLVE(calls) RESOLVE(fail_at) RESOLVE(fail_status) RESOLVE(failed_call)
    RESOLVE(algos) RESOLVE(bad_state_mask) RESOLVE(fail_create) RESOLVE(heuristic_status) RESOLVE(fail_matmul)
    RESOLVE(heuristic_calls) RESOLVE(requested) RESOLVE(gemm_m) RESOLVE(gemm_n) RESOLVE(gemm_k)
    RESOLVE(transa) RESOLVE(transb) RESOLVE(epilogue) RESOLVE(bias_type) RESOLVE(compute_type) RESOLVE(scale_type)
    RESOLVE(heuristic_bias) RESOLVE(layouts) RESOLVE(max_workspace) RESOLVE(min_alignment)
    RESOLVE(matmul_calls) RESOLVE(algo_rank) RESOLVE(a) RESOLVE(b) RESOLVE(c) RESOLVE(bias) RESOLVE(d)
    RESOLVE(workspace) RESOLVE(stream) RESOLVE(workspace_size) RESOLVE(alpha) RESOLVE(beta)
#undef RESOLVE
    return complete;
}


/* Y[8][24] = X[8][40] · W[24][40]ᵀ: three different sizes, so that a swapped mapping shows. */
enum { M = 8, N = 24, K = 40 };
static ss_cublaslt_gemm_desc base(void) {
    ss_cublaslt_gemm_desc d = {.m = M, .n = N, .k = K, .has_bias = 0, .lo = -INFINITY, .hi = INFINITY};
    return d;
}

/* Device "addresses", each aligned to 16 bytes and no more: the mock then also catches heuristics
 * that were not told 16 (their default is 256) or that saw no bias address. */
enum { X = 0x1010, W = 0x2010, Y = 0x3010, BIAS = 0x4010, WORKSPACE = 0x9010, STREAM = 0x5150 };
static const uint64_t MAX_WORKSPACE = 1 << 20;

static void test_handles(void **handle) {
    char error[512];
    CHECK(ss_cublaslt_handle_create(NULL, error, sizeof error) == SS_CUBLASLT_INVALID, "a NULL handle pointer is accepted");

    void *h = (void *)1;
    *mock.fail_create = CUBLAS_STATUS_NOT_INITIALIZED;
    int rc = ss_cublaslt_handle_create(&h, error, sizeof error);
    *mock.fail_create = 0;
    /* cuBLAS's status 1 comes back as 1001, never as 1 (SS_CUBLASLT_NO_ALGO). */
    CHECK(rc == SS_CUBLASLT_STATUS_BASE + CUBLAS_STATUS_NOT_INITIALIZED && h == NULL, "cublasLtCreate failure: rc %d, handle %p",
          rc, h);
    CHECK(strcmp(error, "cublasLtCreate: CUBLAS_STATUS_NOT_INITIALIZED (1)") == 0, "cublasLtCreate failure message '%s'", error);
    CHECK(*mock.live == 0, "a failed handle create left %d objects", *mock.live);

    rc = ss_cublaslt_handle_create(handle, error, sizeof error);
    CHECK(rc == SS_CUBLASLT_OK && *handle != NULL, "handle create: rc %d '%s'", rc, error);
    CHECK(error[0] == 0, "a successful handle create leaves a message: '%s'", error);
    CHECK(*mock.live == 1, "%d alive after creating a handle", *mock.live);
}

/* What every gemm's heuristics must have seen: the mapping of sliceserve's row-major operands. */
static void check_mapping(const char *what, int epilogue, bool bias) {
    CHECK(*mock.gemm_m == N && *mock.gemm_n == M && *mock.gemm_k == K,
          "%s: cuBLAS's M, N, K are %lld, %lld, %lld; expected n, m, k = %d, %d, %d", what, (long long)*mock.gemm_m,
          (long long)*mock.gemm_n, (long long)*mock.gemm_k, N, M, K);
    CHECK(*mock.transa == CUBLAS_OP_T && *mock.transb == CUBLAS_OP_N, "%s: TRANSA %d, TRANSB %d; expected T, N", what, *mock.transa,
          *mock.transb);
    const int64_t want[3][3] = {{K, N, K}, {K, M, K}, {N, M, N}};
    const char *names[3] = {"A = W", "B = X", "D = Y"};
    for (int i = 0; i < 3; i++)
        CHECK(mock.layouts[i][0] == want[i][0] && mock.layouts[i][1] == want[i][1] && mock.layouts[i][2] == want[i][2],
              "%s: layout %s is %lld x %lld, ld %lld; expected %lld x %lld, ld %lld", what, names[i], (long long)mock.layouts[i][0],
              (long long)mock.layouts[i][1], (long long)mock.layouts[i][2], (long long)want[i][0], (long long)want[i][1],
              (long long)want[i][2]);
    CHECK(*mock.epilogue == epilogue, "%s: epilogue %d, expected %d", what, *mock.epilogue, epilogue);
    CHECK(*mock.compute_type == CUBLAS_COMPUTE_32F && *mock.scale_type == CUDA_R_32F, "%s: compute type %d, scale type %d", what,
          *mock.compute_type, *mock.scale_type);
    CHECK(*mock.bias_type == -1, "%s: the bias type was set (%d): the shim leaves it at D's type", what, *mock.bias_type);
    CHECK(*mock.heuristic_bias == (bias ? (const void *)16 : NULL), "%s: bias address %p during the heuristics", what,
          *mock.heuristic_bias);
    for (int i = 0; i < 4; i++)
        CHECK(mock.min_alignment[i] == 16, "%s: minimum alignment of %c told to the heuristics: %u", what, "ABCD"[i],
              mock.min_alignment[i]);
}

/* The four epilogues: none, bias, ReLU, bias + ReLU. */
static void test_epilogues(void *h) {
    const int epilogues[2][2] = {{CUBLASLT_EPILOGUE_DEFAULT, CUBLASLT_EPILOGUE_RELU},
                                 {CUBLASLT_EPILOGUE_BIAS, CUBLASLT_EPILOGUE_RELU_BIAS}};
    for (int bias = 0; bias < 2; bias++)
        for (int relu = 0; relu < 2; relu++) {
            char what[32];
            snprintf(what, sizeof what, "%s%s", bias ? "bias" : "no bias", relu ? " + ReLU" : "");
            ss_cublaslt_gemm_desc d = base();
            d.has_bias = bias;
            d.lo = relu ? 0.0f : -INFINITY;
            ss_cublaslt_gemm *gemm = NULL;
            uint64_t workspace = 99;
            char text[512], error[512];
            int rc = ss_cublaslt_gemm_create(h, &d, 0, MAX_WORKSPACE, &gemm, &workspace, text, sizeof text);
            note("%s: rc %d '%s'", what, rc, text);
            CHECK(rc == SS_CUBLASLT_OK && gemm != NULL && workspace == 0, "%s: rc %d, workspace %llu, '%s'", what, rc,
                  (unsigned long long)workspace, text);
            CHECK(strcmp(text, "algo 0 of 5, waves 0.25") == 0, "%s: description '%s'", what, text);
            CHECK(*mock.requested == 32 && *mock.max_workspace == MAX_WORKSPACE, "%s: %d results asked, workspace limit %llu",
                  what, *mock.requested, (unsigned long long)*mock.max_workspace);
            check_mapping(what, epilogues[bias][relu], bias);

            int runs = *mock.matmul_calls;
            rc = ss_cublaslt_gemm_run(h, gemm, (void *)STREAM, X, W, BIAS, Y, 0, error, sizeof error);
            CHECK(rc == SS_CUBLASLT_OK && error[0] == 0 && *mock.matmul_calls == runs + 1, "%s: run: rc %d '%s'", what, rc, error);
            CHECK(*mock.a == (const void *)W && *mock.b == (const void *)X && *mock.c == (const void *)Y && *mock.d == (void *)Y,
                  "%s: run: A %p, B %p, C %p, D %p; expected W, X, Y, Y", what, *mock.a, *mock.b, *mock.c, *mock.d);
            CHECK(*mock.bias == (bias ? (const void *)BIAS : NULL), "%s: run: bias %p", what, *mock.bias);
            CHECK(*mock.stream == (void *)STREAM, "%s: run on stream %p", what, *mock.stream);
            CHECK(*mock.workspace == NULL && *mock.workspace_size == 0, "%s: run: workspace %p of %zu bytes for an algo without one",
                  what, *mock.workspace, *mock.workspace_size);
            CHECK(*mock.alpha == 1.0f && *mock.beta == 0.0f && *mock.algo_rank == 0, "%s: run: alpha %g, beta %g, algo rank %d", what,
                  (double)*mock.alpha, (double)*mock.beta, *mock.algo_rank);
            ss_cublaslt_gemm_destroy(gemm);
            CHECK(*mock.live == 1, "%s: %d alive after destroying the gemm (leak)", what, *mock.live);
        }
}

/* One creation that must choose the heuristics' result `rank` (-1: none, SS_CUBLASLT_NO_ALGO). */
static void expect_algo(void *h, const char *what, int algo, uint64_t max_workspace, int rank, const char *description) {
    ss_cublaslt_gemm_desc d = base();
    d.has_bias = 1;
    ss_cublaslt_gemm *gemm = (ss_cublaslt_gemm *)1;
    uint64_t workspace = 99;
    char text[512], error[512];
    int rc = ss_cublaslt_gemm_create(h, &d, algo, max_workspace, &gemm, &workspace, text, sizeof text);
    note("%s: rc %d '%s'", what, rc, text);
    if (rank < 0) {
        CHECK(rc == SS_CUBLASLT_NO_ALGO && gemm == NULL && workspace == 0 && strcmp(text, description) == 0,
              "%s: rc %d, gemm %p, workspace %llu, '%s'; expected no algo: '%s'", what, rc, (void *)gemm,
              (unsigned long long)workspace, text, description);
        CHECK(*mock.live == 1, "%s: %d alive (leak)", what, *mock.live);
        return;
    }
    uint64_t want_workspace = (rank & 1) ? 4096 : 0;
    CHECK(rc == SS_CUBLASLT_OK && gemm != NULL && workspace == want_workspace && strcmp(text, description) == 0,
          "%s: rc %d, workspace %llu, '%s'; expected '%s' with %llu", what, rc, (unsigned long long)workspace, text, description,
          (unsigned long long)want_workspace);
    if (rc == SS_CUBLASLT_OK && gemm != NULL) {
        if (workspace > 0) {
            rc = ss_cublaslt_gemm_run(h, gemm, NULL, X, W, BIAS, Y, 0, error, sizeof error);
            CHECK(rc == SS_CUBLASLT_INVALID && contains(error, "workspace"), "%s: a run without its workspace: rc %d '%s'", what,
                  rc, error);
        }
        rc = ss_cublaslt_gemm_run(h, gemm, NULL, X, W, BIAS, Y, WORKSPACE, error, sizeof error);
        CHECK(rc == SS_CUBLASLT_OK && *mock.algo_rank == rank, "%s: run: rc %d '%s', algo rank %d, expected %d", what, rc, error,
              *mock.algo_rank, rank);
        CHECK(*mock.workspace == (workspace > 0 ? (void *)WORKSPACE : NULL) && *mock.workspace_size == workspace,
              "%s: run: workspace %p of %zu bytes", what, *mock.workspace, *mock.workspace_size);
        ss_cublaslt_gemm_destroy(gemm);
    }
    CHECK(*mock.live == 1, "%s: %d alive after destroying the gemm (leak)", what, *mock.live);
}

/* Algorithm selection: 0, k, past the end; the workspace limit; results that are not usable. */
static void test_algos(void *h) {
    *mock.algos = 5;
    expect_algo(h, "algo 0", 0, MAX_WORKSPACE, 0, "algo 0 of 5, waves 0.25");
    expect_algo(h, "algo 1", 1, MAX_WORKSPACE, 1, "algo 1 of 5, waves 0.50");
    expect_algo(h, "algo 3", 3, MAX_WORKSPACE, 3, "algo 3 of 5, waves 1.00");
    expect_algo(h, "algo 4", 4, MAX_WORKSPACE, 4, "algo 4 of 5, waves 1.25");
    expect_algo(h, "algo 5 (past the end)", 5, MAX_WORKSPACE, -1,
                "no algo 5: cublasLtMatmulAlgoGetHeuristic offers 5 usable of 5 results (32 asked, workspace limit 1048576 bytes)");
    /* No workspace allowed: the heuristics leave out the odd ranks (4096 bytes each). */
    expect_algo(h, "algo 1 without workspace", 1, 0, 2, "algo 1 of 3, waves 0.75");
    CHECK(*mock.max_workspace == 0, "the workspace limit 0 reached the heuristics as %llu", (unsigned long long)*mock.max_workspace);
    expect_algo(h, "algo 3 without workspace", 3, 0, -1,
                "no algo 3: cublasLtMatmulAlgoGetHeuristic offers 3 usable of 3 results (32 asked, workspace limit 0 bytes)");
    /* A result whose state is not success is skipped. */
    *mock.bad_state_mask = (1 << 0) | (1 << 2);
    expect_algo(h, "algo 0 with ranks 0 and 2 unusable", 0, MAX_WORKSPACE, 1, "algo 0 of 3, waves 0.50");
    expect_algo(h, "algo 1 with ranks 0 and 2 unusable", 1, MAX_WORKSPACE, 3, "algo 1 of 3, waves 1.00");
    expect_algo(h, "algo 3 with ranks 0 and 2 unusable", 3, MAX_WORKSPACE, -1,
                "no algo 3: cublasLtMatmulAlgoGetHeuristic offers 3 usable of 5 results (32 asked, workspace limit 1048576 bytes)");
    *mock.bad_state_mask = 0;
    /* Past MIN_REQUEST: algo + 1 results are asked for. */
    *mock.algos = 50;
    expect_algo(h, "algo 40 of 50", 40, MAX_WORKSPACE, 40, "algo 40 of 41, waves 10.25");
    CHECK(*mock.requested == 41, "algo 40: %d results asked, expected 41", *mock.requested);
    *mock.algos = 5;
}

/* The heuristics failing, offering nothing, or answering a status cuBLAS 12.6 does not name. */
static void test_heuristics_failure(void *h) {
    ss_cublaslt_gemm_desc d = base();
    ss_cublaslt_gemm *gemm = (ss_cublaslt_gemm *)1;
    uint64_t workspace = 99;
    char text[512];
    *mock.heuristic_status = CUBLAS_STATUS_NOT_SUPPORTED;
    int rc = ss_cublaslt_gemm_create(h, &d, 0, MAX_WORKSPACE, &gemm, &workspace, text, sizeof text);
    note("heuristics failing: rc %d '%s'", rc, text);
    CHECK(rc == SS_CUBLASLT_STATUS_BASE + CUBLAS_STATUS_NOT_SUPPORTED && gemm == NULL && workspace == 0,
          "heuristics failing: rc %d, gemm %p", rc, (void *)gemm);
    CHECK(strcmp(text, "cublasLtMatmulAlgoGetHeuristic: CUBLAS_STATUS_NOT_SUPPORTED (15)") == 0, "heuristics failing: '%s'", text);
    CHECK(*mock.live == 1, "heuristics failing: %d alive (leak)", *mock.live);

    *mock.heuristic_status = 99;
    rc = ss_cublaslt_gemm_create(h, &d, 0, MAX_WORKSPACE, &gemm, &workspace, text, sizeof text);
    CHECK(rc == SS_CUBLASLT_STATUS_BASE + 99 && strcmp(text, "cublasLtMatmulAlgoGetHeuristic: cuBLAS status 99") == 0,
          "an unnamed status: rc %d '%s'", rc, text);
    *mock.heuristic_status = 0;
    CHECK(*mock.live == 1, "an unnamed status: %d alive (leak)", *mock.live);

    *mock.algos = 0;
    expect_algo(h, "no results at all", 0, MAX_WORKSPACE, -1,
                "no algo 0: cublasLtMatmulAlgoGetHeuristic offers 0 usable of 0 results (32 asked, workspace limit 1048576 bytes)");
    *mock.algos = 5;
}

/* One description the shim refuses before calling cuBLASLt. */
static void refuse(void *h, const char *what, ss_cublaslt_gemm_desc d, int algo, int want) {
    ss_cublaslt_gemm *gemm = (ss_cublaslt_gemm *)1;
    uint64_t workspace = 99;
    char text[512];
    int calls = *mock.calls;
    int rc = ss_cublaslt_gemm_create(h, &d, algo, MAX_WORKSPACE, &gemm, &workspace, text, sizeof text);
    note("%s: rc %d '%s'", what, rc, text);
    CHECK(rc == want && gemm == NULL && workspace == 0 && text[0] != 0, "%s: rc %d (expected %d), gemm %p, '%s'", what, rc, want,
          (void *)gemm, text);
    CHECK(*mock.calls == calls, "%s: %d cuBLASLt calls for a refused description", what, *mock.calls - calls);
}

/* Clamps and sizes the shim refuses, NULL arguments, no message buffer. */
static void test_refused(void *h) {
    const float clamps[][2] = {{0, 6}, {-1, INFINITY}, {-INFINITY, 6}, {0, 0}, {1, INFINITY}, {INFINITY, INFINITY}};
    for (size_t i = 0; i < sizeof clamps / sizeof clamps[0]; i++) {
        ss_cublaslt_gemm_desc d = base();
        d.lo = clamps[i][0];
        d.hi = clamps[i][1];
        char what[64];
        snprintf(what, sizeof what, "clamp [%g, %g]", (double)d.lo, (double)d.hi);
        refuse(h, what, d, 0, SS_CUBLASLT_UNSUPPORTED);
    }
    ss_cublaslt_gemm_desc d = base();
    d.lo = NAN;
    refuse(h, "NaN lower bound", d, 0, SS_CUBLASLT_INVALID);
    d = base();
    d.hi = NAN;
    refuse(h, "NaN upper bound", d, 0, SS_CUBLASLT_INVALID);
    d = base();
    d.lo = 3;
    d.hi = 1;
    refuse(h, "lo > hi", d, 0, SS_CUBLASLT_INVALID);
    d = base();
    d.m = 0;
    refuse(h, "m 0", d, 0, SS_CUBLASLT_INVALID);
    d = base();
    d.n = -1;
    refuse(h, "n -1", d, 0, SS_CUBLASLT_INVALID);
    d = base();
    d.k = 0;
    refuse(h, "k 0", d, 0, SS_CUBLASLT_INVALID);
    refuse(h, "algo -1", base(), -1, SS_CUBLASLT_INVALID);
    refuse(h, "algo 1024", base(), 1024, SS_CUBLASLT_INVALID);

    d = base();
    ss_cublaslt_gemm *gemm = NULL;
    uint64_t workspace = 0;
    char text[512];
    CHECK(ss_cublaslt_gemm_create(NULL, &d, 0, 0, &gemm, &workspace, text, sizeof text) == SS_CUBLASLT_INVALID,
          "a NULL handle is accepted");
    CHECK(ss_cublaslt_gemm_create(h, NULL, 0, 0, &gemm, &workspace, text, sizeof text) == SS_CUBLASLT_INVALID,
          "a NULL desc is accepted");
    CHECK(ss_cublaslt_gemm_create(h, &d, 0, 0, NULL, &workspace, text, sizeof text) == SS_CUBLASLT_INVALID,
          "a NULL gemm pointer is accepted");
    CHECK(ss_cublaslt_gemm_create(h, &d, 0, 0, &gemm, NULL, text, sizeof text) == SS_CUBLASLT_INVALID,
          "a NULL workspace_bytes pointer is accepted");
    CHECK(*mock.live == 1, "refused: %d alive", *mock.live);

    /* No message buffer at all: the same results, nothing written. */
    int rc = ss_cublaslt_gemm_create(h, &d, 0, 0, &gemm, &workspace, NULL, 0);
    CHECK(rc == SS_CUBLASLT_OK && gemm != NULL, "create without a message buffer: rc %d", rc);
    char error[8] = "x";
    rc = ss_cublaslt_gemm_run(h, gemm, NULL, X, W, 0, Y, 0, NULL, 0);
    CHECK(rc == SS_CUBLASLT_OK, "run without a message buffer: rc %d", rc);
    rc = ss_cublaslt_gemm_run(h, gemm, NULL, X, W, 0, Y, 0, error, sizeof error);
    CHECK(rc == SS_CUBLASLT_OK && error[0] == 0, "run with an 8-byte buffer: rc %d '%s'", rc, error);
    ss_cublaslt_gemm_destroy(gemm);
    *mock.calls = 0;
    *mock.fail_at = 1;
    gemm = NULL;
    rc = ss_cublaslt_gemm_create(h, &d, 0, 0, &gemm, &workspace, NULL, 0);
    *mock.fail_at = 0;
    CHECK(rc == SS_CUBLASLT_STATUS_BASE + CUBLAS_STATUS_INVALID_VALUE && gemm == NULL, "a failure without a message buffer: rc %d", rc);
    ss_cublaslt_gemm_destroy(NULL);
    ss_cublaslt_handle_destroy(NULL);
    CHECK(*mock.live == 1, "no message buffer: %d alive", *mock.live);
}

/* A failure at each cuBLASLt call of a full build, then of a run. */
static void test_failure_points(void *h) {
    ss_cublaslt_gemm_desc d = base();
    d.has_bias = 1;
    d.lo = 0;
    ss_cublaslt_gemm *gemm = NULL;
    uint64_t workspace = 0;
    char text[512], error[512], want[128];

    *mock.calls = 0;
    int rc = ss_cublaslt_gemm_create(h, &d, 1, MAX_WORKSPACE, &gemm, &workspace, text, sizeof text);
    int calls = *mock.calls;
    CHECK(rc == SS_CUBLASLT_OK && workspace == 4096, "the full build: rc %d, workspace %llu '%s'", rc, (unsigned long long)workspace,
          text);
    ss_cublaslt_gemm_destroy(gemm);
    note("a full build: %d cuBLASLt calls", calls);
    /* 1 matmul descriptor, 4 attributes, 3 layouts, 1 preference, 5 preference attributes, the heuristics. */
    CHECK(calls == 15, "a full build made %d cuBLASLt calls, expected 15", calls);

    *mock.fail_status = CUBLAS_STATUS_INVALID_VALUE;
    for (int k = 1; k <= calls; k++) {
        *mock.calls = 0;
        *mock.fail_at = k;
        mock.failed_call[0] = 0;
        gemm = (ss_cublaslt_gemm *)1;
        workspace = 99;
        rc = ss_cublaslt_gemm_create(h, &d, 1, MAX_WORKSPACE, &gemm, &workspace, text, sizeof text);
        note("failure at call %d (%s): rc %d '%s'", k, mock.failed_call, rc, text);
        CHECK(rc == SS_CUBLASLT_STATUS_BASE + CUBLAS_STATUS_INVALID_VALUE && gemm == NULL && workspace == 0,
              "failure at call %d (%s): rc %d, gemm %p", k, mock.failed_call, rc, (void *)gemm);
        CHECK(mock.failed_call[0] != 0 && starts_with(text, mock.failed_call) && ends_with(text, ": CUBLAS_STATUS_INVALID_VALUE (7)"),
              "failure at call %d (%s): message '%s'", k, mock.failed_call, text);
        CHECK(*mock.live == 1, "failure at call %d (%s): %d alive (leak)", k, mock.failed_call, *mock.live);
    }
    *mock.fail_at = 0;

    /* The messages name the attribute or layout. */
    *mock.calls = 0;
    *mock.fail_at = 2;
    rc = ss_cublaslt_gemm_create(h, &d, 1, MAX_WORKSPACE, &gemm, &workspace, text, sizeof text);
    CHECK(strcmp(text, "cublasLtMatmulDescSetAttribute(CUBLASLT_MATMUL_DESC_TRANSA): CUBLAS_STATUS_INVALID_VALUE (7)") == 0,
          "the second call's failure: '%s'", text);
    *mock.calls = 0;
    *mock.fail_at = 6;
    rc = ss_cublaslt_gemm_create(h, &d, 1, MAX_WORKSPACE, &gemm, &workspace, text, sizeof text);
    snprintf(want, sizeof want, "cublasLtMatrixLayoutCreate(A = W, %d x %d, ld %d): CUBLAS_STATUS_INVALID_VALUE (7)", K, N, K);
    CHECK(strcmp(text, want) == 0, "the first layout's failure: '%s'", text);
    *mock.calls = 0;
    *mock.fail_at = 11;
    rc = ss_cublaslt_gemm_create(h, &d, 1, MAX_WORKSPACE, &gemm, &workspace, text, sizeof text);
    CHECK(strcmp(text, "cublasLtMatmulPreferenceSetAttribute(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES): "
                       "CUBLAS_STATUS_INVALID_VALUE (7)") == 0,
          "the alignment's failure: '%s'", text);
    *mock.fail_at = 0;
    CHECK(*mock.live == 1, "named failures: %d alive (leak)", *mock.live);

    /* Run time: the bias address, then the matmul. */
    rc = ss_cublaslt_gemm_create(h, &d, 1, MAX_WORKSPACE, &gemm, &workspace, text, sizeof text);
    CHECK(rc == SS_CUBLASLT_OK && gemm != NULL, "the gemm for the run-time failures: rc %d '%s'", rc, text);
    if (gemm == NULL) return;
    int alive = *mock.live;
    *mock.calls = 0;
    rc = ss_cublaslt_gemm_run(h, gemm, NULL, X, W, BIAS, Y, WORKSPACE, error, sizeof error);
    CHECK(rc == SS_CUBLASLT_OK && *mock.calls == 2, "a run: rc %d, %d cuBLASLt calls (expected 2) '%s'", rc, *mock.calls, error);
    const char *run_failures[2] = {
        "cublasLtMatmulDescSetAttribute(CUBLASLT_MATMUL_DESC_BIAS_POINTER): CUBLAS_STATUS_INVALID_VALUE (7)",
        "cublasLtMatmul: CUBLAS_STATUS_INVALID_VALUE (7)",
    };
    for (int k = 1; k <= 2; k++) {
        *mock.calls = 0;
        *mock.fail_at = k;
        rc = ss_cublaslt_gemm_run(h, gemm, NULL, X, W, BIAS, Y, WORKSPACE, error, sizeof error);
        CHECK(rc == SS_CUBLASLT_STATUS_BASE + CUBLAS_STATUS_INVALID_VALUE && strcmp(error, run_failures[k - 1]) == 0,
              "run, failure at call %d: rc %d '%s'", k, rc, error);
        CHECK(*mock.live == alive, "run, failure at call %d: %d alive, %d before", k, *mock.live, alive);
    }
    *mock.fail_at = 0;
    *mock.fail_matmul = CUBLAS_STATUS_EXECUTION_FAILED;
    rc = ss_cublaslt_gemm_run(h, gemm, NULL, X, W, BIAS, Y, WORKSPACE, error, sizeof error);
    *mock.fail_matmul = 0;
    CHECK(rc == SS_CUBLASLT_STATUS_BASE + CUBLAS_STATUS_EXECUTION_FAILED &&
              strcmp(error, "cublasLtMatmul: CUBLAS_STATUS_EXECUTION_FAILED (13)") == 0,
          "run, execution failure: rc %d '%s'", rc, error);

    /* Arguments a run refuses before calling cuBLASLt. */
    struct { const char *what, *part; uint64_t x, w, bias, y, workspace; } bad[] = {
        {"a NULL x", "x, w, y, bias, workspace", 0, W, BIAS, Y, WORKSPACE},
        {"a NULL w", "NULL device pointer", X, 0, BIAS, Y, WORKSPACE},
        {"a NULL y", "NULL device pointer", X, W, BIAS, 0, WORKSPACE},
        {"a NULL bias", "bias", X, W, 0, Y, WORKSPACE},
        {"a NULL workspace", "workspace", X, W, BIAS, Y, 0},
        {"x 2-byte aligned", "16-byte aligned", X + 2, W, BIAS, Y, WORKSPACE},
        {"w 8-byte aligned", "16-byte aligned", X, W + 8, BIAS, Y, WORKSPACE},
        {"y 4-byte aligned", "16-byte aligned", X, W, BIAS, Y + 4, WORKSPACE},
        {"bias 2-byte aligned", "16-byte aligned", X, W, BIAS + 2, Y, WORKSPACE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int before = *mock.calls;
        rc = ss_cublaslt_gemm_run(h, gemm, NULL, bad[i].x, bad[i].w, bad[i].bias, bad[i].y, bad[i].workspace, error, sizeof error);
        note("%s: '%s'", bad[i].what, error);
        CHECK(rc == SS_CUBLASLT_INVALID && contains(error, bad[i].part) && *mock.calls == before, "%s: rc %d '%s'", bad[i].what, rc,
              error);
    }
    CHECK(ss_cublaslt_gemm_run(h, NULL, NULL, X, W, BIAS, Y, WORKSPACE, error, sizeof error) == SS_CUBLASLT_INVALID,
          "a NULL gemm is accepted");
    CHECK(ss_cublaslt_gemm_run(NULL, gemm, NULL, X, W, BIAS, Y, WORKSPACE, error, sizeof error) == SS_CUBLASLT_INVALID,
          "a NULL handle is accepted");
    rc = ss_cublaslt_gemm_run(h, gemm, NULL, X, W, BIAS, Y, WORKSPACE, error, sizeof error);
    CHECK(rc == SS_CUBLASLT_OK && error[0] == 0 && *mock.bias == (const void *)BIAS && *mock.workspace_size == 4096,
          "a run after the failures: rc %d '%s'", rc, error);
    ss_cublaslt_gemm_destroy(gemm);
    CHECK(*mock.live == 1, "after the run-time failures: %d alive", *mock.live);
}

int main(int argc, char **argv) {
    void *library = load_mock(argc, argv, SS_LIB_CUBLASLT, "SLICESERVE_LIBCUBLASLT", "12.6.4");
    if (library == NULL) return finish();
    ss_lib_info info;
    ss_lib_info_get(SS_LIB_CUBLASLT, &info);
    CHECK(strcmp(info.missing_optional, "cublasLtGetCudartVersion") == 0, "optional symbols missing: '%s'", info.missing_optional);
    if (!resolve_mock(library)) return finish();

    void *h = NULL;
    test_handles(&h);
    if (h == NULL) return finish();
    test_epilogues(h);
    test_algos(h);
    test_heuristics_failure(h);
    test_refused(h);
    test_failure_points(h);

    ss_cublaslt_handle_destroy(h);
    CHECK(*mock.live == 0, "%d handles, descriptors, layouts and preferences alive at the end (leak)", *mock.live);
    CHECK(*mock.misuses == 0, "the mock saw %d misuses of the cuBLASLt API; the first: %s", *mock.misuses, mock.first_misuse);
    note("%d heuristics, %d matmuls", *mock.heuristic_calls, *mock.matmul_calls);
    return finish();
}
