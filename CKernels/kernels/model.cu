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
// the implicit GEMM's operands loads in 16-byte pieces (a 3-channel first layer is padded to 8 by
// ss_pad_channels_f16). 128 threads (2 x 2 warps) compute a BM x BN tile of pixels x output
// channels, 32 of the reduction at a time, through a STAGES-deep cp.async pipeline:
// - each thread loads the same 16-byte column of its rows at every step, so the pixel of each
//   row (image offset and window origin) is computed once, and the reduction position (ky, kx,
//   c) advances by additions, with no division in the loop;
// - shared tiles hold 64-byte rows of four 16-byte chunks, the chunk index XORed with bits 1-2 of
//   the row, so that the eight rows an ldmatrix phase reads fall in eight distinct bank groups
//   without padding (three 128 x 128 stages fit the 48 KiB of static shared memory);
// - fragments come from ldmatrix.x4, four 8 x 8 matrices per instruction;
// - the epilogue stages each warp column's accumulators in shared memory as float, then adds
//   bias and residual and stores 8 channels (16 bytes) per thread where the row allows it;
// - with `splits` > 1 (layers whose grid would not fill the card: batch 1, late layers),
//   blockIdx.z also picks a slice of the reduction, and the block writes float partial sums to
//   `partial` ([splits][pixels][M]), summed with the epilogue by ss_conv_splitk_f16.
// X: NHWC [N][H][W][C]; Wt: [M][KH][KW][C/groups]; Y and R: NHWC [N][OH][OW][M]; bias: float[M]
// or 0; R: a residual added before the clamp, or 0. blockIdx.x = pixel tile * filter tiles +
// filter tile; blockIdx.z = group * splits + split.

/// Eight halves, 16-byte aligned: one 128-bit load or store (a 4-byte aligned struct compiles to
/// four 32-bit accesses).
struct __align__(16) ss_u32x4 { ss_u32 x, y, z, w; };

/// Byte offset of 16-byte chunk `chunk` (0-3) of row `row` in a tile of 64-byte rows, swizzled.
static __device__ __forceinline__ ss_u32 ss_tc_swizzle(ss_u32 row, ss_u32 chunk) {
    return row * 64 + ((chunk ^ ((row >> 1) & 3)) << 4);
}

/// cp.async of 16 bytes; `bytes` of them read from `source` (0 or 16), the rest zero.
static __device__ __forceinline__ void ss_cp_async16(ss_u32 destination, const void *source, ss_u32 bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(destination), "l"(source), "r"(bytes) : "memory");
}

static __device__ __forceinline__ void ss_ldmatrix_x4(ss_u32 *d, ss_u32 address) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(address)
                 : "memory");
}

static __device__ __forceinline__ void ss_mma_16816(float *d, const ss_u32 *a, const ss_u32 *b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

#define SS_CONV_TC_PARAMS                                                                                               \
    const ss_u16 *__restrict__ X, const ss_u16 *__restrict__ Wt, const float *__restrict__ bias,                        \
        const ss_u16 *__restrict__ R, ss_u16 *__restrict__ Y, float *__restrict__ partial, ss_u32 N, ss_u32 H,           \
        ss_u32 W, ss_u32 C, ss_u32 OH, ss_u32 OW, ss_u32 M, ss_u32 KH, ss_u32 KW, ss_u32 groups, ss_u32 splits,          \
        ss_u32 sh, ss_u32 sw, ss_u32 pt, ss_u32 pl, ss_u32 dh, ss_u32 dw, float lo, float hi
#define SS_CONV_TC_ARGS X, Wt, bias, R, Y, partial, N, H, W, C, OH, OW, M, KH, KW, groups, splits, sh, sw, pt, pl, dh, dw, lo, hi

template <int BM, int BN, int STAGES>
static __device__ __forceinline__ void ss_conv_tc(ss_u8 *smem, SS_CONV_TC_PARAMS) {
    constexpr int WM = BM / 2, WN = BN / 2, MI = WM / 16, NI = WN / 8;
    constexpr int A_BYTES = BM * 64, STAGE_BYTES = (BM + BN) * 64;
    constexpr int AR = BM / 32, BR = BN / 32;  // rows of A and B each thread loads per step
    constexpr int SW = WN + 4;                 // floats per row of the epilogue's staging
    static_assert(BM * SW * 4 <= STAGES * STAGE_BYTES, "the epilogue's staging fits the pipeline's memory");
    const ss_u32 Cg = C / groups, Mg = M / groups;
    const ss_u32 g = blockIdx.z / splits, split = blockIdx.z % splits;
    const ss_u32 K = KH * KW * Cg;
    // Split s takes steps [s * steps / splits, (s + 1) * steps / splits): balanced, and never
    // empty while splits <= steps (the host's rule).
    const ss_u32 steps = (K + 31) / 32;
    const ss_u32 first = (ss_u32)((ss_u64)split * steps / splits);
    const ss_u32 count = (ss_u32)((ss_u64)(split + 1) * steps / splits) - first;
    const ss_u64 P = (ss_u64)N * OH * OW;
    // blockIdx.x walks the filter tiles of one pixel tile before the next pixel tile: blocks
    // resident together read the same activations (once from memory, then from L2) and all of
    // the (smaller) filters.
    const ss_u32 filterTiles = (Mg + BN - 1) / BN;
    const ss_u64 p0 = (ss_u64)(blockIdx.x / filterTiles) * BM;
    const ss_u32 m0 = (blockIdx.x % filterTiles) * BN;
    const ss_u32 tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const ss_u32 wm0 = (warp % 2) * WM, wn0 = (warp / 2) * WN;
    const ss_u32 base = (ss_u32)__cvta_generic_to_shared(smem);

    // The loader: this thread's 16-byte column `kc` of rows lrow + 32 i. Each row's window
    // origin (aY, aX) and the element offset of that origin (aBase, negative where the origin
    // lies in the padding) are computed once; a step adds the tap's offset.
    const ss_u32 kc = tid % 4, lrow = tid / 4;
    ss_i64 aBase[AR];
    int aY[AR], aX[AR];
#pragma unroll
    for (int i = 0; i < AR; i++) {
        const ss_u64 p = p0 + lrow + 32 * i;
        aBase[i] = 0;
        aY[i] = -(1 << 30);  // a row past the last pixel: every window position is padding
        aX[i] = 0;
        if (p < P) {
            const ss_u32 ox = (ss_u32)(p % OW);
            const ss_u64 q = p / OW;
            const ss_u32 oy = (ss_u32)(q % OH);
            aY[i] = (int)(oy * sh) - (int)pt;
            aX[i] = (int)(ox * sw) - (int)pl;
            aBase[i] = (ss_i64)((q / OH) * H * W * C + g * Cg) + ((ss_i64)aY[i] * W + aX[i]) * (ss_i64)C;
        }
    }
    const ss_u16 *bRow[BR];
    bool bValid[BR];
#pragma unroll
    for (int j = 0; j < BR; j++) {
        const ss_u32 m = m0 + lrow + 32 * j;
        bValid[j] = m < Mg;
        bRow[j] = Wt + (ss_u64)(g * Mg + (bValid[j] ? m : 0)) * K;
    }
    // The reduction position this thread loads next: k = ((ky * KW) + kx) * Cg + c; k >= K
    // exactly when ky >= KH.
    ss_u32 k = first * 32 + kc * 8;
    ss_u32 c = k % Cg, kx = (k / Cg) % KW, ky = k / Cg / KW;
    auto load = [&](ss_u32 stage) {
        const ss_u32 sa = base + stage * STAGE_BYTES, sb = sa + A_BYTES;
        const bool inK = ky < KH;
        const int tapY = (int)(ky * dh), tapX = (int)(kx * dw);
        const ss_i64 tap = ((ss_i64)tapY * W + tapX) * (ss_i64)C + c;
#pragma unroll
        for (int i = 0; i < AR; i++) {
            // One unsigned compare per axis: a negative coordinate wraps past H (or W).
            const bool ok = inK && (ss_u32)(aY[i] + tapY) < H && (ss_u32)(aX[i] + tapX) < W;
            const ss_u16 *source = ok ? X + (aBase[i] + tap) : X;
            ss_cp_async16(sa + ss_tc_swizzle(lrow + 32 * i, kc), source, ok ? 16 : 0);
        }
#pragma unroll
        for (int j = 0; j < BR; j++) {
            const bool ok = inK && bValid[j];
            ss_cp_async16(sb + ss_tc_swizzle(lrow + 32 * j, kc), ok ? bRow[j] + k : Wt, ok ? 16 : 0);
        }
        k += 32;
        c += 32;
        while (c >= Cg) {
            c -= Cg;
            if (++kx == KW) {
                kx = 0;
                ++ky;
            }
        }
    };

    float acc[MI][NI][4];
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NI; j++)
#pragma unroll
            for (int r = 0; r < 4; r++) acc[i][j][r] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if ((ss_u32)s < count) load(s);
        asm volatile("cp.async.commit_group;" ::: "memory");
    }
    for (ss_u32 step = 0; step < count; step++) {
        // Step `step`'s group has landed (at most STAGES - 2 newer ones pending), and every warp
        // is done with the stage the next load overwrites (it held step - 1).
        asm volatile("cp.async.wait_group %0;" ::"n"(STAGES - 2) : "memory");
        __syncthreads();
        if (step + STAGES - 1 < count) load((step + STAGES - 1) % STAGES);
        asm volatile("cp.async.commit_group;" ::: "memory");
        const ss_u32 sa = base + (step % STAGES) * STAGE_BYTES, sb = sa + A_BYTES;
#pragma unroll
        for (int ks = 0; ks < 2; ks++) {
            ss_u32 a[MI][4], b[NI][2];
#pragma unroll
            for (int mi = 0; mi < MI; mi++) {
                // Matrices: rows 0-7 and 8-15 at chunk 2 ks, then both at chunk 2 ks + 1: a0..a3.
                ss_ldmatrix_x4(a[mi], sa + ss_tc_swizzle(wm0 + mi * 16 + lane % 16, ks * 2 + lane / 16));
            }
#pragma unroll
            for (int nj = 0; nj < NI; nj += 2) {
                // Matrices: filters nj (chunks 2 ks, 2 ks + 1), then filters nj + 1: b0, b1 of each.
                ss_u32 r[4];
                ss_ldmatrix_x4(r, sb + ss_tc_swizzle(wn0 + nj * 8 + lane % 8 + (lane / 16) * 8, ks * 2 + (lane / 8) % 2));
                b[nj][0] = r[0];
                b[nj][1] = r[1];
                b[nj + 1][0] = r[2];
                b[nj + 1][1] = r[3];
            }
#pragma unroll
            for (int mi = 0; mi < MI; mi++)
#pragma unroll
                for (int ni = 0; ni < NI; ni++) ss_mma_16816(acc[mi][ni], a[mi], b[ni]);
        }
    }
    asm volatile("cp.async.wait_group 0;" ::: "memory");
    __syncthreads();

    const ss_u32 gid = lane / 4, tig = lane % 4;
    if (splits > 1) {
        // Partial sums of this slice of the reduction, for ss_conv_splitk_f16.
        float *out = partial + (ss_u64)split * P * M;
#pragma unroll
        for (int mi = 0; mi < MI; mi++)
#pragma unroll
            for (int ni = 0; ni < NI; ni++)
#pragma unroll
                for (int half = 0; half < 2; half++) {
                    const ss_u64 p = p0 + wm0 + mi * 16 + gid + half * 8;
                    const ss_u32 m = m0 + wn0 + ni * 8 + tig * 2;
                    if (p >= P || m >= Mg) continue;
                    const ss_u64 at = p * M + g * Mg + m;
                    out[at] = acc[mi][ni][half * 2];
                    if (m + 1 < Mg) out[at + 1] = acc[mi][ni][half * 2 + 1];
                }
        return;
    }
    // One warp column at a time: its accumulators to shared memory as float, then each thread
    // takes 8 consecutive channels of a row (consecutive threads, consecutive pieces of a row).
    float *staged = (float *)smem;
#pragma unroll
    for (int pass = 0; pass < 2; pass++) {
        if (warp / 2 == (ss_u32)pass) {
#pragma unroll
            for (int mi = 0; mi < MI; mi++)
#pragma unroll
                for (int ni = 0; ni < NI; ni++)
#pragma unroll
                    for (int half = 0; half < 2; half++) {
                        float *to = staged + (wm0 + mi * 16 + gid + half * 8) * SW + ni * 8 + tig * 2;
                        to[0] = acc[mi][ni][half * 2];
                        to[1] = acc[mi][ni][half * 2 + 1];
                    }
        }
        __syncthreads();
        // A thread's 8 channels are the same in every row it takes (128 is a multiple of WN / 8):
        // their bias is read once a pass.
        float bias8[8];
        {
            const ss_u32 m = m0 + pass * WN + (tid % (WN / 8)) * 8;
#pragma unroll
            for (int q = 0; q < 8; q++) bias8[q] = bias && m + q < Mg ? bias[g * Mg + m + q] : 0.0f;
        }
        for (ss_u32 e = tid; e < BM * (WN / 8); e += 128) {
            const ss_u32 row = e / (WN / 8), col = (e % (WN / 8)) * 8;
            const ss_u64 p = p0 + row;
            const ss_u32 m = m0 + pass * WN + col;
            if (p >= P || m >= Mg) continue;
            const ss_u64 at = p * M + g * Mg + m;
            const ss_u32 channel = g * Mg + m;
            const float *v = staged + row * SW + col;
            if (m + 8 <= Mg && (at & 7) == 0) {
                ss_u32x4 residual = {0, 0, 0, 0};
                if (R) residual = *(const ss_u32x4 *)(R + at);
                const ss_u32 rw[4] = {residual.x, residual.y, residual.z, residual.w};
                ss_u32 packed[4];
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    float v0 = v[2 * q] + bias8[2 * q], v1 = v[2 * q + 1] + bias8[2 * q + 1];
                    if (R) {
                        v0 += ss_f16_to_f32((ss_u16)(rw[q] & 0xffffu));
                        v1 += ss_f16_to_f32((ss_u16)(rw[q] >> 16));
                    }
                    packed[q] = (ss_u32)ss_f32_to_f16(fminf(fmaxf(v0, lo), hi)) |
                                ((ss_u32)ss_f32_to_f16(fminf(fmaxf(v1, lo), hi)) << 16);
                }
                const ss_u32x4 out = {packed[0], packed[1], packed[2], packed[3]};
                *(ss_u32x4 *)(Y + at) = out;
            } else {
                for (ss_u32 q = 0; q < 8 && m + q < Mg; q++) ss_conv_store(Y, bias, R, at + q, channel + q, v[q], lo, hi);
            }
        }
        __syncthreads();
    }
}

/// The tile shapes (pixels x output channels) and pipeline depths of the tensor-core
/// convolution; every one fits 48 KiB of static shared memory. ConvTile on the host.
SS_KERNEL void ss_conv_tc_128x128_f16(SS_CONV_TC_PARAMS) {
    __shared__ __align__(128) ss_u8 smem[3 * (128 + 128) * 64];
    ss_conv_tc<128, 128, 3>(smem, SS_CONV_TC_ARGS);
}

SS_KERNEL void ss_conv_tc_128x64_f16(SS_CONV_TC_PARAMS) {
    __shared__ __align__(128) ss_u8 smem[4 * (128 + 64) * 64];
    ss_conv_tc<128, 64, 4>(smem, SS_CONV_TC_ARGS);
}

SS_KERNEL void ss_conv_tc_64x128_f16(SS_CONV_TC_PARAMS) {
    __shared__ __align__(128) ss_u8 smem[4 * (64 + 128) * 64];
    ss_conv_tc<64, 128, 4>(smem, SS_CONV_TC_ARGS);
}

SS_KERNEL void ss_conv_tc_64x64_f16(SS_CONV_TC_PARAMS) {
    __shared__ __align__(128) ss_u8 smem[4 * (64 + 64) * 64];
    ss_conv_tc<64, 64, 4>(smem, SS_CONV_TC_ARGS);
}

/// The split-K epilogue: Y[i] = clamp(sum over splits of partial[s][i] + bias + R[i], lo, hi) for
/// the `count` = pixels x M values of an NHWC output, summed in split order (deterministic).
SS_KERNEL void ss_conv_splitk_f16(const float *__restrict__ partial, ss_u32 splits, const float *__restrict__ bias,
                                  const ss_u16 *__restrict__ R, ss_u16 *__restrict__ Y, ss_u64 count, ss_u32 M,
                                  float lo, float hi) {
    for (ss_u64 i = ss_thread_index(); i < count; i += ss_grid_threads()) {
        float v = 0.0f;
        for (ss_u32 s = 0; s < splits; s++) v += partial[(ss_u64)s * count + i];
        ss_conv_store(Y, bias, R, i, (ss_u32)(i % M), v, lo, hi);
    }
}

/// Y[p][c] = X[p][c] for c < C, 0 up to Cp: an NHWC tensor's channels padded (a 3-channel image
/// to 8, so that its convolution runs on tensor cores).
SS_KERNEL void ss_pad_channels_f16(const ss_u16 *__restrict__ X, ss_u16 *__restrict__ Y, ss_u64 pixels, ss_u32 C,
                                   ss_u32 Cp) {
    const ss_u64 total = pixels * Cp;
    for (ss_u64 i = ss_thread_index(); i < total; i += ss_grid_threads()) {
        const ss_u32 c = (ss_u32)(i % Cp);
        Y[i] = c < C ? X[(i / Cp) * C + c] : (ss_u16)0;
    }
}
