/* Elementwise kernels over flat float arrays (ReLU, ReLU6, the residual add) and the conv bias over channel rows, split over the engine's threads. */
#include "isa.h" /* first: renames this file's functions in per-ISA builds */
#include "legr/layers.h"

#include <stddef.h>
#include <string.h>

#include "kernels.h"
#include "parallel.h"

/* Work is cut into chunks of ELT_CHUNK floats that par_for hands out in contiguous ranges. */
enum { ELT_CHUNK = 1 << 14 };

typedef struct {
    float *out, *out2;
    const float *a, *b;
    long long n;
    int set; /* backward: overwrite instead of accumulate */
} EltArgs;

static void elt_range(const EltArgs *e, int lo, int hi, long long *i0, long long *i1)
{
    *i0 = (long long)lo * ELT_CHUNK;
    *i1 = (long long)hi * ELT_CHUNK < e->n ? (long long)hi * ELT_CHUNK : e->n;
}

static int elt_chunks(long long n) { return (int)((n + ELT_CHUNK - 1) / ELT_CHUNK); }

static void relu_forward_range(void *ctx, int lo, int hi)
{
    const EltArgs *e = ctx;
    long long i0, i1;
    elt_range(e, lo, hi, &i0, &i1);
    float *out = e->out;
    const float *a = e->a;
    for (long long i = i0; i < i1; i++) out[i] = a[i] > 0.0f ? a[i] : 0.0f;
}

void relu_forward(float *out, const float *inp, long long n)
{
    EltArgs e = {out, NULL, inp, NULL, n, 0};
    par_for(elt_chunks(n), n, relu_forward_range, &e);
}

static void relu_backward_range(void *ctx, int lo, int hi)
{
    const EltArgs *e = ctx;
    long long i0, i1;
    elt_range(e, lo, hi, &i0, &i1);
    float *dinp = e->out;
    const float *dout = e->a, *out = e->b;
    if (e->set)
        for (long long i = i0; i < i1; i++) dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
    else
        for (long long i = i0; i < i1; i++) dinp[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

/* dinp += dout where the forward output was positive; out > 0 iff inp > 0, so the saved output
 * is enough and the input need not be kept (the subgradient at 0 is taken as 0, as in PyTorch). */
void relu_backward(float *dinp, const float *dout, const float *out, long long n)
{
    if (!dinp) return;
    EltArgs e = {dinp, NULL, dout, out, n, 0};
    par_for(elt_chunks(n), n, relu_backward_range, &e);
}

void relu_backward_set(float *dinp, const float *dout, const float *out, long long n)
{
    EltArgs e = {dinp, NULL, dout, out, n, 1};
    par_for(elt_chunks(n), n, relu_backward_range, &e);
}

static void relu6_forward_range(void *ctx, int lo, int hi)
{
    const EltArgs *e = ctx;
    long long i0, i1;
    elt_range(e, lo, hi, &i0, &i1);
    float *out = e->out;
    const float *a = e->a;
    for (long long i = i0; i < i1; i++) out[i] = a[i] > 0.0f ? (a[i] < 6.0f ? a[i] : 6.0f) : 0.0f;
}

void relu6_forward(float *out, const float *inp, long long n)
{
    EltArgs e = {out, NULL, inp, NULL, n, 0};
    par_for(elt_chunks(n), n, relu6_forward_range, &e);
}

static void relu6_backward_range(void *ctx, int lo, int hi)
{
    const EltArgs *e = ctx;
    long long i0, i1;
    elt_range(e, lo, hi, &i0, &i1);
    float *dinp = e->out;
    const float *dout = e->a, *out = e->b;
    for (long long i = i0; i < i1; i++) dinp[i] += out[i] > 0.0f && out[i] < 6.0f ? dout[i] : 0.0f;
}

/* dinp += dout where 0 < out < 6, which holds iff 0 < inp < 6: the saved output is enough (the
 * subgradient at both kinks is 0, as in PyTorch). */
void relu6_backward(float *dinp, const float *dout, const float *out, long long n)
{
    if (!dinp) return;
    EltArgs e = {dinp, NULL, dout, out, n, 0};
    par_for(elt_chunks(n), n, relu6_backward_range, &e);
}

static void add_forward_range(void *ctx, int lo, int hi)
{
    const EltArgs *e = ctx;
    long long i0, i1;
    elt_range(e, lo, hi, &i0, &i1);
    float *out = e->out;
    const float *a = e->a, *b = e->b;
    for (long long i = i0; i < i1; i++) out[i] = a[i] + b[i];
}

void add_forward(float *out, const float *a, const float *b, long long n)
{
    EltArgs e = {out, NULL, a, b, n, 0};
    par_for(elt_chunks(n), n, add_forward_range, &e);
}

static void add_backward_range(void *ctx, int lo, int hi)
{
    const EltArgs *e = ctx;
    long long i0, i1;
    elt_range(e, lo, hi, &i0, &i1);
    float *da = e->out, *db = e->out2;
    const float *dout = e->a;
    if (da && (e->set & 1))
        memcpy(da + i0, dout + i0, (size_t)(i1 - i0) * sizeof(float));
    else if (da)
        for (long long i = i0; i < i1; i++) da[i] += dout[i];
    if (db && (e->set & 2))
        memcpy(db + i0, dout + i0, (size_t)(i1 - i0) * sizeof(float));
    else if (db)
        for (long long i = i0; i < i1; i++) db[i] += dout[i];
}

/* da += dout, db += dout; either may be NULL (not needed). */
void add_backward(float *da, float *db, const float *dout, long long n)
{
    EltArgs e = {da, db, dout, NULL, n, 0};
    par_for(elt_chunks(n), n, add_backward_range, &e);
}

void add_backward_set(float *da, float *db, const float *dout, long long n, int set_a, int set_b)
{
    EltArgs e = {da, db, dout, NULL, n, (set_a ? 1 : 0) | (set_b ? 2 : 0)};
    par_for(elt_chunks(n), n, add_backward_range, &e);
}

static void add_relu_forward_range(void *ctx, int lo, int hi)
{
    const EltArgs *e = ctx;
    long long i0, i1;
    elt_range(e, lo, hi, &i0, &i1);
    float *out = e->out;
    const float *a = e->a, *b = e->b;
    for (long long i = i0; i < i1; i++) {
        float v = a[i] + b[i];
        out[i] = v > 0.0f ? v : 0.0f;
    }
}

void add_relu_forward(float *out, const float *a, const float *b, long long n)
{
    EltArgs e = {out, NULL, a, b, n, 0};
    par_for(elt_chunks(n), n, add_relu_forward_range, &e);
}

/* d = (or +=) dout where out > 0, else 0, over [i0, i1). */
static void relu_grad_into(float *d, const float *dout, const float *out, long long i0,
                           long long i1, int set)
{
    if (set)
        for (long long i = i0; i < i1; i++) d[i] = out[i] > 0.0f ? dout[i] : 0.0f;
    else
        for (long long i = i0; i < i1; i++) d[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

/* g = dout where out > 0, else 0, into da and db (each overwritten or accumulated per set). One
 * loop per output: each vectorises (a loop storing to both did not), and da may be db. */
static void add_relu_backward_range(void *ctx, int lo, int hi)
{
    const EltArgs *e = ctx;
    long long i0, i1;
    elt_range(e, lo, hi, &i0, &i1);
    if (e->out) relu_grad_into(e->out, e->a, e->b, i0, i1, e->set & 1);
    if (e->out2) relu_grad_into(e->out2, e->a, e->b, i0, i1, e->set & 2);
}

void add_relu_backward(float *da, float *db, const float *dout, const float *out, long long n,
                       int set_a, int set_b)
{
    EltArgs e = {da, db, dout, out, n, (set_a ? 1 : 0) | (set_b ? 2 : 0)};
    par_for(elt_chunks(n), n, add_relu_backward_range, &e);
}

/* ---- conv bias over rows (OC, M): threads take whole rows ---- */

typedef struct {
    float *out;
    const float *in;
    long long M;
} BiasArgs;

/* Row sums run in BIAS_LANES float partial sums (one vector or two) over blocks of BIAS_BLOCK
 * floats, each block's partials then added in double in lane order: vector speed, a fixed order,
 * and float partials of at most BIAS_BLOCK / BIAS_LANES terms however long the row. */
enum { BIAS_LANES = 16, BIAS_BLOCK = 4096 };

static void bias_forward_range(void *ctx, int lo, int hi)
{
    const BiasArgs *b = ctx;
    for (int oc = lo; oc < hi; oc++) {
        float *row = b->out + (size_t)oc * b->M, v = b->in[oc];
        for (long long i = 0; i < b->M; i++) row[i] += v;
    }
}

void bias_forward(float *out, const float *bias, int OC, long long M)
{
    BiasArgs b = {out, bias, M};
    par_for(OC, OC * M, bias_forward_range, &b);
}

static void bias_backward_range(void *ctx, int lo, int hi)
{
    const BiasArgs *b = ctx;
    for (int oc = lo; oc < hi; oc++) {
        const float *row = b->in + (size_t)oc * b->M;
        double s = 0.0;
        for (long long i0 = 0; i0 < b->M; i0 += BIAS_BLOCK) {
            long long i1 = i0 + BIAS_BLOCK < b->M ? i0 + BIAS_BLOCK : b->M, i = i0;
            float acc[BIAS_LANES] = {0};
            for (; i + BIAS_LANES <= i1; i += BIAS_LANES)
                for (int k = 0; k < BIAS_LANES; k++) acc[k] += row[i + k];
            for (int k = 0; i < i1; i++, k++) acc[k] += row[i];
            for (int k = 0; k < BIAS_LANES; k++) s += acc[k];
        }
        b->out[oc] += (float)s;
    }
}

void bias_backward(float *dbias, const float *dout, int OC, long long M)
{
    BiasArgs b = {dbias, dout, M};
    par_for(OC, OC * M, bias_backward_range, &b);
}
