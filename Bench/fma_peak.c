// The fp32 multiply-add rate of one core: 12 independent chains of fused multiply-adds, with
// AVX-512 (16 lanes) and AVX2 (8 lanes), the best of five timed passes of 2.4e9 FMAs each.
// Bench/cpu_bound.py builds and runs it; it prints one JSON line.
// Build by hand: cc -O2 -mavx512f -mfma Bench/fma_peak.c -o fma_peak
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

enum { CHAINS = 12, PASSES = 5 };
static const long steps = 20000000;

static double avx512(float *checksum) {
    __m512 a[CHAINS], b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++) a[i] = _mm512_set1_ps((float)i);
    double best = 0;
    for (int pass = 0; pass < PASSES; pass++) {
        double start = seconds();
        for (long n = 0; n < steps; n++)
#pragma GCC unroll 12
            for (int i = 0; i < CHAINS; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
        double gflops = steps * (double)CHAINS * 16 * 2 / (seconds() - start) / 1e9;
        if (gflops > best) best = gflops;
    }
    for (int i = 0; i < CHAINS; i++) *checksum += _mm512_reduce_add_ps(a[i]);
    return best;
}

static double avx2(float *checksum) {
    __m256 a[CHAINS], b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++) a[i] = _mm256_set1_ps((float)i);
    double best = 0;
    for (int pass = 0; pass < PASSES; pass++) {
        double start = seconds();
        for (long n = 0; n < steps; n++)
#pragma GCC unroll 12
            for (int i = 0; i < CHAINS; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
        double gflops = steps * (double)CHAINS * 8 * 2 / (seconds() - start) / 1e9;
        if (gflops > best) best = gflops;
    }
    for (int i = 0; i < CHAINS; i++) {
        float lanes[8];
        _mm256_storeu_ps(lanes, a[i]);
        for (int j = 0; j < 8; j++) *checksum += lanes[j];
    }
    return best;
}

int main(void) {
    float checksum = 0;
    double wide = __builtin_cpu_supports("avx512f") ? avx512(&checksum) : 0;
    double narrow = avx2(&checksum);
    printf("{\"avx512_gflops\": %.1f, \"avx2_gflops\": %.1f, \"checksum\": %g}\n", wide, narrow, checksum);
    return 0;
}
