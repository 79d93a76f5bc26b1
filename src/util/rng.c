/* Philox4x32-10 streams keyed by (seed, stream id): reproducible on any rank. */
#include "legr/rng.h"

#include <math.h>
#include <Random123/philox.h>

uint64_t rng_stream_id(unsigned purpose, uint64_t index)
{
    return ((uint64_t)purpose << 48) | (index & 0xffffffffffffULL);
}

void rng_init(Rng *r, uint64_t seed, uint64_t stream)
{
    r->key[0] = (uint32_t)seed;
    r->key[1] = (uint32_t)(seed >> 32);
    r->ctr[0] = 0;
    r->ctr[1] = 0;
    r->ctr[2] = (uint32_t)stream;
    r->ctr[3] = (uint32_t)(stream >> 32);
    r->avail = 0;
    r->has_spare = 0;
    r->spare = 0.0;
}

uint32_t rng_u32(Rng *r)
{
    if (r->avail == 0) {
        philox4x32_ctr_t c = {{r->ctr[0], r->ctr[1], r->ctr[2], r->ctr[3]}};
        philox4x32_key_t k = {{r->key[0], r->key[1]}};
        philox4x32_ctr_t out = philox4x32(c, k);
        for (int i = 0; i < 4; i++) r->buf[i] = out.v[i];
        r->avail = 4;
        if (++r->ctr[0] == 0) r->ctr[1]++;
    }
    return r->buf[4 - r->avail--];
}

uint64_t rng_u64(Rng *r)
{
    uint64_t hi = rng_u32(r);
    return (hi << 32) | rng_u32(r);
}

double rng_uniform(Rng *r) { return (double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

uint32_t rng_below(Rng *r, uint32_t n)
{
    /* Lemire-style rejection keeps the draw unbiased for any n. */
    uint32_t threshold = (uint32_t)(-n) % n;
    for (;;) {
        uint64_t m = (uint64_t)rng_u32(r) * n;
        if ((uint32_t)m >= threshold) return (uint32_t)(m >> 32);
    }
}

double rng_normal(Rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1, u2;
    do u1 = rng_uniform(r); while (u1 <= 0.0);
    u2 = rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1));
    r->spare = rad * sin(2.0 * M_PI * u2);
    r->has_spare = 1;
    return rad * cos(2.0 * M_PI * u2);
}

void rng_shuffle_int(Rng *r, int *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(r, (uint32_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}
