/* Fully connected layer from channel-major features (IN, N) to row-major logits (N, OUT). */
#include "legr/layers.h"
#include "sgemm.h"

#include <stddef.h>

/* out[n, o] = bias[o] + sum_i weight[o, i] * inp[i, n], i.e. out = inp^T x weight^T + bias. */
void fc_forward(float *out, const float *inp, const float *weight, const float *bias,
                int N, int IN, int OUT)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) out[(size_t)n * OUT + o] = bias[o];
    /* M = N samples, N = OUT features, K = IN features; inp is stored (IN, N), weight (OUT, IN). */
    sgemm_tt(N, OUT, IN, 1.0f, inp, N, weight, IN, 1.0f, out, OUT);
}

/* dinp (IN, N) += weight^T x dout^T; dweight (OUT, IN) += dout^T x inp^T; dbias += column sums of
 * dout. All accumulate; dinp may be NULL. */
void fc_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                 const float *weight, int N, int IN, int OUT)
{
    /* M = OUT, N = IN, K = N samples; dout is stored (N, OUT), inp (IN, N). */
    sgemm_tt(OUT, IN, N, 1.0f, dout, OUT, inp, N, 1.0f, dweight, IN);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) dbias[o] += dout[(size_t)n * OUT + o];
    if (!dinp) return;
    /* M = IN, N = N samples, K = OUT; weight is stored (OUT, IN), dout (N, OUT). */
    sgemm_tt(IN, N, OUT, 1.0f, weight, IN, dout, OUT, 1.0f, dinp, N);
}
