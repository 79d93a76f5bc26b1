/* Training-mode dropout on channel-major activations: one Philox stream per image, keyed by (seed, key, global image index), so a mask never depends on the batch split; images split over the engine's threads. */
#include "legr/layers.h"
#include "legr/rng.h"
#include "legr/util.h"

#include "parallel.h"

#include <string.h>

typedef struct {
    float *out;
    const float *in;
    int N, C, HW;
    double p;     /* keep when the draw is >= p */
    float scale;  /* 1/(1-p) in float */
    uint64_t seed, key;
    long long image0;
    int acc;      /* backward: out += instead of out = */
} DropJob;

/* Image n's stream: its index is a hash of (key, image0 + n), cut to the 48 bits a stream id
 * holds. */
static void drop_stream(Rng *r, const DropJob *j, int n)
{
    uint64_t k[2] = {j->key, (uint64_t)(j->image0 + n)};
    uint64_t index = hash_fnv1a(HASH_FNV_INIT, k, sizeof k) & 0xffffffffffffULL;
    rng_init(r, j->seed, rng_stream_id(RNG_PURPOSE_DROPOUT, index));
}

/* Images [lo, hi): the draws of image n run over its values in (c, i) order, whichever of the
 * forward and the backward asks, so both see the same mask. */
static void drop_range(void *ctx, int lo, int hi)
{
    const DropJob *j = ctx;
    for (int n = lo; n < hi; n++) {
        Rng r;
        drop_stream(&r, j, n);
        for (int c = 0; c < j->C; c++) {
            size_t at = ((size_t)c * j->N + n) * j->HW;
            float *o = j->out + at;
            const float *x = j->in + at;
            for (int i = 0; i < j->HW; i++) {
                float v = rng_uniform(&r) >= j->p ? x[i] * j->scale : 0.0f;
                o[i] = j->acc ? o[i] + v : v;
            }
        }
    }
}

/* PyTorch scales by 1/(1-p) computed in float: (1 - p) is formed in double, rounded to float,
 * and its float reciprocal multiplies the input. */
static void drop_run(float *out, const float *in, int N, int C, int HW, float p, uint64_t seed,
                     uint64_t key, long long image0, int acc)
{
    float q = (float)(1.0 - (double)p);
    DropJob j = {out, in, N, C, HW, p, 1.0f / q, seed, key, image0, acc};
    par_for(N, (long long)N * C * HW * 8, drop_range, &j);
}

void dropout_forward(float *out, const float *inp, int N, int C, int HW, float p, uint64_t seed,
                     uint64_t key, long long image0)
{
    CHECK(p >= 0.0f && p < 1.0f, "dropout probability %g is not in [0, 1)", (double)p);
    if (p == 0.0f) { /* every draw is >= 0 and the scale is 1: an exact copy, without the draws */
        memcpy(out, inp, (size_t)N * C * HW * sizeof(float));
        return;
    }
    drop_run(out, inp, N, C, HW, p, seed, key, image0, 0);
}

void dropout_backward(float *dinp, const float *dout, int N, int C, int HW, float p,
                      uint64_t seed, uint64_t key, long long image0)
{
    if (!dinp) return;
    CHECK(p >= 0.0f && p < 1.0f, "dropout probability %g is not in [0, 1)", (double)p);
    if (p == 0.0f) {
        size_t n = (size_t)N * C * HW;
        for (size_t i = 0; i < n; i++) dinp[i] += dout[i];
        return;
    }
    drop_run(dinp, dout, N, C, HW, p, seed, key, image0, 1);
}
