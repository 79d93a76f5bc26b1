/* Small helpers shared by the layer-kernel tests: seeded random fills and double-precision dots. */
#ifndef LEGR_TEST_LAYERS_TESTUTIL_H
#define LEGR_TEST_LAYERS_TESTUTIL_H

#include "legr/rng.h"

#include <math.h>

/* x[i] ~ U(lo, hi). */
static inline void tu_fill_uniform(Rng *r, float *x, long long n, double lo, double hi)
{
    for (long long i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * rng_uniform(r));
}

/* sum a[i] * b[i] in double. */
static inline double tu_dot(const float *a, const float *b, long long n)
{
    double s = 0.0;
    for (long long i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* sum |a[i] * b[i]| in double: the scale against which rounding in tu_dot-like sums is judged. */
static inline double tu_dot_abs(const float *a, const float *b, long long n)
{
    double s = 0.0;
    for (long long i = 0; i < n; i++) s += fabs((double)a[i] * b[i]);
    return s;
}

#endif
