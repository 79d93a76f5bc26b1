/* Regularized (aging) evolution over per-layer (alpha, kappa): a pure state machine, no MPI. */
#ifndef LEGR_EVOLUTION_H
#define LEGR_EVOLUTION_H

#include <stdint.h>
#include "legr/util.h"

/* Search constants (docs/ALGORITHM.md section 6); evolution_params_default gives the reference values. */
typedef struct {
    int population;         /* P, size of the FIFO population (64) */
    int sample;             /* S, tournament size, drawn with replacement (16) */
    int evaluations;        /* E, total candidates including the initial population (400) */
    double mutate_fraction; /* m = max(1, int(mutate_fraction * L)) layer draws per child (0.1) */
    double sigma;           /* log-scale std of the alpha mutation before annealing (1.0) */
} EvoParams;

/* A candidate to evaluate. alpha and kappa are caller-owned arrays of n_layers doubles
 * (evolution_candidate_alloc); parent is -1 for the initial population. */
typedef struct {
    int id, parent;
    double *alpha, *kappa;
} Candidate;

/* What a worker measured for one candidate. fitness is lower-is-better (validation loss);
 * NaN or +-inf is stored as +inf, so such a candidate is never the best nor a parent while a
 * finite one exists. */
typedef struct {
    int id;
    double fitness, accuracy, flops, seconds;
    int rank; /* the MPI rank that evaluated it (informational) */
    /* Where seconds went (informational, logged, not checkpointed): ranking and surgery, the
     * tau fine-tuning steps, validation. */
    double prune_seconds, train_seconds, val_seconds;
} EvoResult;

/* One reported candidate: the result plus its parent (its alpha/kappa live in parallel arrays). */
typedef struct {
    int id, parent;
    double fitness, accuracy, flops, seconds;
    int rank;
} EvoRecord;

/* The whole search state. Plain data: evolution_get_state/evolution_restore are the supported
 * way to serialise it, the fields are documented so the checkpoint code and tests can read them.
 *
 * Invariants: ids are handed out as 0,1,2,... (next_id); every id < next_id is either in the
 * history (reported) or in flight; the population holds history ids in queue order, oldest
 * first, and is full (P members) before any child is generated. */
typedef struct {
    EvoParams p;
    int n_layers;       /* L */
    int n_mutate;       /* m */
    double *kappa_std;  /* delta_l, L values */
    uint64_t seed;      /* run seed; with the id it keys every random draw */

    int next_id;

    int n_history;      /* reported candidates, in report order (capacity E) */
    EvoRecord *history;
    double *history_alpha, *history_kappa; /* row r = history[r], L values each */
    int *row_of_id;     /* E entries: history row of an id, -1 while unreported */
    int best_row;       /* row of the global best result, -1 before any result */

    int n_population;   /* <= P */
    int *population;    /* ids, oldest first */

    int n_inflight;     /* handed out (or restored) but not reported, ascending ids */
    int *inflight_id, *inflight_parent;
    int *inflight_issued; /* 0 after a restore until evolution_next hands it out again */
    double *inflight_alpha, *inflight_kappa; /* row i = inflight_id[i], L values each */

    unsigned char *mark; /* scratch: L layer flags for a mutation */
} Evolution;

/* A borrowed, read-only view of the serialisable part of an Evolution (everything except the
 * params, L, kappa_std and seed, which evolution_init takes). Arrays are in the orders above. */
typedef struct {
    int next_id;
    int n_history;
    const EvoRecord *history;
    const double *history_alpha, *history_kappa; /* n_history x L */
    int n_population;
    const int *population;                     /* ids, oldest first */
    int n_inflight;
    const int *inflight_id, *inflight_parent;
    const double *inflight_alpha, *inflight_kappa; /* n_inflight x L */
} EvoState;

/* What evolution_next produced. */
enum {
    EVO_NEXT_DONE = -1,     /* all E candidates have been handed out */
    EVO_NEXT_WAIT = 0,      /* nothing to hand out until more results are reported */
    EVO_NEXT_CANDIDATE = 1  /* *out holds a candidate to evaluate */
};

/* Upper bound of EvoParams.sigma (config key search.sigma). */
#define EVO_SIGMA_MAX 10.0

void evolution_params_default(EvoParams *p);
/* Range check of user-supplied params; -1 with LEGR_EXIT_USAGE naming the bad field. */
int evolution_params_check(const EvoParams *p, Err *err);

/* Start a search over n_layers layers. kappa_std[l] = delta_l, the std of layer l's
 * untransformed filter norms (copied). p must pass evolution_params_check. */
void evolution_init(Evolution *e, const EvoParams *p, int n_layers, const double *kappa_std,
                    uint64_t seed);
void evolution_free(Evolution *e);

void evolution_candidate_alloc(Candidate *c, int n_layers);
void evolution_candidate_free(Candidate *c);

/* Hand out the next candidate. Candidates restored as in flight come first (same id, parent,
 * alpha, kappa as before the checkpoint); then ids next_id, next_id+1, ...: ids < P-1 random
 * (alpha = exp(N(0,1)), kappa = N(0, delta_l)), id P-1 the identity (alpha 1, kappa 0), later ids
 * children of a tournament winner from the current population. Every draw for id i comes from
 * the stream (seed, RNG_PURPOSE_EVOLUTION, i), so a candidate is a function of the population
 * and its id only. Returns EVO_NEXT_*. */
int evolution_next(Evolution *e, Candidate *out);

/* Apply a result for an in-flight id, in any order: append it to the history, update the global
 * best, and insert it into the population (append while it has fewer than P members, otherwise
 * replace the oldest member). Returns -1 with LEGR_EXIT_INTERNAL if the id is not in flight. */
int evolution_report(Evolution *e, const EvoResult *r, Err *err);

/* True once all E results are in. */
int evolution_finished(const Evolution *e);

/* The std of the alpha mutation for candidate id: sigma * (1 - id / (1.25 E)). */
double evolution_alpha_std(const Evolution *e, int id);

/* The global best over all results, or NULL before the first; alpha/kappa point into e. */
const EvoRecord *evolution_best(const Evolution *e, const double **alpha, const double **kappa);

/* Mean fitness of the current population (finite members only; NaN if none). */
double evolution_population_mean(const Evolution *e);

/* Serialise: a borrowed view valid until e changes. */
void evolution_get_state(const Evolution *e, EvoState *s);

/* Load a saved state into e, freshly evolution_init'ed with the same params, L, kappa_std and
 * seed as the saved search. Checks consistency (ids in range and unique, the population and
 * in-flight ids accounted for); -1 with LEGR_EXIT_DATA on a damaged state. */
int evolution_restore(Evolution *e, const EvoState *s, Err *err);

#endif
