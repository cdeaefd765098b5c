/* cudnn_shim_test: CKernels/cudnn.c (the fused convolutions on cuDNN 9's backend API, through the
 * run-time loader of CKernels/cuda_loader.c) against the mock cuDNN of mock_cudnn.c. No GPU.
 *
 *   cudnn_shim_test [-v] [path/to/libmock_cudnn.so.9]
 *
 * The mock's path is the argument, or else SLICESERVE_LIBCUDNN; it is loaded through
 * SLICESERVE_LIBCUDNN like a real cuDNN, and its knobs and observations are reached with dlsym.
 * Covered: handle creation and its failures; every combination of bias, residual and clamp (the
 * graph, the ReLU clips, the variant pack's unique ids and pointers); engine selection when some
 * plans do not finalize, workspaces; the fallback heuristics; refused descriptors; a failure
 * injected at each cudnnBackendSetAttribute and each cudnnBackendCreateDescriptor of a full build
 * (no descriptor leaks, cuDNN's status returned with its message); run-time failures. The mock
 * checks every call against cuDNN's rules and counts misuses, which must stay 0.
 *
 * Prints one line per failed check (-v: also what was seen along the way), then
 * "cudnn shim test: N checks, F failed"; exits 0 only when F is 0. Built by
 * Scripts/build-plugins.sh as .build/sliceserve-plugins/cudnn_shim_test, with cudnn.c and
 * cuda_loader.c. */
#define _GNU_SOURCE
#include "sliceserve_cuda.h"
#include "sliceserve_cudnn.h"
#include "sliceserve_cudnn_abi.h"

#include <dlfcn.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHIM_TEST_NAME "cudnn"
#include "../MockSupport/shim_test.h"

/* The mock's knobs and observations (see mock_cudnn.c). */
static struct {
    int *live, *misuses;
    char *first_misuse;
    int *set_calls, *fail_set_at, *fail_set_status, *create_calls, *fail_create_at;
    int *configs_a, *configs_fallback, *plan_fail_mask, *heur_fail_modes;
    int *fail_execute, *fail_handle_create, *fail_set_stream;
    int *exec_calls, *graph_ops, *heur_mode;
    double *relu_lower, *relu_upper;
    void **last_stream;
    int64_t *last_uid_count, *last_uids;
    void **last_pointers, **last_workspace;
} mock;

static bool resolve_mock(void *library) {
    bool complete = true;
#define RESOLVE(field)                                                                                \
    if ((mock.field = dlsym(library, "mock_cudnn_" #field)) == NULL) {                                \
        CHECK(false, "the library lacks mock_cudnn_" #field ": not the mock cuDNN (Tests/MockCUDNN)"); \
        complete = false;                                                                             \
    }
    RESOLVE(live) RESOLVE(misuses) RESOLVE(first_misuse)
    RESOLVE(set_calls) RESOLVE(fail_set_at) RESOLVE(fail_set_status) RESOLVE(create_calls) RESOLVE(fail_create_at)
    RESOLVE(configs_a) RESOLVE(configs_fallback) RESOLVE(plan_fail_mask) RESOLVE(heur_fail_modes)
    RESOLVE(fail_execute) RESOLVE(fail_handle_create) RESOLVE(fail_set_stream)
    RESOLVE(exec_calls) RESOLVE(graph_ops) RESOLVE(heur_mode)
    RESOLVE(relu_lower) RESOLVE(relu_upper) RESOLVE(last_stream)
    RESOLVE(last_uid_count) RESOLVE(last_uids) RESOLVE(last_pointers) RESOLVE(last_workspace)
#undef RESOLVE
    return complete;
}


/* A 2x9x7x16 input, 32 3x3 filters, stride 2, pad 1: a 2x5x4x32 output. */
static ss_cudnn_conv_desc base(void) {
    ss_cudnn_conv_desc d = {.n = 2, .h = 9, .w = 7, .c = 16, .m = 32, .kh = 3, .kw = 3, .groups = 1, .oh = 5, .ow = 4,
                            .sh = 2, .sw = 2, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .dh = 1, .dw = 1, .has_bias = 0,
                            .has_residual = 0, .lo = -INFINITY, .hi = INFINITY};
    return d;
}

/* Device "pointers" the runs pass: x, w, y, bias, residual = uid * 0x100. */
enum { X = 0x100, W = 0x200, Y = 0x300, BIAS = 0x400, RESIDUAL = 0x500 };

static void test_handles(void **handle) {
    char error[1024];
    CHECK(ss_cudnn_handle_create((void *)0x1234, NULL, error, sizeof error) == SS_CUDNN_INVALID, "a NULL handle pointer is accepted");

    void *h = (void *)1;
    *mock.fail_handle_create = CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    int rc = ss_cudnn_handle_create((void *)0x1234, &h, error, sizeof error);
    *mock.fail_handle_create = 0;
    CHECK(rc == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED && h == NULL, "cudnnCreate failure: rc %d, handle %p", rc, h);
    CHECK(strcmp(error, "cudnnCreate: CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED (4003): injected cudnnCreate failure") == 0,
          "cudnnCreate failure message '%s'", error);

    h = (void *)1;
    *mock.fail_set_stream = CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH;
    rc = ss_cudnn_handle_create((void *)0x1234, &h, error, sizeof error);
    *mock.fail_set_stream = 0;
    CHECK(rc == CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH && h == NULL, "cudnnSetStream failure: rc %d, handle %p", rc, h);
    CHECK(starts_with(error, "cudnnSetStream: CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH (2007)"), "cudnnSetStream failure message '%s'", error);
    CHECK(*mock.live == 0, "a handle whose stream failed is not destroyed: %d alive", *mock.live);

    rc = ss_cudnn_handle_create((void *)0x1234, handle, error, sizeof error);
    CHECK(rc == SS_CUDNN_OK && *handle != NULL, "handle create: rc %d '%s'", rc, error);
    CHECK(error[0] == 0, "a successful handle create leaves a message: '%s'", error);
    CHECK(*mock.last_stream == (void *)0x1234, "the handle is on stream %p, not 0x1234", *mock.last_stream);
    CHECK(*mock.live == 1, "%d alive after creating a handle", *mock.live);
}

/* Every combination of bias, residual and clamp (none, ReLU, ReLU with both clips). */
static void test_combinations(void *h) {
    const float los[3] = {-INFINITY, 0.0f, -1.5f}, his[3] = {INFINITY, INFINITY, 6.0f};
    const double want_lower[3] = {0, 0.0, -1.5}, want_upper[3] = {0, (double)FLT_MAX, 6.0};
    for (int bias = 0; bias < 2; bias++)
        for (int residual = 0; residual < 2; residual++)
            for (int clamp = 0; clamp < 3; clamp++) {
                ss_cudnn_conv_desc d = base();
                d.has_bias = bias;
                d.has_residual = residual;
                d.lo = los[clamp];
                d.hi = his[clamp];
                ss_cudnn_conv *plan = NULL;
                uint64_t workspace = 99;
                char text[512], error[1024];
                *mock.relu_lower = *mock.relu_upper = NAN;
                int rc = ss_cudnn_conv_create(h, &d, 0, &plan, &workspace, text, sizeof text);
                int steps = bias + residual + (clamp != 0);
                const char *what = clamp == 0 ? "no clamp" : clamp == 1 ? "ReLU" : "clamp [-1.5, 6]";
                CHECK(rc == SS_CUDNN_OK && plan != NULL && workspace == 0, "bias %d residual %d %s: rc %d workspace %llu '%s'",
                      bias, residual, what, rc, (unsigned long long)workspace, text);
                CHECK(*mock.graph_ops == 1 + steps, "bias %d residual %d %s: %d operations in the graph, expected %d", bias,
                      residual, what, *mock.graph_ops, 1 + steps);
                CHECK(strcmp(text, "engine 10, heuristics rank 0") == 0, "bias %d residual %d %s: description '%s'", bias,
                      residual, what, text);
                CHECK(*mock.heur_mode == CUDNN_HEUR_MODE_A, "heuristics mode %d, expected mode A", *mock.heur_mode);
                if (clamp != 0)
                    CHECK(*mock.relu_lower == want_lower[clamp] && *mock.relu_upper == want_upper[clamp],
                          "%s: ReLU clips [%g, %g]", what, *mock.relu_lower, *mock.relu_upper);
                else
                    CHECK(isnan(*mock.relu_lower), "no clamp, yet a ReLU with clips [%g, %g]", *mock.relu_lower, *mock.relu_upper);

                int executed = *mock.exec_calls;
                rc = ss_cudnn_conv_run(h, plan, X, W, BIAS, RESIDUAL, Y, 0, error, sizeof error);
                CHECK(rc == SS_CUDNN_OK && *mock.exec_calls == executed + 1, "run: rc %d '%s'", rc, error);
                CHECK(*mock.last_uid_count == 3 + bias + residual, "run: %lld tensors bound, expected %d",
                      (long long)*mock.last_uid_count, 3 + bias + residual);
                for (int64_t i = 0; i < *mock.last_uid_count && i < 8; i++)
                    CHECK((uintptr_t)mock.last_pointers[i] == (uintptr_t)mock.last_uids[i] * 0x100, "run: uid %lld bound to %p",
                          (long long)mock.last_uids[i], mock.last_pointers[i]);
                CHECK(*mock.last_workspace == NULL, "run: workspace %p for a plan without one", *mock.last_workspace);
                ss_cudnn_conv_destroy(plan);
                CHECK(*mock.live == 1, "bias %d residual %d %s: %d alive after destroying the plan (leak)", bias, residual, what,
                      *mock.live);
            }
}

/* Engine selection when the plans of ranks 0 and 2 do not finalize: engine e is the e-th that does. */
static void test_engines(void *h) {
    *mock.configs_a = 5;
    *mock.plan_fail_mask = (1 << 0) | (1 << 2);
    const int want_rank[4] = {1, 3, 4, -1};
    for (int e = 0; e < 4; e++) {
        ss_cudnn_conv_desc d = base();
        d.has_bias = 1;
        d.lo = 0;
        d.hi = INFINITY;
        ss_cudnn_conv *plan = NULL;
        uint64_t workspace = 99;
        char text[512], error[1024];
        int rc = ss_cudnn_conv_create(h, &d, e, &plan, &workspace, text, sizeof text);
        note("engine %d: rc %d workspace %llu '%s'", e, rc, (unsigned long long)workspace, text);
        if (want_rank[e] < 0) {
            CHECK(rc == SS_CUDNN_NO_ENGINE && plan == NULL && workspace == 0, "engine %d: rc %d, expected no engine", e, rc);
            CHECK(starts_with(text, "no engine 3: 3 of 5 engine configs from the mode A heuristics finalize; last failure: "
                                    "heuristics rank 2: cudnnBackendFinalize(execution plan): "
                                    "CUDNN_STATUS_NOT_SUPPORTED_SHAPE (3002): engine of rank 2 does not fit") &&
                      !ends_with(text, "\n"),
                  "engine %d: message '%s'", e, text);
        } else {
            char want[96];
            snprintf(want, sizeof want, "engine %d, heuristics rank %d", 10 + want_rank[e], want_rank[e]);
            uint64_t want_workspace = (want_rank[e] & 1) ? 4096 : 0;
            CHECK(rc == SS_CUDNN_OK && plan != NULL && strcmp(text, want) == 0 && workspace == want_workspace,
                  "engine %d: rc %d workspace %llu '%s', expected '%s' with %llu", e, rc, (unsigned long long)workspace, text,
                  want, (unsigned long long)want_workspace);
            if (plan != NULL && workspace > 0) {
                rc = ss_cudnn_conv_run(h, plan, X, W, BIAS, 0, Y, 0, error, sizeof error);
                CHECK(rc == SS_CUDNN_INVALID && contains(error, "workspace"), "engine %d: a run without its workspace: rc %d '%s'",
                      e, rc, error);
                rc = ss_cudnn_conv_run(h, plan, X, W, BIAS, 0, Y, 0x9000, error, sizeof error);
                CHECK(rc == SS_CUDNN_OK && *mock.last_workspace == (void *)0x9000, "engine %d: run with a workspace: rc %d '%s' (%p)",
                      e, rc, error, *mock.last_workspace);
            }
        }
        ss_cudnn_conv_destroy(plan);
        CHECK(*mock.live == 1, "engine %d: %d alive after destroying the plan (leak)", e, *mock.live);
    }
    *mock.plan_fail_mask = 0;
}

/* Mode A offering nothing or failing: the fallback heuristics; both failing: cuDNN's status. */
static void test_fallback(void *h) {
    ss_cudnn_conv_desc d = base();
    ss_cudnn_conv *plan = NULL;
    uint64_t workspace = 0;
    char text[1024];

    *mock.configs_a = 0;
    int rc = ss_cudnn_conv_create(h, &d, 1, &plan, &workspace, text, sizeof text);
    CHECK(rc == SS_CUDNN_OK && strcmp(text, "engine 11, heuristics rank 1 (fallback heuristics; mode A: no engine configs)") == 0,
          "mode A empty: rc %d '%s'", rc, text);
    CHECK(*mock.heur_mode == CUDNN_HEUR_MODE_FALLBACK, "mode A empty: last heuristics mode %d", *mock.heur_mode);
    ss_cudnn_conv_destroy(plan);
    plan = NULL;

    *mock.configs_fallback = 0;
    rc = ss_cudnn_conv_create(h, &d, 0, &plan, &workspace, text, sizeof text);
    note("no engine configs at all: '%s'", text);
    CHECK(rc == SS_CUDNN_NO_ENGINE && plan == NULL &&
              strcmp(text, "no engine 0: 0 of 0 engine configs from the fallback heuristics finalize") == 0,
          "no configs: rc %d '%s'", rc, text);
    *mock.configs_a = 5;
    *mock.configs_fallback = 2;

    *mock.heur_fail_modes = 1 << CUDNN_HEUR_MODE_A;
    rc = ss_cudnn_conv_create(h, &d, 0, &plan, &workspace, text, sizeof text);
    /* The fallback's plan names why mode A gave none. */
    CHECK(rc == SS_CUDNN_OK && starts_with(text, "engine 10, heuristics rank 0 (fallback heuristics; mode A: cudnnBackendFinalize(engine heuristics (mode A)): ")
              && ends_with(text, ")"),
          "mode A failing: rc %d '%s'", rc, text);
    ss_cudnn_conv_destroy(plan);
    plan = NULL;

    *mock.heur_fail_modes = (1 << CUDNN_HEUR_MODE_A) | (1 << CUDNN_HEUR_MODE_FALLBACK);
    rc = ss_cudnn_conv_create(h, &d, 0, &plan, &workspace, text, sizeof text);
    note("both heuristics failing: '%s'", text);
    CHECK(rc == CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN && plan == NULL, "both heuristics failing: rc %d", rc);
    CHECK(strcmp(text, "cudnnBackendFinalize(engine heuristics (fallback mode)): CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN (3001): "
                       "injected: no heuristics in mode 2 (after mode A: cudnnBackendFinalize(engine heuristics (mode A)): "
                       "CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN (3001): injected: no heuristics in mode 3)") == 0,
          "both heuristics failing: message '%s'", text);
    *mock.heur_fail_modes = 0;
    CHECK(*mock.live == 1, "fallback: %d alive (leak)", *mock.live);
}

/* One descriptor the shim refuses before calling cuDNN. */
static void refuse(void *h, const char *what, ss_cudnn_conv_desc d, int engine, int want) {
    ss_cudnn_conv *plan = (ss_cudnn_conv *)1;
    uint64_t workspace = 99;
    char text[512];
    int rc = ss_cudnn_conv_create(h, &d, engine, &plan, &workspace, text, sizeof text);
    note("%s: rc %d '%s'", what, rc, text);
    CHECK(rc == want && plan == NULL && workspace == 0 && text[0] != 0, "%s: rc %d (expected %d), plan %p, '%s'", what, rc, want,
          (void *)plan, text);
}

/* Descriptors and arguments the shim refuses before calling cuDNN. */
static void test_refused(void *h) {
    ss_cudnn_conv *plan = NULL;
    uint64_t workspace = 0;
    char text[512];
    int created = *mock.create_calls;
    ss_cudnn_conv_desc d = base();
    d.groups = 2;
    refuse(h, "groups 2", d, 0, SS_CUDNN_UNSUPPORTED);
    d = base();
    d.hi = 6;
    refuse(h, "clamp without a lower bound", d, 0, SS_CUDNN_UNSUPPORTED);
    d = base();
    d.oh = 6;
    refuse(h, "wrong output height", d, 0, SS_CUDNN_INVALID);
    d = base();
    d.lo = NAN;
    refuse(h, "NaN clamp", d, 0, SS_CUDNN_INVALID);
    d = base();
    d.lo = 3;
    d.hi = 1;
    refuse(h, "lo > hi", d, 0, SS_CUDNN_INVALID);
    d = base();
    d.n = 0;
    refuse(h, "zero batch", d, 0, SS_CUDNN_INVALID);
    d = base();
    d.groups = 3;
    refuse(h, "channels not divisible by groups", d, 0, SS_CUDNN_INVALID);
    refuse(h, "engine -1", base(), -1, SS_CUDNN_INVALID);
    d = base();
    CHECK(ss_cudnn_conv_create(NULL, &d, 0, &plan, &workspace, text, sizeof text) == SS_CUDNN_INVALID, "a NULL handle is accepted");
    CHECK(ss_cudnn_conv_create(h, NULL, 0, &plan, &workspace, text, sizeof text) == SS_CUDNN_INVALID, "a NULL desc is accepted");
    CHECK(ss_cudnn_conv_create(h, &d, 0, NULL, &workspace, text, sizeof text) == SS_CUDNN_INVALID, "a NULL plan pointer is accepted");
    CHECK(*mock.create_calls == created, "refused descriptors still created %d cuDNN descriptors", *mock.create_calls - created);
    CHECK(*mock.live == 1, "refused: %d alive", *mock.live);

    /* No message buffer at all: the same results, nothing written. */
    int rc = ss_cudnn_conv_create(h, &d, 0, &plan, &workspace, NULL, 0);
    CHECK(rc == SS_CUDNN_OK && plan != NULL, "create without a message buffer: rc %d", rc);
    ss_cudnn_conv_destroy(plan);
    *mock.fail_set_at = 1;
    *mock.set_calls = 0;
    plan = NULL;
    rc = ss_cudnn_conv_create(h, &d, 0, &plan, &workspace, NULL, 0);
    *mock.fail_set_at = 0;
    CHECK(rc == CUDNN_STATUS_BAD_PARAM && plan == NULL, "a failure without a message buffer: rc %d", rc);
    ss_cudnn_conv_destroy(NULL);
    ss_cudnn_handle_destroy(NULL);
    CHECK(*mock.live == 1, "no message buffer: %d alive", *mock.live);
}

/* A failure at each cuDNN call of a full build, then at run time. */
static void test_failure_points(void *h) {
    ss_cudnn_conv_desc d = base();
    d.has_bias = 1;
    d.has_residual = 1;
    d.lo = 0;
    d.hi = 6;
    ss_cudnn_conv *plan = NULL;
    uint64_t workspace = 0;
    char text[1024], error[1024];

    *mock.set_calls = 0;
    *mock.create_calls = 0;
    int rc = ss_cudnn_conv_create(h, &d, 0, &plan, &workspace, text, sizeof text);
    int sets = *mock.set_calls, creates = *mock.create_calls;
    CHECK(rc == SS_CUDNN_OK, "the full build: rc %d '%s'", rc, text);
    ss_cudnn_conv_destroy(plan);
    note("a full build: %d SetAttribute, %d CreateDescriptor calls", sets, creates);
    CHECK(sets > 50 && creates > 20, "a full build made only %d SetAttribute and %d CreateDescriptor calls", sets, creates);

    int failed = 0, built = 0;
    for (int k = 1; k <= sets; k++) {
        *mock.set_calls = 0;
        *mock.fail_set_at = k;
        plan = NULL;
        rc = ss_cudnn_conv_create(h, &d, 0, &plan, &workspace, text, sizeof text);
        if (k == 3) note("SetAttribute failure 3: '%s'", text);
        if (rc == SS_CUDNN_OK) {
            built++;
            /* Only a failure in the mode A heuristics (-> fallback) or in a plan candidate (-> the next) is survived. */
            CHECK(plan != NULL && (contains(text, "(fallback heuristics; mode A: ") || strcmp(text, "engine 11, heuristics rank 1") == 0),
                  "SetAttribute failure %d: built '%s'", k, text);
        } else {
            failed++;
            char want[96];
            snprintf(want, sizeof want, ": CUDNN_STATUS_BAD_PARAM (2000): injected failure at set %d", k);
            CHECK(rc == CUDNN_STATUS_BAD_PARAM && plan == NULL && starts_with(text, "cudnnBackendSetAttribute(") && ends_with(text, want),
                  "SetAttribute failure %d: rc %d, plan %p, '%s'", k, rc, (void *)plan, text);
        }
        ss_cudnn_conv_destroy(plan);
        CHECK(*mock.live == 1, "SetAttribute failure %d: %d alive (leak; rc %d '%s')", k, *mock.live, rc, text);
    }
    *mock.fail_set_at = 0;
    note("SetAttribute failures: %d reported, %d survived", failed, built);

    for (int k = 1; k <= creates; k++) {
        *mock.create_calls = 0;
        *mock.fail_create_at = k;
        plan = NULL;
        rc = ss_cudnn_conv_create(h, &d, 0, &plan, &workspace, text, sizeof text);
        if (rc == SS_CUDNN_OK) {
            CHECK(plan != NULL && (contains(text, "(fallback heuristics; mode A: ") || strcmp(text, "engine 11, heuristics rank 1") == 0 ||
                                   strcmp(text, "engine ?, heuristics rank 0") == 0),
                  "CreateDescriptor failure %d: built '%s'", k, text);
        } else {
            char want[96];
            snprintf(want, sizeof want, "injected failure at create %d", k);
            CHECK(rc == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED && plan == NULL &&
                      starts_with(text, "cudnnBackendCreateDescriptor(") && ends_with(text, want),
                  "CreateDescriptor failure %d: rc %d, plan %p, '%s'", k, rc, (void *)plan, text);
        }
        /* The last descriptor created is the engine the description names: without it, "engine ?". */
        if (k == creates) CHECK(rc == SS_CUDNN_OK && strcmp(text, "engine ?, heuristics rank 0") == 0, "no engine descriptor: '%s'", text);
        ss_cudnn_conv_destroy(plan);
        CHECK(*mock.live == 1, "CreateDescriptor failure %d: %d alive (leak; rc %d '%s')", k, *mock.live, rc, text);
    }
    *mock.fail_create_at = 0;

    /* A status cuDNN 9.6 does not name. */
    *mock.set_calls = 0;
    *mock.fail_set_at = 1;
    *mock.fail_set_status = 777;
    plan = NULL;
    rc = ss_cudnn_conv_create(h, &d, 0, &plan, &workspace, text, sizeof text);
    *mock.fail_set_at = 0;
    *mock.fail_set_status = CUDNN_STATUS_BAD_PARAM;
    CHECK(rc == 777 && plan == NULL && ends_with(text, ": cuDNN status 777: injected failure at set 1"), "status 777: rc %d '%s'", rc,
          text);

    /* Run time: each SetAttribute of the variant pack, its creation, the execution. */
    rc = ss_cudnn_conv_create(h, &d, 0, &plan, &workspace, text, sizeof text);
    CHECK(rc == SS_CUDNN_OK && plan != NULL, "the plan for the run-time failures: rc %d '%s'", rc, text);
    if (plan == NULL) return;
    int alive = *mock.live;
    for (int k = 1; k <= 3; k++) {
        *mock.set_calls = 0;
        *mock.fail_set_at = k;
        rc = ss_cudnn_conv_run(h, plan, X, W, BIAS, RESIDUAL, Y, 0, error, sizeof error);
        if (k == 2) note("run failure 2: '%s'", error);
        char want[96];
        snprintf(want, sizeof want, ": CUDNN_STATUS_BAD_PARAM (2000): injected failure at set %d", k);
        CHECK(rc == CUDNN_STATUS_BAD_PARAM && starts_with(error, "cudnnBackendSetAttribute(variant pack, CUDNN_ATTR_VARIANT_PACK_") &&
                  ends_with(error, want),
              "run, SetAttribute failure %d: rc %d '%s'", k, rc, error);
        CHECK(*mock.live == alive, "run, SetAttribute failure %d: %d alive, %d before (leak)", k, *mock.live, alive);
    }
    *mock.fail_set_at = 0;
    *mock.create_calls = 0;
    *mock.fail_create_at = 1;
    rc = ss_cudnn_conv_run(h, plan, X, W, BIAS, RESIDUAL, Y, 0, error, sizeof error);
    *mock.fail_create_at = 0;
    CHECK(rc == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED && starts_with(error, "cudnnBackendCreateDescriptor(variant pack)"),
          "run, CreateDescriptor failure: rc %d '%s'", rc, error);
    CHECK(*mock.live == alive, "run, CreateDescriptor failure: %d alive, %d before", *mock.live, alive);
    *mock.fail_execute = CUDNN_STATUS_EXECUTION_FAILED;
    rc = ss_cudnn_conv_run(h, plan, X, W, BIAS, RESIDUAL, Y, 0, error, sizeof error);
    *mock.fail_execute = 0;
    CHECK(rc == CUDNN_STATUS_EXECUTION_FAILED &&
              strcmp(error, "cudnnBackendExecute: CUDNN_STATUS_EXECUTION_FAILED (5000): injected execution failure") == 0,
          "run, execution failure: rc %d '%s'", rc, error);
    CHECK(*mock.live == alive, "run, execution failure: %d alive, %d before (the variant pack leaks)", *mock.live, alive);
    rc = ss_cudnn_conv_run(h, plan, X, W, 0, RESIDUAL, Y, 0, error, sizeof error);
    note("NULL bias: '%s'", error);
    CHECK(rc == SS_CUDNN_INVALID && contains(error, "bias"), "a NULL bias is accepted: rc %d '%s'", rc, error);
    rc = ss_cudnn_conv_run(h, plan, X, W, BIAS, 0, Y, 0, error, sizeof error);
    CHECK(rc == SS_CUDNN_INVALID && contains(error, "residual"), "a NULL residual is accepted: rc %d '%s'", rc, error);
    CHECK(ss_cudnn_conv_run(h, NULL, X, W, BIAS, RESIDUAL, Y, 0, error, sizeof error) == SS_CUDNN_INVALID, "a NULL plan is accepted");
    CHECK(ss_cudnn_conv_run(NULL, plan, X, W, BIAS, RESIDUAL, Y, 0, error, sizeof error) == SS_CUDNN_INVALID, "a NULL handle is accepted");
    rc = ss_cudnn_conv_run(h, plan, X, W, BIAS, RESIDUAL, Y, 0, error, sizeof error);
    CHECK(rc == SS_CUDNN_OK && error[0] == 0, "a run after the failures: rc %d '%s'", rc, error);
    ss_cudnn_conv_destroy(plan);
    CHECK(*mock.live == 1, "after the run-time failures: %d alive", *mock.live);
}

int main(int argc, char **argv) {
    void *library = load_mock(argc, argv, SS_LIB_CUDNN, "SLICESERVE_LIBCUDNN", "9.6.0");
    if (library == NULL || !resolve_mock(library)) return finish();

    void *h = NULL;
    test_handles(&h);
    if (h == NULL) return finish();
    test_combinations(h);
    test_engines(h);
    test_fallback(h);
    test_refused(h);
    test_failure_points(h);

    ss_cudnn_handle_destroy(h);
    CHECK(*mock.live == 0, "%d handles and descriptors alive at the end (leak)", *mock.live);
    CHECK(*mock.misuses == 0, "the mock saw %d misuses of the cuDNN API; the first: %s", *mock.misuses, mock.first_misuse);
    note("%d executions", *mock.exec_calls);
    return finish();
}
