/* Batch normalisation over contiguous channel rows (C, M), PyTorch semantics, optionally synchronised across replicas. */
#include "legr/layers.h"

#include <math.h>
#include <stddef.h>

/* Channels per cross-replica reduction: statistics travel in a stack buffer of 2*BN_CHUNK+1
 * doubles (no allocation in kernels), so a layer with C channels makes ceil(C/BN_CHUNK) calls
 * to red->fn; every replica has the same C and therefore makes the same calls. */
enum { BN_CHUNK = 256 };

/* Partial accumulators let the compiler vectorise the double-precision reductions without
 * -ffast-math (it may not reorder a single running sum). */
enum { BN_LANES = 8 };

/* *sum = sum x, *sumsq = sum x^2 over one row, in double. */
static void bn_row_moments(double *sum, double *sumsq, const float *x, int M)
{
    double s[BN_LANES] = {0};
    double q[BN_LANES] = {0};
    int i = 0;
    for (; i + BN_LANES <= M; i += BN_LANES) {
        for (int j = 0; j < BN_LANES; j++) {
            double v = x[i + j];
            s[j] += v;
            q[j] += v * v;
        }
    }
    for (; i < M; i++) {
        double v = x[i];
        s[0] += v;
        q[0] += v * v;
    }
    double ts = 0.0, tq = 0.0;
    for (int j = 0; j < BN_LANES; j++) {
        ts += s[j];
        tq += q[j];
    }
    *sum = ts;
    *sumsq = tq;
}

/* *sum_dy = sum dy, *sum_dyc = sum dy*(x - mean) over one row, in double. */
static void bn_row_grad_sums(double *sum_dy, double *sum_dyc, const float *dy, const float *x,
                             double mean, int M)
{
    double s[BN_LANES] = {0};
    double q[BN_LANES] = {0};
    int i = 0;
    for (; i + BN_LANES <= M; i += BN_LANES) {
        for (int j = 0; j < BN_LANES; j++) {
            double g = dy[i + j];
            s[j] += g;
            q[j] += g * ((double)x[i + j] - mean);
        }
    }
    for (; i < M; i++) {
        double g = dy[i];
        s[0] += g;
        q[0] += g * ((double)x[i] - mean);
    }
    double ts = 0.0, tq = 0.0;
    for (int j = 0; j < BN_LANES; j++) {
        ts += s[j];
        tq += q[j];
    }
    *sum_dy = ts;
    *sum_dyc = tq;
}

/* out = (x - mean) * scale + shift over one row. */
static void bn_row_affine(float *out, const float *x, float mean, float scale, float shift, int M)
{
    for (int i = 0; i < M; i++) out[i] = (x[i] - mean) * scale + shift;
}

/* Per chunk of channels, buf = [sum x (nc) | sum x^2 (nc) | M] is summed over replicas, so the
 * mean and biased variance are those of the global batch of sum(M) values per channel. */
void bn_forward_train(float *out, float *save_mean, float *save_rstd, float *run_mean,
                      float *run_var, const float *inp, const float *gamma, const float *beta,
                      int C, int M, float momentum, float eps, const BnReduce *red)
{
    double buf[2 * BN_CHUNK + 1];
    for (int c0 = 0; c0 < C; c0 += BN_CHUNK) {
        int nc = C - c0 < BN_CHUNK ? C - c0 : BN_CHUNK;
        for (int i = 0; i < nc; i++)
            bn_row_moments(&buf[i], &buf[nc + i], inp + (size_t)(c0 + i) * M, M);
        buf[2 * nc] = M;
        if (red) red->fn(buf, 2 * nc + 1, red->ctx);
        double count = buf[2 * nc];
        for (int i = 0; i < nc; i++) {
            int c = c0 + i;
            double mean = buf[i] / count;
            double var = buf[nc + i] / count - mean * mean;
            if (var < 0.0) var = 0.0; /* rounding when all values are (nearly) equal */
            double rstd = 1.0 / sqrt(var + eps);
            /* PyTorch keeps the unbiased variance in the running estimate; a single value per
             * channel has none, so it falls back to the biased one (0) rather than dividing by 0. */
            double unbiased = count > 1.0 ? var * count / (count - 1.0) : var;
            save_mean[c] = (float)mean;
            save_rstd[c] = (float)rstd;
            run_mean[c] = (float)((1.0 - momentum) * run_mean[c] + momentum * mean);
            run_var[c] = (float)((1.0 - momentum) * run_var[c] + momentum * unbiased);
            bn_row_affine(out + (size_t)c * M, inp + (size_t)c * M, (float)mean,
                          (float)(gamma[c] * rstd), beta[c], M);
        }
    }
}

void bn_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                     const float *run_mean, const float *run_var, int C, int M, float eps)
{
    for (int c = 0; c < C; c++) {
        float scale = (float)(gamma[c] / sqrt((double)run_var[c] + eps));
        bn_row_affine(out + (size_t)c * M, inp + (size_t)c * M, run_mean[c], scale, beta[c], M);
    }
}

/*
 * With xhat = (x - mean) * rstd and y = gamma * xhat + beta over a global batch of Mt values:
 *   dbeta = sum dy,  dgamma = sum dy * xhat,
 *   dx = gamma * rstd * (dy - sum(dy)/Mt - xhat * sum(dy * xhat)/Mt),
 * where the sums in dx run over the global batch (the mean and variance depend on every
 * replica's values) while dgamma and dbeta get this replica's share only: the data-parallel
 * gradient reduction adds the shares up like every other parameter gradient.
 * The reduction is skipped when dinp is NULL, which all replicas agree on (same network).
 */
void bn_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                 const float *save_mean, const float *save_rstd, const float *gamma, int C, int M,
                 const BnReduce *red)
{
    double buf[2 * BN_CHUNK + 1];
    for (int c0 = 0; c0 < C; c0 += BN_CHUNK) {
        int nc = C - c0 < BN_CHUNK ? C - c0 : BN_CHUNK;
        for (int i = 0; i < nc; i++) {
            int c = c0 + i;
            double sum_dyc;
            bn_row_grad_sums(&buf[i], &sum_dyc, dout + (size_t)c * M, inp + (size_t)c * M,
                             save_mean[c], M);
            buf[nc + i] = sum_dyc * save_rstd[c]; /* sum dy * xhat */
            dbeta[c] += (float)buf[i];
            dgamma[c] += (float)buf[nc + i];
        }
        if (!dinp) continue;
        buf[2 * nc] = M;
        if (red) red->fn(buf, 2 * nc + 1, red->ctx);
        double count = buf[2 * nc];
        for (int i = 0; i < nc; i++) {
            int c = c0 + i;
            float mean = save_mean[c];
            float rstd = save_rstd[c];
            float k = gamma[c] * rstd;
            float mean_dy = (float)(buf[i] / count);
            float mean_dyx = (float)(buf[nc + i] / count);
            const float *dy = dout + (size_t)c * M;
            const float *x = inp + (size_t)c * M;
            float *dx = dinp + (size_t)c * M;
            for (int j = 0; j < M; j++)
                dx[j] += k * (dy[j] - mean_dy - (x[j] - mean) * rstd * mean_dyx);
        }
    }
}
