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
#include "legr/search_eval.h"

/* The input shape and class count the network takes from the configured dataset. */
typedef struct {
    int c, h, w, classes;
    int n_train, n_test; /* images in the files (before the limits), -1 when unknown */
} DataShape;

typedef struct {
    const JobOptions *opts;
    const Dist *d;
    Config cfg;
    char *config_text;      /* config_to_string(cfg): stored in every HDF5 file */
    Path out_dir;           /* run.out_dir/run.name */
    FILE *jsonl;            /* rank 0: out_dir/log.jsonl */
    DataShape shape;        /* of the configured dataset (rank 0 reads an hdf5 file's header) */
    char shape_note[1200];  /* rank 0, dry run: why the shape is assumed ("" = it is known) */
    Arch arch;              /* the base architecture from the config */
    Dataset train, test;
    Normalize norm;
    int *train_idx, n_train, *val_idx, n_val, *test_idx, n_test;
    int *subset_idx, n_subset; /* search.train_subset of train_idx (or train_idx itself) */
    const char *resume_search;   /* --resume named a search checkpoint (legr-checkpoint) */
    const char *resume_pretrain; /* --resume named a pretraining checkpoint (pretrain.h5) */
} Job;

/* Input shape and class count of the configured dataset: fixed by the dataset's name, or for
 * "hdf5" read from data.file's header (no image is read) and checked against data.channels and
 * data.classes. -1 with err (LEGR_EXIT_DATA) when the file cannot be read or does not match. */
int job_data_shape(const Config *cfg, DataShape *s, Err *err);
/* The shape a dry run assumes when data.file cannot be read: data.channels (else 3) and
 * data.classes (else 1000) at data.crop. -1 with err when data.crop is 0 (the file's image
 * size is needed then). */
int job_data_shape_assumed(const Config *cfg, DataShape *s, Err *err);

/* The base architecture of model.arch: a builder fed the dataset's input shape and classes, or
 * model.init's stored network. Every rank calls it; -1 with err. */
int job_arch_build(const Config *cfg, const DataShape *s, Arch *a, Err *err);
/* A network read from a file must take the configured data: the same input shape and class
 * count. -1 with err (a usage error naming the file and both shapes) when it does not. */
int job_arch_check_data(const Config *cfg, const DataShape *s, const Arch *a, Err *err);

/* Load the configured training and test sets (limits applied): rank 0 for the in-memory
 * datasets (then broadcast), every rank for "hdf5" (which opens the file and reads labels
 * only). -1 with err. */
int job_data_load(const Config *cfg, Dataset *train, Dataset *test, Err *err);

/* The seed of the train/validation split (data_split). data.split_seed when it is set (>= 0).
 * Otherwise, when model.init is a network this program pretrained on the same data (dataset,
 * train_limit and val_fraction equal; not synthetic data, which run.seed draws), the seed of
 * that pretraining's split, so that the search validates on images the base never trained on;
 * else run.seed. note receives a line for the log ("" when there is nothing to say): which
 * split was adopted, or a warning when data.split_seed makes the validation images overlap the
 * base's training images. Reads model.init's stored config (every rank may call it). */
int job_split_seed(const Config *cfg, char *note, size_t note_size);

/* The training set's index lists: training and validation split by job_split_seed (note
 * receives its line), and the search's training images: search.train_subset of the training
 * ones drawn by run.seed, or subset_idx == train_idx (the same array) when that is 0 or not
 * smaller. The caller frees subset_idx only when it differs. */
typedef struct {
    int *train_idx, *val_idx, *subset_idx;
    int n_train, n_val, n_subset;
} JobSplit;
void job_split(const Config *cfg, int n, JobSplit *s, char *note, size_t note_size);

/* The normalisation of the inputs: an in-memory set's own channel statistics; for a file, its
 * mean/std attributes, else ImageNet's for 3 channels and 0.5/0.5 for other counts. note
 * receives what was chosen, for the log. */
void job_data_norm(const Dataset *train, Normalize *norm, char *note, size_t note_size);

/* 1 when a checkpoint's stored config text (NULL: none) is this job's config: equal, or equal
 * once read by this build, so that a file written before a key existed, which then takes its
 * default, still resumes. The search.rescore_* keys may differ (they act after the search),
 * and with search_only (a search checkpoint) the family.* keys too. */
int job_same_config(const Job *job, const char *stored, int search_only);

/* Rank 0: print the plan of --dry-run. Returns an exit code. */
int job_dry_run(Job *job);

/* After the search (search.rescore_top > 0), on every rank: rank 0's e (NULL elsewhere) gives
 * the best distinct candidates, the ranks re-score them on search.rescore_sequences more batch
 * sequences, and alpha/kappa receive the ranking of the lowest mean on every rank. Logs the
 * scores (stderr, "rescore" events). Returns the exit code, the same on every rank. */
int job_rescore(Job *job, SearchEval *se, const Evolution *e, double *alpha, double *kappa);

/* The family stage: every level pruned (with alpha/kappa when non-NULL, else a baseline
 * ranking), fine-tuned across ranks and written by rank 0 to out_dir/family.h5. Returns the
 * exit code, the same on every rank. */
int job_family(Job *job, const Net *base, const PruneGraph *g, const double *norm,
               const double *alpha, const double *kappa);

#endif
