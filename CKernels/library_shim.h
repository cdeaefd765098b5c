// library_shim.h: what the shims over dlopen'ed NVIDIA libraries (cudnn.c, cublaslt.c) share:
// a status table's name lookup and printf into a caller's (possibly absent) message buffer.
// Internal to those files: not in include/, so Swift never sees it.
#ifndef SLICESERVE_LIBRARY_SHIM_H
#define SLICESERVE_LIBRARY_SHIM_H

#include "sliceserve_cuda.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/// One entry of a library's status table: SS_STATUS_NAME(CUDNN_STATUS_SUCCESS) is
/// {CUDNN_STATUS_SUCCESS, "CUDNN_STATUS_SUCCESS"}.
typedef struct ss_status_name {
    int status;
    const char *name;
} ss_status_name;
#define SS_STATUS_NAME(s) {s, #s}

/// The name of `status` in `table` (of `count` entries), or NULL.
static inline const char *ss_status_lookup(const ss_status_name *table, size_t count, int status) {
    for (size_t i = 0; i < count; i++)
        if (table[i].status == status) return table[i].name;
    return NULL;
}

/// printf into a caller's buffer (which may be NULL or empty).
static inline void ss_put(char *out, size_t size, const char *format, ...) __attribute__((format(printf, 3, 4)));
static inline void ss_put(char *out, size_t size, const char *format, ...) {
    if (out == NULL || size == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(out, size, format, args);
    va_end(args);
}

/// Checks that `library` is loaded with every one of the `count` entry points a shim calls: 0,
/// or SS_LIB_NOT_LOADED (-1) with "<name> is not loaded: why" or "<name> VERSION (PATH) lacks
/// SYMBOL<hint>" in `out`.
static inline int ss_require_library(ss_library library, const char *name, const char *const *symbols, size_t count,
                                     const char *hint, char *out, size_t size) {
    ss_lib_info info;
    if (!ss_lib_load(library)) {
        ss_lib_info_get(library, &info);
        ss_put(out, size, "%s is not loaded: %s", name, info.problem[0] ? info.problem : "unknown reason");
        return SS_LIB_NOT_LOADED;
    }
    for (size_t i = 0; i < count; i++) {
        if (!ss_lib_has_symbol(library, symbols[i])) {
            ss_lib_info_get(library, &info);
            ss_put(out, size, "%s %s (%s) lacks %s%s", name, info.version[0] ? info.version : "?",
                   info.path[0] ? info.path : "unknown path", symbols[i], hint);
            return SS_LIB_NOT_LOADED;
        }
    }
    return 0;
}

#endif
