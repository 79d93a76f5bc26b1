/* RandomResizedCrop's box, PIL's antialiased bilinear resample and Resize + CenterCrop, matching torchvision on PIL images. */
#include "legr/image_aug.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "legr/util.h"

/* PIL keeps 8-bit resampling weights in fixed point with this many fraction bits (32 bits minus
 * 8 for the pixel and 2 of headroom), rounding each weight to nearest. */
enum { PREC_BITS = 22 };

CropBox aug_rrc_box(int h, int w, double smin, double smax, double rmin, double rmax, Rng *rng)
{
    const double area = (double)h * w, lr0 = log(rmin), lr1 = log(rmax);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (smin + (smax - smin) * rng_uniform(rng));
        double ratio = exp(lr0 + (lr1 - lr0) * rng_uniform(rng));
        /* rint rounds half to even, as Python's round does. */
        int cw = (int)rint(sqrt(target * ratio)), ch = (int)rint(sqrt(target / ratio));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            CropBox b = {0, 0, ch, cw};
            b.top = (int)rng_below(rng, (uint32_t)(h - ch + 1));
            b.left = (int)rng_below(rng, (uint32_t)(w - cw + 1));
            return b;
        }
    }
    double in_ratio = (double)w / h;
    CropBox b = {0, 0, h, w};
    if (in_ratio < rmin) b.height = (int)rint(w / rmin);
    else if (in_ratio > rmax) b.width = (int)rint(h * rmax);
    b.top = (h - b.height) / 2;
    b.left = (w - b.width) / 2;
    return b;
}

/* One axis of the resample: for each of n_out outputs the first input (lo) and the count (cnt)
 * it reads, with fixed-point weights k[o * ksize + i]. As PIL: the filter's support is widened
 * by the reduction factor when shrinking, the taps are the inputs whose centres fall within it,
 * and the float weights are normalised to sum 1 before rounding. */
typedef struct {
    int ksize;
    int *lo, *cnt;
    int32_t *k;
} Taps;

static void taps_init(Taps *t, int n_in, int n_out)
{
    double scale = (double)n_in / n_out, fscale = scale < 1.0 ? 1.0 : scale;
    double support = fscale; /* the triangle's support is 1 */
    t->ksize = (int)ceil(support) * 2 + 1;
    t->lo = xmalloc((size_t)n_out * sizeof(int));
    t->cnt = xmalloc((size_t)n_out * sizeof(int));
    t->k = xmalloc((size_t)n_out * t->ksize * sizeof(int32_t));
    double *w = xmalloc((size_t)t->ksize * sizeof(double));
    for (int o = 0; o < n_out; o++) {
        double centre = (o + 0.5) * scale, sum = 0;
        int lo = (int)(centre - support + 0.5), hi = (int)(centre + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > n_in) hi = n_in;
        int cnt = hi - lo;
        for (int i = 0; i < cnt; i++) {
            double x = fabs((i + lo - centre + 0.5) / fscale);
            w[i] = x < 1.0 ? 1.0 - x : 0.0;
            sum += w[i];
        }
        int32_t *k = t->k + (size_t)o * t->ksize;
        for (int i = 0; i < t->ksize; i++) {
            double v = i < cnt && sum != 0.0 ? w[i] / sum : 0.0;
            k[i] = (int32_t)(v < 0 ? -0.5 + v * (1 << PREC_BITS) : 0.5 + v * (1 << PREC_BITS));
        }
        t->lo[o] = lo;
        t->cnt[o] = cnt;
    }
    free(w);
}

static void taps_free(Taps *t)
{
    free(t->lo);
    free(t->cnt);
    free(t->k);
}

static inline uint8_t clip8(int32_t v)
{
    if (v < 0) return 0;
    v >>= PREC_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

/*
 * Resample the h x w x c image at pix (rows `stride` bytes apart) to oh x ow into out, as PIL's
 * ImagingResample with the box of the whole image: the horizontal pass over only the rows the
 * vertical pass will read, into tmp (ow * h * c bytes at most), then the vertical pass; a pass
 * whose size is unchanged is skipped.
 */
static void resample(uint8_t *out, int oh, int ow, const uint8_t *pix, size_t stride, int h, int w,
                     int c, uint8_t *tmp)
{
    const int horiz = ow != w, vert = oh != h;
    if (!horiz && !vert) {
        for (int y = 0; y < h; y++)
            memcpy(out + (size_t)y * w * c, pix + (size_t)y * stride, (size_t)w * c);
        return;
    }
    Taps tv = {0, NULL, NULL, NULL};
    int first = 0, rows = h;
    if (vert) {
        taps_init(&tv, h, oh);
        first = tv.lo[0];
        rows = tv.lo[oh - 1] + tv.cnt[oh - 1] - first;
    }
    /* Where the vertical pass reads: row r of the image is row r - shift of base. */
    const uint8_t *base = pix;
    size_t bstride = stride;
    int width = w, shift = 0;
    if (horiz) {
        Taps th;
        taps_init(&th, w, ow);
        uint8_t *dst = vert ? tmp : out;
        for (int y = 0; y < rows; y++) {
            const uint8_t *in = pix + (size_t)(first + y) * stride;
            uint8_t *o = dst + (size_t)y * ow * c;
            for (int x = 0; x < ow; x++) {
                const int32_t *k = th.k + (size_t)x * th.ksize;
                const uint8_t *p = in + (size_t)th.lo[x] * c;
                for (int ch = 0; ch < c; ch++) {
                    int32_t sum = 1 << (PREC_BITS - 1);
                    for (int i = 0; i < th.cnt[x]; i++) sum += p[(size_t)i * c + ch] * k[i];
                    o[(size_t)x * c + ch] = clip8(sum);
                }
            }
        }
        taps_free(&th);
        if (!vert) return;
        base = tmp;
        bstride = (size_t)ow * c;
        width = ow;
        shift = first;
    }
    for (int y = 0; y < oh; y++) {
        const int32_t *k = tv.k + (size_t)y * tv.ksize;
        const uint8_t *in = base + (size_t)(tv.lo[y] - shift) * bstride;
        uint8_t *o = out + (size_t)y * width * c;
        for (int x = 0; x < width * c; x++) {
            int32_t sum = 1 << (PREC_BITS - 1);
            for (int i = 0; i < tv.cnt[y]; i++) sum += in[(size_t)i * bstride + x] * k[i];
            o[x] = clip8(sum);
        }
    }
    taps_free(&tv);
}

size_t aug_resized_crop_scratch(int oh, int ow, const ImageView *src, CropBox box)
{
    (void)oh;
    return (size_t)ow * box.height * src->c + 1;
}

void aug_resized_crop(uint8_t *out, int oh, int ow, const ImageView *src, CropBox box,
                      void *scratch)
{
    CHECK(box.top >= 0 && box.left >= 0 && box.height > 0 && box.width > 0 &&
              box.top + box.height <= src->h && box.left + box.width <= src->w,
          "crop box %d,%d %dx%d outside a %dx%d image", box.top, box.left, box.height, box.width,
          src->h, src->w);
    const size_t stride = (size_t)src->w * src->c;
    resample(out, oh, ow, src->pix + (size_t)box.top * stride + (size_t)box.left * src->c, stride,
             box.height, box.width, src->c, scratch);
}

/* torchvision's Resize(resize) output size of an h x w image. */
static void resized_size(int h, int w, int resize, int *rh, int *rw)
{
    int shorter = h < w ? h : w, longer = h < w ? w : h;
    if (shorter == resize) {
        *rh = h;
        *rw = w;
        return;
    }
    int l = (int)((double)resize * longer / shorter);
    *rh = h <= w ? resize : l;
    *rw = h <= w ? l : resize;
}

/* Python's round((d) / 2.0) for an integer d: half to even. */
static int half_round(int d)
{
    return (int)rint(d / 2.0);
}

size_t aug_resize_center_crop_scratch(int crop, int resize, const ImageView *src)
{
    (void)crop;
    int rh, rw;
    resized_size(src->h, src->w, resize, &rh, &rw);
    /* The resized image, then the horizontal pass's rows. */
    return (size_t)rh * rw * src->c + (size_t)rw * src->h * src->c + 1;
}

void aug_resize_center_crop(uint8_t *out, int crop, int resize, const ImageView *src,
                            void *scratch)
{
    const int c = src->c;
    int rh, rw;
    resized_size(src->h, src->w, resize, &rh, &rw);
    uint8_t *img = scratch, *tmp = img + (size_t)rh * rw * c;
    resample(img, rh, rw, src->pix, (size_t)src->w * c, src->h, src->w, c, tmp);
    /* CenterCrop: pad to at least crop x crop (left/top get the smaller half), then cut. */
    int pt = rh < crop ? (crop - rh) / 2 : 0, pl = rw < crop ? (crop - rw) / 2 : 0;
    int ph = rh + pt + (rh < crop ? (crop - rh + 1) / 2 : 0);
    int pw = rw + pl + (rw < crop ? (crop - rw + 1) / 2 : 0);
    int top = half_round(ph - crop), left = half_round(pw - crop);
    for (int y = 0; y < crop; y++) {
        int sy = y + top - pt;
        uint8_t *o = out + (size_t)y * crop * c;
        for (int x = 0; x < crop; x++) {
            int sx = x + left - pl;
            if (sy < 0 || sy >= rh || sx < 0 || sx >= rw)
                memset(o + (size_t)x * c, 0, (size_t)c);
            else
                memcpy(o + (size_t)x * c, img + ((size_t)sy * rw + sx) * c, (size_t)c);
        }
    }
}
