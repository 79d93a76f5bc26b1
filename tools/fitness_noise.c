/* Measures how noisy a search fitness is: one base network, two architectures, many batch seeds.
 *
 * usage: legr-fitness-noise job.cfg base.h5 K [target]
 *
 * Architecture A is the identity ranking (alpha 1, kappa 0), B the first random member of the
 * search's initial population; both are pruned to `target` (default: the first of
 * search.target_flops; one target only, also when the search has several) and fine-tuned
 * search.tau steps exactly as in the search. For seeds s = 0..K-1 it measures
 *   f_A(s), f_B(s)     with the same mini-batch sequence s for both (search.batches = "shared")
 *   f_B(K+s)           with another sequence (search.batches = "per_candidate")
 * and prints the standard deviation of f_A (re-evaluation noise of one architecture), of
 * f_A(s) - f_B(s) (noise of a comparison under common random numbers) and of f_A(s) - f_B(K+s)
 * (noise of a comparison with independent batches). Single process, no MPI needed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "legr/evolution.h"
#include "search_setup.h"

static double stddev(const double *x, int n)
{
    double m = 0, s = 0;
    for (int i = 0; i < n; i++) m += x[i] / n;
    for (int i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
    return n > 1 ? sqrt(s / (n - 1)) : 0.0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: legr-fitness-noise job.cfg base.h5 K [target]\n");
        return 2;
    }
    static SearchSetup st;
    search_setup(&st, "legr-fitness-noise", argv[1], argv[2]);
    int K = atoi(argv[3]);
    if (argc > 4) st.target = atof(argv[4]);
    const Config *cfg = &st.cfg;
    const int L = st.graph.n_convs;
    SearchEval *se = &st.se;

    /* A = the identity member, B = candidate 0 of a fresh evolution (a random transform). */
    EvoParams ep;
    job_evo_params(cfg, &ep);
    Evolution e;
    evolution_init(&e, &ep, L, st.norm_std, (uint64_t)cfg->run.seed);
    Candidate a, b;
    evolution_candidate_alloc(&a, L);
    evolution_candidate_alloc(&b, L);
    CHECK(evolution_next(&e, &b) == EVO_NEXT_CANDIDATE, "no candidate");
    for (int l = 0; l < L; l++) {
        a.alpha[l] = 1.0;
        a.kappa[l] = 0.0;
    }
    a.id = 1;

    double *fa = xmalloc((size_t)K * sizeof(double)), *dc = xmalloc((size_t)K * sizeof(double));
    double *di = xmalloc((size_t)K * sizeof(double));
    printf("# target %.2f, tau %d, batch %d, %d validation images, K %d\n", st.target,
           cfg->search.tau, cfg->search.batch, se->n_val, K);
    printf("# seed  f_A  f_B(same batches)  f_B(other batches)\n");
    for (int s = 0; s < K; s++) {
        EvoResult ra, rb, rb2;
        se->run_seed = (unsigned long long)s;
        search_evaluate(&a, &ra, se);
        search_evaluate(&b, &rb, se);
        se->run_seed = (unsigned long long)(K + s);
        search_evaluate(&b, &rb2, se);
        fa[s] = ra.fitness;
        dc[s] = ra.fitness - rb.fitness;
        di[s] = ra.fitness - rb2.fitness;
        printf("%4d  %.5f  %.5f  %.5f\n", s, ra.fitness, rb.fitness, rb2.fitness);
        fflush(stdout);
    }
    printf("std of f_A over batch seeds (re-evaluation noise): %.5f\n", stddev(fa, K));
    printf("std of f_A - f_B, shared batches:                 %.5f\n", stddev(dc, K));
    printf("std of f_A - f_B, independent batches:            %.5f\n", stddev(di, K));
    return 0;
}
