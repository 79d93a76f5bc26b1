/* Row-wise Winograd F(4,3) kernels for 3x3 "same" convs on the shifted grid: filter packing, input transform, register tile, output transform, and the weight gradient's transforms. */
#ifndef LEGR_NN_WINO_TILE_H
#define LEGR_NN_WINO_TILE_H

#include "gemm_tile.h"

/*
 * Winograd F(4,3) (Lavin & Gray 2016) in one dimension: four neighbouring outputs of a 3-tap row
 * correlation, y_t = g0 d_t + g1 d_{t+1} + g2 d_{t+2} for t < 4, are y = A^T [(G g) . (B^T d)]
 * over the six inputs d0..d5, with (interpolation points 0, 1, -1, 2, -2)
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]:
 * six multiplies where the direct form takes twelve. A 3x3 conv is one such row correlation per
 * filter row kh, summed over kh and the input channels, and the sum can be taken before the
 * output transform, which is linear: for output group m (four outputs in a row),
 *   M_j[oc][m] = sum over (c, kh) of U_j[oc][c][kh] * V_j[c][m + kh*hp],   U = G g, V = B^T d,
 * six GEMMs over transformed rows read at shifted offsets (shift_plan.h's shifted grid, with groups
 * as the columns): 18 multiplies per group, channel and filter instead of 36.
 *
 * Transformed rows ("V planes") are those of a grid g whose pitch is a multiple of 4: plane j of
 * a channel holds V_j at every group u of grid positions 4u .. 4u + 3, from g[4u .. 4u + 5];
 * hp = pitch / 4 groups make one grid row. The grid has a zero padding column between rows, or,
 * when the pitch is W itself, none: then the transform takes g[4u] as 0 in a group that starts a
 * row and g[4u + 5] as 0 in one that ends a row. The grid itself is never built: its vectors are
 * read from the tensor through a lane map (wn_grid_vec).
 *
 * A tile is WN_R filters x WN_NG groups, with the register blocking of the direct kernel
 * (gemm_tile.h), and makes one pass over the reduction per M_j; the six M_j wait in a small
 * buffer (L1) for the output transform. (Holding several M_j in registers at once leaves room
 * for fewer filters, so every V vector would feed fewer FMAs: measured with F(2,3), that tile
 * ran slow enough to lose what the transform saves.)
 */
enum {
    WN_J = 6,                 /* transformed values per group */
    WN_R = GT_MR,             /* filters per tile */
    WN_G = GT_NV,             /* vectors of groups per tile */
    WN_NG = WN_G * GT_VL      /* groups per tile: 4*WN_NG centres */
};

/* Pack the transformed filters for M rows over nc reduction channels: row r, channel ch, filter
 * row kh, column kw of the 3x3 filter is w[r*rs + ch*cs + kh*3 + kw], or with flip (the
 * backward's data gradient) w[r*rs + ch*cs + (2-kh)*3 + (2-kw)]. Panels of WN_R rows, one run
 * per M_j: ap[i0*nc*3*WN_J + ((j*nc + ch)*3 + kh)*WN_R + r] = U_j of row i0 + r; rows past M
 * are 0. Needs ceil(M/WN_R)*WN_R*nc*3*WN_J floats. */
static inline void wn_pack_u(float *ap, const float *w, int M, int nc, size_t rs, size_t cs,
                             int flip)
{
    for (int i0 = 0; i0 < M; i0 += WN_R) {
        float *pa = ap + (size_t)i0 * nc * 3 * WN_J;
        for (int ch = 0; ch < nc; ch++) {
            for (int kh = 0; kh < 3; kh++) {
                for (int r = 0; r < WN_R; r++) {
                    double g0 = 0.0, g1 = 0.0, g2 = 0.0;
                    if (i0 + r < M) {
                        const float *f = w + (size_t)(i0 + r) * rs + (size_t)ch * cs;
                        const float *row = f + (flip ? 2 - kh : kh) * 3;
                        g0 = flip ? row[2] : row[0];
                        g1 = row[1];
                        g2 = flip ? row[0] : row[2];
                    }
                    /* G's rows, by reciprocals: a division costs as much as the rest of
                     * the row, and the packing runs on every conv call. */
                    const double r6 = 1.0 / 6, r12 = 1.0 / 12, r24 = 1.0 / 24;
                    double u[WN_J] = {g0 * 0.25,
                                      -(g0 + g1 + g2) * r6,
                                      -(g0 - g1 + g2) * r6,
                                      g0 * r24 + g1 * r12 + g2 * r6,
                                      g0 * r24 - g1 * r12 + g2 * r6,
                                      g2};
                    for (int j = 0; j < WN_J; j++)
                        pa[((size_t)(j * nc + ch) * 3 + kh) * WN_R + r] = (float)u[j];
                }
            }
        }
    }
}

/* Lanes 2e (odd: 2e + 1) of the two vectors a, b taken as one of 2*GT_VL floats. */
static inline gt_vf wn_evens(gt_vf a, gt_vf b)
{
    gt_vi ix;
    for (int e = 0; e < GT_VL; e++) ix[e] = 2 * e;
    return gt_shuffle2(a, b, ix);
}
static inline gt_vf wn_odds(gt_vf a, gt_vf b)
{
    gt_vi ix;
    for (int e = 0; e < GT_VL; e++) ix[e] = 2 * e + 1;
    return gt_shuffle2(a, b, ix);
}

/* Split 4*GT_VL consecutive grid positions, the vectors a0..a3, into d[i] = position 4u + i of
 * every group u, by two rounds of even/odd shuffles. */
static inline void wn_split(gt_vf d[4], gt_vf a0, gt_vf a1, gt_vf a2, gt_vf a3)
{
    gt_vf e01 = wn_evens(a0, a1), e23 = wn_evens(a2, a3);
    gt_vf o01 = wn_odds(a0, a1), o23 = wn_odds(a2, a3);
    d[0] = wn_evens(e01, e23), d[2] = wn_odds(e01, e23);
    d[1] = wn_evens(o01, o23), d[3] = wn_odds(o01, o23);
}

/* The lanes e of v whose bit e of m is clear; the others 0. */
static inline gt_vf wn_clear(gt_vf v, unsigned m)
{
    gt_vi bit;
    for (int e = 0; e < GT_VL; e++) bit[e] = 1 << e;
    return (gt_vf)((gt_vi)v & ((bit & (int)m) == 0));
}

/* The six V_j of GT_VL groups, to p[j*hcs], from their split positions d[0..3] (wn_split) and
 * those of the next GT_VL groups, n: positions 4u + 4 and 4u + 5 are the first two of group
 * u + 1, so they are d[0] and d[1] moved down one lane, with n's lane 0 coming in on top.
 * Position 4u is taken as 0 in the groups of lanes first, and 4u + 5 in those of lanes last. */
static inline void wn_transform_vec(float *p, size_t hcs, const gt_vf d[4], const gt_vf n[4],
                                    unsigned first, unsigned last)
{
    gt_vi up;
    for (int e = 0; e < GT_VL; e++) up[e] = e + 1;
    gt_vf d0 = d[0], d1 = d[1], d2 = d[2], d3 = d[3];
    gt_vf d4 = gt_shuffle2(d0, n[0], up), d5 = gt_shuffle2(d1, n[1], up);
    if (first | last) d0 = wn_clear(d0, first), d5 = wn_clear(d5, last);
    gt_vf q = d4 - d2, r = d3 - d1;
    gt_store(p, 4.0f * d0 - 5.0f * d2 + d4);
    gt_store(p + hcs, (d3 + d4) - 4.0f * (d1 + d2));
    gt_store(p + 2 * hcs, (d4 - d3) + 4.0f * (d1 - d2));
    gt_store(p + 3 * hcs, q + 2.0f * r);
    gt_store(p + 4 * hcs, q - 2.0f * r);
    gt_store(p + 5 * hcs, 4.0f * d1 - 5.0f * d3 + d5);
}

/* Grid vector a of a block read from its tensor through the grid map (shift_plan.c's
 * shift_grid_map): the lanes of gmask[a] take the pixels from src + goff[a] on, cut at the
 * block's npix pixels; the other lanes are 0. */
static inline gt_vf wn_grid_vec(const float *src, const unsigned *gmask, const int *goff, int a,
                                int npix)
{
    unsigned m = gmask[a];
    int left = npix - goff[a];
    if (left <= 0) return (gt_vf){0};
    if (__builtin_popcount(m) > left) { /* keep the lowest `left` lanes of m */
        unsigned keep = 0;
        for (; left > 0; left--) {
            keep |= m & -m;
            m &= m - 1;
        }
        m = keep;
    }
    return gt_load_lanes(src + goff[a], m);
}

/* The V planes of nch channels, v[c*vcs + j*hcs + u] for groups u < nu (a multiple of GT_VL), of
 * a grid that is never built: channel c's grid vectors are read from src + c*chan through the
 * grid map (wn_grid_vec), four per GT_VL groups, split one step ahead, since a step also needs
 * the first positions of the next step's groups: vectors up to 4*nu/GT_VL + 3 are read. A grid
 * without padding columns comes with rmask: per step, the lanes whose groups start a grid row
 * (their position 4u is taken as 0), then those that end one (4u + 5 taken as 0); else NULL. */
static inline void wn_transform_lanes(float *v, size_t vcs, size_t hcs, const float *src,
                                      size_t chan, int npix, const unsigned *gmask,
                                      const int *goff, const unsigned *rmask, int nch, int nu)
{
    for (int c = 0; c < nch; c++) {
        const float *sc = src + (size_t)c * chan;
        float *vc = v + (size_t)c * vcs;
        gt_vf d[4], n[4];
        wn_split(d, wn_grid_vec(sc, gmask, goff, 0, npix), wn_grid_vec(sc, gmask, goff, 1, npix),
                 wn_grid_vec(sc, gmask, goff, 2, npix), wn_grid_vec(sc, gmask, goff, 3, npix));
        for (int u = 0; u < nu; u += GT_VL) {
            int a = 4 * u / GT_VL + 4;
            wn_split(n, wn_grid_vec(sc, gmask, goff, a, npix),
                     wn_grid_vec(sc, gmask, goff, a + 1, npix),
                     wn_grid_vec(sc, gmask, goff, a + 2, npix),
                     wn_grid_vec(sc, gmask, goff, a + 3, npix));
            const unsigned *rm = rmask ? rmask + 2 * (u / GT_VL) : (const unsigned[2]){0, 0};
            wn_transform_vec(vc + u, hcs, d, n, rm[0], rm[1]);
            for (int i = 0; i < 4; i++) d[i] = n[i];
        }
    }
}

/*
 * The weight gradient by the same transforms. For group m with output gradients dy_0..dy_3,
 * dL/dM_j = a_j = (A dy)_j, the transpose of the output transform A^T:
 *   a = (dy0, dy0+dy1+dy2+dy3, dy0-dy1+dy2-dy3, dy0+2dy1+4dy2+8dy3, dy0-2dy1+4dy2-8dy3, dy3),
 * so dL/dU_j[oc][c][kh] = S_j = sum over m of a_j[oc][m] * V_j[c][m + kh*hp] (six outer-product
 * reductions of three taps each, gemm_tile.h's gt_dw_acc: 18 multiplies per group, channel and
 * filter instead of 36), and dL/dg = G^T S, since U = G g.
 */

/* a[j*plane + m*ocp + o] = a_j of group m for ngr groups, from dy transposed (t[l*ocp + o] =
 * dy of centre l, zero off pixels; rows up to 4*ngr). */
static inline void wn_transform_dy(float *a, size_t plane, const float *t, int ocp, int ngr)
{
    for (int m = 0; m < ngr; m++)
        for (int o = 0; o < ocp; o += GT_VL) {
            const float *r = t + (size_t)4 * m * ocp + o;
            gt_vf y0 = gt_load(r), y1 = gt_load(r + ocp), y2 = gt_load(r + 2 * (size_t)ocp),
                  y3 = gt_load(r + 3 * (size_t)ocp);
            gt_vf s02 = y0 + y2, s13 = y1 + y3, q02 = y0 + 4.0f * y2, q13 = 2.0f * y1 + 8.0f * y3;
            float *q = a + (size_t)m * ocp + o;
            gt_store(q, y0);
            gt_store(q + plane, s02 + s13);
            gt_store(q + 2 * plane, s02 - s13);
            gt_store(q + 3 * plane, q02 + q13);
            gt_store(q + 4 * plane, q02 - q13);
            gt_store(q + 5 * plane, y3);
        }
}

/* dweight (OC x C x 3 x 3) += G^T S, S[j*n + (oc*C + c)*3 + kh] = S_j, n = OC*C*3; in double. */
static inline void wn_dw_combine(float *dweight, const float *S, int OC, int C)
{
    size_t n = (size_t)OC * C * 3;
    for (size_t i = 0; i < n; i++) {
        double s0 = S[i], s1 = S[n + i], s2 = S[2 * n + i], s3 = S[3 * n + i],
               s4 = S[4 * n + i], s5 = S[5 * n + i];
        float *w = dweight + 3 * i; /* (oc, c, kh) row of three kw taps */
        w[0] += (float)(s0 / 4 - (s1 + s2) / 6 + (s3 + s4) / 24);
        w[1] += (float)((s2 - s1) / 6 + (s3 - s4) / 12);
        w[2] += (float)((s3 + s4 - s1 - s2) / 6 + s5);
    }
}

/* One pass of a tile: acc[r][g] lane e = M_j of row r at group m0 + g*GT_VL + e, the sum over
 * ch < nc, kh < 3 of U_j(row r, ch, kh) * V_j[ch][m0 + g*GT_VL + e + kh*hp], with ap the tile's
 * packed panel and vj plane j of channel 0. */
static inline __attribute__((always_inline)) void wn_tile_acc(gt_vf acc[WN_R][WN_G], int nc,
                                                              const float *ap, const float *vj,
                                                              size_t vcs, ptrdiff_t hp,
                                                              size_t m0, int j)
{
    for (int r = 0; r < WN_R; r++)
        for (int g = 0; g < WN_G; g++) acc[r][g] = (gt_vf){0};
    const float *ak = ap + (size_t)j * nc * 3 * WN_R;
    /* Not unrolled: the accumulators (24 with AVX-512, 12 with 16 registers) leave no registers
     * for a second step's operands, and GCC's unrolled schedule spills accumulators. */
#pragma GCC unroll 1
    for (int ch = 0; ch < nc; ch++) {
#pragma GCC unroll 1
        for (int kh = 0; kh < 3; kh++, ak += WN_R) {
            const float *vk = vj + (size_t)ch * vcs + kh * hp + m0;
            gt_vf x[WN_G];
            for (int g = 0; g < WN_G; g++) x[g] = gt_load(vk + g * GT_VL);
            for (int r = 0; r < WN_R; r++) {
                gt_vf a = gt_splat(ak + r);
                for (int g = 0; g < WN_G; g++) acc[r][g] += a * x[g];
            }
        }
    }
}

/* The output transform of one vector of groups, m[j] = M_j: the four outputs of every group,
 * interleaved into out[0..3], GT_VL consecutive outputs each (out[k] holds groups
 * k*GT_VL/4 .. (k+1)*GT_VL/4 - 1). */
static inline void wn_output(const gt_vf m[WN_J], gt_vf out[4])
{
    gt_vf a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
    gt_vf y0 = m[0] + a + c, y1 = b + 2.0f * d, y2 = a + 4.0f * c, y3 = b + 8.0f * d + m[5];
    /* Zip (y0, y1) and (y2, y3) into pairs, then the pairs into quadruples. */
    gt_vi zl, zh, q0, q1;
    for (int e = 0; e < GT_VL; e++) {
        zl[e] = e / 2 + (e & 1) * GT_VL;
        zh[e] = GT_VL / 2 + e / 2 + (e & 1) * GT_VL;
        int grp = e / 4, t = e % 4; /* lane e of a quadruple vector: output t of group grp */
        q0[e] = 2 * grp + (t < 2 ? t : GT_VL + t - 2);
        q1[e] = q0[e] + GT_VL / 2;
    }
    gt_vf p01l = gt_shuffle2(y0, y1, zl), p01h = gt_shuffle2(y0, y1, zh);
    gt_vf p23l = gt_shuffle2(y2, y3, zl), p23h = gt_shuffle2(y2, y3, zh);
    out[0] = gt_shuffle2(p01l, p23l, q0);
    out[1] = gt_shuffle2(p01l, p23l, q1);
    out[2] = gt_shuffle2(p01h, p23h, q0);
    out[3] = gt_shuffle2(p01h, p23h, q1);
}

#endif
