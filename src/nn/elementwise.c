/* Elementwise kernels over flat float arrays: ReLU and the residual add. */
#include "legr/layers.h"

#include <stddef.h>

void relu_forward(float *out, const float *inp, long long n)
{
    for (long long i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

/* dinp += dout where the forward output was positive; out > 0 iff inp > 0, so the saved output
 * is enough and the input need not be kept (the subgradient at 0 is taken as 0, as in PyTorch). */
void relu_backward(float *dinp, const float *dout, const float *out, long long n)
{
    if (!dinp) return;
    for (long long i = 0; i < n; i++) dinp[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

void add_forward(float *out, const float *a, const float *b, long long n)
{
    for (long long i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* da += dout, db += dout; either may be NULL (not needed). */
void add_backward(float *da, float *db, const float *dout, long long n)
{
    if (da)
        for (long long i = 0; i < n; i++) da[i] += dout[i];
    if (db)
        for (long long i = 0; i < n; i++) db[i] += dout[i];
}
