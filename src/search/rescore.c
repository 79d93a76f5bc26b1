/* Re-scoring the search's best distinct candidates on more batch sequences; the lowest mean wins. */
#include "legr/search_rescore.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void rescore_alloc(Rescore *r, int n, int n_layers, int sequences)
{
    const size_t nl = (size_t)(n > 0 ? n : 1) * (size_t)n_layers;
    const size_t nk = (size_t)(n > 0 ? n : 1) * (size_t)sequences;
    r->n = n;
    r->n_layers = n_layers;
    r->sequences = sequences;
    r->id = xcalloc((size_t)(n > 0 ? n : 1), sizeof(int));
    r->recorded = xcalloc((size_t)(n > 0 ? n : 1), sizeof(double));
    r->mean = xcalloc((size_t)(n > 0 ? n : 1), sizeof(double));
    r->alpha = xcalloc(nl, sizeof(double));
    r->kappa = xcalloc(nl, sizeof(double));
    r->fitness = xcalloc(nk, sizeof(double));
    r->chosen = 0;
}

void rescore_free(Rescore *r)
{
    free(r->id);
    free(r->recorded);
    free(r->mean);
    free(r->alpha);
    free(r->kappa);
    free(r->fitness);
    memset(r, 0, sizeof *r);
}

/* A history row in selection order: recorded fitness, then id (the report order varies with the
 * rank count in async mode; ids do not). */
typedef struct {
    double fitness;
    int id, row;
} Ranked;

static int by_fitness(const void *a, const void *b)
{
    const Ranked *x = a, *y = b;
    if (x->fitness != y->fitness) return x->fitness < y->fitness ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

int rescore_select(Rescore *r, const Evolution *e, int top, int sequences, const SearchEval *se)
{
    const int L = e->n_layers;
    const size_t key_size = (size_t)se->n_targets * (size_t)se->graph->n_entries;
    rescore_alloc(r, top, L, sequences);
    Ranked *order = xmalloc((size_t)(e->n_history > 0 ? e->n_history : 1) * sizeof(Ranked));
    for (int i = 0; i < e->n_history; i++)
        order[i] = (Ranked){e->history[i].fitness, e->history[i].id, i};
    qsort(order, (size_t)e->n_history, sizeof(Ranked), by_fitness);

    unsigned char *keys = xmalloc((size_t)top * key_size), *key = xmalloc(key_size);
    Candidate c;
    int n = 0;
    for (int i = 0; i < e->n_history && n < top; i++) {
        const int row = order[i].row;
        const EvoRecord *h = &e->history[row];
        if (!isfinite(h->fitness)) break; /* sorted: the rest are not finite either */
        c.id = h->id;
        c.parent = h->parent;
        c.alpha = e->history_alpha + (size_t)row * L;
        c.kappa = e->history_kappa + (size_t)row * L;
        if (search_arch_key(&c, key, (void *)se) != 0) continue;
        int seen = 0;
        for (int j = 0; j < n && !seen; j++) seen = !memcmp(keys + (size_t)j * key_size, key, key_size);
        if (seen) continue;
        memcpy(keys + (size_t)n * key_size, key, key_size);
        r->id[n] = h->id;
        r->recorded[n] = h->fitness;
        memcpy(r->alpha + (size_t)n * L, c.alpha, (size_t)L * sizeof(double));
        memcpy(r->kappa + (size_t)n * L, c.kappa, (size_t)L * sizeof(double));
        n++;
    }
    r->n = n;
    free(key);
    free(keys);
    free(order);
    return n;
}

double rescore_evaluate_pair(const Rescore *r, int pair, SearchEval *se,
                             unsigned long long base_seed)
{
    const int i = pair / r->sequences, k = 1 + pair % r->sequences;
    Candidate c = {r->id[i], -1, r->alpha + (size_t)i * r->n_layers,
                   r->kappa + (size_t)i * r->n_layers};
    const unsigned long long saved = se->run_seed;
    se->run_seed = base_seed + (unsigned long long)k;
    EvoResult res;
    search_evaluate(&c, &res, se);
    se->run_seed = saved;
    return res.fitness;
}

int rescore_share(const Rescore *r, int rank, int size)
{
    const int pairs = r->n * r->sequences;
    return pairs / size + (rank < pairs % size);
}

int rescore_run(Rescore *r, SearchEval *se, unsigned long long base_seed, int rank, int size,
                const Collective *col, void (*progress)(int done, int total, void *ctx),
                void *progress_ctx, int (*stop)(void))
{
    const int pairs = r->n * r->sequences, mine = rescore_share(r, rank, size);
    int done = 0, stopped = 0;
    memset(r->fitness, 0, (size_t)pairs * sizeof(double));
    for (int p = rank; p < pairs; p += size) {
        if (stop && stop()) {
            stopped = 1;
            break;
        }
        r->fitness[p] = rescore_evaluate_pair(r, p, se, base_seed);
        if (progress) progress(++done, mine, progress_ctx);
    }
    /* A diverged draw is +inf, which a sum carries; zeros from the other ranks keep it exact. */
    if (col && col->sum_doubles && pairs > 0) col->sum_doubles(r->fitness, pairs, col->ctx);
    r->chosen = 0;
    for (int i = 0; i < r->n; i++) {
        double s = r->recorded[i];
        for (int k = 0; k < r->sequences; k++) s += r->fitness[(size_t)i * r->sequences + k];
        r->mean[i] = s / (1 + r->sequences);
        if (r->mean[i] < r->mean[r->chosen]) r->chosen = i;
    }
    return stopped;
}
