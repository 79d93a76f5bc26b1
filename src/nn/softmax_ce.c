/* Softmax cross-entropy over row-major logits (N, NC), with the loss summed over the batch. */
#include "legr/layers.h"
#include "legr/util.h"

#include <math.h>
#include <stddef.h>

/* Per row: p = exp(z - max z) / sum exp(z - max z); loss = log(sum exp(z - max)) - (z_y - max),
 * computed from the shifted logits so that no exp overflows and the loss keeps its precision
 * even when p_y underflows. A hit is a row whose first maximum is at the label. */
double softmax_ce_forward(float *probs, int *ncorrect, const float *logits, const int *labels,
                          int N, int NC)
{
    double total = 0.0;
    int hits = 0;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * NC;
        float *p = probs + (size_t)n * NC;
        int y = labels[n];
        CHECK(y >= 0 && y < NC, "softmax_ce: label %d of sample %d outside [0, %d)", y, n, NC);
        int arg = 0;
        for (int k = 1; k < NC; k++)
            if (z[k] > z[arg]) arg = k;
        float zmax = z[arg];
        double sum = 0.0;
        for (int k = 0; k < NC; k++) {
            p[k] = expf(z[k] - zmax);
            sum += p[k];
        }
        float inv = (float)(1.0 / sum);
        for (int k = 0; k < NC; k++) p[k] *= inv;
        total += log(sum) - ((double)z[y] - zmax);
        hits += arg == y;
    }
    if (ncorrect) *ncorrect = hits;
    return total;
}

/* d(loss)/dz = p - onehot(y); `scale` folds in the loss normalisation (e.g. 1/global batch). */
void softmax_ce_backward(float *dlogits, const float *probs, const int *labels, int N, int NC,
                         float scale)
{
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * NC;
        float *d = dlogits + (size_t)n * NC;
        for (int k = 0; k < NC; k++) d[k] = scale * p[k];
        d[labels[n]] -= scale;
    }
}
