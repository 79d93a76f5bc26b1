/* Max pooling, ReLU6, conv bias and dropout: hand-computed cases, max pooling against its definition on tie-heavy data, dropout's mask recipe, statistics and keying, thread-count independence, and central finite-difference gradients (also of grouped convs). */
#include "harness.h"
#include "layers_testutil.h"
#include "legr/layers.h"
#include "legr/util.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int same_floats(const float *a, const float *b, long long n)
{
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* ---- max pooling by hand ---- */

static void check_maxpool_hand(void)
{
    /* 4x4, K=3, S=2, P=1: windows clipped at the top and left. */
    const float x[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    float out[4], dx[16];
    maxpool_forward(out, x, 1, 1, 4, 4, 3, 2, 1);
    const float want[4] = {6, 8, 14, 16};
    EXPECT(same_floats(out, want, 4), "maxpool 4x4 K3 S2 P1: %g %g %g %g, want 6 8 14 16", out[0],
           out[1], out[2], out[3]);
    const float g[4] = {1, 2, 3, 4};
    for (int i = 0; i < 16; i++) dx[i] = 0.5f; /* the backward accumulates */
    maxpool_backward(dx, g, x, out, 1, 1, 4, 4, 3, 2, 1);
    float dwant[16];
    for (int i = 0; i < 16; i++) dwant[i] = 0.5f;
    dwant[5] += 1, dwant[7] += 2, dwant[13] += 3, dwant[15] += 4;
    EXPECT(same_floats(dx, dwant, 16), "maxpool 4x4 K3 S2 P1 backward");

    /* Ties: all nine values equal, K=3, S=1, P=1: each output's gradient goes to the first
     * element (row-major) of its clipped window, so pixel (r, c) receives from the outputs whose
     * window starts there: (0,0) from (0,0), (0,1), (1,0), (1,1); (0,1) from (0,2), (1,2); (1,0)
     * from (2,0), (2,1); (1,1) from (2,2). */
    float t[9], tout[9], tdx[9] = {0}, tg[9];
    for (int i = 0; i < 9; i++) t[i] = 3, tg[i] = (float)(1 << i);
    maxpool_forward(tout, t, 1, 1, 3, 3, 3, 1, 1);
    maxpool_backward(tdx, tg, t, tout, 1, 1, 3, 3, 3, 1, 1);
    const float twant[9] = {1 + 2 + 8 + 16, 4 + 32, 0, 64 + 128, 256, 0, 0, 0, 0};
    EXPECT(same_floats(tdx, twant, 9), "maxpool ties: gradient to the first maximum");
    /* A tie later in the window than a smaller first element: the first maximum still wins. */
    const float u[4] = {1, 5, 5, 2};
    float uout, udx[4] = {0}, ug = 1;
    maxpool_forward(&uout, u, 1, 1, 2, 2, 2, 1, 0);
    maxpool_backward(udx, &ug, u, &uout, 1, 1, 2, 2, 2, 1, 0);
    EXPECT(uout == 5 && udx[1] == 1 && udx[2] == 0, "maxpool tie in row-major order");

    /* All-negative planes with padding: padding never wins, and layout (C, N): two channels of
     * two images, each plane's outputs from that plane only. K=2, S=1, P=1 on 2x3: OH=3, OW=4,
     * corner windows hold one pixel each. */
    float nx[24], nout[48];
    for (int i = 0; i < 24; i++) nx[i] = -1.0f - (float)i;
    maxpool_forward(nout, nx, 2, 2, 2, 3, 2, 1, 1);
    int ok = 1;
    for (int pl = 0; pl < 4; pl++) {
        const float *p = nx + pl * 6, *o = nout + pl * 12;
        /* row 0 of outputs reads input row 0 only; row 2 reads row 1 only */
        const float want_p[12] = {p[0], p[0], p[1], p[2], p[0], p[0], p[1], p[2],
                                  p[3], p[3], p[4], p[5]};
        ok &= same_floats(o, want_p, 12);
    }
    EXPECT(ok, "maxpool of negative planes with padding (the padding must not win)");

    /* NaN propagates, and its gradient goes to the NaN. */
    const float q[4] = {1, NAN, 3, 2};
    float qout, qdx[4] = {0}, qg = 1;
    maxpool_forward(&qout, q, 1, 1, 2, 2, 2, 1, 0);
    maxpool_backward(qdx, &qg, q, &qout, 1, 1, 2, 2, 2, 1, 0);
    EXPECT(isnan(qout) && qdx[1] == 1 && qdx[0] + qdx[2] + qdx[3] == 0, "maxpool NaN");
}

/* Max pooling against the one-pass definition over random planes full of ties, signed zeros
 * and a few NaNs: the forward bit for bit (the first maximum in row-major order, NaN winning),
 * the backward adding each output's gradient at that element, in output order. Shapes cover the
 * specialised row passes (3/2, 2/2, 3/1) and others, windows clipped on either side or not. */
static void check_maxpool_brute(void)
{
    static const int shapes[][5] = {/* H, W, K, S, P */
                                    {7, 9, 3, 2, 1},  {8, 8, 3, 2, 1}, {6, 7, 2, 2, 0},
                                    {5, 5, 3, 1, 1},  {4, 9, 3, 1, 0}, {9, 6, 4, 3, 2},
                                    {1, 1, 1, 1, 0},  {3, 2, 2, 1, 1}, {11, 13, 5, 2, 2},
                                    {2, 3, 3, 2, 1}};
    static const float vals[6] = {1.0f, 0.0f, -0.0f, -1.0f, 2.0f, 1.0f};
    Rng r;
    rng_init(&r, 12, 7);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int H = shapes[si][0], W = shapes[si][1], K = shapes[si][2], S = shapes[si][3];
        int P = shapes[si][4], N = 2, C = 3;
        int OH = conv_out_size(H, K, S, P), OW = conv_out_size(W, K, S, P);
        long long nx = (long long)C * N * H * W, ny = (long long)C * N * OH * OW;
        float *x = xalloc_floats(nx), *y = xalloc_floats(ny), *yw = xalloc_floats(ny);
        float *g = xalloc_floats(ny), *dx = xalloc_floats(nx), *dxw = xalloc_floats(nx);
        for (long long i = 0; i < nx; i++) {
            uint32_t u = rng_below(&r, 64);
            x[i] = u == 0 ? NAN : vals[u % 6];
            dx[i] = dxw[i] = 0.5f;
        }
        tu_fill_uniform(&r, g, ny, -1, 1);
        for (long long pl = 0; pl < (long long)C * N; pl++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    const float *xp = x + pl * H * W;
                    long long best = -1;
                    for (int ih = oh * S - P; ih < oh * S - P + K; ih++)
                        for (int iw = ow * S - P; iw < ow * S - P + K; iw++) {
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            float v = xp[ih * W + iw];
                            if (best < 0 || v > xp[best] || (v != v && xp[best] == xp[best]))
                                best = (long long)ih * W + iw;
                        }
                    long long o = (pl * OH + oh) * OW + ow;
                    yw[o] = xp[best];
                    dxw[pl * H * W + best] += g[o];
                }
        maxpool_forward(y, x, N, C, H, W, K, S, P);
        maxpool_backward(dx, g, x, y, N, C, H, W, K, S, P);
        EXPECT(same_floats(y, yw, ny), "maxpool %dx%d K%d S%d P%d differs from its definition", H,
               W, K, S, P);
        EXPECT(same_floats(dx, dxw, nx), "maxpool backward %dx%d K%d S%d P%d differs", H, W, K, S,
               P);
        free(x);
        free(y);
        free(yw);
        free(g);
        free(dx);
        free(dxw);
    }
}

/* ---- ReLU6 and bias by hand ---- */

static void check_relu6_bias_hand(void)
{
    const float x[8] = {-1.0f, -0.0f, 0.0f, 0.25f, 5.75f, 6.0f, 7.5f, 1e-30f};
    const float want[8] = {0, 0, 0, 0.25f, 5.75f, 6.0f, 6.0f, 1e-30f};
    float out[8], dx[8], g[8];
    relu6_forward(out, x, 8);
    EXPECT(same_floats(out, want, 8), "relu6 forward by hand");
    for (int i = 0; i < 8; i++) dx[i] = 1.0f, g[i] = (float)(i + 1);
    relu6_backward(dx, g, out, 8);
    /* passes where 0 < out < 6: entries 3, 4 and 7 */
    const float dwant[8] = {1, 1, 1, 1 + 4, 1 + 5, 1, 1, 1 + 8};
    EXPECT(same_floats(dx, dwant, 8), "relu6 backward by hand (accumulates)");
    relu6_backward(NULL, g, out, 8); /* NULL: not needed */

    float rows[6] = {1, 2, 3, -1, -2, -3};
    const float b[2] = {0.5f, -0.25f};
    bias_forward(rows, b, 2, 3);
    const float rwant[6] = {1.5f, 2.5f, 3.5f, -1.25f, -2.25f, -3.25f};
    EXPECT(same_floats(rows, rwant, 6), "bias forward by hand");
    float db[2] = {10, 20};
    bias_backward(db, rows, 2, 3);
    EXPECT(db[0] == 10 + 7.5f && db[1] == 20 - 6.75f, "bias backward by hand: %g %g", db[0],
           db[1]);

    /* A long row: the sum of 300007 values against a double sum, well inside float rounding. */
    enum { M = 300007 };
    float *row = xalloc_floats(M);
    Rng r;
    rng_init(&r, 3, 1);
    tu_fill_uniform(&r, row, M, -1, 1);
    double s = 0.0, sa = 0.0;
    for (int i = 0; i < M; i++) s += row[i], sa += fabs(row[i]);
    float d1 = 0.0f;
    bias_backward(&d1, row, 1, M);
    EXPECT(fabs(d1 - s) <= 1e-6 * sa + fabs(s) * FLT_EPSILON,
           "bias backward long row: %.9g vs %.9g", d1, s);
    free(row);
}

/* ---- dropout ---- */

static void check_dropout(void)
{
    enum { N = 4, C = 5, HW = 5000 }; /* 1e5 values */
    const long long n = (long long)N * C * HW;
    float *x = xalloc_floats(n), *y = xalloc_floats(n), *y2 = xalloc_floats(n);
    float *dx = xalloc_floats(n);
    Rng r;
    rng_init(&r, 9, 2);
    tu_fill_uniform(&r, x, n, -2, 2);
    x[0] = -0.0f, x[1] = 1e-40f, x[2] = INFINITY; /* an exact copy keeps these too */

    /* p = 0: an exact copy; its backward adds dout. */
    dropout_forward(y, x, N, C, HW, 0.0f, 1, 2, 0);
    EXPECT(same_floats(y, x, n), "dropout p=0 is not the identity");
    for (long long i = 0; i < n; i++) dx[i] = 1.0f;
    dropout_backward(dx, x, N, C, HW, 0.0f, 1, 2, 0);
    int ok = 1;
    for (long long i = 3; i < n; i++) ok &= dx[i] == 1.0f + x[i];
    EXPECT(ok, "dropout p=0 backward is not dinp += dout");

    tu_fill_uniform(&r, x, n, 0.5, 2); /* nonzero: a zero output means dropped */
    const float ps[3] = {0.1f, 0.3f, 0.5f};
    for (int k = 0; k < 3; k++) {
        float p = ps[k];
        float scale = 1.0f / (float)(1.0 - (double)p);
        dropout_forward(y, x, N, C, HW, p, 77, 1234, 10);
        long long kept = 0, exact = 1;
        for (long long i = 0; i < n; i++) {
            if (y[i] != 0.0f) {
                kept++;
                exact &= y[i] == x[i] * scale;
            }
        }
        double frac = (double)kept / n, sigma = sqrt(p * (1.0 - p) / n);
        EXPECT(fabs(frac - (1.0 - p)) < 5 * sigma,
               "dropout p=%g keeps %.5f of %lld, not %.5f +- %.5f", p, frac, n, 1.0 - p,
               5 * sigma);
        EXPECT(exact, "dropout p=%g: kept values are not x * (float)(1/(1-p))", p);

        /* The backward uses the same mask: dout = 1 gives dinp - 0.25 = scale where kept. */
        float *ones = y2;
        for (long long i = 0; i < n; i++) ones[i] = 1.0f, dx[i] = 0.25f;
        dropout_backward(dx, ones, N, C, HW, p, 77, 1234, 10);
        ok = 1;
        for (long long i = 0; i < n; i++)
            ok &= dx[i] == (y[i] != 0.0f ? 0.25f + scale : 0.25f);
        EXPECT(ok, "dropout p=%g: backward mask differs from the forward's", p);
    }

    /* The mask is exactly the documented recipe: image m's stream is (seed, stream id of
     * purpose DROPOUT and index = FNV-1a of (key, m) cut to 48 bits), its uniform draws run over
     * the image's values in (c, i) order, and a value is kept iff its draw is >= p. */
    {
        const float pr = 0.25f;
        const float sc = 1.0f / (float)(1.0 - (double)pr);
        dropout_forward(y, x, N, C, HW, pr, 99, 4321, 1000);
        int exact_mask = 1;
        for (int m = 0; m < N; m++) {
            uint64_t k[2] = {4321, (uint64_t)(1000 + m)};
            uint64_t index = hash_fnv1a(HASH_FNV_INIT, k, sizeof k) & 0xffffffffffffULL;
            Rng s;
            rng_init(&s, 99, rng_stream_id(RNG_PURPOSE_DROPOUT, index));
            for (int c = 0; c < C; c++)
                for (int i = 0; i < HW; i++) {
                    size_t at = ((size_t)c * N + m) * HW + i;
                    float want = rng_uniform(&s) >= pr ? x[at] * sc : 0.0f;
                    exact_mask &= memcmp(&y[at], &want, sizeof want) == 0;
                }
        }
        EXPECT(exact_mask, "dropout mask differs from its documented recipe");
    }

    /* Keying: the same (seed, key, image) gives the same mask; image n's mask depends on its
     * global index only, not on N or its position in the batch; other images, keys and seeds
     * give other masks. */
    const float p = 0.5f;
    dropout_forward(y, x, N, C, HW, p, 77, 1234, 10);
    dropout_forward(y2, x, N, C, HW, p, 77, 1234, 10);
    EXPECT(same_floats(y, y2, n), "dropout is not deterministic");
    /* image 12 is n = 2 of the first call; alone (N = 1), and as n = 1 of a batch from 11 */
    float *one = xalloc_floats((long long)C * HW), *img = xalloc_floats((long long)C * HW);
    float *x3 = xalloc_floats(3LL * C * HW), *y3 = xalloc_floats(3LL * C * HW);
    for (int c = 0; c < C; c++) {
        memcpy(img + (size_t)c * HW, x + ((size_t)c * N + 2) * HW, HW * sizeof(float));
        for (int m = 0; m < 3; m++)
            memcpy(x3 + ((size_t)c * 3 + m) * HW, x + ((size_t)c * N + 1 + m) * HW,
                   HW * sizeof(float));
    }
    dropout_forward(one, img, 1, C, HW, p, 77, 1234, 12);
    dropout_forward(y3, x3, 3, C, HW, p, 77, 1234, 11);
    int same_alone = 1, same_shifted = 1;
    for (int c = 0; c < C; c++) {
        same_alone &= same_floats(one + (size_t)c * HW, y + ((size_t)c * N + 2) * HW, HW);
        same_shifted &= same_floats(y3 + ((size_t)c * 3 + 1) * HW, y + ((size_t)c * N + 2) * HW,
                                    HW);
    }
    EXPECT(same_alone, "dropout: image 12's mask changes when it is alone in the batch");
    EXPECT(same_shifted, "dropout: image 12's mask changes with its position in the batch");
    /* the same input values as image 12 at image index 13, key 1235, seed 78: other masks */
    const uint64_t seeds[3] = {77, 77, 78}, keys[3] = {1234, 1235, 1234};
    const long long images[3] = {13, 12, 12};
    for (int k = 0; k < 3; k++) {
        dropout_forward(y2, img, 1, C, HW, p, seeds[k], keys[k], images[k]);
        EXPECT(!same_floats(y2, one, (long long)C * HW),
               "dropout: seed %llu key %llu image %lld gives image 12's mask",
               (unsigned long long)seeds[k], (unsigned long long)keys[k], images[k]);
    }
    dropout_backward(NULL, y, N, C, HW, p, 77, 1234, 10); /* NULL: not needed */
    free(one);
    free(img);
    free(x3);
    free(y3);
    free(x);
    free(y);
    free(y2);
    free(dx);
}

/* ---- thread-count independence (sizes above par_for's threshold) ---- */

static void check_threads(void)
{
    enum { N = 6, C = 7, H = 30, W = 26, K = 3, S = 2, P = 1 };
    int OH = conv_out_size(H, K, S, P), OW = conv_out_size(W, K, S, P);
    long long nx = (long long)C * N * H * W, ny = (long long)C * N * OH * OW;
    float *x = xalloc_floats(nx), *g = xalloc_floats(nx), *res[3][7];
    Rng r;
    rng_init(&r, 4, 4);
    tu_fill_uniform(&r, x, nx, -3, 9);
    tu_fill_uniform(&r, g, nx, -1, 1);
    for (int t = 0; t < 3; t++) {
        openblas_set_num_threads(t + 1);
        for (int k = 0; k < 7; k++) {
            res[t][k] = xalloc_floats(nx);
            memset(res[t][k], 0, (size_t)nx * sizeof(float));
        }
        maxpool_forward(res[t][0], x, N, C, H, W, K, S, P);
        maxpool_backward(res[t][1], g, x, res[t][0], N, C, H, W, K, S, P);
        dropout_forward(res[t][2], x, N, C, H * W, 0.4f, 5, 6, 7);
        dropout_backward(res[t][3], g, N, C, H * W, 0.4f, 5, 6, 7);
        relu6_forward(res[t][4], x, nx);
        relu6_backward(res[t][5], g, res[t][4], nx);
        memcpy(res[t][6], x, (size_t)nx * sizeof(float));
        bias_forward(res[t][6], g, C, (long long)N * H * W);
        bias_backward(res[t][6] + nx - C, x, C, (long long)N * H * W);
    }
    const long long sizes[7] = {ny, nx, nx, nx, nx, nx, nx};
    static const char *const names[7] = {"maxpool", "maxpool backward", "dropout",
                                         "dropout backward", "relu6", "relu6 backward", "bias"};
    for (int t = 1; t < 3; t++)
        for (int k = 0; k < 7; k++)
            EXPECT(same_floats(res[0][k], res[t][k], sizes[k]),
                   "%s differs between 1 and %d threads", names[k], t + 1);
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 7; k++) free(res[t][k]);
    free(x);
    free(g);
    openblas_set_num_threads(1);
}

/* ---- central finite differences ----
 * L(v) = sum_i R_i * out_i(v) in double with R fixed; the analytic gradient is what the backward
 * adds to a buffer pre-filled with random values (so accumulation is checked too). The numerical
 * one is (L(v_j + h) - L(v_j - h)) / (v+ - v-) with the floats v_j +- h actually round to,
 * summed over the outputs that differ between the two evaluations (the others cancel exactly).
 * These ops are linear or piecewise linear, so away from kinks (skipped, or kept more than 2h
 * away) the truncation error is zero and what is left is float rounding: each changed output
 * errs by a few ulps of a_i, the magnitude it is summed from (|out_i| + 1, or for convs the conv
 * of |x| + 1 and |w|). So per input j: |num - ana| <= FD_NOISE * eps * sum |R_i| a_i / h over
 * the changed outputs, + FD_RTOL * |ana|. */
enum { FD_NOISE = 8 };
static const double FD_RTOL = 1e-4;

typedef struct {
    int op; /* 0 maxpool, 1 relu6, 2 bias, 3 dropout, 4 conv */
    int N, C, H, W, OC, K, S, P, G;
    float *x, *w, *out, *R, *a;
    long long nx, ny;
} FdCase;

static void fd_forward(FdCase *c, float *out)
{
    switch (c->op) {
    case 0: maxpool_forward(out, c->x, c->N, c->C, c->H, c->W, c->K, c->S, c->P); break;
    case 1: relu6_forward(out, c->x, c->nx); break;
    case 2:
        memcpy(out, c->x, (size_t)c->nx * sizeof(float));
        bias_forward(out, c->w, c->C, (long long)c->N * c->H * c->W);
        break;
    case 3: dropout_forward(out, c->x, c->N, c->C, c->H * c->W, 0.3f, 21, 22, 5); break;
    default:
        conv_forward(out, NULL, c->x, c->w, c->N, c->C, c->H, c->W, c->OC, c->K, c->S, c->P,
                     c->G);
    }
}

static double worst_fd; /* max |num - ana| / tolerance over all checks */

/* Checks ana[j] against central differences over v[0..n) (an input of case c), step h; entries
 * with skip[j] set are not checked. */
static void fd_check(const char *what, FdCase *c, float *v, const double *ana, long long n,
                     float h, const unsigned char *skip)
{
    float *op = xalloc_floats(c->ny), *om = xalloc_floats(c->ny);
    double worst = 0.0;
    int bad = 0, checked = 0;
    for (long long j = 0; j < n; j++) {
        if (skip && skip[j]) continue;
        float v0 = v[j], vp = v0 + h, vm = v0 - h;
        v[j] = vp;
        fd_forward(c, op);
        v[j] = vm;
        fd_forward(c, om);
        v[j] = v0;
        double dl = 0.0, scale = 0.0;
        for (long long i = 0; i < c->ny; i++)
            if (op[i] != om[i]) {
                dl += (double)c->R[i] * ((double)op[i] - om[i]);
                scale += fabs((double)c->R[i]) * c->a[i];
            }
        double num = dl / ((double)vp - vm), err = fabs(num - ana[j]);
        double tol = FD_NOISE * FLT_EPSILON * scale / h + FD_RTOL * fabs(ana[j]);
        if (err / tol > worst) worst = err / tol;
        checked++;
        if (!(err <= tol) && bad++ < 5)
            EXPECT(0, "%s[%lld]: numerical %.8g, analytic %.8g (tolerance %.3g)", what, j, num,
                   ana[j], tol);
    }
    EXPECT(bad == 0 && checked > n / 2, "%s: %d of %d checked entries off (%lld skipped)", what,
           bad, checked, n - checked);
    if (worst > worst_fd) worst_fd = worst;
    printf("%-44s %5d entries, h %.2g, max error / tolerance %.3g\n", what, checked, (double)h,
           worst);
    free(op);
    free(om);
}

/* buf filled with random values; returns a copy of them */
static float *prefill(Rng *r, float *buf, long long n)
{
    float *b0 = xalloc_floats(n);
    tu_fill_uniform(r, buf, n, -1, 1);
    memcpy(b0, buf, (size_t)n * sizeof(float));
    return b0;
}

/* (after - before) in double; frees before */
static double *accumulated(const float *after, float *before, long long n)
{
    double *d = xmalloc((size_t)n * sizeof(double));
    for (long long i = 0; i < n; i++) d[i] = (double)after[i] - before[i];
    free(before);
    return d;
}

/* Steps: maxpool's inputs are 0.1 apart and ReLU6 skips inputs within 2h of 0 and 6, so a step
 * of 0.01 crosses no kink; the linear ops take a larger step, which shrinks the rounding term. */
static void grad_case(Rng *r, FdCase *c, const char *name)
{
    int OH = c->H, OW = c->W, OC = c->C;
    if (c->op == 0 || c->op == 4) {
        OH = conv_out_size(c->H, c->K, c->S, c->P);
        OW = conv_out_size(c->W, c->K, c->S, c->P);
    }
    if (c->op == 4) OC = c->OC;
    c->nx = (long long)c->C * c->N * c->H * c->W;
    c->ny = (long long)OC * c->N * OH * OW;
    long long nw = c->op == 2   ? c->C
                   : c->op == 4 ? (long long)c->OC * (c->C / c->G) * c->K * c->K
                                : 0;
    c->x = xalloc_floats(c->nx);
    c->w = nw ? xalloc_floats(nw) : NULL;
    c->out = xalloc_floats(c->ny);
    c->R = xalloc_floats(c->ny);
    c->a = xalloc_floats(c->ny);
    unsigned char *skip = calloc((size_t)c->nx, 1);
    float h = c->op <= 1 ? 1e-2f : 5e-2f;
    if (c->op == 0) {
        /* distinct values 0.1 apart (a shuffled ramp): no step changes a window's maximum */
        int *perm = xmalloc((size_t)c->nx * sizeof(int));
        for (long long i = 0; i < c->nx; i++) perm[i] = (int)i;
        rng_shuffle_int(r, perm, (int)c->nx);
        for (long long i = 0; i < c->nx; i++) c->x[i] = 0.1f * (float)(perm[i] - c->nx / 2);
        free(perm);
    } else if (c->op == 1) {
        tu_fill_uniform(r, c->x, c->nx, -2, 8);
        for (long long i = 0; i < c->nx; i++)
            skip[i] = fabsf(c->x[i]) <= 2 * h || fabsf(c->x[i] - 6.0f) <= 2 * h;
    } else {
        tu_fill_uniform(r, c->x, c->nx, -1, 1);
    }
    if (nw) tu_fill_uniform(r, c->w, nw, -1, 1);
    tu_fill_uniform(r, c->R, c->ny, -1, 1);

    fd_forward(c, c->out);
    if (c->op == 4) { /* a_i: the conv of |x| + 1 and |w| */
        float *ax = xalloc_floats(c->nx), *aw = xalloc_floats(nw);
        for (long long i = 0; i < c->nx; i++) ax[i] = fabsf(c->x[i]) + 1.0f;
        for (long long i = 0; i < nw; i++) aw[i] = fabsf(c->w[i]);
        conv_forward_ref(c->a, ax, aw, c->N, c->C, c->H, c->W, c->OC, c->K, c->S, c->P, c->G);
        free(ax);
        free(aw);
    } else {
        for (long long i = 0; i < c->ny; i++) c->a[i] = fabsf(c->out[i]) + 1.0f;
    }

    float *dx = xalloc_floats(c->nx), *dw = nw ? xalloc_floats(nw) : NULL;
    float *dx0 = prefill(r, dx, c->nx), *dw0 = nw ? prefill(r, dw, nw) : NULL;
    switch (c->op) {
    case 0:
        maxpool_backward(dx, c->R, c->x, c->out, c->N, c->C, c->H, c->W, c->K, c->S, c->P);
        break;
    case 1: relu6_backward(dx, c->R, c->out, c->nx); break;
    case 2:
        add_backward(dx, NULL, c->R, c->nx); /* out = x + bias: x's gradient is R itself */
        bias_backward(dw, c->R, c->C, (long long)c->N * c->H * c->W);
        break;
    case 3: dropout_backward(dx, c->R, c->N, c->C, c->H * c->W, 0.3f, 21, 22, 5); break;
    default:
        conv_backward(dx, dw, NULL, c->R, c->x, c->w, c->N, c->C, c->H, c->W, c->OC, c->K, c->S,
                      c->P, c->G);
    }
    double *adx = accumulated(dx, dx0, c->nx);
    char what[96];
    snprintf(what, sizeof what, "%s dinp", name);
    fd_check(what, c, c->x, adx, c->nx, h, skip);
    free(adx);
    if (nw) {
        double *adw = accumulated(dw, dw0, nw);
        snprintf(what, sizeof what, "%s d%s", name, c->op == 2 ? "bias" : "weight");
        fd_check(what, c, c->w, adw, nw, h, NULL);
        free(adw);
        free(dw);
    }
    free(dx);
    free(skip);
    free(c->x);
    free(c->w);
    free(c->out);
    free(c->R);
    free(c->a);
}

static void check_gradients(void)
{
    Rng r;
    rng_init(&r, 8, 6);
    FdCase cases[] = {
        {0, 2, 3, 7, 6, 0, 3, 2, 1, 0, NULL, NULL, NULL, NULL, NULL, 0, 0},
        {0, 2, 2, 6, 6, 0, 2, 2, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0},
        {0, 1, 2, 5, 7, 0, 3, 1, 1, 0, NULL, NULL, NULL, NULL, NULL, 0, 0},
        {1, 2, 3, 5, 4, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0},
        {2, 2, 3, 4, 5, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0},
        {3, 3, 2, 6, 5, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0},
        {4, 2, 4, 7, 9, 4, 3, 2, 1, 4, NULL, NULL, NULL, NULL, NULL, 0, 0},
        {4, 2, 3, 6, 5, 3, 3, 1, 1, 3, NULL, NULL, NULL, NULL, NULL, 0, 0},
        {4, 2, 4, 6, 7, 6, 3, 1, 1, 2, NULL, NULL, NULL, NULL, NULL, 0, 0},
        {4, 1, 2, 9, 8, 4, 5, 2, 2, 2, NULL, NULL, NULL, NULL, NULL, 0, 0},
    };
    static const char *const names[] = {
        "maxpool K3 S2 P1", "maxpool K2 S2", "maxpool K3 S1 P1 (overlapping)", "relu6", "bias",
        "dropout p=0.3", "depthwise conv K3 S2 P1", "depthwise conv K3 S1 P1",
        "grouped conv G=2 K3 S1", "grouped conv G=2 (x2 filters) K5 S2"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) grad_case(&r, &cases[i], names[i]);
    printf("finite differences: worst error / tolerance %.3g\n", worst_fd);
}

int main(void)
{
    openblas_set_num_threads(1);
    check_maxpool_hand();
    check_maxpool_brute();
    check_relu6_bias_hand();
    check_dropout();
    check_threads();
    check_gradients();
    return harness_finish("test_pool_act");
}
