/* Option-A (parameter-free) residual shortcut: spatial subsampling plus zero-padded channel placement. */
#include "legr/layers.h"
#include "legr/util.h"
#include "parallel.h"

#include <string.h>

/* One call's operands; the backward passes dinp as out and dout as inp. */
typedef struct {
    float *out;
    const float *inp;
    const int *chan_map;
    int N, C, H, W, OC, S, OH, OW;
} ShortcutJob;

/* chan_map must send the C input channels into [0, OC). Injectivity is the Arch's to hold
 * (arch.c validates every shortcut map as strictly increasing), not checked again per call. */
static void shortcut_check(const int *chan_map, int C, int OC)
{
    for (int c = 0; c < C; c++)
        CHECK(chan_map[c] >= 0 && chan_map[c] < OC, "shortcut: chan_map[%d] = %d outside [0, %d)",
              c, chan_map[c], OC);
}

/* Output channels [lo, hi): each is written once, from its input channel or with zeros. */
static void shortcut_forward_range(void *ctx, int lo, int hi)
{
    const ShortcutJob *j = ctx;
    size_t out_chan = (size_t)j->N * j->OH * j->OW, in_chan = (size_t)j->N * j->H * j->W;
    for (int oc = lo; oc < hi; oc++) {
        float *o = j->out + (size_t)oc * out_chan;
        int c = 0;
        while (c < j->C && j->chan_map[c] != oc) c++;
        if (c == j->C) {
            memset(o, 0, out_chan * sizeof(float));
        } else if (j->S == 1) {
            memcpy(o, j->inp + (size_t)c * in_chan, in_chan * sizeof(float));
        } else {
            for (int n = 0; n < j->N; n++)
                for (int oh = 0; oh < j->OH; oh++) {
                    const float *src =
                        j->inp + (((size_t)c * j->N + n) * j->H + (size_t)oh * j->S) * j->W;
                    float *dst = o + ((size_t)n * j->OH + oh) * j->OW;
                    for (int ow = 0; ow < j->OW; ow++) dst[ow] = src[(size_t)ow * j->S];
                }
        }
    }
}

/* inp (C, N, H, W) -> out (OC, N, OH, OW) with OH = ceil(H/S), OW = ceil(W/S):
 * out[chan_map[c], n, oh, ow] = inp[c, n, oh*S, ow*S] (PyTorch's x[:, :, ::S, ::S]); every
 * output channel that no chan_map entry names is zero. chan_map must be injective. Output
 * channels are spread over the engine's threads. */
void shortcut_forward(float *out, const float *inp, const int *chan_map,
                      int N, int C, int H, int W, int OC, int S)
{
    shortcut_check(chan_map, C, OC);
    ShortcutJob j = {out, inp, chan_map, N, C, H, W, OC, S, (H + S - 1) / S, (W + S - 1) / S};
    par_for(OC, (long long)OC * N * j.OH * j.OW, shortcut_forward_range, &j);
}

/* Input channels [lo, hi) of the backward: each adds into its own dinp channel. */
static void shortcut_backward_range(void *ctx, int lo, int hi)
{
    const ShortcutJob *j = ctx;
    float *dinp = j->out;
    const float *dout = j->inp;
    for (int c = lo; c < hi; c++) {
        int oc = j->chan_map[c];
        for (int n = 0; n < j->N; n++)
            for (int oh = 0; oh < j->OH; oh++) {
                const float *src = dout + (((size_t)oc * j->N + n) * j->OH + oh) * j->OW;
                float *dst = dinp + (((size_t)c * j->N + n) * j->H + (size_t)oh * j->S) * j->W;
                for (int ow = 0; ow < j->OW; ow++) dst[(size_t)ow * j->S] += src[ow];
            }
    }
}

/* dinp[c, n, oh*S, ow*S] += dout[chan_map[c], n, oh, ow]; the skipped pixels get nothing. */
void shortcut_backward(float *dinp, const float *dout, const int *chan_map,
                       int N, int C, int H, int W, int OC, int S)
{
    if (!dinp) return;
    shortcut_check(chan_map, C, OC);
    ShortcutJob j = {dinp, dout, chan_map, N, C, H, W, OC, S, (H + S - 1) / S, (W + S - 1) / S};
    par_for(C, (long long)C * N * j.OH * j.OW, shortcut_backward_range, &j);
}
