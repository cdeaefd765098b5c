/* shim_test.h: the checks, notes and summary line the library-shim tests share
 * (Tests/MockCUDNN/cudnn_shim_test.c, Tests/MockCUBLASLT/cublaslt_shim_test.c). Define
 * SHIM_TEST_NAME ("cudnn", "cublaslt") before including it; the program ends with
 * `return finish();`, which prints "<name> shim test: N checks, F failed" and is 0 only when F is 0. */
#ifndef SLICESERVE_SHIM_TEST_H
#define SLICESERVE_SHIM_TEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
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

#endif
