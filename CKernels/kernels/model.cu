// Model operators for the GPU executor: half-precision tensors (NHWC for images), float32
// arithmetic inside every kernel, one rounding to half on each store.
//
// The fake GPU runs these very sources on the CUDA emulator (Sources/SliceTesting): the tests
// check them, not a host copy of them.
#include "ss_device.cuh"

typedef long long ss_i64;

// Elementwise operation codes (ModelKernels.Op on the host).
#define SS_OP_COPY 0
#define SS_OP_RELU 1
#define SS_OP_CLIP 2
#define SS_OP_SIGMOID 3
#define SS_OP_HARDSIGMOID 4
#define SS_OP_HARDSWISH 5
#define SS_OP_ADD 10
#define SS_OP_SUB 11
#define SS_OP_MUL 12
#define SS_OP_DIV 13

static __device__ __forceinline__ float ss_apply(ss_u32 op, float a, float b, float p0, float p1) {
    switch (op) {
    case SS_OP_RELU: return fmaxf(a, 0.0f);
    case SS_OP_CLIP: return fminf(fmaxf(a, p0), p1);
    case SS_OP_SIGMOID: return 1.0f / (1.0f + expf(-a));
    case SS_OP_HARDSIGMOID: return fminf(fmaxf(p0 * a + p1, 0.0f), 1.0f);
    case SS_OP_HARDSWISH: return a * fminf(fmaxf(a / 6.0f + 0.5f, 0.0f), 1.0f);
    case SS_OP_ADD: return a + b;
    case SS_OP_SUB: return a - b;
    case SS_OP_MUL: return a * b;
    case SS_OP_DIV: return a / b;
    default: return a;
    }
}

/// out[o(i)] = op(a[sa(i)], b[sb(i)]) over a 4-D index space d0 x d1 x d2 x d3 (d3 fastest),
/// where o, sa and sb are dot products of the index with per-tensor element strides (0 for a
/// broadcast dimension). One kernel covers unary and binary operators with broadcasting,
/// transposes, layout changes (NHWC <-> NCHW) and the slices of a concatenation. `b` may be 0.
SS_KERNEL void ss_eltwise_f16(ss_u32 op, ss_u64 count, ss_u16 *__restrict__ out, const ss_u16 *__restrict__ a,
                              const ss_u16 *__restrict__ b, ss_u32 d1, ss_u32 d2, ss_u32 d3,
                              ss_u32 o0, ss_u32 o1, ss_u32 o2, ss_u32 o3,
                              ss_u32 a0, ss_u32 a1, ss_u32 a2, ss_u32 a3,
                              ss_u32 b0, ss_u32 b1, ss_u32 b2, ss_u32 b3, float p0, float p1) {
    for (ss_u64 i = ss_thread_index(); i < count; i += ss_grid_threads()) {
        const ss_u64 i3 = i % d3;
        ss_u64 r = i / d3;
        const ss_u64 i2 = r % d2;
        r /= d2;
        const ss_u64 i1 = r % d1;
        const ss_u64 i0 = r / d1;
        const float av = ss_f16_to_f32(a[i0 * a0 + i1 * a1 + i2 * a2 + i3 * a3]);
        const float bv = b ? ss_f16_to_f32(b[i0 * b0 + i1 * b1 + i2 * b2 + i3 * b3]) : 0.0f;
        out[i0 * o0 + i1 * o1 + i2 * o2 + i3 * o3] = ss_f32_to_f16(ss_apply(op, av, bv, p0, p1));
    }
}

/// dst[i] (half) = src[i] (float).
SS_KERNEL void ss_f32_to_f16(const float *__restrict__ src, ss_u16 *__restrict__ dst, ss_u64 count) {
    for (ss_u64 i = ss_thread_index(); i < count; i += ss_grid_threads()) dst[i] = ss_f32_to_f16(src[i]);
}

// The implicit GEMM of an NHWC convolution, shared by its two kernels: row p of the left operand
// is output pixel (n, oy, ox), column k is (ky, kx, c) of one group's window.
struct ss_conv_geometry {
    ss_u32 H, W, C, OH, OW, KW, Cg, sh, sw, pt, pl, dh, dw;
};

/// The element offset in X of row p, column k of group g's left operand, or -1 where the
/// window lies in the padding.
static __device__ __forceinline__ ss_i64 ss_conv_offset(const ss_conv_geometry &s, ss_u32 g, ss_u64 p, ss_u32 k) {
    const ss_u32 c = k % s.Cg, t = k / s.Cg, kx = t % s.KW, ky = t / s.KW;
    const ss_u32 ox = (ss_u32)(p % s.OW);
    const ss_u64 q = p / s.OW;
    const ss_u32 oy = (ss_u32)(q % s.OH);
    const ss_u64 n = q / s.OH;
    const int iy = (int)(oy * s.sh + ky * s.dh) - (int)s.pt, ix = (int)(ox * s.sw + kx * s.dw) - (int)s.pl;
    if (iy < 0 || iy >= (int)s.H || ix < 0 || ix >= (int)s.W) return -1;
    return (ss_i64)(((n * s.H + iy) * s.W + ix) * s.C + g * s.Cg + c);
}

/// Image, row, column and channel of element i of an NHWC tensor of OH x OW x C images.
static __device__ __forceinline__ void ss_nhwc_position(ss_u64 i, ss_u32 C, ss_u32 OW, ss_u32 OH, ss_u64 *n, ss_u32 *oy,
                                                        ss_u32 *ox, ss_u32 *c) {
    *c = (ss_u32)(i % C);
    const ss_u64 r = i / C;
    *ox = (ss_u32)(r % OW);
    *oy = (ss_u32)((r / OW) % OH);
    *n = r / OW / OH;
}

/// The epilogue: Y[at] = clamp(v + bias[m] + R[at], lo, hi), bias and R optional.
static __device__ __forceinline__ void ss_conv_store(ss_u16 *Y, const float *bias, const ss_u16 *R, ss_u64 at, ss_u32 m,
                                                     float v, float lo, float hi) {
    if (bias) v += bias[m];
    if (R) v += ss_f16_to_f32(R[at]);
    Y[at] = ss_f32_to_f16(fminf(fmaxf(v, lo), hi));
}

/// The epilogue for two adjacent channels m, m + 1 at `at` (even, so the pair is 4-byte aligned).
static __device__ __forceinline__ void ss_conv_store_pair(ss_u16 *Y, const float *bias, const ss_u16 *R, ss_u64 at,
                                                          ss_u32 m, float v0, float v1, float lo, float hi) {
    if (bias) {
        v0 += bias[m];
        v1 += bias[m + 1];
    }
    if (R) {
        const ss_u32 r = *(const ss_u32 *)(R + at);
        v0 += ss_f16_to_f32((ss_u16)(r & 0xffffu));
        v1 += ss_f16_to_f32((ss_u16)(r >> 16));
    }
    *(ss_u32 *)(Y + at) = (ss_u32)ss_f32_to_f16(fminf(fmaxf(v0, lo), hi)) |
                          ((ss_u32)ss_f32_to_f16(fminf(fmaxf(v1, lo), hi)) << 16);
}

// Convolution as an implicit GEMM: rows are output pixels (n, oy, ox), columns output channels
// of one group, the reduction runs over (ky, kx, c). A block computes a 64 x 64 tile with 256
// threads, 4 x 4 outputs each, staging 16-deep slices of both operands in shared memory as
// float. X: NHWC [N][H][W][C]; Wt: [M][KH][KW][C/groups]; Y and R: NHWC [N][OH][OW][M];
// bias: float[M] or 0; R: a residual added before the clamp, or 0. blockIdx.z is the group.
#define SS_CONV_TM 64
#define SS_CONV_TN 64
#define SS_CONV_TK 16

SS_KERNEL void ss_conv_nhwc_f16(
    const ss_u16 *__restrict__ X, const ss_u16 *__restrict__ Wt, const float *__restrict__ bias,
    const ss_u16 *__restrict__ R, ss_u16 *__restrict__ Y, ss_u32 N, ss_u32 H, ss_u32 W, ss_u32 C,
    ss_u32 OH, ss_u32 OW, ss_u32 M, ss_u32 KH, ss_u32 KW, ss_u32 groups, ss_u32 sh, ss_u32 sw,
    ss_u32 pt, ss_u32 pl, ss_u32 dh, ss_u32 dw, float lo, float hi) {
    // One column of padding: the tile stores (consecutive threads take consecutive k of one row,
    // so that the global loads are coalesced) fall in distinct banks instead of 16 to a bank.
    __shared__ float As[SS_CONV_TK][SS_CONV_TM + 1];
    __shared__ float Bs[SS_CONV_TK][SS_CONV_TN + 1];
    const ss_u32 Cg = C / groups, Mg = M / groups, g = blockIdx.z;
    const ss_u32 K = KH * KW * Cg;
    const ss_conv_geometry geometry = {H, W, C, OH, OW, KW, Cg, sh, sw, pt, pl, dh, dw};
    const ss_u64 P = (ss_u64)N * OH * OW;
    const ss_u64 p0 = (ss_u64)blockIdx.x * SS_CONV_TM;
    const ss_u32 m0 = blockIdx.y * SS_CONV_TN;
    const ss_u32 tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

    for (ss_u32 k0 = 0; k0 < K; k0 += SS_CONV_TK) {
        for (ss_u32 e = tid; e < SS_CONV_TK * SS_CONV_TM; e += 256) {
            const ss_u32 kk = e % SS_CONV_TK, row = e / SS_CONV_TK;
            const ss_u32 k = k0 + kk;
            const ss_u64 p = p0 + row;
            const ss_i64 at = (k < K && p < P) ? ss_conv_offset(geometry, g, p, k) : -1;
            As[kk][row] = at >= 0 ? ss_f16_to_f32(X[at]) : 0.0f;
        }
        for (ss_u32 e = tid; e < SS_CONV_TK * SS_CONV_TN; e += 256) {
            const ss_u32 kk = e % SS_CONV_TK, col = e / SS_CONV_TK;
            const ss_u32 k = k0 + kk, m = m0 + col;
            Bs[kk][col] = (k < K && m < Mg) ? ss_f16_to_f32(Wt[(ss_u64)(g * Mg + m) * K + k]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < SS_CONV_TK; kk++) {
            float a[4], b[4];
            for (int i = 0; i < 4; i++) a[i] = As[kk][ty + 16 * i];
            for (int j = 0; j < 4; j++) b[j] = Bs[kk][tx + 16 * j];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; i++) {
        const ss_u64 p = p0 + ty + 16 * i;
        if (p >= P) continue;
        for (int j = 0; j < 4; j++) {
            const ss_u32 m = m0 + tx + 16 * j;
            if (m >= Mg) continue;
            ss_conv_store(Y, bias, R, p * M + g * Mg + m, g * Mg + m, acc[i][j], lo, hi);
        }
    }
}

/// Depthwise convolution (one filter per channel), NHWC, one thread per output value: threads
/// next to each other take neighbouring channels, so every load and store is coalesced.
/// Wt: [KH][KW][C]; bias, R and the clamp as in ss_conv_nhwc_f16.
SS_KERNEL void ss_depthwise_nhwc_f16(const ss_u16 *__restrict__ X, const ss_u16 *__restrict__ Wt,
                                     const float *__restrict__ bias, const ss_u16 *__restrict__ R,
                                     ss_u16 *__restrict__ Y, ss_u32 N, ss_u32 H, ss_u32 W, ss_u32 C, ss_u32 OH,
                                     ss_u32 OW, ss_u32 KH, ss_u32 KW, ss_u32 sh, ss_u32 sw, ss_u32 pt, ss_u32 pl,
                                     ss_u32 dh, ss_u32 dw, float lo, float hi) {
    const ss_u64 total = (ss_u64)N * OH * OW * C;
    for (ss_u64 i = ss_thread_index(); i < total; i += ss_grid_threads()) {
        ss_u32 c, ox, oy;
        ss_u64 n;
        ss_nhwc_position(i, C, OW, OH, &n, &oy, &ox, &c);
        float acc = 0.0f;
        for (ss_u32 ky = 0; ky < KH; ky++) {
            const int iy = (int)(oy * sh + ky * dh) - (int)pt;
            if (iy < 0 || iy >= (int)H) continue;
            for (ss_u32 kx = 0; kx < KW; kx++) {
                const int ix = (int)(ox * sw + kx * dw) - (int)pl;
                if (ix < 0 || ix >= (int)W) continue;
                acc = fmaf(ss_f16_to_f32(X[((n * H + iy) * W + ix) * C + c]), ss_f16_to_f32(Wt[(ky * KW + kx) * C + c]), acc);
            }
        }
        ss_conv_store(Y, bias, R, i, c, acc, lo, hi);
    }
}

/// MaxPool (isMax = 1) or AveragePool, NHWC, one thread per output value. With includePad, an
/// average counts padded positions inside the declared padding (ONNX count_include_pad).
SS_KERNEL void ss_pool_nhwc_f16(const ss_u16 *__restrict__ X, ss_u16 *__restrict__ Y, ss_u32 N, ss_u32 H,
                                ss_u32 W, ss_u32 C, ss_u32 OH, ss_u32 OW, ss_u32 KH, ss_u32 KW, ss_u32 sh,
                                ss_u32 sw, ss_u32 pt, ss_u32 pl, ss_u32 pb, ss_u32 pr, ss_u32 dh, ss_u32 dw,
                                ss_u32 isMax, ss_u32 includePad) {
    const ss_u64 total = (ss_u64)N * OH * OW * C;
    for (ss_u64 i = ss_thread_index(); i < total; i += ss_grid_threads()) {
        ss_u32 c, ox, oy;
        ss_u64 n;
        ss_nhwc_position(i, C, OW, OH, &n, &oy, &ox, &c);
        float acc = isMax ? -__int_as_float(0x7f800000) : 0.0f;
        ss_u32 count = 0;
        for (ss_u32 ky = 0; ky < KH; ky++) {
            const int iy = (int)(oy * sh + ky * dh) - (int)pt;
            for (ss_u32 kx = 0; kx < KW; kx++) {
                const int ix = (int)(ox * sw + kx * dw) - (int)pl;
                if (iy >= 0 && iy < (int)H && ix >= 0 && ix < (int)W) {
                    const float v = ss_f16_to_f32(X[((n * H + iy) * W + ix) * C + c]);
                    acc = isMax ? fmaxf(acc, v) : acc + v;
                    count++;
                } else if (includePad && iy < (int)(H + pb) && ix < (int)(W + pr)) {
                    count++;
                }
            }
        }
        Y[i] = ss_f32_to_f16(isMax ? acc : (count > 0 ? acc / (float)count : 0.0f));
    }
}

/// Mean over up to four reduced dimensions: out[i] (contiguous) = mean over (r0..r3) of
/// X[kept offset(i) + reduced offset]. Kept dimensions k1..k3 (k0 implied by count) and both
/// stride sets are in elements of X. One thread per output value.
SS_KERNEL void ss_reduce_mean_f16(const ss_u16 *__restrict__ X, ss_u16 *__restrict__ Y, ss_u64 count,
                                  ss_u32 k1, ss_u32 k2, ss_u32 k3, ss_u32 ks0, ss_u32 ks1, ss_u32 ks2, ss_u32 ks3,
                                  ss_u32 r0, ss_u32 r1, ss_u32 r2, ss_u32 r3, ss_u32 rs0, ss_u32 rs1, ss_u32 rs2,
                                  ss_u32 rs3) {
    const ss_u64 reduced = (ss_u64)r0 * r1 * r2 * r3;
    for (ss_u64 i = ss_thread_index(); i < count; i += ss_grid_threads()) {
        const ss_u64 i3 = i % k3;
        ss_u64 q = i / k3;
        const ss_u64 i2 = q % k2;
        q /= k2;
        const ss_u64 i1 = q % k1, i0 = q / k1;
        const ss_u64 base = i0 * ks0 + i1 * ks1 + i2 * ks2 + i3 * ks3;
        float sum = 0.0f;
        for (ss_u64 j = 0; j < reduced; j++) {
            const ss_u64 j3 = j % r3;
            ss_u64 t = j / r3;
            const ss_u64 j2 = t % r2;
            t /= r2;
            const ss_u64 j1 = t % r1, j0 = t / r1;
            sum += ss_f16_to_f32(X[base + j0 * rs0 + j1 * rs1 + j2 * rs2 + j3 * rs3]);
        }
        Y[i] = ss_f32_to_f16(sum / (float)reduced);
    }
}

/// Softmax over `axis` values spaced `inner` apart, for outer x inner rows; one thread per row.
SS_KERNEL void ss_softmax_f16(const ss_u16 *__restrict__ X, ss_u16 *__restrict__ Y, ss_u32 outer, ss_u32 axis,
                              ss_u32 inner) {
    const ss_u64 rows = (ss_u64)outer * inner;
    for (ss_u64 row = ss_thread_index(); row < rows; row += ss_grid_threads()) {
        const ss_u64 base = (row / inner) * axis * inner + row % inner;
        float peak = -__int_as_float(0x7f800000);
        for (ss_u32 a = 0; a < axis; a++) peak = fmaxf(peak, ss_f16_to_f32(X[base + (ss_u64)a * inner]));
        float sum = 0.0f;
        for (ss_u32 a = 0; a < axis; a++) sum += expf(ss_f16_to_f32(X[base + (ss_u64)a * inner]) - peak);
        for (ss_u32 a = 0; a < axis; a++)
            Y[base + (ss_u64)a * inner] = ss_f32_to_f16(expf(ss_f16_to_f32(X[base + (ss_u64)a * inner]) - peak) / sum);
    }
}

/// Batched matrix product of tensors (MatMul with a computed right operand): Y[b][i][j] =
/// sum_k A[b][i][k] B[b][k][j], with up to two batch dimensions (bd0 x bd1) whose element
/// strides in A and B are 0 where broadcast. One thread per output value.
SS_KERNEL void ss_matmul_f16(const ss_u16 *__restrict__ A, const ss_u16 *__restrict__ B, ss_u16 *__restrict__ Y,
                             ss_u32 bd0, ss_u32 bd1, ss_u32 Mr, ss_u32 Nc, ss_u32 K, ss_u32 as0, ss_u32 as1,
                             ss_u32 bs0, ss_u32 bs1) {
    const ss_u64 total = (ss_u64)bd0 * bd1 * Mr * Nc;
    for (ss_u64 i = ss_thread_index(); i < total; i += ss_grid_threads()) {
        const ss_u32 j = (ss_u32)(i % Nc);
        ss_u64 q = i / Nc;
        const ss_u32 r = (ss_u32)(q % Mr);
        q /= Mr;
        const ss_u64 b1 = q % bd1, b0 = q / bd1;
        const ss_u16 *a = A + b0 * as0 + b1 * as1 + (ss_u64)r * K;
        const ss_u16 *b = B + b0 * bs0 + b1 * bs1 + j;
        float acc = 0.0f;
        for (ss_u32 k = 0; k < K; k++) acc = fmaf(ss_f16_to_f32(a[k]), ss_f16_to_f32(b[(ss_u64)k * Nc]), acc);
        Y[i] = ss_f32_to_f16(acc);
    }
}

// The same convolution on tensor cores (mma.sync m16n8k16, f16 inputs, f32 accumulators), for
// layers whose channels per group and total channels are multiples of 8, so that every row of
// the implicit GEMM's operands loads in 16-byte pieces. A block computes 128 pixels x 64 output
// channels with 8 warps (4 along the pixels, 2 along the channels, 32 x 32 each), 32 of the
// reduction at a time; arguments and results as ss_conv_nhwc_f16.
#define SS_TC_TM 128
#define SS_TC_TN 64
#define SS_TC_TK 32
#define SS_TC_PAD 8

/// Eight halves, 16-byte aligned: one 128-bit load or store (a 4-byte aligned struct compiles to
/// four 32-bit accesses).
struct __align__(16) ss_u32x4 { ss_u32 x, y, z, w; };

SS_KERNEL void ss_conv_nhwc_tc_f16(
    const ss_u16 *__restrict__ X, const ss_u16 *__restrict__ Wt, const float *__restrict__ bias,
    const ss_u16 *__restrict__ R, ss_u16 *__restrict__ Y, ss_u32 N, ss_u32 H, ss_u32 W, ss_u32 C,
    ss_u32 OH, ss_u32 OW, ss_u32 M, ss_u32 KH, ss_u32 KW, ss_u32 groups, ss_u32 sh, ss_u32 sw,
    ss_u32 pt, ss_u32 pl, ss_u32 dh, ss_u32 dw, float lo, float hi) {
    __shared__ __align__(16) ss_u16 As[SS_TC_TM][SS_TC_TK + SS_TC_PAD];
    __shared__ __align__(16) ss_u16 Bs[SS_TC_TN][SS_TC_TK + SS_TC_PAD];
    const ss_u32 Cg = C / groups, Mg = M / groups, g = blockIdx.z;
    const ss_u32 K = KH * KW * Cg;
    const ss_conv_geometry geometry = {H, W, C, OH, OW, KW, Cg, sh, sw, pt, pl, dh, dw};
    const ss_u64 P = (ss_u64)N * OH * OW;
    const ss_u64 p0 = (ss_u64)blockIdx.x * SS_TC_TM;
    const ss_u32 m0 = blockIdx.y * SS_TC_TN;
    const ss_u32 tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const ss_u32 gid = lane / 4, tig = lane % 4;
    const ss_u32 wm0 = (warp % 4) * 32, wn0 = (warp / 4) * 32;
    float acc[2][4][4];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            for (int r = 0; r < 4; r++) acc[i][j][r] = 0.0f;
    const ss_u32x4 zero = {0, 0, 0, 0};

    for (ss_u32 k0 = 0; k0 < K; k0 += SS_TC_TK) {
        // A: 128 rows x 4 pieces of 8 halves; two pieces per thread.
        for (ss_u32 e = tid; e < SS_TC_TM * (SS_TC_TK / 8); e += 256) {
            const ss_u32 row = e / (SS_TC_TK / 8), kc = (e % (SS_TC_TK / 8)) * 8;
            const ss_u32 k = k0 + kc;
            const ss_u64 p = p0 + row;
            const ss_i64 at = (k < K && p < P) ? ss_conv_offset(geometry, g, p, k) : -1;
            *(ss_u32x4 *)&As[row][kc] = at >= 0 ? *(const ss_u32x4 *)(X + at) : zero;
        }
        // B: 64 filters x 4 pieces of 8 halves; one piece per thread.
        {
            const ss_u32 col = tid / (SS_TC_TK / 8), kc = (tid % (SS_TC_TK / 8)) * 8;
            const ss_u32 k = k0 + kc, m = m0 + col;
            ss_u32x4 v = zero;
            if (k < K && m < Mg) v = *(const ss_u32x4 *)(Wt + (ss_u64)(g * Mg + m) * K + k);
            *(ss_u32x4 *)&Bs[col][kc] = v;
        }
        __syncthreads();
#pragma unroll
        for (ss_u32 ks = 0; ks < SS_TC_TK; ks += 16) {
            ss_u32 a[2][4], b[4][2];
            for (int mi = 0; mi < 2; mi++) {
                const ss_u32 r = wm0 + mi * 16 + gid;
                a[mi][0] = *(const ss_u32 *)&As[r][ks + tig * 2];
                a[mi][1] = *(const ss_u32 *)&As[r + 8][ks + tig * 2];
                a[mi][2] = *(const ss_u32 *)&As[r][ks + tig * 2 + 8];
                a[mi][3] = *(const ss_u32 *)&As[r + 8][ks + tig * 2 + 8];
            }
            for (int ni = 0; ni < 4; ni++) {
                const ss_u32 n = wn0 + ni * 8 + gid;
                b[ni][0] = *(const ss_u32 *)&Bs[n][ks + tig * 2];
                b[ni][1] = *(const ss_u32 *)&Bs[n][ks + tig * 2 + 8];
            }
            for (int mi = 0; mi < 2; mi++)
                for (int ni = 0; ni < 4; ni++) {
                    float *d = acc[mi][ni];
                    asm volatile(
                        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                        "{%0,%1,%2,%3};"
                        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                        : "r"(a[mi][0]), "r"(a[mi][1]), "r"(a[mi][2]), "r"(a[mi][3]), "r"(b[ni][0]), "r"(b[ni][1]));
                }
        }
        __syncthreads();
    }
    // Each thread holds two adjacent output channels per row: stored (and the residual loaded)
    // as one 32-bit pair where both channels exist and the pair is 4-byte aligned (the input
    // channels are multiples of 8 here, the output channels need not be), else one at a time.
    for (int mi = 0; mi < 2; mi++)
        for (int ni = 0; ni < 4; ni++)
            for (int half = 0; half < 2; half++) {
                const ss_u64 p = p0 + wm0 + mi * 16 + gid + half * 8;
                const ss_u32 m = m0 + wn0 + ni * 8 + tig * 2;
                if (p >= P || m >= Mg) continue;
                const ss_u64 at = p * M + g * Mg + m;
                const float v0 = acc[mi][ni][half * 2], v1 = acc[mi][ni][half * 2 + 1];
                if (m + 1 < Mg && (at & 1) == 0) {
                    ss_conv_store_pair(Y, bias, R, at, g * Mg + m, v0, v1, lo, hi);
                } else {
                    ss_conv_store(Y, bias, R, at, g * Mg + m, v0, lo, hi);
                    if (m + 1 < Mg) ss_conv_store(Y, bias, R, at + 1, g * Mg + m + 1, v1, lo, hi);
                }
            }
}
