/* Row-major single-precision GEMM helpers over OpenBLAS, named by which operand is transposed. */
#ifndef LEGR_NN_SGEMM_H
#define LEGR_NN_SGEMM_H

#include <cblas.h>

/*
 * Every helper computes C (M x N, row-major, leading dimension ldc) =
 * alpha * op(A) * op(B) + beta * C, where op(A) is M x K and op(B) is K x N.
 * The suffix says how A and B are stored: n = as op() sees them, t = stored transposed.
 * lda/ldb are the row strides of A and B as stored.
 */
static inline void sgemm_nn(int M, int N, int K, float alpha, const float *A, int lda,
                            const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta,
                C, ldc);
}

/* A stored (M, K), B stored (N, K). */
static inline void sgemm_nt(int M, int N, int K, float alpha, const float *A, int lda,
                            const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

/* A stored (K, M), B stored (K, N). */
static inline void sgemm_tn(int M, int N, int K, float alpha, const float *A, int lda,
                            const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

/* A stored (K, M), B stored (N, K). */
static inline void sgemm_tt(int M, int N, int K, float alpha, const float *A, int lda,
                            const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

#endif
