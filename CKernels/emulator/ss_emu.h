// ss_emu.h: what a CUDA kernel source sees when SliceServe's emulator compiles it for the host.
//
// The emulator (Sources/SliceTesting/Emulator*.swift) preprocesses a kernel unit, translates
// its inline PTX (`asm` statements) into calls of the ss_ptx functions declared here and its
// `__shared__` declarations into per-block storage, then compiles the result with a host C++
// compiler, this header force-included, and links it with ss_emu_runtime.cpp. Each CUDA thread
// runs as a fiber on its own stack; a block runs to completion, its threads scheduled
// cooperatively at barriers and warp collectives. Global and shared accesses are checked through
// the compiler's address-sanitizer callbacks, which the runtime implements. NVRTC never sees this
// file, and no kernel includes it.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>
#include <utility>

#define SS_EMU_HIDDEN __attribute__((visibility("hidden")))
#define SS_EMU_UNCHECKED __attribute__((no_sanitize_address))

// Every emulated thread's stack is SS_EMU_STACK_BYTES, aligned to its size, with its identity
// (ss_emu_thread_info) in the top SS_EMU_INFO_BYTES: a thread finds itself from its stack pointer.
#define SS_EMU_STACK_BYTES (128u << 10)
#define SS_EMU_INFO_BYTES 256u

// CUDA's qualifiers. __global__ and __shared__ never reach the compiler: the translation
// rewrites them.
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __constant__
#define __launch_bounds__(...)
#define __grid_constant__

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __align__(8) uint2 { unsigned int x, y; };
struct __align__(16) uint4 { unsigned int x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
static inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

/// One emulated thread: written by the runtime at the top of the thread's stack.
struct ss_emu_thread_info {
    uint3 thread_idx;
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
    unsigned int tid;  // linear index in the block
    int line;          // the source line of the thread's latest inline-PTX instruction
    void *fiber;
};
static_assert(sizeof(ss_emu_thread_info) <= SS_EMU_INFO_BYTES, "thread info must fit its slot");

static inline __attribute__((always_inline)) ss_emu_thread_info *ss_emu_self() {
    const uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    return (ss_emu_thread_info *)((sp & ~(uintptr_t)(SS_EMU_STACK_BYTES - 1)) + SS_EMU_STACK_BYTES - SS_EMU_INFO_BYTES);
}

#define threadIdx (ss_emu_self()->thread_idx)
#define blockIdx (ss_emu_self()->block_idx)
#define blockDim (ss_emu_self()->block_dim)
#define gridDim (ss_emu_self()->grid_dim)
#define warpSize 32

/// A `__shared__` declaration's identity (one per declaration in the source).
struct ss_emu_shared_site {
    const char *name;
    int line;
};

// The runtime (ss_emu_runtime.cpp).
SS_EMU_HIDDEN void ss_emu_syncthreads(int line);
SS_EMU_HIDDEN void ss_emu_syncwarp(unsigned int mask, int line);
SS_EMU_HIDDEN void *ss_emu_shared_static(ss_emu_shared_site *site, size_t bytes, size_t align);
SS_EMU_HIDDEN void *ss_emu_shared_dynamic(size_t align);
SS_EMU_HIDDEN unsigned int ss_emu_shared_address(const void *pointer, int line);
SS_EMU_HIDDEN void ss_emu_register_kernel(const char *name, void (*run)(void *const *), const unsigned int *sizes,
                                          unsigned int count);
SS_EMU_HIDDEN void ss_emu_atomic(void *address, unsigned int size, int line);
SS_EMU_HIDDEN void ss_emu_trap(const char *what, int line);

static inline void __syncthreads(int line = __builtin_LINE()) { ss_emu_syncthreads(line); }
static inline void __syncwarp(unsigned int mask = 0xffffffffu, int line = __builtin_LINE()) { ss_emu_syncwarp(mask, line); }
static inline size_t __cvta_generic_to_shared(const void *pointer, int line = __builtin_LINE()) {
    return ss_emu_shared_address(pointer, line);
}
static inline void __trap(int line = __builtin_LINE()) { ss_emu_trap("__trap()", line); }

static inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
static inline int __float_as_int(float f) { int v; memcpy(&v, &f, 4); return v; }
static inline float __uint_as_float(unsigned int v) { float f; memcpy(&f, &v, 4); return f; }
static inline unsigned int __float_as_uint(float f) { unsigned int v; memcpy(&v, &f, 4); return v; }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return fminf(fmaxf(x, 0.0f), 1.0f); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
template <typename T> static inline T __ldg(const T *p) { return *p; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
static inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }

// Atomics: checked like any access (but never a race with each other), then done with the
// host's atomics (blocks may run on several host threads at once); floating point through a
// compare-and-swap on the bits. The value parameter does not take part in deduction, so
// atomicAdd(&unsigned_counter, 1) compiles as with CUDA's overloads.
template <typename T> struct ss_emu_same { typedef T type; };
template <typename T> SS_EMU_UNCHECKED static inline T ss_emu_atomic_update(T *address, T (*update)(T, T), T value) {
    typedef typename std::conditional<sizeof(T) == 8, uint64_t, uint32_t>::type Bits;
    static_assert(sizeof(T) == sizeof(Bits), "32- or 64-bit atomics");
    Bits *bits = reinterpret_cast<Bits *>(address);
    Bits old = __atomic_load_n(bits, __ATOMIC_RELAXED);
    for (;;) {
        T current, next;
        memcpy(&current, &old, sizeof current);
        next = update(current, value);
        Bits desired;
        memcpy(&desired, &next, sizeof desired);
        if (__atomic_compare_exchange_n(bits, &old, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return current;
    }
}
template <typename T> SS_EMU_UNCHECKED static inline T atomicAdd(T *address, typename ss_emu_same<T>::type value, int line = __builtin_LINE()) {
    ss_emu_atomic(address, sizeof(T), line);
    if constexpr (std::is_floating_point<T>::value) {
        return ss_emu_atomic_update<T>(address, [](T a, T b) { return a + b; }, value);
    } else {
        return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
    }
}
template <typename T> SS_EMU_UNCHECKED static inline T atomicMax(T *address, typename ss_emu_same<T>::type value, int line = __builtin_LINE()) {
    ss_emu_atomic(address, sizeof(T), line);
    return ss_emu_atomic_update<T>(address, [](T a, T b) { return a > b ? a : b; }, value);
}
template <typename T> SS_EMU_UNCHECKED static inline T atomicMin(T *address, typename ss_emu_same<T>::type value, int line = __builtin_LINE()) {
    ss_emu_atomic(address, sizeof(T), line);
    return ss_emu_atomic_update<T>(address, [](T a, T b) { return a < b ? a : b; }, value);
}
template <typename T> SS_EMU_UNCHECKED static inline T atomicExch(T *address, typename ss_emu_same<T>::type value, int line = __builtin_LINE()) {
    ss_emu_atomic(address, sizeof(T), line);
    return ss_emu_atomic_update<T>(address, [](T, T b) { return b; }, value);
}
template <typename T>
SS_EMU_UNCHECKED static inline T atomicCAS(T *address, typename ss_emu_same<T>::type compare, typename ss_emu_same<T>::type value,
                                           int line = __builtin_LINE()) {
    ss_emu_atomic(address, sizeof(T), line);
    __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;
}

/// An asm operand into its register type and back, as the card moves it: integers and
/// pointers by value, anything else (a float in an "r" register, say) by its bits, which must
/// then be as wide as the register.
template <typename R, typename T> static inline R ss_emu_asm_in(const T &value) {
    if constexpr (std::is_pointer<T>::value) {
        return (R)(uintptr_t)value;
    } else if constexpr ((std::is_integral<T>::value || std::is_enum<T>::value) && std::is_integral<R>::value) {
        return (R)value;
    } else if constexpr (std::is_floating_point<T>::value && std::is_floating_point<R>::value) {
        static_assert(sizeof(T) == sizeof(R), "asm operand: a double in an \"f\" register (or a float in \"d\")");
        return (R)value;
    } else {
        static_assert(sizeof(T) == sizeof(R), "asm operand: its size differs from its constraint's register");
        R bits;
        memcpy(&bits, &value, sizeof bits);
        return bits;
    }
}
template <typename T, typename R> static inline void ss_emu_asm_out(T &target, const R &value) {
    if constexpr ((std::is_integral<T>::value || std::is_enum<T>::value) && std::is_integral<R>::value) {
        target = (T)value;
    } else if constexpr (std::is_floating_point<T>::value && std::is_floating_point<R>::value) {
        static_assert(sizeof(T) == sizeof(R), "asm output: a double from an \"f\" register (or a float from \"d\")");
        target = value;
    } else {
        static_assert(sizeof(T) == sizeof(R), "asm output: its size differs from its constraint's register");
        memcpy(&target, &value, sizeof value);
    }
}

/// The PTX instructions the emulator runs, one function per instruction variant, named after it
/// (dots → underscores). Destinations come first, as pointers; sources by value; `[a]` memory
/// operands as ss_ptx::addr. Semantics and fragment layouts follow the PTX ISA.
namespace ss_ptx {
struct addr {
    uint64_t value;
};

SS_EMU_HIDDEN uint64_t sreg_globaltimer();
SS_EMU_HIDDEN uint32_t sreg_globaltimer_lo();
SS_EMU_HIDDEN uint32_t sreg_laneid();
SS_EMU_HIDDEN uint32_t sreg_warpid();
SS_EMU_HIDDEN uint32_t sreg_smid();
SS_EMU_HIDDEN uint64_t sreg_clock64();
SS_EMU_HIDDEN uint32_t sreg_clock();
static inline uint32_t sreg_tid_x() { return threadIdx.x; }
static inline uint32_t sreg_tid_y() { return threadIdx.y; }
static inline uint32_t sreg_tid_z() { return threadIdx.z; }
static inline uint32_t sreg_ctaid_x() { return blockIdx.x; }
static inline uint32_t sreg_ctaid_y() { return blockIdx.y; }
static inline uint32_t sreg_ctaid_z() { return blockIdx.z; }
static inline uint32_t sreg_ntid_x() { return blockDim.x; }
static inline uint32_t sreg_ntid_y() { return blockDim.y; }
static inline uint32_t sreg_ntid_z() { return blockDim.z; }

static inline void mov_u16(uint16_t *d, uint16_t a) { *d = a; }
static inline void mov_b16(uint16_t *d, uint16_t a) { *d = a; }
static inline void mov_u32(uint32_t *d, uint32_t a) { *d = a; }
static inline void mov_b32(uint32_t *d, uint32_t a) { *d = a; }
static inline void mov_u64(uint64_t *d, uint64_t a) { *d = a; }
static inline void mov_b64(uint64_t *d, uint64_t a) { *d = a; }
static inline void mov_f32(float *d, float a) { *d = a; }

SS_EMU_HIDDEN uint16_t f32_to_f16_rn(float value);
SS_EMU_HIDDEN float f16_to_f32(uint16_t bits);
SS_EMU_HIDDEN uint16_t f32_to_bf16_rn(float value);
static inline void cvt_rn_f16_f32(uint16_t *d, float a) { *d = f32_to_f16_rn(a); }
static inline void cvt_f32_f16(float *d, uint16_t a) { *d = f16_to_f32(a); }
/// .f16x2: a goes to the upper half, b to the lower.
static inline void cvt_rn_f16x2_f32(uint32_t *d, float a, float b) {
    *d = ((uint32_t)f32_to_f16_rn(a) << 16) | f32_to_f16_rn(b);
}
static inline void cvt_rn_bf16_f32(uint16_t *d, float a) { *d = f32_to_bf16_rn(a); }
static inline void cvt_f32_bf16(float *d, uint16_t a) { uint32_t v = (uint32_t)a << 16; memcpy(d, &v, 4); }

SS_EMU_HIDDEN void mma_sync_aligned_m16n8k16_row_col_f32_f16_f16_f32(
    float *d0, float *d1, float *d2, float *d3, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
    uint32_t b1, float c0, float c1, float c2, float c3);

SS_EMU_HIDDEN void ldmatrix_sync_aligned_m8n8_x1_shared_b16(uint32_t *d0, addr a);
SS_EMU_HIDDEN void ldmatrix_sync_aligned_m8n8_x2_shared_b16(uint32_t *d0, uint32_t *d1, addr a);
SS_EMU_HIDDEN void ldmatrix_sync_aligned_m8n8_x4_shared_b16(uint32_t *d0, uint32_t *d1, uint32_t *d2, uint32_t *d3, addr a);
SS_EMU_HIDDEN void ldmatrix_sync_aligned_m8n8_x1_trans_shared_b16(uint32_t *d0, addr a);
SS_EMU_HIDDEN void ldmatrix_sync_aligned_m8n8_x2_trans_shared_b16(uint32_t *d0, uint32_t *d1, addr a);
SS_EMU_HIDDEN void ldmatrix_sync_aligned_m8n8_x4_trans_shared_b16(uint32_t *d0, uint32_t *d1, uint32_t *d2, uint32_t *d3,
                                                                 addr a);

SS_EMU_HIDDEN void cp_async(addr shared, addr global, uint32_t size, uint32_t source_size, int cache_global);
static inline void cp_async_ca_shared_global(addr d, addr s, uint32_t size) { cp_async(d, s, size, size, 0); }
static inline void cp_async_ca_shared_global(addr d, addr s, uint32_t size, uint32_t src) { cp_async(d, s, size, src, 0); }
static inline void cp_async_cg_shared_global(addr d, addr s, uint32_t size) { cp_async(d, s, size, size, 1); }
static inline void cp_async_cg_shared_global(addr d, addr s, uint32_t size, uint32_t src) { cp_async(d, s, size, src, 1); }
SS_EMU_HIDDEN void cp_async_commit_group();
SS_EMU_HIDDEN void cp_async_wait_group(uint32_t n);
SS_EMU_HIDDEN void cp_async_wait_all();

SS_EMU_HIDDEN void shfl_sync_idx_b32(uint32_t *d, uint32_t a, uint32_t b, uint32_t c, uint32_t mask);
SS_EMU_HIDDEN void shfl_sync_up_b32(uint32_t *d, uint32_t a, uint32_t b, uint32_t c, uint32_t mask);
SS_EMU_HIDDEN void shfl_sync_down_b32(uint32_t *d, uint32_t a, uint32_t b, uint32_t c, uint32_t mask);
SS_EMU_HIDDEN void shfl_sync_bfly_b32(uint32_t *d, uint32_t a, uint32_t b, uint32_t c, uint32_t mask);
}  // namespace ss_ptx

// CUDA's shuffle intrinsics, as nvcc lowers them to shfl.sync.
template <typename T> static inline T ss_emu_shfl(void (*op)(uint32_t *, uint32_t, uint32_t, uint32_t, uint32_t),
                                                  unsigned mask, T var, uint32_t b, uint32_t c) {
    static_assert(sizeof(T) == 4, "32-bit shuffles only");
    uint32_t in, out;
    memcpy(&in, &var, 4);
    op(&out, in, b, c, mask);
    T result;
    memcpy(&result, &out, 4);
    return result;
}
template <typename T> static inline T __shfl_sync(unsigned mask, T var, int lane, int width = 32) {
    return ss_emu_shfl(ss_ptx::shfl_sync_idx_b32, mask, var, (uint32_t)lane, ((32u - width) << 8) | 0x1f);
}
template <typename T> static inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    return ss_emu_shfl(ss_ptx::shfl_sync_up_b32, mask, var, delta, (32u - width) << 8);
}
template <typename T> static inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    return ss_emu_shfl(ss_ptx::shfl_sync_down_b32, mask, var, delta, ((32u - width) << 8) | 0x1f);
}
template <typename T> static inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
    return ss_emu_shfl(ss_ptx::shfl_sync_bfly_b32, mask, var, (uint32_t)lane_mask, ((32u - width) << 8) | 0x1f);
}

/// Calls a kernel with its parameters unpacked from the launch's argument pointers, and
/// registers it under its name when the module is loaded.
template <typename F, F f> struct ss_emu_thunk;
template <typename... A, void (*f)(A...)> struct ss_emu_thunk<void (*)(A...), f> {
    static constexpr unsigned int sizes[sizeof...(A) + 1] = {(unsigned int)sizeof(A)..., 0u};
    SS_EMU_UNCHECKED static void run(void *const *arguments) { call(arguments, std::index_sequence_for<A...>{}); }
    template <size_t... I> SS_EMU_UNCHECKED static void call(void *const *arguments, std::index_sequence<I...>) {
        (void)arguments;
        f(*static_cast<const typename std::remove_cv<A>::type *>(arguments[I])...);
    }
    struct registration {
        explicit registration(const char *name) { ss_emu_register_kernel(name, &run, sizes, sizeof...(A)); }
    };
};
#define SS_EMU_REGISTER(name, type) \
    static ss_emu_thunk<type, &name>::registration ss_emu_registration_##name(#name);
