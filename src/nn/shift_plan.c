/* The shifted grid's plan: block geometry, workspace layout, the lane and grid maps, grid fills and row transposes. */
#include "isa.h" /* first: renames this file's functions in per-ISA builds */
#include "shift_plan.h"

#include "parallel.h"
#include "wino_tile.h"

#include <string.h>

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
void shift_plan_init(ShiftPlan *p, int N, int C, int H, int W, int OC, int K, int P)
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

size_t shift_plan_floats(const ShiftPlan *p)
{
    return p->packed + CONV_LANES * p->lane_floats + p->map_floats +
           (size_t)PAR_MAX_THREADS * p->per_thread;
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
void shift_plan_start(ShiftPlan *p, float *ws)
{
    shift_plan_bind(p, ws);
    shift_lane_map(p);
    if (p->wino) shift_grid_map(p);
}

/* Copy images [n0, n0+nn) of src (channels of rows N*HW apart) into grids g (nch x cs): zeros up
 * to the first pixel, the block's centres (expand-loads: padding lanes are 0), zeros after. */
void shift_fill_grid(const ShiftPlan *p, float *g, const float *src, int nch, int n0, int nn)
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

/* t[l*ld + r] = src[r*cs + l] for r < rows and l < n rounded up to GT_VL, 0 for r in [rows, ld);
 * ld is a multiple of GT_VL and src rows are readable that far. GT_VL x GT_VL blocks are
 * transposed in registers (gt_transpose). */
void conv_transpose_rows(float *t, int ld, const float *src, size_t cs, int rows, int n)
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
