/* Direct grouped and depthwise convolution on channel-major activations: each plane is copied into a zero-padded, column-phase-split buffer in cache, and every tap is one vector load per GT_VL output pixels from it; no im2col, no BLAS. */
#include "isa.h" /* first: renames this file's functions in per-ISA builds */
#include "legr/layers.h"
#include "legr/util.h"
#include "conv_internal.h"
#include "gemm_tile.h"
#include "parallel.h"

#include <stdlib.h>
#include <string.h>

/*
 * Group g has input channels [g*Cg, (g+1)*Cg) and filters [g*OCg, (g+1)*OCg); depthwise is
 * Cg = 1. In padded coordinates (row r = ih + P, column col = iw + P) output (oh, ow) reads tap
 * (kh, kw) at (oh*S + kh, ow*S + kw), which is position ow + kw/S of column phase kw % S. So an
 * input plane is copied into "phase rows": element (r, b, j) holds padded column j*S + b, at
 * xb[(r*S + b)*xlp + j]. Then the tap's inputs of GT_VL consecutive outputs are one unaligned
 * vector load at a constant offset (kh*S + kw%S)*xlp + kw/S from the output's base: no gathers
 * and no border tests. A thread zeroes its buffers once per call and then copies only the real
 * pixels of each plane, so the padding stays zero.
 *
 * The data gradient. Stride 1: dX is the forward conv of dy zero-padded by K-1 on every side,
 * with the filter rotated by 180 degrees, so the forward kernel runs on a padded copy of dy and
 * writes dinp directly. Stride S > 1: padded input row r receives the taps kh with
 * r - kh = oh*S, and its column phase b the taps kw with kw % S == b, at position j from dy
 * column j - kw/S; the phases are then interleaved into dinp's row. dW of a (filter, channel)
 * pair reduces dy times the tap's shifted input over every pixel: one vector accumulator per
 * tap, dy's padded copy supplying zeros past each row's end.
 *
 * 3x3 filters at stride 1 and 2 (MobileNetV2's depthwise convs) have kernels of their own, with
 * the nine taps unrolled and an input vector loaded once for all the taps it feeds: the forward
 * (and the stride-1 dX) in column tiles of output rows, dW by a window walking down dy, the
 * stride-2 dX down dy rows with the phases interleaved in registers. Measured on one core in
 * cache, the stride-1 forward and dW run at about the FMA peak; at stride 2 the copy into phase
 * rows (four input pixels per output) costs about as much as the arithmetic. Other shapes take
 * the general kernels.
 *
 * Threads and determinism. The forward splits (group, image) pairs, each writing its own
 * output planes; the backward splits groups, each thread running its groups' images in order,
 * so every dX element and every dW sum is computed by one thread in a fixed order: results do
 * not depend on the thread count. (Depthwise convs have 32 to 960 groups.)
 */

/* Output vectors computed together by the general forward kernel: enough independent FMA chains
 * to hide the FMA latency, with one weight broadcast per tap per block. The 3x3 tiles keep the
 * nine weights in registers too: CG_TR rows leave room for them with 16 vector registers. */
enum { CG_R = 8, CG_TR = GT_VL == 16 ? 12 : 6 };
/* dW keeps one accumulator per tap; bigger kernels run in passes of this many taps. */
enum { CG_NT = 9 };

typedef struct {
    int N, C, H, W, OC, K, S, P, G, OH, OW, Cg, OCg, KK;
    int xrows, xlp;       /* padded input plane: rows r, floats per phase row */
    size_t xplane;        /* its floats */
    int xused, xcols;     /* rows and input columns copied: the ones some output reads */
    int ytr, ylc;         /* padded dy plane: rows and columns of zeros before dy's first */
    int yrows, ylp;       /* its rows and row pitch */
    size_t yplane;
    int qlp;              /* S > 1: floats per column phase of the dX row buffer */
    float *out;
    const float *inp, *weight, *dout;
    float *dinp, *dweight;
    const ConvEpilogue *ep; /* forward: eval BN (+ residual) (+ ReLU) per output plane, or NULL */
    int set;                /* backward: dinp = dX instead of dinp += dX */
} CgPlan;

static int cg_round(int n) { return (n + GT_VL - 1) / GT_VL * GT_VL; }
static int cg_max(int a, int b) { return a > b ? a : b; }

static void cg_plan_init(CgPlan *p, int N, int C, int H, int W, int OC, int K, int S, int P,
                         int G)
{
    memset(p, 0, sizeof *p);
    p->N = N, p->C = C, p->H = H, p->W = W, p->OC = OC, p->K = K, p->S = S, p->P = P, p->G = G;
    p->OH = conv_out_size(H, K, S, P);
    p->OW = conv_out_size(W, K, S, P);
    p->Cg = C / G;
    p->OCg = OC / G;
    p->KK = K * K;
    int owv = cg_round(p->OW);
    /* The forward's loads reach row (OH-1)*S + K-1 and phase position owv-1 + (K-1)/S; the 3x3
     * dW's window walk reads (zero) rows up to (OH + (K-1)/S)*S - 1. */
    p->xused = (p->OH - 1) * S + K;
    p->xrows = cg_max(p->xused, (p->OH + (K - 1) / S) * S);
    p->xlp = owv + (K - 1) / S;
    p->xplane = (size_t)p->xrows * S * p->xlp;
    int last = (p->OW - 1) * S + K - 1 - P; /* the last input column any output reads */
    p->xcols = last + 1 < W ? (last + 1 > 0 ? last + 1 : 0) : W;
    /* dy row oh sits at row oh + ytr, column ow at ylc + ow. The stride-S dX reads rows
     * (r - kh)/S >= -((K-1)/S) up to (H-1+P)/S and columns j - kw/S for j < qlp; the stride-1
     * dX (padding K-1) reads columns up to round(W) + P + K-2; dW reads columns ylc + [0, owv). */
    p->ytr = p->ylc = (K - 1) / S;
    p->yrows = p->ytr + cg_max((H - 1 + P) / S + 1, p->OH + (K - 1) / S);
    int ylp = p->ylc + owv;
    if (S == 1) {
        ylp = cg_max(ylp, cg_round(W) + P + K - 1);
    } else {
        p->qlp = cg_round((W - 1 + P) / S + 1);
        ylp = cg_max(ylp, p->ylc + p->qlp);
    }
    p->ylp = ylp;
    p->yplane = (size_t)p->yrows * p->ylp;
}

/* d[0 .. n) = s[0 .. n). (A plain loop would become a memcpy call, which costs more than the copy
 * for rows this short.) */
static inline void cg_copy(float *d, const float *s, int n)
{
    int i = 0;
    for (; i + GT_VL <= n; i += GT_VL) gt_store(d + i, gt_load(s + i));
    for (; i < n; i++) d[i] = s[i];
}

/* de[m] = s[2m] for m < ne, d_o[m] = s[2m + 1] for m < no (ne - no is 0 or 1): a row split into
 * its even and odd columns, two vectors at a time. */
static inline void cg_split2(float *de, float *d_o, const float *s, int ne, int no)
{
    gt_vi ev, od;
    for (int e = 0; e < GT_VL; e++) ev[e] = 2 * e, od[e] = 2 * e + 1;
    int m = 0;
    for (; m + GT_VL <= no; m += GT_VL) {
        gt_vf a = gt_load(s + 2 * m), b = gt_load(s + 2 * m + GT_VL);
        gt_store(de + m, gt_shuffle2(a, b, ev));
        gt_store(d_o + m, gt_shuffle2(a, b, od));
    }
    for (; m < no; m++) de[m] = s[2 * m], d_o[m] = s[2 * m + 1];
    if (ne > no) de[m] = s[2 * m];
}

/* Copy input plane src (H x W) into phase rows xb: the pixels of rows r < xused and columns
 * iw < xcols; column iw = m*S + c goes to phase (c + P) % S, position m + (c + P)/S. */
static void cg_fill_x(const CgPlan *p, float *xb, const float *src)
{
    const int S = p->S, P = p->P, n = p->xcols;
    for (int ih = 0; ih < p->H && ih + P < p->xused; ih++) {
        float *row = xb + (size_t)(ih + P) * S * p->xlp;
        const float *s = src + (size_t)ih * p->W;
        if (S == 1) {
            cg_copy(row + P, s, n);
        } else if (S == 2) {
            cg_split2(row + (size_t)(P % 2) * p->xlp + P / 2,
                      row + (size_t)((P + 1) % 2) * p->xlp + (P + 1) / 2, s, (n + 1) / 2, n / 2);
        } else {
            for (int c = 0; c < S && c < n; c++) {
                float *d = row + (size_t)((c + P) % S) * p->xlp + (c + P) / S;
                for (int m = 0; m < (n - c + S - 1) / S; m++) d[m] = s[(size_t)m * S + c];
            }
        }
    }
}

/* Copy dy plane src (OH x OW) into its padded plane yb. */
static void cg_fill_y(const CgPlan *p, float *yb, const float *src)
{
    for (int oh = 0; oh < p->OH; oh++)
        cg_copy(yb + (size_t)(oh + p->ytr) * p->ylp + p->ylc, src + (size_t)oh * p->OW, p->OW);
}

/* The first n lanes of v to d (all GT_VL when n >= GT_VL), added to what d holds with add. */
static inline void cg_put(float *d, gt_vf v, int n, int add)
{
    if (n >= GT_VL) {
        if (add) v += gt_load(d);
        gt_store(d, v);
        return;
    }
    if (n <= 0) return;
    unsigned m = (1u << n) - 1;
    if (add) v += gt_load_lanes(d, m);
    gt_store_lanes(d, v, m);
}

/* CG_R output vectors: o[at[i]] (first cnt[i] lanes) = (or += with add) the sum over taps
 * (kh, kw), in that order, of w[kh*K + kw] times the vector at xb + in[i] + the tap's offset. */
static inline __attribute__((always_inline)) void
cg_block(float *restrict o, const float *restrict xb, size_t rs, int xlp, const float *restrict w,
         const size_t *in, const size_t *at, const int *cnt, int add, const int K, const int S)
{
    gt_vf acc[CG_R];
    for (int i = 0; i < CG_R; i++) acc[i] = (gt_vf){0};
    for (int kh = 0; kh < K; kh++)
        for (int kw = 0; kw < K; kw++) {
            gt_vf wv = gt_splat(w + kh * K + kw);
            const float *x = xb + (size_t)kh * rs + (size_t)(kw % S) * xlp + kw / S;
            for (int i = 0; i < CG_R; i++) acc[i] += wv * gt_load(x + in[i]);
        }
    for (int i = 0; i < CG_R; i++) cg_put(o + at[i], acc[i], cnt[i], add);
}

/* Output plane o (OH x OW) = (or += with add) the conv of phase rows xb (row pitch
 * rs = S*xlp) with filter w (K x K). Output vectors go in blocks of CG_R in row order; a
 * short last block repeats its last vector and stores nothing for the repeats. */
static inline __attribute__((always_inline)) void
cg_conv_rows(float *restrict o, int OH, int OW, const float *restrict xb, int xlp,
             const float *restrict w, int add, const int K, const int S)
{
    size_t rs = (size_t)S * xlp;
    size_t in[CG_R], at[CG_R];
    int cnt[CG_R], m = 0;
    for (int oh = 0; oh < OH; oh++)
        for (int j0 = 0; j0 < OW; j0 += GT_VL) {
            in[m] = (size_t)oh * S * rs + j0;
            at[m] = (size_t)oh * OW + j0;
            cnt[m] = OW - j0;
            if (++m == CG_R) {
                cg_block(o, xb, rs, xlp, w, in, at, cnt, add, K, S);
                m = 0;
            }
        }
    if (m == 0) return;
    for (int i = m; i < CG_R; i++) in[i] = in[m - 1], at[i] = at[m - 1], cnt[i] = 0;
    cg_block(o, xb, rs, xlp, w, in, at, cnt, add, K, S);
}

/* 3x3 filters: a column of TR <= CG_TR output rows at vectors j0 (o: the first row; x: its
 * first input row), with the nine weights in registers. Input row t feeds output rows i with
 * kh = t - i*S in [0, 3), so each input vector is loaded once per tile and used up to three
 * times (stride 1); each output still sums its taps in (kh, kw) order. */
static inline __attribute__((always_inline)) void
cg_tile3(float *restrict o, int OW, const float *restrict x, size_t rs, int xlp, const gt_vf *wv,
         int j0, int add, const int S, const int TR)
{
    gt_vf acc[CG_TR];
    for (int i = 0; i < TR; i++) acc[i] = (gt_vf){0};
#pragma GCC unroll 32
    for (int t = 0; t < (TR - 1) * S + 3; t++) {
        const float *xr = x + (size_t)t * rs + j0;
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; kw++) {
            gt_vf xv = gt_load(xr + (size_t)(kw % S) * xlp + kw / S);
#pragma GCC unroll 16
            for (int i = 0; i < TR; i++) {
                int kh = t - i * S;
                if (kh >= 0 && kh < 3) acc[i] += wv[kh * 3 + kw] * xv;
            }
        }
    }
    for (int i = 0; i < TR; i++) cg_put(o + (size_t)i * OW + j0, acc[i], OW - j0, add);
}

/* Output rows [oh, oh + TR) of a 3x3 conv's plane (cg_conv_rows's contract), one tile of TR
 * rows per vector of columns. */
static inline __attribute__((always_inline)) void
cg_rows3(float *restrict o, int oh, int OW, const float *restrict xb, int xlp, const gt_vf *wv,
         int add, const int S, const int TR)
{
    size_t rs = (size_t)S * xlp;
    for (int j0 = 0; j0 < OW; j0 += GT_VL)
        cg_tile3(o + (size_t)oh * OW, OW, xb + (size_t)oh * S * rs, rs, xlp, wv, j0, add, S, TR);
}

/* A 3x3 conv's whole output plane: tiles of CG_TR rows, then the rows left over in tiles of 4,
 * 2 and 1 (at 8x8, 6 + 2 rows: the 2 rows in one block of CG_R vectors computed 8 and stored 2,
 * and the plane took 1.4x as long). */
static inline __attribute__((always_inline)) void
cg_plane3(float *restrict o, int OH, int OW, const float *restrict xb, int xlp,
          const float *restrict w, int add, const int S)
{
    gt_vf wv[9];
    for (int t = 0; t < 9; t++) wv[t] = gt_splat(w + t);
    int oh = 0;
    for (; oh + CG_TR <= OH; oh += CG_TR) cg_rows3(o, oh, OW, xb, xlp, wv, add, S, CG_TR);
    for (; oh + 4 <= OH; oh += 4) cg_rows3(o, oh, OW, xb, xlp, wv, add, S, 4);
    for (; oh + 2 <= OH; oh += 2) cg_rows3(o, oh, OW, xb, xlp, wv, add, S, 2);
    if (oh < OH) cg_rows3(o, oh, OW, xb, xlp, wv, add, S, 1);
}

/* A whole output plane: cg_plane3 for 3x3 filters at stride 1 and 2, blocks for any other K and
 * S. Constant K and S unroll the tap loops. */
static void cg_conv_plane(float *o, int OH, int OW, const float *xb, int xlp, const float *w,
                          int add, int K, int S)
{
    if (K == 3 && S == 1)
        cg_plane3(o, OH, OW, xb, xlp, w, add, 1);
    else if (K == 3 && S == 2)
        cg_plane3(o, OH, OW, xb, xlp, w, add, 2);
    else
        cg_conv_rows(o, OH, OW, xb, xlp, w, add, K, S);
}

/* The lanes of acc[t] summed in double, added to dsum[t] for t < n. */
static inline void cg_dw_store(double *dsum, const gt_vf *acc, int n)
{
    for (int t = 0; t < n; t++) {
        double s = 0.0;
        for (int e = 0; e < GT_VL; e++) s += acc[t][e];
        dsum[t] += s;
    }
}

/* dsum[t] += sum over the plane of dy times tap t's input, for the NT taps t0 .. t0+NT-1 (taps
 * past K*K repeat the last one and are dropped). y: dy's padded plane at its first pixel. Each
 * tap sums in one vector accumulator in pixel order. */
static inline __attribute__((always_inline)) void
cg_dw_taps(double *dsum, const float *restrict y, int ylp, const float *restrict xb, int xlp,
           int OH, int OW, int t0, const int K, const int S, const int NT)
{
    size_t rs = (size_t)S * xlp;
    size_t toff[CG_NT];
    for (int i = 0; i < NT; i++) {
        int t = t0 + i < K * K ? t0 + i : K * K - 1, kh = t / K, kw = t % K;
        toff[i] = (size_t)kh * rs + (size_t)(kw % S) * xlp + kw / S;
    }
    gt_vf acc[CG_NT];
    for (int i = 0; i < NT; i++) acc[i] = (gt_vf){0};
    for (int oh = 0; oh < OH; oh++) {
        const float *yr = y + (size_t)oh * ylp;
        const float *xr = xb + (size_t)oh * S * rs;
        for (int j0 = 0; j0 < OW; j0 += GT_VL) {
            gt_vf dy = gt_load(yr + j0);
            for (int i = 0; i < NT; i++) acc[i] += dy * gt_load(xr + j0 + toff[i]);
        }
    }
    cg_dw_store(dsum + t0, acc, K * K - t0 < NT ? K * K - t0 : NT);
}

/* The same sums for a 3x3 filter, down each column of vectors: step oh loads dy row oh into a
 * window holding rows oh, oh-1, ... (oh - (2/S)), and input rows oh*S + u (u < S) meet the
 * window's row oh - d at tap kh = u + d*S. Each input vector is loaded once and feeds up to
 * three taps. The walk runs past the last row into zero rows of both padded planes. */
static inline __attribute__((always_inline)) void
cg_dw_window3(double *dsum, const float *restrict y, int ylp, const float *restrict xb, int xlp,
              int OH, int OW, const int S)
{
    const int D = 2 / S + 1; /* dy rows in the window */
    size_t rs = (size_t)S * xlp;
    gt_vf acc[9];
    for (int t = 0; t < 9; t++) acc[t] = (gt_vf){0};
    for (int j0 = 0; j0 < OW; j0 += GT_VL) {
        gt_vf win[3] = {(gt_vf){0}, (gt_vf){0}, (gt_vf){0}};
        for (int oh = 0; oh < OH + D - 1; oh++) {
            for (int d = D - 1; d > 0; d--) win[d] = win[d - 1];
            win[0] = gt_load(y + (size_t)oh * ylp + j0);
            for (int u = 0; u < S; u++) {
                const float *xr = xb + (size_t)(oh * S + u) * rs + j0;
                for (int kw = 0; kw < 3; kw++) {
                    gt_vf xv = gt_load(xr + (size_t)(kw % S) * xlp + kw / S);
                    for (int d = 0; d < D; d++)
                        if (u + d * S < 3) acc[(u + d * S) * 3 + kw] += win[d] * xv;
                }
            }
        }
    }
    cg_dw_store(dsum, acc, 9);
}

static void cg_dw_plane(double *dsum, const float *y, int ylp, const float *xb, int xlp, int OH,
                        int OW, int K, int S)
{
    if (K == 3 && S == 1) {
        cg_dw_window3(dsum, y, ylp, xb, xlp, OH, OW, 1);
    } else if (K == 3 && S == 2) {
        cg_dw_window3(dsum, y, ylp, xb, xlp, OH, OW, 2);
    } else if (K == 1) {
        cg_dw_taps(dsum, y, ylp, xb, xlp, OH, OW, 0, 1, S, 1);
    } else {
        for (int t0 = 0; t0 < K * K; t0 += CG_NT)
            cg_dw_taps(dsum, y, ylp, xb, xlp, OH, OW, t0, K, S, CG_NT);
    }
}

/* One dinp plane of a stride-S > 1 conv: dX of channel ic of the group from the group's OCg
 * padded dy planes yb (yplane apart) and weights w (filter ocl's at w + ocl*Cg*K*K). Row by
 * row: padded row r = ih + P, phase b, position j sums over filters, taps kh = r - oh*S and
 * kw % S == b of w times dy[oh][j - kw/S], into rowbuf (qlp floats per phase); then
 * dinp[ih][iw] = (or +=) rowbuf at phase (iw + P) % S, position (iw + P) / S. */
static void cg_dx_strided(const CgPlan *p, float *restrict d, const float *restrict yb,
                          const float *restrict w, float *restrict rowbuf, int set)
{
    const int K = p->K, S = p->S;
    const int P = p->P, W = p->W, qlp = p->qlp, ylp = p->ylp;
    const size_t wstride = (size_t)p->Cg * K * K;
    for (int ih = 0; ih < p->H; ih++) {
        int r = ih + P;
        int kh0 = r % S;
        const float *y0 = yb + (size_t)(p->ytr + (r - kh0) / S) * ylp + p->ylc;
        for (int b = 0; b < S; b++)
            for (int j0 = 0; j0 < qlp; j0 += GT_VL) {
                gt_vf acc = (gt_vf){0};
                for (int ocl = 0; ocl < p->OCg; ocl++) {
                    const float *wk = w + ocl * wstride;
                    /* tap kh reads dy row (r - kh)/S: kh0 reads y0's row, kh0 + S the one above */
                    const float *yr = y0 + ocl * p->yplane + j0;
                    for (int kh = kh0; kh < K; kh += S, yr -= ylp)
                        for (int kw = b; kw < K; kw += S)
                            acc += gt_splat(wk + kh * K + kw) * gt_load(yr - kw / S);
                }
                gt_store(rowbuf + (size_t)b * qlp + j0, acc);
            }
        float *drow = d + (size_t)ih * W;
        for (int c = 0; c < S && c < W; c++) {
            const float *src = rowbuf + (size_t)((c + P) % S) * qlp + (c + P) / S;
            int cnt = (W - c + S - 1) / S;
            if (set)
                for (int m = 0; m < cnt; m++) drow[(size_t)m * S + c] = src[m];
            else
                for (int m = 0; m < cnt; m++) drow[(size_t)m * S + c] += src[m];
        }
    }
}

/* Lanes of v to row d at columns iw0 .. iw0 + GT_VL - 1, only those inside [0, W), added to d's
 * values with add (lane masks at the row's ends: compress-stores and expand-loads). */
static inline void cg_put_cols(float *d, int iw0, gt_vf v, int W, int add)
{
    if (iw0 >= 0 && iw0 + GT_VL <= W) {
        if (add) v += gt_load(d + iw0);
        gt_store(d + iw0, v);
        return;
    }
    int e0 = iw0 < 0 ? -iw0 : 0, e1 = W - iw0 < GT_VL ? W - iw0 : GT_VL;
    if (e1 <= e0) return;
    unsigned m = ((1u << e1) - 1) & ~((1u << e0) - 1);
    if (add) v += gt_load_lanes(d + iw0 + e0, m);
    gt_store_lanes(d + iw0 + e0, v, m);
}

/* dX of one (filter, channel) pair of a 3x3 stride-2 conv into plane d (H x W), = or += with
 * add. y: dy's padded plane at its first pixel; w: the filter. Step oh reads dy rows oh and oh-1
 * at columns j and j-1 and forms padded rows 2oh (taps kh = 0 from row oh, 2 from row oh-1) and
 * 2oh+1 (kh = 1) in both column phases (phase 0: kw = 0 at j, 2 at j-1; phase 1: kw = 1). The
 * phases are interleaved into padded columns 2j, 2j+1 and stored to dinp columns 2j - P,
 * 2j + 1 - P, row by row, so dinp streams through the cache in order. */
static void cg_dx3s2(float *restrict d, int H, int W, int P, const float *restrict y, int ylp,
                     int qlp, const float *restrict w, int add)
{
    gt_vf wv[9];
    for (int t = 0; t < 9; t++) wv[t] = gt_splat(w + t);
    gt_vi lo, hi;
    for (int e = 0; e < GT_VL; e++) {
        lo[e] = e % 2 ? GT_VL + e / 2 : e / 2;
        hi[e] = lo[e] + GT_VL / 2;
    }
    int nsteps = (H - 1 + P) / 2 + 1; /* padded rows 2oh + u up to H - 1 + P */
    for (int oh = 0; oh < nsteps; oh++) {
        const float *yr = y + (size_t)oh * ylp, *yp = yr - ylp;
        float *drow[2];
        for (int u = 0; u < 2; u++) {
            int ih = 2 * oh + u - P;
            drow[u] = ih >= 0 && ih < H ? d + (size_t)ih * W : NULL;
        }
        for (int j0 = 0; j0 < qlp; j0 += GT_VL) {
            gt_vf a0 = gt_load(yr + j0), a1 = gt_load(yr + j0 - 1);
            gt_vf c0 = gt_load(yp + j0), c1 = gt_load(yp + j0 - 1);
            gt_vf ev[2], od[2]; /* padded rows 2oh, 2oh+1: phase 0, phase 1 */
            ev[0] = wv[0] * a0 + wv[2] * a1 + wv[6] * c0 + wv[8] * c1;
            od[0] = wv[1] * a0 + wv[7] * c0;
            ev[1] = wv[3] * a0 + wv[5] * a1;
            od[1] = wv[4] * a0;
            for (int u = 0; u < 2; u++) {
                if (!drow[u]) continue;
                cg_put_cols(drow[u], 2 * j0 - P, gt_shuffle2(ev[u], od[u], lo), W, add);
                cg_put_cols(drow[u], 2 * j0 - P + GT_VL, gt_shuffle2(ev[u], od[u], hi), W,
                            add);
            }
        }
    }
}

/* Forward units [lo, hi): unit u is group u / N of image u % N. Its output planes are summed
 * over the group's channels in order, then go through the epilogue while in cache. */
static void cg_forward_range(void *ctx, int lo, int hi)
{
    const CgPlan *p = ctx;
    float *xb = xalloc_floats(p->xplane);
    memset(xb, 0, p->xplane * sizeof(float));
    size_t plane = (size_t)p->H * p->W, oplane = (size_t)p->OH * p->OW;
    for (int u = lo; u < hi; u++) {
        int g = u / p->N, n = u % p->N;
        for (int ic = 0; ic < p->Cg; ic++) {
            int c = g * p->Cg + ic;
            cg_fill_x(p, xb, p->inp + ((size_t)c * p->N + n) * plane);
            for (int ocl = 0; ocl < p->OCg; ocl++) {
                int oc = g * p->OCg + ocl;
                cg_conv_plane(p->out + ((size_t)oc * p->N + n) * oplane, p->OH, p->OW, xb,
                              p->xlp, p->weight + ((size_t)oc * p->Cg + ic) * p->KK, ic > 0,
                              p->K, p->S);
            }
        }
        if (!p->ep) continue;
        for (int ocl = 0; ocl < p->OCg; ocl++) {
            int oc = g * p->OCg + ocl;
            size_t at = ((size_t)oc * p->N + n) * oplane;
            conv_epilogue_row(p->out + at, p->ep->res ? p->ep->res + at : NULL, oplane, p->ep, oc);
        }
    }
    free(xb);
}

/* Backward groups [lo, hi): per image in order, the group's dy planes are padded once; per
 * channel, dW of every (filter, channel) pair and then the channel's dX. dW is summed in double
 * over the images and added to dweight at the end. */
static void cg_backward_range(void *ctx, int lo, int hi)
{
    const CgPlan *p = ctx;
    const int KK = p->KK, Cg = p->Cg, OCg = p->OCg;
    size_t nw = (size_t)OCg * Cg * KK;
    float *xb = xalloc_floats(p->xplane);
    float *yb = xalloc_floats((size_t)OCg * p->yplane);
    float *rowbuf = xalloc_floats((size_t)p->S * p->qlp + 1);
    float *wrot = xalloc_floats(nw);
    double *dsum = xmalloc(nw * sizeof(double));
    memset(xb, 0, p->xplane * sizeof(float));
    memset(yb, 0, (size_t)OCg * p->yplane * sizeof(float));
    size_t plane = (size_t)p->H * p->W, oplane = (size_t)p->OH * p->OW;
    for (int g = lo; g < hi; g++) {
        const float *wg = p->weight + (size_t)g * nw;
        /* The stride-1 dX runs the forward kernel with each filter rotated by 180 degrees. */
        if (p->S == 1)
            for (size_t f = 0; f < nw; f += KK)
                for (int t = 0; t < KK; t++) wrot[f + t] = wg[f + KK - 1 - t];
        memset(dsum, 0, nw * sizeof(double));
        for (int n = 0; n < p->N; n++) {
            for (int ocl = 0; ocl < OCg; ocl++)
                cg_fill_y(p, yb + ocl * p->yplane,
                          p->dout + ((size_t)(g * OCg + ocl) * p->N + n) * oplane);
            for (int ic = 0; ic < Cg; ic++) {
                int c = g * Cg + ic;
                cg_fill_x(p, xb, p->inp + ((size_t)c * p->N + n) * plane);
                for (int ocl = 0; ocl < OCg; ocl++)
                    cg_dw_plane(dsum + ((size_t)ocl * Cg + ic) * KK,
                                yb + ocl * p->yplane + (size_t)p->ytr * p->ylp + p->ylc, p->ylp,
                                xb, p->xlp, p->OH, p->OW, p->K, p->S);
                if (!p->dinp) continue;
                float *d = p->dinp + ((size_t)c * p->N + n) * plane;
                if (p->K == 3 && p->S == 2) {
                    for (int ocl = 0; ocl < OCg; ocl++)
                        cg_dx3s2(d, p->H, p->W, p->P,
                                 yb + ocl * p->yplane + (size_t)p->ytr * p->ylp + p->ylc, p->ylp,
                                 p->qlp, wg + ((size_t)ocl * Cg + ic) * KK, !(p->set && ocl == 0));
                    continue;
                }
                if (p->S > 1) {
                    cg_dx_strided(p, d, yb, wg + (size_t)ic * KK, rowbuf, p->set);
                    continue;
                }
                /* dX(ih, iw) = sum of the rotated filter times dy's padded plane from row
                 * ih + P, column iw + P (ytr = ylc = K-1). */
                for (int ocl = 0; ocl < OCg; ocl++)
                    cg_conv_plane(d, p->H, p->W,
                                  yb + ocl * p->yplane + (size_t)p->P * p->ylp + p->P, p->ylp,
                                  wrot + ((size_t)ocl * Cg + ic) * KK, !(p->set && ocl == 0),
                                  p->K, 1);
            }
        }
        float *dw = p->dweight + (size_t)g * nw;
        for (size_t i = 0; i < nw; i++) dw[i] += (float)dsum[i];
    }
    free(xb);
    free(yb);
    free(rowbuf);
    free(wrot);
    free(dsum);
}

void conv_group_forward_ep(float *out, const float *inp, const float *weight, int N, int C, int H,
                           int W, int OC, int K, int S, int P, int G, const ConvEpilogue *ep)
{
    CHECK(G > 0 && C % G == 0 && OC % G == 0, "conv: C=%d, OC=%d not divisible by G=%d", C, OC, G);
    CgPlan p;
    cg_plan_init(&p, N, C, H, W, OC, K, S, P, G);
    p.out = out;
    p.inp = inp;
    p.weight = weight;
    p.ep = ep;
    long long work = (long long)OC * N * p.OH * p.OW * p.Cg * p.KK;
    par_for(G * N, work, cg_forward_range, &p);
}

void conv_group_forward(float *out, const float *inp, const float *weight, int N, int C, int H,
                        int W, int OC, int K, int S, int P, int G)
{
    conv_group_forward_ep(out, inp, weight, N, C, H, W, OC, K, S, P, G, NULL);
}

void conv_group_backward_any(float *dinp, float *dweight, const float *dout, const float *inp,
                             const float *weight, int N, int C, int H, int W, int OC, int K,
                             int S, int P, int G, int set)
{
    CHECK(G > 0 && C % G == 0 && OC % G == 0, "conv: C=%d, OC=%d not divisible by G=%d", C, OC, G);
    CgPlan p;
    cg_plan_init(&p, N, C, H, W, OC, K, S, P, G);
    p.dinp = dinp;
    p.dweight = dweight;
    p.dout = dout;
    p.inp = inp;
    p.weight = weight;
    p.set = set;
    long long work = 2LL * OC * N * p.OH * p.OW * p.Cg * p.KK;
    par_for(G, work, cg_backward_range, &p);
}

void conv_group_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                         const float *weight, int N, int C, int H, int W, int OC, int K, int S,
                         int P, int G)
{
    conv_group_backward_any(dinp, dweight, dout, inp, weight, N, C, H, W, OC, K, S, P, G, 0);
}
