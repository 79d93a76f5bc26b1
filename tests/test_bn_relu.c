/* Fused BN+ReLU and BN+ReLU6 kernels against BN followed by ReLU or ReLU6, the threaded BN/elementwise kernels against their single-thread results, the threaded add, and the overwriting backward forms. */
#include "harness.h"
#include "layers_testutil.h"
#include "legr/layers.h"
#include "legr/util.h"
#include "../src/nn/kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { C = 5, M = 20011 }; /* C*M > the threading threshold; M odd for the vector tails */

static double max_rel(const float *a, const float *b, long long n)
{
    double w = 0.0;
    for (long long i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / (fabs((double)b[i]) + 1e-3);
        if (isnan(e)) return INFINITY; /* NaN compares false with anything: fail it here */
        if (e > w) w = e;
    }
    return w;
}

/* Everything one pass computes, fused or composed. */
typedef struct {
    float out[C * M], dx[C * M];
    float mean[C], rstd[C], rm[C], rv[C], dg[C], db[C];
    float eval_out[C * M];
} Result;

static float x[C * M], dy[C * M], gamma_[C], beta_[C];

/* fused != 0: the fused kernels; cap: INFINITY for ReLU, 6 for ReLU6. */
static void run(Result *r, int fused, float cap)
{
    static float bn_out[C * M], dbn[C * M];
    for (int c = 0; c < C; c++) {
        r->rm[c] = 0.1f * c;
        r->rv[c] = 1.0f + 0.2f * c;
        r->dg[c] = r->db[c] = 0.5f;
    }
    for (long long i = 0; i < C * M; i++) r->dx[i] = 0.25f;
    if (fused) {
        bn_relu_forward_train(r->out, r->mean, r->rstd, r->rm, r->rv, x, gamma_, beta_, C, M,
                              0.1f, 1e-5f, NULL, cap);
        bn_relu_backward(r->dx, r->dg, r->db, dy, r->out, cap, x, r->mean, r->rstd, gamma_, C, M,
                         NULL);
        bn_relu_forward_eval(r->eval_out, x, gamma_, beta_, r->rm, r->rv, C, M, 1e-5f, cap);
        return;
    }
    const long long n = (long long)C * M;
    bn_forward_train(bn_out, r->mean, r->rstd, r->rm, r->rv, x, gamma_, beta_, C, M, 0.1f, 1e-5f,
                     NULL);
    (cap == 6.0f ? relu6_forward : relu_forward)(r->out, bn_out, n);
    memset(dbn, 0, sizeof dbn);
    (cap == 6.0f ? relu6_backward : relu_backward)(dbn, dy, r->out, n);
    bn_backward(r->dx, r->dg, r->db, dbn, x, r->mean, r->rstd, gamma_, C, M, NULL);
    bn_forward_eval(bn_out, x, gamma_, beta_, r->rm, r->rv, C, M, 1e-5f);
    (cap == 6.0f ? relu6_forward : relu_forward)(r->eval_out, bn_out, n);
}

static void compare(const char *what, const Result *a, const Result *b, double tol)
{
    const struct {
        const char *name;
        const float *p, *q;
        long long n;
    } t[] = {
        {"out", a->out, b->out, C * M},       {"dinp", a->dx, b->dx, C * M},
        {"save_mean", a->mean, b->mean, C},   {"save_rstd", a->rstd, b->rstd, C},
        {"running_mean", a->rm, b->rm, C},    {"running_var", a->rv, b->rv, C},
        {"dgamma", a->dg, b->dg, C},          {"dbeta", a->db, b->db, C},
        {"eval out", a->eval_out, b->eval_out, C * M},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        double e = max_rel(t[i].p, t[i].q, t[i].n);
        EXPECT(e <= tol, "%s: %s differs by %.3g (relative)", what, t[i].name, e);
    }
}

int main(void)
{
    Rng r;
    rng_init(&r, 11, 5);
    tu_fill_uniform(&r, x, C * M, -2, 3);
    tu_fill_uniform(&r, dy, C * M, -1, 1);
    tu_fill_uniform(&r, gamma_, C, 0.5, 1.5);
    tu_fill_uniform(&r, beta_, C, -0.5, 0.5);
    static Result fused1, comp1, fused2, comp2;
    /* BN + ReLU6: gammas of 3-5 put a share of the outputs above 6. */
    for (int c = 0; c < C; c++) gamma_[c] += 3.0f;
    openblas_set_num_threads(1);
    run(&fused1, 1, 6.0f);
    run(&comp1, 0, 6.0f);
    long long low = 0, high = 0;
    for (long long i = 0; i < C * M; i++) {
        low += comp1.out[i] == 0.0f;
        high += comp1.out[i] == 6.0f;
    }
    EXPECT(low > C * M / 10 && high > C * M / 50, "ReLU6 clamps %lld values at 0 and %lld at 6",
           low, high);
    compare("fused vs BN then ReLU6", &fused1, &comp1, 1e-5);
    EXPECT(memcmp(comp1.out, fused1.out, sizeof comp1.out) == 0 &&
               memcmp(comp1.eval_out, fused1.eval_out, sizeof comp1.eval_out) == 0,
           "BN+ReLU6 outputs are not bit-identical to BN then ReLU6");
    for (int c = 0; c < C; c++) gamma_[c] -= 3.0f;

    run(&fused1, 1, INFINITY);
    run(&comp1, 0, INFINITY);
    openblas_set_num_threads(2);
    run(&fused2, 1, INFINITY);
    run(&comp2, 0, INFINITY);
    long long zeros = 0;
    for (long long i = 0; i < C * M; i++) zeros += comp1.out[i] == 0.0f;
    EXPECT(zeros > C * M / 10 && zeros < C * M * 9 / 10, "ReLU masks %lld of %d values", zeros,
           C * M);
    compare("fused vs BN then ReLU, 1 thread", &fused1, &comp1, 1e-5);
    compare("fused vs BN then ReLU, 2 threads", &fused2, &comp2, 1e-5);
    /* Threads split rows or chunks, never a sum: results are bit-identical. */
    EXPECT(memcmp(&fused1, &fused2, sizeof fused1) == 0, "fused kernels differ with 2 threads");
    EXPECT(memcmp(&comp1, &comp2, sizeof comp1) == 0, "BN/ReLU kernels differ with 2 threads");

    /* The residual add, forward and backward, over the threaded chunks (2 threads set above). */
    static float sum[C * M], da[C * M], db[C * M];
    add_forward(sum, x, dy, (long long)C * M);
    for (long long i = 0; i < C * M; i++) da[i] = db[i] = 1.0f;
    add_backward(da, db, dy, (long long)C * M);
    long long bad = 0;
    for (long long i = 0; i < C * M; i++)
        bad += sum[i] != x[i] + dy[i] || da[i] != 1.0f + dy[i] || db[i] != 1.0f + dy[i];
    EXPECT(bad == 0, "add forward/backward wrong at %lld positions", bad);

    /* Overwriting forms == accumulating into zeros, whatever the buffer held before. */
    static float acc[C * M], set[C * M], acc2[C * M], set2[C * M];
    float dg1[C] = {0}, db1[C] = {0}, dg2[C] = {0}, db2[C] = {0};
    for (int fusedbn = 0; fusedbn < 2; fusedbn++) {
        const float *mask = fusedbn ? fused1.out : NULL;
        memset(acc, 0, sizeof acc);
        for (long long i = 0; i < C * M; i++) set[i] = NAN;
        if (fusedbn)
            bn_relu_backward(acc, dg1, db1, dy, mask, INFINITY, x, fused1.mean, fused1.rstd,
                             gamma_, C, M, NULL);
        else
            bn_backward(acc, dg1, db1, dy, x, fused1.mean, fused1.rstd, gamma_, C, M, NULL);
        bn_backward_set(set, dg2, db2, dy, mask, INFINITY, x, fused1.mean, fused1.rstd, gamma_, C,
                        M, NULL);
        EXPECT(memcmp(acc, set, sizeof acc) == 0, "bn_backward_set (mask %d) != accumulate", fusedbn);
        EXPECT(memcmp(dg1, dg2, sizeof dg1) == 0 && memcmp(db1, db2, sizeof db1) == 0,
               "bn_backward_set (mask %d): dgamma/dbeta differ", fusedbn);
    }
    memset(acc, 0, sizeof acc);
    for (long long i = 0; i < C * M; i++) set[i] = NAN;
    relu_backward(acc, dy, x, (long long)C * M);
    relu_backward_set(set, dy, x, (long long)C * M);
    EXPECT(memcmp(acc, set, sizeof acc) == 0, "relu_backward_set != accumulate into zeros");
    for (long long i = 0; i < C * M; i++) {
        acc[i] = 0.0f;
        set[i] = NAN;
        acc2[i] = set2[i] = 2.0f;
    }
    add_backward(acc, acc2, dy, (long long)C * M);
    add_backward_set(set, set2, dy, (long long)C * M, 1, 0);
    EXPECT(memcmp(acc, set, sizeof acc) == 0 && memcmp(acc2, set2, sizeof acc2) == 0,
           "add_backward_set (set a, accumulate b) differs");

    /* add+ReLU fused == add, then ReLU; its backward == relu_backward, then add_backward. */
    static float ar[C * M], ar2[C * M], g[C * M];
    add_relu_forward(ar, x, dy, (long long)C * M);
    add_forward(ar2, x, dy, (long long)C * M);
    relu_forward(ar2, ar2, (long long)C * M);
    EXPECT(memcmp(ar, ar2, sizeof ar) == 0, "add_relu_forward != add then relu");
    for (long long i = 0; i < C * M; i++) {
        acc[i] = 0.0f; /* da is overwritten: the same as accumulating into zeros */
        acc2[i] = 0.5f;
        set[i] = NAN;
        set2[i] = 0.5f;
        g[i] = 0.0f;
    }
    relu_backward(g, x, ar, (long long)C * M); /* x plays the ReLU's output gradient */
    add_backward(acc, acc2, g, (long long)C * M);
    add_relu_backward(set, set2, x, ar, (long long)C * M, 1, 0);
    EXPECT(memcmp(acc, set, sizeof acc) == 0 && memcmp(acc2, set2, sizeof acc2) == 0,
           "add_relu_backward differs from relu_backward then add_backward");
    return harness_finish("test_bn_relu");
}
