/* Engine-internal fused kernels: backward forms that OVERWRITE the input gradient (for a gradient with a single writer, so no zeroing pass), and a conv with an eval-mode BN/ReLU epilogue. */
#ifndef LEGR_NN_KERNELS_H
#define LEGR_NN_KERNELS_H

#include "legr/layers.h"

/* bn_backward (mask NULL) or bn_relu_backward (mask = the fused activation's output, cap its
 * clamp), with dinp overwritten; dgamma and dbeta still accumulate. dinp must not be NULL. */
void bn_backward_set(float *dinp, float *dgamma, float *dbeta, const float *dout,
                     const float *mask, float cap, const float *inp, const float *save_mean,
                     const float *save_rstd, const float *gamma, int C, int M, const BnReduce *red);
/* relu_backward with dinp overwritten (dinp must not be NULL). */
void relu_backward_set(float *dinp, const float *dout, const float *out, long long n);
/* add_backward where da (set_a != 0) and/or db (set_b != 0) are overwritten, the other
 * accumulated; either may be NULL. */
void add_backward_set(float *da, float *db, const float *dout, long long n, int set_a, int set_b);
/* conv_backward with dinp = dX overwritten (dinp must not be NULL); dweight still accumulates. */
void conv_backward_set(float *dinp, float *dweight, float *col, const float *dout,
                       const float *inp, const float *weight, int N, int C, int H, int W, int OC,
                       int K, int S, int P, int G);

/* out = max(a + b, 0): a residual add and the ReLU after it in one pass. */
void add_relu_forward(float *out, const float *a, const float *b, long long n);
/* Its backward from the ReLU's gradient dout and output out: g = dout where out > 0, else 0,
 * goes to da and db (either may be NULL), overwriting (set_x != 0) or accumulating. */
void add_relu_backward(float *da, float *db, const float *dout, const float *out, long long n,
                       int set_a, int set_b);

/* conv_forward, then y = (y - mean[oc]) * scale[oc] + shift[oc], then y += res (laid out as
 * out) when res is not NULL, then, when cap > 0, y clamped to [0, cap] (INFINITY: ReLU, 6: ReLU6),
 * applied while each output block is still in cache: an eval-mode BN (scale = gamma /
 * sqrt(running_var + eps)), residual add and ReLU or ReLU6 folded into the conv, with the same
 * arithmetic as bn_forward_eval, add_relu_forward, relu_forward and relu6_forward. */
void conv_forward_affine(float *out, float *col, const float *inp, const float *weight, int N,
                         int C, int H, int W, int OC, int K, int S, int P, int G,
                         const float *mean, const float *scale, const float *shift,
                         const float *res, float cap);

#endif
