/* Grouped and depthwise convolution (conv_group.c, reached through conv_forward, conv_backward, conv_backward_set and the eval epilogue) against the naive references over many shapes at 1, 2 and 3 engine threads, bit-identical across thread counts, and with no workspace. */
#include "harness.h"
#include "layers_testutil.h"
#include "legr/layers.h"
#include "legr/util.h"
#include "../src/nn/kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Outputs of the ReLU6 epilogue cases that reached the cap (the clamp must be exercised). */
static long long relu6_capped;

static double worst[3]; /* max error / bound for out, dinp, dweight */

/* NaN floats after x and dy: a kernel that read past a tensor's end would carry NaN into its
 * results. */
enum { GUARD = 64 };

/* Input pixels no output reads (stride > 1 leaving the last columns or rows out) are set to NaN:
 * the kernels must not multiply them, even by a zero gradient. Returns how many. */
static long long poison_unread(float *x, const TuConvShape *s)
{
    int OH = conv_out_size(s->H, s->K, s->S, s->P), OW = conv_out_size(s->W, s->K, s->S, s->P);
    int last_r = (OH - 1) * s->S + s->K - 1 - s->P, last_c = (OW - 1) * s->S + s->K - 1 - s->P;
    long long n = 0;
    for (long long pl = 0; pl < (long long)s->C * s->N; pl++)
        for (int ih = 0; ih < s->H; ih++)
            for (int iw = 0; iw < s->W; iw++)
                if (ih > last_r || iw > last_c) {
                    x[(pl * s->H + ih) * s->W + iw] = NAN;
                    n++;
                }
    return n;
}

/* The reference treats a poisoned pixel's NaN like any value it never reads: dX there is 0. */
static void check_shape(Rng *r, const TuConvShape *s, int threads)
{
    openblas_set_num_threads(threads);
    int OH = conv_out_size(s->H, s->K, s->S, s->P), OW = conv_out_size(s->W, s->K, s->S, s->P);
    long long nx = (long long)s->C * s->N * s->H * s->W;
    long long ny = (long long)s->OC * s->N * OH * OW;
    long long nw = (long long)s->OC * (s->C / s->G) * s->K * s->K;
    EXPECT(conv_workspace_floats(s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G) == 0,
           "%s: a grouped conv needs no workspace", s->what);
    float *x = xalloc_floats(nx + GUARD), *xa = xalloc_floats(nx);
    float *w = xalloc_floats(nw), *wa = xalloc_floats(nw);
    float *dy = xalloc_floats(ny + GUARD), *dya = xalloc_floats(ny);
    float *y = xalloc_floats(ny), *yr = xalloc_floats(ny), *yb = xalloc_floats(ny);
    float *dx = xalloc_floats(nx), *dxr = xalloc_floats(nx), *dxb = xalloc_floats(nx);
    float *dw = xalloc_floats(nw), *dwr = xalloc_floats(nw), *dwb = xalloc_floats(nw);
    for (int i = 0; i < GUARD; i++) x[nx + i] = dy[ny + i] = NAN;
    tu_fill_uniform(r, x, nx, -1, 1);
    tu_fill_uniform(r, w, nw, -1, 1);
    tu_fill_uniform(r, dy, ny, -1, 1);
    tu_fabs_copy(xa, x, nx);
    tu_fabs_copy(wa, w, nw);
    tu_fabs_copy(dya, dy, ny);
    /* The references read no unread pixel either, so they stay finite; xa keeps the finite
     * magnitudes for the bounds. */
    long long poisoned = poison_unread(x, s);
    for (long long i = 0; i < nx; i++) dx[i] = dxr[i] = 0.5f;
    for (long long i = 0; i < nw; i++) dw[i] = dwr[i] = -0.25f;
    memset(dxb, 0, (size_t)nx * sizeof(float));
    memset(dwb, 0, (size_t)nw * sizeof(float));

    conv_forward(y, NULL, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    conv_forward_ref(yr, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    conv_forward_ref(yb, xa, wa, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    conv_backward(dx, dw, NULL, dy, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    conv_backward_ref(dxr, dwr, dy, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    conv_backward_ref(dxb, dwb, dya, xa, wa, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P,
                      s->G);
    for (long long i = 0; i < nx; i++) dxb[i] += 0.5f;
    for (long long i = 0; i < nw; i++) dwb[i] += 0.25f;

    char what[192];
    snprintf(what, sizeof what,
             "%s (N=%d C=%d %dx%d OC=%d K=%d S=%d P=%d G=%d, %lld unread pixels, %d threads)",
             s->what, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G, poisoned, threads);
    double taps_x = (double)s->C / s->G * s->K * s->K, taps_y = (double)s->OC / s->G * s->K * s->K;
    tu_expect_close(what, "out", &worst[0], y, yr, yb, ny, taps_x);
    tu_expect_close(what, "dinp", &worst[1], dx, dxr, dxb, nx, taps_y);
    tu_expect_close(what, "dweight", &worst[2], dw, dwr, dwb, nw, (double)s->N * OH * OW);

    /* The public entry points are the same kernels. */
    float *y2 = xalloc_floats(ny);
    conv_group_forward(y2, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    EXPECT(memcmp(y2, y, (size_t)ny * sizeof(float)) == 0,
           "%s: conv_group_forward differs from conv_forward", what);
    free(y2);

    /* Eval BN (+ residual add) (+ ReLU or ReLU6) as the conv's epilogue == the separate
     * passes, bit for bit. */
    relu6_capped += tu_check_epilogues(r, what, x, w, y, NULL, yr, yb, ny, s->N, s->C, s->H, s->W,
                                       s->OC, s->K, s->S, s->P, s->G);

    /* dinp == NULL leaves dweight identical. */
    float *dw2 = xalloc_floats(nw);
    for (long long i = 0; i < nw; i++) dw2[i] = -0.25f;
    conv_backward(NULL, dw2, NULL, dy, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P,
                  s->G);
    EXPECT(memcmp(dw2, dw, (size_t)nw * sizeof(float)) == 0, "%s: dweight differs without dinp",
           what);
    /* conv_backward_set overwrites dinp: from NaN it must give dX itself (the reference, which
     * started from 0.5, less 0.5) and the same dweight; conv_group_backward accumulates like
     * conv_backward, bit for bit. */
    float *dxs = xalloc_floats(nx), *dxg = xalloc_floats(nx);
    for (long long i = 0; i < nx; i++) dxs[i] = NAN, dxr[i] -= 0.5f, dxg[i] = 0.5f;
    for (long long i = 0; i < nw; i++) dw2[i] = -0.25f;
    conv_backward_set(dxs, dw2, NULL, dy, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P,
                      s->G);
    tu_expect_close(what, "dinp (set)", &worst[1], dxs, dxr, dxb, nx, taps_y);
    EXPECT(memcmp(dw2, dw, (size_t)nw * sizeof(float)) == 0,
           "%s: dweight differs with conv_backward_set", what);
    for (long long i = 0; i < nw; i++) dw2[i] = -0.25f;
    conv_group_backward(dxg, dw2, dy, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    EXPECT(memcmp(dxg, dx, (size_t)nx * sizeof(float)) == 0 &&
               memcmp(dw2, dw, (size_t)nw * sizeof(float)) == 0,
           "%s: conv_group_backward differs from conv_backward", what);
    free(dxs);
    free(dxg);
    free(dw2);
    float *all[] = {x, xa, w, wa, dy, dya, y, yr, yb, dx, dxr, dxb, dw, dwr, dwb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* Output, dinp (accumulated and set) and dweight are bit-identical at 1, 2 and 3 threads. */
static void check_threads_identical(Rng *r, const TuConvShape *s)
{
    int OH = conv_out_size(s->H, s->K, s->S, s->P), OW = conv_out_size(s->W, s->K, s->S, s->P);
    long long nx = (long long)s->C * s->N * s->H * s->W;
    long long ny = (long long)s->OC * s->N * OH * OW;
    long long nw = (long long)s->OC * (s->C / s->G) * s->K * s->K;
    float *x = xalloc_floats(nx), *w = xalloc_floats(nw), *dy = xalloc_floats(ny);
    float *res[3][4];
    tu_fill_uniform(r, x, nx, -1, 1);
    tu_fill_uniform(r, w, nw, -1, 1);
    tu_fill_uniform(r, dy, ny, -1, 1);
    for (int t = 0; t < 3; t++) {
        openblas_set_num_threads(t + 1);
        res[t][0] = xalloc_floats(ny);
        res[t][1] = xalloc_floats(nx);
        res[t][2] = xalloc_floats(nw);
        res[t][3] = xalloc_floats(nx);
        memset(res[t][1], 0, (size_t)nx * sizeof(float));
        memset(res[t][2], 0, (size_t)nw * sizeof(float));
        conv_forward(res[t][0], NULL, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P,
                     s->G);
        conv_backward(res[t][1], res[t][2], NULL, dy, x, w, s->N, s->C, s->H, s->W, s->OC, s->K,
                      s->S, s->P, s->G);
        conv_backward_set(res[t][3], res[t][2], NULL, dy, x, w, s->N, s->C, s->H, s->W, s->OC,
                          s->K, s->S, s->P, s->G);
    }
    const long long sizes[4] = {ny, nx, nw, nx};
    for (int t = 1; t < 3; t++) {
        int same = 1;
        for (int k = 0; k < 4; k++)
            same &= memcmp(res[0][k], res[t][k], (size_t)sizes[k] * sizeof(float)) == 0;
        EXPECT(same, "%s: results differ between 1 and %d threads", s->what, t + 1);
    }
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 4; k++) free(res[t][k]);
    free(x);
    free(w);
    free(dy);
}

int main(void)
{
    Rng r;
    rng_init(&r, 11, 5);
    /* Widths around multiples of 4, 8 and 16 lanes (row tails), heights around the 3x3 tiles'
     * 6 and 12 rows (leftover rows), strides 1 and 2 on even and odd sizes. */
    const TuConvShape shapes[] = {
        {2, 8, 6, 6, 8, 3, 1, 1, 8, "depthwise 3x3"},
        {3, 5, 7, 9, 5, 3, 1, 1, 5, "depthwise 3x3, odd sizes"},
        {2, 4, 1, 1, 4, 3, 1, 1, 4, "depthwise 3x3, 1x1 images"},
        {2, 4, 2, 2, 4, 3, 1, 1, 4, "depthwise 3x3, 2x2 images"},
        {1, 3, 1, 17, 3, 3, 1, 1, 3, "depthwise 3x3, one-row images"},
        {5, 3, 13, 16, 3, 3, 1, 1, 3, "depthwise 3x3, 13 rows, 16 columns"},
        {2, 3, 25, 33, 3, 3, 1, 1, 3, "depthwise 3x3, 25x33"},
        {4, 6, 7, 7, 6, 3, 1, 1, 6, "depthwise 3x3, 7x7 (MobileNetV2's last stage)"},
        {1, 2, 112, 112, 2, 3, 1, 1, 2, "depthwise 3x3, 112x112"},
        /* Output rows in tiles of CG_TR (6, or 12 with 16 lanes), then of 4, 2 and 1. */
        {2, 4, 8, 8, 4, 3, 1, 1, 4, "depthwise 3x3, 8x8"},
        {2, 3, 11, 9, 3, 3, 1, 1, 3, "depthwise 3x3, 11 rows"},
        {2, 3, 9, 10, 3, 3, 1, 1, 3, "depthwise 3x3, 9 rows"},
        {2, 4, 16, 16, 4, 3, 2, 1, 4, "depthwise 3x3 stride 2, 16x16"},
        {2, 3, 22, 21, 3, 3, 2, 1, 3, "depthwise 3x3 stride 2, 11 rows out"},
        {2, 3, 10, 10, 3, 3, 2, 1, 3, "depthwise 3x3 stride 2, 5 rows out"},
        {2, 4, 8, 8, 4, 3, 2, 1, 4, "depthwise 3x3 stride 2"},
        {3, 5, 7, 9, 5, 3, 2, 1, 5, "depthwise 3x3 stride 2, odd sizes"},
        {2, 3, 1, 1, 3, 3, 2, 1, 3, "depthwise 3x3 stride 2, 1x1 images"},
        {2, 3, 2, 2, 3, 3, 2, 1, 3, "depthwise 3x3 stride 2, 2x2 images"},
        {2, 3, 3, 34, 3, 3, 2, 1, 3, "depthwise 3x3 stride 2, 3x34"},
        {3, 4, 14, 14, 4, 3, 2, 1, 4, "depthwise 3x3 stride 2, 14x14"},
        {2, 3, 27, 31, 3, 3, 2, 1, 3, "depthwise 3x3 stride 2, 27x31"},
        {1, 2, 112, 112, 2, 3, 2, 1, 2, "depthwise 3x3 stride 2, 112x112"},
        {1, 2, 113, 111, 2, 3, 2, 1, 2, "depthwise 3x3 stride 2, 113x111"},
        {3, 4, 9, 10, 4, 3, 1, 0, 4, "depthwise 3x3 unpadded"},
        {3, 4, 10, 9, 4, 3, 2, 0, 4, "depthwise 3x3 stride 2 unpadded (unread pixels)"},
        {2, 4, 9, 11, 4, 5, 1, 2, 4, "depthwise 5x5"},
        {3, 4, 12, 13, 4, 5, 2, 2, 4, "depthwise 5x5 stride 2"},
        {2, 3, 9, 9, 3, 7, 1, 3, 3, "depthwise 7x7"},
        {2, 3, 10, 11, 3, 3, 3, 1, 3, "depthwise 3x3 stride 3"},
        {2, 4, 8, 9, 4, 2, 2, 0, 4, "depthwise 2x2 stride 2"},
        {2, 4, 5, 6, 8, 3, 1, 1, 4, "depthwise, channel multiplier 2"},
        {3, 4, 9, 8, 12, 3, 2, 1, 4, "depthwise stride 2, channel multiplier 3"},
        {2, 6, 6, 7, 4, 3, 1, 1, 2, "grouped G=2, 3 channels -> 2 filters a group"},
        {3, 8, 9, 9, 12, 3, 2, 1, 4, "grouped G=4, 2 channels -> 3 filters a group"},
        {2, 8, 7, 5, 8, 5, 1, 2, 2, "grouped G=2 5x5"},
        {1, 12, 11, 10, 8, 3, 2, 1, 4, "grouped G=4 stride 2"},
        {4, 6, 4, 4, 4, 1, 1, 0, 2, "grouped pointwise"},
        {2, 6, 9, 7, 6, 1, 2, 0, 3, "grouped 1x1 stride 2"},
        /* Enough work that the kernels split over threads (units: (group, image) forward,
         * groups backward). */
        {4, 32, 28, 28, 32, 3, 1, 1, 32, "depthwise 3x3, 32 channels 28x28"},
        {3, 24, 20, 20, 24, 3, 2, 1, 24, "depthwise 3x3 stride 2, 24 channels"},
        {2, 12, 17, 15, 18, 3, 2, 1, 6, "grouped G=6 stride 2, threaded"},
        {5, 3, 16, 16, 3, 3, 1, 1, 3, "depthwise, fewer groups than images"},
    };
    int n = (int)(sizeof shapes / sizeof shapes[0]);
    for (int t = 1; t <= 3; t++)
        for (int i = 0; i < n; i++) check_shape(&r, &shapes[i], t);
    for (int i = 0; i < n; i++) check_threads_identical(&r, &shapes[i]);
    printf("grouped conv vs reference, %d shapes x {1, 2, 3} threads: worst error / bound: out "
           "%.3g, dinp %.3g, dweight %.3g\n", n, worst[0], worst[1], worst[2]);
    EXPECT(relu6_capped > 0, "no ReLU6 epilogue output reached the cap: its clamp went untested");
    return harness_finish("test_conv_group");
}
