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

/* TrainParams.step_end: serve the poll after every step, never stop. */
static int poll_step(void *ctx, long long steps_done)
{
    (void)steps_done;
    const SearchPoll *poll = ctx;
    poll->fn(poll->ctx);
    return 0;
}

/* Images per validation chunk between polls: a whole number of the net's batches, so that the
 * batches, and with them the result up to the final sum's order, are those of one pass. */
enum { VAL_CHUNK_BATCHES = 4 };

/* train_evaluate over idx[0..n) in chunks, polling between them; the mean loss and accuracy are
 * weighted by the chunks' sizes. Chunked with or without a poll, so that a candidate's fitness
 * is the same bits on the master as on a worker (deterministic mode relies on it). */
static EvalResult evaluate_polled(Net *net, const Dataset *d, const int *idx, int n,
                                  const Normalize *norm, const SearchPoll *poll)
{
    const int chunk = VAL_CHUNK_BATCHES * net->batch;
    double loss = 0, acc = 0;
    for (int i = 0; i < n; i += chunk) {
        int m = n - i < chunk ? n - i : chunk;
        EvalResult e = train_evaluate(net, d, idx + i, m, norm);
        loss += e.loss * m;
        acc += e.acc * m;
        if (poll->fn) poll->fn(poll->ctx);
    }
    EvalResult r = {n > 0 ? loss / n : 0, n > 0 ? acc / n : 0, n};
    return r;
}

/* The candidate's LeGR mask at one FLOP target; the key and the evaluation both start here so
 * that they can never disagree about which entries a candidate removes. */
static int prune_at(const SearchEval *se, const Candidate *c, double target, KeepMask *mask,
                    Err *err)
{
    memset(mask, 0, sizeof *mask);
    return prune_legr(se->graph, se->norm, c->alpha, c->kappa, se->graph->n_convs, target,
                      se->safeguard, mask, err);
}

int search_arch_key(const Candidate *c, unsigned char *key, void *ctx)
{
    const SearchEval *se = ctx;
    for (int t = 0; t < se->n_targets; t++) {
        KeepMask mask;
        Err err;
        if (prune_at(se, c, se->targets[t], &mask, &err) != 0) return -1;
        memcpy(key + (size_t)t * (size_t)se->graph->n_entries, mask.entry_removed,
               (size_t)se->graph->n_entries);
        prune_mask_free(&mask);
    }
    return 0;
}

EvalResult search_evaluate_mask(const SearchEval *se, const KeepMask *mask,
                                unsigned long long batch_seed, EvoResult *r)
{
    double t0 = time_now();
    Net net;
    Err err;
    if (prune_apply(se->base, mask, &net, &err) != 0)
        legr_fail(LEGR_EXIT_INTERNAL, __FILE__, __LINE__, "surgery: %s", err.msg);
    TrainParams ft = se->ft;
    ft.seed = batch_seed;
    if (se->poll.fn) {
        ft.step_end = poll_step;
        ft.step_ctx = (void *)&se->poll;
    }
    Replicas single = {0, 1, NULL};
    double t1 = time_now();
    if (ft.steps > 0)
        train_run(&net, se->data, se->train_idx, se->n_train, NULL, NULL, 0, &ft, &single);
    double t2 = time_now();
    EvalResult ev = evaluate_polled(&net, se->data, se->val_idx, se->n_val, &ft.norm, &se->poll);
    net_free(&net);
    r->prune_seconds += t1 - t0;
    r->train_seconds += t2 - t1;
    r->val_seconds += time_now() - t2;
    return ev;
}

/* One target of search_evaluate: adds this target's seconds to r, sets r->flops when asked, and
 * returns the validation result ({inf, 0} when the candidate cannot be pruned to it). */
static EvalResult evaluate_at(const SearchEval *se, const Candidate *c, double target,
                              int set_flops, EvoResult *r)
{
    const EvalResult none = {INFINITY, 0.0, 0};
    double t0 = time_now();
    KeepMask mask;
    Err err;
    if (prune_at(se, c, target, &mask, &err) != 0) {
        fprintf(stderr, "search: candidate %d cannot be pruned to %g%% FLOPs: %s\n", c->id,
                100 * target, err.msg);
        r->prune_seconds += time_now() - t0;
        return none;
    }
    r->prune_seconds += time_now() - t0;
    if (set_flops) r->flops = (double)mask.flops;
    unsigned long long seed = se->per_candidate_batches
                                  ? hash_fnv1a(se->run_seed, &c->id, sizeof c->id)
                                  : se->run_seed;
    EvalResult ev = search_evaluate_mask(se, &mask, seed, r);
    prune_mask_free(&mask);
    return ev;
}

void search_evaluate(const Candidate *c, EvoResult *r, void *ctx)
{
    const SearchEval *se = ctx;
    double t0 = time_now();
    r->id = c->id;
    r->fitness = INFINITY;
    r->accuracy = 0.0;
    r->flops = 0.0;
    r->prune_seconds = r->train_seconds = r->val_seconds = 0.0;
    if (se->null_eval) {
        r->fitness = null_fitness(c, se->graph->n_convs);
        r->seconds = time_now() - t0;
        return;
    }
    CHECK(se->n_targets >= 1, "search_evaluate: no FLOP target");
    /* Summed in target order and divided once: with one target, the fitness is that target's
     * bits exactly. */
    double fitness = 0.0, accuracy = 0.0;
    for (int t = 0; t < se->n_targets && isfinite(fitness); t++) {
        EvalResult ev = evaluate_at(se, c, se->targets[t], t == 0, r);
        fitness += isfinite(ev.loss) ? (se->fitness_acc ? 1.0 - ev.acc : ev.loss) : INFINITY;
        accuracy += ev.acc;
    }
    if (isfinite(fitness)) r->fitness = fitness / se->n_targets;
    r->accuracy = accuracy / se->n_targets;
    r->seconds = time_now() - t0;
}
