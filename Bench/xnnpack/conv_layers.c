// Times convolution layers on XNNPACK (Debian's libxnnpack-dev, a 2022 snapshot), for
// Bench/cpu_ops.py's per-operator comparison. Reads one layer per line on standard input:
//   N H W C_IN C_OUT KH KW STRIDE PAD_TOP PAD_LEFT PAD_BOTTOM PAD_RIGHT GROUPS LOW HIGH
// (NHWC, XNNPACK's layout; LOW/HIGH the fused clamp, -inf/inf for none) and prints one line per
// layer: the fastest of five runs after a warm-up, in milliseconds, on the calling thread only
// (no thread pool: the comparison runs at one thread). Weights and inputs are seeded random.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xnnpack.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static float *random_floats(size_t count, unsigned *seed) {
    float *p = malloc((count ? count : 1) * sizeof(float));
    for (size_t i = 0; i < count; i++) p[i] = (float)rand_r(seed) / RAND_MAX - 0.5f;
    return p;
}

int main(void) {
    if (xnn_initialize(NULL) != xnn_status_success) {
        fprintf(stderr, "xnnpack: xnn_initialize failed\n");
        return 1;
    }
    unsigned seed = 42;
    long n, h, w, cin, cout, kh, kw, stride, pt, pl, pb, pr, groups;
    float low, high;
    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        char lo[32], hi[32];
        if (sscanf(line, "%ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %31s %31s", &n, &h, &w, &cin, &cout, &kh, &kw, &stride,
                   &pt, &pl, &pb, &pr, &groups, lo, hi) != 15) {
            printf("error bad line\n");
            continue;
        }
        low = strtof(lo, NULL);
        high = strtof(hi, NULL);
        long oh = (h + pt + pb - kh) / stride + 1, ow = (w + pl + pr - kw) / stride + 1;
        float *weights = random_floats((size_t)(cout * (cin / groups) * kh * kw), &seed);
        float *bias = random_floats((size_t)cout, &seed);
        float *input = random_floats((size_t)(n * h * w * cin), &seed);
        float *output = malloc((size_t)(n * oh * ow * cout) * sizeof(float));
        xnn_operator_t op = NULL;
        enum xnn_status status = xnn_create_convolution2d_nhwc_f32(
            (uint32_t)pt, (uint32_t)pr, (uint32_t)pb, (uint32_t)pl, (uint32_t)kh, (uint32_t)kw, (uint32_t)stride, (uint32_t)stride, 1, 1,
            (uint32_t)groups, (size_t)(cin / groups), (size_t)(cout / groups), (size_t)cin, (size_t)cout, weights, bias,
            isinf(low) ? -INFINITY : low, isinf(high) ? INFINITY : high, 0, &op);
        if (status == xnn_status_success)
            status = xnn_setup_convolution2d_nhwc_f32(op, (size_t)n, (size_t)h, (size_t)w, input, output, NULL);
        double best = 1e300;
        for (int run = 0; run < 6 && status == xnn_status_success; run++) {
            double start = now_ms();
            status = xnn_run_operator(op, NULL);
            double ms = now_ms() - start;
            if (run > 0 && ms < best) best = ms;
        }
        if (status == xnn_status_success) printf("%.6f\n", best);
        else printf("error %d\n", (int)status);
        fflush(stdout);
        if (op) xnn_delete_operator(op);
        free(weights);
        free(bias);
        free(input);
        free(output);
    }
    return 0;
}
