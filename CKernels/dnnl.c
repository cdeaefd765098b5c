// The CPU executor's fast path: networks of oneDNN primitives (see sliceserve_dnnl.h).
//
// oneDNN is loaded with dlopen, never linked, so the binary builds and runs where it is absent.
// The declarations below are the subset of oneDNN 2.x's C API this file calls; the types oneDNN
// fills in (memory and operation descriptors) are kept as opaque, generously sized byte blocks
// that only oneDNN reads. The constants are oneDNN 2.x's (checked against dnnl_types.h 2.6.3 by
// Scripts/check-dnnl-abi.sh).
#define _GNU_SOURCE
#include "sliceserve_dnnl.h"

#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// oneDNN 2.x ABI subset
// ---------------------------------------------------------------------------------------------

typedef int dnnl_status;
typedef void *dnnl_handle;  // engine, stream, memory, primitive, primitive_desc, attr, post_ops
typedef int64_t dnnl_dims[12];
/// dnnl_memory_desc_t is 696 bytes in oneDNN 2.x (8-byte aligned); oneDNN only ever reads and
/// writes it. Single descriptors live in a larger block; arrays of them (concat's sources) must
/// use the real size as their stride.
enum { DNNL_MD_SIZE = 696 };
typedef struct { _Alignas(16) unsigned char bytes[1024]; } dnnl_md;
/// Operation descriptors (the largest, convolution, is 5976 bytes in 2.6).
typedef struct { _Alignas(16) unsigned char bytes[12288]; } dnnl_op_desc;
typedef struct { int arg; dnnl_handle memory; } dnnl_exec_arg;
typedef struct { int major, minor, patch; const char *hash; unsigned cpu_runtime, gpu_runtime; } dnnl_version_info;

enum {
    DNNL_SUCCESS = 0,
    DNNL_F32 = 3,
    DNNL_TAG_ANY = 1, DNNL_TAG_A = 2, DNNL_TAG_AB = 3, DNNL_TAG_ABC = 4, DNNL_TAG_ABCD = 5, DNNL_TAG_ABCDE = 7,
    DNNL_TAG_ABCD16B = 69, DNNL_TAG_ABCD8B = 93,
    DNNL_CPU = 1,
    DNNL_STREAM_DEFAULT = 1,
    DNNL_FORWARD_INFERENCE = 96,
    DNNL_CONV_DIRECT = 1, DNNL_CONV_WINOGRAD = 2,
    DNNL_ELTWISE_RELU = 31, DNNL_ELTWISE_LOGISTIC = 175, DNNL_ELTWISE_HARDSWISH = 112, DNNL_ELTWISE_CLIP = 255,
    DNNL_POOL_MAX = 511, DNNL_POOL_AVG_INCLUDE = 767, DNNL_POOL_AVG_EXCLUDE = 1023,
    DNNL_BINARY_ADD = 131056, DNNL_BINARY_MUL = 131057, DNNL_BINARY_DIV = 131060, DNNL_BINARY_SUB = 131061,
    DNNL_QUERY_IMPL_INFO_STR = 8, DNNL_QUERY_SRC_MD = 129, DNNL_QUERY_WEIGHTS_MD = 131, DNNL_QUERY_DST_MD = 133,
    DNNL_ARG_SRC = 1, DNNL_ARG_SRC_1 = 2, DNNL_ARG_DST = 17, DNNL_ARG_WEIGHTS = 33, DNNL_ARG_BIAS = 41,
    DNNL_ARG_MULTIPLE_SRC = 1024, DNNL_ARG_POST_OP_DW_WEIGHTS = 8225, DNNL_ARG_POST_OP_DW_BIAS = 8233,
    DNNL_QUERY_EXEC_ARG_MD = 255,
    DNNL_ISA_AVX2 = 7, DNNL_ISA_AVX512_CORE = 39,
};

static struct {
    dnnl_status (*engine_create)(dnnl_handle *, int, size_t);
    dnnl_status (*stream_create)(dnnl_handle *, dnnl_handle, unsigned);
    dnnl_status (*stream_wait)(dnnl_handle);
    dnnl_status (*stream_destroy)(dnnl_handle);
    dnnl_status (*memory_desc_init_by_tag)(dnnl_md *, int, const int64_t *, int, int);
    size_t (*memory_desc_get_size)(const dnnl_md *);
    int (*memory_desc_equal)(const dnnl_md *, const dnnl_md *);
    dnnl_status (*memory_create)(dnnl_handle *, const dnnl_md *, dnnl_handle, void *);
    dnnl_status (*memory_set_data_handle)(dnnl_handle, void *);
    dnnl_status (*memory_destroy)(dnnl_handle);
    dnnl_status (*conv_desc_init)(dnnl_op_desc *, int, int, const dnnl_md *, const dnnl_md *, const dnnl_md *,
                                  const dnnl_md *, const int64_t *, const int64_t *, const int64_t *, const int64_t *);
    dnnl_status (*eltwise_desc_init)(dnnl_op_desc *, int, int, const dnnl_md *, float, float);
    dnnl_status (*pooling_desc_init)(dnnl_op_desc *, int, int, const dnnl_md *, const dnnl_md *, const int64_t *,
                                     const int64_t *, const int64_t *, const int64_t *, const int64_t *);
    dnnl_status (*binary_desc_init)(dnnl_op_desc *, int, const dnnl_md *, const dnnl_md *, const dnnl_md *);
    dnnl_status (*inner_product_desc_init)(dnnl_op_desc *, int, const dnnl_md *, const dnnl_md *, const dnnl_md *,
                                           const dnnl_md *);
    dnnl_status (*softmax_desc_init)(dnnl_op_desc *, int, const dnnl_md *, int);
    dnnl_status (*concat_pd_create)(dnnl_handle *, const dnnl_md *, int, int, const dnnl_md *, dnnl_handle, dnnl_handle);
    dnnl_status (*reorder_pd_create)(dnnl_handle *, const dnnl_md *, dnnl_handle, const dnnl_md *, dnnl_handle,
                                     dnnl_handle);
    dnnl_status (*attr_create)(dnnl_handle *);
    dnnl_status (*attr_destroy)(dnnl_handle);
    dnnl_status (*attr_set_post_ops)(dnnl_handle, dnnl_handle);
    dnnl_status (*post_ops_create)(dnnl_handle *);
    dnnl_status (*post_ops_destroy)(dnnl_handle);
    dnnl_status (*post_ops_append_sum)(dnnl_handle, float);
    dnnl_status (*post_ops_append_eltwise)(dnnl_handle, float, int, float, float);
    dnnl_status (*post_ops_append_dw)(dnnl_handle, int, int, int, int64_t, int64_t, int64_t, int64_t, int, const float *);
    dnnl_status (*pd_create)(dnnl_handle *, const dnnl_op_desc *, dnnl_handle, dnnl_handle, dnnl_handle);
    dnnl_status (*pd_iterator_create)(dnnl_handle *, const dnnl_op_desc *, dnnl_handle, dnnl_handle, dnnl_handle);
    dnnl_status (*pd_iterator_next)(dnnl_handle);
    dnnl_handle (*pd_iterator_fetch)(dnnl_handle);
    dnnl_status (*pd_iterator_destroy)(dnnl_handle);
    const dnnl_md *(*pd_query_md)(dnnl_handle, int, int);
    dnnl_status (*pd_query)(dnnl_handle, int, int, void *);
    dnnl_status (*pd_destroy)(dnnl_handle);
    dnnl_status (*primitive_create)(dnnl_handle *, dnnl_handle);
    dnnl_status (*primitive_execute)(dnnl_handle, dnnl_handle, int, const dnnl_exec_arg *);
    dnnl_status (*primitive_destroy)(dnnl_handle);
    int (*get_effective_cpu_isa)(void);
    const dnnl_version_info *(*version)(void);
    void (*omp_set_num_threads)(int);
} dnnl;

static const struct { const char *name; size_t offset; } dnnl_symbols[] = {
#define SYM(field, symbol) {symbol, offsetof(__typeof__(dnnl), field)}
    SYM(engine_create, "dnnl_engine_create"),
    SYM(stream_create, "dnnl_stream_create"),
    SYM(stream_wait, "dnnl_stream_wait"),
    SYM(stream_destroy, "dnnl_stream_destroy"),
    SYM(memory_desc_init_by_tag, "dnnl_memory_desc_init_by_tag"),
    SYM(memory_desc_get_size, "dnnl_memory_desc_get_size"),
    SYM(memory_desc_equal, "dnnl_memory_desc_equal"),
    SYM(memory_create, "dnnl_memory_create"),
    SYM(memory_set_data_handle, "dnnl_memory_set_data_handle"),
    SYM(memory_destroy, "dnnl_memory_destroy"),
    SYM(conv_desc_init, "dnnl_dilated_convolution_forward_desc_init"),
    SYM(eltwise_desc_init, "dnnl_eltwise_forward_desc_init"),
    SYM(pooling_desc_init, "dnnl_pooling_v2_forward_desc_init"),
    SYM(binary_desc_init, "dnnl_binary_desc_init"),
    SYM(inner_product_desc_init, "dnnl_inner_product_forward_desc_init"),
    SYM(softmax_desc_init, "dnnl_softmax_forward_desc_init"),
    SYM(concat_pd_create, "dnnl_concat_primitive_desc_create"),
    SYM(reorder_pd_create, "dnnl_reorder_primitive_desc_create"),
    SYM(attr_create, "dnnl_primitive_attr_create"),
    SYM(attr_destroy, "dnnl_primitive_attr_destroy"),
    SYM(attr_set_post_ops, "dnnl_primitive_attr_set_post_ops"),
    SYM(post_ops_create, "dnnl_post_ops_create"),
    SYM(post_ops_destroy, "dnnl_post_ops_destroy"),
    SYM(post_ops_append_sum, "dnnl_post_ops_append_sum"),
    SYM(post_ops_append_eltwise, "dnnl_post_ops_append_eltwise"),
    SYM(post_ops_append_dw, "dnnl_post_ops_append_dw"),
    SYM(pd_create, "dnnl_primitive_desc_create"),
    SYM(pd_iterator_create, "dnnl_primitive_desc_iterator_create"),
    SYM(pd_iterator_next, "dnnl_primitive_desc_iterator_next"),
    SYM(pd_iterator_fetch, "dnnl_primitive_desc_iterator_fetch"),
    SYM(pd_iterator_destroy, "dnnl_primitive_desc_iterator_destroy"),
    SYM(pd_query_md, "dnnl_primitive_desc_query_md"),
    SYM(pd_query, "dnnl_primitive_desc_query"),
    SYM(pd_destroy, "dnnl_primitive_desc_destroy"),
    SYM(primitive_create, "dnnl_primitive_create"),
    SYM(primitive_execute, "dnnl_primitive_execute"),
    SYM(primitive_destroy, "dnnl_primitive_destroy"),
    SYM(get_effective_cpu_isa, "dnnl_get_effective_cpu_isa"),
    SYM(version, "dnnl_version"),
#undef SYM
};

static ss_dnnl_info info;
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static dnnl_handle engine, shared_stream;
static int block_size = 8;

static const char *isa_name(int isa) {
    switch (isa) {  // dnnl_cpu_isa_t of oneDNN 2.6
    case 0x1: return "sse41";
    case 0x3: return "avx";
    case 0x7: return "avx2";
    case 0xf: return "avx512_mic";
    case 0x1f: return "avx512_mic_4ops";
    case 0x27: return "avx512_core";
    case 0x67: return "avx512_core_vnni";
    case 0xe7: return "avx512_core_bf16";
    case 0x3e7: return "avx512_core_amx";
    case 0x407: return "avx2_vnni";
    default: return "unknown";
    }
}

/// The folder `<executable>/../lib`, where the release bundle keeps libdnnl and its dependencies.
static int bundle_lib_dir(char *out, size_t size) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return 0;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash == NULL) return 0;
    *slash = 0;
    snprintf(out, size, "%s/../lib", exe);
    return 1;
}

static void *open_dnnl(void) {
    const char *override = getenv("SLICESERVE_LIBDNNL");
    if (override != NULL && override[0] != 0) {
        if (strcmp(override, "none") == 0) {
            snprintf(info.problem, sizeof info.problem, "disabled by SLICESERVE_LIBDNNL=none");
            return NULL;
        }
        void *handle = dlopen(override, RTLD_NOW | RTLD_LOCAL);
        if (handle == NULL) {
            const char *e = dlerror();
            snprintf(info.problem, sizeof info.problem, "%s (the path in SLICESERVE_LIBDNNL)", e ? e : override);
        }
        return handle;
    }
    char dir[PATH_MAX];
    char bundle_error[512] = "";
    if (bundle_lib_dir(dir, sizeof dir)) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/libdnnl.so.2", dir);
        if (access(path, R_OK) == 0) {
            // The release bundle carries libdnnl's own dependencies beside it: load them first,
            // so that libdnnl's DT_NEEDED entries find them by soname.
            const char *deps[] = {"libgomp.so.1", "libOpenCL.so.1"};
            for (size_t i = 0; i < sizeof deps / sizeof deps[0]; i++) {
                char dep[PATH_MAX + 32];
                snprintf(dep, sizeof dep, "%s/%s", dir, deps[i]);
                if (access(dep, R_OK) == 0) dlopen(dep, RTLD_NOW | RTLD_GLOBAL);
            }
            void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            if (handle != NULL) return handle;
            const char *e = dlerror();
            snprintf(bundle_error, sizeof bundle_error, "%.400s; ", e ? e : path);
        }
    }
    void *handle = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (handle != NULL) return handle;
    const char *e = dlerror();
    snprintf(info.problem, sizeof info.problem,
             "%s%.300s (install Debian's libdnnl2, or set SLICESERVE_LIBDNNL to libdnnl.so.2's path)", bundle_error,
             e ? e : "libdnnl.so.2 not found");
    return NULL;
}

static void load(void) {
    void *handle = open_dnnl();
    if (handle == NULL) return;
    for (size_t i = 0; i < sizeof dnnl_symbols / sizeof dnnl_symbols[0]; i++) {
        void *symbol = dlsym(handle, dnnl_symbols[i].name);
        if (symbol == NULL) {
            snprintf(info.problem, sizeof info.problem, "libdnnl has no %s (not oneDNN 2.x?)", dnnl_symbols[i].name);
            dlclose(handle);
            return;
        }
        memcpy((char *)&dnnl + dnnl_symbols[i].offset, &symbol, sizeof symbol);
    }
    // libgomp is libdnnl's dependency (Debian builds oneDNN with OpenMP): its thread count is
    // set per calling thread before each run.
    dnnl.omp_set_num_threads = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (dnnl.omp_set_num_threads == NULL) dnnl.omp_set_num_threads = (void (*)(int))dlsym(handle, "omp_set_num_threads");
    const dnnl_version_info *v = dnnl.version();
    snprintf(info.version, sizeof info.version, "%d.%d.%d", v->major, v->minor, v->patch);
    if (v->major != 2) {
        snprintf(info.problem, sizeof info.problem, "oneDNN %s found; SliceServe uses oneDNN 2.x", info.version);
        return;
    }
    if (v->cpu_runtime == 2 && dnnl.omp_set_num_threads == NULL) {
        snprintf(info.problem, sizeof info.problem, "oneDNN %s uses OpenMP but omp_set_num_threads was not found", info.version);
        return;
    }
    Dl_info where;
    if (dladdr((void *)dnnl.version, &where) && where.dli_fname) snprintf(info.path, sizeof info.path, "%s", where.dli_fname);
    if (dnnl.engine_create(&engine, DNNL_CPU, 0) != DNNL_SUCCESS ||
        dnnl.stream_create(&shared_stream, engine, DNNL_STREAM_DEFAULT) != DNNL_SUCCESS) {
        snprintf(info.problem, sizeof info.problem, "oneDNN %s could not create its CPU engine", info.version);
        return;
    }
    int isa = dnnl.get_effective_cpu_isa();
    snprintf(info.isa, sizeof info.isa, "%s", isa_name(isa));
    if ((isa & DNNL_ISA_AVX2) != DNNL_ISA_AVX2) {
        snprintf(info.problem, sizeof info.problem, "oneDNN's kernels need AVX2 here (this CPU offers %s)", info.isa);
        return;
    }
    block_size = (isa & DNNL_ISA_AVX512_CORE) == DNNL_ISA_AVX512_CORE ? 16 : 8;
    info.loaded = 1;
}

const ss_dnnl_info *ss_dnnl_load(void) {
    pthread_once(&load_once, load);
    return &info;
}

// ---------------------------------------------------------------------------------------------
// Packed weights, shared by the networks of one model
// ---------------------------------------------------------------------------------------------

typedef struct {
    int key;
    dnnl_md md;
    dnnl_handle memory;
    void *data;
} packed;

struct ss_dnnl_weights {
    pthread_mutex_t lock;
    packed *items;
    int count, capacity;
};

ss_dnnl_weights *ss_dnnl_weights_create(void) {
    ss_dnnl_weights *cache = calloc(1, sizeof *cache);
    if (cache) pthread_mutex_init(&cache->lock, NULL);
    return cache;
}

void ss_dnnl_weights_destroy(ss_dnnl_weights *cache) {
    if (cache == NULL) return;
    for (int i = 0; i < cache->count; i++) {
        dnnl.memory_destroy(cache->items[i].memory);
        free(cache->items[i].data);
    }
    free(cache->items);
    pthread_mutex_destroy(&cache->lock);
    free(cache);
}

// ---------------------------------------------------------------------------------------------
// Networks
// ---------------------------------------------------------------------------------------------

enum { ROLE_INTERMEDIATE, ROLE_CONSTANT, ROLE_VIEW, ROLE_INPUT, ROLE_OUTPUT };

typedef struct {
    int ndims;
    int64_t dims[6];
    int layout;
    dnnl_md md;
    size_t bytes;
    int role;
    int base;            // ROLE_VIEW: the value whose memory this one shares
    void *owned;         // ROLE_CONSTANT: its data
    size_t offset;       // ROLE_INTERMEDIATE: its place in the arena
    int first, last;     // steps that write it first and read it last
    dnnl_handle memory;
} value;

enum { MAX_ARGS = 40 };
/// Operands of a timed convolution: source, weights, bias, destination, and a fused depthwise
/// post-op's weights and bias.
enum { TIMED_OPERANDS = 6 };

typedef struct {
    const char *kind;
    char impl[64];
    dnnl_handle primitive;
    int nargs;
    int arg[MAX_ARGS];
    int val[MAX_ARGS];          // a value index, or -1 with `memory` set
    dnnl_handle memory[MAX_ARGS];
    dnnl_exec_arg exec[MAX_ARGS];
} step;

struct ss_dnnl_net {
    int threads;
    ss_dnnl_weights *cache;
    value *values;
    int value_count, value_capacity;
    step *steps;
    int step_count, step_capacity;
    dnnl_handle stream;
    void *bound_arena;   // the caller's arena the intermediate values point into now
    size_t arena_bytes, constant_bytes;
    int input, output, finalized;
    // Scratch operands for timing candidate implementations while the network is built: mapped
    // (glibc keeps freed heap memory; these reach a batch-16 layer's output, tens of MB, and made
    // MobileNetV2's server hold 404-438 MB instead of about 235), grown as needed, reused by every
    // timing (mapping them per timing doubled MobileNetV2's load), unmapped when the network is
    // finalized.
    void *timing[TIMED_OPERANDS];
    size_t timing_bytes[TIMED_OPERANDS];
    char error[512];
};

/// oneDNN sizes each primitive's thread team when the primitive is created (and OpenMP's thread
/// count is a per-thread setting): set it on the calling thread before creating or running.
static void use_threads(const ss_dnnl_net *net) {
    if (dnnl.omp_set_num_threads) dnnl.omp_set_num_threads(net->threads);
}

static int fail(ss_dnnl_net *net, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(net->error, sizeof net->error, format, args);
    va_end(args);
    return -1;
}

ss_dnnl_net *ss_dnnl_net_create(int threads, ss_dnnl_weights *cache) {
    if (!ss_dnnl_load()->loaded || cache == NULL) return NULL;
    ss_dnnl_net *net = calloc(1, sizeof *net);
    if (net == NULL) return NULL;
    net->threads = threads < 1 ? 1 : threads;
    net->cache = cache;
    net->input = net->output = -1;
    if (dnnl.stream_create(&net->stream, engine, DNNL_STREAM_DEFAULT) != DNNL_SUCCESS) {
        free(net);
        return NULL;
    }
    return net;
}

static void release_timing_buffers(ss_dnnl_net *net) {
    for (int i = 0; i < TIMED_OPERANDS; i++) {
        if (net->timing[i]) munmap(net->timing[i], net->timing_bytes[i]);
        net->timing[i] = NULL;
        net->timing_bytes[i] = 0;
    }
}

/// Scratch operand `slot` of at least `bytes` (zero-filled when first mapped), or NULL. Written
/// through once when mapped: an untouched anonymous page reads as the kernel's one shared zero
/// page, so operands a convolution only reads (its source and weights) would come from the
/// cache however they were flushed, and timing would favour large transformed weights again.
static void *timing_buffer(ss_dnnl_net *net, int slot, size_t bytes) {
    if (net->timing_bytes[slot] >= bytes) return net->timing[slot];
    if (net->timing[slot]) munmap(net->timing[slot], net->timing_bytes[slot]);
    net->timing[slot] = NULL;
    net->timing_bytes[slot] = 0;
    void *mapped = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED) return NULL;
    memset(mapped, 0, bytes);
    net->timing[slot] = mapped;
    net->timing_bytes[slot] = bytes;
    return mapped;
}

void ss_dnnl_net_destroy(ss_dnnl_net *net) {
    if (net == NULL) return;
    release_timing_buffers(net);
    // Steps own only their primitives: every memory belongs to a value (or to the weights cache).
    for (int s = 0; s < net->step_count; s++)
        if (net->steps[s].primitive) dnnl.primitive_destroy(net->steps[s].primitive);
    for (int v = 0; v < net->value_count; v++) {
        if (net->values[v].memory) dnnl.memory_destroy(net->values[v].memory);
        free(net->values[v].owned);
    }
    free(net->values);
    free(net->steps);
    if (net->stream) dnnl.stream_destroy(net->stream);
    free(net);
}

const char *ss_dnnl_net_error(const ss_dnnl_net *net) { return net ? net->error : "oneDNN is not loaded"; }

static int grow(void **items, int *capacity, int count, size_t size) {
    if (count < *capacity) return 1;
    int next = *capacity ? *capacity * 2 : 32;
    void *grown = realloc(*items, (size_t)next * size);
    if (grown == NULL) return 0;
    memset((char *)grown + (size_t)*capacity * size, 0, (size_t)(next - *capacity) * size);
    *items = grown;
    *capacity = next;
    return 1;
}

static int plain_tag(int ndims) {
    switch (ndims) {
    case 1: return DNNL_TAG_A;
    case 2: return DNNL_TAG_AB;
    case 3: return DNNL_TAG_ABC;
    case 4: return DNNL_TAG_ABCD;
    case 5: return DNNL_TAG_ABCDE;
    default: return 0;
    }
}

static int init_md(ss_dnnl_net *net, dnnl_md *md, int ndims, const int64_t *dims, int layout) {
    int tag = layout == SS_DNNL_BLOCKED ? (ndims == 4 ? (block_size == 16 ? DNNL_TAG_ABCD16B : DNNL_TAG_ABCD8B) : 0)
                                        : plain_tag(ndims);
    if (tag == 0) return fail(net, "no %s layout for %d dimensions", layout == SS_DNNL_BLOCKED ? "blocked" : "plain", ndims);
    for (int i = 0; i < ndims; i++)
        if (dims[i] < 1) return fail(net, "dimension %d is %lld", i, (long long)dims[i]);
    if (dnnl.memory_desc_init_by_tag(md, ndims, dims, DNNL_F32, tag) != DNNL_SUCCESS)
        return fail(net, "oneDNN refused a %d-D memory descriptor", ndims);
    return 0;
}

static int add_value(ss_dnnl_net *net, int ndims, const int64_t *dims, int layout, int role) {
    use_threads(net);
    if (net->finalized) return fail(net, "the network is finalized");
    if (ndims < 1 || ndims > 5) return fail(net, "values have 1 to 5 dimensions, not %d", ndims);
    // At most 2^40 floats (4 TiB) per value: larger dimensions are refused before any size
    // arithmetic can overflow.
    int64_t elements = 1;
    for (int i = 0; i < ndims; i++) {
        if (dims[i] < 1 || __builtin_mul_overflow(elements, dims[i], &elements) || elements > ((int64_t)1 << 40))
            return fail(net, "a value of %d dimensions is too large or empty", ndims);
    }
    if (!grow((void **)&net->values, &net->value_capacity, net->value_count, sizeof(value))) return fail(net, "out of memory");
    value *v = &net->values[net->value_count];
    memset(v, 0, sizeof *v);
    if (init_md(net, &v->md, ndims, dims, layout) != 0) return -1;
    v->ndims = ndims;
    memcpy(v->dims, dims, sizeof(int64_t) * (size_t)ndims);
    v->layout = layout;
    v->bytes = dnnl.memory_desc_get_size(&v->md);
    v->role = role;
    v->base = -1;
    v->first = INT_MAX;
    v->last = -1;
    return net->value_count++;
}

int ss_dnnl_net_value(ss_dnnl_net *net, int ndims, const int64_t *dims, int layout) {
    return add_value(net, ndims, dims, layout, ROLE_INTERMEDIATE);
}

static int valid(ss_dnnl_net *net, int v) {
    if (v < 0 || v >= net->value_count) return fail(net, "value %d does not exist", v), 0;
    return 1;
}

/// Runs a one-off reorder from `src` to `dst` memory.
static int reorder_now(ss_dnnl_net *net, dnnl_handle src, const dnnl_md *src_md, dnnl_handle dst, const dnnl_md *dst_md) {
    use_threads(net);
    dnnl_handle pd = NULL, primitive = NULL;
    if (dnnl.reorder_pd_create(&pd, src_md, engine, dst_md, engine, NULL) != DNNL_SUCCESS)
        return fail(net, "oneDNN has no reorder for these weights");
    int status = dnnl.primitive_create(&primitive, pd);
    dnnl.pd_destroy(pd);
    if (status != DNNL_SUCCESS) return fail(net, "oneDNN could not create a reorder");
    dnnl_exec_arg args[2] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
    status = dnnl.primitive_execute(primitive, net->stream, 2, args);
    dnnl.stream_wait(net->stream);
    dnnl.primitive_destroy(primitive);
    return status == DNNL_SUCCESS ? 0 : fail(net, "a reorder failed");
}

/// `data` (row-major, `plain` dims) copied into a new buffer laid out as `want`.
static int pack(ss_dnnl_net *net, const float *data, const dnnl_md *plain, const dnnl_md *want, void **out_data,
                dnnl_handle *out_memory) {
    size_t bytes = dnnl.memory_desc_get_size(want);
    void *buffer = NULL;
    if (posix_memalign(&buffer, 64, bytes ? bytes : 64) != 0) return fail(net, "out of memory");
    memset(buffer, 0, bytes);
    dnnl_handle src = NULL, dst = NULL;
    if (dnnl.memory_create(&src, plain, engine, (void *)data) != DNNL_SUCCESS ||
        dnnl.memory_create(&dst, want, engine, buffer) != DNNL_SUCCESS) {
        if (src) dnnl.memory_destroy(src);
        free(buffer);
        return fail(net, "oneDNN could not wrap weights");
    }
    int status = reorder_now(net, src, plain, dst, want);
    dnnl.memory_destroy(src);
    if (status != 0) {
        dnnl.memory_destroy(dst);
        free(buffer);
        return -1;
    }
    *out_data = buffer;
    *out_memory = dst;
    return 0;
}

int ss_dnnl_net_constant(ss_dnnl_net *net, int ndims, const int64_t *dims, int layout, const float *data) {
    int id = add_value(net, ndims, dims, layout, ROLE_CONSTANT);
    if (id < 0) return -1;
    value *v = &net->values[id];
    dnnl_md plain;
    if (init_md(net, &plain, ndims, dims, SS_DNNL_PLAIN) != 0) return -1;
    dnnl_handle memory = NULL;
    if (pack(net, data, &plain, &v->md, &v->owned, &memory) != 0) return -1;
    v->memory = memory;
    net->constant_bytes += v->bytes;
    return id;
}

int ss_dnnl_net_view(ss_dnnl_net *net, int base, int ndims, const int64_t *dims) {
    if (!valid(net, base)) return -1;
    while (net->values[base].role == ROLE_VIEW) base = net->values[base].base;
    value *b = &net->values[base];
    if (b->layout != SS_DNNL_PLAIN) return fail(net, "only plain values can be reshaped");
    int64_t count = 1, base_count = 1;
    for (int i = 0; i < ndims; i++)
        if (dims[i] < 1 || __builtin_mul_overflow(count, dims[i], &count)) return fail(net, "a view of too many values");
    for (int i = 0; i < b->ndims; i++) base_count *= b->dims[i];
    if (count != base_count) return fail(net, "a view of %lld values over %lld", (long long)count, (long long)base_count);
    int id = add_value(net, ndims, dims, SS_DNNL_PLAIN, ROLE_VIEW);
    if (id < 0) return -1;
    net->values[id].base = base;
    return id;
}

static step *add_step(ss_dnnl_net *net, const char *kind, dnnl_handle pd) {
    use_threads(net);
    if (net->finalized) return fail(net, "the network is finalized"), NULL;
    if (!grow((void **)&net->steps, &net->step_capacity, net->step_count, sizeof(step))) return fail(net, "out of memory"), NULL;
    step *st = &net->steps[net->step_count];
    memset(st, 0, sizeof *st);
    st->kind = kind;
    const char *impl = NULL;
    if (dnnl.pd_query(pd, DNNL_QUERY_IMPL_INFO_STR, 0, &impl) == DNNL_SUCCESS && impl) snprintf(st->impl, sizeof st->impl, "%s", impl);
    if (dnnl.primitive_create(&st->primitive, pd) != DNNL_SUCCESS) return fail(net, "oneDNN could not create a %s primitive", kind), NULL;
    net->step_count++;
    return st;
}

static void add_arg(step *st, int arg, int value_index, dnnl_handle memory) {
    st->arg[st->nargs] = arg;
    st->val[st->nargs] = value_index;
    st->memory[st->nargs] = memory;
    st->nargs++;
}

/// A step of a primitive with packed weights: source, weights, bias (where `bias` is set) and
/// destination. Destroys `pd`; returns the step (for further arguments), or NULL.
static step *add_weighted_step(ss_dnnl_net *net, const char *kind, dnnl_handle pd, int src, int dst, dnnl_handle weights,
                               dnnl_handle bias) {
    step *st = add_step(net, kind, pd);
    dnnl.pd_destroy(pd);
    if (st == NULL) return NULL;
    add_arg(st, DNNL_ARG_SRC, src, NULL);
    add_arg(st, DNNL_ARG_WEIGHTS, -1, weights);
    if (bias) add_arg(st, DNNL_ARG_BIAS, -1, bias);
    add_arg(st, DNNL_ARG_DST, dst, NULL);
    return st;
}

/// The primitive descriptor for `desc`; its destination must match `dst`'s layout exactly.
static dnnl_handle make_pd(ss_dnnl_net *net, const dnnl_op_desc *desc, dnnl_handle attr, const char *kind) {
    use_threads(net);
    dnnl_handle pd = NULL;
    if (dnnl.pd_create(&pd, desc, attr, engine, NULL) != DNNL_SUCCESS) return fail(net, "oneDNN has no %s for this shape", kind), NULL;
    return pd;
}

/// Packed weights for `key` in the layout `want`, from the cache or made now.
static dnnl_handle packed_weights(ss_dnnl_net *net, int key, const float *data, const dnnl_md *plain, const dnnl_md *want) {
    ss_dnnl_weights *cache = net->cache;
    pthread_mutex_lock(&cache->lock);
    for (int i = 0; i < cache->count; i++) {
        if (cache->items[i].key == key && dnnl.memory_desc_equal(&cache->items[i].md, want)) {
            dnnl_handle memory = cache->items[i].memory;
            pthread_mutex_unlock(&cache->lock);
            return memory;
        }
    }
    pthread_mutex_unlock(&cache->lock);
    void *buffer = NULL;
    dnnl_handle memory = NULL;
    if (pack(net, data, plain, want, &buffer, &memory) != 0) return NULL;
    pthread_mutex_lock(&cache->lock);
    if (!grow((void **)&cache->items, &cache->capacity, cache->count, sizeof(packed))) {
        pthread_mutex_unlock(&cache->lock);
        dnnl.memory_destroy(memory);
        free(buffer);
        return fail(net, "out of memory"), NULL;
    }
    packed *p = &cache->items[cache->count++];
    p->key = key;
    memcpy(&p->md, want, DNNL_MD_SIZE);  // oneDNN's descriptor is DNNL_MD_SIZE bytes, not our block's size
    p->memory = memory;
    p->data = buffer;
    pthread_mutex_unlock(&cache->lock);
    return memory;
}

static dnnl_handle bias_memory(ss_dnnl_net *net, const float *bias, int64_t count) {
    int64_t dims[1] = {count};
    int id = ss_dnnl_net_constant(net, 1, dims, SS_DNNL_PLAIN, bias);
    return id < 0 ? NULL : net->values[id].memory;
}

static int append_clamp(dnnl_handle post_ops, float low, float high) {
    if (low == 0 && isinf(high) && high > 0) return dnnl.post_ops_append_eltwise(post_ops, 1.0f, DNNL_ELTWISE_RELU, 0, 0);
    if (isinf(low) && isinf(high)) return DNNL_SUCCESS;
    return dnnl.post_ops_append_eltwise(post_ops, 1.0f, DNNL_ELTWISE_CLIP, isinf(low) ? -3.4e38f : low,
                                        isinf(high) ? 3.4e38f : high);
}

/// A convolution's primitive descriptors with its post-ops (sum, then the clamp): the first
/// implementation oneDNN offers when `limit` is 1, otherwise up to `limit` of them in oneDNN's
/// order, reference (`ref:`) implementations left out. Returns how many were written to `out`.
static int conv_pds(int algorithm, const dnnl_md *src, const dnnl_md *weights, const dnnl_md *bias, const dnnl_md *dst,
                    const int64_t *st, const int64_t *dl, const int64_t *pl, const int64_t *pr, int sum, float low,
                    float high, dnnl_handle *out, int limit) {
    dnnl_op_desc desc;
    if (dnnl.conv_desc_init(&desc, DNNL_FORWARD_INFERENCE, algorithm, src, weights, bias, dst, st, dl, pl, pr) != DNNL_SUCCESS)
        return 0;
    dnnl_handle attr = NULL, post_ops = NULL, iterator = NULL;
    dnnl.attr_create(&attr);
    dnnl.post_ops_create(&post_ops);
    if (sum) dnnl.post_ops_append_sum(post_ops, 1.0f);
    append_clamp(post_ops, low, high);
    dnnl.attr_set_post_ops(attr, post_ops);
    int count = 0;
    if (limit == 1) {
        if (dnnl.pd_create(&out[0], &desc, attr, engine, NULL) == DNNL_SUCCESS) count = 1;
    } else if (dnnl.pd_iterator_create(&iterator, &desc, attr, engine, NULL) == DNNL_SUCCESS) {
        do {
            dnnl_handle pd = dnnl.pd_iterator_fetch(iterator);
            if (pd == NULL) break;
            const char *impl = NULL;
            if (dnnl.pd_query(pd, DNNL_QUERY_IMPL_INFO_STR, 0, &impl) == DNNL_SUCCESS && impl && strncmp(impl, "ref", 3) != 0)
                out[count++] = pd;
            else
                dnnl.pd_destroy(pd);
        } while (count < limit && dnnl.pd_iterator_next(iterator) == DNNL_SUCCESS);
        dnnl.pd_iterator_destroy(iterator);
    }
    dnnl.post_ops_destroy(post_ops);
    dnnl.attr_destroy(attr);
    return count;
}

/// The first convolution implementation oneDNN offers, or NULL.
static dnnl_handle conv_pd(int algorithm, const dnnl_md *src, const dnnl_md *weights, const dnnl_md *bias, const dnnl_md *dst,
                           const int64_t *st, const int64_t *dl, const int64_t *pl, const int64_t *pr, int sum, float low, float high) {
    dnnl_handle pd = NULL;
    return conv_pds(algorithm, src, weights, bias, dst, st, dl, pl, pr, sum, low, high, &pd, 1) ? pd : NULL;
}

static double now_ms(void);

/// Writes the cache lines of `bytes` at `p` back to memory and drops them from every cache, so
/// that a timed run reads its weights and activations from memory as it does inside a network,
/// where the layers before evicted them. Timed hot, an implementation with larger weights
/// (F(4x4,3x3) Winograd transforms 3x3 weights to 36 values each, F(2x2,3x3) to 16) looks
/// faster than it runs in the network. Flushing only the run's own buffers costs about a
/// millisecond per run at most; reading a cache-sized buffer instead made MobileNetV2's load take
/// 12 s. (x86-64 only; elsewhere runs are timed as they come.)
static void evict(const void *p, size_t bytes) {
#if defined(__x86_64__)
    for (size_t i = 0; i < bytes; i += 64) __builtin_ia32_clflush((const char *)p + i);
    __builtin_ia32_mfence();
#else
    (void)p;
    (void)bytes;
#endif
}

/// The fastest of three runs (one for slow ones) after one warm-up of the convolution `pd` on
/// scratch buffers of its own shapes, in milliseconds, each run with its buffers evicted from the
/// caches; a very large number when it cannot run.
static double time_conv(ss_dnnl_net *net, dnnl_handle pd) {
    use_threads(net);
    // Source, weights, bias (the weights query's second descriptor; zero-sized when none), destination.
    // With a fused depthwise post-op, its weights and bias too.
    const int queries[TIMED_OPERANDS] = {DNNL_QUERY_SRC_MD, DNNL_QUERY_WEIGHTS_MD, DNNL_QUERY_WEIGHTS_MD, DNNL_QUERY_DST_MD,
                               DNNL_QUERY_EXEC_ARG_MD, DNNL_QUERY_EXEC_ARG_MD};
    const int indices[TIMED_OPERANDS] = {0, 0, 1, 0, DNNL_ARG_POST_OP_DW_WEIGHTS, DNNL_ARG_POST_OP_DW_BIAS};
    const int args[TIMED_OPERANDS] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST, DNNL_ARG_POST_OP_DW_WEIGHTS,
                            DNNL_ARG_POST_OP_DW_BIAS};
    void *buffers[TIMED_OPERANDS] = {NULL};
    size_t sizes[TIMED_OPERANDS] = {0};
    dnnl_exec_arg exec[TIMED_OPERANDS];
    memset(exec, 0, sizeof exec);
    int count = 0;
    double best = 1e300;
    dnnl_handle primitive = NULL;
    int ok = dnnl.primitive_create(&primitive, pd) == DNNL_SUCCESS;
    for (int i = 0; i < TIMED_OPERANDS && ok; i++) {
        const dnnl_md *md = dnnl.pd_query_md(pd, queries[i], indices[i]);
        size_t bytes = md ? dnnl.memory_desc_get_size(md) : 0;
        if (bytes == 0) continue;
        buffers[count] = timing_buffer(net, count, bytes);
        ok = buffers[count] != NULL;
        if (!ok) break;
        sizes[count] = bytes;
        exec[count].arg = args[i];
        ok = dnnl.memory_create(&exec[count].memory, md, engine, buffers[count]) == DNNL_SUCCESS;
        count++;
    }
    // Runs of more than 5 ms (large batches) are timed once after the warm-up: building a
    // network's candidates stays within a few times one run of the network.
    int runs = 4;
    for (int run = 0; run < runs && ok; run++) {
        for (int i = 0; i < count; i++) evict(buffers[i], sizes[i]);
        double start = now_ms();
        ok = dnnl.primitive_execute(primitive, net->stream, count, exec) == DNNL_SUCCESS;
        dnnl.stream_wait(net->stream);
        double ms = now_ms() - start;
        if (run == 0 && ms > 5) runs = 2;
        if (run > 0 && ms < best) best = ms;
    }
    for (int i = 0; i < count; i++) {
        if (exec[i].memory) dnnl.memory_destroy(exec[i].memory);
    }
    if (primitive) dnnl.primitive_destroy(primitive);
    return ok ? best : 1e300;
}

int ss_dnnl_net_conv(ss_dnnl_net *net, int src, int dst, const float *weights, const float *bias,
                     const int64_t *kernel, const int64_t *strides, const int64_t *dilations,
                     const int64_t *pad_begin, const int64_t *pad_end, int64_t groups,
                     int residual, int in_place, float low, float high, int weights_key) {
    if (!valid(net, src) || !valid(net, dst) || (residual >= 0 && !valid(net, residual))) return -1;
    if (residual >= 0 && in_place && residual != dst) return fail(net, "an in-place residual must be the output value");
    value *s = &net->values[src], *d = &net->values[dst];
    if (s->ndims != 4 || d->ndims != 4) return fail(net, "2-D convolutions only");
    int64_t channels = s->dims[1], outputs = d->dims[1];
    if (groups < 1 || channels % groups || outputs % groups) return fail(net, "%lld groups do not divide %lld → %lld channels", (long long)groups, (long long)channels, (long long)outputs);
    dnnl_md wany, wplain, bmd, dst_md;
    int64_t wdims[5];
    int wnd;
    if (groups == 1) {
        wnd = 4;
        int64_t w[4] = {outputs, channels, kernel[0], kernel[1]};
        memcpy(wdims, w, sizeof w);
    } else {
        wnd = 5;
        int64_t w[5] = {groups, outputs / groups, channels / groups, kernel[0], kernel[1]};
        memcpy(wdims, w, sizeof w);
    }
    if (dnnl.memory_desc_init_by_tag(&wany, wnd, wdims, DNNL_F32, DNNL_TAG_ANY) != DNNL_SUCCESS ||
        init_md(net, &wplain, wnd, wdims, SS_DNNL_PLAIN) != 0)
        return fail(net, "bad convolution weights");
    int64_t bdims[1] = {outputs};
    if (bias && init_md(net, &bmd, 1, bdims, SS_DNNL_PLAIN) != 0) return -1;
    memcpy(&dst_md, &d->md, sizeof dst_md);
    int64_t st[2] = {strides[0], strides[1]}, dl[2] = {dilations[0] - 1, dilations[1] - 1};
    int64_t pl[2] = {pad_begin[0], pad_begin[1]}, pr[2] = {pad_end[0], pad_end[1]};
    const dnnl_md *smd = &net->values[src].md;
    dnnl_handle pd = conv_pd(DNNL_CONV_DIRECT, smd, &wany, bias ? &bmd : NULL, &dst_md, st, dl, pl, pr, residual >= 0, low, high);
    if (pd == NULL) return fail(net, "oneDNN has no convolution for this shape");
    // 3x3 stride-1 convolutions may run as Winograd (fp32 arithmetic, fewer multiplications).
    // oneDNN has several Winograd implementations (F(2x2,3x3) and F(4x4,3x3) with AVX-512) and
    // takes the first that accepts a shape, which is not always the fastest: at batch 1 on the
    // development VM F(4x4,3x3) ran ResNet-50's 56x56x64 layer in 0.75 ms where the first one
    // offered, F(2x2,3x3), took 1.0 ms, and the other way round at 7x7x512. So every Winograd
    // implementation is timed here, on this network's shapes and threads, beside the direct one,
    // and the fastest is kept. SLICESERVE_DNNL_WINOGRAD=0 keeps direct convolution everywhere;
    // =1 takes the fastest Winograd implementation wherever oneDNN has one (tests).
    const char *wino_setting = getenv("SLICESERVE_DNNL_WINOGRAD");
    int try_winograd = kernel[0] == 3 && kernel[1] == 3 && strides[0] == 1 && strides[1] == 1 && dilations[0] == 1 &&
                       dilations[1] == 1 && groups == 1 && !(wino_setting && strcmp(wino_setting, "0") == 0);
    if (try_winograd) {
        enum { MAX_WINOGRAD = 4 };
        dnnl_handle winos[MAX_WINOGRAD];
        int found = conv_pds(DNNL_CONV_WINOGRAD, smd, &wany, bias ? &bmd : NULL, &dst_md, st, dl, pl, pr, residual >= 0, low,
                             high, winos, MAX_WINOGRAD);
        int forced = wino_setting && strcmp(wino_setting, "1") == 0;
        // Direct convolution is timed only when there is something to compare it with (oneDNN
        // 2.6 has no Winograd below AVX-512).
        double best = forced || found == 0 ? 1e301 : time_conv(net, pd);
        for (int i = 0; i < found; i++) {
            double ms = time_conv(net, winos[i]);
            if (ms < best) {
                best = ms;
                dnnl.pd_destroy(pd);
                pd = winos[i];
            } else {
                dnnl.pd_destroy(winos[i]);
            }
        }
    }
    const dnnl_md *chosen_dst = dnnl.pd_query_md(pd, DNNL_QUERY_DST_MD, 0);
    if (!dnnl.memory_desc_equal(chosen_dst, &d->md)) {
        dnnl.pd_destroy(pd);
        return fail(net, "the convolution's output layout differs from its value's");
    }
    dnnl_handle wmem = packed_weights(net, weights_key, weights, &wplain, dnnl.pd_query_md(pd, DNNL_QUERY_WEIGHTS_MD, 0));
    if (wmem == NULL) {
        dnnl.pd_destroy(pd);
        return -1;
    }
    dnnl_handle bmem = bias ? bias_memory(net, bias, outputs) : NULL;
    if (bias && bmem == NULL) {
        dnnl.pd_destroy(pd);
        return -1;
    }
    if (residual >= 0 && !in_place) {
        // The sum post-op adds what dst holds: copy the residual in first.
        if (ss_dnnl_net_reorder(net, residual, dst) != 0) {
            dnnl.pd_destroy(pd);
            return -1;
        }
    }
    return add_weighted_step(net, "conv", pd, src, dst, wmem, bmem) ? 0 : -1;
}

int ss_dnnl_net_conv_dw(ss_dnnl_net *net, int src, int dst, const float *weights, const float *bias, float low, float high,
                        int weights_key, const float *dw_weights, const float *dw_bias, int64_t dw_stride, float dw_low,
                        float dw_high, int dw_weights_key) {
    if (!valid(net, src) || !valid(net, dst)) return -1;
    if (net->values[src].ndims != 4 || net->values[dst].ndims != 4) return fail(net, "2-D convolutions only");
    if (dw_stride != 1 && dw_stride != 2) return fail(net, "a fused depthwise convolution has stride 1 or 2");
    int64_t n = net->values[src].dims[0], channels = net->values[src].dims[1], h = net->values[src].dims[2], w = net->values[src].dims[3];
    int64_t outputs = net->values[dst].dims[1];
    int64_t wdims[4] = {outputs, channels, 1, 1}, bdims[1] = {outputs};
    int64_t dwdims[5] = {outputs, 1, 1, 3, 3};
    int64_t mid_dims[4] = {n, outputs, h, w};
    dnnl_md wany, wplain, bmd, mid, dwplain;
    if (dnnl.memory_desc_init_by_tag(&wany, 4, wdims, DNNL_F32, DNNL_TAG_ANY) != DNNL_SUCCESS ||
        init_md(net, &wplain, 4, wdims, SS_DNNL_PLAIN) != 0 || init_md(net, &bmd, 1, bdims, SS_DNNL_PLAIN) != 0 ||
        init_md(net, &mid, 4, mid_dims, SS_DNNL_BLOCKED) != 0 || init_md(net, &dwplain, 5, dwdims, SS_DNNL_PLAIN) != 0)
        return fail(net, "bad fused convolution shapes");
    dnnl_op_desc desc;
    int64_t one[2] = {1, 1}, zero[2] = {0, 0};
    if (dnnl.conv_desc_init(&desc, DNNL_FORWARD_INFERENCE, DNNL_CONV_DIRECT, &net->values[src].md, &wany, bias ? &bmd : NULL, &mid,
                            one, zero, zero, zero) != DNNL_SUCCESS)
        return fail(net, "oneDNN refused the 1x1 convolution's shapes");
    dnnl_handle attr = NULL, post_ops = NULL, pd = NULL;
    dnnl.attr_create(&attr);
    dnnl.post_ops_create(&post_ops);
    append_clamp(post_ops, low, high);
    dnnl.post_ops_append_dw(post_ops, DNNL_F32, DNNL_F32, DNNL_F32, 3, dw_stride, 1, 0, 0, NULL);
    append_clamp(post_ops, dw_low, dw_high);
    dnnl.attr_set_post_ops(attr, post_ops);
    use_threads(net);
    int status = dnnl.pd_create(&pd, &desc, attr, engine, NULL);
    dnnl.post_ops_destroy(post_ops);
    dnnl.attr_destroy(attr);
    if (status != DNNL_SUCCESS) return fail(net, "oneDNN cannot fuse this depthwise convolution into its 1x1 convolution");
    // Fused where it measures faster than the two convolutions apart, on this network's shapes
    // and threads (it saves memory traffic but splits the work differently across threads).
    // SLICESERVE_DNNL_FUSE_DEPTHWISE=1 always fuses (tests); =0 never does (the caller checks).
    const char *fuse_setting = getenv("SLICESERVE_DNNL_FUSE_DEPTHWISE");
    if (!(fuse_setting && strcmp(fuse_setting, "1") == 0)) {
        int64_t out_dims[4] = {n, outputs, (h + 2 - 3) / dw_stride + 1, (w + 2 - 3) / dw_stride + 1};
        int64_t dwany_dims[5] = {outputs, 1, 1, 3, 3}, s2[2] = {dw_stride, dw_stride}, p1[2] = {1, 1};
        dnnl_md dwany, out;
        dnnl_handle first = NULL, second = NULL;
        if (dnnl.memory_desc_init_by_tag(&dwany, 5, dwany_dims, DNNL_F32, DNNL_TAG_ANY) == DNNL_SUCCESS &&
            init_md(net, &out, 4, out_dims, SS_DNNL_BLOCKED) == 0) {
            first = conv_pd(DNNL_CONV_DIRECT, &net->values[src].md, &wany, bias ? &bmd : NULL, &mid, one, zero, zero, zero, 0, low, high);
            second = conv_pd(DNNL_CONV_DIRECT, &mid, &dwany, &bmd, &out, s2, zero, p1, p1, 0, dw_low, dw_high);
        }
        int keep = first && second && time_conv(net, pd) < time_conv(net, first) + time_conv(net, second);
        if (first) dnnl.pd_destroy(first);
        if (second) dnnl.pd_destroy(second);
        if (!keep) {
            dnnl.pd_destroy(pd);
            net->error[0] = 0;
            return 1;
        }
    }
    const dnnl_md *chosen_dst = dnnl.pd_query_md(pd, DNNL_QUERY_DST_MD, 0);
    const dnnl_md *dw_md = dnnl.pd_query_md(pd, DNNL_QUERY_EXEC_ARG_MD, DNNL_ARG_POST_OP_DW_WEIGHTS);
    if (chosen_dst == NULL || !dnnl.memory_desc_equal(chosen_dst, &net->values[dst].md) || dw_md == NULL) {
        dnnl.pd_destroy(pd);
        return fail(net, "the fused convolution's output layout differs from its value's");
    }
    dnnl_handle wmem = packed_weights(net, weights_key, weights, &wplain, dnnl.pd_query_md(pd, DNNL_QUERY_WEIGHTS_MD, 0));
    dnnl_handle dwmem = wmem ? packed_weights(net, dw_weights_key, dw_weights, &dwplain, dw_md) : NULL;
    dnnl_handle bmem = bias ? bias_memory(net, bias, outputs) : NULL;
    float *zeros = NULL;
    if (dw_bias == NULL) {
        // The fused depthwise convolution always takes a bias: zeros where the model has none.
        zeros = calloc((size_t)outputs, sizeof(float));
        dw_bias = zeros;
    }
    dnnl_handle dwbmem = dw_bias ? bias_memory(net, dw_bias, outputs) : NULL;
    free(zeros);
    if (wmem == NULL || dwmem == NULL || (bias && bmem == NULL) || dwbmem == NULL) {
        dnnl.pd_destroy(pd);
        return -1;
    }
    step *stp = add_weighted_step(net, "conv+dw", pd, src, dst, wmem, bmem);
    if (stp == NULL) return -1;
    add_arg(stp, DNNL_ARG_POST_OP_DW_WEIGHTS, -1, dwmem);
    add_arg(stp, DNNL_ARG_POST_OP_DW_BIAS, -1, dwbmem);
    return 0;
}

static int simple_step(ss_dnnl_net *net, const char *kind, const dnnl_op_desc *desc, int src, int dst) {
    dnnl_handle pd = make_pd(net, desc, NULL, kind);
    if (pd == NULL) return -1;
    step *st = add_step(net, kind, pd);
    dnnl.pd_destroy(pd);
    if (st == NULL) return -1;
    add_arg(st, DNNL_ARG_SRC, src, NULL);
    add_arg(st, DNNL_ARG_DST, dst, NULL);
    return 0;
}

int ss_dnnl_net_eltwise(ss_dnnl_net *net, int src, int dst, int kind, float alpha, float beta) {
    if (!valid(net, src) || !valid(net, dst)) return -1;
    int alg;
    switch (kind) {
    case SS_DNNL_RELU: alg = DNNL_ELTWISE_RELU; alpha = 0; beta = 0; break;
    case SS_DNNL_CLIP: alg = DNNL_ELTWISE_CLIP; break;
    case SS_DNNL_SIGMOID: alg = DNNL_ELTWISE_LOGISTIC; break;
    case SS_DNNL_HARDSWISH: alg = DNNL_ELTWISE_HARDSWISH; break;
    default: return fail(net, "unknown element-wise kind %d", kind);
    }
    if (!dnnl.memory_desc_equal(&net->values[src].md, &net->values[dst].md)) return fail(net, "element-wise needs matching layouts");
    dnnl_op_desc desc;
    if (dnnl.eltwise_desc_init(&desc, DNNL_FORWARD_INFERENCE, alg, &net->values[src].md, alpha, beta) != DNNL_SUCCESS)
        return fail(net, "oneDNN refused an element-wise operation");
    return simple_step(net, "eltwise", &desc, src, dst);
}

int ss_dnnl_net_binary(ss_dnnl_net *net, int a, int b, int dst, int kind) {
    if (!valid(net, a) || !valid(net, b) || !valid(net, dst)) return -1;
    static const int algs[] = {DNNL_BINARY_ADD, DNNL_BINARY_SUB, DNNL_BINARY_MUL, DNNL_BINARY_DIV};
    if (kind < 0 || kind > 3) return fail(net, "unknown binary kind %d", kind);
    dnnl_op_desc desc;
    if (dnnl.binary_desc_init(&desc, algs[kind], &net->values[a].md, &net->values[b].md, &net->values[dst].md) != DNNL_SUCCESS)
        return fail(net, "oneDNN refused a binary operation");
    dnnl_handle pd = make_pd(net, &desc, NULL, "binary operation");
    if (pd == NULL) return -1;
    step *st = add_step(net, "binary", pd);
    dnnl.pd_destroy(pd);
    if (st == NULL) return -1;
    add_arg(st, DNNL_ARG_SRC, a, NULL);
    add_arg(st, DNNL_ARG_SRC_1, b, NULL);
    add_arg(st, DNNL_ARG_DST, dst, NULL);
    return 0;
}

int ss_dnnl_net_pool(ss_dnnl_net *net, int src, int dst, int kind, const int64_t *kernel,
                     const int64_t *strides, const int64_t *pad_begin, const int64_t *pad_end) {
    if (!valid(net, src) || !valid(net, dst)) return -1;
    static const int algs[] = {DNNL_POOL_MAX, DNNL_POOL_AVG_INCLUDE, DNNL_POOL_AVG_EXCLUDE};
    if (kind < 0 || kind > 2) return fail(net, "unknown pooling kind %d", kind);
    int64_t k[2] = {kernel[0], kernel[1]}, s[2] = {strides[0], strides[1]}, dl[2] = {0, 0};
    int64_t pl[2] = {pad_begin[0], pad_begin[1]}, pr[2] = {pad_end[0], pad_end[1]};
    dnnl_op_desc desc;
    if (dnnl.pooling_desc_init(&desc, DNNL_FORWARD_INFERENCE, algs[kind], &net->values[src].md, &net->values[dst].md, s, k,
                               dl, pl, pr) != DNNL_SUCCESS)
        return fail(net, "oneDNN refused the pooling's shapes");
    return simple_step(net, "pool", &desc, src, dst);
}

int ss_dnnl_net_inner_product(ss_dnnl_net *net, int src, int dst, const float *weights, const float *bias,
                              int weights_key) {
    if (!valid(net, src) || !valid(net, dst)) return -1;
    value *s = &net->values[src], *d = &net->values[dst];
    if (s->ndims != 2 || d->ndims != 2 || s->layout != SS_DNNL_PLAIN || d->layout != SS_DNNL_PLAIN)
        return fail(net, "inner products take plain 2-D values");
    int64_t m = d->dims[1], k = s->dims[1];
    int64_t wdims[2] = {m, k}, bdims[1] = {m};
    dnnl_md wany, wplain, bmd;
    if (dnnl.memory_desc_init_by_tag(&wany, 2, wdims, DNNL_F32, DNNL_TAG_ANY) != DNNL_SUCCESS ||
        init_md(net, &wplain, 2, wdims, SS_DNNL_PLAIN) != 0 || (bias && init_md(net, &bmd, 1, bdims, SS_DNNL_PLAIN) != 0))
        return fail(net, "bad inner product weights");
    dnnl_op_desc desc;
    if (dnnl.inner_product_desc_init(&desc, DNNL_FORWARD_INFERENCE, &s->md, &wany, bias ? &bmd : NULL, &d->md) != DNNL_SUCCESS)
        return fail(net, "oneDNN refused the inner product's shapes");
    dnnl_handle pd = make_pd(net, &desc, NULL, "inner product");
    if (pd == NULL) return -1;
    dnnl_handle wmem = packed_weights(net, weights_key, weights, &wplain, dnnl.pd_query_md(pd, DNNL_QUERY_WEIGHTS_MD, 0));
    dnnl_handle bmem = bias ? bias_memory(net, bias, m) : NULL;
    if (wmem == NULL || (bias && bmem == NULL)) {
        dnnl.pd_destroy(pd);
        return -1;
    }
    return add_weighted_step(net, "inner_product", pd, src, dst, wmem, bmem) ? 0 : -1;
}

int ss_dnnl_net_softmax(ss_dnnl_net *net, int src, int dst, int axis) {
    if (!valid(net, src) || !valid(net, dst)) return -1;
    if (axis < 0 || axis >= net->values[src].ndims) return fail(net, "softmax axis %d", axis);
    if (!dnnl.memory_desc_equal(&net->values[src].md, &net->values[dst].md)) return fail(net, "softmax needs matching layouts");
    dnnl_op_desc desc;
    if (dnnl.softmax_desc_init(&desc, DNNL_FORWARD_INFERENCE, &net->values[src].md, axis) != DNNL_SUCCESS)
        return fail(net, "oneDNN refused the softmax");
    return simple_step(net, "softmax", &desc, src, dst);
}

int ss_dnnl_net_concat(ss_dnnl_net *net, int count, const int *srcs, int dst, int axis) {
    use_threads(net);
    if (count < 1 || count > MAX_ARGS - 2 || !valid(net, dst)) return fail(net, "concat of %d values", count);
    unsigned char *mds = calloc((size_t)count, DNNL_MD_SIZE);
    if (mds == NULL) return fail(net, "out of memory for a concat of %d values", count);
    for (int i = 0; i < count; i++) {
        if (!valid(net, srcs[i])) {
            free(mds);
            return -1;
        }
        memcpy(mds + (size_t)i * DNNL_MD_SIZE, &net->values[srcs[i]].md, DNNL_MD_SIZE);
    }
    dnnl_handle pd = NULL;
    int status = dnnl.concat_pd_create(&pd, &net->values[dst].md, count, axis, (const dnnl_md *)mds, NULL, engine);
    free(mds);
    if (status != DNNL_SUCCESS) return fail(net, "oneDNN has no concat for these layouts");
    step *st = add_step(net, "concat", pd);
    dnnl.pd_destroy(pd);
    if (st == NULL) return -1;
    for (int i = 0; i < count; i++) add_arg(st, DNNL_ARG_MULTIPLE_SRC + i, srcs[i], NULL);
    add_arg(st, DNNL_ARG_DST, dst, NULL);
    return 0;
}

int ss_dnnl_net_reorder(ss_dnnl_net *net, int src, int dst) {
    if (!valid(net, src) || !valid(net, dst)) return -1;
    use_threads(net);
    dnnl_handle pd = NULL;
    if (dnnl.reorder_pd_create(&pd, &net->values[src].md, engine, &net->values[dst].md, engine, NULL) != DNNL_SUCCESS)
        return fail(net, "oneDNN has no reorder between these layouts");
    step *st = add_step(net, "reorder", pd);
    dnnl.pd_destroy(pd);
    if (st == NULL) return -1;
    add_arg(st, DNNL_ARG_SRC, src, NULL);
    add_arg(st, DNNL_ARG_DST, dst, NULL);
    return 0;
}

static int root(const ss_dnnl_net *net, int v) {
    while (v >= 0 && net->values[v].role == ROLE_VIEW) v = net->values[v].base;
    return v;
}

int ss_dnnl_net_finalize(ss_dnnl_net *net, int input, int output) {
    if (net->finalized) return fail(net, "finalized twice");
    release_timing_buffers(net);
    if (!valid(net, input) || !valid(net, output)) return -1;
    if (net->values[input].role != ROLE_INTERMEDIATE || net->values[output].role != ROLE_INTERMEDIATE ||
        net->values[input].layout != SS_DNNL_PLAIN || net->values[output].layout != SS_DNNL_PLAIN || input == output)
        return fail(net, "the input and output must be distinct plain values");
    if (net->step_count == 0) return fail(net, "the network has no steps");
    net->values[input].role = ROLE_INPUT;
    net->values[output].role = ROLE_OUTPUT;
    net->input = input;
    net->output = output;
    // Lifetimes, in steps, of the values (views count as their base).
    for (int s = 0; s < net->step_count; s++) {
        step *st = &net->steps[s];
        for (int a = 0; a < st->nargs; a++) {
            int v = root(net, st->val[a]);
            if (v < 0) continue;
            if (s < net->values[v].first) net->values[v].first = s;
            if (s > net->values[v].last) net->values[v].last = s;
        }
    }
    // Intermediates placed first-fit in one arena: a value may reuse bytes of one whose last
    // read came before its first write.
    size_t arena = 0;
    int *placed = calloc((size_t)net->value_count, sizeof(int));
    int placed_count = 0;
    if (placed == NULL) return fail(net, "out of memory");
    for (int s = 0; s < net->step_count; s++) {
        for (int v = 0; v < net->value_count; v++) {
            value *x = &net->values[v];
            if (x->role != ROLE_INTERMEDIATE || x->first != s) continue;
            if (x->bytes > ((size_t)1 << 46)) {
                free(placed);
                return fail(net, "a %zu-byte value is too large", x->bytes);
            }
            size_t size = (x->bytes + 63) & ~(size_t)63, offset = 0;
            for (int moved = 1; moved;) {
                moved = 0;
                for (int i = 0; i < placed_count; i++) {
                    value *y = &net->values[placed[i]];
                    int overlap_time = !(y->last < x->first || x->last < y->first);
                    int overlap_space = offset < y->offset + ((y->bytes + 63) & ~(size_t)63) && y->offset < offset + size;
                    if (overlap_time && overlap_space) {
                        offset = y->offset + ((y->bytes + 63) & ~(size_t)63);
                        moved = 1;
                    }
                }
            }
            x->offset = offset;
            placed[placed_count++] = v;
            if (offset + size > arena) arena = offset + size;
        }
    }
    free(placed);
    net->arena_bytes = arena;
    // Memory objects: intermediates and views on them point into the caller's arena, the input
    // and output (and their views) into the caller's buffers, all bound at run time.
    for (int v = 0; v < net->value_count; v++) {
        value *x = &net->values[v];
        if (x->memory) continue;
        if (dnnl.memory_create(&x->memory, &x->md, engine, NULL) != DNNL_SUCCESS) return fail(net, "oneDNN could not create memory");
    }
    for (int s = 0; s < net->step_count; s++) {
        step *st = &net->steps[s];
        for (int a = 0; a < st->nargs; a++) {
            st->exec[a].arg = st->arg[a];
            st->exec[a].memory = st->val[a] >= 0 ? net->values[st->val[a]].memory : st->memory[a];
        }
    }
    net->finalized = 1;
    return 0;
}

size_t ss_dnnl_net_arena_bytes(const ss_dnnl_net *net) { return net->arena_bytes; }

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int ss_dnnl_net_run(ss_dnnl_net *net, const float *input, float *output, void *arena, size_t arena_size, double *step_ms) {
    if (!net->finalized) return fail(net, "the network is not finalized");
    if (arena_size < net->arena_bytes || (net->arena_bytes > 0 && arena == NULL))
        return fail(net, "the arena holds %zu bytes; the network needs %zu", arena_size, net->arena_bytes);
    use_threads(net);
    if (arena != net->bound_arena) {
        for (int v = 0; v < net->value_count; v++) {
            int r = root(net, v);
            if (r >= 0 && net->values[r].role == ROLE_INTERMEDIATE)
                dnnl.memory_set_data_handle(net->values[v].memory, (char *)arena + net->values[r].offset);
        }
        net->bound_arena = arena;
    }
    // Views of the input or output follow their base.
    for (int v = 0; v < net->value_count; v++) {
        int r = root(net, v);
        if (r == net->input) dnnl.memory_set_data_handle(net->values[v].memory, (void *)input);
        else if (r == net->output) dnnl.memory_set_data_handle(net->values[v].memory, output);
    }
    for (int s = 0; s < net->step_count; s++) {
        step *st = &net->steps[s];
        double start = step_ms ? now_ms() : 0;
        if (dnnl.primitive_execute(st->primitive, net->stream, st->nargs, st->exec) != DNNL_SUCCESS)
            return fail(net, "step %d (%s) failed", s, st->kind);
        if (step_ms) {
            dnnl.stream_wait(net->stream);
            step_ms[s] = now_ms() - start;
        }
    }
    dnnl.stream_wait(net->stream);
    return 0;
}

int ss_dnnl_net_step_count(const ss_dnnl_net *net) { return net->step_count; }
const char *ss_dnnl_net_step_kind(const ss_dnnl_net *net, int s) { return s >= 0 && s < net->step_count ? net->steps[s].kind : ""; }
const char *ss_dnnl_net_step_impl(const ss_dnnl_net *net, int s) { return s >= 0 && s < net->step_count ? net->steps[s].impl : ""; }
