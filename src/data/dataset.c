/* Dataset bookkeeping: freeing, channel statistics, seeded splits, epoch order, batch assembly. */
#include "legr/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void dataset_free(Dataset *d)
{
    free(d->pix);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

void dataset_channel_stats(const Dataset *d, float *mean, float *std)
{
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
                            int ox, int flip, const float (*lut)[256])
{
    for (int ch = 0; ch < c; ch++) {
        const uint8_t *src = img + (size_t)ch * h * w;
        float *dst = out + (size_t)ch * h * w;
        const float *l = lut[ch];
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

void data_fill_batch(float *x, int *y, const Dataset *d, const int *idx, int n,
                     const Normalize *norm, const Augment *aug, Rng *rng)
{
    CHECK(d->c >= 1 && d->c <= 4, "data_fill_batch: %d channels (at most 4)", d->c);
    float lut[4][256];
    for (int c = 0; c < d->c; c++) {
        float m = norm ? norm->mean[c] : 0.0f;
        float s = norm ? norm->std[c] : 1.0f;
        CHECK(s > 0.0f, "data_fill_batch: std[%d] = %g", c, (double)s);
        for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - m) / s;
    }
    int pad = aug ? aug->crop_pad : 0;
    int flip_on = aug ? aug->flip : 0;
    CHECK(pad >= 0, "data_fill_batch: crop_pad %d", pad);
    CHECK(!(pad > 0 || flip_on) || rng, "data_fill_batch: augmentation needs an rng");
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
                        oy, ox, flip, (const float (*)[256])lut);
        y[b] = d->labels[k];
    }
}
