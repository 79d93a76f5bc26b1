/* Run-time choice of the kernels' ISA variant (see isa.h) and the entry points that forward to
 * it; in a LEGR_NATIVE build only the name of the build's own ISA. */
#include "legr/isa.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "legr/layers.h"
#include "legr/util.h"

#ifdef LEGR_DISPATCH

/* Every function of the per-ISA files that code outside them calls: XR(return type, name,
 * (parameters), (arguments)) for those returning a value, XV(...) for the void ones. */
#define LEGR_ISA_FUNCTIONS(XR, XV) \
    XR(int, conv_out_size, (int size, int k, int s, int p), \
        (size, k, s, p)) \
    XV(void, im2col, (float *col, const float *inp, int N, int C, int H, int W, int K, int S, \
        int P), \
        (col, inp, N, C, H, W, K, S, P)) \
    XV(void, col2im_acc, (float *dinp, const float *col, int N, int C, int H, int W, int K, \
        int S, int P), \
        (dinp, col, N, C, H, W, K, S, P)) \
    XR(long long, conv_workspace_floats, (int N, int C, int H, int W, int OC, int K, int S, \
        int P, int G), \
        (N, C, H, W, OC, K, S, P, G)) \
    XV(void, conv_forward, (float *out, float *col, const float *inp, const float *weight, \
        int N, int C, int H, int W, int OC, int K, int S, int P, int G), \
        (out, col, inp, weight, N, C, H, W, OC, K, S, P, G)) \
    XV(void, conv_forward_affine, (float *out, float *col, const float *inp, \
        const float *weight, int N, int C, int H, int W, int OC, int K, int S, int P, int G, \
        const float *mean, const float *scale, const float *shift, const float *res, float cap), \
        (out, col, inp, weight, N, C, H, W, OC, K, S, P, G, mean, scale, shift, res, cap)) \
    XV(void, conv_backward, (float *dinp, float *dweight, float *col, const float *dout, \
        const float *inp, const float *weight, int N, int C, int H, int W, int OC, int K, \
        int S, int P, int G), \
        (dinp, dweight, col, dout, inp, weight, N, C, H, W, OC, K, S, P, G)) \
    XV(void, conv_backward_set, (float *dinp, float *dweight, float *col, const float *dout, \
        const float *inp, const float *weight, int N, int C, int H, int W, int OC, int K, \
        int S, int P, int G), \
        (dinp, dweight, col, dout, inp, weight, N, C, H, W, OC, K, S, P, G)) \
    XV(void, conv_forward_ref, (float *out, const float *inp, const float *weight, int N, \
        int C, int H, int W, int OC, int K, int S, int P, int G), \
        (out, inp, weight, N, C, H, W, OC, K, S, P, G)) \
    XV(void, conv_backward_ref, (float *dinp, float *dweight, const float *dout, \
        const float *inp, const float *weight, int N, int C, int H, int W, int OC, int K, \
        int S, int P, int G), \
        (dinp, dweight, dout, inp, weight, N, C, H, W, OC, K, S, P, G)) \
    XV(void, conv_group_forward, (float *out, const float *inp, const float *weight, int N, \
        int C, int H, int W, int OC, int K, int S, int P, int G), \
        (out, inp, weight, N, C, H, W, OC, K, S, P, G)) \
    XV(void, conv_group_backward, (float *dinp, float *dweight, const float *dout, \
        const float *inp, const float *weight, int N, int C, int H, int W, int OC, int K, \
        int S, int P, int G), \
        (dinp, dweight, dout, inp, weight, N, C, H, W, OC, K, S, P, G)) \
    XV(void, bn_forward_train, (float *out, float *save_mean, float *save_rstd, \
        float *run_mean, float *run_var, const float *inp, const float *gamma, \
        const float *beta, int C, int M, float momentum, float eps, const BnReduce *red), \
        (out, save_mean, save_rstd, run_mean, run_var, inp, gamma, beta, C, M, momentum, eps, \
         red)) \
    XV(void, bn_forward_eval, (float *out, const float *inp, const float *gamma, \
        const float *beta, const float *run_mean, const float *run_var, int C, int M, float eps), \
        (out, inp, gamma, beta, run_mean, run_var, C, M, eps)) \
    XV(void, bn_backward, (float *dinp, float *dgamma, float *dbeta, const float *dout, \
        const float *inp, const float *save_mean, const float *save_rstd, const float *gamma, \
        int C, int M, const BnReduce *red), \
        (dinp, dgamma, dbeta, dout, inp, save_mean, save_rstd, gamma, C, M, red)) \
    XV(void, bn_backward_set, (float *dinp, float *dgamma, float *dbeta, const float *dout, \
        const float *mask, float cap, const float *inp, const float *save_mean, \
        const float *save_rstd, const float *gamma, int C, int M, const BnReduce *red), \
        (dinp, dgamma, dbeta, dout, mask, cap, inp, save_mean, save_rstd, gamma, C, M, red)) \
    XV(void, bn_relu_forward_train, (float *out, float *save_mean, float *save_rstd, \
        float *run_mean, float *run_var, const float *inp, const float *gamma, \
        const float *beta, int C, int M, float momentum, float eps, const BnReduce *red, \
        float cap), \
        (out, save_mean, save_rstd, run_mean, run_var, inp, gamma, beta, C, M, momentum, eps, \
         red, cap)) \
    XV(void, bn_relu_forward_eval, (float *out, const float *inp, const float *gamma, \
        const float *beta, const float *run_mean, const float *run_var, int C, int M, \
        float eps, float cap), \
        (out, inp, gamma, beta, run_mean, run_var, C, M, eps, cap)) \
    XV(void, bn_relu_backward, (float *dinp, float *dgamma, float *dbeta, const float *dout, \
        const float *out, float cap, const float *inp, const float *save_mean, \
        const float *save_rstd, const float *gamma, int C, int M, const BnReduce *red), \
        (dinp, dgamma, dbeta, dout, out, cap, inp, save_mean, save_rstd, gamma, C, M, red)) \
    XV(void, relu_forward, (float *out, const float *inp, long long n), \
        (out, inp, n)) \
    XV(void, relu_backward, (float *dinp, const float *dout, const float *out, long long n), \
        (dinp, dout, out, n)) XV(void, relu_backward_set, (float *dinp, const float *dout, \
        const float *out, long long n), (dinp, dout, out, n)) XV(void, relu6_forward, \
        (float *out, const float *inp, long long n), \
        (out, inp, n)) \
    XV(void, relu6_backward, (float *dinp, const float *dout, const float *out, long long n), \
        (dinp, dout, out, n)) XV(void, add_forward, (float *out, const float *a, \
        const float *b, long long n), \
        (out, a, b, n)) \
    XV(void, add_backward, (float *da, float *db, const float *dout, long long n), \
        (da, db, dout, n)) \
    XV(void, add_backward_set, (float *da, float *db, const float *dout, long long n, \
        int set_a, int set_b), \
        (da, db, dout, n, set_a, set_b)) \
    XV(void, add_relu_forward, (float *out, const float *a, const float *b, long long n), \
        (out, a, b, n)) \
    XV(void, add_relu_backward, (float *da, float *db, const float *dout, const float *out, \
        long long n, int set_a, int set_b), \
        (da, db, dout, out, n, set_a, set_b)) \
    XV(void, bias_forward, (float *out, const float *bias, int OC, long long M), \
        (out, bias, OC, M)) \
    XV(void, bias_backward, (float *dbias, const float *dout, int OC, long long M), \
        (dbias, dout, OC, M))

/* The three compiled copies of each. */
#define LEGR_ISA_VARIANTS(ret, f, params, args) extern __typeof__(f) f##_avx512, f##_avx2, f##_sse;
LEGR_ISA_FUNCTIONS(LEGR_ISA_VARIANTS, LEGR_ISA_VARIANTS)

typedef struct {
    const char *name;
#define LEGR_ISA_FIELD(ret, f, params, args) __typeof__(f) *f;
    LEGR_ISA_FUNCTIONS(LEGR_ISA_FIELD, LEGR_ISA_FIELD)
} KernelIsa;

#define LEGR_ISA_AVX512(ret, f, params, args) .f = f##_avx512,
#define LEGR_ISA_AVX2(ret, f, params, args) .f = f##_avx2,
#define LEGR_ISA_SSE(ret, f, params, args) .f = f##_sse,
/* Widest first. */
static const KernelIsa kernel_isas[] = {
    {.name = "avx512", LEGR_ISA_FUNCTIONS(LEGR_ISA_AVX512, LEGR_ISA_AVX512)},
    {.name = "avx2", LEGR_ISA_FUNCTIONS(LEGR_ISA_AVX2, LEGR_ISA_AVX2)},
    {.name = "sse", LEGR_ISA_FUNCTIONS(LEGR_ISA_SSE, LEGR_ISA_SSE)},
};
enum { N_ISAS = sizeof kernel_isas / sizeof *kernel_isas };

/* Whether this CPU (and its OS, which must save the wider registers) runs variant i: the
 * features of -march=x86-64-v4, -v3 and the x86-64 baseline that the compiler may use. */
static int cpu_runs(int i)
{
    __builtin_cpu_init();
    switch (i) {
    case 0:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512cd") && cpu_runs(1);
    case 1:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
    default: return 1;
    }
}

static const KernelIsa *chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose(void)
{
    const char *want = getenv("LEGR_ISA");
    for (int i = 0; i < N_ISAS && !chosen; i++) {
        int named = want && *want && strcmp(want, kernel_isas[i].name) == 0;
        if (named && !cpu_runs(i))
            legr_fail(LEGR_EXIT_USAGE, __FILE__, __LINE__,
                      "LEGR_ISA=%s: this CPU cannot run it (it runs: %s)", want,
                      legr_isa_available());
        if (named || ((!want || !*want) && cpu_runs(i))) chosen = &kernel_isas[i];
    }
    if (!chosen)
        legr_fail(LEGR_EXIT_USAGE, __FILE__, __LINE__,
                  "LEGR_ISA=%s: unknown (avx512, avx2 or sse; this CPU runs: %s)", want,
                  legr_isa_available());
}

static const KernelIsa *isa(void)
{
    pthread_once(&chosen_once, choose);
    return chosen;
}

const char *legr_isa(void) { return isa()->name; }

int legr_isa_supported(const char *name)
{
    for (int i = 0; i < N_ISAS; i++)
        if (strcmp(name, kernel_isas[i].name) == 0) return cpu_runs(i);
    return 0;
}

const char *legr_isa_available(void)
{
    static char list[64];
    list[0] = '\0';
    for (int i = 0; i < N_ISAS; i++)
        if (cpu_runs(i))
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "",
                     kernel_isas[i].name);
    return list;
}

/* The entry points: the chosen variant's copy. */
#define LEGR_ISA_CALL_R(ret, f, params, args) \
    ret f params { return isa()->f args; }
#define LEGR_ISA_CALL_V(ret, f, params, args) \
    ret f params { isa()->f args; }
LEGR_ISA_FUNCTIONS(LEGR_ISA_CALL_R, LEGR_ISA_CALL_V)

#else /* LEGR_NATIVE: the kernels were compiled once, for this machine */

#include "gemm_tile.h"

#define LEGR_ISA_STR2(x) #x
#define LEGR_ISA_STR(x) LEGR_ISA_STR2(x)

const char *legr_isa(void) { return "native-" LEGR_ISA_STR(GT_VL) "-lane"; }

int legr_isa_supported(const char *name) { return strcmp(name, legr_isa()) == 0; }

const char *legr_isa_available(void) { return legr_isa(); }

#endif
