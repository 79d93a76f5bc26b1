/* Global average pooling: each (channel, sample) plane of H*W values becomes its mean. */
#include "legr/layers.h"

#include <stddef.h>

/* inp (C, N, H, W) -> out (C, N), which is also the channel-major (IN, N) layout fc_forward reads. */
void gap_forward(float *out, const float *inp, int N, int C, int H, int W)
{
    int HW = H * W;
    float inv = 1.0f / (float)HW;
    for (size_t i = 0; i < (size_t)C * N; i++) {
        const float *plane = inp + i * HW;
        float s = 0.0f;
        for (int j = 0; j < HW; j++) s += plane[j];
        out[i] = s * inv;
    }
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
