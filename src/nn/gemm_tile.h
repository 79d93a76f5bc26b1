/* Register-tiled single-precision GEMM micro-kernels (GCC vector extensions) for the blocked convolution. */
#ifndef LEGR_NN_GEMM_TILE_H
#define LEGR_NN_GEMM_TILE_H

#include <stddef.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#include <stdint.h>
#endif

/*
 * Vectors are as wide as the build's widest float SIMD (-march=native: AVX-512 gives 16 lanes);
 * without AVX the same code runs on narrower registers. Loads and stores go through an
 * unaligned, may_alias vector type, so any float pointer is fine.
 */
#if defined(__AVX512F__)
#define GT_VL 16
#elif defined(__AVX__)
#define GT_VL 8
#else
#define GT_VL 4
#endif
typedef float gt_vf __attribute__((vector_size(GT_VL * sizeof(float))));
typedef float gt_vfu __attribute__((vector_size(GT_VL * sizeof(float)), aligned(4), may_alias));
typedef int gt_vi __attribute__((vector_size(GT_VL * sizeof(int))));

/* Lanes of the pair (x, y) picked by m (index j < GT_VL: x[j], else y[j - GT_VL]): GCC's
 * __builtin_shuffle. Clang (the fuzzing build) has no run-time-mask form, so there the lanes are
 * taken one by one. */
#if defined(__clang__)
static inline gt_vf gt_shuffle2(gt_vf x, gt_vf y, gt_vi m)
{
    gt_vf r;
    for (int j = 0; j < GT_VL; j++) {
        int k = m[j] & (2 * GT_VL - 1);
        r[j] = k < GT_VL ? x[k] : y[k - GT_VL];
    }
    return r;
}
#else
#define gt_shuffle2(x, y, m) __builtin_shuffle((x), (y), (m))
#endif

/*
 * Register blocking. A tile's accumulators and the operand vectors of one reduction step must fit
 * in the vector registers, or GCC spills accumulators inside the inner loop: AVX-512 has 32
 * registers (an 8 x 3 tile: 24 accumulators, 3 B vectors, 1 broadcast), AVX2 and SSE have 16
 * (4 x 3: 12 + 3 + 1).
 */
#if GT_VL == 16
enum {
    GT_MR = 8,     /* rows of C per tile (rows of a packed A panel) */
    GT_NV = 3,     /* vectors of C per tile row */
    GT_DW_ACC = 18, /* accumulators of gt_dw_one */
    GT_DR = 4      /* rows (and columns) of gt_gemm_abt_acc's dot-product tiles */
};
#else
enum { GT_MR = 4, GT_NV = 3, GT_DW_ACC = 12, GT_DR = 3 };
#endif
enum { GT_NR = GT_NV * GT_VL }; /* columns of C per tile; B row strides are multiples of this */

static inline gt_vf gt_load(const float *p) { return *(const gt_vfu *)p; }
/* All lanes = *p. (Written as x - 0, which folds to a plain broadcast load; x + 0 would not
 * fold, because -0 + 0 is +0.) */
static inline gt_vf gt_splat(const float *p) { return *p - (gt_vf){0}; }
static inline void gt_store(float *p, gt_vf v) { *(gt_vfu *)p = v; }

/* Pack A (M x K, element (i, k) at a[i*rs + k*cs]) into panels of GT_MR rows:
 * ap[(i/GT_MR)*GT_MR*K + k*GT_MR + i%GT_MR]; rows past M are zero. Needs
 * ceil(M/GT_MR)*GT_MR*K floats. */
static inline void gt_pack_a(float *ap, const float *a, int M, int K, size_t rs, size_t cs)
{
    for (int i0 = 0; i0 < M; i0 += GT_MR) {
        float *p = ap + (size_t)i0 * K;
        for (int k = 0; k < K; k++)
            for (int r = 0; r < GT_MR; r++)
                p[(size_t)k * GT_MR + r] = i0 + r < M ? a[(size_t)(i0 + r) * rs + (size_t)k * cs] : 0.0f;
    }
}

/*
 * B operands are addressed as "rows of taps": row k = (c, kh, kw) with kh, kw in [0, kk) starts
 * at base + c*cs + kh*rs + kw*ws. A plain row-major B (K x N, ldb) is {b, ldb, 0, 0, 1}; an
 * im2col matrix of a K x K conv is {col, K*K*ldb, K*ldb, ldb, K}; and a padded input grid read
 * at shifted offsets is an im2col matrix that is never built ({pad, plane, pitch, 1, K}).
 */
typedef struct {
    const float *base;
    size_t cs;
    ptrdiff_t rs, ws;
    int kk;
} GtRows;

/* One tile's sums: acc[r][v] lane e = sum_k ap[k*GT_MR + r] * B_k[j0 + v*GT_VL + e], k over the
 * nc*kk*kk rows of b. Every row must have GT_NR readable floats from j0. Always inlined, so that
 * the accumulators stay in registers through the caller's store. */
static inline __attribute__((always_inline)) void gt_tile_acc(gt_vf acc[GT_MR][GT_NV], int nc,
                                                              const float *ap, const GtRows *b,
                                                              size_t j0)
{
    for (int r = 0; r < GT_MR; r++)
        for (int v = 0; v < GT_NV; v++) acc[r][v] = (gt_vf){0};
    const float *ak = ap;
    for (int ch = 0; ch < nc; ch++) {
        for (int kh = 0; kh < b->kk; kh++) {
            const float *bk = b->base + j0 + (size_t)ch * b->cs + kh * b->rs;
            for (int kw = 0; kw < b->kk; kw++, bk += b->ws, ak += GT_MR) {
                gt_vf bv[GT_NV];
                for (int v = 0; v < GT_NV; v++) bv[v] = gt_load(bk + v * GT_VL);
                for (int r = 0; r < GT_MR; r++) {
                    gt_vf av = gt_splat(ak + r);
                    for (int v = 0; v < GT_NV; v++) acc[r][v] += av * bv[v];
                }
            }
        }
    }
}

/* gt_tile_acc's sums added to acc, over B rows given by a tap list: row (ch, t) for ch < nc and
 * t < ntaps starts at base + ch*cs + taps[t]. For convs whose taps do not form a square. */
static inline __attribute__((always_inline)) void gt_tile_add_taps(gt_vf acc[GT_MR][GT_NV],
                                                                   int nc, const float *ap,
                                                                   const float *base, size_t cs,
                                                                   const ptrdiff_t *taps,
                                                                   int ntaps, size_t j0)
{
    const float *ak = ap;
    for (int ch = 0; ch < nc; ch++) {
        for (int t = 0; t < ntaps; t++, ak += GT_MR) {
            const float *bk = base + j0 + (size_t)ch * cs + taps[t];
            gt_vf bv[GT_NV];
            for (int v = 0; v < GT_NV; v++) bv[v] = gt_load(bk + v * GT_VL);
            for (int r = 0; r < GT_MR; r++) {
                gt_vf av = gt_splat(ak + r);
                for (int v = 0; v < GT_NV; v++) acc[r][v] += av * bv[v];
            }
        }
    }
}

/* One tile: C[r][j] = sum_k ap[k*GT_MR + r] * B_k[j0 + j] for r < mr, j < nr (overwrites). */
static inline void gt_tile(int nc, const float *ap, const GtRows *b, size_t j0, float *c,
                           size_t ldc, int mr, int nr)
{
    gt_vf acc[GT_MR][GT_NV];
    gt_tile_acc(acc, nc, ap, b, j0);
    if (nr == GT_NR) {
        for (int r = 0; r < mr; r++)
            for (int v = 0; v < GT_NV; v++) gt_store(c + (size_t)r * ldc + v * GT_VL, acc[r][v]);
        return;
    }
    for (int r = 0; r < mr; r++) {
        float row[GT_NR];
        for (int v = 0; v < GT_NV; v++) gt_store(row + v * GT_VL, acc[r][v]);
        memcpy(c + (size_t)r * ldc, row, (size_t)nr * sizeof(float));
    }
}

#if GT_VL == 8 && defined(__AVX2__)
/*
 * Lane permutations of the 8-lane lane-map loads and stores, as tables of byte indices built at
 * compile time (pdep/pext would compute them, but run in slow microcode on AMD before Zen 3).
 * GT_PACK(m): byte i = the lane of the i-th set bit of m (the lanes a store gathers down);
 * GT_SPREAD(m): byte e = the number of set bits of m below bit e (where a load's lane e comes
 * from); bytes of unused positions are 0.
 */
#define GT_BIT(m, e) (((m) >> (e)) & 1)
#define GT_BELOW(m, e)                                                                            \
    (((e) > 0 ? GT_BIT(m, 0) : 0) + ((e) > 1 ? GT_BIT(m, 1) : 0) + ((e) > 2 ? GT_BIT(m, 2) : 0) + \
     ((e) > 3 ? GT_BIT(m, 3) : 0) + ((e) > 4 ? GT_BIT(m, 4) : 0) + ((e) > 5 ? GT_BIT(m, 5) : 0) + \
     ((e) > 6 ? GT_BIT(m, 6) : 0))
#define GT_PACK1(m, e) (GT_BIT(m, e) ? (uint64_t)(e) << (8 * GT_BELOW(m, e)) : 0)
#define GT_SPREAD1(m, e) (GT_BIT(m, e) ? (uint64_t)GT_BELOW(m, e) << (8 * (e)) : 0)
#define GT_PACK(m)                                                                                \
    (GT_PACK1(m, 0) | GT_PACK1(m, 1) | GT_PACK1(m, 2) | GT_PACK1(m, 3) | GT_PACK1(m, 4) |         \
     GT_PACK1(m, 5) | GT_PACK1(m, 6) | GT_PACK1(m, 7))
#define GT_SPREAD(m)                                                                              \
    (GT_SPREAD1(m, 0) | GT_SPREAD1(m, 1) | GT_SPREAD1(m, 2) | GT_SPREAD1(m, 3) |                  \
     GT_SPREAD1(m, 4) | GT_SPREAD1(m, 5) | GT_SPREAD1(m, 6) | GT_SPREAD1(m, 7))
#define GT_T4(f, m) f(m), f((m) + 1), f((m) + 2), f((m) + 3)
#define GT_T16(f, m) GT_T4(f, m), GT_T4(f, (m) + 4), GT_T4(f, (m) + 8), GT_T4(f, (m) + 12)
#define GT_T64(f, m) GT_T16(f, m), GT_T16(f, (m) + 16), GT_T16(f, (m) + 32), GT_T16(f, (m) + 48)
#define GT_T256(f) GT_T64(f, 0), GT_T64(f, 64), GT_T64(f, 128), GT_T64(f, 192)
static const uint64_t gt_lane_pack[256] = {GT_T256(GT_PACK)};
static const uint64_t gt_lane_spread[256] = {GT_T256(GT_SPREAD)};

/* Lanes e < n: all ones; the others 0. */
static inline __m256i gt_first_lanes(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

/* The lanes of v selected by bit e of mask, in lane order, to p[0], p[1], ... (AVX-512: one
 * compress and one masked store; AVX2: a permute and a masked store). */
static inline void gt_store_lanes(float *p, gt_vf v, unsigned mask)
{
#if GT_VL == 16
    __m512 c = _mm512_maskz_compress_ps((__mmask16)mask, (__m512)v);
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << __builtin_popcount(mask)) - 1), c);
#elif GT_VL == 8 && defined(__AVX2__)
    if (mask == 0xffu) {
        gt_store(p, v);
        return;
    }
    /* A permute moves the selected lanes down, a masked store writes the first popcount(mask). */
    __m256i idx = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)gt_lane_pack[mask & 0xffu]));
    _mm256_maskstore_ps(p, gt_first_lanes(__builtin_popcount(mask)),
                        _mm256_permutevar8x32_ps((__m256)v, idx));
#else
    for (int e = 0; e < GT_VL; e++)
        if (mask >> e & 1) *p++ = v[e];
#endif
}

/* The inverse: p[0], p[1], ... to the lanes of mask, in lane order; the other lanes are 0.
 * Reads only the popcount(mask) floats it uses. */
static inline gt_vf gt_load_lanes(const float *p, unsigned mask)
{
#if GT_VL == 16
    return (gt_vf)_mm512_maskz_expandloadu_ps((__mmask16)mask, p);
#elif GT_VL == 8 && defined(__AVX2__)
    if (mask == 0xffu) return gt_load(p);
    /* A masked load of the first popcount(mask) floats (the others are not touched), a permute
     * that sends the i-th of them to the i-th selected lane, and the other lanes cleared. */
    const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256i idx = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)gt_lane_spread[mask & 0xffu]));
    __m256i keep = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)mask), bits), bits);
    __m256 x = _mm256_permutevar8x32_ps(
        _mm256_maskload_ps(p, gt_first_lanes(__builtin_popcount(mask))), idx);
    return (gt_vf)_mm256_and_ps(x, _mm256_castsi256_ps(keep));
#else
    gt_vf v = {0};
    for (int e = 0; e < GT_VL; e++)
        if (mask >> e & 1) v[e] = *p++;
    return v;
#endif
}

/* Start of B row k. */
static inline const float *gt_row(const GtRows *b, int k)
{
    int kk2 = b->kk * b->kk;
    int q = k % kk2;
    return b->base + (size_t)(k / kk2) * b->cs + (q / b->kk) * b->rs + (q % b->kk) * b->ws;
}

/* Floats of gt_gemm's packed B chunk (a buffer of the caller's workspace), 256 KiB: at 64 KiB a
 * tile of a conv with about a thousand taps filled it, and the weights (past L2) were read again
 * for every tile. */
enum { GT_GEMM_PACK = 1 << 16 };

/* Rows of a reduction slice when K rows of B are packed into a buffer of `pack` floats that
 * must hold at least min_tiles tiles: K split into the fewest equal slices whose min_tiles tiles
 * fit (K itself when they all do). A chunk of the buffer then holds pack / (slice*GT_NR) >=
 * min_tiles tiles. */
static inline size_t gt_slice_rows(size_t K, size_t min_tiles, size_t pack)
{
    size_t kmax = pack / (min_tiles * GT_NR); /* the most rows min_tiles tiles may have */
    size_t nks = (K + kmax - 1) / kmax;       /* slices */
    return (K + nks - 1) / nks;
}

/*
 * C (M x N, ldc) = A x B with A packed by gt_pack_a (M x nc*kk*kk) and B given by rows; every
 * B row must be readable up to N rounded up to GT_NR. Columns go in chunks of whole tiles whose
 * B rows are first copied, tile by tile, into one contiguous buffer (K rows of GT_NR floats a
 * tile), and each panel of GT_MR rows runs over a whole chunk before the next panel:
 * - in place, a tile's K rows lie a B row stride apart, a page or more for im2col blocks, so
 *   every reduction step missed the TLB and the caches (ResNet-50's 7x7 stem: K = 147 rows, the
 *   tile at a third of its speed); packed, a tile's rows stream;
 * - C is written in GT_MR streams of whole chunk rows; one tile at a time under every panel
 *   touched all M rows of C at once, ldc apart.
 * When one tile's rows exceed the buffer, B is read in place. pk: GT_GEMM_PACK floats.
 */
static inline void gt_gemm(int M, int N, int nc, const float *ap, const GtRows *b, float *c,
                           size_t ldc, float *pk)
{
    const size_t K = (size_t)nc * b->kk * b->kk, tile_floats = K * GT_NR;
    const int per_chunk = tile_floats <= GT_GEMM_PACK ? (int)(GT_GEMM_PACK / tile_floats) : 8;
    const int packed = tile_floats <= GT_GEMM_PACK;
    for (int j0 = 0; j0 < N; j0 += per_chunk * GT_NR) {
        int j1 = N - j0 < per_chunk * GT_NR ? N : j0 + per_chunk * GT_NR;
        if (packed)
            for (int j = j0; j < j1; j += GT_NR)
                for (size_t k = 0; k < K; k++) {
                    const float *src = gt_row(b, (int)k) + j;
                    float *dst = pk + (size_t)(j - j0) / GT_NR * tile_floats + k * GT_NR;
                    for (int v = 0; v < GT_NV; v++) gt_store(dst + v * GT_VL, gt_load(src + v * GT_VL));
                }
        for (int i = 0; i < M; i += GT_MR) {
            int mr = M - i < GT_MR ? M - i : GT_MR;
            for (int j = j0; j < j1; j += GT_NR) {
                int nr = j1 - j < GT_NR ? j1 - j : GT_NR;
                GtRows t = {pk + (size_t)(j - j0) / GT_NR * tile_floats, GT_NR, 0, 0, 1};
                gt_tile(packed ? (int)K : nc, ap + (size_t)i * K, packed ? &t : b,
                        packed ? 0 : (size_t)j, c + (size_t)i * ldc + j, ldc, mr, nr);
            }
        }
    }
}

/* C (M x N, ldc) += A (M x L, lda) x B^T, B's N rows given by rows: dot products along rows;
 * L a multiple of GT_VL. Tiles of GT_DR x GT_DR dot products; a short edge tile repeats its last row
 * (computed and not stored) so every tile runs the same code. */
static inline void gt_gemm_abt_acc(int M, int N, int L, const float *a, size_t lda,
                                   const GtRows *b, float *c, size_t ldc)
{
    for (int i0 = 0; i0 < M; i0 += GT_DR) {
        const float *ar[GT_DR];
        for (int r = 0; r < GT_DR; r++) ar[r] = a + (size_t)(i0 + r < M ? i0 + r : M - 1) * lda;
        for (int j0 = 0; j0 < N; j0 += GT_DR) {
            const float *br[GT_DR];
            for (int s = 0; s < GT_DR; s++) br[s] = gt_row(b, j0 + s < N ? j0 + s : N - 1);
            gt_vf acc[GT_DR][GT_DR];
            for (int r = 0; r < GT_DR; r++)
                for (int s = 0; s < GT_DR; s++) acc[r][s] = (gt_vf){0};
            for (int l = 0; l < L; l += GT_VL) {
                gt_vf av[GT_DR], bv[GT_DR];
                for (int r = 0; r < GT_DR; r++) av[r] = gt_load(ar[r] + l);
                for (int s = 0; s < GT_DR; s++) bv[s] = gt_load(br[s] + l);
                for (int r = 0; r < GT_DR; r++)
                    for (int s = 0; s < GT_DR; s++) acc[r][s] += av[r] * bv[s];
            }
            for (int r = 0; r < GT_DR && i0 + r < M; r++) {
                for (int s = 0; s < GT_DR && j0 + s < N; s++) {
                    float t = 0.0f;
                    for (int e = 0; e < GT_VL; e++) t += acc[r][s][e];
                    c[(size_t)(i0 + r) * ldc + j0 + s] += t;
                }
            }
        }
    }
}

/* Transpose the GT_VL x GT_VL matrix b (b[i] = row i) in place: at each level s, rows i and
 * i + s (bit s of i clear) swap their off-diagonal s x s blocks, i.e. bit s of the row index
 * trades places with bit s of the column index; over all levels that is the transpose. */
static inline void gt_transpose(gt_vf *b)
{
    for (int s = 1; s < GT_VL; s *= 2) {
        gt_vi lo, hi;
        for (int j = 0; j < GT_VL; j++) {
            lo[j] = (j & s) ? GT_VL + j - s : j;
            hi[j] = (j & s) ? GT_VL + j : j + s;
        }
        for (int i = 0; i < GT_VL; i++) {
            if (i & s) continue;
            gt_vf x = b[i], y = b[i + s];
            b[i] = gt_shuffle2(x, y, lo);
            b[i + s] = gt_shuffle2(x, y, hi);
        }
    }
}

/*
 * dW in outer-product form, for long reductions (thousands of pixels), over ntap <= 9 taps:
 *   dw[oc*kc + c*ntap + t] += sum over l < L of dyT[l*ocp + oc] * x[c*cs + toff[t] + l]
 * for oc < OC, c < C and t < ntap. dyT holds the output gradient transposed (a row of ocp >= OC
 * floats per pixel, ocp a multiple of GT_VL, zero past OC) and x the input as rows of taps: for a
 * direct 3x3 conv a padded grid read at shifted offsets, toff[kh*3 + kw] = kh*pitch + kw (nine
 * taps); for Winograd a V plane read at its three row shifts (wino_tile.h). Every (oc, tap) sum
 * runs over l in order in one register lane, so the whole reduction stays in registers (up to
 * GT_DW_ACC accumulators) and its operands come from L1: per pixel one or two vector loads of dyT and
 * ntap broadcasts per channel. (The dot-product form gt_gemm_abt_acc streams both operands from
 * L2 at two loads per four FMAs.)
 */
static inline __attribute__((always_inline)) void gt_dw_one(float *dw, size_t kc, int OC, int oc0,
                                                            int nv, int ncm, int c, int nc, int L,
                                                            const float *dyT, int ocp,
                                                            const float *x, size_t cs,
                                                            const ptrdiff_t *toff, int ntap)
{
    /* nv (1 or 2) vectors of oc x nc <= ncm channels (a short last group repeats channel c and
     * drops it), nv*ncm*ntap <= GT_DW_ACC accumulators: acc[(k*nv + a)*ntap + t] lane e is filter
     * oc0 + a*GT_VL + e, channel c + k, tap t. */
    gt_vf acc[GT_DW_ACC];
    for (int i = 0; i < GT_DW_ACC; i++) acc[i] = (gt_vf){0};
    const float *xk[GT_DW_ACC / 3];
    for (int k = 0; k < ncm; k++) xk[k] = x + (size_t)(c + (k < nc ? k : 0)) * cs;
    const float *d = dyT + oc0;
    for (int l = 0; l < L; l++, d += ocp) {
        gt_vf dv[2];
        dv[0] = gt_load(d);
        dv[1] = nv == 2 ? gt_load(d + GT_VL) : dv[0];
        for (int k = 0; k < ncm; k++)
            for (int t = 0; t < ntap; t++) {
                gt_vf xv = gt_splat(xk[k] + l + toff[t]);
                for (int a = 0; a < nv; a++) acc[(k * nv + a) * ntap + t] += xv * dv[a];
            }
    }
    for (int k = 0; k < nc; k++)
        for (int a = 0; a < nv; a++) {
            int ob = oc0 + a * GT_VL;
            for (int t = 0; t < ntap; t++)
                for (int e = 0; e < GT_VL && ob + e < OC; e++)
                    dw[(size_t)(ob + e) * kc + (size_t)(c + k) * ntap + t] +=
                        acc[(k * nv + a) * ntap + t][e];
        }
}

/* Callers pass ntap as a constant (9 or 3): inlined, the loops unroll and the accumulators stay
 * in registers, which a variable count would not allow. A pass takes two oc vectors when
 * 2*ntap accumulators fit (per pixel two dyT loads, each feeding GT_DW_ACC / 2 accumulators),
 * else one (one load, ntap or more broadcasts per channel). */
static inline __attribute__((always_inline)) void gt_dw_acc(float *dw, size_t kc, int OC, int C,
                                                            int L, const float *dyT, int ocp,
                                                            const float *x, size_t cs,
                                                            const ptrdiff_t *toff, int ntap)
{
    const int nc2 = GT_DW_ACC / (2 * ntap), nc1 = GT_DW_ACC / ntap; /* channels per pass */
    for (int oc0 = 0; oc0 < ocp;) {
        if (nc2 > 0 && ocp - oc0 >= 2 * GT_VL) {
            for (int c = 0; c < C; c += nc2)
                gt_dw_one(dw, kc, OC, oc0, 2, nc2, c, C - c < nc2 ? C - c : nc2, L, dyT, ocp, x,
                          cs, toff, ntap);
            oc0 += 2 * GT_VL;
        } else {
            for (int c = 0; c < C; c += nc1)
                gt_dw_one(dw, kc, OC, oc0, 1, nc1, c, C - c < nc1 ? C - c : nc1, L, dyT, ocp, x,
                          cs, toff, ntap);
            oc0 += GT_VL;
        }
    }
}

#endif
