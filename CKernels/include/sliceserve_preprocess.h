// sliceserve_preprocess.h: the preprocessing accelerator plug-in ABI (version 1).
//
// A plug-in is a shared object that turns encoded images into model-input slots: the place an
// FPGA (PREBA's choice), a DSP or any other device joins SliceServe. `sliceserve serve
// --preprocess plugin:/path/libfoo.so[?config]` loads one. Plain C, no SliceServe or CUDA types;
// every structure is passed by pointer and only grows at the end in later versions.
//
// Protocol:
//   1. ss_pp_abi_version() must return SS_PP_ABI_VERSION; anything else is refused.
//   2. ss_pp_create(config, &instance, error, size) makes an instance (config: the text after
//      '?' in the path, possibly empty).
//   3. ss_pp_get_capabilities(instance, &caps) says what it writes.
//   4. ss_pp_submit(instance, job_id, &options, images, count, results) starts a job and returns
//      at once. The host keeps `images`, their data, `results` and the destinations valid until
//      the job completes (or until the instance is destroyed).
//   5. ss_pp_poll(instance, ids, capacity, &count, timeout_ms) waits up to timeout_ms for jobs to
//      complete and reports their ids; a job's `results` are final when its id is reported.
//      The host calls it from one thread.
//   6. ss_pp_destroy(instance) stops it; pending jobs are abandoned.
//
// Containment: the host gives a plug-in staging slots, not the model's input, for host memory,
// and copies a slot on only after checking the result; a job that does not complete in time
// fails its images, and a status outside the enum or a write past a slot fails the image. A
// plug-in cannot corrupt other requests through the interface (it runs in the server's process,
// so it can still crash it).
#ifndef SLICESERVE_PREPROCESS_H
#define SLICESERVE_PREPROCESS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SS_PP_ABI_VERSION 1u

/// Per-image outcome (the host maps these to its preprocessing errors).
typedef enum ss_pp_status {
    SS_PP_OK = 0,
    SS_PP_EMPTY_INPUT = 1,
    SS_PP_NOT_AN_IMAGE = 2,
    SS_PP_UNSUPPORTED_FORMAT = 3,
    SS_PP_TRUNCATED = 4,
    SS_PP_CORRUPT = 5,
    SS_PP_ZERO_DIMENSIONS = 6,
    SS_PP_TOO_MANY_PIXELS = 7,
    SS_PP_INVALID_JOB = 8,
    SS_PP_BACKEND_FAILURE = 9,
} ss_pp_status;

enum { SS_PP_LAYOUT_NCHW = 0, SS_PP_LAYOUT_NHWC = 1 };
enum { SS_PP_DTYPE_FLOAT32 = 0, SS_PP_DTYPE_FLOAT16 = 1, SS_PP_DTYPE_UINT8 = 2 };
enum { SS_PP_MEMORY_HOST = 0, SS_PP_MEMORY_DEVICE = 1 };

typedef struct ss_pp_capabilities {
    /// Bit (1 << SS_PP_LAYOUT_*), (1 << SS_PP_DTYPE_*), (1 << SS_PP_MEMORY_*) for each supported.
    uint32_t layouts;
    uint32_t dtypes;
    uint32_t memories;
    /// Most images in one job.
    uint32_t max_batch;
    /// A short name for logs and metrics, NUL-terminated.
    char name[64];
} ss_pp_capabilities;

/// What every image of a job becomes (torchvision's Resize + CenterCrop + ToTensor + Normalize).
typedef struct ss_pp_options {
    /// The shorter side after resizing; 0 keeps the decoded size.
    int32_t resize_shorter_side;
    /// The crop, which is the slot's height and width.
    int32_t height;
    int32_t width;
    /// Always 3 (RGB) in version 1.
    int32_t channels;
    uint32_t layout;
    uint32_t dtype;
    uint32_t memory;
    uint32_t reserved;
    float mean[3];
    float std[3];
    /// Images with more pixels than this are refused from their header (SS_PP_TOO_MANY_PIXELS).
    int64_t max_pixels;
} ss_pp_options;

typedef struct ss_pp_image {
    const uint8_t *data;
    size_t size;
    /// Where the slot goes: a host pointer (SS_PP_MEMORY_HOST) or a device address.
    uint64_t destination;
    /// Bytes the slot holds (height × width × channels × element size).
    size_t destination_size;
} ss_pp_image;

typedef struct ss_pp_result {
    /// An ss_pp_status.
    int32_t status;
    /// The image's size as decoded, and after resizing (before the crop).
    int32_t width;
    int32_t height;
    int32_t resized_width;
    int32_t resized_height;
    int32_t reserved;
    /// Why, when status is not SS_PP_OK; NUL-terminated.
    char message[232];
} ss_pp_result;

// The symbols a plug-in exports (all required).
uint32_t ss_pp_abi_version(void);
int ss_pp_create(const char *config, void **instance, char *error, size_t error_size);
void ss_pp_destroy(void *instance);
int ss_pp_get_capabilities(void *instance, ss_pp_capabilities *capabilities);
int ss_pp_submit(void *instance, uint64_t job_id, const ss_pp_options *options, const ss_pp_image *images,
                 size_t count, ss_pp_result *results);
int ss_pp_poll(void *instance, uint64_t *completed, size_t capacity, size_t *count, int timeout_ms);

// Function pointer types, for hosts that load a plug-in with dlopen.
typedef uint32_t (*ss_pp_abi_version_fn)(void);
typedef int (*ss_pp_create_fn)(const char *, void **, char *, size_t);
typedef void (*ss_pp_destroy_fn)(void *);
typedef int (*ss_pp_get_capabilities_fn)(void *, ss_pp_capabilities *);
typedef int (*ss_pp_submit_fn)(void *, uint64_t, const ss_pp_options *, const ss_pp_image *, size_t, ss_pp_result *);
typedef int (*ss_pp_poll_fn)(void *, uint64_t *, size_t, size_t *, int);

#ifdef __cplusplus
}
#endif
#endif
