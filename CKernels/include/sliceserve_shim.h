// sliceserve_shim.h: the flat C API that SliceServe's Swift code calls.
//
// Everything here is prefixed `ss_`, uses only C99 types and opaque handles, and never exposes a
// third-party header to Swift. Status codes are `ss_status` values; messages are read back with
// the matching `*_error_message` call.
#ifndef SLICESERVE_SHIM_H
#define SLICESERVE_SHIM_H

#include <stddef.h>
#include <stdint.h>

// The run-time CUDA loader and the embedded kernel sources (included here so that one header is
// the whole API, and a change to it invalidates clang's cached module).
#include "sliceserve_cuda.h"
#include "sliceserve_preprocess.h"
#include "sliceserve_emulator.h"
#include "sliceserve_dnnl.h"

#ifdef __cplusplus
extern "C" {
#endif

/// Status codes returned by every `ss_` call that can fail.
typedef enum ss_status {
    SS_OK = 0,
    /// libjpeg reported a warning (e.g. "Premature end of JPEG file"); with stop-on-warning the
    /// image is rejected rather than decoded with a grey tail.
    SS_JPEG_WARNING = 1,
    /// libjpeg reported a fatal error (corrupt data, unsupported feature, bad arguments).
    SS_JPEG_FATAL = 2,
    /// The decoder handle could not be created (out of memory).
    SS_NO_MEMORY = 3,
} ss_status;

// ---------------------------------------------------------------------------------------------
// JPEG decoding (libjpeg-turbo's TurboJPEG API, linked at build time)
// ---------------------------------------------------------------------------------------------

/// One decoder. Not thread-safe: each worker thread owns one.
typedef struct ss_jpeg_decoder ss_jpeg_decoder;

/// JPEG colour spaces as TurboJPEG reports them (values of TJCS_*).
typedef enum ss_jpeg_colorspace {
    SS_JPEG_CS_RGB = 0,
    SS_JPEG_CS_YCBCR = 1,
    SS_JPEG_CS_GRAY = 2,
    SS_JPEG_CS_CMYK = 3,
    SS_JPEG_CS_YCCK = 4,
} ss_jpeg_colorspace;

/// Output pixel formats the shim decodes to.
typedef enum ss_pixel_format {
    /// 4 bytes per pixel: R, G, B, padding. Grayscale and YCbCr/RGB JPEGs decode to this.
    SS_PIXEL_RGBX = 0,
    /// 4 bytes per pixel, C, M, Y, K as stored (Adobe-inverted). CMYK and YCCK JPEGs need this.
    SS_PIXEL_CMYK = 1,
} ss_pixel_format;

typedef struct ss_jpeg_header {
    int width;
    int height;
    /// TJSAMP_* value; -1 when TurboJPEG cannot classify the subsampling.
    int subsampling;
    /// ss_jpeg_colorspace value.
    int colorspace;
} ss_jpeg_header;

/// Creates a decoder (tjInitDecompress). Returns NULL when out of memory.
ss_jpeg_decoder *ss_jpeg_decoder_create(void);
/// Destroys a decoder (tjDestroy). NULL is ignored.
void ss_jpeg_decoder_destroy(ss_jpeg_decoder *decoder);

/// Reads the JPEG header (tjDecompressHeader3) without decoding pixels.
ss_status ss_jpeg_read_header(ss_jpeg_decoder *decoder, const uint8_t *data, size_t size,
                              ss_jpeg_header *header);

/// Decodes the image (tjDecompress2) scaled by `scale_num / scale_denom` (a scaling factor
/// TurboJPEG supports, e.g. 1/2) into `dst`, `pitch` bytes per row. The output size is
/// `ss_jpeg_scaled(width, ...)` by `ss_jpeg_scaled(height, ...)`. Uses the accurate integer
/// IDCT and fancy upsampling (the same as Pillow), stops on libjpeg warnings, and limits
/// progressive scans (TJFLAG_LIMITSCANS) so that a hostile file cannot take unbounded time.
ss_status ss_jpeg_decode(ss_jpeg_decoder *decoder, const uint8_t *data, size_t size,
                         uint8_t *dst, int scaled_width, int pitch, int scaled_height,
                         ss_pixel_format format);

/// The message of the last failed call on this decoder (from tjGetErrorStr2). Never NULL.
const char *ss_jpeg_error_message(ss_jpeg_decoder *decoder);

/// TJSCALED: a dimension after DCT scaling by num/denom (rounded up).
int ss_jpeg_scaled(int dimension, int scale_num, int scale_denom);

/// The libjpeg-turbo version this binary was built against, e.g. "2.1.5".
const char *ss_jpeg_library_version(void);
/// The path of the shared object TurboJPEG was loaded from, or "statically linked".
const char *ss_jpeg_library_path(void);

// ---------------------------------------------------------------------------------------------
// CPU features
// ---------------------------------------------------------------------------------------------

enum {
    SS_CPU_SSE41 = 1u << 0,
    SS_CPU_SSE42 = 1u << 1,
    SS_CPU_AVX = 1u << 2,
    SS_CPU_AVX2 = 1u << 3,
    SS_CPU_FMA = 1u << 4,
    SS_CPU_F16C = 1u << 5,
    SS_CPU_AVX512F = 1u << 6,
    SS_CPU_NEON = 1u << 7,
};

/// SIMD features of this CPU that the OS has enabled (CPUID + XGETBV on x86).
uint32_t ss_cpu_features(void);

/// CPUs this process may run on (sched_getaffinity, so `taskset` and cpusets are respected);
/// falls back to the online CPU count.
int ss_cpu_count(void);

/// A memfd of `bytes` (shared memory outside /dev/shm): the fd, or -errno.
int ss_memfd_create(const char *name, unsigned long long bytes);
/// Maps a shared-memory fd read-write (MAP_SHARED); NULL on failure.
void *ss_map_shared(int fd, unsigned long long bytes);
void ss_unmap_shared(void *address, unsigned long long bytes);

/// A new private directory (mode 0700) from a mkdtemp template ending in XXXXXX, rewritten in
/// place: 0, or -errno.
int ss_private_directory(char *template_path);
/// Connects a Unix stream socket to `path` (close-on-exec): the fd, or -errno.
int ss_unix_connect(const char *path);
/// The process and user at the other end of a connected Unix socket (SO_PEERCRED): 0, or -errno.
int ss_peer_credentials(int fd, int32_t *pid, uint32_t *uid);

// ---------------------------------------------------------------------------------------------
// CPU model kernels (float32, row-major). Each is compiled for AVX2+FMA and for baseline x86-64;
// the loader picks one at run time.
// ---------------------------------------------------------------------------------------------

/// C[M x N] = clamp(A[M x K] * B[K x N] + bias[m] + residual[m, n], lo, hi). `bias` and
/// `residual` may be NULL; lda/ldb/ldc/ldr are row strides in elements.
void ss_sgemm(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc,
              const float *bias, const float *residual, int ldr, float lo, float hi);

/// Floats needed to hold A [M x K] packed for `ss_sgemm_prepacked`.
long ss_sgemm_packed_size(int M, int K);
/// Packs A [M x K] (row stride lda) into the SGEMM's panel layout, once (e.g. a layer's weights).
void ss_sgemm_pack_a(int M, int K, const float *A, int lda, float *packed);
/// Rows per packed panel: a `ss_sgemm_prepacked` call must start at a multiple of this.
int ss_sgemm_tile_rows(void);
/// As `ss_sgemm`, with A already packed by `ss_sgemm_pack_a` for all `total_tiles` panels of the
/// full matrix; this call computes the M rows starting at panel `first_tile`. `A` (unpacked,
/// the same rows) is still needed for very small M, which takes a matrix-vector path.
void ss_sgemm_prepacked(int M, int N, int K, const float *A, int lda, const float *packedA, int first_tile, int total_tiles,
                        const float *B, int ldb, float *C, int ldc,
                        const float *bias, const float *residual, int ldr, float lo, float hi);

/// The SGEMM code path in use: 2 = AVX-512, 1 = AVX2 + FMA, 0 = baseline x86-64 (chosen from
/// the CPU on first use).
int ss_sgemm_level(void);
/// Forces an SGEMM code path (for tests that check each one); a level the CPU lacks, or -1,
/// selects the best available. Returns the level now in use.
int ss_sgemm_set_level(int level);

/// Depthwise 2-D convolution of `channels` planes (NCHW, one image), one filter per channel
/// (weights [channels, kernel_h, kernel_w]), with bias and clamp fused.
void ss_depthwise_conv2d(int channels, int in_h, int in_w, const float *input, int out_h, int out_w, float *output,
                         const float *weights, int kernel_h, int kernel_w, int stride_h, int stride_w,
                         int pad_top, int pad_left, int dilation_h, int dilation_w,
                         const float *bias, float lo, float hi);

/// Unfolds convolution windows: columns[(c*kh + ky)*kw + kx][oy*out_w + ox] (zero where padded).
void ss_im2col(int channels, int in_h, int in_w, const float *input, int kernel_h, int kernel_w,
               int stride_h, int stride_w, int pad_top, int pad_left, int dilation_h, int dilation_w,
               int out_h, int out_w, float *columns);

#ifdef __cplusplus
}
#endif
#endif
#include "sliceserve_cudnn.h"
#include "sliceserve_cublaslt.h"
