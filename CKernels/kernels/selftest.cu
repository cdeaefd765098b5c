// Kernels for `sliceserve selftest --gpu`: small, with answers the host can compute, covering
// arithmetic, shared memory and barriers, and the device clock.
#include "ss_device.cuh"

/// y[i] = a * x[i] + y[i].
SS_KERNEL void ss_saxpy(float a, const float *__restrict__ x, float *__restrict__ y, ss_u64 count) {
    for (ss_u64 i = ss_thread_index(); i < count; i += ss_grid_threads()) y[i] = a * x[i] + y[i];
}

/// partials[blockIdx.x] = the sum of this block's grid-stride share of x (a fixed order, so the
/// result is the same on every run). Needs blockDim.x == 256.
SS_KERNEL void ss_block_sums(const float *__restrict__ x, float *__restrict__ partials, ss_u64 count) {
    __shared__ float lane_sums[256];
    float sum = 0.0f;
    for (ss_u64 i = ss_thread_index(); i < count; i += ss_grid_threads()) sum += x[i];
    lane_sums[threadIdx.x] = sum;
    __syncthreads();
    for (unsigned stride = 128; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) lane_sums[threadIdx.x] += lane_sums[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = lane_sums[0];
}

/// Busy-waits `nanoseconds` on the device clock; thread 0 of block 0 writes the time it saw.
SS_KERNEL void ss_spin(ss_u64 nanoseconds, ss_u64 *observed) {
    const ss_u64 start = ss_global_timer_ns();
    ss_u64 now = start;
    while (now - start < nanoseconds) now = ss_global_timer_ns();
    if (threadIdx.x == 0 && blockIdx.x == 0) *observed = now - start;
}

/// Does nothing: for launch-latency measurements.
SS_KERNEL void ss_empty(void) {}
