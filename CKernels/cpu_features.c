// CPU feature detection: what the CPU has *and* the OS saves across context switches.
#define _GNU_SOURCE
#include "sliceserve_shim.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t ss_xgetbv(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

uint32_t ss_cpu_features(void) {
    unsigned int eax, ebx, ecx, edx;
    uint32_t features = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    if (ecx & bit_SSE4_1) features |= SS_CPU_SSE41;
    if (ecx & bit_SSE4_2) features |= SS_CPU_SSE42;
    int osxsave = (ecx & bit_OSXSAVE) != 0;
    uint64_t xcr0 = osxsave ? ss_xgetbv() : 0;
    int ymm_enabled = (xcr0 & 0x6) == 0x6;
    int zmm_enabled = (xcr0 & 0xE6) == 0xE6;
    if (ymm_enabled && (ecx & bit_AVX)) features |= SS_CPU_AVX;
    if (ymm_enabled && (ecx & bit_FMA)) features |= SS_CPU_FMA;
    if (ymm_enabled && (ecx & bit_F16C)) features |= SS_CPU_F16C;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
        if (ymm_enabled && (ebx & bit_AVX2)) features |= SS_CPU_AVX2;
        if (zmm_enabled && (ebx & bit_AVX512F)) features |= SS_CPU_AVX512F;
    }
    return features;
}
#elif defined(__aarch64__)
uint32_t ss_cpu_features(void) { return SS_CPU_NEON; }
#else
uint32_t ss_cpu_features(void) { return 0; }
#endif

#if defined(__linux__)
#include <sched.h>
#include <unistd.h>
int ss_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int count = CPU_COUNT(&set);
        if (count > 0) return count;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}
#else
#include <unistd.h>
int ss_cpu_count(void) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}
#endif
