/* Re-scoring a finished search's best candidates on more mini-batch sequences before one is chosen. */
#ifndef LEGR_SEARCH_RESCORE_H
#define LEGR_SEARCH_RESCORE_H

#include "legr/evolution.h"
#include "legr/search_eval.h"
#include "legr/train.h"

/* The search's fitness of a candidate is one draw: tau steps on one mini-batch sequence, and the
 * best of hundreds of such draws is biased low (a winner's curse). Re-scoring evaluates the N best
 * distinct candidates on R more sequences (batch seeds run seed + 1 .. run seed + R) and chooses
 * the lowest mean over all 1 + R draws, the recorded one included.
 *
 * Plain data; arrays of n (candidates) or n x n_layers (alpha, kappa) or n x sequences (fitness). */
typedef struct {
    int n, n_layers, sequences;
    int *id;             /* candidate ids, best recorded fitness first (ties: lower id) */
    double *recorded;    /* the search's fitness of each (batch seed = run seed) */
    double *alpha, *kappa;
    double *fitness;     /* row i: candidate i on sequences 1..R */
    double *mean;        /* (recorded + sum of its row) / (1 + R) */
    int chosen;          /* index of the lowest mean (ties: the better recorded) */
} Rescore;

/* Zeroed arrays for n candidates of n_layers on `sequences` more sequences. */
void rescore_alloc(Rescore *r, int n, int n_layers, int sequences);
void rescore_free(Rescore *r);

/* The up to `top` best candidates of e's history with a finite fitness, one per distinct pruned
 * network (search_arch_key against se; a candidate that cannot be pruned is skipped), into a
 * fresh r. Returns the number chosen (0 when none is finite). */
int rescore_select(Rescore *r, const Evolution *e, int top, int sequences, const SearchEval *se);

/* One of the n x sequences evaluations, pair = i * sequences + (k - 1): candidate i on batch seed
 * base_seed + k. se is used as scratch (its run_seed) and restored. */
double rescore_evaluate_pair(const Rescore *r, int pair, SearchEval *se,
                             unsigned long long base_seed);

/* How many of the n x sequences evaluations rank `rank` of `size` does in rescore_run. */
int rescore_share(const Rescore *r, int rank, int size);

/* Every rank calls this with the same r (ids, recorded, alpha, kappa): rank `rank` of `size`
 * evaluates the pairs p with p % size == rank, col (NULL for one process) sums the rows, and
 * every rank fills r->fitness, r->mean and r->chosen. Each pair's value comes from one rank and
 * zeros from the others, so the sum is exact and the choice does not depend on the rank count.
 * progress (may be NULL) is called on each of this rank's evaluations with (done, total).
 * stop (may be NULL) is asked before each of them: once it returns nonzero this rank evaluates
 * no more, still joins the sum (a collective), and the call returns 1; r's scores are then
 * incomplete and must not be used. Returns 0 when this rank did its whole share. */
int rescore_run(Rescore *r, SearchEval *se, unsigned long long base_seed, int rank, int size,
                const Collective *col, void (*progress)(int done, int total, void *ctx),
                void *progress_ctx, int (*stop)(void));

#endif
