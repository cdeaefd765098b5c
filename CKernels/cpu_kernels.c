// CPU kernels of the model executor: a blocked SGEMM with a fused epilogue, depthwise
// convolution and im2col, in C with GCC vector extensions. Each hot function is compiled twice
// (target_clones): for x86-64-v3 (AVX2 + FMA) and for the baseline; the dynamic loader picks the
// clone for the CPU it runs on. The vector code is the same source for both.
#include "sliceserve_shim.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__clang__)
#define SS_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SS_HOT
#endif

typedef float v8f __attribute__((vector_size(32), aligned(4)));

// Macros, not functions: a function taking or returning a 32-byte vector would have a different
// ABI in the AVX clone and the baseline clone.
#define v8_load(p) ({ v8f v_; memcpy(&v_, (p), sizeof v_); v_; })
#define v8_store(p, v) do { v8f t_ = (v); memcpy((p), &t_, sizeof t_); } while (0)
#define v8_splat(x) ({ float s_ = (x); (v8f){s_, s_, s_, s_, s_, s_, s_, s_}; })
#define v8_clamp(v, lo, hi) __builtin_elementwise_min(__builtin_elementwise_max((v), (lo)), (hi))

SS_HOT
static void ss_sgemm_epilogue(int M, int N, float *C, int ldc, const float *bias, const float *residual, int ldr,
                              float lo, float hi) {
    // Bias per row, residual, clamp (ReLU = [0, inf), ReLU6 = [0, 6], none = [-inf, inf]).
    v8f vlo = v8_splat(lo), vhi = v8_splat(hi);
    for (int i = 0; i < M; i++) {
        float *c = C + (long)i * ldc;
        const float *r = residual ? residual + (long)i * ldr : NULL;
        float bi = bias ? bias[i] : 0.0f;
        v8f vb = v8_splat(bi);
        int j = 0;
        for (; j + 8 <= N; j += 8) {
            v8f v = v8_load(c + j) + vb;
            if (r) v += v8_load(r + j);
            v8_store(c + j, v8_clamp(v, vlo, vhi));
        }
        for (; j < N; j++) {
            float v = c[j] + bi + (r ? r[j] : 0.0f);
            c[j] = v < lo ? lo : (v > hi ? hi : v);
        }
    }
}


enum { MR = 6, KC = 256 };

// Packs rows 0..<M, columns 0..<kc of A into MR-row tiles, each [k][r] (kc * MR floats, rows past
// M zero), one tile after another.
static void pack_a_block(int M, int kc, const float *A, int lda, float *dst) {
    int tiles = (M + MR - 1) / MR;
    for (int t = 0; t < tiles; t++) {
        float *d = dst + (size_t)t * MR * kc;
        for (int r = 0; r < MR; r++) {
            int row = t * MR + r;
            const float *src = A + (long)row * lda;
            for (int k = 0; k < kc; k++) d[k * MR + r] = row < M ? src[k] : 0.0f;
        }
    }
}

long ss_sgemm_packed_size(int M, int K) { return (long)((M + MR - 1) / MR) * MR * K; }

void ss_sgemm_pack_a(int M, int K, const float *A, int lda, float *packed) {
    int tiles = (M + MR - 1) / MR;
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC;
        pack_a_block(M, kc, A + k0, lda, packed + (size_t)k0 * tiles * MR);
    }
}

int ss_sgemm_tile_rows(void) { return MR; }

typedef float v16f __attribute__((vector_size(64), aligned(4)));

// The blocked SGEMM, written once as a macro and instantiated per vector width: 8 floats (AVX2
// and the baseline clone) and 16 floats (AVX-512). NR = two vectors of columns.
//
// For each block of KC along K: pack A into MR-row panels ([k][r], zero rows past M), then for
// each strip of NR columns pack B ([k][NR], zero columns past N), and run the MR x NR micro-kernel
// over the panels: 2*MR independent accumulators cover the FMA latency.
#define SS_DEFINE_SGEMM(NAME, VT, VW, ATTRS)                                                              \
    ATTRS static void NAME(int M, int N, int K, const float *A, int lda, const float *B, int ldb,         \
                           float *C, int ldc, float *scratch, const float *prepacked, int t0,              \
                           int total_tiles, const float *bias, const float *residual,                      \
                           int ldr, float lo, float hi) {                                                  \
        enum { NR = 2 * VW };                                                                              \
        int tiles = (M + MR - 1) / MR;                                                                     \
        float bpad[KC * NR];                                                                               \
        float cpad[MR * NR];                                                                               \
        for (int k0 = 0; k0 < K; k0 += KC) {                                                               \
            int kc = K - k0 < KC ? K - k0 : KC;                                                            \
            int accumulate = k0 > 0;                                                                       \
            const float *packed;                                                                           \
            if (prepacked) { /* weights packed once, at plan time: this block, from tile t0 */            \
                packed = prepacked + (size_t)k0 * total_tiles * MR + (size_t)t0 * MR * kc;                 \
            } else {                                                                                       \
                pack_a_block(M, kc, A + k0, lda, scratch);                                                 \
                packed = scratch;                                                                          \
            }                                                                                              \
            for (int j = 0; j < N; j += NR) {                                                              \
                int nr = N - j < NR ? N - j : NR;                                                          \
                if (nr == NR) {                                                                            \
                    for (int k = 0; k < kc; k++) { /* fixed-size copies compile to vector moves */         \
                        const float *src = B + (long)(k0 + k) * ldb + j;                                   \
                        VT v0, v1;                                                                         \
                        memcpy(&v0, src, sizeof(VT));                                                      \
                        memcpy(&v1, src + VW, sizeof(VT));                                                 \
                        memcpy(bpad + k * NR, &v0, sizeof(VT));                                            \
                        memcpy(bpad + k * NR + VW, &v1, sizeof(VT));                                       \
                    }                                                                                      \
                } else {                                                                                   \
                    for (int k = 0; k < kc; k++) {                                                         \
                        const float *src = B + (long)(k0 + k) * ldb + j;                                   \
                        for (int q = 0; q < NR; q++) bpad[k * NR + q] = q < nr ? src[q] : 0.0f;            \
                    }                                                                                      \
                }                                                                                          \
                for (int t = 0; t < tiles; t++) {                                                          \
                    int i = t * MR;                                                                        \
                    int mr = M - i < MR ? M - i : MR;                                                      \
                    const float *ap = packed + (size_t)t * MR * kc;                                        \
                    int full = mr == MR && nr == NR;                                                       \
                    float *c = full ? C + (long)i * ldc + j : cpad;                                        \
                    int cs = full ? ldc : NR;                                                              \
                    if (!full)                                                                             \
                        for (int r = 0; r < MR; r++)                                                       \
                            for (int q = 0; q < NR; q++)                                                   \
                                cpad[r * NR + q] = (accumulate && r < mr && q < nr) ? C[(long)(i + r) * ldc + j + q] : 0.0f; \
                    VT acc[MR][2];                                                                         \
                    for (int r = 0; r < MR; r++) {                                                         \
                        if (accumulate || !full) {                                                         \
                            memcpy(&acc[r][0], c + (long)r * cs, sizeof(VT));                              \
                            memcpy(&acc[r][1], c + (long)r * cs + VW, sizeof(VT));                         \
                        } else {                                                                           \
                            acc[r][0] = acc[r][1] = (VT){0};                                               \
                        }                                                                                  \
                    }                                                                                      \
                    for (int k = 0; k < kc; k++) {                                                         \
                        VT b0, b1;                                                                         \
                        memcpy(&b0, bpad + k * NR, sizeof(VT));                                            \
                        memcpy(&b1, bpad + k * NR + VW, sizeof(VT));                                       \
                        const float *a = ap + k * MR;                                                      \
                        for (int r = 0; r < MR; r++) {                                                     \
                            VT x = a[r] - (VT){0}; /* a splat; x - 0 == x, so it folds */               \
                            acc[r][0] += x * b0;                                                           \
                            acc[r][1] += x * b1;                                                           \
                        }                                                                                  \
                    }                                                                                      \
                    if (full && k0 + kc == K) { /* last block: fuse bias, residual and clamp */           \
                        VT vlo = lo - (VT){0}, vhi = hi - (VT){0};                                         \
                        for (int r = 0; r < MR; r++) {                                                     \
                            if (bias) {                                                                    \
                                VT vb = bias[i + r] - (VT){0};                                             \
                                acc[r][0] += vb;                                                           \
                                acc[r][1] += vb;                                                           \
                            }                                                                              \
                            if (residual) {                                                                \
                                VT r0, r1;                                                                 \
                                const float *rp = residual + (long)(i + r) * ldr + j;                      \
                                memcpy(&r0, rp, sizeof(VT));                                               \
                                memcpy(&r1, rp + VW, sizeof(VT));                                          \
                                acc[r][0] += r0;                                                           \
                                acc[r][1] += r1;                                                           \
                            }                                                                              \
                            acc[r][0] = __builtin_elementwise_min(__builtin_elementwise_max(acc[r][0], vlo), vhi); \
                            acc[r][1] = __builtin_elementwise_min(__builtin_elementwise_max(acc[r][1], vlo), vhi); \
                        }                                                                                  \
                    }                                                                                      \
                    for (int r = 0; r < MR; r++) {                                                         \
                        memcpy(c + (long)r * cs, &acc[r][0], sizeof(VT));                                  \
                        memcpy(c + (long)r * cs + VW, &acc[r][1], sizeof(VT));                             \
                    }                                                                                      \
                    if (!full) {                                                                           \
                        for (int r = 0; r < mr; r++) memcpy(C + (long)(i + r) * ldc + j, cpad + r * NR, nr * sizeof(float)); \
                        if (k0 + kc == K) /* last block: the epilogue on this edge tile */                 \
                            ss_sgemm_epilogue(mr, nr, C + (long)i * ldc + j, ldc, bias ? bias + i : NULL,  \
                                              residual ? residual + (long)i * ldr + j : NULL, ldr, lo, hi); \
                    }                                                                                      \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
    }

#if defined(__x86_64__) && defined(__clang__)
SS_DEFINE_SGEMM(sgemm_avx512, v16f, 16, __attribute__((target("avx512f,avx512vl,fma"))))
SS_DEFINE_SGEMM(sgemm_avx2, v8f, 8, __attribute__((target("avx2,fma"))))
#endif
SS_DEFINE_SGEMM(sgemm_baseline, v8f, 8, )

// C[m, :] = sum_k A[m, k] * B[k, :] for a few rows m: one pass over B per row, vectorized over N.
SS_HOT
static void gemv_rows(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc) {
    for (int m = 0; m < M; m++) {
        float *c = C + (long)m * ldc;
        memset(c, 0, N * sizeof(float));
        const float *a = A + (long)m * lda;
        for (int k = 0; k < K; k++) {
            float x = a[k];
            const float *b = B + (long)k * ldb;
            for (int n = 0; n < N; n++) c[n] += x * b[n];
        }
    }
}

static int sgemm_level = -1;  // 2 = AVX-512, 1 = AVX2 + FMA, 0 = baseline; -1 = not chosen yet

static int best_sgemm_level(void) {
    uint32_t f = ss_cpu_features();
    return (f & SS_CPU_AVX512F) ? 2 : ((f & SS_CPU_AVX2) && (f & SS_CPU_FMA)) ? 1 : 0;
}

int ss_sgemm_level(void) {
    int level = __atomic_load_n(&sgemm_level, __ATOMIC_RELAXED);
    if (level < 0) {
        level = best_sgemm_level();
        __atomic_store_n(&sgemm_level, level, __ATOMIC_RELAXED);
    }
    return level;
}

int ss_sgemm_set_level(int level) {
    int best = best_sgemm_level();
    if (level < 0 || level > best) level = best;
    __atomic_store_n(&sgemm_level, level, __ATOMIC_RELAXED);
    return level;
}

// Per-thread scratch for packed A panels.
static _Thread_local float *gemm_scratch;
static _Thread_local size_t gemm_scratch_count;

static void sgemm_dispatch(int M, int N, int K, const float *A, int lda, const float *packedA, int t0, int total_tiles,
                           const float *B, int ldb, float *C, int ldc,
                           const float *bias, const float *residual, int ldr, float lo, float hi) {
    int level = ss_sgemm_level();
    if (M <= 2 || K == 0) {
        // A few rows (a fully connected layer on one or two images): stream B once, row by row.
        gemv_rows(M, N, K, A, lda, B, ldb, C, ldc);
        ss_sgemm_epilogue(M, N, C, ldc, bias, residual, ldr, lo, hi);
        return;
    }
    float *scratch = NULL;
    if (packedA == NULL) {
        size_t need = (size_t)((M + MR - 1) / MR) * MR * KC;
        if (need > gemm_scratch_count) {
            free(gemm_scratch);
            gemm_scratch = (float *)malloc(need * sizeof(float));
            gemm_scratch_count = gemm_scratch ? need : 0;
            if (gemm_scratch == NULL) return;
        }
        scratch = gemm_scratch;
    }
#if defined(__x86_64__) && defined(__clang__)
    if (level == 2) sgemm_avx512(M, N, K, A, lda, B, ldb, C, ldc, scratch, packedA, t0, total_tiles, bias, residual, ldr, lo, hi);
    else if (level == 1) sgemm_avx2(M, N, K, A, lda, B, ldb, C, ldc, scratch, packedA, t0, total_tiles, bias, residual, ldr, lo, hi);
    else
#endif
    sgemm_baseline(M, N, K, A, lda, B, ldb, C, ldc, scratch, packedA, t0, total_tiles, bias, residual, ldr, lo, hi);
}

void ss_sgemm(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc,
              const float *bias, const float *residual, int ldr, float lo, float hi) {
    sgemm_dispatch(M, N, K, A, lda, NULL, 0, 0, B, ldb, C, ldc, bias, residual, ldr, lo, hi);
}

void ss_sgemm_prepacked(int M, int N, int K, const float *A, int lda, const float *packedA, int first_tile, int total_tiles,
                        const float *B, int ldb, float *C, int ldc,
                        const float *bias, const float *residual, int ldr, float lo, float hi) {
    sgemm_dispatch(M, N, K, A, lda, packedA, first_tile, total_tiles, B, ldb, C, ldc, bias, residual, ldr, lo, hi);
}

// Per-thread scratch for padded planes, grown as needed and kept for the thread's life.
static _Thread_local float *dw_scratch;
static _Thread_local size_t dw_scratch_count;

static float *scratch_floats(size_t count) {
    if (count > dw_scratch_count) {
        free(dw_scratch);
        dw_scratch = (float *)malloc(count * sizeof(float));
        dw_scratch_count = dw_scratch ? count : 0;
    }
    return dw_scratch;
}

// Clamps eight outputs and stores those of o[ox..<out_w] (fewer than eight at a row's end).
#define store_clamped(o, ox, out_w, acc, vlo, vhi)                                 \
    do {                                                                           \
        v8f c_ = v8_clamp((acc), (vlo), (vhi));                                    \
        if ((ox) + 8 <= (out_w)) {                                                 \
            v8_store((o) + (ox), c_);                                              \
        } else {                                                                   \
            float tail_[8];                                                        \
            v8_store(tail_, c_);                                                   \
            memcpy((o) + (ox), tail_, ((out_w) - (ox)) * sizeof(float));           \
        }                                                                          \
    } while (0)

// One channel of a depthwise convolution on a zero-padded plane, for a K x K window with
// horizontal stride S (both compile-time constants after inlining), eight outputs at a time.
static inline __attribute__((always_inline)) void dw_plane_fixed(const int K, const int S, const float *plane, int padded_w,
                                                                 const float *w, float b, int stride_h, int out_h, int out_w,
                                                                 float *out, float lo, float hi) {
    v8f vlo = v8_splat(lo), vhi = v8_splat(hi);
    v8f wv[25];
    for (int i = 0; i < K * K; i++) wv[i] = v8_splat(w[i]);
    v8f vb = v8_splat(b);
    for (int oy = 0; oy < out_h; oy++) {
        float *o = out + (long)oy * out_w;
        const float *top = plane + (long)(oy * stride_h) * padded_w;
        for (int ox = 0; ox < out_w; ox += 8) {
            v8f acc = vb;
            for (int ky = 0; ky < K; ky++) {
                const float *row = top + (long)ky * padded_w + ox * S;
                for (int kx = 0; kx < K; kx++) {
                    v8f x;
                    if (S == 1) {
                        x = v8_load(row + kx);
                    } else {
                        v8f a = v8_load(row + kx), a2 = v8_load(row + kx + 8);
                        x = __builtin_shufflevector(a, a2, 0, 2, 4, 6, 8, 10, 12, 14);
                    }
                    acc += wv[ky * K + kx] * x;
                }
            }
            store_clamped(o, ox, out_w, acc, vlo, vhi);
        }
    }
}

SS_HOT
void ss_depthwise_conv2d(int channels, int in_h, int in_w, const float *input, int out_h, int out_w, float *output,
                         const float *weights, int kernel_h, int kernel_w, int stride_h, int stride_w,
                         int pad_top, int pad_left, int dilation_h, int dilation_w,
                         const float *bias, float lo, float hi) {
    // Each channel is first copied into a zero-padded plane wide enough that every output,
    // tail included, is computed eight at a time with all taps in registers and no bound checks.
    // Strides of 1 load contiguously; other strides de-interleave (stride 2) or gather.
    int ext_w = (kernel_w - 1) * dilation_w, ext_h = (kernel_h - 1) * dilation_h;
    int padded_h = (out_h - 1) * stride_h + ext_h + 1;
    int padded_w = (out_w + 8) * stride_w + ext_w + 8;
    if (padded_h < pad_top + in_h) padded_h = pad_top + in_h;
    if (padded_w < pad_left + in_w) padded_w = pad_left + in_w;
    float *plane = scratch_floats((size_t)padded_h * padded_w);
    if (plane == NULL) return;  // out of memory: the caller's output stays as it was
    v8f vlo = v8_splat(lo), vhi = v8_splat(hi);
    for (int c = 0; c < channels; c++) {
        const float *in = input + (long)c * in_h * in_w;
        float *out = output + (long)c * out_h * out_w;
        const float *w = weights + (long)c * kernel_h * kernel_w;
        // The padding stays zero from one channel to the next: only the data region is rewritten.
        if (c == 0) memset(plane, 0, (size_t)padded_h * padded_w * sizeof(float));
        for (int y = 0; y < in_h; y++) {
            int py = y + pad_top;
            if (py < 0 || py >= padded_h) continue;
            int x_from = pad_left < 0 ? -pad_left : 0;
            int x_to = in_w;
            if (x_to + pad_left > padded_w) x_to = padded_w - pad_left;
            if (x_to > x_from) memcpy(plane + (long)py * padded_w + pad_left + x_from, in + (long)y * in_w + x_from, (x_to - x_from) * sizeof(float));
        }
        float b = bias ? bias[c] : 0.0f;
        if (kernel_h == kernel_w && (kernel_h == 3 || kernel_h == 5) && dilation_h == 1 && dilation_w == 1 &&
            (stride_w == 1 || stride_w == 2)) {
            // MobileNet and EfficientNet's cases: the window size and stride known at compile
            // time, so every tap is unrolled with its weight in a register.
            if (kernel_h == 3 && stride_w == 1) dw_plane_fixed(3, 1, plane, padded_w, w, b, stride_h, out_h, out_w, out, lo, hi);
            else if (kernel_h == 3) dw_plane_fixed(3, 2, plane, padded_w, w, b, stride_h, out_h, out_w, out, lo, hi);
            else if (stride_w == 1) dw_plane_fixed(5, 1, plane, padded_w, w, b, stride_h, out_h, out_w, out, lo, hi);
            else dw_plane_fixed(5, 2, plane, padded_w, w, b, stride_h, out_h, out_w, out, lo, hi);
            continue;
        }
        for (int oy = 0; oy < out_h; oy++) {
            float *o = out + (long)oy * out_w;
            for (int ox = 0; ox < out_w; ox += 8) {
                v8f acc = v8_splat(b);
                for (int ky = 0; ky < kernel_h; ky++) {
                    const float *row = plane + (long)(oy * stride_h + ky * dilation_h) * padded_w + ox * stride_w;
                    for (int kx = 0; kx < kernel_w; kx++) {
                        const float *p = row + kx * dilation_w;
                        v8f x;
                        if (stride_w == 1) {
                            x = v8_load(p);
                        } else if (stride_w == 2) {
                            v8f a = v8_load(p), a2 = v8_load(p + 8);
                            x = __builtin_shufflevector(a, a2, 0, 2, 4, 6, 8, 10, 12, 14);
                        } else {
                            x = (v8f){p[0], p[stride_w], p[2 * stride_w], p[3 * stride_w], p[4 * stride_w],
                                      p[5 * stride_w], p[6 * stride_w], p[7 * stride_w]};
                        }
                        acc += v8_splat(w[ky * kernel_w + kx]) * x;
                    }
                }
                store_clamped(o, ox, out_w, acc, vlo, vhi);
            }
        }
    }
}

SS_HOT
void ss_im2col(int channels, int in_h, int in_w, const float *input, int kernel_h, int kernel_w,
               int stride_h, int stride_w, int pad_top, int pad_left, int dilation_h, int dilation_w,
               int out_h, int out_w, float *columns) {
    // columns: [channels * kernel_h * kernel_w, out_h * out_w]
    long plane = (long)out_h * out_w;
    for (int c = 0; c < channels; c++) {
        const float *in = input + (long)c * in_h * in_w;
        for (int ky = 0; ky < kernel_h; ky++) {
            for (int kx = 0; kx < kernel_w; kx++) {
                float *col = columns + ((long)(c * kernel_h + ky) * kernel_w + kx) * plane;
                for (int oy = 0; oy < out_h; oy++) {
                    int iy = oy * stride_h - pad_top + ky * dilation_h;
                    float *dst = col + (long)oy * out_w;
                    if (iy < 0 || iy >= in_h) {
                        memset(dst, 0, out_w * sizeof(float));
                        continue;
                    }
                    const float *row = in + (long)iy * in_w;
                    for (int ox = 0; ox < out_w; ox++) {
                        int ix = ox * stride_w - pad_left + kx * dilation_w;
                        dst[ox] = (ix >= 0 && ix < in_w) ? row[ix] : 0.0f;
                    }
                }
            }
        }
    }
}
