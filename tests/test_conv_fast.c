/* The fast convolution paths (pointwise GEMMs on the tensors, cache-blocked im2col, shifted-grid "same" convs with Winograd F(4,3) rows and the outer-product 3x3 dW, phase-plane stride-2 convs, the direct grouped kernel) against the naive forward and backward references with 1, 2 and 3 engine threads, and the eval epilogue (BN, residual add, ReLU) against separate passes. */
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

/* NaN floats after x and dy: a fast path that read past a tensor's last pixel (its masked loads
 * must stop there) would carry NaN into the outputs or gradients, even where the arithmetic
 * would cancel a finite value. */
enum { GUARD = 256 };

static void check_shape(Rng *r, const TuConvShape *s, int threads)
{
    openblas_set_num_threads(threads);
    int OH = conv_out_size(s->H, s->K, s->S, s->P), OW = conv_out_size(s->W, s->K, s->S, s->P);
    long long nx = (long long)s->C * s->N * s->H * s->W;
    long long ny = (long long)s->OC * s->N * OH * OW;
    long long nw = (long long)s->OC * (s->C / s->G) * s->K * s->K;
    long long nws = conv_workspace_floats(s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    float *x = xalloc_floats(nx + GUARD), *xa = xalloc_floats(nx);
    float *w = xalloc_floats(nw), *wa = xalloc_floats(nw);
    float *dy = xalloc_floats(ny + GUARD), *dya = xalloc_floats(ny);
    float *y = xalloc_floats(ny), *yr = xalloc_floats(ny), *yb = xalloc_floats(ny);
    float *dx = xalloc_floats(nx), *dxr = xalloc_floats(nx), *dxb = xalloc_floats(nx);
    float *dw = xalloc_floats(nw), *dwr = xalloc_floats(nw), *dwb = xalloc_floats(nw);
    float *ws = xalloc_floats(nws + 1);
    for (int i = 0; i < GUARD; i++) x[nx + i] = dy[ny + i] = NAN;
    tu_fill_uniform(r, x, nx, -1, 1);
    tu_fill_uniform(r, w, nw, -1, 1);
    tu_fill_uniform(r, dy, ny, -1, 1);
    tu_fabs_copy(xa, x, nx);
    tu_fabs_copy(wa, w, nw);
    tu_fabs_copy(dya, dy, ny);
    /* Gradients start from a nonzero value to check that both paths accumulate. */
    for (long long i = 0; i < nx; i++) dx[i] = dxr[i] = 0.5f;
    for (long long i = 0; i < nw; i++) dw[i] = dwr[i] = -0.25f;
    memset(dxb, 0, (size_t)nx * sizeof(float));
    memset(dwb, 0, (size_t)nw * sizeof(float));

    conv_forward(y, ws, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    conv_forward_ref(yr, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    conv_forward_ref(yb, xa, wa, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    conv_backward(dx, dw, ws, dy, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    conv_backward_ref(dxr, dwr, dy, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    conv_backward_ref(dxb, dwb, dya, xa, wa, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P,
                      s->G);
    for (long long i = 0; i < nx; i++) dxb[i] += 0.5f;
    for (long long i = 0; i < nw; i++) dwb[i] += 0.25f;

    char what[160];
    snprintf(what, sizeof what, "%s (N=%d C=%d %dx%d OC=%d K=%d S=%d P=%d G=%d, %d threads)",
             s->what, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G, threads);
    double taps_x = (double)s->C / s->G * s->K * s->K, taps_y = (double)s->OC / s->G * s->K * s->K;
    tu_expect_close(what, "out", &worst[0], y, yr, yb, ny, taps_x);
    tu_expect_close(what, "dinp", &worst[1], dx, dxr, dxb, nx, taps_y);
    tu_expect_close(what, "dweight", &worst[2], dw, dwr, dwb, nw, (double)s->N * OH * OW);

    /* Eval BN (+ residual add) (+ ReLU or ReLU6) as the conv's epilogue == the separate
     * passes, bit for bit. */
    relu6_capped += tu_check_epilogues(r, what, x, w, y, ws, yr, yb, ny, s->N, s->C, s->H, s->W,
                                       s->OC, s->K, s->S, s->P, s->G);

    /* dinp == NULL is allowed and must leave dweight identical. */
    float *dw2 = xalloc_floats(nw);
    for (long long i = 0; i < nw; i++) dw2[i] = -0.25f;
    conv_backward(NULL, dw2, ws, dy, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    EXPECT(memcmp(dw2, dw, (size_t)nw * sizeof(float)) == 0, "%s: dweight differs without dinp",
           what);
    /* conv_backward_set overwrites dinp: from NaN it must give dX itself (the reference, which
     * started from 0.5, less 0.5), and the same dweight. */
    float *dxs = xalloc_floats(nx);
    for (long long i = 0; i < nx; i++) dxs[i] = NAN, dxr[i] -= 0.5f;
    for (long long i = 0; i < nw; i++) dw2[i] = -0.25f;
    conv_backward_set(dxs, dw2, ws, dy, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P,
                      s->G);
    tu_expect_close(what, "dinp (set)", &worst[1], dxs, dxr, dxb, nx, taps_y);
    EXPECT(memcmp(dw2, dw, (size_t)nw * sizeof(float)) == 0,
           "%s: dweight differs with conv_backward_set", what);
    free(dxs);
    free(dw2);
    float *all[] = {x, xa, w, wa, dy, dya, y, yr, yb, dx, dxr, dxb, dw, dwr, dwb, ws};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

/* Outputs and both gradients are bit-identical with 1, 2 and 3 threads: blocks write disjoint
 * outputs and dW is summed in fixed lanes, whatever thread computes a block. */
static void check_threads_identical(Rng *r, const TuConvShape *s)
{
    int OH = conv_out_size(s->H, s->K, s->S, s->P), OW = conv_out_size(s->W, s->K, s->S, s->P);
    long long nx = (long long)s->C * s->N * s->H * s->W;
    long long ny = (long long)s->OC * s->N * OH * OW;
    long long nw = (long long)s->OC * (s->C / s->G) * s->K * s->K;
    long long nws = conv_workspace_floats(s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
    float *x = xalloc_floats(nx), *w = xalloc_floats(nw), *dy = xalloc_floats(ny);
    float *ws = xalloc_floats(nws + 1);
    float *res[3][3];
    tu_fill_uniform(r, x, nx, -1, 1);
    tu_fill_uniform(r, w, nw, -1, 1);
    tu_fill_uniform(r, dy, ny, -1, 1);
    for (int t = 0; t < 3; t++) {
        openblas_set_num_threads(t + 1);
        res[t][0] = xalloc_floats(ny);
        res[t][1] = xalloc_floats(nx);
        res[t][2] = xalloc_floats(nw);
        memset(res[t][1], 0, (size_t)nx * sizeof(float));
        memset(res[t][2], 0, (size_t)nw * sizeof(float));
        conv_forward(res[t][0], ws, x, w, s->N, s->C, s->H, s->W, s->OC, s->K, s->S, s->P, s->G);
        conv_backward(res[t][1], res[t][2], ws, dy, x, w, s->N, s->C, s->H, s->W, s->OC, s->K,
                      s->S, s->P, s->G);
    }
    for (int t = 1; t < 3; t++)
        EXPECT(memcmp(res[0][0], res[t][0], (size_t)ny * sizeof(float)) == 0 &&
                   memcmp(res[0][1], res[t][1], (size_t)nx * sizeof(float)) == 0 &&
                   memcmp(res[0][2], res[t][2], (size_t)nw * sizeof(float)) == 0,
               "%s: results differ between 1 and %d threads", s->what, t + 1);
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 3; k++) free(res[t][k]);
    free(x);
    free(w);
    free(dy);
    free(ws);
}

int main(void)
{
    Rng r;
    rng_init(&r, 7, 3);
    const TuConvShape shapes[] = {
        {3, 16, 12, 12, 16, 3, 1, 1, 1, "same 3x3"},
        {2, 5, 7, 9, 11, 3, 1, 1, 1, "same 3x3, odd (pruned) widths, non-square"},
        {2, 3, 8, 8, 7, 5, 1, 2, 1, "same 5x5"},
        /* 40 filters: the 3x3 dW kernel's two-vector and one-vector forms (with 16-lane
         * vectors), over an odd channel count. */
        {3, 7, 9, 10, 40, 3, 1, 1, 1, "same 3x3, 40 filters, 7 channels"},
        /* (16+16)*29*29 floats of grid per image: 7 images per block, so 9 images make a full
         * block and a short one (and give each of 2 threads a block). */
        {9, 16, 28, 28, 16, 3, 1, 1, 1, "same 3x3, two blocks"},
        /* Four blocks: the Winograd dW sums more than two lanes. */
        {22, 16, 28, 28, 16, 3, 1, 1, 1, "same 3x3, four blocks"},
        /* Rows of 3 pixels + 1 padding: the vector holding a block's last centre reaches past
         * the padding into where a next image would be, which must be neither read nor
         * written (a shift_lane_map mask cut at the block's end). */
        {3, 4, 5, 3, 6, 3, 1, 1, 1, "same 3x3, tiny images"},
        /* Widths that are a multiple of 4 run Winograd on rows without a padding column: a
         * group that starts or ends a row must not see the neighbouring row's pixels (at W = 4
         * every group does both). */
        {3, 5, 4, 4, 6, 3, 1, 1, 1, "same 3x3, 4x4 images (one Winograd group a row)"},
        {5, 6, 3, 8, 5, 3, 1, 1, 1, "same 3x3, 3x8 images"},
        /* Pointwise convs (conv_point.c): GEMMs on the tensors over pixel blocks. Pixel
         * counts that are not whole tiles (a partial last tile read from zero-padded copies),
         * odd and MobileNetV2-like widths, one-pixel images. */
        {4, 13, 10, 10, 9, 1, 1, 0, 1, "pointwise"},
        {1, 7, 1, 1, 37, 1, 1, 0, 1, "pointwise, one pixel"},
        {5, 37, 3, 5, 7, 1, 1, 0, 1, "pointwise, 3x5 images"},
        {3, 16, 4, 4, 96, 1, 1, 0, 1, "pointwise, expansion 16 -> 96"},
        {2, 160, 4, 4, 37, 1, 1, 0, 1, "pointwise, projection 160 -> 37"},
        {4, 96, 8, 8, 7, 1, 1, 0, 1, "pointwise, 96 -> 7, 8x8"},
        {1, 7, 16, 16, 160, 1, 1, 0, 1, "pointwise, 7 -> 160, 16x16"},
        {2, 1, 3, 5, 1, 1, 1, 0, 1, "pointwise, one channel, one filter"},
        /* (96 + 37) floats a pixel: at most 1464 pixels a block, so 23 images of 8x8 make two
         * blocks, the last one shorter and ending in a partial tile; 45 of 16x16 make eight
         * (all the dW lanes). */
        {23, 96, 8, 8, 37, 1, 1, 0, 1, "pointwise, two blocks"},
        {45, 37, 16, 16, 96, 1, 1, 0, 1, "pointwise, eight blocks"},
        /* B is packed in chunks of POINT_PACK_FLOATS (65536) floats: 13 channels make chunks of
         * 5040 pixels (420 tiles of 12, 210 of 24, 105 of 48), so a 6400-pixel block holds two
         * and a partial tile; past 65536 / GT_NR rows a tile (5461 with 4-lane tiles, fewer for
         * wider) the reduction goes in slices, here in the forward (5500 -> 5) and in the
         * backward's dX (5 -> 5500). */
        {4, 13, 40, 40, 10, 1, 1, 0, 1, "pointwise, two packed chunks"},
        {2, 5500, 8, 8, 5, 1, 1, 0, 1, "pointwise, 5500 channels (reduction in slices)"},
        {2, 5, 8, 8, 5500, 1, 1, 0, 1, "pointwise, 5500 filters (dX's reduction in slices)"},
        /* Slices of at most 65536 / GT_NR rows: these counts once rounded to longer slices,
         * whose chunks then held no tile (AVX-512: 4096, 5461; AVX2: 5461, 8192; SSE: 16384). */
        {1, 5461, 4, 4, 3, 1, 1, 0, 1, "pointwise, 5461 channels"},
        {1, 16384, 2, 2, 3, 1, 1, 0, 1, "pointwise, 16384 channels"},
        {1, 3, 2, 2, 8192, 1, 1, 0, 1, "pointwise, 8192 filters"},
        /* Strided 1x1 convs: the forward gathers x while packing (odd sizes, a partial tile,
         * two blocks, slices), the backward runs on im2col blocks. */
        {5, 16, 7, 7, 24, 1, 2, 0, 1, "pointwise stride 2, 7x7, partial tile"},
        {3, 9, 8, 10, 13, 1, 3, 0, 1, "pointwise stride 3, 8x10"},
        {40, 37, 14, 14, 96, 1, 2, 0, 1, "pointwise stride 2, two blocks"},
        {2, 5500, 16, 16, 5, 1, 2, 0, 1, "pointwise stride 2, 5500 channels (slices)"},
        {3, 16, 12, 12, 32, 3, 2, 1, 1, "strided 3x3 (phase planes)"},
        {5, 9, 7, 7, 3, 3, 2, 1, 1, "strided, odd size"},
        {2, 4, 6, 6, 6, 3, 1, 0, 1, "unpadded 3x3 (im2col blocks)"},
        {2, 3, 9, 9, 5, 2, 2, 0, 1, "even kernel"},
        /* im2col blocks: an image whose columns (147 taps x 40 x 40) exceed the block goes in
         * runs of output rows (here 33 and 7); GEMM tiles are packed in chunks unless a tile's
         * taps exceed the buffer (5472 > 5461, the most a 4-lane tile packs). */
        {2, 3, 80, 80, 8, 7, 2, 3, 1, "7x7 stride-2 stem, output in row runs"},
        {2, 608, 7, 7, 5, 3, 3, 1, 1, "3x3 stride 3, 5472 taps (B in place)"},
        /* 144 taps x 14*14 pixels per image: 6 images per block, so 8 make two blocks. */
        {8, 16, 28, 28, 24, 3, 2, 1, 1, "strided, phase planes, one block of 8 images"},
        {20, 16, 28, 28, 20, 3, 2, 1, 1, "strided, phase planes over three blocks"},
        /* Past 65536 / (2 * GT_NR) rows of (phase, channel, tap) (C > 303 with 4-lane tiles)
         * the phase-plane GEMM's reduction goes in slices; at 306 channels a slice ends inside
         * a channel's taps with 4-, 8- and 16-lane tiles alike. */
        {2, 306, 6, 6, 5, 3, 2, 1, 1, "strided, 306 channels (reduction in slices)"},
        {2, 3, 1, 1, 5, 3, 1, 1, 1, "same 3x3, 1x1 images"},
        {4, 7, 1, 9, 9, 3, 1, 1, 1, "same 3x3, one-row images"},
        {3, 5, 2, 6, 7, 3, 2, 1, 1, "strided, 2x6 images"},
        /* Phase rows of 18: whole vectors and a tail when the rows are split and merged. */
        {2, 3, 4, 36, 5, 3, 2, 1, 1, "strided, 4x36 images"},
        {2, 6, 6, 6, 4, 3, 1, 1, 2, "grouped"},
        {2, 8, 6, 6, 8, 3, 1, 1, 8, "depthwise"},
        /* Weight packing is split over threads from 16384 floats of packed weights on. */
        {2, 33, 6, 6, 37, 3, 1, 1, 1, "same 3x3, 37 filters over 33 channels (threaded packing)"},
        {2, 48, 8, 8, 45, 3, 2, 1, 1, "strided, 45 filters over 48 channels (threaded packing)"},
    };
    int n = (int)(sizeof shapes / sizeof shapes[0]);
    for (int t = 1; t <= 3; t++)
        for (int i = 0; i < n; i++) check_shape(&r, &shapes[i], t);
    for (int i = 0; i < n; i++) check_threads_identical(&r, &shapes[i]);
    printf("fast conv vs reference, %d shapes x {1, 2, 3} threads: worst error / bound: out %.3g, "
           "dinp %.3g, dweight %.3g\n", n, worst[0], worst[1], worst[2]);
    EXPECT(relu6_capped > 0, "no ReLU6 epilogue output reached the cap: its clamp went untested");
    return harness_finish("test_conv_fast");
}
