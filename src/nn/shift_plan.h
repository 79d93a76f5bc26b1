/* The shifted grid's plan, shared by the same-conv (conv_shift.c) and stride-2 (conv_phase.c) paths: geometry, workspace layout, lane maps, grid fills and the register-tile stores. */
#ifndef LEGR_NN_SHIFT_PLAN_H
#define LEGR_NN_SHIFT_PLAN_H

#include "conv_internal.h"
#include "gemm_tile.h"

#include <stdatomic.h>
#include <stddef.h>

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
    size_t pkoff;      /* stride-2 plans: offset in a thread region of the packed B chunk */
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

/* A plan for a same conv (3x3: a Winograd plan), or with K = 2 the phase plan's base. */
void shift_plan_init(ShiftPlan *p, int N, int C, int H, int W, int OC, int K, int P);
/* Workspace floats of a plan: packed weights, dW lanes, maps, PAR_MAX_THREADS thread regions. */
size_t shift_plan_floats(const ShiftPlan *p);
/* Bind a plan to its workspace and build its lane maps (the grid map and row masks for
 * Winograd). */
void shift_plan_start(ShiftPlan *p, float *ws);
/* Copy images [n0, n0+nn) of src (channels of rows N*HW apart) into grids g (nch x cs): zeros up
 * to the first pixel, the block's centres (expand-loads: padding lanes are 0), zeros after. */
void shift_fill_grid(const ShiftPlan *p, float *g, const float *src, int nch, int n0, int nn);
/* t[l*ld + r] = src[r*cs + l] for r < rows and l < n rounded up to GT_VL, 0 for r in [rows, ld);
 * ld is a multiple of GT_VL and src rows are readable that far. */
void conv_transpose_rows(float *t, int ld, const float *src, size_t cs, int rows, int n);

/* Centres computed for a block of nn images. */
static inline int shift_ncols(const ShiftPlan *p, int nn)
{
    return ((nn - 1) * (p->H + p->P) + p->H - 1) * p->pitch + p->W;
}

/* lmask[s] restricted to the block's ncols centres. */
static inline unsigned shift_block_mask(const ShiftPlan *p, int s, int ncols)
{
    int left = ncols - s * GT_VL;
    return left >= GT_VL ? p->lmask[s] : left > 0 ? p->lmask[s] & ((1u << left) - 1) : 0;
}

/* Store vector s (of ncols centres) of a register tile's row oc to its real pixels only (lane
 * map): added to what the row holds when add (the backward's dX, a reduction's later slices),
 * then through ep (the forward's epilogue) when not NULL. drow is a row of p->out (where the
 * epilogue's residual sits at the same offset from ep->res) or of p->dinp. */
static inline void shift_store(const ShiftPlan *p, float *drow, gt_vf y, int s, int ncols, int oc,
                               int add, const ConvEpilogue *ep)
{
    unsigned m = shift_block_mask(p, s, ncols);
    if (!m) return;
    float *d = drow + p->loff[s];
    if (add) y += gt_load_lanes(d, m);
    if (ep) { /* the same arithmetic as conv_epilogue_row */
        y = (y - ep->mean[oc]) * ep->scale[oc] + ep->shift[oc];
        if (ep->res) y += gt_load_lanes(ep->res + (d - p->out), m);
        if (ep->cap > 0.0f) y = conv_epilogue_clamp(y, ep->cap);
    }
    gt_store_lanes(d, y, m);
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

#endif
