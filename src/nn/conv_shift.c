/* "Same" stride-1 convolutions on the shifted grid (row-wise Winograd F(4,3) for 3x3, the direct shifted GEMM otherwise), forward and backward, blocked over images and threads. */
#include "isa.h" /* first: renames this file's functions in per-ISA builds */
#include "conv_internal.h"
#include "gemm_tile.h"
#include "parallel.h"
#include "shift_plan.h"
#include "wino_tile.h"

#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

long long conv_shift_workspace(int N, int C, int H, int W, int OC, int K, int P)
{
    ShiftPlan p;
    shift_plan_init(&p, N, C, H, W, OC, K, P);
    return (long long)shift_plan_floats(&p);
}

/*
 * A block's GEMM dst_rows (M x centres) = A (packed panels, M x nc*K*K) x the shifted grid
 * rows, every tile stored from its registers straight to the real pixels of dst (channels of
 * N*HW floats, from image n0): = through the plan's epilogue if any (forward), or += (acc, the
 * backward's dX). No staging buffer, no second pass over the outputs.
 */
static void shift_gemm_out(const ShiftPlan *p, int M, int nc, const float *ap, const GtRows *rows,
                           float *dst, int n0, int ncols, int acc)
{
    size_t chan = (size_t)p->N * p->HW, kdim = (size_t)nc * p->K * p->K;
    float *d0 = dst + (size_t)n0 * p->HW;
    for (int j = 0; j < ncols; j += GT_NR) {
        for (int i = 0; i < M; i += GT_MR) {
            gt_vf t[GT_MR][GT_NV];
            gt_tile_acc(t, nc, ap + (size_t)i * kdim, rows, (size_t)j);
            for (int v = 0; v < GT_NV; v++)
                for (int r = 0; r < GT_MR && i + r < M; r++)
                    shift_store(p, d0 + (size_t)(i + r) * chan, t[r][v], j / GT_VL + v, ncols,
                                i + r, acc, acc ? NULL : p->ep);
        }
    }
}

/* The Winograd form of shift_gemm_out: ap holds wn_pack_u's panels (M rows over nc channels)
 * and v the block's V planes of those nc channels. A tile covers 4*WN_NG centres (WN_NG groups)
 * of WN_R rows: six passes, one per M_j, then the output transform and shift_store's stores. */
static void wino_gemm_out(const ShiftPlan *p, int M, int nc, const float *ap, const float *v,
                          float *dst, int n0, int ncols, int acc)
{
    size_t chan = (size_t)p->N * p->HW;
    float *d0 = dst + (size_t)n0 * p->HW;
    for (int j = 0; j < ncols; j += 4 * WN_NG) {
        for (int i = 0; i < M; i += WN_R) {
            const float *pa = ap + (size_t)i * nc * 3 * WN_J;
            gt_vf m[WN_R][WN_G][WN_J];
            for (int jj = 0; jj < WN_J; jj++) {
                gt_vf t[WN_R][WN_G];
                wn_tile_acc(t, nc, pa, v + jj * p->hcs, p->vcs, p->hp, (size_t)j / 4, jj);
                for (int r = 0; r < WN_R; r++)
                    for (int g = 0; g < WN_G; g++) m[r][g][jj] = t[r][g];
            }
            for (int r = 0; r < WN_R && i + r < M; r++) {
                float *drow = d0 + (size_t)(i + r) * chan;
                for (int g = 0; g < WN_G; g++) {
                    gt_vf out[4];
                    wn_output(m[r][g], out);
                    for (int k = 0; k < 4; k++) /* centre vectors of groups [g*GT_VL, +GT_VL) */
                        shift_store(p, drow, out[k], j / GT_VL + 4 * g + k, ncols, i + r, acc,
                                    acc ? NULL : p->ep);
                }
            }
        }
    }
}

/* The forward of a 3x3 conv by Winograd, per block: the V planes of the block's x built from
 * the tensor through the grid map (no grid), then the six GEMMs and the output transform. */
static void wino_forward_worker(void *ctx, int t, int T)
{
    (void)T;
    ShiftPlan *p = ctx;
    float *v = p->work + (size_t)t * p->per_thread + p->voff;
    for (int b; (b = atomic_fetch_add(&p->next, 1)) < p->nblk;) {
        int n0 = b * p->nimg;
        int nn = p->N - n0 < p->nimg ? p->N - n0 : p->nimg;
        wn_transform_lanes(v, p->vcs, p->hcs, p->inp + (size_t)n0 * p->HW, (size_t)p->N * p->HW,
                           nn * p->HW, p->gmask, p->goff, p->rmask, p->C, p->nu);
        wino_gemm_out(p, p->OC, p->C, p->ap, v, p->out, n0, shift_ncols(p, nn), 0);
    }
}

static void conv_shift_forward_worker(void *ctx, int t, int T)
{
    (void)T;
    ShiftPlan *p = ctx;
    float *gx = p->work + (size_t)t * p->per_thread;
    ptrdiff_t back = (ptrdiff_t)p->P * p->pitch + p->P; /* offset of tap (0, 0) */
    for (int b; (b = atomic_fetch_add(&p->next, 1)) < p->nblk;) {
        int n0 = b * p->nimg;
        int nn = p->N - n0 < p->nimg ? p->N - n0 : p->nimg;
        shift_fill_grid(p, gx, p->inp, p->C, n0, nn);
        /* M = OC filters, N = centres, K = C*K*K taps read from the shifted grid. */
        GtRows rows = {gx + p->qs - back, p->cs, p->pitch, 1, p->K};
        shift_gemm_out(p, p->OC, p->C, p->ap, &rows, p->out, n0, shift_ncols(p, nn), 0);
    }
}
/* conv_transpose_rows of the grid rows that shift_fill_grid would build from src (channels of
 * N*HW floats) for the block of images from n0 with ncols centres, read from src itself through
 * the lane map: t[l*ld + r] for centres l < ncols rounded up to GT_VL and r < ld. */
static void shift_transpose_lanes(const ShiftPlan *p, float *t, int ld, const float *src,
                                  int rows, int n0, int ncols)
{
    size_t chan = (size_t)p->N * p->HW;
    const float *s0 = src + (size_t)n0 * p->HW;
    for (int s = 0; s * GT_VL < ncols; s++) {
        unsigned m = shift_block_mask(p, s, ncols);
        for (int r0 = 0; r0 < ld; r0 += GT_VL) {
            gt_vf b[GT_VL];
            for (int i = 0; i < GT_VL; i++)
                b[i] = r0 + i < rows ? gt_load_lanes(s0 + (size_t)(r0 + i) * chan + p->loff[s], m)
                                     : (gt_vf){0};
            gt_transpose(b);
            for (int i = 0; i < GT_VL; i++)
                gt_store(t + (size_t)(s * GT_VL + i) * ld + r0, b[i]);
        }
    }
}

/* One block of the backward of a same conv other than 3x3: dw += its dW and, when dinp is set,
 * dinp += its dX. */
static void conv_shift_backward_block(const ShiftPlan *p, float *gx, float *gdy, float *dw, int b)
{
    ptrdiff_t back = (ptrdiff_t)p->P * p->pitch + p->P;
    int n0 = b * p->nimg;
    int nn = p->N - n0 < p->nimg ? p->N - n0 : p->nimg;
    int ncols = shift_ncols(p, nn);
    int lpad = (ncols + GT_VL - 1) / GT_VL * GT_VL;
    shift_fill_grid(p, gx, p->inp, p->C, n0, nn);
    /* dW (OC x KC) += dy grid (OC x centres) x (shifted x grid)^T; dy is 0 off real pixels. */
    shift_fill_grid(p, gdy, p->dout, p->OC, n0, nn);
    {
        GtRows xrows = {gx + p->qs - back, p->cs, p->pitch, 1, p->K};
        gt_gemm_abt_acc(p->OC, p->KC, lpad, gdy + p->qs, p->cs, &xrows, dw, p->KC);
    }
    if (!p->dinp) return;
    /* dX (C x centres) = flipped W^T (C x OC*K*K) x shifted dy grid. */
    GtRows dyrows = {gdy + p->qs - back, p->cs, p->pitch, 1, p->K};
    shift_gemm_out(p, p->C, p->OC, p->ap, &dyrows, p->dinp, n0, ncols, !p->dx_set);
}

static void conv_shift_backward_worker(void *ctx, int t, int T)
{
    (void)T;
    ShiftPlan *p = ctx;
    float *gx = p->work + (size_t)t * p->per_thread;
    float *gdy = gx + (size_t)p->C * p->cs;
    for (int l; (l = atomic_fetch_add(&p->next, 1)) < p->nlanes;) {
        float *dw = p->lanes + (size_t)l * p->lane_floats;
        memset(dw, 0, p->lane_floats * sizeof(float));
        for (int b = l; b < p->nblk; b += p->nlanes) conv_shift_backward_block(p, gx, gdy, dw, b);
    }
}

/* One block of a 3x3 conv's backward, by Winograd: the six S_j of its dW into the lane sw, from
 * the V planes of x and the a_j of dy, then, when dinp is set, its dX from the V planes of dy. */
static void wino_backward_block(const ShiftPlan *p, float *region, float *sw, int b)
{
    int n0 = b * p->nimg;
    int nn = p->N - n0 < p->nimg ? p->N - n0 : p->nimg;
    int ncols = shift_ncols(p, nn), ngr = (ncols + 3) / 4;
    size_t chan = (size_t)p->N * p->HW, ns = (size_t)p->OC * p->C * 3;
    float *v = region + p->voff, *dyt = region + p->dyt_off, *dya = region + p->dya_off;
    wn_transform_lanes(v, p->vcs, p->hcs, p->inp + (size_t)n0 * p->HW, chan, nn * p->HW, p->gmask,
                       p->goff, p->rmask, p->C, p->nu);
    shift_transpose_lanes(p, dyt, p->ocp, p->dout, p->OC, n0, ncols);
    wn_transform_dy(dya, p->dya_plane, dyt, p->ocp, ngr);
    const ptrdiff_t toff[3] = {0, p->hp, 2 * (ptrdiff_t)p->hp};
    for (int j = 0; j < WN_J; j++)
        gt_dw_acc(sw + j * ns, (size_t)p->C * 3, p->OC, p->C, ngr, dya + j * p->dya_plane,
                  p->ocp, v + j * p->hcs, p->vcs, toff, 3);
    if (!p->dinp) return;
    wn_transform_lanes(v, p->vcs, p->hcs, p->dout + (size_t)n0 * p->HW, chan, nn * p->HW,
                       p->gmask, p->goff, p->rmask, p->OC, p->nu);
    wino_gemm_out(p, p->C, p->OC, p->ap, v, p->dinp, n0, ncols, !p->dx_set);
}

static void wino_backward_worker(void *ctx, int t, int T)
{
    (void)T;
    ShiftPlan *p = ctx;
    float *region = p->work + (size_t)t * p->per_thread;
    for (int l; (l = atomic_fetch_add(&p->next, 1)) < p->nlanes;) {
        float *sw = p->lanes + (size_t)l * p->lane_floats;
        memset(sw, 0, p->lane_floats * sizeof(float));
        for (int b = l; b < p->nblk; b += p->nlanes) wino_backward_block(p, region, sw, b);
    }
}
/* Panels [lo, hi) of wn_pack_u: rows lo*WN_R up to M, at their panel's offset. */
static void wn_pack_range(void *ctx, int lo, int hi)
{
    const PackJob *j = ctx;
    int r0 = lo * WN_R, r1 = hi * WN_R < j->M ? hi * WN_R : j->M;
    wn_pack_u(j->ap + (size_t)r0 * j->nc * 3 * WN_J, j->w + (size_t)r0 * j->rs, r1 - r0, j->nc,
              j->rs, j->cs, j->flip);
}

/* wn_pack_u, its panels spread over the engine's threads. */
static void wn_pack_u_par(float *ap, const float *w, int M, int nc, size_t rs, size_t cs, int flip)
{
    PackJob j = {.ap = ap, .w = w, .M = M, .nc = nc, .flip = flip, .rs = rs, .cs = cs};
    par_for((M + WN_R - 1) / WN_R, (long long)M * nc * 3 * WN_J, wn_pack_range, &j);
}

/* ap = panels of A'(c, (oc, kh, kw)) = W[oc, c, K-1-kh, K-1-kw], as gt_pack_a lays them out. */
static void conv_pack_flipped(float *ap, const float *weight, int C, int OC, int K)
{
    int KK = K * K;
    size_t kdim = (size_t)OC * KK;
    for (int i0 = 0; i0 < C; i0 += GT_MR) {
        float *pa = ap + (size_t)i0 * kdim;
        for (size_t k = 0; k < kdim; k++) {
            int oc = (int)(k / KK), q = (int)(k % KK);
            int kh = K - 1 - q / K, kw = K - 1 - q % K;
            for (int r = 0; r < GT_MR; r++) {
                int c = i0 + r;
                pa[k * GT_MR + r] = c < C ? weight[(((size_t)oc * C + c) * K + kh) * K + kw] : 0.0f;
            }
        }
    }
}

void conv_shift_forward(float *out, float *ws, const float *inp, const float *weight, int N, int C,
                        int H, int W, int OC, int K, int P, const ConvEpilogue *ep)
{
    ShiftPlan p;
    shift_plan_init(&p, N, C, H, W, OC, K, P);
    shift_plan_start(&p, ws);
    p.ep = ep;
    p.out = out;
    p.inp = inp;
    if (p.wino)
        wn_pack_u_par(p.ap, weight, OC, C, (size_t)p.KC, 9, 0);
    else
        gt_pack_a(p.ap, weight, OC, p.KC, (size_t)p.KC, 1);
    int T = par_threads();
    par_run(T < p.nblk ? T : p.nblk, p.wino ? wino_forward_worker : conv_shift_forward_worker, &p);
}

void conv_shift_backward(float *dinp, float *dweight, float *ws, const float *dout,
                         const float *inp, const float *weight, int N, int C, int H, int W, int OC,
                         int K, int P, int set)
{
    ShiftPlan p;
    shift_plan_init(&p, N, C, H, W, OC, K, P);
    shift_plan_start(&p, ws);
    p.inp = inp;
    p.dout = dout;
    p.dinp = dinp;
    p.dx_set = set; /* every pixel of dinp is stored exactly once, so no zeroing is needed */
    if (dinp && p.wino)
        wn_pack_u_par(p.ap, weight, C, OC, 9, (size_t)p.KC, 1);
    else if (dinp)
        conv_pack_flipped(p.ap, weight, C, OC, K);
    int T = par_threads();
    if (!p.wino) {
        par_run(T < p.nlanes ? T : p.nlanes, conv_shift_backward_worker, &p);
        conv_add_lanes(dweight, p.lanes, p.lane_floats, p.nlanes, (size_t)OC * p.KC);
        return;
    }
    par_run(T < p.nlanes ? T : p.nlanes, wino_backward_worker, &p);
    /* The lanes' S_j, summed in lane order, then transformed into dW. */
    conv_sum_lanes(p.lanes, p.lane_floats, p.nlanes);
    wn_dw_combine(dweight, p.lanes, OC, C);
}
