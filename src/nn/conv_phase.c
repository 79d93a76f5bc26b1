/* Stride-2 3x3 convolutions by phase planes on the shifted grid, forward and backward, blocked over images and threads. */
#include "isa.h" /* first: renames this file's functions in per-ISA builds */
#include "conv_internal.h"
#include "gemm_tile.h"
#include "parallel.h"
#include "shift_plan.h"
#include "wino_tile.h"

#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

/*
 * Stride-2 3x3 convs (pad 1, even H and W: every downsampling conv of a ResNet): output
 * (oh, ow) reads input rows 2oh - 1, 2oh, 2oh + 1, so split the input into its four phase planes
 * x_ab[i][j] = x[2i + a][2j + b] (H/2 x W/2 each). Then row 2oh + kh - 1 is row
 * oh - 1 (kh = 0) or oh (kh = 2) of phase a = 1, or row oh of phase a = 0 (kh = 1), and the same
 * for columns: the conv is a stride-1 conv of the 4*C phase planes with taps at offsets -1 and 0,
 * one per (kh, kw), nine in all. On the shifted grid of the phase planes (ShiftPlan of 4*C
 * channels of OH x OW, whose shared padding supplies the zeros above and left) it runs like a
 * same conv, without im2col: the forward packs each tile's rows of (phase, channel, tap) from
 * the grids, the backward's dX reads them in place with each phase's tap list
 * (gt_tile_add_taps).
 */
/* The phase plan: a ShiftPlan of 4*C channels of (H/2) x (W/2) with taps up to one row and one
 * column away (sized as a 2x2 conv, whose padding and reach are the same), plus for the
 * backward dy transposed (3x3 dW) and a block's dX phase planes after the grids of a thread's
 * region, and packed weights for nine taps per channel in both directions. */
static void phase_plan_init(ShiftPlan *p, int N, int C, int H, int W, int OC)
{
    shift_plan_init(p, N, 4 * C, H / 2, W / 2, OC, 2, 1);
    size_t fwd = (size_t)(OC + GT_MR - 1) / GT_MR * GT_MR * 9 * C;
    size_t bwd = (size_t)(C + GT_MR - 1) / GT_MR * GT_MR * 9 * OC;
    size_t need = conv_round16(fwd > bwd ? fwd : bwd);
    if (p->packed < need) p->packed = need;
    p->voff = p->per_thread + conv_round16((size_t)p->ocp * p->ldt); /* the dX phase planes */
    p->pkoff = p->voff + conv_round16((size_t)p->C * p->nimg * p->HW);
    p->per_thread = p->pkoff + GT_GEMM_PACK;
}

long long conv_phase_workspace(int N, int C, int H, int W, int OC)
{
    ShiftPlan p;
    phase_plan_init(&p, N, C, H, W, OC);
    return (long long)shift_plan_floats(&p);
}

/* Phase ph = 2a + b: its taps (kh, kw) and their grid offsets (di*pitch + dj), in packing order. */
static int phase_taps(int ph, ptrdiff_t pitch, int *kh, int *kw, ptrdiff_t *off)
{
    static const int rows[2][2] = {{1, -1}, {0, 2}}, drow[2][2] = {{0, 0}, {-1, 0}};
    int a = ph / 2, b = ph % 2, na = a ? 2 : 1, nb = b ? 2 : 1, n = 0;
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++, n++) {
            kh[n] = rows[a][i], kw[n] = rows[b][j];
            off[n] = drow[a][i] * pitch + drow[b][j];
        }
    return n;
}

/* Panels of GT_MR filters over k = (phase, channel, tap) in phase_taps' order: nine taps per
 * channel, like gt_pack_a's C*9. */
static void phase_pack(float *ap, const float *weight, int OC, int C, ptrdiff_t pitch)
{
    size_t kdim = (size_t)C * 9;
    for (int i0 = 0; i0 < OC; i0 += GT_MR) {
        float *pa = ap + (size_t)i0 * kdim;
        size_t k = 0;
        for (int ph = 0; ph < 4; ph++) {
            int kh[4], kw[4];
            ptrdiff_t off[4];
            int nt = phase_taps(ph, pitch, kh, kw, off);
            for (int c = 0; c < C; c++)
                for (int t = 0; t < nt; t++, k++)
                    for (int r = 0; r < GT_MR; r++) {
                        size_t at = (((size_t)(i0 + r) * C + c) * 3 + kh[t]) * 3 + kw[t];
                        pa[k * GT_MR + r] = i0 + r < OC ? weight[at] : 0.0f;
                    }
        }
    }
}

/* Panels [lo, hi) of phase_pack: filters lo*GT_MR up to OC, at their panel's offset. */
static void phase_pack_range(void *ctx, int lo, int hi)
{
    const PackJob *j = ctx;
    int r0 = lo * GT_MR, r1 = hi * GT_MR < j->M ? hi * GT_MR : j->M;
    phase_pack(j->ap + (size_t)r0 * j->nc * 9, j->w + (size_t)r0 * j->nc * 9, r1 - r0, j->nc,
               j->pitch);
}

/* phase_pack, its panels spread over the engine's threads. */
static void phase_pack_par(float *ap, const float *weight, int OC, int C, ptrdiff_t pitch)
{
    PackJob j = {.ap = ap, .w = weight, .M = OC, .nc = C, .pitch = pitch};
    par_for((OC + GT_MR - 1) / GT_MR, (long long)OC * C * 9, phase_pack_range, &j);
}

/* The lowest n of GT_VL lanes (n <= GT_VL). */
static inline unsigned phase_low_lanes(int n) { return n >= 32 ? ~0u : (1u << n) - 1; }

/* One input row of 2*w2 floats split into its even columns, to e, and its odd ones, to o, each
 * followed by the one zero of the pad column. */
static inline void phase_split_row(float *e, float *o, const float *src, int w2)
{
    int k = 0;
    for (; k + GT_VL <= w2; k += GT_VL) {
        gt_vf a = gt_load(src + 2 * k), b = gt_load(src + 2 * k + GT_VL);
        gt_store(e + k, wn_evens(a, b));
        gt_store(o + k, wn_odds(a, b));
    }
    if (k < w2) {
        int left = 2 * (w2 - k); /* floats of the row from 2k on, fewer than 2*GT_VL */
        gt_vf a = gt_load_lanes(src + 2 * k, phase_low_lanes(left < GT_VL ? left : GT_VL));
        gt_vf b = left > GT_VL ? gt_load_lanes(src + 2 * k + GT_VL, phase_low_lanes(left - GT_VL))
                               : (gt_vf){0};
        unsigned m = phase_low_lanes(w2 - k);
        gt_store_lanes(e + k, wn_evens(a, b), m);
        gt_store_lanes(o + k, wn_odds(a, b), m);
    }
    e[w2] = 0.0f, o[w2] = 0.0f;
}

/* The inverse, accumulating: dst[2j] += e[j] and dst[2j + 1] += o[j] for j < w2 (a row of dX
 * put back together from its two column phases). */
static inline void phase_merge_row_acc(float *dst, const float *e, const float *o, int w2)
{
    gt_vi lo, hi; /* zip: e0 o0 e1 o1 ... of the low, then the high halves */
    for (int l = 0; l < GT_VL; l++) {
        lo[l] = l / 2 + (l & 1) * GT_VL;
        hi[l] = GT_VL / 2 + l / 2 + (l & 1) * GT_VL;
    }
    int k = 0;
    for (; k + GT_VL <= w2; k += GT_VL) {
        gt_vf ev = gt_load(e + k), ov = gt_load(o + k);
        float *d = dst + 2 * k;
        gt_store(d, gt_load(d) + gt_shuffle2(ev, ov, lo));
        gt_store(d + GT_VL, gt_load(d + GT_VL) + gt_shuffle2(ev, ov, hi));
    }
    if (k < w2) {
        unsigned m = phase_low_lanes(w2 - k);
        int left = 2 * (w2 - k);
        gt_vf ev = gt_load_lanes(e + k, m), ov = gt_load_lanes(o + k, m);
        float *d = dst + 2 * k;
        unsigned m0 = phase_low_lanes(left < GT_VL ? left : GT_VL);
        gt_store_lanes(d, gt_load_lanes(d, m0) + gt_shuffle2(ev, ov, lo), m0);
        if (left > GT_VL) {
            unsigned m1 = phase_low_lanes(left - GT_VL);
            gt_store_lanes(d + GT_VL, gt_load_lanes(d + GT_VL, m1) + gt_shuffle2(ev, ov, hi),
                           m1);
        }
    }
}

/* Phase grids of images [n0, n0+nn): channel ph*C + c of g is phase ph of input channel c,
 * in the shifted grid's layout (rows of pitch = W/2 + 1; every float that is not a pixel is
 * written 0, so each float of a channel's cs is written once). Input rows 2i and 2i + 1 give
 * row i of phases (0, 0), (0, 1) and (1, 0), (1, 1) by even/odd shuffles. */
static void phase_fill_grid(const ShiftPlan *p, float *g, const float *x, int n0, int nn)
{
    int C = p->C / 4, H = 2 * p->H, W = 2 * p->W;
    size_t chan = (size_t)p->N * H * W;
    size_t used = (size_t)p->qs + (size_t)nn * (p->H + p->P) * p->pitch; /* P = 1 */
    for (int c = 0; c < C; c++) {
        float *gp[4];
        for (int ph = 0; ph < 4; ph++) {
            gp[ph] = g + (size_t)(ph * C + c) * p->cs;
            memset(gp[ph], 0, (size_t)p->qs * sizeof(float));
            memset(gp[ph] + used, 0, (p->cs - used) * sizeof(float));
        }
        const float *xc = x + (size_t)c * chan + (size_t)n0 * H * W;
        size_t q = (size_t)p->qs;
        for (int n = 0; n < nn; n++) {
            for (int i = 0; i < p->H; i++, q += (size_t)p->pitch) {
                const float *r0 = xc + ((size_t)n * H + 2 * i) * W;
                phase_split_row(gp[0] + q, gp[1] + q, r0, p->W);
                phase_split_row(gp[2] + q, gp[3] + q, r0 + W, p->W);
            }
            for (int ph = 0; ph < 4; ph++) /* the row below the image */
                memset(gp[ph] + q, 0, (size_t)p->pitch * sizeof(float));
            q += (size_t)p->pitch;
        }
    }
}

/* Rows [k0, k1) of the forward's B (k = (phase, channel, tap) in phase_pack's order) at the
 * tile of centres j, packed: row k - k0 to d + (k - k0)*GT_NR. g points at the block grid's first
 * centre. */
static void phase_pack_tile(const ShiftPlan *p, float *d, const float *g, int j, size_t k0,
                            size_t k1, const int *nt, ptrdiff_t off[4][4])
{
    int C = p->C / 4;
    size_t k = 0;
    for (int ph = 0; ph < 4 && k < k1; ph++) {
        size_t kend = k + (size_t)C * nt[ph];
        if (kend <= k0) {
            k = kend;
            continue;
        }
        int c = k0 > k ? (int)((k0 - k) / nt[ph]) : 0;
        for (k += (size_t)c * nt[ph]; c < C && k < k1; c++) {
            const float *src = g + (size_t)(ph * C + c) * p->cs + j;
            for (int t = 0; t < nt[ph]; t++, k++) {
                if (k < k0 || k >= k1) continue;
                float *dk = d + (k - k0) * GT_NR;
                for (int v = 0; v < GT_NV; v++)
                    gt_store(dk + v * GT_VL, gt_load(src + off[ph][t] + v * GT_VL));
            }
        }
        k = kend;
    }
}

/*
 * Per block: the phase grids, then the GEMM over the 9*C rows of (phase, channel, tap) as
 * gemm_tile.h's gt_gemm does it: chunks of tiles whose B rows are packed (read in place the
 * rows lie a grid channel apart) and every panel of filters over the whole chunk, so a panel's
 * weights are read once a chunk, not once a tile. A chunk holds at least two tiles: when the
 * rows of two exceed the buffer the reduction goes in slices, each but the first added to the
 * outputs and the last through the epilogue. At 14x14 with 512 channels (ResNet-50's
 * layer4.0.conv2: 9.4 MB of weights) this ran 2.5x faster than one tile at a time.
 */
static void conv_phase_forward_worker(void *ctx, int t, int T)
{
    (void)T;
    ShiftPlan *p = ctx;
    float *gx = p->work + (size_t)t * p->per_thread;
    float *pk = gx + p->pkoff;
    int C = p->C / 4;
    size_t chan = (size_t)p->N * p->HW, kdim = (size_t)C * 9;
    ptrdiff_t off[4][4];
    int nt[4], kh[4], kw[4];
    for (int ph = 0; ph < 4; ph++) nt[ph] = phase_taps(ph, p->pitch, kh, kw, off[ph]);
    const size_t kc = gt_slice_rows(kdim, 2, GT_GEMM_PACK), tile_floats = kc * GT_NR;
    const int chunk = (int)(GT_GEMM_PACK / tile_floats) * GT_NR;
    for (int b; (b = atomic_fetch_add(&p->next, 1)) < p->nblk;) {
        int n0 = b * p->nimg;
        int nn = p->N - n0 < p->nimg ? p->N - n0 : p->nimg;
        int ncols = shift_ncols(p, nn);
        phase_fill_grid(p, gx, p->inp, n0, nn);
        const float *g = gx + p->qs;
        float *d0 = p->out + (size_t)n0 * p->HW;
        for (int c0 = 0; c0 < ncols; c0 += chunk) {
            int c1 = c0 + chunk < ncols ? c0 + chunk : ncols;
            for (size_t k0 = 0; k0 < kdim; k0 += kc) {
                size_t k1 = k0 + kc < kdim ? k0 + kc : kdim;
                const int add = k0 > 0;
                const ConvEpilogue *ep = k1 == kdim ? p->ep : NULL;
                for (int j = c0; j < c1; j += GT_NR)
                    phase_pack_tile(p, pk + (size_t)(j - c0) / GT_NR * tile_floats, g, j, k0, k1,
                                    nt, off);
                for (int i = 0; i < p->OC; i += GT_MR) {
                    const float *ak = p->ap + (size_t)i * kdim + k0 * GT_MR;
                    for (int j = c0; j < c1; j += GT_NR) {
                        GtRows rows = {pk + (size_t)(j - c0) / GT_NR * tile_floats, GT_NR, 0, 0, 1};
                        gt_vf acc[GT_MR][GT_NV];
                        gt_tile_acc(acc, (int)(k1 - k0), ak, &rows, 0);
                        for (int v = 0; v < GT_NV; v++)
                            for (int r = 0; r < GT_MR && i + r < p->OC; r++)
                                shift_store(p, d0 + (size_t)(i + r) * chan, acc[r][v],
                                            j / GT_VL + v, ncols, i + r, add, ep);
                    }
                }
            }
        }
    }
}

void conv_phase_forward(float *out, float *ws, const float *inp, const float *weight, int N, int C,
                        int H, int W, int OC, const ConvEpilogue *ep)
{
    ShiftPlan p;
    phase_plan_init(&p, N, C, H, W, OC);
    shift_plan_start(&p, ws);
    p.ep = ep;
    p.out = out;
    p.inp = inp;
    phase_pack_par(p.ap, weight, OC, C, p.pitch);
    int T = par_threads();
    par_run(T < p.nblk ? T : p.nblk, conv_phase_forward_worker, &p);
}

/* ap = per phase, panels of GT_MR input channels over k = (filter, tap) in phase_taps' order:
 * the data gradient's A (phases one after another, in phase order). */
static void phase_pack_t(float *ap, const float *weight, int OC, int C, ptrdiff_t pitch)
{
    size_t cp = (size_t)(C + GT_MR - 1) / GT_MR * GT_MR;
    for (int ph = 0; ph < 4; ph++) {
        int kh[4], kw[4];
        ptrdiff_t off[4];
        int nt = phase_taps(ph, pitch, kh, kw, off);
        for (int i0 = 0; i0 < C; i0 += GT_MR) {
            float *pa = ap + (size_t)i0 * OC * nt;
            for (int oc = 0; oc < OC; oc++)
                for (int t = 0; t < nt; t++)
                    for (int r = 0; r < GT_MR; r++) {
                        size_t at = (((size_t)oc * C + i0 + r) * 3 + kh[t]) * 3 + kw[t];
                        pa[((size_t)oc * nt + t) * GT_MR + r] = i0 + r < C ? weight[at] : 0.0f;
                    }
        }
        ap += cp * OC * nt;
    }
}

/*
 * One block of the stride-2 backward. dW: tap (kh, kw) of channel c reads phase plane ph of c at
 * its offset, so it is the 3x3 outer-product kernel with a tap table across the phase grids.
 * dX: the adjoint of the forward scatters dy[q] * w to phase pixel q + off, i.e. each phase
 * plane gathers dy at q - off (offsets 0 and +1 row / column, which the grid's shared padding
 * makes zero past the edges): a shifted-grid GEMM per phase into the block's dX phase planes,
 * which are then added into dinp at their pixels (2i + a, 2j + b).
 */
static void conv_phase_backward_block(const ShiftPlan *p, float *gx, float *gdy, float *dw, int b)
{
    int C = p->C / 4, H = 2 * p->H, W = 2 * p->W;
    int n0 = b * p->nimg;
    int nn = p->N - n0 < p->nimg ? p->N - n0 : p->nimg;
    int ncols = shift_ncols(p, nn);
    float *tmp = gdy + (size_t)p->OC * p->cs, *stage = gx + p->voff;
    ptrdiff_t off[4][4], toff[9];
    int nt[4], kh[4], kw[4];
    for (int ph = 0; ph < 4; ph++) {
        nt[ph] = phase_taps(ph, p->pitch, kh, kw, off[ph]);
        for (int t = 0; t < nt[ph]; t++)
            toff[kh[t] * 3 + kw[t]] = (ptrdiff_t)ph * C * p->cs + off[ph][t];
    }
    phase_fill_grid(p, gx, p->inp, n0, nn);
    shift_fill_grid(p, gdy, p->dout, p->OC, n0, nn);
    conv_transpose_rows(tmp, p->ocp, gdy + p->qs, p->cs, p->OC, ncols);
    gt_dw_acc(dw, (size_t)9 * C, p->OC, C, ncols, tmp, p->ocp, gx + p->qs, p->cs, toff, 9);
    if (!p->dinp) return;
    size_t cp = (size_t)(C + GT_MR - 1) / GT_MR * GT_MR, bpix = (size_t)p->nimg * p->HW;
    const float *ap = p->ap;
    for (int ph = 0; ph < 4; ph++) {
        ptrdiff_t back[4];
        for (int t = 0; t < nt[ph]; t++) back[t] = -off[ph][t];
        for (int j = 0; j < ncols; j += GT_NR) {
            for (int i = 0; i < C; i += GT_MR) {
                gt_vf acc[GT_MR][GT_NV];
                for (int r = 0; r < GT_MR; r++)
                    for (int v = 0; v < GT_NV; v++) acc[r][v] = (gt_vf){0};
                gt_tile_add_taps(acc, p->OC, ap + (size_t)i * p->OC * nt[ph], gdy + p->qs, p->cs,
                                 back, nt[ph], (size_t)j);
                for (int v = 0; v < GT_NV; v++)
                    for (int r = 0; r < GT_MR && i + r < C; r++)
                        shift_store(p, stage + (size_t)(ph * C + i + r) * bpix, acc[r][v],
                                    j / GT_VL + v, ncols, i + r, 0, NULL);
            }
        }
        ap += cp * p->OC * nt[ph];
    }
    size_t chan = (size_t)p->N * H * W, plane = (size_t)C * bpix;
    for (int c = 0; c < C; c++) {
        const float *sc = stage + (size_t)c * bpix;
        float *dc = p->dinp + (size_t)c * chan + (size_t)n0 * H * W;
        for (int n = 0; n < nn; n++)
            for (int i = 0; i < p->H; i++) {
                const float *src = sc + ((size_t)n * p->H + i) * p->W;
                float *dst = dc + ((size_t)n * H + 2 * i) * W;
                phase_merge_row_acc(dst, src, src + plane, p->W);
                phase_merge_row_acc(dst + W, src + 2 * plane, src + 3 * plane, p->W);
            }
    }
}

static void conv_phase_backward_worker(void *ctx, int t, int T)
{
    (void)T;
    ShiftPlan *p = ctx;
    float *gx = p->work + (size_t)t * p->per_thread;
    float *gdy = gx + (size_t)p->C * p->cs;
    size_t nw = (size_t)p->OC * 9 * (p->C / 4);
    for (int l; (l = atomic_fetch_add(&p->next, 1)) < p->nlanes;) {
        float *dw = p->lanes + (size_t)l * p->lane_floats;
        memset(dw, 0, nw * sizeof(float));
        for (int b = l; b < p->nblk; b += p->nlanes) conv_phase_backward_block(p, gx, gdy, dw, b);
    }
}

void conv_phase_backward(float *dinp, float *dweight, float *ws, const float *dout,
                         const float *inp, const float *weight, int N, int C, int H, int W, int OC)
{
    ShiftPlan p;
    phase_plan_init(&p, N, C, H, W, OC);
    shift_plan_start(&p, ws);
    p.inp = inp;
    p.dout = dout;
    p.dinp = dinp;
    if (dinp) phase_pack_t(p.ap, weight, OC, C, p.pitch);
    int T = par_threads();
    par_run(T < p.nlanes ? T : p.nlanes, conv_phase_backward_worker, &p);
    conv_add_lanes(dweight, p.lanes, p.lane_floats, p.nlanes, (size_t)OC * 9 * C);
}
