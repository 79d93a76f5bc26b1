/* Hand-computed forward (and a few backward) cases for every layer kernel, small enough to check on paper. */
#include "harness.h"
#include "legr/layers.h"
#include "legr/util.h"

#include <math.h>
#include <stdlib.h>

/* Exact comparisons for integer-valued cases; `tol` for those with roots and logs. */
static void expect_floats(const char *what, const float *got, const float *want, int n, double tol)
{
    for (int i = 0; i < n; i++)
        EXPECT(fabs((double)got[i] - want[i]) <= tol, "%s[%d] = %.9g, want %.9g", what, i, got[i],
               want[i]);
}

/* Runs both conv_forward (the fast path) and conv_forward_ref on one hand case. */
static void expect_conv(const char *what, const float *x, const float *w, const float *want,
                        int N, int C, int H, int W, int OC, int K, int S, int P, int G)
{
    float out[64];
    float *ws = xalloc_floats((size_t)conv_workspace_floats(N, C, H, W, OC, K, S, P, G) + 1);
    int ny = OC * N * conv_out_size(H, K, S, P) * conv_out_size(W, K, S, P);
    if (ny > 64) abort();
    conv_forward(out, ws, x, w, N, C, H, W, OC, K, S, P, G);
    expect_floats(what, out, want, ny, 0.0);
    conv_forward_ref(out, x, w, N, C, H, W, OC, K, S, P, G);
    expect_floats(what, out, want, ny, 0.0);
    free(ws);
}

static void test_conv(void)
{
    const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}; /* one 3x3 image, rows 123 / 456 / 789 */

    /* 2x2 kernel [[1,2],[3,4]], no padding, stride 1: each output is
     * 1*x[i][j] + 2*x[i][j+1] + 3*x[i+1][j] + 4*x[i+1][j+1]:
     * (0,0) 1+4+12+20 = 37, (0,1) 2+6+15+24 = 47, (1,0) 4+10+21+32 = 67, (1,1) 5+12+24+36 = 77. */
    const float w2[4] = {1, 2, 3, 4};
    const float want2[4] = {37, 47, 67, 77};
    expect_conv("conv 2x2", x, w2, want2, 1, 1, 3, 3, 1, 2, 1, 0, 1);

    /* 3x3 box of ones, padding 1, stride 2: OH = (3+2-3)/2+1 = 2; output (i,j) sums the 3x3
     * window centred on x[2i][2j], clipped by the zero padding:
     * (0,0) 1+2+4+5 = 12, (0,1) 2+3+5+6 = 16, (1,0) 4+5+7+8 = 24, (1,1) 5+6+8+9 = 28. */
    const float w3[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    const float want3[4] = {12, 16, 24, 28};
    expect_conv("conv 3x3 s2 p1", x, w3, want3, 1, 1, 3, 3, 1, 3, 2, 1, 1);

    /* Channel-major batch: C=2, N=2, 1x2 images; inp rows are (c0: n0 1 2, n1 3 4) and
     * (c1: n0 5 6, n1 7 8). */
    const float xb[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    /* 1x1, G=1, OC=1, weights (1, 10): out = x_c0 + 10 x_c1 = 51 62 73 84. */
    const float w11[2] = {1, 10};
    const float want11[4] = {51, 62, 73, 84};
    expect_conv("conv 1x1", xb, w11, want11, 2, 2, 1, 2, 1, 1, 1, 0, 1);
    /* Depthwise (G = C = OC = 2), weights (2, -1): out_c0 = 2 x_c0, out_c1 = -x_c1. */
    const float wdw[2] = {2, -1};
    const float wantdw[8] = {2, 4, 6, 8, -5, -6, -7, -8};
    expect_conv("conv depthwise", xb, wdw, wantdw, 2, 2, 1, 2, 2, 1, 1, 0, 2);
    /* Same depthwise weights with padding 1: OH = 3, OW = 4 and the border reads zeros, so each
     * 3x4 output plane is zero except its middle row, which is 0, w*x0, w*x1, 0. */
    float wantp[48] = {0};
    for (int c = 0; c < 2; c++)
        for (int n = 0; n < 2; n++)
            for (int j = 0; j < 2; j++)
                wantp[((c * 2 + n) * 3 + 1) * 4 + 1 + j] = wdw[c] * xb[(c * 2 + n) * 2 + j];
    expect_conv("conv depthwise p1", xb, wdw, wantp, 2, 2, 1, 2, 2, 1, 1, 1, 2);
}

static void test_im2col(void)
{
    /* C=1, N=2, 1x3 images (1 2 3) and (4 5 6); K=3, S=1, P=1 -> OH = (1+2-3)+1 = 1, OW = 3,
     * col (9, N*OH*OW = 6). Row (kh=1, kw=0) reads x[0, ow-1]: 0 1 2 for sample 0 and 0 4 5 for
     * sample 1; row (kh=0, *) reads the padding row above: all 0; the centre row (1,1) is x. */
    const float x[6] = {1, 2, 3, 4, 5, 6};
    float col[9 * 6];
    for (int i = 0; i < 9 * 6; i++) col[i] = 99; /* must be overwritten */
    im2col(col, x, 2, 1, 1, 3, 3, 1, 1);
    const float want3[6] = {0, 1, 2, 0, 4, 5};
    const float want4[6] = {1, 2, 3, 4, 5, 6};
    const float want0[6] = {0, 0, 0, 0, 0, 0};
    expect_floats("im2col row (1,0)", col + 3 * 6, want3, 6, 0.0);
    expect_floats("im2col row (1,1)", col + 4 * 6, want4, 6, 0.0);
    expect_floats("im2col row (0,1)", col + 1 * 6, want0, 6, 0.0);
    /* col2im_acc of row (1,0) alone adds each entry back to the pixel it came from (onto 10s):
     * x[.][0] gets the entry at ow=1 (1 and 4), x[.][1] the one at ow=2 (2 and 5), x[.][2]
     * nothing; the zero read from padding at ow=0 is dropped. */
    float back[6] = {10, 10, 10, 10, 10, 10};
    float rowonly[9 * 6] = {0};
    for (int i = 0; i < 6; i++) rowonly[3 * 6 + i] = col[3 * 6 + i];
    col2im_acc(back, rowonly, 2, 1, 1, 3, 3, 1, 1);
    const float wantb[6] = {11, 12, 10, 14, 15, 10};
    expect_floats("col2im_acc", back, wantb, 6, 0.0);
}

static void test_bn(void)
{
    /* C=2, M=4. Channel 0 = 1 2 3 4: mean 2.5, biased var 1.25 (unbiased 5/3), rstd =
     * 1/sqrt(1.25 + 1e-5) = 0.894423613; with gamma 2, beta 1: out = 2*(x-2.5)*rstd + 1 =
     * -1.68327084, 0.105576387, 1.89442361, 3.68327084. Channel 1 = 0 0 0 0: var 0, rstd =
     * 1/sqrt(1e-5) = 316.227766, out = beta = -3. Running stats start at (0, 1) with momentum
     * 0.1: mean 0.25 / 0, var 0.9 + 0.1*5/3 = 1.06666667 / 0.9. */
    const float x[8] = {1, 2, 3, 4, 0, 0, 0, 0};
    const float gamma[2] = {2, 5};
    const float beta[2] = {1, -3};
    float out[8], mean[2], rstd[2];
    float rm[2] = {0, 0};
    float rv[2] = {1, 1};
    bn_forward_train(out, mean, rstd, rm, rv, x, gamma, beta, 2, 4, 0.1f, 1e-5f, NULL);
    const float want[8] = {-1.68327084f, 0.105576387f, 1.89442361f, 3.68327084f, -3, -3, -3, -3};
    expect_floats("bn train out", out, want, 8, 1e-6);
    const float wmean[2] = {2.5f, 0};
    const float wrstd[2] = {0.894423613f, 316.227766f};
    const float wrm[2] = {0.25f, 0};
    const float wrv[2] = {1.06666667f, 0.9f};
    expect_floats("bn save_mean", mean, wmean, 2, 0.0);
    expect_floats("bn save_rstd", rstd, wrstd, 1, 1e-7);
    EXPECT(fabs(rstd[1] - wrstd[1]) < 1e-3, "bn save_rstd[1] = %g", rstd[1]);
    expect_floats("bn run_mean", rm, wrm, 2, 1e-7);
    expect_floats("bn run_var", rv, wrv, 2, 1e-6);

    /* Eval with eps = 0: out = gamma*(x - run_mean)/sqrt(run_var) + beta. Channel 0: mean 1,
     * var 4, gamma 2, beta 1 -> (x-1) + 1 = x. Channel 1: mean -1, var 0.25, gamma 5, beta -3 ->
     * 10*(x+1) - 3 = 7 for x = 0. */
    const float erm[2] = {1, -1};
    const float erv[2] = {4, 0.25f};
    bn_forward_eval(out, x, gamma, beta, erm, erv, 2, 4, 0.0f);
    const float wante[8] = {1, 2, 3, 4, 7, 7, 7, 7};
    expect_floats("bn eval", out, wante, 8, 1e-6);

    /* Backward, channel 0 above with dy = 1 1 1 1: a constant shift of the output, whose dx is 0
     * (the mean absorbs it); dbeta = 4, dgamma = sum xhat = 0. Accumulating onto 1s. */
    const float dy[8] = {1, 1, 1, 1, 0, 0, 0, 0};
    float dx[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    float dg[2] = {1, 1};
    float db[2] = {1, 1};
    bn_forward_train(out, mean, rstd, rm, rv, x, gamma, beta, 2, 4, 0.1f, 1e-5f, NULL);
    bn_backward(dx, dg, db, dy, x, mean, rstd, gamma, 2, 4, NULL);
    const float wdx[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    expect_floats("bn bwd dx", dx, wdx, 8, 1e-6);
    EXPECT(fabs(db[0] - 5) < 1e-6 && fabs(dg[0] - 1) < 1e-6, "bn bwd dbeta %g dgamma %g", db[0],
           dg[0]);
}

static void test_elementwise(void)
{
    const float x[4] = {-1, 0, 2.5f, -0.0f};
    float out[4];
    relu_forward(out, x, 4);
    const float want[4] = {0, 0, 2.5f, 0};
    expect_floats("relu", out, want, 4, 0.0);
    /* dinp += dout only where out > 0. */
    const float dout[4] = {5, 6, 7, 8};
    float dinp[4] = {1, 1, 1, 1};
    relu_backward(dinp, dout, out, 4);
    const float wantd[4] = {1, 1, 8, 1};
    expect_floats("relu bwd", dinp, wantd, 4, 0.0);

    const float a[3] = {1, 2, 3};
    const float b[3] = {10, -20, 0.5f};
    float s[3];
    add_forward(s, a, b, 3);
    const float wants[3] = {11, -18, 3.5f};
    expect_floats("add", s, wants, 3, 0.0);
    float da[3] = {1, 1, 1};
    float db[3] = {0, 0, 0};
    add_backward(da, db, b, 3);
    const float wantda[3] = {11, -19, 1.5f};
    expect_floats("add bwd da", da, wantda, 3, 0.0);
    expect_floats("add bwd db", db, b, 3, 0.0);
    add_backward(NULL, db, b, 3); /* NULL is skipped */
    const float wantdb[3] = {20, -40, 1};
    expect_floats("add bwd db twice", db, wantdb, 3, 0.0);
}

static void test_shortcut(void)
{
    /* C=2, N=1, 3x3 images holding 0..8 and 9..17; S=2 -> OH=OW=ceil(3/2)=2, taking rows/cols
     * 0 and 2: channel 0 gives 0 2 6 8, channel 1 gives 9 11 15 17. chan_map {1, 2} with OC=4
     * puts them at output channels 1 and 2; channels 0 and 3 are zero (option-A padding). */
    float x[18];
    for (int i = 0; i < 18; i++) x[i] = (float)i;
    const int map[2] = {1, 2};
    float out[16];
    for (int i = 0; i < 16; i++) out[i] = 99; /* must be overwritten */
    shortcut_forward(out, x, map, 1, 2, 3, 3, 4, 2);
    const float want[16] = {0, 0, 0, 0, 0, 2, 6, 8, 9, 11, 15, 17, 0, 0, 0, 0};
    expect_floats("shortcut s2", out, want, 16, 0.0);
    /* Backward: dout = 1..16; dinp[c] at (0,0),(0,2),(2,0),(2,2) gets dout[map[c]], others 0. */
    float dout[16];
    for (int i = 0; i < 16; i++) dout[i] = (float)(i + 1);
    float dx[18] = {0};
    shortcut_backward(dx, dout, map, 1, 2, 3, 3, 4, 2);
    const float wantdx[18] = {5, 0, 6, 0, 0, 0, 7, 0, 8, 9, 0, 10, 0, 0, 0, 11, 0, 12};
    expect_floats("shortcut s2 bwd", dx, wantdx, 18, 0.0);

    /* S=1 with swapped channels: out = (x_c1, x_c0) for N=2, 1x1 images (x = 1 2 | 3 4). */
    const float xs[4] = {1, 2, 3, 4};
    const int swap[2] = {1, 0};
    float outs[4];
    shortcut_forward(outs, xs, swap, 2, 2, 1, 1, 2, 1);
    const float wants[4] = {3, 4, 1, 2};
    expect_floats("shortcut swap", outs, wants, 4, 0.0);
}

static void test_gap(void)
{
    /* C=1, N=2, 2x2: planes 1 2 3 4 and 5 6 7 8 average to 2.5 and 6.5. */
    const float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float out[2];
    gap_forward(out, x, 2, 1, 2, 2);
    const float want[2] = {2.5f, 6.5f};
    expect_floats("gap", out, want, 2, 0.0);
    /* dout 4 and 8 spread as 4/4 = 1 and 8/4 = 2 onto dinp (which starts at 1). */
    const float dout[2] = {4, 8};
    float dx[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    gap_backward(dx, dout, 2, 1, 2, 2);
    const float wantdx[8] = {2, 2, 2, 2, 3, 3, 3, 3};
    expect_floats("gap bwd", dx, wantdx, 8, 0.0);
}

static void test_fc(void)
{
    /* IN=2, N=2, OUT=3; inp (IN, N) = [[1, 2], [3, 4]], so sample 0 is (1, 3), sample 1 (2, 4).
     * weight rows (1,0), (0,1), (1,1), bias (0.5, -1, 0):
     * sample 0 -> (1.5, 2, 4), sample 1 -> (2.5, 3, 6). */
    const float x[4] = {1, 2, 3, 4};
    const float w[6] = {1, 0, 0, 1, 1, 1};
    const float b[3] = {0.5f, -1, 0};
    float out[6];
    fc_forward(out, x, w, b, 2, 2, 3);
    const float want[6] = {1.5f, 2, 4, 2.5f, 3, 6};
    expect_floats("fc", out, want, 6, 0.0);
    /* dout = e_(n=0, o=2): dbias = (0,0,1), dweight row 2 = sample 0 = (1, 3),
     * dinp column 0 = weight row 2 = (1, 1). All accumulate onto 1s. */
    const float dout[6] = {0, 0, 1, 0, 0, 0};
    float dx[4] = {1, 1, 1, 1};
    float dw[6] = {1, 1, 1, 1, 1, 1};
    float db[3] = {1, 1, 1};
    fc_backward(dx, dw, db, dout, x, w, 2, 2, 3);
    const float wantdx[4] = {2, 1, 2, 1};
    const float wantdw[6] = {1, 1, 1, 1, 2, 4};
    const float wantdb[3] = {1, 1, 2};
    expect_floats("fc bwd dx", dx, wantdx, 4, 0.0);
    expect_floats("fc bwd dw", dw, wantdw, 6, 0.0);
    expect_floats("fc bwd db", db, wantdb, 3, 0.0);
}

static void test_softmax(void)
{
    /* Row 0: logits (0, ln 3, -inf-ish) -> probs (1/4, 3/4, ~0), label 0: loss ln 4, argmax 1.
     * Row 1: (1000, 1000, 1000) must not overflow: probs 1/3, label 2: loss ln 3, argmax 0 (first).
     * Row 2: (-5, 2, 1), label 1: loss log(1 + e^-1 + e^-7) = 0.313928105, a hit. */
    const float z[9] = {0, (float)log(3.0), -100, 1000, 1000, 1000, -5, 2, 1};
    const int y[3] = {0, 2, 1};
    float p[9];
    int hits = -1;
    double loss = softmax_ce_forward(p, &hits, z, y, 3, 3);
    const float wantp[6] = {0.25f, 0.75f, 0, 1.0f / 3, 1.0f / 3, 1.0f / 3};
    expect_floats("softmax probs", p, wantp, 6, 1e-7);
    double want = log(4.0) + log(3.0) + 0.313928105;
    EXPECT(fabs(loss - want) < 1e-6, "softmax loss %.9g, want %.9g", loss, want);
    EXPECT(hits == 1, "softmax hits %d, want 1", hits);
    EXPECT(softmax_ce_forward(p, NULL, z, y, 1, 3) > 0, "ncorrect may be NULL");
    /* dlogits = scale*(p - onehot), overwriting: row 0 with scale 0.5 -> (-0.375, 0.375, ~0). */
    float d[9];
    for (int i = 0; i < 9; i++) d[i] = 42;
    softmax_ce_forward(p, NULL, z, y, 3, 3);
    softmax_ce_backward(d, p, y, 3, 3, 0.5f);
    const float wantd[6] = {-0.375f, 0.375f, 0, 1.0f / 6, 1.0f / 6, -1.0f / 3};
    expect_floats("softmax bwd", d, wantd, 6, 1e-7);
}

int main(void)
{
    test_conv();
    test_im2col();
    test_bn();
    test_elementwise();
    test_shortcut();
    test_gap();
    test_fc();
    test_softmax();
    return harness_finish("test_layers_forward");
}
