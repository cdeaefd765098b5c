// JPEG preprocessing on the GPU, after decoding: decoded RGB → Pillow's antialiased bilinear
// resize → center crop → normalize → the model input's layout and type, in one kernel, written
// straight into the model's input batch. The arithmetic is Pillow's 8-bit fixed point exactly
// (the CPU path's ResampleAxis/Resampler): the host computes each image's filter taps for the
// crop's columns and rows, the kernel runs the horizontal pass (rounded to 8 bits, as Pillow
// stores its intermediate image) for every vertical tap, then the vertical pass, then looks the
// byte up in the normalization table. Given the same decoded pixels, the output equals the CPU
// path's bit for bit.
#include "ss_device.cuh"

/// One image's job: SS_JOB_FIELDS 64-bit integers.
enum {
    SS_JOB_SRC = 0,       // device address of the decoded pixels
    SS_JOB_PITCH,         // bytes from one decoded row to the next
    SS_JOB_BPP,           // bytes per decoded pixel: 3 (RGB) or 4 (RGBX)
    SS_JOB_SRC_WIDTH,
    SS_JOB_SRC_HEIGHT,
    SS_JOB_SLOT,          // destination slot
    SS_JOB_NEEDS_H,       // 1 when the horizontal pass runs (else columns are copied)
    SS_JOB_NEEDS_V,
    SS_JOB_H_TABLE,       // index in `tables` of the first valid column's taps
    SS_JOB_H_KSIZE,
    SS_JOB_V_TABLE,
    SS_JOB_V_KSIZE,
    SS_JOB_COL_LO,        // crop columns [lo, hi) that lie inside the resized image
    SS_JOB_COL_HI,
    SS_JOB_ROW_LO,
    SS_JOB_ROW_HI,
    SS_JOB_COL0,          // the resized column of crop column 0 (used when no horizontal pass)
    SS_JOB_ROW0,
    SS_JOB_FIELDS = 20,
};

#define SS_PRECISION_BITS 22

/// Grid (ceil(crop_w / blockDim.x), ceil(crop_h / blockDim.y), images); one thread per output
/// pixel. `tables` holds, per valid crop column (then row), [first input index, tap count,
/// ksize weights]. `lut` is 3 × 256 floats (channel-major). layout: 0 NCHW, 1 NHWC;
/// dtype: 0 float32, 1 float16, 2 uint8 (raw resized bytes).
SS_KERNEL void ss_resize_crop_normalize(const long long *__restrict__ jobs, const int *__restrict__ tables,
                                        ss_u32 table_count, const float *__restrict__ lut, void *__restrict__ out,
                                        ss_u32 crop_w, ss_u32 crop_h, ss_u32 layout, ss_u32 dtype) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    const int r = blockIdx.y * blockDim.y + threadIdx.y;
    if (c >= (int)crop_w || r >= (int)crop_h) return;
    const long long *job = jobs + (ss_u64)blockIdx.z * SS_JOB_FIELDS;
    int rgb[3] = {0, 0, 0};  // padding outside the resized image is black, as torchvision pads
    const bool inside = c >= job[SS_JOB_COL_LO] && c < job[SS_JOB_COL_HI] && r >= job[SS_JOB_ROW_LO] &&
                        r < job[SS_JOB_ROW_HI];
    if (inside) {
        const ss_u8 *src = (const ss_u8 *)job[SS_JOB_SRC];
        const ss_u64 pitch = (ss_u64)job[SS_JOB_PITCH];
        const int bpp = (int)job[SS_JOB_BPP];
        const bool needs_h = job[SS_JOB_NEEDS_H] != 0, needs_v = job[SS_JOB_NEEDS_V] != 0;
        const int hk = (int)job[SS_JOB_H_KSIZE], vk = (int)job[SS_JOB_V_KSIZE];
        const int *h = needs_h ? tables + job[SS_JOB_H_TABLE] + (ss_u64)(c - job[SS_JOB_COL_LO]) * (2 + hk) : 0;
        const int *v = needs_v ? tables + job[SS_JOB_V_TABLE] + (ss_u64)(r - job[SS_JOB_ROW_LO]) * (2 + vk) : 0;
        const int hstart = needs_h ? h[0] : (int)(job[SS_JOB_COL0] + c);
        const int hcount = needs_h ? h[1] : 1;
        const int vstart = needs_v ? v[0] : (int)(job[SS_JOB_ROW0] + r);
        const int vcount = needs_v ? v[1] : 1;
        const int bias = 1 << (SS_PRECISION_BITS - 1);
        int acc0 = bias, acc1 = bias, acc2 = bias;
        for (int t = 0; t < vcount; t++) {
            const ss_u8 *row = src + (ss_u64)(vstart + t) * pitch;
            int p0, p1, p2;
            if (needs_h) {
                int h0 = bias, h1 = bias, h2 = bias;
                const ss_u8 *p = row + (ss_u64)hstart * bpp;
                for (int k = 0; k < hcount; k++, p += bpp) {
                    const int w = h[2 + k];
                    h0 += p[0] * w;
                    h1 += p[1] * w;
                    h2 += p[2] * w;
                }
                p0 = h0 >> SS_PRECISION_BITS;
                p1 = h1 >> SS_PRECISION_BITS;
                p2 = h2 >> SS_PRECISION_BITS;
            } else {
                const ss_u8 *p = row + (ss_u64)hstart * bpp;
                p0 = p[0];
                p1 = p[1];
                p2 = p[2];
            }
            if (needs_v) {
                const int w = v[2 + t];
                acc0 += p0 * w;
                acc1 += p1 * w;
                acc2 += p2 * w;
            } else {
                rgb[0] = p0;
                rgb[1] = p1;
                rgb[2] = p2;
            }
        }
        if (needs_v) {
            rgb[0] = acc0 >> SS_PRECISION_BITS;
            rgb[1] = acc1 >> SS_PRECISION_BITS;
            rgb[2] = acc2 >> SS_PRECISION_BITS;
        }
    }
    const ss_u64 plane = (ss_u64)crop_w * crop_h;
    const ss_u64 base = (ss_u64)job[SS_JOB_SLOT] * 3 * plane;
    for (int ch = 0; ch < 3; ch++) {
        const ss_u64 index = layout == 0 ? base + ch * plane + (ss_u64)r * crop_w + c
                                         : base + ((ss_u64)r * crop_w + c) * 3 + ch;
        if (dtype == 0) {
            ((float *)out)[index] = lut[ch * 256 + rgb[ch]];
        } else if (dtype == 1) {
            ((ss_u16 *)out)[index] = ss_f32_to_f16(lut[ch * 256 + rgb[ch]]);
        } else {
            ((ss_u8 *)out)[index] = (ss_u8)rgb[ch];
        }
    }
    (void)table_count;
}
