/* Small helpers shared by the layer-kernel tests: seeded random fills, double-precision dots and the conv eval-epilogue check. */
#ifndef LEGR_TEST_LAYERS_TESTUTIL_H
#define LEGR_TEST_LAYERS_TESTUTIL_H

#include "legr/layers.h"
#include "legr/rng.h"
#include "legr/util.h"
#include "harness.h"
#include "../src/nn/kernels.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A convolution under test: batch, channels, size, filters, kernel, stride, padding, groups. */
typedef struct {
    int N, C, H, W, OC, K, S, P, G;
    const char *what;
} TuConvShape;

/* x[i] ~ U(lo, hi). */
static inline void tu_fill_uniform(Rng *r, float *x, long long n, double lo, double hi)
{
    for (long long i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * rng_uniform(r));
}

/* sum a[i] * b[i] in double. */
static inline double tu_dot(const float *a, const float *b, long long n)
{
    double s = 0.0;
    for (long long i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* sum |a[i] * b[i]| in double: the scale against which rounding in tu_dot-like sums is judged. */
static inline double tu_dot_abs(const float *a, const float *b, long long n)
{
    double s = 0.0;
    for (long long i = 0; i < n; i++) s += fabs((double)a[i] * b[i]);
    return s;
}

/* The eval epilogue of conv_forward_affine (BN, + residual add, + ReLU or ReLU6) against the
 * separate passes (bn_forward_eval, then add_relu_forward, add_forward, relu_forward or
 * relu6_forward), bit for bit, for the conv of x by w whose plain output y (ny floats) is given;
 * yr and yb are ny-float scratch, ws the conv workspace (or NULL). The ReLU6 case runs with the
 * BN's gain x8 (exact in both scales) so that outputs reach 6. Returns how many outputs of the
 * ReLU6 case reached the cap, so that a caller can insist that the clamp was exercised. */
static inline long long tu_check_epilogues(Rng *r, const char *what, const float *x,
                                           const float *w, const float *y, float *ws, float *yr,
                                           float *yb, long long ny, int N, int C, int H, int W,
                                           int OC, int K, int S, int P, int G)
{
    float *g = xalloc_floats(4 * (size_t)OC);
    float *beta = g + OC, *mean = g + 2 * OC, *var = g + 3 * OC;
    float *scale = xalloc_floats((size_t)OC), *res = xalloc_floats((size_t)ny);
    tu_fill_uniform(r, g, OC, 0.5, 1.5);
    tu_fill_uniform(r, beta, OC, -0.5, 0.5);
    tu_fill_uniform(r, mean, OC, -0.3, 0.3);
    tu_fill_uniform(r, var, OC, 0.5, 2);
    tu_fill_uniform(r, res, ny, -1, 1);
    for (int c = 0; c < OC; c++) scale[c] = (float)(g[c] / sqrt((double)var[c] + 1e-5f));
    static const char *const modes[5] = {"", "+ReLU", "+residual+ReLU", "+residual", "+ReLU6"};
    long long capped = 0;
    for (int mode = 0; mode < 5; mode++) {
        int relu = mode == 1 || mode == 2, add = mode == 2 || mode == 3, six = mode == 4;
        float gain = six ? 8.0f : 1.0f;
        for (int c = 0; c < OC; c++) g[c] *= gain, scale[c] *= gain;
        bn_forward_eval(yb, y, g, beta, mean, var, OC, (int)(ny / OC), 1e-5f);
        if (add && relu)
            add_relu_forward(yb, yb, res, ny);
        else if (add)
            add_forward(yb, yb, res, ny);
        else if (relu)
            relu_forward(yb, yb, ny);
        else if (six)
            relu6_forward(yb, yb, ny);
        conv_forward_affine(yr, ws, x, w, N, C, H, W, OC, K, S, P, G, mean, scale, beta,
                            add ? res : NULL, relu ? INFINITY : six ? 6.0f : 0.0f);
        EXPECT(memcmp(yr, yb, (size_t)ny * sizeof(float)) == 0,
               "%s: conv with BN%s epilogue differs from the separate passes", what, modes[mode]);
        for (long long i = 0; six && i < ny; i++) capped += yb[i] == 6.0f;
        for (int c = 0; c < OC; c++) g[c] /= gain, scale[c] /= gain;
    }
    free(g);
    free(scale);
    free(res);
    return capped;
}

/* dst[i] = |src[i]|: the operands of a reference run whose result bounds the rounding error. */
static inline void tu_fabs_copy(float *dst, const float *src, long long n)
{
    for (long long i = 0; i < n; i++) dst[i] = fabsf(src[i]);
}

/* got against want elementwise: |got - want| <= 8 * terms * eps * bound + 1e-6, bound being the
 * reference computed on |values| (the magnitude a float sum of that many terms may lose
 * precision against). NaN fails (it compares false with anything). *worst is raised to the
 * largest error over its tolerance. */
static inline void tu_expect_close(const char *what, const char *which, double *worst,
                                   const float *got, const float *want, const float *bound,
                                   long long n, double terms)
{
    double w = 0.0;
    long long bad = -1;
    for (long long i = 0; i < n; i++) {
        double tol = 8.0 * terms * FLT_EPSILON * bound[i] + 1e-6;
        double e = fabs((double)got[i] - want[i]) / tol;
        if (isnan(e)) e = INFINITY;
        if (e > w) w = e;
        if (e > 1.0 && bad < 0) bad = i;
    }
    if (w > *worst) *worst = w;
    EXPECT(bad < 0, "%s %s[%lld] = %.9g, reference %.9g", what, which, bad,
           bad < 0 ? 0.0 : got[bad], bad < 0 ? 0.0 : want[bad]);
}

#endif
