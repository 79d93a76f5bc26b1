/* Option-A (parameter-free) residual shortcut: spatial subsampling plus zero-padded channel placement. */
#include "legr/layers.h"
#include "legr/util.h"

#include <string.h>

/* inp (C, N, H, W) -> out (OC, N, OH, OW) with OH = ceil(H/S), OW = ceil(W/S):
 * out[chan_map[c], n, oh, ow] = inp[c, n, oh*S, ow*S] (PyTorch's x[:, :, ::S, ::S]); every
 * output channel that no chan_map entry names is zero. chan_map must be injective. */
void shortcut_forward(float *out, const float *inp, const int *chan_map,
                      int N, int C, int H, int W, int OC, int S)
{
    int OH = (H + S - 1) / S;
    int OW = (W + S - 1) / S;
    size_t out_chan = (size_t)N * OH * OW;
    size_t in_chan = (size_t)N * H * W;
    memset(out, 0, (size_t)OC * out_chan * sizeof(float));
    for (int c = 0; c < C; c++) {
        int oc = chan_map[c];
        CHECK(oc >= 0 && oc < OC, "shortcut: chan_map[%d] = %d outside [0, %d)", c, oc, OC);
        if (S == 1) {
            memcpy(out + (size_t)oc * out_chan, inp + (size_t)c * in_chan, in_chan * sizeof(float));
            continue;
        }
        for (int n = 0; n < N; n++) {
            for (int oh = 0; oh < OH; oh++) {
                const float *src = inp + (((size_t)c * N + n) * H + (size_t)oh * S) * W;
                float *dst = out + (((size_t)oc * N + n) * OH + oh) * OW;
                for (int ow = 0; ow < OW; ow++) dst[ow] = src[(size_t)ow * S];
            }
        }
    }
}

/* dinp[c, n, oh*S, ow*S] += dout[chan_map[c], n, oh, ow]; the skipped pixels get nothing. */
void shortcut_backward(float *dinp, const float *dout, const int *chan_map,
                       int N, int C, int H, int W, int OC, int S)
{
    if (!dinp) return;
    int OH = (H + S - 1) / S;
    int OW = (W + S - 1) / S;
    for (int c = 0; c < C; c++) {
        int oc = chan_map[c];
        CHECK(oc >= 0 && oc < OC, "shortcut: chan_map[%d] = %d outside [0, %d)", c, oc, OC);
        for (int n = 0; n < N; n++) {
            for (int oh = 0; oh < OH; oh++) {
                const float *src = dout + (((size_t)oc * N + n) * OH + oh) * OW;
                float *dst = dinp + (((size_t)c * N + n) * H + (size_t)oh * S) * W;
                for (int ow = 0; ow < OW; ow++) dst[(size_t)ow * S] += src[ow];
            }
        }
    }
}
