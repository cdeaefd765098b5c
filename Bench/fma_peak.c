// The fp32 multiply-add rate of one core: 12 independent chains of fused multiply-adds, with
// AVX-512 (16 lanes) and AVX2 (8 lanes), the best of five timed passes of 2.4e8 FMAs each.
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

// One function per vector width: GFLOP/s, best of PASSES, and the chains' sum in *checksum (so
// that the compiler keeps the work).
#define FMA_PEAK(name, vec, lanes, set1, fmadd, store)                                             \
    static double name(float *checksum) {                                                          \
        vec a[CHAINS], b = set1(1.0000001f), c = set1(1e-7f);                                      \
        for (int i = 0; i < CHAINS; i++) a[i] = set1((float)i);                                    \
        double best = 0;                                                                           \
        for (int pass = 0; pass < PASSES; pass++) {                                                \
            double start = seconds();                                                              \
            for (long n = 0; n < steps; n++)                                                       \
                _Pragma("GCC unroll 12") for (int i = 0; i < CHAINS; i++) a[i] = fmadd(a[i], b, c); \
            double gflops = steps * (double)CHAINS * lanes * 2 / (seconds() - start) / 1e9;        \
            if (gflops > best) best = gflops;                                                      \
        }                                                                                          \
        for (int i = 0; i < CHAINS; i++) {                                                         \
            float out[lanes];                                                                      \
            store(out, a[i]);                                                                      \
            for (int j = 0; j < lanes; j++) *checksum += out[j];                                   \
        }                                                                                          \
        return best;                                                                               \
    }

FMA_PEAK(avx512, __m512, 16, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps)
FMA_PEAK(avx2, __m256, 8, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps)

int main(void) {
    float checksum = 0;
    double wide = __builtin_cpu_supports("avx512f") ? avx512(&checksum) : 0;
    double narrow = avx2(&checksum);
    printf("{\"avx512_gflops\": %.1f, \"avx2_gflops\": %.1f, \"checksum\": %g}\n", wide, narrow, checksum);
    return 0;
}
