/* Shared by the convolution paths (conv.c, conv_point.c, conv_shift.c, conv_phase.c, conv_group.c): the eval epilogue, deterministic dW lanes, and the pointwise, shifted-grid and grouped entry points. */
#ifndef LEGR_NN_CONV_INTERNAL_H
#define LEGR_NN_CONV_INTERNAL_H

#include <math.h>
#include <stddef.h>

#include "gemm_tile.h"

/* An eval-mode BN (and a residual add, and ReLU or ReLU6) applied to a conv's output while it is
 * still in cache: y = (y - mean[oc]) * scale[oc] + shift[oc], then y += res at the same index
 * when res is not NULL (res is laid out as the output), then, when cap > 0, y clamped to
 * [0, cap] (cap INFINITY: ReLU; 6: ReLU6). */
typedef struct {
    const float *mean, *scale, *shift, *res;
    float cap;
} ConvEpilogue;

/* Apply channel oc's epilogue to the n floats at o, whose residual (if any) is at r (the same
 * arithmetic as bn_forward_eval, add_relu_forward and relu_forward). */
static inline void conv_epilogue_row(float *o, const float *r, size_t n, const ConvEpilogue *ep,
                                     int oc)
{
    float mu = ep->mean[oc], sc = ep->scale[oc], sh = ep->shift[oc];
    for (size_t i = 0; i < n; i++) {
        float v = (o[i] - mu) * sc + sh;
        if (r) v += r[i];
        if (ep->cap > 0.0f) v = v > 0.0f ? (v < ep->cap ? v : ep->cap) : 0.0f;
        o[i] = v;
    }
}

/* conv_epilogue_row's clamp of a vector to [0, cap], cap > 0: v > 0 ? min(v, cap) : 0 lane by
 * lane (NaN gives 0, as in relu_forward and relu6_forward). */
static inline gt_vf conv_epilogue_clamp(gt_vf y, float cap)
{
    y = (gt_vf)((gt_vi)y & (y > 0));
    if (cap < INFINITY) {
        gt_vi lo = y < cap;
        y = (gt_vf)(((gt_vi)y & lo) | ((gt_vi)(cap - (gt_vf){0}) & ~lo));
    }
    return y;
}

/*
 * Scheduling. Threads take blocks (forward) or dW lanes (backward) from an atomic counter, so a
 * thread that the OS descheduled on a busy machine does not hold up the others. Forward blocks
 * write disjoint outputs and backward blocks (whole images) scatter into disjoint dinp parts, so
 * who computes what does not matter. dW is a sum over blocks: block b is added into lane
 * b % nlanes, every lane sums its blocks in order, and the lanes are added to dweight in lane
 * order. nlanes depends on the shape only, so dW is bit-identical for any thread count and
 * any timing.
 */
enum { CONV_LANES = 8 };

static inline int conv_lanes(int nblk) { return nblk < CONV_LANES ? nblk : CONV_LANES; }

/* dweight += the lanes, in lane order. */
static inline void conv_add_lanes(float *dweight, const float *lanes, size_t lane_floats,
                                  int nlanes, size_t nw)
{
    for (int l = 0; l < nlanes; l++) {
        const float *dw = lanes + (size_t)l * lane_floats;
        for (size_t i = 0; i < nw; i++) dweight[i] += dw[i];
    }
}

/* lanes[0 .. lane_floats) += the other lanes, in lane order. */
static inline void conv_sum_lanes(float *lanes, size_t lane_floats, int nlanes)
{
    for (int l = 1; l < nlanes; l++) {
        const float *dw = lanes + (size_t)l * lane_floats;
        for (size_t i = 0; i < lane_floats; i++) lanes[i] += dw[i];
    }
}

static inline size_t conv_round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Ungrouped 1x1 stride-1 unpadded convs run as GEMMs on the tensors themselves (conv_point.c);
 * they are "same" convs too, so this test comes first. */
static inline int conv_is_point(int K, int S, int P) { return K == 1 && S == 1 && P == 0; }

/* Strided ones (ResNet's projection shortcuts) run their forward there too (the GEMM gathers
 * its x columns) and their backward on im2col blocks (conv.c). */
static inline int conv_is_point_strided(int K, int S, int P) { return K == 1 && S > 1 && P == 0; }

/* Other "same" stride-1 convs (odd K, P = K/2) run on the shifted grid (conv_shift.c). */
static inline int conv_is_same_s1(int K, int S, int P)
{
    return S == 1 && K % 2 == 1 && P == K / 2;
}

/* Stride-2 3x3 convs with even H and W run by phase planes (conv_phase.c). */
static inline int conv_is_phase_s2(int K, int S, int P, int H, int W)
{
    return K == 3 && S == 2 && P == 1 && H % 2 == 0 && W % 2 == 0;
}

/* Grouped convs (G > 1) run directly, without workspace (conv_group.c): the forward through ep
 * when not NULL, and the backward with dinp = dX when set (else dinp += dX; dinp may be NULL). */
void conv_group_forward_ep(float *out, const float *inp, const float *weight, int N, int C, int H,
                           int W, int OC, int K, int S, int P, int G, const ConvEpilogue *ep);
void conv_group_backward_any(float *dinp, float *dweight, const float *dout, const float *inp,
                             const float *weight, int N, int C, int H, int W, int OC, int K,
                             int S, int P, int G, int set);

/* Workspace floats of the pointwise path for a shape (stride S). */
long long conv_point_workspace(int N, int C, int H, int W, int OC, int S);
/* out = conv(inp) of a 1x1 unpadded conv of stride S, through ep when not NULL; ws:
 * conv_point_workspace floats. */
void conv_point_forward(float *out, float *ws, const float *inp, const float *weight, int N, int C,
                        int H, int W, int OC, int S, const ConvEpilogue *ep);
/* dweight += dW and, when dinp is not NULL, dinp += dX (with set, dinp = dX) of a pointwise
 * conv of stride 1. */
void conv_point_backward(float *dinp, float *dweight, float *ws, const float *dout,
                         const float *inp, const float *weight, int N, int C, int H, int W, int OC,
                         int set);

/* Workspace floats of the shifted-grid paths for a shape (conv_workspace_floats takes the
 * largest that a conv of that shape may use). */
long long conv_shift_workspace(int N, int C, int H, int W, int OC, int K, int P);
long long conv_phase_workspace(int N, int C, int H, int W, int OC);

/* out = conv(inp) of a same conv, through ep when not NULL; ws: conv_shift_workspace floats. */
void conv_shift_forward(float *out, float *ws, const float *inp, const float *weight, int N, int C,
                        int H, int W, int OC, int K, int P, const ConvEpilogue *ep);
/* dweight += dW and, when dinp is not NULL, dinp += dX (with set, dinp = dX) of a same conv. */
void conv_shift_backward(float *dinp, float *dweight, float *ws, const float *dout,
                         const float *inp, const float *weight, int N, int C, int H, int W, int OC,
                         int K, int P, int set);
/* out = conv(inp) of a stride-2 3x3 conv (conv_is_phase_s2); ws: conv_phase_workspace floats. */
void conv_phase_forward(float *out, float *ws, const float *inp, const float *weight, int N, int C,
                        int H, int W, int OC, const ConvEpilogue *ep);
/* Its backward: dweight += dW and, when dinp is not NULL, dinp += dX. */
void conv_phase_backward(float *dinp, float *dweight, float *ws, const float *dout,
                         const float *inp, const float *weight, int N, int C, int H, int W, int OC);

#endif
