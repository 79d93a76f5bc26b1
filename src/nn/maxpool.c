/* Max pooling on channel-major activations: each (channel, image) plane is pooled on its own, planes split over the engine's threads. */
#include "legr/layers.h"

#include "legr/util.h"
#include "parallel.h"

#include <stddef.h>
#include <stdlib.h>

typedef struct {
    float *out, *dinp;
    const float *inp, *dout, *pout;
    int H, W, K, S, P, OH, OW;
} PoolJob;

/* The window of output index o along one axis, clipped to the input [0, n): [*lo, *hi). Padding
 * never wins a max (it reads as -infinity), so clipping it away is the same. With P <= K/2
 * (arch.c checks it) every window holds at least one input. */
static void pool_window(int *lo, int *hi, int o, int S, int P, int K, int n)
{
    int a = o * S - P, b = a + K;
    *lo = a > 0 ? a : 0;
    *hi = b < n ? b : n;
}

/* v wins over the running max m when it is larger, or NaN (NaN propagates, as in PyTorch); ties
 * keep the earlier element. */
static inline int pool_wins(float v, float m) { return v > m || v != v; }

/* h[ow] = the max of window ow of row x (W floats) clipped to the row, in order. */
static void pool_row_clipped(float *h, const float *x, int ow, int W, int K, int S, int P)
{
    int w0, w1;
    pool_window(&w0, &w1, ow, S, P, K, W);
    float m = x[w0];
    for (int iw = w0 + 1; iw < w1; iw++) m = pool_wins(x[iw], m) ? x[iw] : m;
    h[ow] = m;
}

/* h[ow] = the max of row x's window ow, for ow in [0, OW): the row pass. Windows inside the row,
 * [lo, hi), run branch-free; with K and S constants the compiler vectorises them. The windows
 * clipped at the row's ends take the general loop. */
static inline __attribute__((always_inline)) void pool_row_k(float *h, const float *x, int W,
                                                             int OW, int P, const int K,
                                                             const int S)
{
    int lo = (P + S - 1) / S, hi = W - K + P >= 0 ? (W - K + P) / S + 1 : 0;
    if (hi > OW) hi = OW;
    if (lo > hi) lo = hi;
    for (int ow = lo; ow < hi; ow++) {
        const float *w = x + ow * S - P;
        float m = w[0];
        for (int kw = 1; kw < K; kw++) m = pool_wins(w[kw], m) ? w[kw] : m;
        h[ow] = m;
    }
    for (int ow = 0; ow < lo; ow++) pool_row_clipped(h, x, ow, W, K, S, P);
    for (int ow = hi; ow < OW; ow++) pool_row_clipped(h, x, ow, W, K, S, P);
}

static void pool_row(float *h, const float *x, int W, int OW, int K, int S, int P)
{
    if (K == 3 && S == 2)
        pool_row_k(h, x, W, OW, P, 3, 2);
    else if (K == 2 && S == 2)
        pool_row_k(h, x, W, OW, P, 2, 2);
    else if (K == 3 && S == 1)
        pool_row_k(h, x, W, OW, P, 3, 1);
    else
        pool_row_k(h, x, W, OW, P, K, S);
}

/* Separable: each input row's window maxima (row order), then per output row the column maxima
 * over its window's rows (top to bottom). The top-most row holding the maximum wins, and in it
 * the leftmost element: the first maximum in row-major order, the element the one-pass rule
 * would keep (so the same value, sign of zero and NaN included). */
static void maxpool_forward_range(void *ctx, int lo, int hi)
{
    const PoolJob *j = ctx;
    float *hb = xalloc_floats((size_t)j->H * j->OW);
    for (int pl = lo; pl < hi; pl++) {
        const float *x = j->inp + (size_t)pl * j->H * j->W;
        float *o = j->out + (size_t)pl * j->OH * j->OW;
        for (int ih = 0; ih < j->H; ih++)
            pool_row(hb + (size_t)ih * j->OW, x + (size_t)ih * j->W, j->W, j->OW, j->K, j->S,
                     j->P);
        for (int oh = 0; oh < j->OH; oh++) {
            int h0, h1;
            pool_window(&h0, &h1, oh, j->S, j->P, j->K, j->H);
            float *orow = o + (size_t)oh * j->OW;
            const float *first = hb + (size_t)h0 * j->OW;
            for (int ow = 0; ow < j->OW; ow++) orow[ow] = first[ow];
            for (int ih = h0 + 1; ih < h1; ih++) {
                const float *r = hb + (size_t)ih * j->OW;
                for (int ow = 0; ow < j->OW; ow++)
                    orow[ow] = pool_wins(r[ow], orow[ow]) ? r[ow] : orow[ow];
            }
        }
    }
    free(hb);
}

void maxpool_forward(float *out, const float *inp, int N, int C, int H, int W, int K, int S, int P)
{
    PoolJob j = {out, NULL, inp, NULL, NULL, H, W, K, S, P, conv_out_size(H, K, S, P),
                 conv_out_size(W, K, S, P)};
    par_for(C * N, (long long)C * N * j.OH * j.OW * K * K, maxpool_forward_range, &j);
}

/* The index in plane x (row length W) of the first element of window [h0, h1) x [w0, w1), in
 * row-major order, equal to the window's max m (the first NaN when m is NaN). m came from this
 * window, so one exists. */
static size_t pool_first_max(const float *x, int W, int h0, int h1, int w0, int w1, float m)
{
    for (int ih = h0; ih < h1; ih++)
        for (int iw = w0; iw < w1; iw++) {
            float v = x[(size_t)ih * W + iw];
            if (v == m || (v != v && m != m)) return (size_t)ih * W + iw;
        }
    return (size_t)h0 * W + w0;
}

/* Each output's gradient goes to the first input of its window, in row-major order, that equals
 * the output: the element PyTorch's forward picks, since its max moves only on a strictly larger
 * value (or a NaN: with NaN inputs PyTorch picks the last NaN, this the first). One thread does
 * a whole plane, outputs in order, so overlapping windows add up in a fixed order. */
static void maxpool_backward_range(void *ctx, int lo, int hi)
{
    const PoolJob *j = ctx;
    for (int pl = lo; pl < hi; pl++) {
        const float *x = j->inp + (size_t)pl * j->H * j->W;
        const float *o = j->pout + (size_t)pl * j->OH * j->OW;
        const float *g = j->dout + (size_t)pl * j->OH * j->OW;
        float *dx = j->dinp + (size_t)pl * j->H * j->W;
        for (int oh = 0; oh < j->OH; oh++) {
            int h0, h1;
            pool_window(&h0, &h1, oh, j->S, j->P, j->K, j->H);
            for (int ow = 0; ow < j->OW; ow++) {
                int w0, w1;
                pool_window(&w0, &w1, ow, j->S, j->P, j->K, j->W);
                size_t at = pool_first_max(x, j->W, h0, h1, w0, w1, o[(size_t)oh * j->OW + ow]);
                dx[at] += g[(size_t)oh * j->OW + ow];
            }
        }
    }
}

void maxpool_backward(float *dinp, const float *dout, const float *inp, const float *out, int N,
                      int C, int H, int W, int K, int S, int P)
{
    if (!dinp) return;
    PoolJob j = {NULL, dinp, inp, dout, out, H, W, K, S, P, conv_out_size(H, K, S, P),
                 conv_out_size(W, K, S, P)};
    par_for(C * N, (long long)C * N * j.OH * j.OW * K * K, maxpool_backward_range, &j);
}
