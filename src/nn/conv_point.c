/* Pointwise convolutions (1x1, no padding, ungrouped) as GEMMs run straight on the channel-major tensors, blocked over pixels: stride 1 forward and backward, strided forward. */
#include "isa.h" /* first: renames this file's functions in per-ISA builds */
#include "conv_internal.h"
#include "gemm_tile.h"
#include "parallel.h"

#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

/*
 * With channel-major activations a 1x1 conv is a plain GEMM of the tensors over the M = N*H*W
 * pixels (N*OH*OW output pixels when strided, below): out (OC x M) = W (OC x C) x X (C x M),
 * dW (OC x C) += dY (OC x M) x X^T and dX (C x M) = W^T x dY. Channel c of the batch is row c of
 * X, so the GEMM takes its B rows from the tensor itself (copied a chunk of tiles at a time, see
 * point_gemm_out): no grid, no im2col. Pixels need not be split at image boundaries, so blocks
 * are ranges of pixels, whole tiles (GT_NR) each except the last. A tile reads GT_NR floats of every row; only the batch's last partial tile would read
 * past the end of the tensor (and would sum its garbage columns into dW), so that tail of
 * x (and of dy) is copied once per call into zero-padded GT_NR-wide rows and read from there.
 * A strided 1x1 conv (ResNet's projection shortcuts at stride 2) is the same GEMM over the
 * output pixels, whose x columns are every S-th pixel of every S-th row: the forward gathers
 * them while packing B (below), so no subsampled copy of x is made; its backward is conv.c's.
 */
enum { POINT_BLOCK_FLOATS = 3 << 16 }; /* target size of a block's x and dy (or out) columns */

/* Floats of a thread's packed B chunk. 256 KiB: at 64 KiB one tile of MobileNetV2's
 * 960-channel projections or ResNet-50's 1024- and 2048-channel convs filled the buffer, so the
 * whole weight matrix (0.6-4 MB, past L2) was read again for every tile; they ran at a third of
 * the speed they reach with 2-5 tiles a chunk. */
enum { POINT_PACK_FLOATS = 1 << 16 };

typedef struct {
    int C, OC, nblk, nlanes;
    int S, H, W, OH, OW; /* stride, input and output image sizes */
    size_t M;           /* output pixels: N*OH*OW, the row length of out and dy */
    size_t Min;         /* input pixels: N*H*W, the row length of x and dx */
    size_t jb;          /* pixels per block, a multiple of GT_NR (the last block may be short) */
    size_t tail0;       /* the first pixel of the partial last tile (M when there is none) */
    int tail;           /* its width, M - tail0 < GT_NR */
    size_t packed, lane_floats;
    atomic_int next;    /* the next block (forward) or dW lane (backward) to take */
    float *ap;          /* packed W (forward) or W^T (dX) */
    float *lanes;       /* CONV_LANES dW partial sums */
    float *xt, *dyt;    /* the tails of x and dy: C and OC rows of GT_NR floats, zero-padded */
    float *pack;        /* PAR_MAX_THREADS buffers of POINT_PACK_FLOATS: thread t's packed B */
    float *out, *dinp;
    const float *inp, *dout;
    const ConvEpilogue *ep; /* forward: eval BN (+ residual) (+ ReLU) on the way out, or NULL */
    int dx_set;         /* backward: dinp = dX instead of dinp += dX */
} PointPlan;

/* Blocks and workspace layout; depend on the shape only (never on the thread count). As in the
 * shifted-grid plans, the block count is even when there are several, so two threads finish
 * together. */
static void point_plan_init(PointPlan *p, int N, int C, int H, int W, int OC, int S)
{
    memset(p, 0, sizeof *p);
    p->C = C, p->OC = OC;
    p->S = S, p->H = H, p->W = W;
    p->OH = (H - 1) / S + 1; /* a 1x1 unpadded conv's output size */
    p->OW = (W - 1) / S + 1;
    p->M = (size_t)N * p->OH * p->OW;
    p->Min = (size_t)N * H * W;
    size_t cap = POINT_BLOCK_FLOATS / (size_t)(C + OC) / GT_NR * GT_NR;
    if (cap < GT_NR) cap = GT_NR;
    size_t nblk = (p->M + cap - 1) / cap;
    if (nblk > 1) nblk += nblk & 1;
    p->jb = ((p->M + nblk - 1) / nblk + GT_NR - 1) / GT_NR * GT_NR;
    p->nblk = (int)((p->M + p->jb - 1) / p->jb);
    p->tail = (int)(p->M % GT_NR);
    p->tail0 = p->M - (size_t)p->tail;
    size_t pa = (size_t)(OC + GT_MR - 1) / GT_MR * GT_MR * C;
    size_t pb = (size_t)(C + GT_MR - 1) / GT_MR * GT_MR * OC;
    p->packed = conv_round16(pa > pb ? pa : pb);
    p->lane_floats = conv_round16((size_t)OC * C);
    p->nlanes = conv_lanes(p->nblk);
    atomic_init(&p->next, 0);
}

/* Workspace: packed weights, dW lanes, the tails of x and dy, the threads' B buffers. */
static void point_plan_bind(PointPlan *p, float *ws)
{
    p->ap = ws;
    p->lanes = ws + p->packed;
    p->xt = p->lanes + CONV_LANES * p->lane_floats;
    p->dyt = p->xt + conv_round16((size_t)p->C * GT_NR);
    p->pack = p->dyt + conv_round16((size_t)p->OC * GT_NR);
}

static size_t point_plan_floats(const PointPlan *p)
{
    return p->packed + CONV_LANES * p->lane_floats + conv_round16((size_t)p->C * GT_NR) +
           conv_round16((size_t)p->OC * GT_NR) + (size_t)PAR_MAX_THREADS * POINT_PACK_FLOATS;
}

long long conv_point_workspace(int N, int C, int H, int W, int OC, int S)
{
    PointPlan p;
    point_plan_init(&p, N, C, H, W, OC, S);
    return (long long)point_plan_floats(&p);
}

/* off[e] = where output pixel j + e (e < n) reads its x column in a row of x: j + e itself at
 * stride 1. */
static void point_x_offsets(const PointPlan *p, size_t j, int n, size_t *off)
{
    size_t img = j / ((size_t)p->OH * p->OW), q = j % ((size_t)p->OH * p->OW);
    size_t oh = q / (size_t)p->OW, ow = q % (size_t)p->OW;
    for (int e = 0; e < n; e++) {
        off[e] = (img * p->H + oh * p->S) * p->W + ow * p->S;
        if (++ow < (size_t)p->OW) continue;
        ow = 0;
        if (++oh < (size_t)p->OH) continue;
        oh = 0;
        img++;
    }
}

/* t (rows x GT_NR) = the partial last tile of src's rows, zero past it: x's (ld Min, gathered
 * at the stride) when x, else dy's (ld M). */
static void point_copy_tail(const PointPlan *p, float *t, const float *src, int rows, int x)
{
    size_t off[GT_NR];
    if (x) point_x_offsets(p, p->tail0, p->tail, off);
    for (int r = 0; r < rows; r++) {
        float *d = t + (size_t)r * GT_NR;
        if (x)
            for (int e = 0; e < p->tail; e++) d[e] = src[(size_t)r * p->Min + off[e]];
        else
            memcpy(d, src + (size_t)r * p->M + p->tail0, (size_t)p->tail * sizeof(float));
        memset(d + p->tail, 0, (size_t)(GT_NR - p->tail) * sizeof(float));
    }
}

/* Store tile t (rows i.. of dst, pixels j.. of the full tiles) from its registers: added to
 * what dst holds when add, then through ep (the forward's epilogue) when ep is not NULL. */
static inline __attribute__((always_inline)) void point_store_tile(const PointPlan *p,
                                                                    gt_vf t[GT_MR][GT_NV],
                                                                    int rows, int i, float *dst,
                                                                    size_t j, int add,
                                                                    const ConvEpilogue *ep)
{
    for (int r = 0; r < GT_MR && i + r < rows; r++) {
        int oc = i + r;
        float *d = dst + (size_t)oc * p->M + j;
        for (int v = 0; v < GT_NV; v++) {
            gt_vf y = t[r][v];
            float *dv = d + v * GT_VL;
            if (add) y += gt_load(dv);
            if (ep) { /* the same arithmetic as conv_epilogue_row */
                y = (y - ep->mean[oc]) * ep->scale[oc] + ep->shift[oc];
                if (ep->res) y += gt_load(ep->res + (dv - p->out));
                if (ep->cap > 0.0f) y = conv_epilogue_clamp(y, ep->cap);
            }
            gt_store(dv, y);
        }
    }
}

/* The partial last tile: staged, so that its garbage columns are never stored. */
static void point_store_tail(const PointPlan *p, gt_vf t[GT_MR][GT_NV], int rows, int i,
                             float *dst, int add, const ConvEpilogue *ep)
{
    for (int r = 0; r < GT_MR && i + r < rows; r++) {
        int oc = i + r;
        float *d = dst + (size_t)oc * p->M + p->tail0;
        float row[GT_NR];
        for (int v = 0; v < GT_NV; v++) gt_store(row + v * GT_VL, t[r][v]);
        if (add)
            for (int e = 0; e < p->tail; e++) d[e] += row[e];
        else
            memcpy(d, row, (size_t)p->tail * sizeof(float));
        if (ep)
            conv_epilogue_row(d, ep->res ? ep->res + (d - p->out) : NULL, (size_t)p->tail, ep, oc);
    }
}

/*
 * dst (rows x M) = A x the B rows over pixels [j0, j1), A packed by gt_pack_a (rows x nc),
 * B = src's nc rows (x: gathered at the plan's stride from rows Min apart; otherwise dy: rows M
 * apart) or, for the partial last tile, their tail copy bt; added to dst when acc (the
 * backward's dX), through the plan's epilogue otherwise. pk: the thread's POINT_PACK_FLOATS.
 * The block goes in chunks of whole tiles whose B columns are first copied tile by tile into
 * pk (each tile's rows of GT_NR floats in a row): the tensor's rows lie M floats apart, M often
 * a power of two, so read in place every row of a tile falls in the same cache set and a
 * panel's pass missed L1 and L2 on nearly every load; packed, the tiles stream. A panel of
 * GT_MR rows runs over the whole chunk before the next one, so the stores go to GT_MR
 * sequential streams: tiles in pixel order under every panel (all rows of dst at once) measured
 * 1.3-1.9x slower at 16-24 input channels, where the rows evict each other from the caches.
 * When one tile's nc rows exceed pk, the reduction goes in equal slices that fit: every slice
 * but the first adds to the chunk's dst, and only the last applies the epilogue.
 */
static void point_gemm_out(const PointPlan *p, int rows, int nc, const float *ap, const float *src,
                           int x, const float *bt, float *dst, size_t j0, size_t j1, int acc,
                           float *pk)
{
    const int kc = (int)gt_slice_rows((size_t)nc, 1, POINT_PACK_FLOATS); /* rows of a slice */
    const size_t tile_floats = (size_t)kc * GT_NR;
    const size_t chunk = POINT_PACK_FLOATS / tile_floats * GT_NR;
    const size_t ld = x ? p->Min : p->M;
    const int gather = x && p->S > 1;
    for (size_t c0 = j0; c0 < j1; c0 += chunk) {
        size_t c1 = c0 + chunk < j1 ? c0 + chunk : j1;
        size_t cf = c1 < p->tail0 ? c1 : p->tail0; /* end of the chunk's whole tiles */
        for (int k0 = 0; k0 < nc; k0 += kc) {
            const int nk = nc - k0 < kc ? nc - k0 : kc;
            const int add = acc || k0 > 0;
            const ConvEpilogue *ep = !acc && k0 + nk == nc ? p->ep : NULL;
            for (size_t j = c0; j < cf; j += GT_NR) {
                float *d = pk + (j - c0) / GT_NR * tile_floats;
                const float *s = src + (size_t)k0 * ld;
                if (gather) {
                    size_t off[GT_NR];
                    point_x_offsets(p, j, GT_NR, off);
                    for (int c = 0; c < nk; c++, d += GT_NR, s += ld)
                        for (int e = 0; e < GT_NR; e++) d[e] = s[off[e]];
                } else {
                    for (int c = 0; c < nk; c++, d += GT_NR, s += ld)
                        for (int v = 0; v < GT_NV; v++)
                            gt_store(d + v * GT_VL, gt_load(s + j + v * GT_VL));
                }
            }
            GtRows tailrows = {bt + (size_t)k0 * GT_NR, GT_NR, 0, 0, 1};
            for (int i = 0; i < rows; i += GT_MR) {
                const float *ak = ap + (size_t)i * nc + (size_t)k0 * GT_MR;
                gt_vf t[GT_MR][GT_NV];
                for (size_t j = c0; j < cf; j += GT_NR) {
                    GtRows packed = {pk + (j - c0) / GT_NR * tile_floats, GT_NR, 0, 0, 1};
                    gt_tile_acc(t, nk, ak, &packed, 0);
                    point_store_tile(p, t, rows, i, dst, j, add, ep);
                }
                if (cf < c1) { /* the partial last tile */
                    gt_tile_acc(t, nk, ak, &tailrows, 0);
                    point_store_tail(p, t, rows, i, dst, add, ep);
                }
            }
        }
    }
}

static void point_forward_worker(void *ctx, int t, int T)
{
    (void)T;
    PointPlan *p = ctx;
    float *pk = p->pack + (size_t)t * POINT_PACK_FLOATS;
    for (int b; (b = atomic_fetch_add(&p->next, 1)) < p->nblk;) {
        size_t j0 = (size_t)b * p->jb, j1 = j0 + p->jb < p->M ? j0 + p->jb : p->M;
        point_gemm_out(p, p->OC, p->C, p->ap, p->inp, 1, p->xt, p->out, j0, j1, 0, pk);
    }
}

/* One block of the backward: dw += its dW (dot products along its pixels: the whole tiles from
 * the tensors, the partial last one from the tails) and, when dinp is set, its dX. */
static void point_backward_block(const PointPlan *p, float *dw, int b, float *pk)
{
    size_t j0 = (size_t)b * p->jb, j1 = j0 + p->jb < p->M ? j0 + p->jb : p->M;
    size_t jf = j1 < p->tail0 ? j1 : p->tail0; /* end of the whole tiles */
    GtRows xrows = {p->inp + j0, p->M, 0, 0, 1};
    if (jf > j0)
        gt_gemm_abt_acc(p->OC, p->C, (int)(jf - j0), p->dout + j0, p->M, &xrows, dw, (size_t)p->C);
    if (jf < j1) {
        GtRows trows = {p->xt, GT_NR, 0, 0, 1};
        int lt = (p->tail + GT_VL - 1) / GT_VL * GT_VL;
        gt_gemm_abt_acc(p->OC, p->C, lt, p->dyt, GT_NR, &trows, dw, (size_t)p->C);
    }
    if (p->dinp)
        point_gemm_out(p, p->C, p->OC, p->ap, p->dout, 0, p->dyt, p->dinp, j0, j1, !p->dx_set, pk);
}

static void point_backward_worker(void *ctx, int t, int T)
{
    (void)T;
    PointPlan *p = ctx;
    float *pk = p->pack + (size_t)t * POINT_PACK_FLOATS;
    for (int l; (l = atomic_fetch_add(&p->next, 1)) < p->nlanes;) {
        float *dw = p->lanes + (size_t)l * p->lane_floats;
        memset(dw, 0, p->lane_floats * sizeof(float));
        for (int b = l; b < p->nblk; b += p->nlanes) point_backward_block(p, dw, b, pk);
    }
}

void conv_point_forward(float *out, float *ws, const float *inp, const float *weight, int N, int C,
                        int H, int W, int OC, int S, const ConvEpilogue *ep)
{
    PointPlan p;
    point_plan_init(&p, N, C, H, W, OC, S);
    point_plan_bind(&p, ws);
    p.out = out;
    p.inp = inp;
    p.ep = ep;
    gt_pack_a(p.ap, weight, OC, C, (size_t)C, 1);
    if (p.tail) point_copy_tail(&p, p.xt, inp, C, 1);
    int T = par_threads();
    par_run(T < p.nblk ? T : p.nblk, point_forward_worker, &p);
}

void conv_point_backward(float *dinp, float *dweight, float *ws, const float *dout,
                         const float *inp, const float *weight, int N, int C, int H, int W, int OC,
                         int set)
{
    PointPlan p;
    point_plan_init(&p, N, C, H, W, OC, 1);
    point_plan_bind(&p, ws);
    p.inp = inp;
    p.dout = dout;
    p.dinp = dinp;
    p.dx_set = set; /* every pixel of dinp is stored exactly once, so no zeroing is needed */
    if (dinp) gt_pack_a(p.ap, weight, C, OC, 1, (size_t)C); /* W^T: (C x OC) */
    if (p.tail) {
        point_copy_tail(&p, p.xt, inp, C, 1);
        point_copy_tail(&p, p.dyt, dout, OC, 0);
    }
    int T = par_threads();
    par_run(T < p.nlanes ? T : p.nlanes, point_backward_worker, &p);
    conv_add_lanes(dweight, p.lanes, p.lane_floats, p.nlanes, (size_t)OC * C);
}
