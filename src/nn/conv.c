/* 2-D convolution on channel-major activations: dispatch to the pointwise path (conv_point.c), the shifted-grid paths (conv_shift.c, conv_phase.c), cache-blocked im2col + tiled GEMM for other ungrouped convs, the direct kernels of conv_group.c for grouped convs, and naive references. */
#include "isa.h" /* first: renames this file's functions in per-ISA builds */
#include "legr/layers.h"
#include "legr/util.h"
#include "conv_internal.h"
#include "gemm_tile.h"
#include "kernels.h"
#include "parallel.h"

#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

int conv_out_size(int size, int k, int s, int p) { return (size + 2 * p - k) / s + 1; }

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

/* col row (c, kh, kw) (row stride ldc) holds, for every (n, oh, ow) with oh in [oh0, oh1),
 * inp[c, n, oh*S - P + kh, ow*S - P + kw] at column (n*(oh1 - oh0) + oh - oh0)*OW + ow, where
 * channel c of image n starts at inp + c*chan_stride + n*H*W: with chan_stride = N_total*H*W
 * this reads images [0, N) of a larger batch. */
static void im2col_strided(float *col, size_t ldc, const float *inp, size_t chan_stride, int N,
                           int C, int H, int W, int K, int S, int P, int oh0, int oh1)
{
    int OW = conv_out_size(W, K, S, P), nrow = oh1 - oh0;
    for (int c = 0; c < C; c++) {
        for (int kh = 0; kh < K; kh++) {
            int oh_lo, oh_hi;
            conv_valid_range(&oh_lo, &oh_hi, conv_out_size(H, K, S, P), H, S, kh - P);
            for (int kw = 0; kw < K; kw++) {
                int ow_lo, ow_hi;
                conv_valid_range(&ow_lo, &ow_hi, OW, W, S, kw - P);
                float *row = col + ((size_t)(c * K + kh) * K + kw) * ldc;
                for (int n = 0; n < N; n++) {
                    const float *plane = inp + (size_t)c * chan_stride + (size_t)n * H * W;
                    for (int oh = oh0; oh < oh1; oh++) {
                        float *dst = row + ((size_t)n * nrow + oh - oh0) * OW;
                        if (oh < oh_lo || oh >= oh_hi) {
                            for (int ow = 0; ow < OW; ow++) dst[ow] = 0.0f;
                            continue;
                        }
                        /* src[ow*S] is inp at (ih, ow*S - P + kw) for ow in [ow_lo, ow_hi).
                         * Rows are short (OW floats), so plain loops beat memcpy calls. */
                        const float *src = plane + (ptrdiff_t)(oh * S - P + kh) * W;
                        int shift = kw - P;
                        for (int ow = 0; ow < ow_lo; ow++) dst[ow] = 0.0f;
                        if (S == 1) {
                            for (int ow = ow_lo; ow < ow_hi; ow++) dst[ow] = src[ow + shift];
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

void im2col(float *col, const float *inp, int N, int C, int H, int W, int K, int S, int P)
{
    size_t ncols = (size_t)N * conv_out_size(H, K, S, P) * conv_out_size(W, K, S, P);
    im2col_strided(col, ncols, inp, (size_t)N * H * W, N, C, H, W, K, S, P, 0,
                   conv_out_size(H, K, S, P));
}

/* Scatter-add of every col entry back to the input pixel im2col read it from; padding entries
 * are dropped. Same loop structure and strides as im2col_strided, so the two are exact adjoints. */
static void col2im_strided_acc(float *dinp, size_t chan_stride, const float *col, size_t ldc,
                               int N, int C, int H, int W, int K, int S, int P)
{
    int OH = conv_out_size(H, K, S, P);
    int OW = conv_out_size(W, K, S, P);
    for (int c = 0; c < C; c++) {
        for (int kh = 0; kh < K; kh++) {
            int oh_lo, oh_hi;
            conv_valid_range(&oh_lo, &oh_hi, OH, H, S, kh - P);
            for (int kw = 0; kw < K; kw++) {
                int ow_lo, ow_hi;
                conv_valid_range(&ow_lo, &ow_hi, OW, W, S, kw - P);
                const float *row = col + ((size_t)(c * K + kh) * K + kw) * ldc;
                int shift = kw - P;
                for (int n = 0; n < N; n++) {
                    float *plane = dinp + (size_t)c * chan_stride + (size_t)n * H * W;
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

void col2im_acc(float *dinp, const float *col, int N, int C, int H, int W, int K, int S, int P)
{
    size_t ncols = (size_t)N * conv_out_size(H, K, S, P) * conv_out_size(W, K, S, P);
    col2im_strided_acc(dinp, (size_t)N * H * W, col, ncols, N, C, H, W, K, S, P);
}

/*
 * Ungrouped convolutions run blocked over whole images: a block of nimg images has
 * cols = nimg*OH*OW output pixels, and its im2col slice colb (KC x cols) is sized to stay in a
 * core's L2 cache, so im2col, GEMM and col2im of one block all work in cache instead of
 * streaming a col matrix of the whole batch through memory. Blocks are whole images, so the
 * col2im scatters of different blocks touch disjoint parts of dinp. The GEMMs are gemm_tile.h's kernels, which
 * are efficient for the thin shapes here (OC = 16..64 rows) where generic BLAS is not.
 */
enum { CONV_BLOCK_FLOATS = 3 << 16 }; /* target size of colb: 768 KiB */


typedef struct {
    int N, C, H, W, OC, K, S, P, OH, OW, KC;
    int nimg, nblk;      /* images per block, blocks */
    size_t ldb;          /* row stride of colb and doutb: nimg*OH*OW rounded up to GT_NR */
    size_t packed;       /* floats of the packed weight panels (shared by all threads) */
    size_t per_thread;   /* floats of one thread's colb + doutb + gt_gemm's B buffer */
    size_t lane_floats;  /* floats of one dW lane */
    int nlanes;
    atomic_int next;     /* the next block (forward) or lane (backward) to take */
    float *ap;           /* packed W (forward) or W^T (backward data) */
    float *lanes;        /* CONV_LANES dW partial sums */
    float *work;         /* the first thread region; thread t's is work + t*per_thread */
    float *out;          /* forward */
    const float *inp;
    const float *dout;   /* backward */
    float *dinp;         /* backward, may be NULL */
    const ConvEpilogue *ep; /* forward: eval BN (+ residual) (+ ReLU) on the way out, or NULL */
} ConvPlan;

/* Block sizes and workspace layout; depend on the shape only (never on the thread count). */
static void conv_plan_init(ConvPlan *p, int N, int C, int H, int W, int OC, int K, int S, int P)
{
    memset(p, 0, sizeof *p);
    p->N = N, p->C = C, p->H = H, p->W = W, p->OC = OC, p->K = K, p->S = S, p->P = P;
    p->OH = conv_out_size(H, K, S, P);
    p->OW = conv_out_size(W, K, S, P);
    p->KC = C * K * K;
    long long per_img = (long long)p->KC * p->OH * p->OW;
    long long nimg = CONV_BLOCK_FLOATS / (per_img > 0 ? per_img : 1);
    p->nimg = (int)(nimg < 1 ? 1 : nimg > N ? N : nimg);
    p->nblk = (N + p->nimg - 1) / p->nimg;
    p->ldb = ((size_t)p->nimg * p->OH * p->OW + GT_NR - 1) / GT_NR * GT_NR;
    size_t pa = (size_t)(OC + GT_MR - 1) / GT_MR * GT_MR * p->KC;
    size_t pb = (size_t)(p->KC + GT_MR - 1) / GT_MR * GT_MR * OC;
    p->packed = conv_round16(pa > pb ? pa : pb);
    p->per_thread = conv_round16((size_t)p->KC * p->ldb) + conv_round16((size_t)OC * p->ldb) +
                    GT_GEMM_PACK;
    p->lane_floats = conv_round16((size_t)OC * p->KC);
    p->nlanes = conv_lanes(p->nblk);
    atomic_init(&p->next, 0);
}

/* Workspace: packed weights, dW lanes, then PAR_MAX_THREADS thread regions. */
static void conv_plan_bind(ConvPlan *p, float *ws)
{
    p->ap = ws;
    p->lanes = ws + p->packed;
    p->work = p->lanes + CONV_LANES * p->lane_floats;
}

/* The gt_gemm buffer of the thread region that starts at colb (after its colb and doutb). */
static float *conv_plan_pack(const ConvPlan *p, float *colb)
{
    return colb + conv_round16((size_t)p->KC * p->ldb) + conv_round16((size_t)p->OC * p->ldb);
}

static size_t conv_plan_floats(const ConvPlan *p)
{
    return p->packed + CONV_LANES * p->lane_floats + (size_t)PAR_MAX_THREADS * p->per_thread;
}

/* Zero columns [cols, round up to GT_NR) of `rows` rows: the tile kernels read whole tiles, and
 * the dW dot products sum over the padding, so it must hold zeros. */
static void conv_zero_pad(float *m, size_t ld, int rows, int cols)
{
    int end = (cols + GT_NR - 1) / GT_NR * GT_NR;
    if (end == cols) return;
    for (int r = 0; r < rows; r++) memset(m + (size_t)r * ld + cols, 0, (size_t)(end - cols) * sizeof(float));
}

/* The forward of a block goes in runs of output rows: all of them when the block's im2col
 * fits CONV_BLOCK_FLOATS, else (a single image, e.g. ResNet-50's 7x7 stem: 7.4 MB) as many rows
 * as do, so that the GEMM reads the columns from L2 right after im2col wrote them (whole, the
 * stem's image went out to memory and its GEMM ran at a third of the tile's speed). */
static void conv_forward_worker(void *ctx, int t, int T)
{
    (void)T;
    ConvPlan *p = ctx;
    float *colb = p->work + (size_t)t * p->per_thread;
    size_t plane = (size_t)p->H * p->W, oplane = (size_t)p->OH * p->OW;
    size_t np = (size_t)p->N * oplane;
    size_t row_floats = (size_t)p->KC * p->OW;
    int run = p->nimg > 1 || row_floats * p->OH <= CONV_BLOCK_FLOATS
                  ? p->OH
                  : (int)(CONV_BLOCK_FLOATS / row_floats > 0 ? CONV_BLOCK_FLOATS / row_floats : 1);
    for (int b; (b = atomic_fetch_add(&p->next, 1)) < p->nblk;) {
        int n0 = b * p->nimg;
        int nn = p->N - n0 < p->nimg ? p->N - n0 : p->nimg;
        for (int oh0 = 0; oh0 < p->OH; oh0 += run) {
            int oh1 = oh0 + run < p->OH ? oh0 + run : p->OH;
            int cols = nn * (oh1 - oh0) * p->OW;
            size_t at0 = n0 * oplane + (size_t)oh0 * p->OW; /* first output column */
            im2col_strided(colb, p->ldb, p->inp + n0 * plane, p->N * plane, nn, p->C, p->H, p->W,
                           p->K, p->S, p->P, oh0, oh1);
            conv_zero_pad(colb, p->ldb, p->KC, cols);
            /* M = OC filters, N = cols pixels of this run, K = KC taps. */
            GtRows rows = {colb, p->ldb, 0, 0, 1};
            gt_gemm(p->OC, cols, p->KC, p->ap, &rows, p->out + at0, np, conv_plan_pack(p, colb));
            if (p->ep)
                for (int oc = 0; oc < p->OC; oc++) {
                    size_t at = oc * np + at0;
                    conv_epilogue_row(p->out + at, p->ep->res ? p->ep->res + at : NULL,
                                      (size_t)cols, p->ep, oc);
                }
        }
    }
}

/* One block of the im2col path's backward: dw += its dW, dinp += its dX. */
static void conv_backward_block(const ConvPlan *p, float *colb, float *doutb, float *dw, int b)
{
    size_t plane = (size_t)p->H * p->W, oplane = (size_t)p->OH * p->OW;
    size_t np = (size_t)p->N * oplane;
    int n0 = b * p->nimg;
    int nn = p->N - n0 < p->nimg ? p->N - n0 : p->nimg;
    int cols = nn * (int)oplane;
    int lpad = (cols + GT_NR - 1) / GT_NR * GT_NR;
    im2col_strided(colb, p->ldb, p->inp + n0 * plane, p->N * plane, nn, p->C, p->H, p->W, p->K,
                   p->S, p->P, 0, p->OH);
    conv_zero_pad(colb, p->ldb, p->KC, cols);
    for (int oc = 0; oc < p->OC; oc++)
        memcpy(doutb + (size_t)oc * p->ldb, p->dout + oc * np + n0 * oplane,
               (size_t)cols * sizeof(float));
    conv_zero_pad(doutb, p->ldb, p->OC, cols);
    /* dW (OC x KC) += doutb (OC x cols) x colb^T: M = OC, N = KC, reduction over pixels. */
    GtRows crows = {colb, p->ldb, 0, 0, 1};
    gt_gemm_abt_acc(p->OC, p->KC, lpad, doutb, p->ldb, &crows, dw, p->KC);
    if (!p->dinp) return;
    /* dcol (KC x cols) = W^T (KC x OC) x doutb: M = KC taps, N = cols, K = OC; it reuses colb,
     * which dW no longer needs. */
    GtRows drows = {doutb, p->ldb, 0, 0, 1};
    gt_gemm(p->KC, cols, p->OC, p->ap, &drows, colb, p->ldb, conv_plan_pack(p, colb));
    col2im_strided_acc(p->dinp + n0 * plane, p->N * plane, colb, p->ldb, nn, p->C, p->H, p->W,
                       p->K, p->S, p->P);
}

static void conv_backward_worker(void *ctx, int t, int T)
{
    (void)T;
    ConvPlan *p = ctx;
    float *colb = p->work + (size_t)t * p->per_thread;
    float *doutb = colb + conv_round16((size_t)p->KC * p->ldb);
    for (int l; (l = atomic_fetch_add(&p->next, 1)) < p->nlanes;) {
        float *dw = p->lanes + (size_t)l * p->lane_floats;
        memset(dw, 0, (size_t)p->OC * p->KC * sizeof(float));
        for (int b = l; b < p->nblk; b += p->nlanes) conv_backward_block(p, colb, doutb, dw, b);
    }
}

/* Threads for a plan: the engine's setting, but never more than there are blocks. */
static int conv_plan_threads(const ConvPlan *p)
{
    int T = par_threads();
    return T < p->nblk ? T : p->nblk;
}

long long conv_workspace_floats(int N, int C, int H, int W, int OC, int K, int S, int P, int G)
{
    if (G > 1) return 0; /* conv_group.c needs none */
    if (conv_is_point(K, S, P)) return conv_point_workspace(N, C, H, W, OC, 1);
    if (conv_is_same_s1(K, S, P)) return conv_shift_workspace(N, C, H, W, OC, K, P);
    if (conv_is_phase_s2(K, S, P, H, W)) return conv_phase_workspace(N, C, H, W, OC);
    ConvPlan p;
    conv_plan_init(&p, N, C, H, W, OC, K, S, P);
    long long im2col = (long long)conv_plan_floats(&p); /* the backward, and other shapes */
    if (!conv_is_point_strided(K, S, P)) return im2col;
    long long point = conv_point_workspace(N, C, H, W, OC, S); /* the forward */
    return point > im2col ? point : im2col;
}

static void conv_forward_ep(float *out, float *col, const float *inp, const float *weight, int N,
                            int C, int H, int W, int OC, int K, int S, int P, int G,
                            const ConvEpilogue *ep)
{
    CHECK(G > 0 && C % G == 0 && OC % G == 0, "conv: C=%d, OC=%d not divisible by G=%d", C, OC, G);
    if (G > 1) {
        conv_group_forward_ep(out, inp, weight, N, C, H, W, OC, K, S, P, G, ep);
        return;
    }
    if (conv_is_point(K, S, P) || conv_is_point_strided(K, S, P)) {
        conv_point_forward(out, col, inp, weight, N, C, H, W, OC, S, ep);
        return;
    }
    if (conv_is_same_s1(K, S, P)) {
        conv_shift_forward(out, col, inp, weight, N, C, H, W, OC, K, P, ep);
        return;
    }
    if (conv_is_phase_s2(K, S, P, H, W)) {
        conv_phase_forward(out, col, inp, weight, N, C, H, W, OC, ep);
        return;
    }
    ConvPlan p;
    conv_plan_init(&p, N, C, H, W, OC, K, S, P);
    conv_plan_bind(&p, col);
    p.out = out;
    p.inp = inp;
    p.ep = ep;
    gt_pack_a(p.ap, weight, OC, p.KC, (size_t)p.KC, 1);
    par_run(conv_plan_threads(&p), conv_forward_worker, &p);
}

void conv_forward(float *out, float *col, const float *inp, const float *weight,
                  int N, int C, int H, int W, int OC, int K, int S, int P, int G)
{
    conv_forward_ep(out, col, inp, weight, N, C, H, W, OC, K, S, P, G, NULL);
}

void conv_forward_affine(float *out, float *col, const float *inp, const float *weight, int N,
                         int C, int H, int W, int OC, int K, int S, int P, int G,
                         const float *mean, const float *scale, const float *shift,
                         const float *res, float cap)
{
    ConvEpilogue ep = {mean, scale, shift, res, cap};
    conv_forward_ep(out, col, inp, weight, N, C, H, W, OC, K, S, P, G, &ep);
}

/* Grouped convs go to conv_group.c, pointwise ones to conv_point.c, same and stride-2 3x3 ones
 * to the shifted-grid paths. The others: per block, dW += doutb x colb^T and dinp +=
 * col2im(W^T x doutb); dW goes through the lanes (see "Scheduling" in conv_internal.h), so it
 * does not depend on the thread count. */
static void conv_backward_any(float *dinp, float *dweight, float *col, const float *dout,
                              const float *inp, const float *weight, int N, int C, int H, int W,
                              int OC, int K, int S, int P, int G, int set)
{
    CHECK(G > 0 && C % G == 0 && OC % G == 0, "conv: C=%d, OC=%d not divisible by G=%d", C, OC, G);
    if (G > 1) {
        conv_group_backward_any(dinp, dweight, dout, inp, weight, N, C, H, W, OC, K, S, P, G, set);
        return;
    }
    if (conv_is_point(K, S, P)) {
        conv_point_backward(dinp, dweight, col, dout, inp, weight, N, C, H, W, OC, set);
        return;
    }
    if (conv_is_same_s1(K, S, P)) {
        conv_shift_backward(dinp, dweight, col, dout, inp, weight, N, C, H, W, OC, K, P, set);
        return;
    }
    /* The other paths accumulate (their scatters add), so "set" starts them from zero. */
    if (set && dinp) memset(dinp, 0, (size_t)C * N * H * W * sizeof(float));
    if (conv_is_phase_s2(K, S, P, H, W)) {
        conv_phase_backward(dinp, dweight, col, dout, inp, weight, N, C, H, W, OC);
        return;
    }
    ConvPlan p;
    conv_plan_init(&p, N, C, H, W, OC, K, S, P);
    conv_plan_bind(&p, col);
    p.inp = inp;
    p.dout = dout;
    p.dinp = dinp;
    if (dinp) gt_pack_a(p.ap, weight, p.KC, OC, 1, (size_t)p.KC); /* W^T: (KC x OC) */
    int T = par_threads();
    par_run(T < p.nlanes ? T : p.nlanes, conv_backward_worker, &p);
    conv_add_lanes(dweight, p.lanes, p.lane_floats, p.nlanes, (size_t)OC * p.KC);
}

void conv_backward(float *dinp, float *dweight, float *col, const float *dout, const float *inp,
                   const float *weight, int N, int C, int H, int W, int OC, int K, int S, int P,
                   int G)
{
    conv_backward_any(dinp, dweight, col, dout, inp, weight, N, C, H, W, OC, K, S, P, G, 0);
}

void conv_backward_set(float *dinp, float *dweight, float *col, const float *dout,
                       const float *inp, const float *weight, int N, int C, int H, int W, int OC,
                       int K, int S, int P, int G)
{
    conv_backward_any(dinp, dweight, col, dout, inp, weight, N, C, H, W, OC, K, S, P, G, 1);
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

/* dweight[oc, ic, kh, kw] += sum over (n, oh, ow) of dout[oc, n, oh, ow] * inp[c, n, ih, iw] and
 * dinp[c, n, ih, iw] += sum over (oc, kh, kw) of dout[oc, n, oh, ow] * weight[oc, ic, kh, kw],
 * with ih = oh*S-P+kh, iw = ow*S-P+kw inside the image and c = the group's channel ic. */
void conv_backward_ref(float *dinp, float *dweight, const float *dout, const float *inp,
                       const float *weight, int N, int C, int H, int W, int OC, int K, int S,
                       int P, int G)
{
    CHECK(G > 0 && C % G == 0 && OC % G == 0, "conv: C=%d, OC=%d not divisible by G=%d", C, OC, G);
    int OH = conv_out_size(H, K, S, P);
    int OW = conv_out_size(W, K, S, P);
    int Cg = C / G;
    int OCg = OC / G;
    for (int oc = 0; oc < OC; oc++) {
        int c0 = oc / OCg * Cg;
        for (int ic = 0; ic < Cg; ic++) {
            for (int kh = 0; kh < K; kh++) {
                for (int kw = 0; kw < K; kw++) {
                    double acc = 0.0;
                    for (int n = 0; n < N; n++) {
                        for (int oh = 0; oh < OH; oh++) {
                            int ih = oh * S - P + kh;
                            if (ih < 0 || ih >= H) continue;
                            for (int ow = 0; ow < OW; ow++) {
                                int iw = ow * S - P + kw;
                                if (iw < 0 || iw >= W) continue;
                                acc += (double)dout[(((size_t)oc * N + n) * OH + oh) * OW + ow] *
                                       inp[(((size_t)(c0 + ic) * N + n) * H + ih) * W + iw];
                            }
                        }
                    }
                    dweight[(((size_t)oc * Cg + ic) * K + kh) * K + kw] += (float)acc;
                }
            }
        }
    }
    if (!dinp) return;
    for (int c = 0; c < C; c++) {
        int g = c / Cg, ic = c % Cg;
        for (int n = 0; n < N; n++) {
            for (int ih = 0; ih < H; ih++) {
                for (int iw = 0; iw < W; iw++) {
                    double acc = 0.0;
                    for (int oc = g * OCg; oc < (g + 1) * OCg; oc++) {
                        for (int kh = 0; kh < K; kh++) {
                            int t = ih + P - kh; /* = oh*S */
                            if (t < 0 || t % S != 0 || t / S >= OH) continue;
                            for (int kw = 0; kw < K; kw++) {
                                int u = iw + P - kw;
                                if (u < 0 || u % S != 0 || u / S >= OW) continue;
                                acc += (double)dout[(((size_t)oc * N + n) * OH + t / S) * OW + u / S] *
                                       weight[(((size_t)oc * Cg + ic) * K + kh) * K + kw];
                            }
                        }
                    }
                    dinp[(((size_t)c * N + n) * H + ih) * W + iw] += (float)acc;
                }
            }
        }
    }
}
