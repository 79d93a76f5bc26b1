/* The training, evolution and candidate-evaluation settings that a config implies, shared by the
 * stages (job.c, family.c) and tools/fitness_noise.c so that none re-spells them. */
#include "job_params.h"

#include <string.h>

void job_train_params(const Config *c, const Normalize *norm, FILE *jsonl, TrainParams *p)
{
    memset(p, 0, sizeof *p);
    p->aug.crop_pad = c->data.augment ? c->data.crop_pad : 0;
    p->aug.flip = c->data.augment && c->data.flip;
    p->aug.resized_crop = c->data.augment && c->data.crop > 0;
    p->norm = *norm;
    p->seed = (unsigned long long)c->run.seed;
    p->log_every = c->run.log_every;
    p->jsonl = jsonl;
}

void job_evo_params(const Config *c, EvoParams *ep)
{
    evolution_params_default(ep);
    ep->population = c->search.population;
    ep->sample = c->search.sample;
    ep->evaluations = c->search.evaluations;
    ep->mutate_fraction = c->search.mutate_fraction;
    ep->sigma = c->search.sigma;
}

void job_search_eval(const Config *c, const Normalize *norm, SearchEval *se)
{
    memset(se, 0, sizeof *se);
    se->targets = c->search.target_flops;
    se->n_targets = c->search.n_target_flops;
    se->safeguard = c->search.safeguard;
    job_train_params(c, norm, NULL, &se->ft);
    se->ft.steps = c->search.tau;
    se->ft.batch = c->search.batch;
    se->ft.sgd.momentum = (float)c->search.momentum;
    se->ft.sgd.weight_decay = (float)c->search.weight_decay;
    se->ft.sched.kind = LR_CONSTANT;
    se->ft.sched.base_lr = (float)c->search.lr;
    se->ft.log_every = 0; /* candidates are reported by the search, not step by step */
    se->ft.tag = "candidate";
    se->run_seed = (unsigned long long)c->run.seed;
    se->per_candidate_batches = c->search.batches == CFG_BATCHES_PER_CANDIDATE;
    se->fitness_acc = c->search.fitness == CFG_FITNESS_VAL_ACC;
    se->null_eval = c->search.null_eval;
}

int job_val_count(const Config *c, int n_val)
{
    return c->search.val_limit > 0 && c->search.val_limit < n_val ? c->search.val_limit : n_val;
}
