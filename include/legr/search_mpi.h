/* The distributed search: rank 0 drives the evolution, the other ranks evaluate candidates. */
#ifndef LEGR_SEARCH_MPI_H
#define LEGR_SEARCH_MPI_H

#include <stdio.h>
#include "legr/dist.h"
#include "legr/evolution.h"
#include "legr/search_eval.h"

/* Evaluate one candidate on this rank; fills r (id, fitness, accuracy, flops, seconds). Must be a
 * function of the candidate alone (all its randomness keyed by the run seed and c->id). */
typedef void (*SearchEvalFn)(const Candidate *c, EvoResult *r, void *ctx);

/* Called on rank 0 to persist the search state (checkpoint every N results, after a signal, at
 * the end); returns 0 or -1 with err. */
typedef int (*SearchSaveFn)(const Evolution *e, void *ctx, Err *err);

typedef struct {
    SearchEvalFn evaluate;
    void *eval_ctx;
    SearchSaveFn save;      /* may be NULL (no checkpoints) */
    void *save_ctx;
    int n_layers;
    int deterministic;      /* apply results in batches of sync_batch, sorted by id */
    int sync_batch;
    int checkpoint_every;   /* results between checkpoints */
    FILE *jsonl;            /* rank 0 log, or NULL */
    int quiet;              /* no progress lines (benchmarks) */
    int master_evaluates;   /* rank 0 also evaluates while every worker is busy */
    SearchPoll *poll;       /* the evaluator's poll slot (SearchEval.poll): while rank 0
                               evaluates, it serves the workers from there (receives results,
                               hands out work), so none waits for it; NULL: it cannot */
    /* Fitness reuse (NULL: off). arch_key(c, key, eval_ctx) writes the network candidate c is
     * pruned to as key_bytes bytes and returns 0 (-1: it cannot be pruned). Rank 0 keys every
     * candidate before handing it out; one whose key equals that of a candidate with a result
     * takes a copy of that result (fitness, accuracy, FLOPs) and is not evaluated. Only valid
     * when the fitness is a function of the pruned network alone (shared batches), so that the
     * history is the one evaluating it again would give. */
    int (*arch_key)(const Candidate *c, unsigned char *key, void *ctx);
    size_t key_bytes;
} SearchRun;

/* Every rank calls this. Rank 0 owns e (fresh or restored) and hands out candidates as workers
 * become free (ranks 1..size-1; with one rank, rank 0 evaluates them itself through the same
 * evaluate function). Returns LEGR_EXIT_OK when all evaluations are in, LEGR_EXIT_STOPPED when
 * SIGTERM/SIGUSR1 arrived (dist_stop_requested) and the state was checkpointed (on rank 0; other ranks return once the
 * master told them to stop), or another code with err filled on rank 0. */
int search_run(Evolution *e, const SearchRun *s, const Dist *d, Err *err);

#endif
