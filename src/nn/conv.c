/* Grouped 2-D convolution on channel-major activations: im2col + one sgemm per group, and a naive reference. */
#include "legr/layers.h"
#include "legr/util.h"
#include "sgemm.h"

#include <stddef.h>
#include <string.h>

int conv_out_size(int size, int k, int s, int p) { return (size + 2 * p - k) / s + 1; }

/* A 1x1, stride-1, unpadded conv reads its input as the col matrix itself: (C, N*H*W) is exactly
 * im2col's layout, so such convs skip im2col/col2im and need no workspace. */
static int conv_is_pointwise(int K, int S, int P) { return K == 1 && S == 1 && P == 0; }

/* The outputs o in [*lo, *hi) whose input index i = o*S + off lies in [0, in); outputs outside
 * that range read padding. */
static void conv_valid_range(int *lo, int *hi, int out, int in, int S, int off)
{
    int l = off >= 0 ? 0 : (-off + S - 1) / S;
    int h = off >= in ? 0 : (in - 1 - off) / S + 1;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* col row (c, kh, kw) holds, for every (n, oh, ow), inp[c, n, oh*S - P + kh, ow*S - P + kw]. */
void im2col(float *col, const float *inp, int N, int C, int H, int W, int K, int S, int P)
{
    int OH = conv_out_size(H, K, S, P);
    int OW = conv_out_size(W, K, S, P);
    size_t ncols = (size_t)N * OH * OW;
    for (int c = 0; c < C; c++) {
        for (int kh = 0; kh < K; kh++) {
            int oh_lo, oh_hi;
            conv_valid_range(&oh_lo, &oh_hi, OH, H, S, kh - P);
            for (int kw = 0; kw < K; kw++) {
                int ow_lo, ow_hi;
                conv_valid_range(&ow_lo, &ow_hi, OW, W, S, kw - P);
                float *row = col + ((size_t)(c * K + kh) * K + kw) * ncols;
                for (int n = 0; n < N; n++) {
                    const float *plane = inp + ((size_t)c * N + n) * H * W;
                    for (int oh = 0; oh < OH; oh++) {
                        float *dst = row + ((size_t)n * OH + oh) * OW;
                        if (oh < oh_lo || oh >= oh_hi) {
                            memset(dst, 0, (size_t)OW * sizeof(float));
                            continue;
                        }
                        /* src[ow*S] is inp at (ih, ow*S - P + kw) for ow in [ow_lo, ow_hi). */
                        const float *src = plane + (ptrdiff_t)(oh * S - P + kh) * W;
                        int shift = kw - P;
                        for (int ow = 0; ow < ow_lo; ow++) dst[ow] = 0.0f;
                        if (S == 1) {
                            memcpy(dst + ow_lo, src + ow_lo + shift,
                                   (size_t)(ow_hi - ow_lo) * sizeof(float));
                        } else {
                            for (int ow = ow_lo; ow < ow_hi; ow++) dst[ow] = src[ow * S + shift];
                        }
                        for (int ow = ow_hi; ow < OW; ow++) dst[ow] = 0.0f;
                    }
                }
            }
        }
    }
}

/* Scatter-add of every col entry back to the input pixel im2col read it from; padding entries
 * are dropped. Same loop structure as im2col, so the two are exact adjoints. */
void col2im_acc(float *dinp, const float *col, int N, int C, int H, int W, int K, int S, int P)
{
    int OH = conv_out_size(H, K, S, P);
    int OW = conv_out_size(W, K, S, P);
    size_t ncols = (size_t)N * OH * OW;
    for (int c = 0; c < C; c++) {
        for (int kh = 0; kh < K; kh++) {
            int oh_lo, oh_hi;
            conv_valid_range(&oh_lo, &oh_hi, OH, H, S, kh - P);
            for (int kw = 0; kw < K; kw++) {
                int ow_lo, ow_hi;
                conv_valid_range(&ow_lo, &ow_hi, OW, W, S, kw - P);
                const float *row = col + ((size_t)(c * K + kh) * K + kw) * ncols;
                int shift = kw - P;
                for (int n = 0; n < N; n++) {
                    float *plane = dinp + ((size_t)c * N + n) * H * W;
                    for (int oh = oh_lo; oh < oh_hi; oh++) {
                        const float *src = row + ((size_t)n * OH + oh) * OW;
                        float *dst = plane + (ptrdiff_t)(oh * S - P + kh) * W;
                        if (S == 1) {
                            for (int ow = ow_lo; ow < ow_hi; ow++) dst[ow + shift] += src[ow];
                        } else {
                            for (int ow = ow_lo; ow < ow_hi; ow++) dst[ow * S + shift] += src[ow];
                        }
                    }
                }
            }
        }
    }
}

long long conv_workspace_floats(int N, int C, int H, int W, int OC, int K, int S, int P, int G)
{
    (void)OC;
    (void)G;
    if (conv_is_pointwise(K, S, P)) return 0;
    /* One col matrix: forward fills it with im2col(inp); backward uses it first for
     * im2col(inp) (dW) and then, once dW is done, overwrites it with dcol (dX). */
    return (long long)C * K * K * N * conv_out_size(H, K, S, P) * conv_out_size(W, K, S, P);
}

/* Per group g (channels [g*C/G, (g+1)*C/G) and filters [g*OC/G, (g+1)*OC/G)), with NP = N*OH*OW
 * and KC = C/G*K*K: out_g (OC/G, NP) = W_g (OC/G, KC) x col_g (KC, NP). The group slices of
 * inp, col, weight and out are all contiguous because activations are channel-major. */
void conv_forward(float *out, float *col, const float *inp, const float *weight,
                  int N, int C, int H, int W, int OC, int K, int S, int P, int G)
{
    CHECK(G > 0 && C % G == 0 && OC % G == 0, "conv: C=%d, OC=%d not divisible by G=%d", C, OC, G);
    int OH = conv_out_size(H, K, S, P);
    int OW = conv_out_size(W, K, S, P);
    int NP = N * OH * OW;
    int OCg = OC / G;
    int KC = C / G * K * K;
    const float *src = inp;
    if (!conv_is_pointwise(K, S, P)) {
        im2col(col, inp, N, C, H, W, K, S, P);
        src = col;
    }
    for (int g = 0; g < G; g++) {
        /* M = OC/G filters, N = NP output pixels, K = KC taps. */
        sgemm_nn(OCg, NP, KC, 1.0f, weight + (size_t)g * OCg * KC, KC, src + (size_t)g * KC * NP,
                 NP, 0.0f, out + (size_t)g * OCg * NP, NP);
    }
}

/* dW_g += dout_g (OC/G, NP) x col_g^T (NP, KC); dcol_g (KC, NP) = W_g^T (KC, OC/G) x dout_g,
 * then dinp += col2im(dcol). col is recomputed because the workspace is shared by all layers. */
void conv_backward(float *dinp, float *dweight, float *col, const float *dout, const float *inp,
                   const float *weight, int N, int C, int H, int W, int OC, int K, int S, int P,
                   int G)
{
    CHECK(G > 0 && C % G == 0 && OC % G == 0, "conv: C=%d, OC=%d not divisible by G=%d", C, OC, G);
    int OH = conv_out_size(H, K, S, P);
    int OW = conv_out_size(W, K, S, P);
    int NP = N * OH * OW;
    int OCg = OC / G;
    int KC = C / G * K * K;
    int pointwise = conv_is_pointwise(K, S, P);
    const float *src = inp;
    if (!pointwise) {
        im2col(col, inp, N, C, H, W, K, S, P);
        src = col;
    }
    for (int g = 0; g < G; g++) {
        /* M = OC/G filters, N = KC taps, K = NP output pixels (the batch reduction). */
        sgemm_nt(OCg, KC, NP, 1.0f, dout + (size_t)g * OCg * NP, NP, src + (size_t)g * KC * NP, NP,
                 1.0f, dweight + (size_t)g * OCg * KC, KC);
    }
    if (!dinp) return;
    /* A pointwise conv's dcol is dX itself, so accumulate straight into dinp (beta = 1). */
    float *dst = pointwise ? dinp : col;
    float beta = pointwise ? 1.0f : 0.0f;
    for (int g = 0; g < G; g++) {
        /* M = KC taps, N = NP output pixels, K = OC/G filters. */
        sgemm_tn(KC, NP, OCg, 1.0f, weight + (size_t)g * OCg * KC, KC, dout + (size_t)g * OCg * NP,
                 NP, beta, dst + (size_t)g * KC * NP, NP);
    }
    if (!pointwise) col2im_acc(dinp, col, N, C, H, W, K, S, P);
}

/* Direct definition, accumulated in double: out[oc, n, oh, ow] = sum over the group's input
 * channels ic and taps (kh, kw) of inp[c, n, oh*S-P+kh, ow*S-P+kw] * weight[oc, ic, kh, kw]. */
void conv_forward_ref(float *out, const float *inp, const float *weight,
                      int N, int C, int H, int W, int OC, int K, int S, int P, int G)
{
    CHECK(G > 0 && C % G == 0 && OC % G == 0, "conv: C=%d, OC=%d not divisible by G=%d", C, OC, G);
    int OH = conv_out_size(H, K, S, P);
    int OW = conv_out_size(W, K, S, P);
    int Cg = C / G;
    int OCg = OC / G;
    for (int oc = 0; oc < OC; oc++) {
        int c0 = oc / OCg * Cg;
        for (int n = 0; n < N; n++) {
            for (int oh = 0; oh < OH; oh++) {
                for (int ow = 0; ow < OW; ow++) {
                    double acc = 0.0;
                    for (int ic = 0; ic < Cg; ic++) {
                        for (int kh = 0; kh < K; kh++) {
                            int ih = oh * S - P + kh;
                            if (ih < 0 || ih >= H) continue;
                            for (int kw = 0; kw < K; kw++) {
                                int iw = ow * S - P + kw;
                                if (iw < 0 || iw >= W) continue;
                                acc += (double)inp[(((size_t)(c0 + ic) * N + n) * H + ih) * W + iw] *
                                       weight[(((size_t)oc * Cg + ic) * K + kh) * K + kw];
                            }
                        }
                    }
                    out[(((size_t)oc * N + n) * OH + oh) * OW + ow] = (float)acc;
                }
            }
        }
    }
}
