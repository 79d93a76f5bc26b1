/* Fully connected layer from channel-major features (IN, N) to row-major logits (N, OUT). */
#include "legr/layers.h"

#include <stddef.h>

/*
 * Plain loops rather than BLAS: the layer is tiny (a ResNet's is 64 x 10 per image), and an
 * OpenBLAS call here would wake OpenBLAS's own threads, which then spin for a while and compete
 * with the engine's threads that run the convolutions.
 */

/* out[n, o] = bias[o] + sum_i weight[o, i] * inp[i, n]. */
void fc_forward(float *out, const float *inp, const float *weight, const float *bias,
                int N, int IN, int OUT)
{
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OUT; o++) {
            const float *w = weight + (size_t)o * IN;
            float acc = 0.0f;
            for (int i = 0; i < IN; i++) acc += w[i] * inp[(size_t)i * N + n];
            out[(size_t)n * OUT + o] = bias[o] + acc;
        }
    }
}

/* dweight[o, i] += sum_n dout[n, o] * inp[i, n]; dbias[o] += sum_n dout[n, o];
 * dinp[i, n] += sum_o weight[o, i] * dout[n, o]. All accumulate; dinp may be NULL. */
void fc_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                 const float *weight, int N, int IN, int OUT)
{
    for (int o = 0; o < OUT; o++) {
        float *dw = dweight + (size_t)o * IN;
        for (int i = 0; i < IN; i++) {
            const float *x = inp + (size_t)i * N;
            float acc = 0.0f;
            for (int n = 0; n < N; n++) acc += dout[(size_t)n * OUT + o] * x[n];
            dw[i] += acc;
        }
        float acc = 0.0f;
        for (int n = 0; n < N; n++) acc += dout[(size_t)n * OUT + o];
        dbias[o] += acc;
    }
    if (!dinp) return;
    for (int i = 0; i < IN; i++) {
        float *dx = dinp + (size_t)i * N;
        for (int n = 0; n < N; n++) {
            const float *g = dout + (size_t)n * OUT;
            float acc = 0.0f;
            for (int o = 0; o < OUT; o++) acc += weight[(size_t)o * IN + i] * g[o];
            dx[n] += acc;
        }
    }
}
