/* Central-difference gradient checks for every layer backward, accumulation checks, and the
 * synchronised batch-norm path against single-replica batch norm on the whole batch. */
#include "harness.h"
#include "layers_testutil.h"
#include "legr/layers.h"
#include "legr/util.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/*
 * Method. Each check defines a scalar L(x) = sum_i R_i * out_i(x) (R fixed random, the sum in
 * double), so dL/dout = R is what the backward receives as dout. For a perturbed float input
 * x_j the numerical derivative is (L(x_j + h) - L(x_j - h)) / (2h), using the float values that
 * x_j + h and x_j - h actually round to. The analytic gradient is read from buffers pre-filled
 * with random values and taken as (after - before), which checks that backward accumulates.
 *
 * Tolerance: |num - ana| <= FD_RTOL * |ana| + atol with
 *  - FD_RTOL = 1e-2 for the truncation error of central differences, h^2/6 * |L'''| relative to
 *    |L'|: zero for the linear kernels (conv, FC, add, pool, shortcut, ReLU away from its kink)
 *    and about h^2 = 1e-4 for batch norm and softmax whose curvature is O(1) at our scales;
 *  - atol = FD_NOISE * FLT_EPSILON * Labs / h for rounding: each float output out_i carries an
 *    error of a few ulps of a_i, the sum of the magnitudes it is built from (|out_i| for
 *    elementwise kernels; for conv and FC, the same layer applied to |x|, |w| (and |b|); a dot
 *    product of K terms errs by ~sqrt(K) ulps of a_i typically, K at worst). So each evaluation
 *    of L errs by order FLT_EPSILON * Labs, Labs = sum |R_i| * a_i, and the difference quotient
 *    divides two such errors by 2h. FD_NOISE = 16 covers the few-ulp factor for our K <= 50.
 * A bug (a wrong index, a missing term, overwrite instead of accumulate) gives errors of the
 * order of the gradient itself, far above both terms.
 */
enum { FD_NOISE = 16 };
static const double FD_RTOL = 1e-2;

typedef double (*LossFn)(void *ctx);

static double worst_fd; /* max |num - ana| / (FD_RTOL*|ana| + atol) over all checks, <= 1 passes */
static double worst_fd_abs;

/* L = sum R_i * out_i in double. */
static double loss_dot(const float *R, const float *out, long long n)
{
    return tu_dot(R, out, n);
}

/* The rounding scale Labs = sum |R_i| * a_i of the comment above. */
static double loss_scale(const float *R, const float *a, long long n)
{
    return tu_dot_abs(R, a, n);
}

/* y[i] = |x[i]| into a new buffer. */
static float *abs_copy(const float *x, long long n)
{
    float *y = xalloc_floats(n);
    for (long long i = 0; i < n; i++) y[i] = fabsf(x[i]);
    return y;
}

/* Checks ana[j] (double) against central differences of f over x[0..n). If kink is non-NULL,
 * elements with |kink[j]| <= 2h are skipped (a ReLU input near 0 has no derivative there). */
static void fd_check(const char *what, LossFn f, void *ctx, float *x, const double *ana, long long n,
                     float h, double labs, const float *kink)
{
    double atol = FD_NOISE * FLT_EPSILON * labs / h;
    int bad = 0;
    double local_err = 0.0;
    for (long long j = 0; j < n; j++) {
        if (kink && fabsf(kink[j]) <= 2 * h) continue;
        float x0 = x[j];
        float xp = x0 + h;
        float xm = x0 - h;
        x[j] = xp;
        double lp = f(ctx);
        x[j] = xm;
        double lm = f(ctx);
        x[j] = x0;
        double num = (lp - lm) / ((double)xp - xm);
        double err = fabs(num - ana[j]);
        double q = err / (FD_RTOL * fabs(ana[j]) + atol);
        if (!(q <= worst_fd)) worst_fd = q;
        if (err > worst_fd_abs) worst_fd_abs = err;
        if (err > local_err) local_err = err;
        if (!(q <= 1.0) && bad++ < 5)
            EXPECT(0, "%s[%lld]: numerical %.8g, analytic %.8g (atol %.3g)", what, j, num, ana[j],
                   atol);
    }
    EXPECT(bad == 0, "%s: %d of %lld gradient entries off", what, bad, n);
    printf("%-36s max |num - ana| %.3g (atol %.3g)\n", what, local_err, atol);
}

/* Fills buffer g with random values and returns them in a copy, for the accumulate check. */
static float *prefill(Rng *r, float *g, long long n)
{
    float *g0 = xalloc_floats(n);
    tu_fill_uniform(r, g, n, -1, 1);
    memcpy(g0, g, (size_t)n * sizeof(float));
    return g0;
}

/* ana[j] = g[j] - g0[j] in double; frees g0. */
static double *accumulated(const float *g, float *g0, long long n)
{
    double *ana = xmalloc((size_t)n * sizeof(double));
    for (long long j = 0; j < n; j++) ana[j] = (double)g[j] - g0[j];
    free(g0);
    return ana;
}

/* ---- convolution ---- */

typedef struct {
    int N, C, H, W, OC, K, S, P, G;
    float *x, *w, *out, *ws, *R;
    long long ny;
} ConvCase;

static double conv_loss(void *ctx)
{
    ConvCase *c = ctx;
    conv_forward(c->out, c->ws, c->x, c->w, c->N, c->C, c->H, c->W, c->OC, c->K, c->S, c->P, c->G);
    return loss_dot(c->R, c->out, c->ny);
}

static void grad_conv(Rng *r, int N, int C, int H, int W, int OC, int K, int S, int P, int G)
{
    ConvCase c = {N, C, H, W, OC, K, S, P, G, NULL, NULL, NULL, NULL, NULL, 0};
    long long nx = (long long)C * N * H * W;
    long long nw = (long long)OC * (C / G) * K * K;
    c.ny = (long long)OC * N * conv_out_size(H, K, S, P) * conv_out_size(W, K, S, P);
    long long nws = conv_workspace_floats(N, C, H, W, OC, K, S, P, G);
    c.x = xalloc_floats(nx);
    c.w = xalloc_floats(nw);
    c.out = xalloc_floats(c.ny);
    c.R = xalloc_floats(c.ny);
    c.ws = nws > 0 ? xalloc_floats(nws) : NULL;
    float *dx = xalloc_floats(nx);
    float *dw = xalloc_floats(nw);
    tu_fill_uniform(r, c.x, nx, -1, 1);
    tu_fill_uniform(r, c.w, nw, -1, 1);
    tu_fill_uniform(r, c.R, c.ny, -1, 1);
    float *ax_abs = abs_copy(c.x, nx);
    float *aw_abs = abs_copy(c.w, nw);
    float *aout = xalloc_floats(c.ny);
    conv_forward_ref(aout, ax_abs, aw_abs, N, C, H, W, OC, K, S, P, G);
    double labs = loss_scale(c.R, aout, c.ny);
    free(ax_abs);
    free(aw_abs);
    free(aout);
    float *dx0 = prefill(r, dx, nx);
    float *dw0 = prefill(r, dw, nw);
    conv_backward(dx, dw, c.ws, c.R, c.x, c.w, N, C, H, W, OC, K, S, P, G);
    double *ax = accumulated(dx, dx0, nx);
    double *aw = accumulated(dw, dw0, nw);
    char what[96];
    snprintf(what, sizeof what, "conv dx (C=%d K=%d S=%d P=%d G=%d)", C, K, S, P, G);
    fd_check(what, conv_loss, &c, c.x, ax, nx, 1e-2f, labs, NULL);
    snprintf(what, sizeof what, "conv dw (C=%d K=%d S=%d P=%d G=%d)", C, K, S, P, G);
    fd_check(what, conv_loss, &c, c.w, aw, nw, 1e-2f, labs, NULL);
    free(ax);
    free(aw);
    free(dx);
    free(dw);
    free(c.x);
    free(c.w);
    free(c.out);
    free(c.R);
    free(c.ws);
}

/* ---- batch norm ---- */

typedef struct {
    int C, M;
    float *x, *gamma, *beta, *out, *mean, *rstd, *rm, *rv, *R;
} BnCase;

static double bn_loss(void *ctx)
{
    BnCase *b = ctx;
    bn_forward_train(b->out, b->mean, b->rstd, b->rm, b->rv, b->x, b->gamma, b->beta, b->C, b->M,
                     0.1f, 1e-5f, NULL);
    return loss_dot(b->R, b->out, (long long)b->C * b->M);
}

static void grad_bn(Rng *r, int C, int M)
{
    BnCase b = {C, M, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    long long n = (long long)C * M;
    b.x = xalloc_floats(n);
    b.out = xalloc_floats(n);
    b.R = xalloc_floats(n);
    b.gamma = xalloc_floats(C);
    b.beta = xalloc_floats(C);
    b.mean = xalloc_floats(C);
    b.rstd = xalloc_floats(C);
    b.rm = xalloc_floats(C);
    b.rv = xalloc_floats(C);
    /* Channel c has mean ~ c - 1 and spread ~ 1 + c/2: non-zero means and unequal variances.
     * Alternating +-0.5 keeps neighbouring values at least 0.2*(1 + c/2) apart, so that even
     * with M = 2 the standard deviation is far above the step h (the curvature of xhat grows
     * like 1/std^2, and the truncation error with it). */
    for (int c = 0; c < C; c++)
        for (int i = 0; i < M; i++)
            b.x[(long long)c * M + i] =
                (float)(c - 1 + (1 + 0.5 * c) * ((i % 2 ? 0.5 : -0.5) + 0.4 * (2 * rng_uniform(r) - 1)));
    tu_fill_uniform(r, b.gamma, C, 0.5, 1.5);
    tu_fill_uniform(r, b.beta, C, -1, 1);
    tu_fill_uniform(r, b.R, n, -1, 1);
    for (int c = 0; c < C; c++) {
        b.rm[c] = 0;
        b.rv[c] = 1;
    }
    bn_loss(&b);
    /* (x - mean) * scale + shift: a few ulps of |xhat*gamma| + |beta| ~ |out| + |beta|. */
    float *aout = abs_copy(b.out, n);
    for (long long i = 0; i < n; i++) aout[i] += fabsf(b.beta[i / M]);
    double labs = loss_scale(b.R, aout, n);
    free(aout);
    float *dx = xalloc_floats(n);
    float *dg = xalloc_floats(C);
    float *db = xalloc_floats(C);
    float *dx0 = prefill(r, dx, n);
    float *dg0 = prefill(r, dg, C);
    float *db0 = prefill(r, db, C);
    bn_backward(dx, dg, db, b.R, b.x, b.mean, b.rstd, b.gamma, C, M, NULL);
    double *ax = accumulated(dx, dx0, n);
    double *ag = accumulated(dg, dg0, C);
    double *ab = accumulated(db, db0, C);
    fd_check("bn dx", bn_loss, &b, b.x, ax, n, 1e-2f, labs, NULL);
    fd_check("bn dgamma", bn_loss, &b, b.gamma, ag, C, 1e-2f, labs, NULL);
    fd_check("bn dbeta", bn_loss, &b, b.beta, ab, C, 1e-2f, labs, NULL);
    free(ax);
    free(ag);
    free(ab);
    free(dx);
    free(dg);
    free(db);
    free(b.x);
    free(b.out);
    free(b.R);
    free(b.gamma);
    free(b.beta);
    free(b.mean);
    free(b.rstd);
    free(b.rm);
    free(b.rv);
}

/* ---- ReLU, add, GAP, shortcut: one case struct for the simple one-input kernels ---- */

typedef enum { SIMPLE_RELU, SIMPLE_ADD_A, SIMPLE_ADD_B, SIMPLE_GAP, SIMPLE_SHORTCUT } SimpleKind;

typedef struct {
    SimpleKind kind;
    int N, C, H, W, OC, S;
    const int *map;
    float *x, *x2, *out, *R;
    long long nx, ny;
} SimpleCase;

static double simple_loss(void *ctx)
{
    SimpleCase *s = ctx;
    switch (s->kind) {
    case SIMPLE_RELU: relu_forward(s->out, s->x, s->nx); break;
    case SIMPLE_ADD_A:
    case SIMPLE_ADD_B: add_forward(s->out, s->x, s->x2, s->nx); break;
    case SIMPLE_GAP: gap_forward(s->out, s->x, s->N, s->C, s->H, s->W); break;
    case SIMPLE_SHORTCUT:
        shortcut_forward(s->out, s->x, s->map, s->N, s->C, s->H, s->W, s->OC, s->S);
        break;
    }
    return loss_dot(s->R, s->out, s->ny);
}

static void simple_backward(SimpleCase *s, float *dx, float *dx2)
{
    switch (s->kind) {
    case SIMPLE_RELU: relu_backward(dx, s->R, s->out, s->nx); break;
    case SIMPLE_ADD_A:
    case SIMPLE_ADD_B: add_backward(dx, dx2, s->R, s->nx); break;
    case SIMPLE_GAP: gap_backward(dx, s->R, s->N, s->C, s->H, s->W); break;
    case SIMPLE_SHORTCUT:
        shortcut_backward(dx, s->R, s->map, s->N, s->C, s->H, s->W, s->OC, s->S);
        break;
    }
}

static void grad_simple(Rng *r, const char *what, SimpleCase s)
{
    s.x = xalloc_floats(s.nx);
    s.x2 = xalloc_floats(s.nx);
    s.out = xalloc_floats(s.ny);
    s.R = xalloc_floats(s.ny);
    tu_fill_uniform(r, s.x, s.nx, -1, 1);
    tu_fill_uniform(r, s.x2, s.nx, -1, 1);
    tu_fill_uniform(r, s.R, s.ny, -1, 1);
    simple_loss(&s);
    float *aout = abs_copy(s.out, s.ny);
    double labs = loss_scale(s.R, aout, s.ny);
    free(aout);
    float *dx = xalloc_floats(s.nx);
    float *dx2 = xalloc_floats(s.nx);
    float *dx0 = prefill(r, dx, s.nx);
    float *dx20 = prefill(r, dx2, s.nx);
    simple_backward(&s, dx, dx2);
    double *ax = accumulated(dx, dx0, s.nx);
    double *ax2 = accumulated(dx2, dx20, s.nx);
    if (s.kind == SIMPLE_ADD_B)
        fd_check(what, simple_loss, &s, s.x2, ax2, s.nx, 1e-2f, labs, NULL);
    else
        fd_check(what, simple_loss, &s, s.x, ax, s.nx, 1e-2f, labs,
                 s.kind == SIMPLE_RELU ? s.x : NULL);
    free(ax);
    free(ax2);
    free(dx);
    free(dx2);
    free(s.x);
    free(s.x2);
    free(s.out);
    free(s.R);
}

/* ---- fully connected ---- */

typedef struct {
    int N, IN, OUT;
    float *x, *w, *b, *out, *R;
} FcCase;

static double fc_loss(void *ctx)
{
    FcCase *f = ctx;
    fc_forward(f->out, f->x, f->w, f->b, f->N, f->IN, f->OUT);
    return loss_dot(f->R, f->out, (long long)f->N * f->OUT);
}

static void grad_fc(Rng *r, int N, int IN, int OUT)
{
    FcCase f = {N, IN, OUT, NULL, NULL, NULL, NULL, NULL};
    long long nx = (long long)IN * N, nw = (long long)OUT * IN, ny = (long long)N * OUT;
    f.x = xalloc_floats(nx);
    f.w = xalloc_floats(nw);
    f.b = xalloc_floats(OUT);
    f.out = xalloc_floats(ny);
    f.R = xalloc_floats(ny);
    tu_fill_uniform(r, f.x, nx, -1, 1);
    tu_fill_uniform(r, f.w, nw, -1, 1);
    tu_fill_uniform(r, f.b, OUT, -1, 1);
    tu_fill_uniform(r, f.R, ny, -1, 1);
    float *ax_abs = abs_copy(f.x, nx);
    float *aw_abs = abs_copy(f.w, nw);
    float *ab_abs = abs_copy(f.b, OUT);
    float *aout = xalloc_floats(ny);
    fc_forward(aout, ax_abs, aw_abs, ab_abs, N, IN, OUT);
    double labs = loss_scale(f.R, aout, ny);
    free(ax_abs);
    free(aw_abs);
    free(ab_abs);
    free(aout);
    float *dx = xalloc_floats(nx);
    float *dw = xalloc_floats(nw);
    float *db = xalloc_floats(OUT);
    float *dx0 = prefill(r, dx, nx);
    float *dw0 = prefill(r, dw, nw);
    float *db0 = prefill(r, db, OUT);
    fc_backward(dx, dw, db, f.R, f.x, f.w, N, IN, OUT);
    double *ax = accumulated(dx, dx0, nx);
    double *aw = accumulated(dw, dw0, nw);
    double *ab = accumulated(db, db0, OUT);
    fd_check("fc dx", fc_loss, &f, f.x, ax, nx, 1e-2f, labs, NULL);
    fd_check("fc dw", fc_loss, &f, f.w, aw, nw, 1e-2f, labs, NULL);
    fd_check("fc db", fc_loss, &f, f.b, ab, OUT, 1e-2f, labs, NULL);
    /* dinp = NULL: the weight gradients are unchanged, nothing else is written. */
    float *dw2 = xalloc_floats(nw);
    float *db2 = xalloc_floats(OUT);
    memset(dw2, 0, (size_t)nw * sizeof(float));
    memset(db2, 0, (size_t)OUT * sizeof(float));
    fc_backward(NULL, dw2, db2, f.R, f.x, f.w, N, IN, OUT);
    double e = 0.0;
    for (long long j = 0; j < nw; j++) e = fmax(e, fabs(dw2[j] - aw[j]));
    EXPECT(e < 1e-5, "fc bwd with dinp=NULL: dw differs by %g", e);
    free(dw2);
    free(db2);
    free(ax);
    free(aw);
    free(ab);
    free(dx);
    free(dw);
    free(db);
    free(f.x);
    free(f.w);
    free(f.b);
    free(f.out);
    free(f.R);
}

/* ---- softmax cross-entropy: L = scale * (sum of losses), dL/dlogits from the backward ---- */

typedef struct {
    int N, NC;
    float scale;
    float *z, *p;
    const int *y;
} SoftmaxCase;

static double softmax_loss(void *ctx)
{
    SoftmaxCase *s = ctx;
    return s->scale * softmax_ce_forward(s->p, NULL, s->z, s->y, s->N, s->NC);
}

static void grad_softmax(Rng *r)
{
    enum { N = 4, NC = 5 };
    const int y[N] = {0, 3, 4, 1};
    SoftmaxCase s = {N, NC, 0.25f, NULL, NULL, y};
    s.z = xalloc_floats(N * NC);
    s.p = xalloc_floats(N * NC);
    tu_fill_uniform(r, s.z, N * NC, -3, 3);
    s.z[NC + 1] += 200; /* a large logit: the shifted computation must stay finite */
    double L = softmax_loss(&s);
    float *d = xalloc_floats(N * NC);
    for (int j = 0; j < N * NC; j++) d[j] = 1e3f; /* overwritten, not accumulated */
    softmax_ce_backward(d, s.p, y, N, NC, s.scale);
    double ana[N * NC];
    for (int j = 0; j < N * NC; j++) ana[j] = d[j];
    EXPECT(isfinite(L), "softmax loss not finite");
    fd_check("softmax dlogits", softmax_loss, &s, s.z, ana, N * NC, 1e-2f, fabs(L) + N, NULL);
    free(d);
    free(s.z);
    free(s.p);
}

/* ---- synchronised batch norm with a fake two-replica reducer ---- */

enum { RED_LOG_MAX = 4096 };

/* Simulates an allreduce between replicas A and B run one after the other: each call logs the
 * local buffer, and if `other` is set (the other replica's log from an earlier run of the same
 * sequence of calls) adds it. Running A (log only), then B (adding A's log), then A again (adding
 * B's log) gives both replicas the global sums. */
typedef struct {
    double log[RED_LOG_MAX];
    int nlog;
    int ncalls;
    const double *other;
} FakeReduce;

static void fake_reduce(double *buf, int n, void *ctx)
{
    FakeReduce *f = ctx;
    if (f->nlog + n > RED_LOG_MAX) abort();
    for (int i = 0; i < n; i++) {
        f->log[f->nlog + i] = buf[i];
        if (f->other) buf[i] += f->other[f->nlog + i];
    }
    f->nlog += n;
    f->ncalls++;
}

/* Columns [lo, lo+m) of every row of x (C, M) into dst (C, m): one replica's half of the batch. */
static void take_cols(float *dst, const float *x, int C, int M, int lo, int m)
{
    for (int c = 0; c < C; c++) memcpy(dst + (size_t)c * m, x + (size_t)c * M + lo, (size_t)m * sizeof(float));
}

static double max_diff_cols(const float *full, const float *part, int C, int M, int lo, int m)
{
    double e = 0.0;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < m; i++)
            e = fmax(e, fabs((double)full[(size_t)c * M + lo + i] - part[(size_t)c * m + i]));
    return e;
}

static void check_bn_sync(Rng *r, int C, int MA, int MB)
{
    int M = MA + MB;
    long long n = (long long)C * M;
    float *x = xalloc_floats(n), *dy = xalloc_floats(n), *out = xalloc_floats(n);
    float *dx = xalloc_floats(n);
    float *gamma = xalloc_floats(C), *beta = xalloc_floats(C);
    float *mean = xalloc_floats(C), *rstd = xalloc_floats(C);
    float *rm = xalloc_floats(C), *rv = xalloc_floats(C);
    float *dg = xalloc_floats(C), *db = xalloc_floats(C);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < M; i++)
            x[(size_t)c * M + i] = (float)(0.01 * c + (2 * rng_uniform(r) - 1) * (1 + i % 3));
    tu_fill_uniform(r, dy, n, -1, 1);
    tu_fill_uniform(r, gamma, C, 0.5, 1.5);
    tu_fill_uniform(r, beta, C, -1, 1);
    for (int c = 0; c < C; c++) {
        rm[c] = 0.5f;
        rv[c] = 2.0f;
        dg[c] = db[c] = 0;
    }
    memset(dx, 0, (size_t)n * sizeof(float));
    bn_forward_train(out, mean, rstd, rm, rv, x, gamma, beta, C, M, 0.1f, 1e-5f, NULL);
    bn_backward(dx, dg, db, dy, x, mean, rstd, gamma, C, M, NULL);

    /* Per replica k (0 = A, 1 = B): its half of x and dy, and its own outputs. */
    int ms[2] = {MA, MB};
    int lo[2] = {0, MA};
    float *xs[2], *dys[2], *outs[2], *dxs[2], *means[2], *rstds[2], *rms[2], *rvs[2], *dgs[2], *dbs[2];
    for (int k = 0; k < 2; k++) {
        long long nk = (long long)C * ms[k];
        xs[k] = xalloc_floats(nk);
        dys[k] = xalloc_floats(nk);
        outs[k] = xalloc_floats(nk);
        dxs[k] = xalloc_floats(nk);
        means[k] = xalloc_floats(C);
        rstds[k] = xalloc_floats(C);
        rms[k] = xalloc_floats(C);
        rvs[k] = xalloc_floats(C);
        dgs[k] = xalloc_floats(C);
        dbs[k] = xalloc_floats(C);
        take_cols(xs[k], x, C, M, lo[k], ms[k]);
        take_cols(dys[k], dy, C, M, lo[k], ms[k]);
    }
    FakeReduce *fa = xcalloc(1, sizeof *fa), *fb = xcalloc(1, sizeof *fb);
    BnReduce ra = {fake_reduce, fa}, rb = {fake_reduce, fb};
    /* Forward: A logs, B adds A, A adds B. Running stats restart from (0.5, 2) for each run. */
    int order[3] = {0, 1, 0};
    for (int step = 0; step < 3; step++) {
        int k = order[step];
        FakeReduce *f = k == 0 ? fa : fb;
        f->nlog = 0;
        f->ncalls = 0;
        f->other = step == 0 ? NULL : (k == 0 ? fb->log : fa->log);
        for (int c = 0; c < C; c++) {
            rms[k][c] = 0.5f;
            rvs[k][c] = 2.0f;
        }
        bn_forward_train(outs[k], means[k], rstds[k], rms[k], rvs[k], xs[k], gamma, beta, C, ms[k],
                         0.1f, 1e-5f, k == 0 ? &ra : &rb);
    }
    int chunks = fa->ncalls;
    /* Backward, same dance; the saved statistics are now the global ones. */
    for (int step = 0; step < 3; step++) {
        int k = order[step];
        FakeReduce *f = k == 0 ? fa : fb;
        f->nlog = 0;
        f->ncalls = 0;
        f->other = step == 0 ? NULL : (k == 0 ? fb->log : fa->log);
        memset(dxs[k], 0, (size_t)C * ms[k] * sizeof(float));
        memset(dgs[k], 0, (size_t)C * sizeof(float));
        memset(dbs[k], 0, (size_t)C * sizeof(float));
        bn_backward(dxs[k], dgs[k], dbs[k], dys[k], xs[k], means[k], rstds[k], gamma, C, ms[k],
                    k == 0 ? &ra : &rb);
    }
    /* Float results of the same math summed in a different order: a few ulps of O(1) values. */
    double e_out = 0, e_dx = 0, e_stat = 0, e_par = 0;
    for (int k = 0; k < 2; k++) {
        e_out = fmax(e_out, max_diff_cols(out, outs[k], C, M, lo[k], ms[k]));
        e_dx = fmax(e_dx, max_diff_cols(dx, dxs[k], C, M, lo[k], ms[k]));
        e_stat = fmax(e_stat, harness_max_rel_err(means[k], mean, C, 1.0));
        e_stat = fmax(e_stat, harness_max_rel_err(rstds[k], rstd, C, 1.0));
        e_stat = fmax(e_stat, harness_max_rel_err(rms[k], rm, C, 1.0));
        e_stat = fmax(e_stat, harness_max_rel_err(rvs[k], rv, C, 1.0));
    }
    for (int c = 0; c < C; c++) {
        e_par = fmax(e_par, fabs((double)dgs[0][c] + dgs[1][c] - dg[c]));
        e_par = fmax(e_par, fabs((double)dbs[0][c] + dbs[1][c] - db[c]));
    }
    printf("sync BN C=%d M=%d+%d (%d reductions per pass): max diff out %.3g, dx %.3g, stats %.3g, "
           "dgamma/dbeta %.3g\n", C, MA, MB, chunks, e_out, e_dx, e_stat, e_par);
    EXPECT(chunks == (C + 255) / 256 && fb->ncalls == chunks, "BN reduce calls: %d", chunks);
    EXPECT(e_out < 1e-5 && e_dx < 1e-5 && e_stat < 1e-6 && e_par < 1e-5,
           "sync BN differs from whole-batch BN");
    /* Without the reducer a half batch gets different statistics: the check above can fail. */
    bn_forward_train(outs[0], means[0], rstds[0], rms[0], rvs[0], xs[0], gamma, beta, C, ms[0], 0.1f,
                     1e-5f, NULL);
    EXPECT(max_diff_cols(out, outs[0], C, M, 0, MA) > 1e-3, "half-batch BN equals whole-batch BN?");

    for (int k = 0; k < 2; k++) {
        free(xs[k]);
        free(dys[k]);
        free(outs[k]);
        free(dxs[k]);
        free(means[k]);
        free(rstds[k]);
        free(rms[k]);
        free(rvs[k]);
        free(dgs[k]);
        free(dbs[k]);
    }
    free(fa);
    free(fb);
    free(x);
    free(dy);
    free(out);
    free(dx);
    free(gamma);
    free(beta);
    free(mean);
    free(rstd);
    free(rm);
    free(rv);
    free(dg);
    free(db);
}

int main(void)
{
    Rng r;
    rng_init(&r, 7, rng_stream_id(RNG_PURPOSE_TEST, 2));

    grad_conv(&r, 2, 3, 5, 5, 4, 3, 2, 1, 1);
    grad_conv(&r, 2, 4, 5, 4, 4, 3, 1, 1, 4);  /* depthwise */
    grad_conv(&r, 1, 4, 4, 5, 6, 3, 1, 0, 2);  /* grouped, unpadded */
    grad_conv(&r, 2, 3, 3, 3, 2, 1, 1, 0, 1);  /* pointwise (no workspace) */
    grad_conv(&r, 2, 2, 6, 5, 3, 5, 2, 2, 1);  /* 5x5, stride 2, pad 2 */
    grad_bn(&r, 3, 10);
    grad_bn(&r, 2, 2); /* smallest batch with a variance */

    SimpleCase relu = {SIMPLE_RELU, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, 60, 60};
    grad_simple(&r, "relu dx", relu);
    SimpleCase adda = {SIMPLE_ADD_A, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, 30, 30};
    grad_simple(&r, "add da", adda);
    SimpleCase addb = adda;
    addb.kind = SIMPLE_ADD_B;
    grad_simple(&r, "add db", addb);
    SimpleCase gap = {SIMPLE_GAP, 2, 3, 3, 3, 0, 0, NULL, NULL, NULL, NULL, NULL, 54, 6};
    grad_simple(&r, "gap dx", gap);
    static const int map2[3] = {4, 0, 2};
    SimpleCase sc2 = {SIMPLE_SHORTCUT, 2, 3, 5, 4, 6, 2, map2, NULL, NULL, NULL, NULL,
                      3 * 2 * 5 * 4, 6 * 2 * 3 * 2};
    grad_simple(&r, "shortcut s2 dx", sc2);
    static const int map1[3] = {1, 2, 0};
    SimpleCase sc1 = {SIMPLE_SHORTCUT, 2, 3, 3, 3, 3, 1, map1, NULL, NULL, NULL, NULL, 54, 54};
    grad_simple(&r, "shortcut s1 dx", sc1);
    grad_fc(&r, 3, 5, 4);
    grad_softmax(&r);
    printf("finite differences: worst error %.3g of the tolerance, worst absolute error %.3g\n",
           worst_fd, worst_fd_abs);

    check_bn_sync(&r, 5, 6, 6);
    check_bn_sync(&r, 300, 4, 8); /* two reduction chunks, unequal replica batches */
    return harness_finish("test_layers_grad");
}
