/* One candidate's fitness: LeGR ranking with its (alpha, kappa), surgery, tau SGD steps, validation. */
#include "legr/search_eval.h"

#include <math.h>
#include <string.h>

/* Benchmark fitness: a cheap deterministic function of the candidate, so the master's dispatch
 * rate can be measured without any network work. */
static double null_fitness(const Candidate *c, int L)
{
    double s = 0.0;
    for (int l = 0; l < L; l++) s += fabs(log(c->alpha[l])) + fabs(c->kappa[l]);
    return s;
}

void search_evaluate(const Candidate *c, EvoResult *r, void *ctx)
{
    const SearchEval *se = ctx;
    const int L = se->graph->n_convs;
    double t0 = time_now();
    r->id = c->id;
    r->fitness = INFINITY;
    r->accuracy = 0.0;
    r->flops = 0.0;
    if (se->null_eval) {
        r->fitness = null_fitness(c, L);
        r->seconds = time_now() - t0;
        return;
    }

    KeepMask mask;
    Err err;
    memset(&mask, 0, sizeof mask);
    if (prune_legr(se->graph, se->norm, c->alpha, c->kappa, L, se->target, se->safeguard, &mask,
                   &err) != 0) {
        fprintf(stderr, "search: candidate %d cannot be pruned: %s\n", c->id, err.msg);
        r->seconds = time_now() - t0;
        return;
    }
    r->flops = (double)mask.flops;
    Net net;
    if (prune_apply(se->base, &mask, &net, &err) != 0)
        legr_fail(LEGR_EXIT_INTERNAL, __FILE__, __LINE__, "surgery of candidate %d: %s", c->id,
                  err.msg);
    prune_mask_free(&mask);

    TrainParams ft = se->ft;
    ft.seed = se->per_candidate_batches
                  ? hash_fnv1a(se->run_seed, &c->id, sizeof c->id)
                  : se->run_seed;
    Replicas single = {0, 1, NULL};
    if (ft.steps > 0)
        train_run(&net, se->data, se->train_idx, se->n_train, NULL, NULL, 0, &ft, &single);
    EvalResult ev = train_evaluate(&net, se->data, se->val_idx, se->n_val, &ft.norm);
    net_free(&net);

    r->accuracy = ev.acc;
    if (isfinite(ev.loss)) r->fitness = se->fitness_acc ? 1.0 - ev.acc : ev.loss;
    r->seconds = time_now() - t0;
}
