/* Dataset bookkeeping: freeing, channel statistics, seeded splits, epoch order, batch assembly. */
#include "legr/data.h"
#include "images.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void dataset_free(Dataset *d)
{
    images_close(d->src);
    free(d->pix);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

void dataset_channel_stats(const Dataset *d, float *mean, float *std)
{
    CHECK(d->pix, "dataset_channel_stats needs the pixels in memory");
    size_t plane = (size_t)d->h * d->w;
    for (int c = 0; c < d->c; c++) {
        /* Integer pixel histograms make the sums exact; only the final moments are rounded. */
        double sum = 0.0;
        double sum_sq = 0.0;
        for (int i = 0; i < d->n; i++) {
            const uint8_t *p = d->pix + ((size_t)i * d->c + c) * plane;
            unsigned long long s = 0;
            unsigned long long s2 = 0;
            for (size_t k = 0; k < plane; k++) {
                s += p[k];
                s2 += (unsigned long long)p[k] * p[k];
            }
            sum += (double)s;
            sum_sq += (double)s2;
        }
        double count = (double)d->n * (double)plane;
        double m = count > 0 ? sum / count : 0.0;
        double var = count > 0 ? sum_sq / count - m * m : 0.0;
        mean[c] = (float)(m / 255.0);
        std[c] = (float)(sqrt(var > 0 ? var : 0.0) / 255.0);
    }
}

static int data_cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a;
    int y = *(const int *)b;
    return (x > y) - (x < y);
}

void data_split(int n, double val_fraction, uint64_t seed, int **train_idx, int *n_train,
                int **val_idx, int *n_val)
{
    CHECK(n >= 0 && val_fraction >= 0.0 && val_fraction <= 1.0,
          "data_split: n %d, val_fraction %g", n, val_fraction);
    int nv = (int)lround(val_fraction * n);
    int *perm = xmalloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) perm[i] = i;
    Rng r;
    rng_init(&r, seed, rng_stream_id(RNG_PURPOSE_SPLIT, 0));
    rng_shuffle_int(&r, perm, n);
    *val_idx = xmalloc(sizeof(int) * (size_t)nv);
    *train_idx = xmalloc(sizeof(int) * (size_t)(n - nv));
    memcpy(*val_idx, perm, sizeof(int) * (size_t)nv);
    memcpy(*train_idx, perm + nv, sizeof(int) * (size_t)(n - nv));
    free(perm);
    qsort(*val_idx, (size_t)nv, sizeof(int), data_cmp_int);
    qsort(*train_idx, (size_t)(n - nv), sizeof(int), data_cmp_int);
    *n_val = nv;
    *n_train = n - nv;
}

void data_subset(const int *idx, int n, int k, uint64_t seed, int **out)
{
    CHECK(k > 0 && k <= n, "data_subset: %d of %d", k, n);
    int *perm = xmalloc(sizeof(int) * (size_t)n);
    memcpy(perm, idx, sizeof(int) * (size_t)n);
    Rng r;
    rng_init(&r, seed, rng_stream_id(RNG_PURPOSE_SPLIT, 1));
    rng_shuffle_int(&r, perm, n);
    qsort(perm, (size_t)k, sizeof(int), data_cmp_int);
    *out = xrealloc(perm, sizeof(int) * (size_t)k);
}

void data_epoch_order(int *order, const int *idx, int n, uint64_t seed, int epoch)
{
    CHECK(epoch >= 0, "data_epoch_order: epoch %d", epoch);
    memcpy(order, idx, sizeof(int) * (size_t)n);
    Rng r;
    rng_init(&r, seed, rng_stream_id(RNG_PURPOSE_EPOCH, (uint64_t)epoch));
    rng_shuffle_int(&r, order, n);
}

/* out (C,H,W) floats from one uint8 image, with the padded-crop offset (oy, ox) in
 * [0, 2*pad] and an optional mirror. As in torchvision's RandomCrop(padding), the padding is
 * raw pixel value 0, which normalises to lut[c][0] = -mean/std, not to 0.0f. */
static void data_copy_image(float *out, const uint8_t *img, int c, int h, int w, int pad, int oy,
                            int ox, int flip, const float *lut)
{
    for (int ch = 0; ch < c; ch++) {
        const uint8_t *src = img + (size_t)ch * h * w;
        float *dst = out + (size_t)ch * h * w;
        const float *l = lut + ch * 256;
        for (int y = 0; y < h; y++) {
            int sy = y + oy - pad;
            for (int x = 0; x < w; x++) {
                int cx = flip ? w - 1 - x : x;
                int sx = cx + ox - pad;
                int inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
                dst[(size_t)y * w + x] = l[inside ? src[(size_t)sy * w + sx] : 0];
            }
        }
    }
}

/* The in-memory path; rng as data_fill_batch's. */
static void fill_memory(float *x, int *y, const Dataset *d, const int *idx, int n,
                        const float *lut, const Augment *aug, Rng *rng)
{
    int pad = aug ? aug->crop_pad : 0;
    int flip_on = aug ? aug->flip : 0;
    CHECK(pad >= 0, "data_fill_batch: crop_pad %d", pad);
    size_t img = (size_t)d->c * d->h * d->w;
    for (int b = 0; b < n; b++) {
        int k = idx[b];
        CHECK(k >= 0 && k < d->n, "data_fill_batch: sample %d of %d", k, d->n);
        /* Draw order per sample: row offset, column offset, flip (each only when enabled). */
        int oy = pad;
        int ox = pad;
        int flip = 0;
        if (pad > 0) {
            oy = (int)rng_below(rng, (uint32_t)(2 * pad + 1));
            ox = (int)rng_below(rng, (uint32_t)(2 * pad + 1));
        }
        if (flip_on) flip = rng_below(rng, 2) == 1;
        data_copy_image(x + (size_t)b * img, d->pix + (size_t)k * img, d->c, d->h, d->w, pad,
                        oy, ox, flip, lut);
        y[b] = d->labels[k];
    }
}

/* Both entry points: draws from rng in image order (keyed = 0), or image b from its own stream
 * (seed, RNG_PURPOSE_AUGMENT, stream0 + b). */
static void fill(float *x, int *y, const Dataset *d, const int *idx, int n, const Normalize *norm,
                 const Augment *aug, Rng *rng, int keyed, uint64_t seed, uint64_t stream0)
{
    CHECK(d->c >= 1 && d->c <= DATA_MAX_CHANNELS, "data_fill_batch: %d channels (at most %d)",
          d->c, DATA_MAX_CHANNELS);
    Rng none; /* evaluation draws nothing */
    if (!keyed && !rng) {
        CHECK(!aug || !(aug->crop_pad > 0 || aug->flip || (d->src && aug->resized_crop)),
              "data_fill_batch: augmentation needs an rng");
        rng_init(&none, 0, 0);
        rng = &none;
    }
    if (d->src) {
        Err err;
        if (images_fill(x, y, d, idx, n, norm, aug, keyed ? NULL : rng, seed, stream0, &err))
            legr_fail(err.code, __FILE__, __LINE__, "%s", err.msg);
        return;
    }
    float *lut = xmalloc((size_t)d->c * 256 * sizeof(float));
    data_norm_lut(lut, d->c, norm);
    if (!keyed) {
        fill_memory(x, y, d, idx, n, lut, aug, rng);
    } else {
        const size_t img = (size_t)d->c * d->h * d->w;
        for (int b = 0; b < n; b++) {
            Rng r;
            rng_init(&r, seed, rng_stream_id(RNG_PURPOSE_AUGMENT, stream0 + (uint64_t)b));
            fill_memory(x + (size_t)b * img, y + b, d, idx + b, 1, lut, aug, &r);
        }
    }
    free(lut);
}

void data_fill_batch(float *x, int *y, const Dataset *d, const int *idx, int n,
                     const Normalize *norm, const Augment *aug, Rng *rng)
{
    fill(x, y, d, idx, n, norm, aug, rng, 0, 0, 0);
}

void data_fill_keyed(float *x, int *y, const Dataset *d, const int *idx, int n,
                     const Normalize *norm, const Augment *aug, uint64_t seed, uint64_t stream0)
{
    fill(x, y, d, idx, n, norm, aug, NULL, 1, seed, stream0);
}
