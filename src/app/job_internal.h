/* State shared by the stage driver's files (src/app only). */
#ifndef LEGR_JOB_INTERNAL_H
#define LEGR_JOB_INTERNAL_H

#include <stdio.h>
#include "legr/config.h"
#include "legr/data.h"
#include "legr/dist.h"
#include "legr/job.h"
#include "legr/net.h"
#include "legr/prune.h"

typedef struct {
    const JobOptions *opts;
    const Dist *d;
    Config cfg;
    char *config_text;      /* config_to_string(cfg): stored in every HDF5 file */
    char out_dir[1100];     /* run.out_dir/run.name */
    FILE *jsonl;            /* rank 0: out_dir/log.jsonl */
    Arch arch;              /* the base architecture from the config */
    Dataset train, test;
    Normalize norm;
    int *train_idx, n_train, *val_idx, n_val, *test_idx, n_test;
    const char *resume_search;   /* --resume named a search checkpoint (legr-checkpoint) */
    const char *resume_pretrain; /* --resume named a pretraining checkpoint (pretrain.h5) */
} Job;

/* Input shape and class count of the configured dataset (no file is read). */
void job_data_shape(const Config *cfg, int *c, int *h, int *w, int *classes);

/* The base architecture of model.arch: a builder fed the dataset's input shape and classes, or
 * model.init's stored network. Every rank calls it; -1 with err. */
int job_arch_build(const Config *cfg, Arch *a, Err *err);
/* A network read from a file must take the configured data: the same input shape and class
 * count. -1 with err (a usage error naming the file and both shapes) when it does not. */
int job_arch_check_data(const Config *cfg, const Arch *a, Err *err);

/* Rank 0: load the configured training and test sets (limits applied). -1 with err. */
int job_data_load(const Config *cfg, Dataset *train, Dataset *test, Err *err);

/* Rank 0: print the plan of --dry-run. Returns an exit code. */
int job_dry_run(Job *job);

/* The family stage: every level pruned (with alpha/kappa when non-NULL, else a baseline
 * ranking), fine-tuned across ranks and written by rank 0 to out_dir/family.h5. Returns the
 * exit code, the same on every rank. */
int job_family(Job *job, const Net *base, const PruneGraph *g, const double *norm,
               const double *alpha, const double *kappa);

/* Training parameters shared by pretraining, search fine-tuning and the family. */
void job_train_params(const Job *job, TrainParams *p);

#endif
