// The run-time loader for the CUDA libraries: dlopen + one symbol table per library.
//
// Nothing is linked at build time. Each library is opened once, on first use, from (in order)
// the path in its SLICESERVE_LIB* environment variable, the dynamic loader's own search
// (LD_LIBRARY_PATH, ld.so.cache), then the standard CUDA install locations. Driver entry points
// are resolved with cuGetProcAddress at the ABI version the table declares, so that e.g.
// "cuMemAlloc" at 3020 is the 64-bit cuMemAlloc_v2. Every failure is recorded as text in the
// library's ss_lib_info; nothing here aborts.
#define _GNU_SOURCE
#include "sliceserve_cuda.h"

#include <dlfcn.h>
#include <glob.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The ABI facts our declarations rely on (x86-64 and aarch64 Linux, LP64).
_Static_assert(sizeof(ss_CUdeviceptr) == 8, "CUdeviceptr is 64-bit");
_Static_assert(sizeof(ss_CUuuid) == 16, "CUuuid is 16 bytes");
_Static_assert(sizeof(ss_nvmlMemory) == 24, "nvmlMemory_t is three unsigned long long");
_Static_assert(sizeof(ss_nvmlGpuInstanceProfileInfo) == 48 && offsetof(ss_nvmlGpuInstanceProfileInfo, memorySizeMB) == 40,
               "nvmlGpuInstanceProfileInfo_t: ten unsigned int, then memorySizeMB");
_Static_assert(sizeof(ss_nvmlGpuInstanceInfo) == 24 && sizeof(ss_nvmlComputeInstanceInfo) == 32,
               "nvmlGpuInstanceInfo_t / nvmlComputeInstanceInfo_t: handles, ids, placement");
_Static_assert(sizeof(ss_nvmlComputeInstanceProfileInfo) == 36, "nvmlComputeInstanceProfileInfo_t: nine unsigned int");
_Static_assert(sizeof(ss_nvmlProcessInfo) == 24, "nvmlProcessInfo_t: pid, usedGpuMemory, GI id, CI id");
_Static_assert(sizeof(ss_CUresult) == 4 && sizeof(ss_nvmlReturn) == 4 && sizeof(ss_nvrtcResult) == 4,
               "result enums are int-sized");
_Static_assert(sizeof(void *) == 8, "64-bit targets only");
_Static_assert(sizeof(ss_CUdevResource) == 144 && offsetof(ss_CUdevResource, sm_count) == 96 &&
                   offsetof(ss_CUdevResource, sm_coscheduled_alignment) == 104,
               "CUdevResource (CUDA 13.0 ABI): 4 + 92 + a 48-byte union");
_Static_assert(sizeof(ss_nvjpegImage) == 64, "nvjpegImage_t is four pointers and four size_t pitches");
_Static_assert(sizeof(ss_cublasLtMatmulAlgo) == 64, "cublasLtMatmulAlgo_t is eight uint64_t (cublasLt.h)");
_Static_assert(sizeof(ss_cublasLtMatmulHeuristicResult) == 96 && offsetof(ss_cublasLtMatmulHeuristicResult, workspaceSize) == 64 &&
                   offsetof(ss_cublasLtMatmulHeuristicResult, state) == 72 &&
                   offsetof(ss_cublasLtMatmulHeuristicResult, wavesCount) == 76 &&
                   offsetof(ss_cublasLtMatmulHeuristicResult, reserved) == 80,
               "cublasLtMatmulHeuristicResult_t: algo, size_t workspaceSize, cublasStatus_t state, float wavesCount, int reserved[4]");

// The value a forwarder returns when its symbol is missing.
#define SS_MISSING(ret) _Generic((ret)0, const char *: (ret)0, size_t: (ret)0, default: (ret)SS_LIB_NOT_LOADED)

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

#define SS_FIELD(ret, name, base, version, required, params, args) ret(*name) params;
typedef struct { SS_CUDA_SYMBOLS(SS_FIELD) } cuda_table;
typedef struct { SS_NVML_SYMBOLS(SS_FIELD) } nvml_table;
typedef struct { SS_NVRTC_SYMBOLS(SS_FIELD) } nvrtc_table;
typedef struct { SS_NVJPEG_SYMBOLS(SS_FIELD) } nvjpeg_table;
typedef struct { SS_CUBLASLT_SYMBOLS(SS_FIELD) } cublaslt_table;
typedef struct { SS_CUDNN_SYMBOLS(SS_FIELD) } cudnn_table;
#undef SS_FIELD

typedef struct symbol_desc {
    const char *name;
    const char *base;  // driver: the name cuGetProcAddress knows; NULL elsewhere
    int version;       // driver: the ABI version the prototype is for
    int required;
    size_t offset;     // of the function pointer in the table
} symbol_desc;

#define SS_DESC_CUDA(ret, name, base, version, required, params, args) {#name, base, version, required, offsetof(cuda_table, name)},
#define SS_DESC_NVML(ret, name, base, version, required, params, args) {#name, base, version, required, offsetof(nvml_table, name)},
#define SS_DESC_NVRTC(ret, name, base, version, required, params, args) {#name, base, version, required, offsetof(nvrtc_table, name)},
#define SS_DESC_NVJPEG(ret, name, base, version, required, params, args) {#name, base, version, required, offsetof(nvjpeg_table, name)},
#define SS_DESC_CUBLASLT(ret, name, base, version, required, params, args) {#name, base, version, required, offsetof(cublaslt_table, name)},
#define SS_DESC_CUDNN(ret, name, base, version, required, params, args) {#name, base, version, required, offsetof(cudnn_table, name)},
static const symbol_desc cuda_symbols[] = {SS_CUDA_SYMBOLS(SS_DESC_CUDA)};
static const symbol_desc nvml_symbols[] = {SS_NVML_SYMBOLS(SS_DESC_NVML)};
static const symbol_desc nvrtc_symbols[] = {SS_NVRTC_SYMBOLS(SS_DESC_NVRTC)};
static const symbol_desc nvjpeg_symbols[] = {SS_NVJPEG_SYMBOLS(SS_DESC_NVJPEG)};
static const symbol_desc cublaslt_symbols[] = {SS_CUBLASLT_SYMBOLS(SS_DESC_CUBLASLT)};
static const symbol_desc cudnn_symbols[] = {SS_CUDNN_SYMBOLS(SS_DESC_CUDNN)};

static cuda_table cuda_t;
static nvml_table nvml_t;
static nvrtc_table nvrtc_t;
static nvjpeg_table nvjpeg_t;
static cublaslt_table cublaslt_t;
static cudnn_table cudnn_t;

#define SS_COUNT(array) ((int)(sizeof(array) / sizeof((array)[0])))

typedef struct library {
    const char *name;
    const char *env;
    const char *const *sonames;  // NULL-terminated, most preferred first
    const symbol_desc *symbols;
    int symbol_count;
    void *table;
    size_t table_size;
    pthread_mutex_t lock;
    atomic_int done;
    void *handle;
    ss_lib_info info;
} library;

static const char *const cuda_names[] = {"libcuda.so.1", "libcuda.so", NULL};
static const char *const nvml_names[] = {"libnvidia-ml.so.1", "libnvidia-ml.so", NULL};
static const char *const nvrtc_names[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so", NULL};
static const char *const nvjpeg_names[] = {"libnvjpeg.so.13", "libnvjpeg.so.12", "libnvjpeg.so", NULL};
static const char *const cublaslt_names[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so", NULL};
static const char *const cudnn_names[] = {"libcudnn.so.9", "libcudnn.so", NULL};

#define SS_LIBRARY(n, e, names, syms, tab)                                                          \
    {.name = n, .env = e, .sonames = names, .symbols = syms, .symbol_count = SS_COUNT(syms),         \
     .table = &tab, .table_size = sizeof(tab), .lock = PTHREAD_MUTEX_INITIALIZER}

static library libraries[SS_LIB_COUNT] = {
    SS_LIBRARY("libcuda", "SLICESERVE_LIBCUDA", cuda_names, cuda_symbols, cuda_t),
    SS_LIBRARY("nvml", "SLICESERVE_LIBNVML", nvml_names, nvml_symbols, nvml_t),
    SS_LIBRARY("nvrtc", "SLICESERVE_LIBNVRTC", nvrtc_names, nvrtc_symbols, nvrtc_t),
    SS_LIBRARY("nvjpeg", "SLICESERVE_LIBNVJPEG", nvjpeg_names, nvjpeg_symbols, nvjpeg_t),
    SS_LIBRARY("cublasLt", "SLICESERVE_LIBCUBLASLT", cublaslt_names, cublaslt_symbols, cublaslt_t),
    SS_LIBRARY("cudnn", "SLICESERVE_LIBCUDNN", cudnn_names, cudnn_symbols, cudnn_t),
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

static void append(char *buffer, size_t size, const char *text) {
    size_t used = strnlen(buffer, size);
    if (used + 1 >= size) return;
    snprintf(buffer + used, size - used, "%s", text);
}

static void appendf(char *buffer, size_t size, const char *format, const char *a, const char *b) {
    char line[768];
    snprintf(line, sizeof line, format, a, b);
    append(buffer, size, line);
}

/// Directories searched after the dynamic loader's own search, in order.
static int search_directories(char directories[][PATH_MAX], int capacity) {
    int count = 0;
    const char *homes[] = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), "/usr/local/cuda"};
    for (size_t h = 0; h < sizeof homes / sizeof homes[0]; h++) {
        if (homes[h] == NULL || homes[h][0] == 0) continue;
        const char *subs[] = {"lib64", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib", "lib"};
        for (size_t s = 0; s < sizeof subs / sizeof subs[0] && count < capacity; s++)
            snprintf(directories[count++], PATH_MAX, "%s/%s", homes[h], subs[s]);
    }
    glob_t found;
    if (glob("/usr/local/cuda-*/targets/*/lib", 0, NULL, &found) == 0) {
        // Newest toolkit first: glob sorts ascending.
        for (size_t i = found.gl_pathc; i > 0 && count < capacity; i--)
            snprintf(directories[count++], PATH_MAX, "%s", found.gl_pathv[i - 1]);
        globfree(&found);
    }
    const char *fixed[] = {"/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                           "/usr/lib64", "/usr/lib/wsl/lib"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] && count < capacity; i++)
        snprintf(directories[count++], PATH_MAX, "%s", fixed[i]);
    return count;
}

static void *open_path(const char *path, char *problem, size_t problem_size) {
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *error = dlerror();
        appendf(problem, problem_size, "%s%s; ", error ? error : path, "");
    }
    return handle;
}

static void record_path(void *handle, ss_lib_info *info) {
    struct link_map *map = NULL;
    if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map != NULL && map->l_name != NULL) {
        char resolved[PATH_MAX];
        const char *path = realpath(map->l_name, resolved) ? resolved : map->l_name;
        snprintf(info->path, sizeof info->path, "%s", path);
    }
}

/// Fills `table` from `handle`; returns 1 when every required symbol resolved.
static int resolve(const library *lib, void *handle, void *table, ss_lib_info *info) {
    memset(table, 0, lib->table_size);
    typedef ss_CUresult (*get_proc_v2)(const char *, void **, int, unsigned long long, int *);
    typedef ss_CUresult (*get_proc_v1)(const char *, void **, int, unsigned long long);
    get_proc_v2 gpa2 = NULL;
    get_proc_v1 gpa1 = NULL;
    if (lib == &libraries[SS_LIB_CUDA]) {
        gpa2 = (get_proc_v2)dlsym(handle, "cuGetProcAddress_v2");
        if (gpa2 == NULL) gpa1 = (get_proc_v1)dlsym(handle, "cuGetProcAddress");
    }
    int complete = 1, missing_required = 0;
    for (int i = 0; i < lib->symbol_count; i++) {
        const symbol_desc *symbol = &lib->symbols[i];
        void *function = NULL;
        // 1 = CU_GET_PROC_ADDRESS_LEGACY_STREAM: the entry points with the legacy default stream.
        if (symbol->base != NULL && gpa2 != NULL) {
            int status = 0;
            if (gpa2(symbol->base, &function, symbol->version, 1, &status) != 0) function = NULL;
        } else if (symbol->base != NULL && gpa1 != NULL) {
            if (gpa1(symbol->base, &function, symbol->version, 1) != 0) function = NULL;
        }
        if (function == NULL) function = dlsym(handle, symbol->name);
        memcpy((char *)table + symbol->offset, &function, sizeof function);
        if (function == NULL) {
            if (symbol->required) {
                if (complete) appendf(info->problem, sizeof info->problem, "missing required symbol %s%s", symbol->name, "");
                else if (missing_required < 4) appendf(info->problem, sizeof info->problem, ", %s%s", symbol->name, "");
                complete = 0;
                missing_required++;
            } else {
                if (info->missing_optional[0]) append(info->missing_optional, sizeof info->missing_optional, ", ");
                append(info->missing_optional, sizeof info->missing_optional, symbol->name);
            }
        }
    }
    if (missing_required > 4) {
        char more[64];
        snprintf(more, sizeof more, " and %d more", missing_required - 4);
        append(info->problem, sizeof info->problem, more);
    }
    if (!complete) memset(table, 0, lib->table_size);
    return complete;
}

static void cuda_error_text(ss_CUresult result, char *out, size_t size) {
    const char *name = NULL, *text = NULL;
    if (cuda_t.cuGetErrorName) cuda_t.cuGetErrorName(result, &name);
    if (cuda_t.cuGetErrorString) cuda_t.cuGetErrorString(result, &text);
    snprintf(out, size, "%s (%d): %s", name ? name : "CUDA error", result, text ? text : "no description");
}

/// NVRTC opens libnvrtc-builtins.so.<major>.<minor> by its bare name when it first compiles, which
/// fails when libnvrtc itself came from a folder outside the loader's path (a Python wheel, an
/// override): open it now from NVRTC's own folder, so that the later bare-name open finds it loaded.
static void preload_nvrtc_builtins(const char *nvrtc_path, int major, int minor) {
    const char *slash = strrchr(nvrtc_path, '/');
    if (slash == NULL) return;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%.*s/libnvrtc-builtins.so.%d.%d", (int)(slash - nvrtc_path), nvrtc_path, major, minor);
    void *handle = dlopen(path, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    if (handle == NULL) handle = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    (void)handle;  // kept open for the life of the process, like libnvrtc
}

/// Library-specific initialisation and version, after a successful resolve into the live table.
static void initialise(ss_library which, ss_lib_info *info) {
    info->initialized = 1;
    switch (which) {
    case SS_LIB_CUDA: {
        int version = 0;
        if (cuda_t.cuDriverGetVersion(&version) == 0)
            snprintf(info->version, sizeof info->version, "%d.%d", version / 1000, (version % 1000) / 10);
        ss_CUresult result = cuda_t.cuInit(0);
        if (result != 0) {
            char text[256];
            cuda_error_text(result, text, sizeof text);
            info->initialized = 0;
            info->init_result = result;
            appendf(info->problem, sizeof info->problem, "cuInit failed: %s%s", text, "");
        }
        break;
    }
    case SS_LIB_NVML: {
        ss_nvmlReturn result = nvml_t.nvmlInit_v2();
        if (result != 0) {
            info->initialized = 0;
            info->init_result = result;
            const char *text = nvml_t.nvmlErrorString(result);
            appendf(info->problem, sizeof info->problem, "nvmlInit failed: %s%s", text ? text : "unknown error", "");
            break;
        }
        char version[80] = {0}, driver[80] = {0};
        nvml_t.nvmlSystemGetNVMLVersion(version, sizeof version);
        nvml_t.nvmlSystemGetDriverVersion(driver, sizeof driver);
        snprintf(info->version, sizeof info->version, "%s (driver %s)", version, driver);
        break;
    }
    case SS_LIB_NVRTC: {
        int major = 0, minor = 0;
        if (nvrtc_t.nvrtcVersion(&major, &minor) == 0)
            snprintf(info->version, sizeof info->version, "%d.%d", major, minor);
        preload_nvrtc_builtins(info->path, major, minor);
        break;
    }
    case SS_LIB_NVJPEG: {
        int major = 0, minor = 0, patch = 0;  // libraryPropertyType: MAJOR 0, MINOR 1, PATCH 2
        if (nvjpeg_t.nvjpegGetProperty(0, &major) == 0 && nvjpeg_t.nvjpegGetProperty(1, &minor) == 0 &&
            nvjpeg_t.nvjpegGetProperty(2, &patch) == 0)
            snprintf(info->version, sizeof info->version, "%d.%d.%d", major, minor, patch);
        break;
    }
    case SS_LIB_CUBLASLT: {
        size_t v = cublaslt_t.cublasLtGetVersion();  // major*10000 + minor*100 + patch
        snprintf(info->version, sizeof info->version, "%zu.%zu.%zu", v / 10000, (v % 10000) / 100, v % 100);
        break;
    }
    case SS_LIB_CUDNN: {
        size_t v = cudnn_t.cudnnGetVersion();  // 9.x: major*10000 + minor*100 + patch; 8.x: *1000
        size_t scale = v >= 90000 ? 10000 : 1000;
        snprintf(info->version, sizeof info->version, "%zu.%zu.%zu", v / scale, (v % scale) / 100, v % 100);
        break;
    }
    default:
        break;
    }
}

static void load_locked(ss_library which) {
    library *lib = &libraries[which];
    ss_lib_info *info = &lib->info;
    memset(info, 0, sizeof *info);
    const char *override = getenv(lib->env);
    void *handle = NULL;
    if (override != NULL && override[0] != 0) {
        if (strcmp(override, "none") == 0) {
            appendf(info->problem, sizeof info->problem, "disabled by %s=none%s", lib->env, "");
            return;
        }
        handle = open_path(override, info->problem, sizeof info->problem);
        if (handle == NULL) {
            appendf(info->problem, sizeof info->problem, "(the path in %s%s)", lib->env, "");
            return;
        }
    }
    for (int i = 0; handle == NULL && lib->sonames[i] != NULL; i++)
        handle = dlopen(lib->sonames[i], RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        static char directories[32][PATH_MAX];
        int count = search_directories(directories, 32);
        for (int d = 0; handle == NULL && d < count; d++) {
            for (int i = 0; handle == NULL && lib->sonames[i] != NULL; i++) {
                char path[PATH_MAX + 64];
                snprintf(path, sizeof path, "%s/%s", directories[d], lib->sonames[i]);
                handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            }
        }
    }
    if (handle == NULL) {
        appendf(info->problem, sizeof info->problem, "%s not found (tried ", lib->sonames[0], "");
        for (int i = 0; lib->sonames[i] != NULL; i++) {
            if (i) append(info->problem, sizeof info->problem, ", ");
            append(info->problem, sizeof info->problem, lib->sonames[i]);
        }
        appendf(info->problem, sizeof info->problem,
                " on the loader's path and in the CUDA install folders; set %s to its path)%s", lib->env, "");
        return;
    }
    record_path(handle, info);
    if (!resolve(lib, handle, lib->table, info)) {
        dlclose(handle);
        return;
    }
    lib->handle = handle;
    info->loaded = 1;
    initialise(which, info);
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

const char *ss_lib_name(ss_library library) {
    return (unsigned)library < SS_LIB_COUNT ? libraries[library].name : "unknown";
}

const char *ss_lib_env_name(ss_library library) {
    return (unsigned)library < SS_LIB_COUNT ? libraries[library].env : "";
}

int ss_lib_load(ss_library which) {
    if ((unsigned)which >= SS_LIB_COUNT) return 0;
    library *lib = &libraries[which];
    if (!atomic_load_explicit(&lib->done, memory_order_acquire)) {
        pthread_mutex_lock(&lib->lock);
        if (!atomic_load_explicit(&lib->done, memory_order_relaxed)) {
            load_locked(which);
            atomic_store_explicit(&lib->done, 1, memory_order_release);
        }
        pthread_mutex_unlock(&lib->lock);
    }
    return lib->info.loaded && lib->info.initialized;
}

void ss_lib_info_get(ss_library which, ss_lib_info *info) {
    memset(info, 0, sizeof *info);
    if ((unsigned)which >= SS_LIB_COUNT) {
        snprintf(info->problem, sizeof info->problem, "unknown library %d", (int)which);
        return;
    }
    ss_lib_load(which);
    *info = libraries[which].info;
}

void ss_lib_probe(ss_library which, const char *path, ss_lib_info *info) {
    memset(info, 0, sizeof *info);
    if ((unsigned)which >= SS_LIB_COUNT) {
        snprintf(info->problem, sizeof info->problem, "unknown library %d", (int)which);
        return;
    }
    const library *lib = &libraries[which];
    void *handle = open_path(path, info->problem, sizeof info->problem);
    if (handle == NULL) return;
    record_path(handle, info);
    void *scratch = calloc(1, lib->table_size);
    if (scratch == NULL) {
        dlclose(handle);
        append(info->problem, sizeof info->problem, "out of memory");
        return;
    }
    // The driver lookup through cuGetProcAddress is keyed on `lib`, not on the live table, so the
    // probe sees exactly what a load would.
    info->loaded = resolve(lib, handle, scratch, info);
    free(scratch);
    dlclose(handle);
}

int ss_lib_has_symbol(ss_library which, const char *name) {
    if ((unsigned)which >= SS_LIB_COUNT || name == NULL) return 0;
    library *lib = &libraries[which];
    ss_lib_load(which);
    for (int i = 0; i < lib->symbol_count; i++) {
        if (strcmp(lib->symbols[i].name, name) == 0) {
            void *function = NULL;
            memcpy(&function, (char *)lib->table + lib->symbols[i].offset, sizeof function);
            return function != NULL;
        }
    }
    return 0;
}

// Forwarders: ss_<name>(...) calls the resolved entry point or reports SS_LIB_NOT_LOADED.
#define SS_FORWARD(ret, name, which, tab)                                                            \
    if (!atomic_load_explicit(&libraries[which].done, memory_order_acquire)) ss_lib_load(which);    \
    if (tab.name == NULL) return SS_MISSING(ret);
#define SS_FORWARD_CUDA(ret, name, base, version, required, params, args) \
    ret ss_##name params { SS_FORWARD(ret, name, SS_LIB_CUDA, cuda_t) return cuda_t.name args; }
#define SS_FORWARD_NVML(ret, name, base, version, required, params, args) \
    ret ss_##name params { SS_FORWARD(ret, name, SS_LIB_NVML, nvml_t) return nvml_t.name args; }
#define SS_FORWARD_NVRTC(ret, name, base, version, required, params, args) \
    ret ss_##name params { SS_FORWARD(ret, name, SS_LIB_NVRTC, nvrtc_t) return nvrtc_t.name args; }
#define SS_FORWARD_NVJPEG(ret, name, base, version, required, params, args) \
    ret ss_##name params { SS_FORWARD(ret, name, SS_LIB_NVJPEG, nvjpeg_t) return nvjpeg_t.name args; }
#define SS_FORWARD_CUBLASLT(ret, name, base, version, required, params, args) \
    ret ss_##name params { SS_FORWARD(ret, name, SS_LIB_CUBLASLT, cublaslt_t) return cublaslt_t.name args; }
#define SS_FORWARD_CUDNN(ret, name, base, version, required, params, args) \
    ret ss_##name params { SS_FORWARD(ret, name, SS_LIB_CUDNN, cudnn_t) return cudnn_t.name args; }
SS_CUDA_SYMBOLS(SS_FORWARD_CUDA)
SS_NVML_SYMBOLS(SS_FORWARD_NVML)
SS_NVRTC_SYMBOLS(SS_FORWARD_NVRTC)
SS_NVJPEG_SYMBOLS(SS_FORWARD_NVJPEG)
SS_CUBLASLT_SYMBOLS(SS_FORWARD_CUBLASLT)
SS_CUDNN_SYMBOLS(SS_FORWARD_CUDNN)
