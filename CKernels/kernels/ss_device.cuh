// ss_device.cuh: helpers shared by SliceServe's CUDA kernels.
//
// Kernels are compiled at run time by NVRTC, which ships no CUDA toolkit headers, so nothing here
// includes one: half precision goes through PTX `cvt`, fixed-width types are spelled out.
#pragma once

typedef unsigned char ss_u8;
typedef unsigned short ss_u16;
typedef unsigned int ss_u32;
typedef unsigned long long ss_u64;

#define SS_KERNEL extern "C" __global__

/// float → IEEE half bits, round to nearest even (what torch's .half() does).
static __device__ __forceinline__ ss_u16 ss_f32_to_f16(float value) {
    ss_u16 bits;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(value));
    return bits;
}

/// IEEE half bits → float (exact).
static __device__ __forceinline__ float ss_f16_to_f32(ss_u16 bits) {
    float value;
    asm("cvt.f32.f16 %0, %1;" : "=f"(value) : "h"(bits));
    return value;
}

/// The GPU's nanosecond timer (%globaltimer).
static __device__ __forceinline__ ss_u64 ss_global_timer_ns() {
    ss_u64 now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    return now;
}

/// This thread's index in a 1-D grid, and the grid's thread count (for grid-stride loops).
static __device__ __forceinline__ ss_u64 ss_thread_index() {
    return (ss_u64)blockIdx.x * blockDim.x + threadIdx.x;
}
static __device__ __forceinline__ ss_u64 ss_grid_threads() {
    return (ss_u64)gridDim.x * blockDim.x;
}
