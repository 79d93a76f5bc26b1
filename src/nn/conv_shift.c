/* Shifted-grid convolutions: "same" stride-1 convs (row-wise Winograd F(4,3) for 3x3) and stride-2 3x3 convs by phase planes, blocked over images and threads. */
#include "conv_internal.h"
#include "gemm_tile.h"
#include "parallel.h"
#include "wino_tile.h"

#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

/*
 * "Same" stride-1 convolutions (odd K, P = K/2: every 3x3 pad-1 conv of a ResNet) skip im2col.
 * A block of nimg images is copied into a zero-padded grid per channel: P zero rows, then per
 * image its H rows followed by P zero rows, each row being P zeros and then the W pixels
 * (pitch W + P; a row's right padding is the next row's left padding). In that grid, tap
 * (kh, kw) of the output centred at q reads q + (kh-P)*pitch + (kw-P), so the im2col row of a
 * tap is the grid itself shifted by a constant: the GEMM reads its B rows straight from the
 * grid (GtRows {grid, cs, pitch, 1, K}). Outputs are computed at every centre from the first
 * pixel to the last, including the few padding positions in between, and only real pixels are
 * stored: (H+P)/H * (W+P)/W more FLOPs (7% at 28x28, 31% at 7x7) for no im2col at all. Grid
 * fills and output stores move whole vectors, with the padding lanes inserted and removed by
 * expand-loads and compress-stores (shift_lane_map).
 * Backward data is the same kind of conv of the padded dout grid (whose padding is zero) with
 * the filters transposed and flipped, and dW dots the dout grid with the shifted input grid.
 * 3x3 convs run forward, backward data and dW by row-wise Winograd F(4,3) (wino_tile.h) on the
 * same grid geometry, with the pitch W when W is a multiple of 4 (no padding column: the
 * transform zeroes what would cross a row end) and else W + 1 rounded up to a multiple of 4
 * (one more padding column at 14x14: 16 centres a row instead of 15): forward and dX are GEMMs
 * of transformed rows, one per V plane, read at the three row shifts, then the output transform
 * before the stores; dW is six outer-product reductions of the V planes of x with the
 * transformed dy (gemm_tile.h's gt_dw_acc). The V planes are built from the tensors through a
 * second lane map (shift_grid_map) and dy is transposed from the tensor through the lane map:
 * no grid is built.
 */

typedef struct {
    int N, C, H, W, OC, K, P, KC, HW;
    int nimg, nblk;
    int pitch, qs;     /* grid row pitch; grid index of the first image's first pixel */
    size_t cs;         /* floats per channel of a block's grid (with zero slack after it) */
    size_t ldt;        /* a full block's centres rounded up to whole tiles */
    size_t packed, map_floats, per_thread, lane_floats;
    int ocp;           /* OC rounded up to GT_VL: the row length of the transposed dy (3x3 dW) */
    int wino;          /* 3x3: forward, dX and dW by row-wise Winograd F(4,3) (wino_tile.h) */
    int tight;         /* Winograd with W % 4 == 0: the grid has no padding column (pitch W),
                        * the transform zeroes the taps that would read across a row end */
    int hp, nu;        /* Winograd: groups per grid row; groups per V plane that tiles read */
    size_t hcs, vcs;   /* Winograd: floats per V plane, per channel's WN_J planes */
    size_t voff;       /* offset in a thread region of the V planes (Winograd: 0, they come
                        * first) or of the dX phase planes (stride-2 plans) */
    size_t dyt_off, dya_off, dya_plane; /* Winograd dW: dy transposed, its a_j planes */
    int nlanes;
    atomic_int next;   /* the next block (forward) or dW lane (backward) to take */
    float *ap, *lanes, *work;
    unsigned *lmask;   /* the lane map (shift_lane_map): ldt/GT_VL masks, then as many offsets */
    int *loff;
    int ngv;           /* Winograd: grid vectors the fused transform reads */
    unsigned *gmask;   /* Winograd: the grid map (shift_grid_map): ngv masks, then offsets */
    int *goff;
    unsigned *rmask;   /* tight Winograd: per GT_VL groups, the row starts and the row ends;
                        * NULL otherwise */
    float *out;
    const float *inp, *dout;
    float *dinp;
    const ConvEpilogue *ep; /* forward: eval BN (+ residual) (+ ReLU) on the way out, or NULL */
    int dx_set;        /* backward: dinp = dX instead of dinp += dX */
} ShiftPlan;

enum { SHIFT_BLOCK_FLOATS = 3 << 16 }; /* target size of a block's input + output grids */

static void shift_plan_geometry(ShiftPlan *p, int nimg)
{
    p->nimg = nimg;
    p->nblk = (p->N + nimg - 1) / nimg;
    /* Winograd groups grid positions 4u .. 4u + 3, so a grid row must hold whole groups. When W
     * does, the row needs no padding column either: the transform supplies those zeros. */
    p->pitch = p->tight ? p->W : p->wino ? (p->W + p->P + 3) / 4 * 4 : p->W + p->P;
    p->qs = p->P * p->pitch + p->P;
    size_t grid_rows = (size_t)nimg * (p->H + p->P) + p->P;
    /* Reads reach at most P + GT_NR floats past the grid (see conv_shift_forward_worker). */
    p->cs = conv_round16(grid_rows * p->pitch + p->P + GT_NR);
    size_t ncols = (size_t)((nimg - 1) * (p->H + p->P) + p->H - 1) * p->pitch + p->W;
    size_t unit = p->wino ? 4 * WN_NG : GT_NR; /* centres per tile */
    p->ldt = (ncols + unit - 1) / unit * unit;
    if (p->wino) {
        /* Tiles read groups m + kh*hp for m < ldt/4 and kh < 3. The V planes are built from
         * the tensors through the grid map (wn_transform_lanes), never from a grid. */
        p->hp = p->pitch / 4;
        p->nu = (int)((p->ldt / 4 + 2 * (size_t)p->hp + GT_VL - 1) / GT_VL * GT_VL);
        p->hcs = conv_round16((size_t)p->nu);
        p->vcs = WN_J * p->hcs;
    }
}

/* A plan for a same conv (3x3: a Winograd plan), or with K = 2 the phase plan's base. */
static void shift_plan_init(ShiftPlan *p, int N, int C, int H, int W, int OC, int K, int P)
{
    memset(p, 0, sizeof *p);
    p->N = N, p->C = C, p->H = H, p->W = W, p->OC = OC, p->K = K, p->P = P;
    p->KC = C * K * K;
    p->HW = H * W;
    p->wino = K == 3;
    p->tight = p->wino && W % 4 == 0;
    long long per_img = (long long)(C + OC) * (H + P) * (W + P);
    long long cap = SHIFT_BLOCK_FLOATS / (per_img > 0 ? per_img : 1);
    /* Blocks of equal size, and an even number of them when there are several: threads take
     * blocks as they come, and a short last block or an odd count leaves one thread waiting
     * (a 12% longer 7x7 ResNet stage at two threads). It depends on the shape only, as the dW
     * lanes need. */
    long long nblk = (N + (cap < 1 ? 1 : cap) - 1) / (cap < 1 ? 1 : cap);
    if (nblk > 1) nblk += nblk & 1;
    shift_plan_geometry(p, (int)((N + nblk - 1) / nblk));
    size_t pa = (size_t)(OC + GT_MR - 1) / GT_MR * GT_MR * p->KC;
    size_t pb = (size_t)(C + GT_MR - 1) / GT_MR * GT_MR * OC * K * K;
    if (p->wino) { /* U of the forward (OC rows over C) and of dX (C rows over OC) */
        size_t uf = (size_t)(OC + WN_R - 1) / WN_R * WN_R * C * 3 * WN_J;
        size_t ub = (size_t)(C + WN_R - 1) / WN_R * WN_R * OC * 3 * WN_J;
        if (uf > pa) pa = uf;
        if (ub > pb) pb = ub;
    }
    p->packed = conv_round16(pa > pb ? pa : pb);
    p->ocp = (OC + GT_VL - 1) / GT_VL * GT_VL;
    /* The fused transform reads grid vectors up to 4*nu/GT_VL + 3 (wn_transform_lanes). */
    p->ngv = p->wino ? 4 * p->nu / GT_VL + 4 : 0;
    p->map_floats = conv_round16(2 * p->ldt / GT_VL) + conv_round16(2 * (size_t)p->ngv) +
                    (p->tight ? conv_round16(2 * (size_t)p->nu / GT_VL) : 0);
    /* Winograd: the V planes of x or dy (the transform reads the tensors), and for dW dy
     * transposed (ldt rows of ocp, read from the tensor through the lane map) and its six a_j
     * planes; its dW lanes hold the six S_j (wn_dw_combine). Otherwise the grids of x and dy. */
    if (p->wino) {
        p->voff = 0;
        p->dyt_off = (size_t)(C > OC ? C : OC) * p->vcs;
        p->dya_off = p->dyt_off + conv_round16((size_t)p->ocp * p->ldt);
        p->dya_plane = (size_t)p->ocp * (p->ldt / 4);
        p->per_thread = p->dya_off + conv_round16(WN_J * p->dya_plane);
        p->lane_floats = conv_round16((size_t)WN_J * OC * C * 3);
    } else {
        p->voff = p->per_thread = (size_t)C * p->cs + (size_t)OC * p->cs;
        p->lane_floats = conv_round16((size_t)OC * p->KC);
    }
    p->nlanes = conv_lanes(p->nblk);
    atomic_init(&p->next, 0);
}

/* Workspace: packed weights, dW lanes, the lane map (and for Winograd the grid map, and for a
 * tight grid the row masks), then PAR_MAX_THREADS thread regions. */
static void shift_plan_bind(ShiftPlan *p, float *ws)
{
    p->ap = ws;
    p->lanes = ws + p->packed;
    p->lmask = (unsigned *)(p->lanes + CONV_LANES * p->lane_floats);
    p->loff = (int *)(p->lmask + p->ldt / GT_VL);
    p->gmask = (unsigned *)((float *)p->lmask + conv_round16(2 * p->ldt / GT_VL));
    p->goff = (int *)(p->gmask + p->ngv);
    p->rmask = p->tight ? (unsigned *)((float *)p->gmask + conv_round16(2 * (size_t)p->ngv))
                        : NULL;
    p->work = p->lanes + CONV_LANES * p->lane_floats + p->map_floats;
}

static size_t shift_plan_floats(const ShiftPlan *p)
{
    return p->packed + CONV_LANES * p->lane_floats + p->map_floats +
           (size_t)PAR_MAX_THREADS * p->per_thread;
}

long long conv_shift_workspace(int N, int C, int H, int W, int OC, int K, int P)
{
    ShiftPlan p;
    shift_plan_init(&p, N, C, H, W, OC, K, P);
    return (long long)shift_plan_floats(&p);
}

/* Centres computed for a block of nn images. */
static int shift_ncols(const ShiftPlan *p, int nn)
{
    return ((nn - 1) * (p->H + p->P) + p->H - 1) * p->pitch + p->W;
}

/*
 * The lane map: how a block's centres and its real pixels correspond. Vector s of a full block
 * (centres [s*GT_VL, (s+1)*GT_VL)) has its real pixels in the lanes set in lmask[s], and they
 * are the consecutive pixels from loff[s] on (counted from the block's first pixel): in centre
 * order the real pixels are the tensor's pixels in order, only separated by padding. So a grid
 * vector is an expand-load of the tensor and an output vector a compress-store into it.
 * Centres past a block's last pixel are not masked here (shift_block_mask).
 */
static void shift_lane_map(const ShiftPlan *p)
{
    int w = 0, h = 0, pix = 0; /* centre s*GT_VL + e is column w of grid row h of an image */
    for (size_t s = 0; s < p->ldt / GT_VL; s++) {
        unsigned m = 0;
        p->loff[s] = pix;
        for (int e = 0; e < GT_VL; e++) {
            if (w < p->W && h < p->H) m |= 1u << e, pix++;
            if (++w == p->pitch) {
                w = 0;
                if (++h == p->H + p->P) h = 0;
            }
        }
        p->lmask[s] = m;
    }
}

/*
 * The grid map, for the Winograd transform that reads the tensor itself: grid vector a
 * (positions [a*GT_VL, (a+1)*GT_VL) of a full block's grid, counted from its start) has its
 * real pixels in the lanes set in gmask[a], the consecutive pixels from goff[a] on. It is the
 * lane map shifted by the grid's first pixel qs; positions past the block's last image are
 * not masked here (wn_grid_vec cuts them).
 */
static void shift_grid_map(const ShiftPlan *p)
{
    int pix = 0;
    long c = -(long)p->qs; /* centre of position a*GT_VL + e; from 0 on, column w of row h */
    int w = 0, h = 0;
    for (int a = 0; a < p->ngv; a++) {
        unsigned m = 0;
        p->goff[a] = pix;
        for (int e = 0; e < GT_VL; e++, c++) {
            if (c < 0) continue;
            if (w < p->W && h < p->H) m |= 1u << e, pix++;
            if (++w == p->pitch) {
                w = 0;
                if (++h == p->H + p->P) h = 0;
            }
        }
        p->gmask[a] = m;
    }
    if (!p->tight) return;
    /* Without a padding column, position 4u of group u is the last pixel of the row before when
     * u starts a row, and position 4u + 5 the first of the next row when u ends one. */
    for (int k = 0; k < p->nu / GT_VL; k++) {
        unsigned first = 0, last = 0;
        for (int e = 0; e < GT_VL; e++) {
            int col = (k * GT_VL + e) % p->hp;
            if (col == 0) first |= 1u << e;
            if (col == p->hp - 1) last |= 1u << e;
        }
        p->rmask[2 * k] = first, p->rmask[2 * k + 1] = last;
    }
}

/* Bind a plan to its workspace and build its lane maps (the grid map and row masks for
 * Winograd). */
static void shift_plan_start(ShiftPlan *p, float *ws)
{
    shift_plan_bind(p, ws);
    shift_lane_map(p);
    if (p->wino) shift_grid_map(p);
}

/* lmask[s] restricted to the block's ncols centres. */
static unsigned shift_block_mask(const ShiftPlan *p, int s, int ncols)
{
    int left = ncols - s * GT_VL;
    return left >= GT_VL ? p->lmask[s] : left > 0 ? p->lmask[s] & ((1u << left) - 1) : 0;
}

/* Copy images [n0, n0+nn) of src (channels of rows N*HW apart) into grids g (nch x cs): zeros up
 * to the first pixel, the block's centres (expand-loads: padding lanes are 0), zeros after. */
static void shift_fill_grid(const ShiftPlan *p, float *g, const float *src, int nch, int n0, int nn)
{
    size_t chan = (size_t)p->N * p->HW;
    int ncols = shift_ncols(p, nn);
    int nv = (ncols + GT_VL - 1) / GT_VL;
    size_t end = (size_t)p->qs + (size_t)nv * GT_VL;
    for (int c = 0; c < nch; c++) {
        float *gc = g + (size_t)c * p->cs;
        const float *sc = src + (size_t)c * chan + (size_t)n0 * p->HW;
        memset(gc, 0, (size_t)p->qs * sizeof(float));
        for (int s = 0; s < nv; s++)
            gt_store(gc + p->qs + (size_t)s * GT_VL,
                     gt_load_lanes(sc + p->loff[s], shift_block_mask(p, s, ncols)));
        memset(gc + end, 0, (p->cs - end) * sizeof(float));
    }
}

/*
 * A block's GEMM dst_rows (M x centres) = A (packed panels, M x nc*K*K) x the shifted grid
 * rows, every tile stored from its registers straight to the real pixels of dst (channels of
 * N*HW floats, from image n0): = through the plan's epilogue if any (forward), or += (acc, the
 * backward's dX). No staging buffer, no second pass over the outputs.
 */
/* drow is a row of p->out (forward, where the epilogue's residual sits at the same offset from
 * ep->res) or of p->dinp (backward, acc). */
static inline void shift_store(const ShiftPlan *p, float *drow, gt_vf y, int s, int ncols, int oc,
                               int acc)
{
    unsigned m = shift_block_mask(p, s, ncols);
    if (!m) return;
    float *d = drow + p->loff[s];
    const ConvEpilogue *ep = p->ep;
    if (acc) {
        y += gt_load_lanes(d, m);
    } else if (ep) { /* the same arithmetic as conv_epilogue_row */
        y = (y - ep->mean[oc]) * ep->scale[oc] + ep->shift[oc];
        if (ep->res) y += gt_load_lanes(ep->res + (d - p->out), m);
        if (ep->relu) y = (gt_vf)((gt_vi)y & (y > 0));
    }
    gt_store_lanes(d, y, m);
}

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
                                i + r, acc);
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
                        shift_store(p, drow, out[k], j / GT_VL + 4 * g + k, ncols, i + r, acc);
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

/* t[l*ld + r] = src[r*cs + l] for r < rows and l < n rounded up to GT_VL, 0 for r in [rows, ld);
 * ld is a multiple of GT_VL and src rows are readable that far. GT_VL x GT_VL blocks are
 * transposed in registers (gt_transpose). */
static void conv_transpose_rows(float *t, int ld, const float *src, size_t cs, int rows, int n)
{
    for (int l0 = 0; l0 < n; l0 += GT_VL) {
        for (int r0 = 0; r0 < ld; r0 += GT_VL) {
            gt_vf b[GT_VL];
            for (int i = 0; i < GT_VL; i++)
                b[i] = r0 + i < rows ? gt_load(src + (size_t)(r0 + i) * cs + l0) : (gt_vf){0};
            gt_transpose(b);
            for (int i = 0; i < GT_VL; i++) gt_store(t + (size_t)(l0 + i) * ld + r0, b[i]);
        }
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

/* Weight packing over threads: panels of rows are independent, so a range of them is packed by
 * the same function on the rows' sub-matrix (its first row and its first panel offset). It runs
 * on every call, as the weights may have changed since the last one. */
typedef struct {
    float *ap;
    const float *w;
    int M, nc;
    int flip;          /* Winograd: wn_pack_u's row/channel strides and flip */
    size_t rs, cs;
    ptrdiff_t pitch;   /* phase planes: the grid pitch of phase_pack's tap offsets */
} PackJob;

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

/*
 * Stride-2 3x3 convs (pad 1, even H and W: every downsampling conv of a ResNet): output
 * (oh, ow) reads input rows 2oh - 1, 2oh, 2oh + 1, so split the input into its four phase planes
 * x_ab[i][j] = x[2i + a][2j + b] (H/2 x W/2 each). Then row 2oh + kh - 1 is row
 * oh - 1 (kh = 0) or oh (kh = 2) of phase a = 1, or row oh of phase a = 0 (kh = 1), and the same
 * for columns: the conv is a stride-1 conv of the 4*C phase planes with taps at offsets -1 and 0,
 * one per (kh, kw), nine in all. On the shifted grid of the phase planes (ShiftPlan of 4*C
 * channels of OH x OW, whose shared padding supplies the zeros above and left) it runs like a
 * same conv, without im2col, with each phase's tap list (gt_tile_add_taps).
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
    p->per_thread = p->voff + conv_round16((size_t)p->C * p->nimg * p->HW);
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
        gt_store(d, gt_load(d) + __builtin_shuffle(ev, ov, lo));
        gt_store(d + GT_VL, gt_load(d + GT_VL) + __builtin_shuffle(ev, ov, hi));
    }
    if (k < w2) {
        unsigned m = phase_low_lanes(w2 - k);
        int left = 2 * (w2 - k);
        gt_vf ev = gt_load_lanes(e + k, m), ov = gt_load_lanes(o + k, m);
        float *d = dst + 2 * k;
        unsigned m0 = phase_low_lanes(left < GT_VL ? left : GT_VL);
        gt_store_lanes(d, gt_load_lanes(d, m0) + __builtin_shuffle(ev, ov, lo), m0);
        if (left > GT_VL) {
            unsigned m1 = phase_low_lanes(left - GT_VL);
            gt_store_lanes(d + GT_VL, gt_load_lanes(d + GT_VL, m1) + __builtin_shuffle(ev, ov, hi),
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

static void conv_phase_forward_worker(void *ctx, int t, int T)
{
    (void)T;
    ShiftPlan *p = ctx;
    float *gx = p->work + (size_t)t * p->per_thread;
    int C = p->C / 4;
    size_t chan = (size_t)p->N * p->HW, kdim = (size_t)C * 9;
    ptrdiff_t off[4][4];
    int nt[4], kh[4], kw[4];
    for (int ph = 0; ph < 4; ph++) nt[ph] = phase_taps(ph, p->pitch, kh, kw, off[ph]);
    for (int b; (b = atomic_fetch_add(&p->next, 1)) < p->nblk;) {
        int n0 = b * p->nimg;
        int nn = p->N - n0 < p->nimg ? p->N - n0 : p->nimg;
        int ncols = shift_ncols(p, nn);
        phase_fill_grid(p, gx, p->inp, n0, nn);
        float *d0 = p->out + (size_t)n0 * p->HW;
        for (int j = 0; j < ncols; j += GT_NR) {
            for (int i = 0; i < p->OC; i += GT_MR) {
                gt_vf acc[GT_MR][GT_NV];
                for (int r = 0; r < GT_MR; r++)
                    for (int v = 0; v < GT_NV; v++) acc[r][v] = (gt_vf){0};
                const float *ak = p->ap + (size_t)i * kdim;
                for (int ph = 0; ph < 4; ph++) {
                    gt_tile_add_taps(acc, C, ak, gx + (size_t)ph * C * p->cs + p->qs, p->cs,
                                     off[ph], nt[ph], (size_t)j);
                    ak += (size_t)C * nt[ph] * GT_MR;
                }
                for (int v = 0; v < GT_NV; v++)
                    for (int r = 0; r < GT_MR && i + r < p->OC; r++)
                        shift_store(p, d0 + (size_t)(i + r) * chan, acc[r][v], j / GT_VL + v,
                                    ncols, i + r, 0);
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
                                    j / GT_VL + v, ncols, i + r, 0);
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
