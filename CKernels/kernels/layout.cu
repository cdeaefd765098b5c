// Layout and precision conversion of model inputs: the CPU preprocessing path produces float32
// NCHW, the GPU models take half-precision NHWC.
#include "ss_device.cuh"

/// dst[n][y][x][c] (half) = src[n][c][y][x] (float), for `images` images of `channels` x `pixels`.
/// One thread per output element: writes are coalesced, reads stride by `pixels` across channels.
SS_KERNEL void ss_nchw_f32_to_nhwc_f16(const float *__restrict__ src, ss_u16 *__restrict__ dst,
                                       ss_u32 images, ss_u32 channels, ss_u32 pixels) {
    const ss_u64 total = (ss_u64)images * channels * pixels;
    for (ss_u64 i = ss_thread_index(); i < total; i += ss_grid_threads()) {
        const ss_u32 c = (ss_u32)(i % channels);
        const ss_u64 rest = i / channels;
        const ss_u32 p = (ss_u32)(rest % pixels);
        const ss_u64 n = rest / pixels;
        dst[i] = ss_f32_to_f16(src[(n * channels + c) * pixels + p]);
    }
}

/// dst[i] (float) = src[i] (half).
SS_KERNEL void ss_f16_to_f32(const ss_u16 *__restrict__ src, float *__restrict__ dst, ss_u64 count) {
    for (ss_u64 i = ss_thread_index(); i < count; i += ss_grid_threads()) dst[i] = ss_f16_to_f32(src[i]);
}
