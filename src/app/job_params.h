/* Settings derived from a config alone (no job state): training, evolution, candidate evaluation. */
#ifndef LEGR_JOB_PARAMS_H
#define LEGR_JOB_PARAMS_H

#include <stdio.h>
#include "legr/config.h"
#include "legr/evolution.h"
#include "legr/search_eval.h"
#include "legr/train.h"

/* What pretraining, search fine-tuning and the family share: augmentation, normalisation, run
 * seed and logging (jsonl may be NULL). The stage sets steps, batch, SGD and schedule. */
void job_train_params(const Config *c, const Normalize *norm, FILE *jsonl, TrainParams *p);

/* The search.* evolution settings. */
void job_evo_params(const Config *c, EvoParams *ep);

/* Every config-derived field of a candidate evaluation: target, safeguard, the tau-step
 * fine-tuning, seeds, batches and fitness kind. The caller sets base, graph, norm, data and the
 * train/validation indices. */
void job_search_eval(const Config *c, const Normalize *norm, SearchEval *se);

/* Validation images a candidate is scored on: search.val_limit of the n_val held out (all when
 * 0 or more). */
int job_val_count(const Config *c, int n_val);

#endif
