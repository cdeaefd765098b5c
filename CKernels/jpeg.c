// TurboJPEG glue: one decoder per worker thread, libjpeg status mapped to ss_status.
#define _GNU_SOURCE
#include "sliceserve_shim.h"

#include <dlfcn.h>
#include <turbojpeg.h>
#include <jconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SS_STR2(x) #x
#define SS_STR(x) SS_STR2(x)

_Static_assert((int)SS_JPEG_CS_RGB == (int)TJCS_RGB && (int)SS_JPEG_CS_YCBCR == (int)TJCS_YCbCr &&
                   (int)SS_JPEG_CS_GRAY == (int)TJCS_GRAY && (int)SS_JPEG_CS_CMYK == (int)TJCS_CMYK &&
                   (int)SS_JPEG_CS_YCCK == (int)TJCS_YCCK,
               "ss_jpeg_colorspace must mirror TJCS_*");

struct ss_jpeg_decoder {
    tjhandle handle;
    char message[256];
};

ss_jpeg_decoder *ss_jpeg_decoder_create(void) {
    tjhandle handle = tjInitDecompress();
    if (handle == NULL) return NULL;
    ss_jpeg_decoder *decoder = (ss_jpeg_decoder *)malloc(sizeof(*decoder));
    if (decoder == NULL) {
        tjDestroy(handle);
        return NULL;
    }
    decoder->handle = handle;
    decoder->message[0] = '\0';
    return decoder;
}

void ss_jpeg_decoder_destroy(ss_jpeg_decoder *decoder) {
    if (decoder == NULL) return;
    tjDestroy(decoder->handle);
    free(decoder);
}

// Records the failure and replaces the handle. TurboJPEG 2.1's tjDecompressHeader3 returns from
// an error without aborting the decompressor, which leaves libjpeg mid-header: the next image on
// the same handle then fails with a stale "Bogus marker length". A fresh handle after every
// failure keeps one bad image from poisoning the next.
static ss_status ss_fail(ss_jpeg_decoder *decoder) {
    ss_status status = tjGetErrorCode(decoder->handle) == TJERR_WARNING ? SS_JPEG_WARNING : SS_JPEG_FATAL;
    const char *message = tjGetErrorStr2(decoder->handle);
    snprintf(decoder->message, sizeof(decoder->message), "%s", message != NULL ? message : "unknown libjpeg-turbo error");
    tjhandle fresh = tjInitDecompress();
    if (fresh == NULL) return SS_NO_MEMORY;
    tjDestroy(decoder->handle);
    decoder->handle = fresh;
    return status;
}

ss_status ss_jpeg_read_header(ss_jpeg_decoder *decoder, const uint8_t *data, size_t size,
                              ss_jpeg_header *header) {
    int width = 0, height = 0, subsampling = -1, colorspace = -1;
    if (size > (size_t)0xFFFFFFFFul) return SS_JPEG_FATAL;
    if (tjDecompressHeader3(decoder->handle, data, (unsigned long)size, &width, &height,
                            &subsampling, &colorspace) != 0) {
        return ss_fail(decoder);
    }
    header->width = width;
    header->height = height;
    header->subsampling = subsampling;
    header->colorspace = colorspace;
    return SS_OK;
}

ss_status ss_jpeg_decode(ss_jpeg_decoder *decoder, const uint8_t *data, size_t size,
                         uint8_t *dst, int scaled_width, int pitch, int scaled_height,
                         ss_pixel_format format) {
    int flags = TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
    int pixel_format = format == SS_PIXEL_CMYK ? TJPF_CMYK : TJPF_RGBX;
    if (size > (size_t)0xFFFFFFFFul) return SS_JPEG_FATAL;
    if (tjDecompress2(decoder->handle, data, (unsigned long)size, dst, scaled_width, pitch,
                      scaled_height, pixel_format, flags) != 0) {
        return ss_fail(decoder);
    }
    return SS_OK;
}

const char *ss_jpeg_error_message(ss_jpeg_decoder *decoder) {
    return decoder != NULL && decoder->message[0] != '\0' ? decoder->message : "unknown libjpeg-turbo error";
}

int ss_jpeg_scaled(int dimension, int scale_num, int scale_denom) {
    tjscalingfactor factor = {scale_num, scale_denom};
    return TJSCALED(dimension, factor);
}

const char *ss_jpeg_library_version(void) { return SS_STR(LIBJPEG_TURBO_VERSION); }

const char *ss_jpeg_library_path(void) {
    static char path[4096];
    Dl_info info;
    if (dladdr((void *)&tjInitDecompress, &info) != 0 && info.dli_fname != NULL) {
        // The executable itself means TurboJPEG was linked statically.
        Dl_info self;
        if (dladdr((void *)&ss_jpeg_library_path, &self) != 0 && self.dli_fname != NULL &&
            strcmp(self.dli_fname, info.dli_fname) == 0) {
            return "statically linked";
        }
        snprintf(path, sizeof(path), "%s", info.dli_fname);
        return path;
    }
    return "unknown";
}
