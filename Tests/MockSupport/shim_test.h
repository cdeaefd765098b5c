/* shim_test.h: the checks, notes and summary line the library-shim tests share
 * (Tests/MockCUDNN/cudnn_shim_test.c, Tests/MockCUBLASLT/cublaslt_shim_test.c). Define
 * SHIM_TEST_NAME ("cudnn", "cublaslt") before including it; the program ends with
 * `return finish();`, which prints "<name> shim test: N checks, F failed" and is 0 only when F is 0. */
#ifndef SLICESERVE_SHIM_TEST_H
#define SLICESERVE_SHIM_TEST_H

#include "sliceserve_cuda.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks = 0, failures = 0;
static bool verbose = false;

#define CHECK(condition, ...)                                                                         \
    do {                                                                                              \
        checks++;                                                                                     \
        if (!(condition)) {                                                                           \
            failures++;                                                                               \
            printf("FAIL %s_shim_test.c:%d: ", SHIM_TEST_NAME, __LINE__);                             \
            printf(__VA_ARGS__);                                                                      \
            printf("\n");                                                                             \
        }                                                                                             \
    } while (0)

/* What was seen along the way, with -v. */
static void note(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *format, ...) {
    if (!verbose) return;
    va_list args;
    va_start(args, format);
    vprintf(format, args);
    va_end(args);
    printf("\n");
}

static int finish(void) {
    printf("%s shim test: %d checks, %d failed\n", SHIM_TEST_NAME, checks, failures);
    return failures == 0 ? 0 : 1;
}

static bool contains(const char *text, const char *part) { return text != NULL && strstr(text, part) != NULL; }
static bool starts_with(const char *text, const char *prefix) { return strncmp(text, prefix, strlen(prefix)) == 0; }
static bool ends_with(const char *text, const char *suffix) {
    const size_t n = strlen(text), m = strlen(suffix);
    return n >= m && strcmp(text + n - m, suffix) == 0;
}

/* Loads the mock named by the arguments ([-v] PATH) or by `variable`, as `library` through the
 * run-time loader (an absolute path in `variable`: exactly that file, never a library on the
 * search path), checks it loaded with version `version`, and returns its dlopen handle for the
 * knobs; NULL (with the failed check counted) when it did not. */
static void *load_mock(int argc, char **argv, ss_library library, const char *variable, const char *version) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) verbose = true;
        else if (path == NULL) path = argv[i];
    }
    if (path == NULL) path = getenv(variable);
    if (path == NULL || path[0] == 0) {
        CHECK(false, "no mock library: usage: %s_shim_test [-v] path/to/the/mock (or set %s)", SHIM_TEST_NAME, variable);
        return NULL;
    }
    static char absolute[PATH_MAX];
    if (realpath(path, absolute) != NULL) path = absolute;
    setenv(variable, path, 1);
    ss_lib_load(library);
    ss_lib_info info;
    ss_lib_info_get(library, &info);
    note("%s: loaded %d, version %s, path %s, optional symbols missing: '%s'", SHIM_TEST_NAME, info.loaded, info.version, info.path,
         info.missing_optional);
    CHECK(info.loaded && info.initialized, "the mock did not load from %s: %s", path, info.problem);
    if (!info.loaded) return NULL;
    CHECK(strcmp(info.version, version) == 0, "version '%s', expected the mock's %s", info.version, version);
    void *handle = dlopen(info.path, RTLD_NOW | RTLD_NOLOAD);
    const char *why = handle == NULL ? dlerror() : NULL;
    CHECK(handle != NULL, "the loaded mock (%s) cannot be reopened: %s", info.path, why ? why : "?");
    return handle;
}

#endif
