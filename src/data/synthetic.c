/* Deterministic synthetic image classification data: oriented class gratings plus noise. */
#include "legr/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Each class is a sinusoidal grating with its own orientation, spatial frequency and
 * per-channel contrast, so a small CNN separates the classes; every sample jitters the phase
 * (by up to +-1.5 rad), contrast and brightness and adds Gaussian pixel noise, so that a
 * template match alone does not solve them.
 * Class prototypes come from stream (seed, SYNTH, 0) and sample i from (seed, SYNTH, 1 + i):
 * sample i is the same whatever n is. Labels are i mod num_classes (balanced). */
typedef struct {
    double angle, freq, phase;
    double contrast[4];
} SynthClass;

void dataset_synthetic(Dataset *d, int n, int c, int h, int w, int num_classes, uint64_t seed)
{
    CHECK(n > 0 && c >= 1 && c <= 4 && h > 0 && w > 0 && num_classes >= 2,
          "dataset_synthetic: n %d, c %d, h %d, w %d, classes %d", n, c, h, w, num_classes);
    memset(d, 0, sizeof *d);
    d->n = n;
    d->c = c;
    d->h = h;
    d->w = w;
    d->num_classes = num_classes;
    d->pix = xmalloc((size_t)n * c * h * w);
    d->labels = xmalloc(sizeof(int) * (size_t)n);

    SynthClass *cls = xmalloc(sizeof(SynthClass) * (size_t)num_classes);
    Rng r;
    rng_init(&r, seed, rng_stream_id(RNG_PURPOSE_SYNTH, 0));
    for (int k = 0; k < num_classes; k++) {
        /* Orientations evenly spread over [0, pi) with a little jitter; 1.5-4 cycles. */
        cls[k].angle = M_PI * (k + 0.3 * rng_uniform(&r)) / num_classes;
        cls[k].freq = 1.5 + 2.5 * rng_uniform(&r);
        cls[k].phase = 2.0 * M_PI * rng_uniform(&r);
        for (int ch = 0; ch < c; ch++) cls[k].contrast[ch] = 0.5 + 0.5 * rng_uniform(&r);
    }
    size_t plane = (size_t)h * w;
    for (int i = 0; i < n; i++) {
        int k = i % num_classes;
        const SynthClass *p = &cls[k];
        rng_init(&r, seed, rng_stream_id(RNG_PURPOSE_SYNTH, 1 + (uint64_t)i));
        double phase = p->phase + 3.0 * (rng_uniform(&r) - 0.5);
        double gain = 0.8 + 0.4 * rng_uniform(&r);
        double bright = 0.1 * (rng_uniform(&r) - 0.5);
        double ca = cos(p->angle);
        double sa = sin(p->angle);
        for (int ch = 0; ch < c; ch++) {
            uint8_t *out = d->pix + ((size_t)i * c + ch) * plane;
            for (int y = 0; y < h; y++) {
                for (int x = 0; x < w; x++) {
                    double u = (ca * x / w + sa * y / h) * p->freq;
                    double v = 0.5 + bright +
                               0.3 * gain * p->contrast[ch] * sin(2.0 * M_PI * u + phase) +
                               0.2 * rng_normal(&r);
                    double q = floor(v * 255.0 + 0.5);
                    out[(size_t)y * w + x] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
                }
            }
        }
        d->labels[i] = k;
    }
    free(cls);
}
