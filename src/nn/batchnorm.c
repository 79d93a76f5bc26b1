/* Batch normalisation over contiguous channel rows (C, M), PyTorch semantics, optionally synchronised across replicas and fused with a following ReLU. */
#include "isa.h" /* first: renames this file's functions in per-ISA builds */
#include "legr/layers.h"

#include <math.h>
#include <stddef.h>

#include "kernels.h"
#include "parallel.h"

/* Channels per cross-replica reduction: statistics travel in a stack buffer of 2*BN_CHUNK+1
 * doubles (no allocation in kernels), so a layer with C channels makes ceil(C/BN_CHUNK) calls
 * to red->fn; every replica has the same C and therefore makes the same calls. */
enum { BN_CHUNK = 256 };

/* Partial accumulators let the compiler vectorise the double-precision reductions without
 * -ffast-math (it may not reorder a single running sum). */
enum { BN_LANES = 8 };
typedef float bn_vf __attribute__((vector_size(BN_LANES * sizeof(float))));
typedef float bn_vfu __attribute__((vector_size(BN_LANES * sizeof(float)), aligned(4), may_alias));
typedef int bn_vi __attribute__((vector_size(BN_LANES * sizeof(int))));
typedef double bn_vd __attribute__((vector_size(BN_LANES * sizeof(double))));

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

/* *sum_dy = sum g, *sum_dyc = sum g*(x - mean) over one row, in double, with g = dy, or with
 * mask != NULL g = dy where 0 < mask < cap and 0 elsewhere (the gradient through a fused ReLU
 * or ReLU6). The two cases are separate loops so that each vectorises. */
static void bn_row_grad_sums(double *sum_dy, double *sum_dyc, const float *dy, const float *x,
                             const float *mask, float cap, double mean, int M)
{
    double s[BN_LANES] = {0};
    double q[BN_LANES] = {0};
    int i = 0;
    if (mask) {
        /* Written with vector types: GCC does not vectorise the select in the loop form. */
        bn_vd vs = {0}, vq = {0};
        for (; i + BN_LANES <= M; i += BN_LANES) {
            bn_vf d = *(const bn_vfu *)(dy + i);
            bn_vf mv = *(const bn_vfu *)(mask + i);
            bn_vi keep = (mv > (bn_vf){0}) & (mv < cap);
            bn_vd g = __builtin_convertvector((bn_vf)((bn_vi)d & keep), bn_vd);
            bn_vd xv = __builtin_convertvector(*(const bn_vfu *)(x + i), bn_vd);
            vs += g;
            vq += g * (xv - mean);
        }
        for (int j = 0; j < BN_LANES; j++) {
            s[j] = vs[j];
            q[j] = vq[j];
        }
    } else {
        for (; i + BN_LANES <= M; i += BN_LANES) {
            for (int j = 0; j < BN_LANES; j++) {
                double g = dy[i + j];
                s[j] += g;
                q[j] += g * ((double)x[i + j] - mean);
            }
        }
    }
    for (; i < M; i++) {
        double g = !mask || (mask[i] > 0.0f && mask[i] < cap) ? dy[i] : 0.0f;
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

/* out = (x - mean) * scale + shift over one row, then clamped to [0, cap] when cap > 0 (the
 * fused ReLU: cap = INFINITY; ReLU6: cap = 6), with relu_forward's and relu6_forward's
 * arithmetic. */
static void bn_row_affine(float *out, const float *x, float mean, float scale, float shift, int M,
                          float cap)
{
    if (cap == INFINITY) {
        for (int i = 0; i < M; i++) {
            float v = (x[i] - mean) * scale + shift;
            out[i] = v > 0.0f ? v : 0.0f;
        }
    } else if (cap > 0.0f) {
        for (int i = 0; i < M; i++) {
            float v = (x[i] - mean) * scale + shift;
            out[i] = v > 0.0f ? (v < cap ? v : cap) : 0.0f;
        }
    } else {
        for (int i = 0; i < M; i++) out[i] = (x[i] - mean) * scale + shift;
    }
}

/* Channel rows are independent, so the per-row passes run over par_for's channel ranges; the
 * cross-replica reduction stays in the calling thread, between the passes. */
typedef struct {
    float *out;
    const float *inp, *dout, *mask;
    const float *mean, *scale, *shift; /* per channel (affine pass) */
    double *buf;                       /* [sums | second sums] of the current chunk */
    int c0, nc, M;
    float cap;     /* affine pass: clamp to [0, cap] when > 0; gradient passes: the fused
                      activation's gradient flows where 0 < mask < cap */
    int overwrite; /* dx pass: dinp = dx instead of dinp += dx */
    const float *save_mean, *save_rstd, *gamma;
    float *dinp;
    const double *mean_dy, *mean_dyx;
} BnPass;

static void bn_moments_range(void *ctx, int lo, int hi)
{
    const BnPass *b = ctx;
    for (int i = lo; i < hi; i++)
        bn_row_moments(&b->buf[i], &b->buf[b->nc + i], b->inp + (size_t)(b->c0 + i) * b->M, b->M);
}

static void bn_affine_range(void *ctx, int lo, int hi)
{
    const BnPass *b = ctx;
    for (int c = lo; c < hi; c++)
        bn_row_affine(b->out + (size_t)c * b->M, b->inp + (size_t)c * b->M, b->mean[c],
                      b->scale[c], b->shift[c], b->M, b->cap);
}

/* Per chunk of channels, buf = [sum x (nc) | sum x^2 (nc) | M] is summed over replicas, so the
 * mean and biased variance are those of the global batch of sum(M) values per channel. The
 * statistics land in save_mean/save_rstd; the affine pass then reads them per channel. */
static void bn_train(float *out, float *save_mean, float *save_rstd, float *run_mean,
                     float *run_var, const float *inp, const float *gamma, const float *beta,
                     int C, int M, float momentum, float eps, const BnReduce *red, float cap,
                     float *scale)
{
    double buf[2 * BN_CHUNK + 1];
    long long work = (long long)C * M;
    for (int c0 = 0; c0 < C; c0 += BN_CHUNK) {
        int nc = C - c0 < BN_CHUNK ? C - c0 : BN_CHUNK;
        BnPass mp = {.inp = inp, .buf = buf, .c0 = c0, .nc = nc, .M = M};
        par_for(nc, work, bn_moments_range, &mp);
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
            scale[c] = (float)(gamma[c] * rstd);
        }
    }
    BnPass ap = {.out = out, .inp = inp, .mean = save_mean, .scale = scale, .shift = beta,
                 .M = M, .cap = cap};
    par_for(C, work, bn_affine_range, &ap);
}

/* The per-channel scale gamma*rstd lives in a stack buffer for up to BN_SCALE_STACK channels and
 * is otherwise recomputed chunk by chunk. */
enum { BN_SCALE_STACK = 1024 };

static void bn_forward_train_any(float *out, float *save_mean, float *save_rstd, float *run_mean,
                                 float *run_var, const float *inp, const float *gamma,
                                 const float *beta, int C, int M, float momentum, float eps,
                                 const BnReduce *red, float cap)
{
    float scale[BN_SCALE_STACK];
    /* Chunks of at most BN_SCALE_STACK channels are independent BN layers over those rows. */
    for (int c0 = 0; c0 < C; c0 += BN_SCALE_STACK) {
        int nc = C - c0 < BN_SCALE_STACK ? C - c0 : BN_SCALE_STACK;
        size_t o = (size_t)c0 * M;
        bn_train(out + o, save_mean + c0, save_rstd + c0, run_mean + c0, run_var + c0, inp + o,
                 gamma + c0, beta + c0, nc, M, momentum, eps, red, cap, scale);
    }
}

void bn_forward_train(float *out, float *save_mean, float *save_rstd, float *run_mean,
                      float *run_var, const float *inp, const float *gamma, const float *beta,
                      int C, int M, float momentum, float eps, const BnReduce *red)
{
    bn_forward_train_any(out, save_mean, save_rstd, run_mean, run_var, inp, gamma, beta, C, M,
                         momentum, eps, red, 0.0f);
}

void bn_relu_forward_train(float *out, float *save_mean, float *save_rstd, float *run_mean,
                           float *run_var, const float *inp, const float *gamma, const float *beta,
                           int C, int M, float momentum, float eps, const BnReduce *red,
                           float cap)
{
    bn_forward_train_any(out, save_mean, save_rstd, run_mean, run_var, inp, gamma, beta, C, M,
                         momentum, eps, red, cap);
}

static void bn_eval_any(float *out, const float *inp, const float *gamma, const float *beta,
                        const float *run_mean, const float *run_var, int C, int M, float eps,
                        float cap)
{
    float scale[BN_SCALE_STACK];
    for (int c0 = 0; c0 < C; c0 += BN_SCALE_STACK) {
        int nc = C - c0 < BN_SCALE_STACK ? C - c0 : BN_SCALE_STACK;
        for (int i = 0; i < nc; i++)
            scale[i] = (float)(gamma[c0 + i] / sqrt((double)run_var[c0 + i] + eps));
        BnPass ap = {.out = out + (size_t)c0 * M, .inp = inp + (size_t)c0 * M,
                     .mean = run_mean + c0, .scale = scale, .shift = beta + c0, .M = M,
                     .cap = cap};
        par_for(nc, (long long)nc * M, bn_affine_range, &ap);
    }
}

void bn_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                     const float *run_mean, const float *run_var, int C, int M, float eps)
{
    bn_eval_any(out, inp, gamma, beta, run_mean, run_var, C, M, eps, 0.0f);
}

void bn_relu_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                          const float *run_mean, const float *run_var, int C, int M, float eps,
                          float cap)
{
    bn_eval_any(out, inp, gamma, beta, run_mean, run_var, C, M, eps, cap);
}

/* Gradient sums of a chunk's rows; with a mask, dy counts only where 0 < mask < cap. */
static void bn_grad_sums_range(void *ctx, int lo, int hi)
{
    const BnPass *b = ctx;
    for (int i = lo; i < hi; i++) {
        int c = b->c0 + i;
        size_t o = (size_t)c * b->M;
        double sum_dyc;
        bn_row_grad_sums(&b->buf[i], &sum_dyc, b->dout + o, b->inp + o,
                         b->mask ? b->mask + o : NULL, b->cap, b->save_mean[c], b->M);
        b->buf[b->nc + i] = sum_dyc * b->save_rstd[c]; /* sum dy * xhat */
    }
}

static void bn_dx_range(void *ctx, int lo, int hi)
{
    const BnPass *b = ctx;
    for (int i = lo; i < hi; i++) {
        int c = b->c0 + i;
        float mean = b->save_mean[c];
        float rstd = b->save_rstd[c];
        float k = b->gamma[c] * rstd;
        float mean_dy = (float)b->mean_dy[i];
        float mean_dyx = (float)b->mean_dyx[i];
        size_t o = (size_t)c * b->M;
        const float *dy = b->dout + o;
        const float *x = b->inp + o;
        float *dx = b->dinp + o;
        /* dx = acc * dx + ...: acc is 1 (accumulate) or 0 (overwrite; 0 * dx would keep a NaN
         * of a stale buffer, so the two cases are separate loops). */
        if (b->mask) {
            const float *m = b->mask + o;
            const float cap = b->cap;
            if (b->overwrite) {
                for (int j = 0; j < b->M; j++) {
                    float g = m[j] > 0.0f && m[j] < cap ? dy[j] : 0.0f;
                    dx[j] = k * (g - mean_dy - (x[j] - mean) * rstd * mean_dyx);
                }
            } else {
                for (int j = 0; j < b->M; j++) {
                    float g = m[j] > 0.0f && m[j] < cap ? dy[j] : 0.0f;
                    dx[j] += k * (g - mean_dy - (x[j] - mean) * rstd * mean_dyx);
                }
            }
        } else if (b->overwrite) {
            for (int j = 0; j < b->M; j++)
                dx[j] = k * (dy[j] - mean_dy - (x[j] - mean) * rstd * mean_dyx);
        } else {
            for (int j = 0; j < b->M; j++)
                dx[j] += k * (dy[j] - mean_dy - (x[j] - mean) * rstd * mean_dyx);
        }
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
 * With a ReLU (ReLU6) fused after the BN, dy is the activation's output gradient where its
 * output (mask) is in (0, cap) and 0 elsewhere.
 */
static void bn_backward_any(float *dinp, float *dgamma, float *dbeta, const float *dout,
                            const float *mask, float cap, const float *inp,
                            const float *save_mean, const float *save_rstd, const float *gamma,
                            int C, int M, const BnReduce *red, int overwrite)
{
    double buf[2 * BN_CHUNK + 1];
    double mdy[BN_CHUNK], mdyx[BN_CHUNK];
    long long work = (long long)C * M;
    for (int c0 = 0; c0 < C; c0 += BN_CHUNK) {
        int nc = C - c0 < BN_CHUNK ? C - c0 : BN_CHUNK;
        BnPass b = {.inp = inp, .dout = dout, .mask = mask, .cap = cap, .buf = buf, .c0 = c0,
                    .nc = nc, .M = M,
                    .save_mean = save_mean, .save_rstd = save_rstd, .gamma = gamma,
                    .dinp = dinp, .mean_dy = mdy, .mean_dyx = mdyx, .overwrite = overwrite};
        par_for(nc, work, bn_grad_sums_range, &b);
        for (int i = 0; i < nc; i++) {
            dbeta[c0 + i] += (float)buf[i];
            dgamma[c0 + i] += (float)buf[nc + i];
        }
        if (!dinp) continue;
        buf[2 * nc] = M;
        if (red) red->fn(buf, 2 * nc + 1, red->ctx);
        double count = buf[2 * nc];
        for (int i = 0; i < nc; i++) {
            mdy[i] = buf[i] / count;
            mdyx[i] = buf[nc + i] / count;
        }
        par_for(nc, work, bn_dx_range, &b);
    }
}

void bn_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                 const float *save_mean, const float *save_rstd, const float *gamma, int C, int M,
                 const BnReduce *red)
{
    bn_backward_any(dinp, dgamma, dbeta, dout, NULL, 0.0f, inp, save_mean, save_rstd, gamma, C, M,
                    red, 0);
}

void bn_relu_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                      const float *out, float cap, const float *inp, const float *save_mean,
                      const float *save_rstd, const float *gamma, int C, int M,
                      const BnReduce *red)
{
    bn_backward_any(dinp, dgamma, dbeta, dout, out, cap, inp, save_mean, save_rstd, gamma, C, M,
                    red, 0);
}

void bn_backward_set(float *dinp, float *dgamma, float *dbeta, const float *dout,
                     const float *mask, float cap, const float *inp, const float *save_mean,
                     const float *save_rstd, const float *gamma, int C, int M, const BnReduce *red)
{
    bn_backward_any(dinp, dgamma, dbeta, dout, mask, cap, inp, save_mean, save_rstd, gamma, C, M,
                    red, 1);
}
