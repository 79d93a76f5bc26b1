/* Scores pruned networks with the search's own fitness: a family's, beside their final top-1, or
 * a search's best candidates.
 *
 * usage: legr-family-fitness job.cfg base.h5 K [--top N SEARCH.h5] [FAMILY.h5...]
 *
 * For every level of every family file, the pruned network is rebuilt from the base (the LeGR
 * ranking from the file's /search transform, the baselines as the family stage builds them; the
 * FLOPs must equal the level's, or the file was not made from this base and config) and scored
 * exactly as a search candidate: search.tau fine-tuning steps, then the validation split. Every
 * network sees the same K mini-batch sequences (run seeds run.seed .. run.seed+K-1), so their
 * differences are comparisons under common random numbers; with search.batches = "shared" the
 * first is the search's own. One line per network:
 *   file level method target fitness(mean over K) sd val_top1 test_top1(the family's, after its
 *   full fine-tuning)
 * then, per FLOP target, Spearman's rank correlation between the fitness (lower is better) and
 * the final test top-1 (higher is better) over the networks at that target, so +1 means the
 * search's signal orders them as their fine-tuned accuracy does.
 *
 * --top N SEARCH.h5 re-scores a search's N best distinct candidates (by their recorded fitness;
 * candidates pruned to the same networks count once) on the same K sequences, at all of the
 * config's targets as the search did: the first sequence gives back each recorded fitness, the
 * others show how much of the best's lead was the luck of that sequence, and where the search's
 * choice ranks by the mean. Single process, no MPI. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5util.h"
#include "legr/evolution.h"
#include "legr/h5io.h"
#include "legr/search_rescore.h"
#include "search_setup.h"

typedef struct {
    const char *file;
    int level;
    char method[16];
    double target, fitness, fitness_sd, val_top1, test_top1;
} Scored;

static void die(const Err *e)
{
    fprintf(stderr, "legr-family-fitness: error: %s\n", e->msg);
    exit(e->code ? e->code : 1);
}

/* The mask the family stage built for level `lv` of the open family file `fid`. */
static void level_mask(const SearchSetup *st, hid_t fid, const char *path, int lv,
                       Scored *out, KeepMask *m)
{
    Err err = {0, ""};
    char obj[32];
    char *method = NULL;
    long long flops = 0;
    snprintf(obj, sizeof obj, "levels/%02d", lv);
    if (h5u_get_attr_string(fid, obj, "method", &method, path, &err) ||
        h5u_get_attr(fid, obj, "target", H5T_NATIVE_DOUBLE, &out->target, path, &err) ||
        h5u_get_attr(fid, obj, "test_top1", H5T_NATIVE_DOUBLE, &out->test_top1, path, &err) ||
        h5u_get_attr(fid, obj, "flops", H5T_NATIVE_LLONG, &flops, path, &err))
        die(&err);
    snprintf(out->method, sizeof out->method, "%s", method);
    free(method);

    const PruneGraph *g = &st->graph;
    const int L = g->n_convs;
    int pm = 0;
    while (pm < PRUNE_METHOD_COUNT && strcmp(out->method, prune_method_names[pm]) != 0) pm++;
    if (pm == PRUNE_METHOD_COUNT) {
        err_set(&err, LEGR_EXIT_DATA, "%s: level %02d: unknown method '%s'", path, lv,
                out->method);
        die(&err);
    }
    double *alpha = xmalloc((size_t)L * sizeof(double));
    double *kappa = xmalloc((size_t)L * sizeof(double));
    const hsize_t dims[1] = {(hsize_t)L};
    if (pm == PRUNE_METHOD_LEGR &&
        (h5u_read(fid, "search/alpha", H5T_NATIVE_DOUBLE, 1, dims, alpha, path, &err) ||
         h5u_read(fid, "search/kappa", H5T_NATIVE_DOUBLE, 1, dims, kappa, path, &err)))
        die(&err);
    memset(m, 0, sizeof *m);
    int rc = prune_method_mask(g, (PruneMethod)pm, st->norm, alpha, kappa,
                               (uint64_t)st->cfg.run.seed, (uint64_t)lv, out->target,
                               st->cfg.search.safeguard, m, &err);
    free(alpha);
    free(kappa);
    if (rc != 0) die(&err);
    if (m->flops != flops) {
        err_set(&err, LEGR_EXIT_DATA,
                "%s: level %02d (%s, %g%% FLOPs): rebuilt from this base and config it has %lld "
                "FLOPs, the file says %lld; was the family made from another base, seed or "
                "safeguard?",
                path, lv, out->method, 100 * out->target, m->flops, flops);
        die(&err);
    }
}

/* Ranks (1 = smallest, ties averaged) of x[0..n). */
static void ranks(const double *x, int n, double *r)
{
    for (int i = 0; i < n; i++) {
        double below = 0, equal = 0;
        for (int j = 0; j < n; j++) {
            below += x[j] < x[i];
            equal += x[j] == x[i];
        }
        r[i] = below + (equal + 1) / 2;
    }
}

/* Spearman's correlation of a and b: Pearson's on their ranks (NAN when either is constant). */
static double spearman(const double *a, const double *b, int n)
{
    double *ra = xmalloc((size_t)n * sizeof(double)), *rb = xmalloc((size_t)n * sizeof(double));
    ranks(a, n, ra);
    ranks(b, n, rb);
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) {
        ma += ra[i] / n;
        mb += rb[i] / n;
    }
    for (int i = 0; i < n; i++) {
        sab += (ra[i] - ma) * (rb[i] - mb);
        saa += (ra[i] - ma) * (ra[i] - ma);
        sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    free(ra);
    free(rb);
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

/* Mean of f[0..K) and, in *sd, its sample standard deviation (0 for K = 1). */
static double mean_sd(const double *f, int K, double *sd)
{
    double mean = 0, ss = 0;
    for (int k = 0; k < K; k++) mean += f[k] / K;
    for (int k = 0; k < K; k++) ss += (f[k] - mean) * (f[k] - mean);
    *sd = K > 1 ? sqrt(ss / (K - 1)) : 0.0;
    return mean;
}

/* The K batch sequences: the search's own first (run.seed), then the following seeds. */
static unsigned long long sequence(const SearchSetup *st, int k)
{
    return (unsigned long long)st->cfg.run.seed + (unsigned long long)k;
}

/* --top: the N best distinct candidates of the search checkpoint `path`, each scored on K
 * sequences at the config's targets. */
static void score_top(SearchSetup *st, const char *path, int N, int K)
{
    Err err = {0, ""};
    Evolution e;
    if (h5_checkpoint_load(path, &e, NULL, NULL, NULL, &err) != 0) die(&err);
    const int L = e.n_layers;
    if (L != st->graph.n_convs) {
        err_set(&err, LEGR_EXIT_DATA, "%s: the search has %d layers, the base network %d", path,
                L, st->graph.n_convs);
        die(&err);
    }
    SearchEval se = st->se;
    se.targets = st->cfg.search.target_flops;
    se.n_targets = st->cfg.search.n_target_flops;
    Rescore sel;
    const int n = rescore_select(&sel, &e, N, 1, &se);
    double *f = xmalloc((size_t)K * sizeof(double)), *mean = xmalloc((size_t)N * sizeof(double));
    printf("# %s: the %d best distinct of %d candidates, fitness at %d target(s)\n", path, N,
           e.n_history, se.n_targets);
    printf("# id recorded_fitness fitness_over_K sd\n");
    for (int i = 0; i < n; i++) {
        Candidate c = {sel.id[i], -1, sel.alpha + (size_t)i * L, sel.kappa + (size_t)i * L};
        for (int k = 0; k < K; k++) {
            EvoResult r;
            se.run_seed = sequence(st, k);
            search_evaluate(&c, &r, &se);
            f[k] = r.fitness;
        }
        double sd;
        mean[i] = mean_sd(f, K, &sd);
        printf("%d %.5f %.5f %.5f\n", c.id, sel.recorded[i], mean[i], sd);
        fflush(stdout);
    }
    /* The search's choice is the first row; its rank among the n by the mean over K. */
    int rank = 1, best = 0;
    for (int j = 1; j < n; j++) {
        rank += mean[j] < mean[0];
        if (mean[j] < mean[best]) best = j;
    }
    if (n > 0)
        printf("the search's choice: recorded %.5f, %.5f over %d sequences, rank %d of %d by that "
               "mean (the best: %.5f)\n",
               sel.recorded[0], mean[0], K, rank, n, mean[best]);
    free(mean);
    free(f);
    rescore_free(&sel);
    evolution_free(&e);
}

int main(int argc, char **argv)
{
    const char *usage =
        "usage: legr-family-fitness job.cfg base.h5 K [--top N SEARCH.h5] [FAMILY.h5...]\n";
    int top = 0, first_family = 4;
    const char *search_path = NULL;
    if (argc > 6 && strcmp(argv[4], "--top") == 0) {
        top = atoi(argv[5]);
        search_path = argv[6];
        first_family = 7;
    }
    if (argc < 5 || (search_path && top < 1) || (!search_path && strncmp(argv[4], "--", 2) == 0)) {
        fputs(usage, stderr);
        return 2;
    }
    static SearchSetup st;
    search_setup(&st, "legr-family-fitness", argv[1], argv[2]);
    const int K = atoi(argv[3]);
    if (K < 1) {
        fprintf(stderr, "legr-family-fitness: error: K must be at least 1, got '%s'\n", argv[3]);
        return 2;
    }
    printf("# tau %d, batch %d, lr %g, %d validation images, K %d, fitness = %s\n",
           st.cfg.search.tau, st.cfg.search.batch, st.cfg.search.lr, st.se.n_val, K,
           st.se.fitness_acc ? "1 - val top-1" : "val loss");
    if (search_path) score_top(&st, search_path, top, K);
    if (first_family >= argc) return 0;
    printf("# file level method target fitness sd val_top1 test_top1\n");

    Scored *all = NULL;
    int n = 0;
    double *f = xmalloc((size_t)K * sizeof(double));
    for (int a = first_family; a < argc; a++) {
        Err err = {0, ""};
        hid_t fid = h5u_open_read(argv[a], H5IO_FAMILY_FORMAT, H5IO_FAMILY_VERSION, &err);
        int n_levels = 0;
        if (fid < 0 || h5u_get_attr(fid, ".", "n_levels", H5T_NATIVE_INT, &n_levels, argv[a],
                                    &err))
            die(&err);
        for (int lv = 0; lv < n_levels; lv++) {
            all = xrealloc(all, (size_t)(n + 1) * sizeof *all);
            Scored *s = &all[n++];
            s->file = argv[a];
            s->level = lv;
            KeepMask m;
            level_mask(&st, fid, argv[a], lv, s, &m);
            double acc = 0;
            for (int k = 0; k < K; k++) {
                EvoResult r = {0};
                EvalResult ev = search_evaluate_mask(&st.se, &m, sequence(&st, k), &r);
                f[k] = st.se.fitness_acc ? 1.0 - ev.acc : ev.loss;
                acc += ev.acc / K;
            }
            prune_mask_free(&m);
            s->fitness = mean_sd(f, K, &s->fitness_sd);
            s->val_top1 = acc;
            printf("%s %02d %s %.2f %.5f %.5f %.4f %.4f\n", s->file, lv, s->method, s->target,
                   s->fitness, s->fitness_sd, s->val_top1, s->test_top1);
            fflush(stdout);
        }
        H5Fclose(fid);
    }

    /* Per target, in order of first appearance. */
    double *x = xmalloc((size_t)n * sizeof(double)), *y = xmalloc((size_t)n * sizeof(double));
    for (int i = 0; i < n; i++) {
        int first = 1;
        for (int j = 0; j < i; j++) first &= all[j].target != all[i].target;
        if (!first) continue;
        int m = 0;
        for (int j = i; j < n; j++)
            if (all[j].target == all[i].target) {
                x[m] = -all[j].fitness;
                y[m++] = all[j].test_top1;
            }
        const double rho = spearman(x, y, m);
        if (isnan(rho))
            printf("target %.2f: %d network(s), Spearman(-fitness, test_top1) = n/a (a constant "
                   "column)\n", all[i].target, m);
        else
            printf("target %.2f: %d networks, Spearman(-fitness, test_top1) = %+.2f\n",
                   all[i].target, m, rho);
    }
    free(x);
    free(y);
    free(f);
    free(all);
    return 0;
}
