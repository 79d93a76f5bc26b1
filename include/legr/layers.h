/* Layer kernels: pure forward/backward pairs on raw float pointers and shapes. */
#ifndef LEGR_LAYERS_H
#define LEGR_LAYERS_H

#include <stdint.h>

/*
 * Shape letters: N batch, C input channels, H/W input height/width, K kernel size, S stride,
 * P padding, G groups, OC output channels, OH/OW output height/width, IN/OUT FC widths,
 * NC classes.
 *
 * Activation layout is channel-major, (C, N, H, W): every channel's values for the whole batch
 * are one contiguous row of N*H*W floats. A convolution is then a GEMM over the batch (run in
 * cache-sized blocks of whole images, see conv.c) and batch norm works on contiguous rows. (Inputs arrive as NCHW and are transposed once by
 * net_forward; weights use PyTorch's layout.)
 *
 * Argument order: outputs, then saved state/workspace, then inputs, then weights, then shapes.
 * Backward functions ACCUMULATE (+=) into every gradient they write (dinp, dweight, dbias);
 * callers zero them first. A NULL dinp means "not needed" and is skipped.
 */

/* Optional cross-replica sum used by batch norm in training mode, so that data-parallel replicas
 * normalise with the statistics of the whole global batch (synchronised BN). `fn` replaces
 * buf[0..n) by its sum over all replicas. NULL means a single replica. */
typedef struct {
    void (*fn)(double *buf, int n, void *ctx);
    void *ctx;
} BnReduce;

/* ---- convolution ---- */
int conv_out_size(int size, int k, int s, int p); /* (size + 2p - k)/s + 1 */

/* im2col, channel-major: inp (C, N, H, W) -> col (C*K*K, N*OH*OW); padding reads as 0. */
void im2col(float *col, const float *inp, int N, int C, int H, int W, int K, int S, int P);
/* Adjoint of im2col: dinp (C, N, H, W) += col2im(col). */
void col2im_acc(float *dinp, const float *col, int N, int C, int H, int W, int K, int S, int P);

/* inp (C, N, H, W), weight (OC, C/G, K, K), out (OC, N, OH, OW) overwritten.
 * col: workspace of conv_workspace_floats() floats. */
void conv_forward(float *out, float *col, const float *inp, const float *weight,
                  int N, int C, int H, int W, int OC, int K, int S, int P, int G);
/* dinp (C,N,H,W) += dX, dweight (OC,C/G,K,K) += dW; dinp may be NULL. */
void conv_backward(float *dinp, float *dweight, float *col, const float *dout, const float *inp,
                   const float *weight, int N, int C, int H, int W, int OC, int K, int S, int P,
                   int G);
/* Floats of workspace conv_forward/backward need for this shape. */
long long conv_workspace_floats(int N, int C, int H, int W, int OC, int K, int S, int P, int G);
/* Naive direct-loop reference (7 nested loops), same layout and contract as conv_forward. */
void conv_forward_ref(float *out, const float *inp, const float *weight,
                      int N, int C, int H, int W, int OC, int K, int S, int P, int G);
/* Naive reference of conv_backward (same contract: dinp may be NULL; both accumulate), with
 * every gradient entry summed in double. */
void conv_backward_ref(float *dinp, float *dweight, const float *dout, const float *inp,
                       const float *weight, int N, int C, int H, int W, int OC, int K, int S,
                       int P, int G);

/* ---- direct grouped convolution (depthwise when C == OC == G), no im2col, no BLAS ----
 * Same layout and contract as conv_forward / conv_backward (src/nn/conv_group.c); conv_forward
 * and conv_backward dispatch here for G > 1, so no workspace is needed for grouped convs. */
void conv_group_forward(float *out, const float *inp, const float *weight,
                        int N, int C, int H, int W, int OC, int K, int S, int P, int G);
/* dinp (C,N,H,W) += dX (dinp may be NULL), dweight += dW. */
void conv_group_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                         const float *weight, int N, int C, int H, int W, int OC, int K, int S,
                         int P, int G);

/* ---- conv bias: out (OC, M) with M = N*OH*OW ---- */
void bias_forward(float *out, const float *bias, int OC, long long M); /* out[oc] += bias[oc] */
void bias_backward(float *dbias, const float *dout, int OC, long long M); /* dbias += row sums */

/* ---- max pooling: inp (C, N, H, W) -> out (C, N, OH, OW), OH = (H + 2P - K)/S + 1 ----
 * Padding never wins (it reads as -infinity). The gradient of an output goes to the first
 * maximum of its window in row-major order (PyTorch's rule), found again from inp and out, so
 * nothing is saved. dinp accumulates. */
void maxpool_forward(float *out, const float *inp, int N, int C, int H, int W, int K, int S,
                     int P);
void maxpool_backward(float *dinp, const float *dout, const float *inp, const float *out, int N,
                      int C, int H, int W, int K, int S, int P);

/* ---- dropout over (C, N, HW) ----
 * Training-mode dropout: value (c, n, i) is kept when a Philox draw keyed by (seed, key, image0 + n)
 * and its position c*HW + i is >= p, and scaled by 1/(1-p); so the mask of an image depends on
 * its global index image0 + n, not on how a batch is split across ranks. key names the step and
 * the node. The backward draws the same mask; dinp accumulates. */
void dropout_forward(float *out, const float *inp, int N, int C, int HW, float p, uint64_t seed,
                     uint64_t key, long long image0);
void dropout_backward(float *dinp, const float *dout, int N, int C, int HW, float p,
                      uint64_t seed, uint64_t key, long long image0);

/* ---- batch norm over rows: inp (C, M) with M = N*H*W ---- */
/* Training mode: normalise with the batch mean and biased variance, save mean and rstd
 * (1/sqrt(var+eps)) per channel, and update running stats PyTorch-style:
 * run = (1-momentum)*run + momentum*stat, with the unbiased variance for run_var.
 * With red != NULL the statistics are over all replicas' batches. */
void bn_forward_train(float *out, float *save_mean, float *save_rstd, float *run_mean,
                      float *run_var, const float *inp, const float *gamma, const float *beta,
                      int C, int M, float momentum, float eps, const BnReduce *red);
/* Evaluation mode: normalise with the running statistics. */
void bn_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                     const float *run_mean, const float *run_var, int C, int M, float eps);
/* Backward of training mode. dinp, dgamma, dbeta accumulate. */
void bn_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                 const float *save_mean, const float *save_rstd, const float *gamma, int C, int M,
                 const BnReduce *red);

/* BN followed by ReLU (cap = INFINITY) or ReLU6 (cap = 6) in one pass: out = min(max(bn(inp),
 * 0), cap), the same values bn_forward_* and then relu_forward / relu6_forward produce, without
 * storing the BN output. */
void bn_relu_forward_train(float *out, float *save_mean, float *save_rstd, float *run_mean,
                           float *run_var, const float *inp, const float *gamma, const float *beta,
                           int C, int M, float momentum, float eps, const BnReduce *red,
                           float cap);
void bn_relu_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                          const float *run_mean, const float *run_var, int C, int M, float eps,
                          float cap);
/* Backward of that: dout and out are the activation's output gradient and output (the gradient
 * flows where 0 < out < cap). Same result as relu_backward / relu6_backward into a zeroed buffer
 * followed by bn_backward; dinp, dgamma, dbeta accumulate. */
void bn_relu_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                      const float *out, float cap, const float *inp, const float *save_mean,
                      const float *save_rstd, const float *gamma, int C, int M,
                      const BnReduce *red);

/* ---- elementwise, over n floats ---- */
void relu_forward(float *out, const float *inp, long long n);
void relu_backward(float *dinp, const float *dout, const float *out, long long n); /* uses out>0 */
/* ReLU6: out = min(max(inp, 0), 6); the gradient passes where 0 < out < 6 (PyTorch's rule). */
void relu6_forward(float *out, const float *inp, long long n);
void relu6_backward(float *dinp, const float *dout, const float *out, long long n);
void add_forward(float *out, const float *a, const float *b, long long n);
void add_backward(float *da, float *db, const float *dout, long long n);

/* ---- option-A shortcut: inp (C, N, H, W) -> out (OC, N, OH, OW), OH = ceil(H/S) ----
 * out[chan_map[c]] = inp[c] subsampled at rows/cols 0, S, 2S, ...; other channels are 0. */
void shortcut_forward(float *out, const float *inp, const int *chan_map,
                      int N, int C, int H, int W, int OC, int S);
void shortcut_backward(float *dinp, const float *dout, const int *chan_map,
                       int N, int C, int H, int W, int OC, int S);

/* ---- global average pooling: inp (C, N, H, W) -> out (C, N) ---- */
void gap_forward(float *out, const float *inp, int N, int C, int H, int W);
void gap_backward(float *dinp, const float *dout, int N, int C, int H, int W);

/* ---- fully connected: inp (IN, N) channel-major, weight (OUT, IN), bias (OUT) -> out (N, OUT) */
void fc_forward(float *out, const float *inp, const float *weight, const float *bias,
                int N, int IN, int OUT);
void fc_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                 const float *weight, int N, int IN, int OUT);

/* ---- softmax cross-entropy: logits (N, NC), labels in [0, NC) ----
 * Writes probs (N, NC); returns the SUM of per-sample losses (double) and, if ncorrect is
 * non-NULL, the number of argmax hits. */
double softmax_ce_forward(float *probs, int *ncorrect, const float *logits, const int *labels,
                          int N, int NC);
/* dlogits (N, NC) = scale * (probs - onehot(labels)); OVERWRITES (it starts the backward pass). */
void softmax_ce_backward(float *dlogits, const float *probs, const int *labels, int N, int NC,
                         float scale);

#endif
