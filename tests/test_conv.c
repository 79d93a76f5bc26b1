/* Convolution tests: im2col/col2im adjointness, im2col+sgemm against the direct reference over many
 * shapes, and the backward pass as the exact adjoint of the forward in both input and weights. */
#include "harness.h"
#include "layers_testutil.h"
#include "legr/layers.h"
#include "legr/util.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

typedef struct {
    int N, C, H, W, OC, K, S, P, G;
} ConvShape;

static double worst_fwd_rel;  /* max |fast - ref| / max(|ref|, 1) over all shapes */
static double worst_fwd_bound; /* max |fast - ref| / (KC * FLT_EPSILON * ref(|x|, |w|)) */
static double worst_adj;       /* max relative adjoint mismatch over all conv checks */
static double worst_i2c;       /* max relative im2col/col2im adjoint mismatch */

/* <im2col(x), y> == <x, col2im(y)>, both in double. col2im_acc sums at most K*K values per input
 * pixel in float, so the two sides differ by at most ~K*K*2^-24 of sum |x * col2im(y)|-like terms;
 * 1e-5 relative to sum |im2col(x) * y| leaves margin for K <= 5. */
static void check_im2col_adjoint(Rng *r, int N, int C, int H, int W, int K, int S, int P)
{
    int OH = conv_out_size(H, K, S, P);
    int OW = conv_out_size(W, K, S, P);
    long long nx = (long long)C * N * H * W;
    long long ncol = (long long)C * K * K * N * OH * OW;
    float *x = xalloc_floats(nx);
    float *xc = xalloc_floats(nx);
    float *col = xalloc_floats(ncol);
    float *y = xalloc_floats(ncol);
    tu_fill_uniform(r, x, nx, -1, 1);
    tu_fill_uniform(r, y, ncol, -1, 1);
    im2col(col, x, N, C, H, W, K, S, P);
    for (long long i = 0; i < nx; i++) xc[i] = 0.0f;
    col2im_acc(xc, y, N, C, H, W, K, S, P);
    double lhs = tu_dot(col, y, ncol);
    double rhs = tu_dot(x, xc, nx);
    double scale = tu_dot_abs(col, y, ncol) + 1e-30;
    double rel = fabs(lhs - rhs) / scale;
    if (rel > worst_i2c) worst_i2c = rel;
    EXPECT(rel < 1e-5, "im2col adjoint N=%d C=%d H=%d W=%d K=%d S=%d P=%d: %.17g vs %.17g", N, C,
           H, W, K, S, P, lhs, rhs);

    /* Accumulation: col2im_acc onto a buffer of ones adds exactly what it added onto zeros. */
    float *xo = xalloc_floats(nx);
    for (long long i = 0; i < nx; i++) xo[i] = 1.0f;
    col2im_acc(xo, y, N, C, H, W, K, S, P);
    double acc_err = 0.0;
    for (long long i = 0; i < nx; i++) {
        double e = fabs((double)xo[i] - 1.0 - xc[i]);
        if (e > acc_err) acc_err = e;
    }
    EXPECT(acc_err < 1e-5, "col2im_acc does not accumulate: err %g", acc_err);
    free(xo);
    free(x);
    free(xc);
    free(col);
    free(y);
}

/* The padding rows of im2col are zero even where the col buffer held garbage before. */
static void check_im2col_overwrites(void)
{
    float x[4] = {1, 2, 3, 4}; /* C=1, N=1, 2x2 */
    int K = 3, P = 1;         /* OH = OW = 2, col (9, 4) */
    float col[36];
    for (int i = 0; i < 36; i++) col[i] = 99.0f;
    im2col(col, x, 1, 1, 2, 2, K, 1, P);
    /* Row (kh=0, kw=0) reads x[oh-1, ow-1]: only output (1,1) sees x[0,0] = 1. */
    EXPECT(col[0] == 0 && col[1] == 0 && col[2] == 0 && col[3] == 1, "im2col row 0: %g %g %g %g",
           col[0], col[1], col[2], col[3]);
    /* Row (kh=1, kw=1) is the centre tap: x itself. */
    EXPECT(col[16] == 1 && col[17] == 2 && col[18] == 3 && col[19] == 4, "im2col centre row");
    /* Row (kh=2, kw=2) reads x[oh+1, ow+1]: only output (0,0) sees x[1,1] = 4. */
    EXPECT(col[32] == 4 && col[33] == 0 && col[34] == 0 && col[35] == 0, "im2col row 8");
}

static void check_conv_shape(Rng *r, ConvShape s)
{
    int OH = conv_out_size(s.H, s.K, s.S, s.P);
    int OW = conv_out_size(s.W, s.K, s.S, s.P);
    long long nx = (long long)s.C * s.N * s.H * s.W;
    long long nw = (long long)s.OC * (s.C / s.G) * s.K * s.K;
    long long ny = (long long)s.OC * s.N * OH * OW;
    long long nws = conv_workspace_floats(s.N, s.C, s.H, s.W, s.OC, s.K, s.S, s.P, s.G);
    float *x = xalloc_floats(nx);
    float *w = xalloc_floats(nw);
    float *ax = xalloc_floats(nx);
    float *aw = xalloc_floats(nw);
    float *out = xalloc_floats(ny);
    float *ref = xalloc_floats(ny);
    float *aref = xalloc_floats(ny);
    float *dy = xalloc_floats(ny);
    float *dx = xalloc_floats(nx);
    float *dw = xalloc_floats(nw);
    float *dw2 = xalloc_floats(nw);
    float *ws = nws > 0 ? xalloc_floats(nws) : NULL;
    tu_fill_uniform(r, x, nx, -1, 1);
    tu_fill_uniform(r, w, nw, -1, 1);
    tu_fill_uniform(r, dy, ny, -1, 1);
    for (long long i = 0; i < nx; i++) ax[i] = fabsf(x[i]);
    for (long long i = 0; i < nw; i++) aw[i] = fabsf(w[i]);

    /* Forward: a float dot of KC terms is within KC * 2^-24 * sum |terms| of the exact value
     * (standard bound), and the double reference is within 2^-24 * that sum too; so
     * KC * FLT_EPSILON * ref(|x|, |w|) is a rigorous bound for KC >= 1. */
    conv_forward(out, ws, x, w, s.N, s.C, s.H, s.W, s.OC, s.K, s.S, s.P, s.G);
    conv_forward_ref(ref, x, w, s.N, s.C, s.H, s.W, s.OC, s.K, s.S, s.P, s.G);
    conv_forward_ref(aref, ax, aw, s.N, s.C, s.H, s.W, s.OC, s.K, s.S, s.P, s.G);
    int KC = s.C / s.G * s.K * s.K;
    double worst_bound = 0.0;
    for (long long i = 0; i < ny; i++) {
        double e = fabs((double)out[i] - ref[i]);
        double b = KC * (double)FLT_EPSILON * aref[i];
        double q = b > 0 ? e / b : (e > 0 ? INFINITY : 0.0);
        if (!(q <= worst_bound)) worst_bound = q;
    }
    double rel = harness_max_rel_err(out, ref, ny, 1.0);
    if (rel > worst_fwd_rel) worst_fwd_rel = rel;
    if (worst_bound > worst_fwd_bound) worst_fwd_bound = worst_bound;
    EXPECT(worst_bound <= 1.0,
           "conv fwd N=%d C=%d H=%d W=%d OC=%d K=%d S=%d P=%d G=%d: error %.3g x the bound", s.N,
           s.C, s.H, s.W, s.OC, s.K, s.S, s.P, s.G, worst_bound);

    /* Backward as the adjoint: L = <conv(x, w), dy> is bilinear, so
     * <x, dL/dx> = <w, dL/dw> = L exactly in real arithmetic. The float backward GEMMs have the
     * same kind of error bound as the forward, with sums of up to max(OC/G*K*K, N*OH*OW) terms;
     * 1e-5 relative to sum |ref * dy| covers these sizes with a wide margin. dx and dw start
     * from nonzero values (accumulation), which are subtracted in double. */
    for (long long i = 0; i < nx; i++) dx[i] = 0.25f;
    for (long long i = 0; i < nw; i++) dw[i] = -0.5f;
    conv_backward(dx, dw, ws, dy, x, w, s.N, s.C, s.H, s.W, s.OC, s.K, s.S, s.P, s.G);
    double L = tu_dot(ref, dy, ny);
    double scale = tu_dot_abs(aref, dy, ny) + 1e-30;
    double Lx = 0.0, Lw = 0.0;
    for (long long i = 0; i < nx; i++) Lx += (double)x[i] * ((double)dx[i] - 0.25);
    for (long long i = 0; i < nw; i++) Lw += (double)w[i] * ((double)dw[i] + 0.5);
    double ex = fabs(Lx - L) / scale;
    double ew = fabs(Lw - L) / scale;
    if (ex > worst_adj) worst_adj = ex;
    if (ew > worst_adj) worst_adj = ew;
    EXPECT(ex < 1e-5 && ew < 1e-5,
           "conv bwd N=%d C=%d H=%d W=%d OC=%d K=%d S=%d P=%d G=%d: L=%.9g <x,dx>=%.9g <w,dw>=%.9g",
           s.N, s.C, s.H, s.W, s.OC, s.K, s.S, s.P, s.G, L, Lx, Lw);

    /* dinp = NULL skips dX and leaves dW as computed with it. */
    for (long long i = 0; i < nw; i++) dw2[i] = -0.5f;
    conv_backward(NULL, dw2, ws, dy, x, w, s.N, s.C, s.H, s.W, s.OC, s.K, s.S, s.P, s.G);
    EXPECT(harness_max_abs_err(dw2, dw, nw) == 0.0, "conv bwd with dinp=NULL changes dW");

    free(x);
    free(w);
    free(ax);
    free(aw);
    free(out);
    free(ref);
    free(aref);
    free(dy);
    free(dx);
    free(dw);
    free(dw2);
    free(ws);
}

int main(void)
{
    Rng r;
    rng_init(&r, 42, rng_stream_id(RNG_PURPOSE_TEST, 1));

    EXPECT(conv_out_size(32, 3, 1, 1) == 32, "same conv");
    EXPECT(conv_out_size(32, 3, 2, 1) == 16, "strided conv");
    EXPECT(conv_out_size(7, 5, 2, 0) == 2, "(7 - 5)/2 + 1");
    EXPECT(conv_out_size(8, 1, 2, 0) == 4, "1x1 stride 2");
    check_im2col_overwrites();

    int n_i2c = 0;
    for (int K = 1; K <= 5; K += 2)
        for (int S = 1; S <= 2; S++)
            for (int P = 0; P <= 2; P++) {
                check_im2col_adjoint(&r, 2, 3, 7, 6, K, S, P);
                n_i2c++;
            }
    check_im2col_adjoint(&r, 1, 2, 4, 5, 2, 3, 1); /* even K, stride 3 */
    n_i2c++;

    /* Full grid over K, S, P, G with odd sizes and N > 1, then a few larger or unusual shapes. */
    int n_conv = 0;
    const int Ks[] = {1, 3, 5};
    for (int ik = 0; ik < 3; ik++)
        for (int S = 1; S <= 2; S++)
            for (int P = 0; P <= 2; P++)
                for (int ig = 0; ig < 3; ig++) {
                    int C = 6;
                    int G = ig == 0 ? 1 : ig == 1 ? 2 : C;
                    int OC = ig == 2 ? 12 : 4; /* depthwise with channel multiplier 2 */
                    ConvShape s = {3, C, 7, 9, OC, Ks[ik], S, P, G};
                    check_conv_shape(&r, s);
                    n_conv++;
                }
    const ConvShape extra[] = {
        {4, 16, 8, 8, 32, 3, 2, 1, 1},  /* ResNet stage transition */
        {2, 16, 16, 16, 16, 3, 1, 1, 1}, /* ResNet stage-1 conv, KC = 144 */
        {2, 32, 5, 5, 32, 3, 1, 1, 32},  /* depthwise, multiplier 1 */
        {2, 24, 6, 6, 48, 1, 1, 0, 1},   /* pointwise expansion (no workspace) */
        {2, 6, 4, 4, 4, 1, 1, 0, 2},     /* grouped pointwise */
        {3, 2, 5, 5, 3, 5, 1, 0, 1},     /* kernel as large as the input: 1x1 output */
        {1, 1, 3, 3, 1, 5, 1, 2, 1},     /* kernel larger than the input, padded */
        {2, 3, 8, 8, 4, 2, 2, 0, 1},     /* even kernel */
        {1, 3, 1, 1, 5, 3, 1, 1, 1},     /* 1x1 input */
    };
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        check_conv_shape(&r, extra[i]);
        n_conv++;
    }
    EXPECT(conv_workspace_floats(2, 6, 4, 4, 4, 1, 1, 0, 2) == 0,
           "a grouped pointwise conv needs no workspace");
    EXPECT(conv_workspace_floats(2, 6, 7, 7, 4, 3, 2, 1, 2) == 0,
           "a grouped conv runs the direct kernel, without workspace");
    EXPECT(conv_workspace_floats(128, 144, 56, 56, 144, 3, 1, 1, 144) == 0,
           "a MobileNetV2 depthwise conv needs no workspace");
    /* Ungrouped convs work in cache-sized blocks: far less than a whole-batch col matrix. */
    EXPECT(conv_workspace_floats(128, 16, 32, 32, 16, 3, 1, 1, 1) < 16LL * 9 * 128 * 32 * 32 / 4,
           "blocked workspace of a ResNet stage-1 conv is small");

    printf("im2col/col2im adjoint: %d shapes, max relative mismatch %.3g\n", n_i2c, worst_i2c);
    printf("conv_forward vs conv_forward_ref: %d shapes, max rel err %.3g (floor 1), "
           "max %.3g of the rounding bound\n", n_conv, worst_fwd_rel, worst_fwd_bound);
    printf("conv_backward adjoint (dx and dw): max relative mismatch %.3g\n", worst_adj);
    return harness_finish("test_conv");
}
