/* SGD with PyTorch semantics, learning-rate schedules, and train/evaluate loops over a Dataset. */
#ifndef LEGR_TRAIN_H
#define LEGR_TRAIN_H

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

#endif
