/* Evaluating one search candidate: rank, prune to the target, fine-tune tau steps, validate. */
#ifndef LEGR_SEARCH_EVAL_H
#define LEGR_SEARCH_EVAL_H

#include "legr/evolution.h"
#include "legr/prune.h"
#include "legr/train.h"

/* A callback that an evaluation makes after each fine-tuning step and between validation chunks,
 * so that a rank which both evaluates and serves other ranks (the search master) keeps serving
 * them while it computes. It must not change the evaluation's result. fn NULL: none. */
typedef struct {
    void (*fn)(void *ctx);
    void *ctx;
} SearchPoll;

typedef struct {
    const Net *base;          /* the pretrained network, never modified */
    const PruneGraph *graph;  /* of base's Arch */
    const double *norm;       /* filter norms of base (graph->n_filters) */
    const double *targets;    /* FLOP fractions to prune to; the fitness is the mean over them */
    int n_targets;            /* >= 1 */
    double safeguard;
    const Dataset *data;      /* training set; the validation split indexes into it too */
    const int *train_idx;
    int n_train;
    const int *val_idx;
    int n_val;
    TrainParams ft;           /* tau steps (ft.steps), batch, SGD, augmentation, normalisation */
    unsigned long long run_seed;
    int per_candidate_batches; /* 0: every candidate sees the same mini-batches (common random
                                  numbers); 1: batches keyed by (run seed, candidate id) */
    int fitness_acc;          /* 0: fitness = validation loss; 1: fitness = 1 - top-1 */
    int null_eval;            /* benchmark: skip all work, fitness from the candidate alone */
    SearchPoll poll;          /* set by the search master around its own evaluations */
} SearchEval;

/* SearchEvalFn for search_run: ctx is a SearchEval. For every target in turn the candidate is
 * pruned from the base, fine-tuned tau steps and validated; fitness (lower is better) and
 * accuracy are the means over the targets, each target's exactly as a search at that target
 * alone would give; flops are those of the network pruned to the first target; the seconds add
 * up over the targets. A candidate that cannot be pruned to a target, or whose loss diverges
 * there, gets fitness +inf and the remaining targets are skipped (their accuracy counts as 0). */
void search_evaluate(const Candidate *c, EvoResult *r, void *ctx);

/* The fitness evaluation of one pruned network, as search_evaluate does it at one target after
 * pruning: se->base cut to `mask`, fine-tuned se->ft.steps steps on the mini-batch sequence
 * `batch_seed`, validated on se->val_idx. Adds its seconds to r's prune/train/val seconds (the
 * surgery counts as pruning). Tools use it to score networks that no candidate produced, such as
 * a family's baselines. */
EvalResult search_evaluate_mask(const SearchEval *se, const KeepMask *mask,
                                unsigned long long batch_seed, EvoResult *r);

/* SearchArchKeyFn for search_run: the pruned networks that search_evaluate would fine-tune, as
 * se->n_targets x se->graph->n_entries bytes (1 for every ranking entry removed at that target).
 * Two candidates with equal keys are pruned to the same networks; with shared batches
 * (per_candidate_batches == 0) that makes their fitness the same bits. Returns 0, or -1 when
 * the candidate cannot be pruned to a target. */
int search_arch_key(const Candidate *c, unsigned char *key, void *ctx);

#endif
