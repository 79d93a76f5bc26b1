/* The threaded option-A shortcut (forward, backward) and global average pooling equal their definitions bit for bit at 1, 2 and 3 threads. */
#include "harness.h"
#include "layers_testutil.h"
#include "legr/layers.h"
#include "legr/util.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* Large enough that the kernels split their channels over threads (above PAR_MIN_FLOATS). */
enum { N = 64, C = 5, H = 28, W = 28, OC = 8 };

static long long mismatches(const float *a, const float *b, long long n)
{
    long long bad = 0;
    for (long long i = 0; i < n; i++) bad += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return bad;
}

/* Shortcut of stride S with an injective, non-monotone channel map against its definition:
 * out[map[c], n, oh, ow] = inp[c, n, oh*S, ow*S], other channels 0; the backward adds dout back
 * at the sampled pixels. */
static void check_shortcut(const float *x, const float *g, int S, int threads)
{
    static const int map[C] = {6, 0, 3, 1, 7};
    int OH = (H + S - 1) / S, OW = (W + S - 1) / S;
    long long on = (long long)OC * N * OH * OW, in = (long long)C * N * H * W;
    float *out = xalloc_floats((size_t)on), *want = xalloc_floats((size_t)on);
    float *dx = xalloc_floats((size_t)in), *dx_want = xalloc_floats((size_t)in);
    for (long long i = 0; i < on; i++) out[i] = NAN, want[i] = 0.0f;
    for (long long i = 0; i < in; i++) dx[i] = dx_want[i] = x[i]; /* the backward accumulates */
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    size_t o = (((size_t)map[c] * N + n) * OH + oh) * OW + ow;
                    size_t i = (((size_t)c * N + n) * H + (size_t)oh * S) * W + (size_t)ow * S;
                    want[o] = x[i];
                    dx_want[i] += g[o];
                }
    openblas_set_num_threads(threads);
    shortcut_forward(out, x, map, N, C, H, W, OC, S);
    shortcut_backward(dx, g, map, N, C, H, W, OC, S);
    long long bf = mismatches(out, want, on), bb = mismatches(dx, dx_want, in);
    EXPECT(bf == 0, "shortcut S=%d, %d threads: %lld of %lld outputs differ", S, threads, bf, on);
    EXPECT(bb == 0, "shortcut backward S=%d, %d threads: %lld of %lld differ", S, threads, bb, in);
    free(out);
    free(want);
    free(dx);
    free(dx_want);
}

/* GAP against the mean of each plane summed in pixel order. */
static void check_gap(const float *x, int threads)
{
    float out[C * N], want[C * N];
    for (int i = 0; i < C * N; i++) {
        float s = 0.0f;
        for (int k = 0; k < H * W; k++) s += x[(size_t)i * H * W + k];
        want[i] = s * (1.0f / (float)(H * W));
    }
    openblas_set_num_threads(threads);
    gap_forward(out, x, N, C, H, W);
    long long bad = mismatches(out, want, C * N);
    EXPECT(bad == 0, "gap, %d threads: %lld of %d means differ", threads, bad, C * N);
}

int main(void)
{
    Rng r;
    rng_init(&r, 5, 1);
    long long in = (long long)C * N * H * W, on = (long long)OC * N * H * W;
    float *x = xalloc_floats((size_t)in), *g = xalloc_floats((size_t)on);
    tu_fill_uniform(&r, x, in, -2, 2);
    tu_fill_uniform(&r, g, on, -1, 1);
    for (int threads = 1; threads <= 3; threads++) {
        openblas_set_num_threads(threads);
        EXPECT(openblas_get_num_threads() == threads, "OpenBLAS runs %d threads, not %d",
               openblas_get_num_threads(), threads);
        check_shortcut(x, g, 1, threads);
        check_shortcut(x, g, 2, threads);
        check_gap(x, threads);
    }
    free(x);
    free(g);
    return harness_finish("test_layers_threads");
}
