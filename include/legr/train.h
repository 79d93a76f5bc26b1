/* SGD with PyTorch semantics, learning-rate schedules, and train/evaluate loops over a Dataset. */
#ifndef LEGR_TRAIN_H
#define LEGR_TRAIN_H

#include "legr/data.h"
#include "legr/net.h"

typedef struct {
    float momentum;     /* 0 disables */
    float weight_decay; /* L2 added to the gradient, on every parameter (as torch.optim.SGD) */
    int nesterov;
} SgdCfg;

/* One torch.optim.SGD step on every parameter with learning rate lr:
 *   d = grad + wd*p;  mom = momentum*mom + d (mom = d on the first step, i.e. mom starts at 0);
 *   d = nesterov ? d + momentum*mom : mom;  p -= lr*d. */
void sgd_step(Net *net, const SgdCfg *cfg, float lr);

typedef enum { LR_CONSTANT = 0, LR_MULTISTEP, LR_COSINE } LrKind;

typedef struct {
    LrKind kind;
    float base_lr;
    int n_milestones;
    int milestones[8]; /* epochs, ascending (multistep) */
    float gamma;       /* multistep factor */
    int total;         /* T_max in epochs (cosine) */
    float eta_min;     /* cosine floor */
} LrSchedule;

/* Learning rate for `epoch` (0-based), as torch's MultiStepLR / CosineAnnealingLR stepped once per
 * epoch. */
float lr_at(const LrSchedule *s, int epoch);

/* Collective operations of data-parallel replicas, provided by the MPI layer (all NULL for one
 * process). Each replaces buf[0..n) by its sum over all replicas. */
typedef struct {
    void (*sum_floats)(float *buf, size_t n, void *ctx);
    void (*sum_doubles)(double *buf, int n, void *ctx);
    void *ctx;
} Collective;

/* Install the collective's double sum as the net's synchronised-BN reducer (or clear it). */
void train_attach_collective(Net *net, const Collective *col);

/* One data-parallel SGD step. This replica holds n_local images (x NCHW, y) of a global batch of
 * n_global; the loss is the mean over the global batch, so every replica's gradient is scaled by
 * 1/n_global, summed across replicas, and every replica applies the same update.
 * Returns the global mean loss; adds this replica's argmax hits to *correct if non-NULL. */
double train_step(Net *net, const Collective *col, const float *x, const int *y, int n_local,
                  int n_global, const SgdCfg *sgd, float lr, int *correct);

typedef struct {
    double loss;  /* mean cross-entropy */
    double acc;   /* top-1 fraction */
    int n;
} EvalResult;

/* Evaluation-mode pass over samples idx[0..n) of d, in batches of net->batch. */
EvalResult train_evaluate(Net *net, const Dataset *d, const int *idx, int n,
                          const Normalize *norm);

/* A training run over a dataset: epochs (or a fixed number of steps) of shuffled mini-batches,
 * each global batch split across replicas. */
typedef struct {
    int epochs;          /* full passes; ignored when steps > 0 */
    int steps;           /* exactly this many steps when > 0 (the order continues across epochs) */
    int batch;           /* global batch size; the last partial batch of an epoch is dropped */
    LrSchedule sched;    /* stepped per epoch */
    SgdCfg sgd;
    Augment aug;         /* crop_pad 0 and flip 0 disable augmentation */
    Normalize norm;
    unsigned long long seed; /* epoch order and augmentation derive from it alone */
    int log_every;       /* progress line every this many steps (0: none) */
    const char *tag;     /* prefix of progress lines, e.g. "pretrain" */
    FILE *jsonl;         /* JSON-lines log (rank 0), or NULL */
    long long start_step; /* resume: skip the steps before this one (epoch runs only; any
                           * step, the data order and augmentation depend on the step alone) */
    /* Called on every replica after every step (after rank 0's evaluation at an epoch end)
     * with the number of steps done (NULL: none); a non-zero return ends the run there (it
     * must agree on all replicas). It runs under data_io_lock (it may write HDF5 files while
     * the next batch is read), so it must not read a dataset. */
    int (*step_end)(void *ctx, long long steps_done);
    void *step_ctx;
} TrainParams;

typedef struct {
    int rank, size;        /* this replica and the replica count */
    const Collective *col; /* NULL for a single replica */
} Replicas;

/* Train net on samples idx[0..n) of d. Every replica calls it with the same arguments; replica r
 * computes images [r*B/size, (r+1)*B/size) of each global batch B, so results depend on the
 * replica count only through summation order. When eval != NULL, rank 0 evaluates on eval_idx
 * after every epoch and prints/logs it. Returns the mean training loss of the last epoch. */
double train_run(Net *net, const Dataset *d, const int *idx, int n, const Dataset *eval,
                 const int *eval_idx, int n_eval, const TrainParams *p, const Replicas *rep);

#endif
