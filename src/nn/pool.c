/* Global average pooling: each (channel, sample) plane of H*W values becomes its mean. */
#include "legr/layers.h"

#include "parallel.h"

#include <stddef.h>

typedef struct {
    float *out;
    const float *inp;
    int HW;
} GapJob;

/* Planes [lo, hi) of the forward: each mean is summed in pixel order. */
static void gap_forward_range(void *ctx, int lo, int hi)
{
    const GapJob *j = ctx;
    float inv = 1.0f / (float)j->HW;
    for (int i = lo; i < hi; i++) {
        const float *plane = j->inp + (size_t)i * j->HW;
        float s = 0.0f;
        for (int k = 0; k < j->HW; k++) s += plane[k];
        j->out[i] = s * inv;
    }
}

/* inp (C, N, H, W) -> out (C, N), which is also the channel-major (IN, N) layout fc_forward reads.
 * Planes are spread over the engine's threads; each sum's order does not depend on the split. */
void gap_forward(float *out, const float *inp, int N, int C, int H, int W)
{
    GapJob j = {out, inp, H * W};
    par_for(C * N, (long long)C * N * H * W, gap_forward_range, &j);
}

/* dinp[c, n, :, :] += dout[c, n] / (H*W). */
void gap_backward(float *dinp, const float *dout, int N, int C, int H, int W)
{
    if (!dinp) return;
    int HW = H * W;
    float inv = 1.0f / (float)HW;
    for (size_t i = 0; i < (size_t)C * N; i++) {
        float g = dout[i] * inv;
        float *plane = dinp + i * HW;
        for (int j = 0; j < HW; j++) plane[j] += g;
    }
}
