// CPU kernels of the model executor: a blocked SGEMM with a fused epilogue, depthwise
// convolution and im2col, in C with GCC vector extensions. Each hot function is compiled twice
// (target_clones): for x86-64-v3 (AVX2 + FMA) and for the baseline; the dynamic loader picks the
// clone for the CPU it runs on. The vector code is the same source for both.
#include "sliceserve_shim.h"

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
#define v8_splat(x) (((v8f){0, 0, 0, 0, 0, 0, 0, 0}) + (float)(x))
#define v8_clamp(v, lo, hi) __builtin_elementwise_min(__builtin_elementwise_max((v), (lo)), (hi))

enum { MR = 4, NR = 16, KC = 256 };

// C[MR x NR] (+)= A[MR x kc] * B[kc x NR]; A rows lda apart, B rows ldb apart, C rows ldc apart.
static inline __attribute__((always_inline)) void micro_4x16(int kc, const float *A, int lda, const float *B, int ldb, float *C, int ldc, int accumulate) {
    v8f c00, c01, c10, c11, c20, c21, c30, c31;
    if (accumulate) {
        c00 = v8_load(C); c01 = v8_load(C + 8);
        c10 = v8_load(C + ldc); c11 = v8_load(C + ldc + 8);
        c20 = v8_load(C + 2 * ldc); c21 = v8_load(C + 2 * ldc + 8);
        c30 = v8_load(C + 3 * ldc); c31 = v8_load(C + 3 * ldc + 8);
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = v8_splat(0);
    }
    const float *a0 = A, *a1 = A + lda, *a2 = A + 2 * lda, *a3 = A + 3 * lda;
    for (int k = 0; k < kc; k++) {
        v8f b0 = v8_load(B + (long)k * ldb), b1 = v8_load(B + (long)k * ldb + 8);
        v8f x;
        x = v8_splat(a0[k]); c00 += x * b0; c01 += x * b1;
        x = v8_splat(a1[k]); c10 += x * b0; c11 += x * b1;
        x = v8_splat(a2[k]); c20 += x * b0; c21 += x * b1;
        x = v8_splat(a3[k]); c30 += x * b0; c31 += x * b1;
    }
    v8_store(C, c00); v8_store(C + 8, c01);
    v8_store(C + ldc, c10); v8_store(C + ldc + 8, c11);
    v8_store(C + 2 * ldc, c20); v8_store(C + 2 * ldc + 8, c21);
    v8_store(C + 3 * ldc, c30); v8_store(C + 3 * ldc + 8, c31);
}

SS_HOT
void ss_sgemm(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc,
              const float *bias, const float *residual, int ldr, float lo, float hi) {
    // Edge tiles go through zero-padded copies so that the micro-kernel always runs full tiles.
    float bpad[KC * NR];
    float apad[MR * KC];
    float cpad[MR * NR];
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC;
        int accumulate = k0 > 0;
        for (int j = 0; j < N; j += NR) {
            int nr = N - j < NR ? N - j : NR;
            const float *b = B + (long)k0 * ldb + j;
            int bstride = ldb;
            if (nr < NR) {
                for (int k = 0; k < kc; k++) {
                    memcpy(bpad + k * NR, B + (long)(k0 + k) * ldb + j, nr * sizeof(float));
                    memset(bpad + k * NR + nr, 0, (NR - nr) * sizeof(float));
                }
                b = bpad;
                bstride = NR;
            }
            for (int i = 0; i < M; i += MR) {
                int mr = M - i < MR ? M - i : MR;
                const float *a = A + (long)i * lda + k0;
                int astride = lda;
                if (mr < MR) {
                    for (int r = 0; r < MR; r++) {
                        if (r < mr) memcpy(apad + r * KC, A + (long)(i + r) * lda + k0, kc * sizeof(float));
                        else memset(apad + r * KC, 0, kc * sizeof(float));
                    }
                    a = apad;
                    astride = KC;
                }
                float *c = C + (long)i * ldc + j;
                if (mr == MR && nr == NR) {
                    micro_4x16(kc, a, astride, b, bstride, c, ldc, accumulate);
                } else {
                    for (int r = 0; r < MR; r++)
                        for (int q = 0; q < NR; q++)
                            cpad[r * NR + q] = (accumulate && r < mr && q < nr) ? c[(long)r * ldc + q] : 0.0f;
                    micro_4x16(kc, a, astride, b, bstride, cpad, NR, 1);
                    for (int r = 0; r < mr; r++) memcpy(c + (long)r * ldc, cpad + r * NR, nr * sizeof(float));
                }
            }
        }
    }
    // Epilogue: bias per row, residual, clamp (ReLU = [0, inf), ReLU6 = [0, 6], none = [-inf, inf]).
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

SS_HOT
void ss_depthwise_conv2d(int channels, int in_h, int in_w, const float *input, int out_h, int out_w, float *output,
                         const float *weights, int kernel_h, int kernel_w, int stride_h, int stride_w,
                         int pad_top, int pad_left, int dilation_h, int dilation_w,
                         const float *bias, float lo, float hi) {
    for (int c = 0; c < channels; c++) {
        const float *in = input + (long)c * in_h * in_w;
        float *out = output + (long)c * out_h * out_w;
        const float *w = weights + (long)c * kernel_h * kernel_w;
        float b = bias ? bias[c] : 0.0f;
        // Output columns whose whole window is inside the input: [x0, x1).
        int x0 = 0, x1 = 0;
        {
            int lo_x = (pad_left + stride_w - 1) / stride_w;
            int hi_x = (in_w - 1 - (kernel_w - 1) * dilation_w + pad_left) / stride_w + 1;
            if (in_w - 1 - (kernel_w - 1) * dilation_w + pad_left < 0) hi_x = 0;
            x0 = lo_x < out_w ? lo_x : out_w;
            x1 = hi_x < x0 ? x0 : (hi_x > out_w ? out_w : hi_x);
        }
        for (int oy = 0; oy < out_h; oy++) {
            float *o = out + (long)oy * out_w;
            for (int ox = 0; ox < out_w; ox++) o[ox] = b;
            for (int ky = 0; ky < kernel_h; ky++) {
                int iy = oy * stride_h - pad_top + ky * dilation_h;
                if (iy < 0 || iy >= in_h) continue;
                const float *row = in + (long)iy * in_w;
                for (int kx = 0; kx < kernel_w; kx++) {
                    float wk = w[ky * kernel_w + kx];
                    int dx = kx * dilation_w - pad_left;
                    for (int ox = 0; ox < x0; ox++) {
                        int ix = ox * stride_w + dx;
                        if (ix >= 0 && ix < in_w) o[ox] += wk * row[ix];
                    }
                    if (stride_w == 1) {
                        const float *r = row + dx;
                        for (int ox = x0; ox < x1; ox++) o[ox] += wk * r[ox];
                    } else {
                        for (int ox = x0; ox < x1; ox++) o[ox] += wk * row[ox * stride_w + dx];
                    }
                    for (int ox = x1; ox < out_w; ox++) {
                        int ix = ox * stride_w + dx;
                        if (ix >= 0 && ix < in_w) o[ox] += wk * row[ix];
                    }
                }
            }
            for (int ox = 0; ox < out_w; ox++) {
                float v = o[ox];
                o[ox] = v < lo ? lo : (v > hi ? hi : v);
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
