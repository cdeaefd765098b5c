// The reference preprocessing plug-in (sliceserve_preprocess.h, ABI version 1), in C over
// libjpeg-turbo: it proves the plug-in boundary end to end, the way an FPGA or other device
// backend would sit behind it. One worker thread per instance takes jobs in order: decode
// (TurboJPEG, accurate IDCT, fancy upsampling — as Pillow), Pillow's antialiased bilinear resize
// in Pillow's 8-bit fixed point, torchvision's center crop (zero padding), normalization in
// float32 in torchvision's order. Its output equals SliceServe's CPU backend with DCT scaling
// off, bit for bit; the tests check that.
//
// For the host's containment tests, the config string selects a misbehaviour: "mode=fail"
// (every image fails), "mode=overrun" (writes past each slot), "mode=bad-status" (an unknown
// status), "mode=never" (never completes a job), "mode=wrong-size" (reports sizes that do not
// match the header), "mode=crash" (dereferences NULL in ss_pp_submit: a segfault), "mode=hang"
// (sleeps 60 s in ss_pp_submit), "mode=leak" (allocates 1 MiB per job and never frees it). Built with -DSS_PLUGIN_ABI=N it reports another ABI version; with
// -DSS_PLUGIN_OMIT_POLL it lacks ss_pp_poll.
#define _GNU_SOURCE
#include "sliceserve_preprocess.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

#ifndef SS_PLUGIN_ABI
#define SS_PLUGIN_ABI SS_PP_ABI_VERSION
#endif

enum mode { MODE_NORMAL, MODE_FAIL, MODE_OVERRUN, MODE_BAD_STATUS, MODE_NEVER, MODE_WRONG_SIZE, MODE_CRASH, MODE_HANG, MODE_LEAK };

typedef struct job {
    uint64_t id;
    ss_pp_options options;
    const ss_pp_image *images;
    size_t count;
    ss_pp_result *results;
    struct job *next;
} job;

typedef struct instance {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t work, done_cond;
    job *head, *tail;
    uint64_t *done;
    size_t done_count, done_capacity;
    int stop;
    enum mode mode;
    tjhandle tj;
} instance;

// ---------------------------------------------------------------------------------------------
// Pillow's bilinear resize (libImaging/Resample.c: precompute_coeffs, normalize_coeffs_8bpc,
// ImagingResampleHorizontal/Vertical_8bpc) on 3-byte RGB.
// ---------------------------------------------------------------------------------------------

#define PRECISION_BITS (32 - 8 - 2)

static double triangle(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/// Taps for `out_size` outputs over `in_size` inputs: bounds[2i] = first input, bounds[2i+1] =
/// count; k[i * ksize + t] = fixed-point weight. Returns ksize, or 0 when out of memory.
static int coefficients(int in_size, int out_size, int **bounds_out, int **k_out) {
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *kk = malloc(sizeof(double) * (size_t)out_size * ksize);
    int *bounds = malloc(sizeof(int) * (size_t)out_size * 2);
    int *k = malloc(sizeof(int) * (size_t)out_size * ksize);
    if (!kk || !bounds || !k) {
        free(kk), free(bounds), free(k);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *w = &kk[xx * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double weight = triangle((x + xmin - center + 0.5) * ss);
            w[x] = weight;
            ww += weight;
        }
        for (x = 0; x < xmax; x++) {
            if (ww != 0.0) w[x] /= ww;
        }
        for (; x < ksize; x++) w[x] = 0;
        bounds[xx * 2 + 0] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (int i = 0; i < out_size * ksize; i++) {
        double v = kk[i] * (1 << PRECISION_BITS);
        k[i] = (int)(v < 0 ? -0.5 + v : 0.5 + v);
    }
    free(kk);
    *bounds_out = bounds;
    *k_out = k;
    return ksize;
}

static inline uint8_t clip8(int in) {
    if (in >= (1 << PRECISION_BITS << 8)) return 255;
    if (in <= 0) return 0;
    return (uint8_t)(in >> PRECISION_BITS);
}

/// Resizes RGB `src` (w × h) to `dst` (ow × oh); returns 0 on success.
static int resize(const uint8_t *src, int w, int h, uint8_t *dst, int ow, int oh) {
    const uint8_t *current = src;
    uint8_t *temp = NULL;
    int cw = w;
    if (ow != w) {
        int *bounds, *k;
        int ksize = coefficients(w, ow, &bounds, &k);
        if (!ksize) return -1;
        temp = malloc((size_t)ow * h * 3);
        if (!temp) return free(bounds), free(k), -1;
        for (int y = 0; y < h; y++) {
            for (int xx = 0; xx < ow; xx++) {
                int xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1];
                const int *kk = &k[xx * ksize];
                int s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                for (int x = 0; x < xmax; x++) {
                    const uint8_t *p = &src[((size_t)y * w + x + xmin) * 3];
                    s0 += p[0] * kk[x];
                    s1 += p[1] * kk[x];
                    s2 += p[2] * kk[x];
                }
                uint8_t *o = &temp[((size_t)y * ow + xx) * 3];
                o[0] = clip8(s0), o[1] = clip8(s1), o[2] = clip8(s2);
            }
        }
        free(bounds), free(k);
        current = temp;
        cw = ow;
    }
    if (oh != h) {
        int *bounds, *k;
        int ksize = coefficients(h, oh, &bounds, &k);
        if (!ksize) return free(temp), -1;
        for (int yy = 0; yy < oh; yy++) {
            int ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1];
            const int *kk = &k[yy * ksize];
            for (int x = 0; x < cw; x++) {
                int s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                for (int y = 0; y < ymax; y++) {
                    const uint8_t *p = &current[((size_t)(y + ymin) * cw + x) * 3];
                    s0 += p[0] * kk[y];
                    s1 += p[1] * kk[y];
                    s2 += p[2] * kk[y];
                }
                uint8_t *o = &dst[((size_t)yy * ow + x) * 3];
                o[0] = clip8(s0), o[1] = clip8(s1), o[2] = clip8(s2);
            }
        }
        free(bounds), free(k);
    } else {
        memcpy(dst, current, (size_t)ow * oh * 3);
    }
    free(temp);
    return 0;
}

/// float → IEEE half bits, round to nearest even.
static uint16_t half_bits(float value) {
    uint32_t f;
    memcpy(&f, &value, 4);
    uint32_t sign = (f >> 16) & 0x8000, exponent = (f >> 23) & 0xFF, mantissa = f & 0x7FFFFF;
    if (exponent == 0xFF) return (uint16_t)(sign | 0x7C00 | (mantissa ? 0x200 : 0));
    int e = (int)exponent - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7C00);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        mantissa |= 0x800000;
        int shift = 14 - e;
        uint32_t half = mantissa >> shift, rest = mantissa & ((1u << shift) - 1), middle = 1u << (shift - 1);
        if (rest > middle || (rest == middle && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (mantissa >> 13), rest = mantissa & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++;
    return (uint16_t)(sign | half);
}

static void fail(ss_pp_result *r, int status, const char *message) {
    r->status = status;
    snprintf(r->message, sizeof r->message, "%s", message);
}

static void process_image(instance *self, const ss_pp_options *o, const ss_pp_image *image, ss_pp_result *r) {
    memset(r, 0, sizeof *r);
    if (image->size == 0) return fail(r, SS_PP_EMPTY_INPUT, "empty input");
    if (image->size < 2 || image->data[0] != 0xFF || image->data[1] != 0xD8)
        return fail(r, SS_PP_NOT_AN_IMAGE, "not a JPEG (no start-of-image marker)");
    int w, h, subsampling, colorspace;
    if (tjDecompressHeader3(self->tj, image->data, (unsigned long)image->size, &w, &h, &subsampling, &colorspace) != 0) {
        const char *text = tjGetErrorStr2(self->tj);
        tjDestroy(self->tj);  // TurboJPEG 2.1 leaves the handle mid-header after an error
        self->tj = tjInitDecompress();
        return fail(r, strstr(text, "Premature end") ? SS_PP_TRUNCATED : SS_PP_CORRUPT, text);
    }
    if (w <= 0 || h <= 0) return fail(r, SS_PP_ZERO_DIMENSIONS, "zero dimensions");
    if ((int64_t)w * h > o->max_pixels) return fail(r, SS_PP_TOO_MANY_PIXELS, "image too large");
    if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK)
        return fail(r, SS_PP_UNSUPPORTED_FORMAT, "CMYK JPEGs are not supported by this plug-in");
    uint8_t *rgb = malloc((size_t)w * h * 3);
    if (!rgb) return fail(r, SS_PP_BACKEND_FAILURE, "out of memory");
    if (tjDecompress2(self->tj, image->data, (unsigned long)image->size, rgb, w, w * 3, h, TJPF_RGB,
                      TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0) {
        const char *text = tjGetErrorStr2(self->tj);
        int status = strstr(text, "Premature end") ? SS_PP_TRUNCATED : SS_PP_CORRUPT;
        fail(r, status, text);
        tjDestroy(self->tj);
        self->tj = tjInitDecompress();
        free(rgb);
        return;
    }
    // torchvision's Resize(n): the shorter side becomes n, the longer int(n * long / short).
    int rw = w, rh = h;
    if (o->resize_shorter_side > 0) {
        int n = o->resize_shorter_side;
        if (w <= h) rw = n, rh = (int)((double)n * h / w);
        else rh = n, rw = (int)((double)n * w / h);
    }
    uint8_t *resized = malloc((size_t)rw * rh * 3);
    if (!resized || resize(rgb, w, h, resized, rw, rh) != 0) {
        free(rgb), free(resized);
        return fail(r, SS_PP_BACKEND_FAILURE, "out of memory");
    }
    free(rgb);
    // CenterCrop: offsets int(round((size - crop) / 2)), round half to even; pad with zeros.
    int ch = o->height, cw = o->width;
    int top = rh >= ch ? (int)nearbyint((rh - ch) / 2.0) : -((ch - rh) / 2);
    int left = rw >= cw ? (int)nearbyint((rw - cw) / 2.0) : -((cw - rw) / 2);
    size_t element = o->dtype == SS_PP_DTYPE_FLOAT32 ? 4 : o->dtype == SS_PP_DTYPE_FLOAT16 ? 2 : 1;
    size_t plane = (size_t)ch * cw;
    size_t bytes = plane * 3 * element;
    if (self->mode == MODE_OVERRUN) bytes += 64;  // misbehaviour under test: write past the slot
    else if (bytes > image->destination_size) {
        free(resized);
        return fail(r, SS_PP_INVALID_JOB, "the destination slot is too small");
    }
    uint8_t *out = (uint8_t *)(uintptr_t)image->destination;
    float table[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) table[c][v] = ((float)v / 255.0f - o->mean[c]) / o->std[c];
    for (int y = 0; y < ch; y++) {
        for (int x = 0; x < cw; x++) {
            int sy = y + top, sx = x + left;
            int inside = sy >= 0 && sy < rh && sx >= 0 && sx < rw;
            for (int c = 0; c < 3; c++) {
                int v = inside ? resized[((size_t)sy * rw + sx) * 3 + c] : 0;
                size_t index = o->layout == SS_PP_LAYOUT_NCHW ? c * plane + (size_t)y * cw + x : ((size_t)y * cw + x) * 3 + c;
                if (o->dtype == SS_PP_DTYPE_FLOAT32) memcpy(out + index * 4, &table[c][v], 4);
                else if (o->dtype == SS_PP_DTYPE_FLOAT16) {
                    uint16_t hbits = half_bits(table[c][v]);
                    memcpy(out + index * 2, &hbits, 2);
                } else out[index] = (uint8_t)v;
            }
        }
    }
    if (self->mode == MODE_OVERRUN) memset(out + plane * 3 * element, 0xEE, 64);
    free(resized);
    r->status = SS_PP_OK;
    r->width = w, r->height = h, r->resized_width = rw, r->resized_height = rh;
    if (self->mode == MODE_WRONG_SIZE) r->width = w + 1, r->resized_width = -1;
    if (self->mode == MODE_BAD_STATUS) r->status = 12345;
    if (self->mode == MODE_FAIL) fail(r, SS_PP_BACKEND_FAILURE, "the device reported an error (test mode)");
}

static void *worker(void *argument) {
    instance *self = argument;
    pthread_mutex_lock(&self->lock);
    for (;;) {
        while (!self->stop && self->head == NULL) pthread_cond_wait(&self->work, &self->lock);
        if (self->stop) break;
        job *j = self->head;
        self->head = j->next;
        if (!self->head) self->tail = NULL;
        pthread_mutex_unlock(&self->lock);
        for (size_t i = 0; i < j->count; i++) process_image(self, &j->options, &j->images[i], &j->results[i]);
        pthread_mutex_lock(&self->lock);
        if (self->mode != MODE_NEVER) {
            if (self->done_count == self->done_capacity) {
                size_t capacity = self->done_capacity ? self->done_capacity * 2 : 64;
                uint64_t *grown = realloc(self->done, capacity * sizeof *grown);
                if (grown) self->done = grown, self->done_capacity = capacity;
            }
            if (self->done_count < self->done_capacity) self->done[self->done_count++] = j->id;
            pthread_cond_broadcast(&self->done_cond);
        }
        free(j);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

// ---------------------------------------------------------------------------------------------
// The ABI
// ---------------------------------------------------------------------------------------------

uint32_t ss_pp_abi_version(void) { return SS_PLUGIN_ABI; }

int ss_pp_create(const char *config, void **out, char *error, size_t error_size) {
    instance *self = calloc(1, sizeof *self);
    if (!self) return snprintf(error, error_size, "out of memory"), -1;
    self->mode = MODE_NORMAL;
    if (config && *config) {
        if (strcmp(config, "mode=fail") == 0) self->mode = MODE_FAIL;
        else if (strcmp(config, "mode=overrun") == 0) self->mode = MODE_OVERRUN;
        else if (strcmp(config, "mode=bad-status") == 0) self->mode = MODE_BAD_STATUS;
        else if (strcmp(config, "mode=never") == 0) self->mode = MODE_NEVER;
        else if (strcmp(config, "mode=wrong-size") == 0) self->mode = MODE_WRONG_SIZE;
        else if (strcmp(config, "mode=crash") == 0) self->mode = MODE_CRASH;
        else if (strcmp(config, "mode=hang") == 0) self->mode = MODE_HANG;
        else if (strcmp(config, "mode=leak") == 0) self->mode = MODE_LEAK;
        else {
            snprintf(error, error_size, "unknown configuration \"%s\" (known: mode=fail|overrun|bad-status|never|wrong-size|crash|hang|leak)", config);
            free(self);
            return -1;
        }
    }
    self->tj = tjInitDecompress();
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->work, NULL);
    pthread_cond_init(&self->done_cond, NULL);
    if (!self->tj || pthread_create(&self->thread, NULL, worker, self) != 0) {
        snprintf(error, error_size, "could not start: %s", self->tj ? strerror(errno) : "TurboJPEG failed");
        if (self->tj) tjDestroy(self->tj);
        free(self);
        return -1;
    }
    *out = self;
    return 0;
}

void ss_pp_destroy(void *opaque) {
    instance *self = opaque;
    if (!self) return;
    pthread_mutex_lock(&self->lock);
    self->stop = 1;
    pthread_cond_broadcast(&self->work);
    pthread_mutex_unlock(&self->lock);
    pthread_join(self->thread, NULL);
    for (job *j = self->head; j;) {
        job *next = j->next;
        free(j);
        j = next;
    }
    tjDestroy(self->tj);
    free(self->done);
    free(self);
}

int ss_pp_get_capabilities(void *opaque, ss_pp_capabilities *caps) {
    (void)opaque;
    memset(caps, 0, sizeof *caps);
    caps->layouts = (1u << SS_PP_LAYOUT_NCHW) | (1u << SS_PP_LAYOUT_NHWC);
    caps->dtypes = (1u << SS_PP_DTYPE_FLOAT32) | (1u << SS_PP_DTYPE_FLOAT16) | (1u << SS_PP_DTYPE_UINT8);
    caps->memories = 1u << SS_PP_MEMORY_HOST;
    caps->max_batch = 1024;
    snprintf(caps->name, sizeof caps->name, "turbojpeg-reference");
    return 0;
}

int ss_pp_submit(void *opaque, uint64_t job_id, const ss_pp_options *options, const ss_pp_image *images, size_t count,
                 ss_pp_result *results) {
    instance *self = opaque;
    if (options->channels != 3 || options->memory != SS_PP_MEMORY_HOST || count > 1024) return -1;
    // Misbehaviours under test: a crash, a hang, a leak.
    if (self->mode == MODE_CRASH) *(volatile int *)(uintptr_t)(job_id & 0) = 1;
    if (self->mode == MODE_HANG) sleep(60);
    if (self->mode == MODE_LEAK) {
        volatile char *lost = malloc(1 << 20);
        if (lost) memset((char *)lost, 1, 1 << 20);
    }
    job *j = calloc(1, sizeof *j);
    if (!j) return -1;
    j->id = job_id, j->options = *options, j->images = images, j->count = count, j->results = results;
    pthread_mutex_lock(&self->lock);
    if (self->tail) self->tail->next = j;
    else self->head = j;
    self->tail = j;
    pthread_cond_signal(&self->work);
    pthread_mutex_unlock(&self->lock);
    return 0;
}

#ifndef SS_PLUGIN_OMIT_POLL
int ss_pp_poll(void *opaque, uint64_t *completed, size_t capacity, size_t *count, int timeout_ms) {
    instance *self = opaque;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&self->lock);
    while (self->done_count == 0 && !self->stop) {
        if (pthread_cond_timedwait(&self->done_cond, &self->lock, &deadline) == ETIMEDOUT) break;
    }
    size_t n = self->done_count < capacity ? self->done_count : capacity;
    memcpy(completed, self->done, n * sizeof *completed);
    memmove(self->done, self->done + n, (self->done_count - n) * sizeof *self->done);
    self->done_count -= n;
    pthread_mutex_unlock(&self->lock);
    *count = n;
    return 0;
}
#endif
