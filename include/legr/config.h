/* The job configuration: one libconfig file loaded, range-checked and resolved into a Config. */
#ifndef LEGR_CONFIG_H
#define LEGR_CONFIG_H

#include <stdio.h>
#include "legr/util.h"

/* Config is plain data (fixed-size strings and arrays, no pointers): copy it with `=`, send it
 * as bytes, and never free it. docs/CONFIG.md lists every key with its default and range. */

#define CONFIG_NAME_MAX 64
#define CONFIG_PATH_MAX 1024
#define CONFIG_MAX_MILESTONES 8 /* as LrSchedule.milestones in train.h */
#define CONFIG_MAX_LEVELS 64    /* family FLOP levels, and search FLOP targets */

/* Enumerated values. Each has a name table (the spelling in the file) and a count; the orders
 * of CfgSchedule, CfgMetric and CfgRanking match LrKind (train.h), PruneMetric and PruneMethod
 * (prune.h), so the job driver can convert with a cast after a static assert. */
typedef enum {
    CFG_DATASET_FASHION_MNIST = 0,
    CFG_DATASET_MNIST,
    CFG_DATASET_CIFAR10,
    CFG_DATASET_CIFAR100,
    CFG_DATASET_SYNTHETIC,
    CFG_DATASET_HDF5, /* a legr-images file (docs/FORMAT.md), read per rank */
    CFG_DATASET_COUNT
} CfgDataset;
extern const char *const cfg_dataset_names[CFG_DATASET_COUNT];

/* model.arch: the built-in networks (src/nn/arch_zoo.c) and "file" (model.init's own network). */
typedef enum {
    CFG_ARCH_RESNET = 0,        /* CIFAR ResNet of model.depth */
    CFG_ARCH_RESNET18,          /* torchvision ResNets */
    CFG_ARCH_RESNET34,
    CFG_ARCH_RESNET50,
    CFG_ARCH_RESNET101,
    CFG_ARCH_MOBILENETV2,       /* torchvision MobileNetV2 */
    CFG_ARCH_MOBILENETV2_CIFAR, /* LeGR's CIFAR MobileNetV2 */
    CFG_ARCH_FILE,              /* the architecture stored in model.init */
    CFG_ARCH_COUNT
} CfgArch;
extern const char *const cfg_arch_names[CFG_ARCH_COUNT];

typedef enum {
    CFG_SCHEDULE_CONSTANT = 0,
    CFG_SCHEDULE_MULTISTEP,
    CFG_SCHEDULE_COSINE,
    CFG_SCHEDULE_COUNT
} CfgSchedule;
extern const char *const cfg_schedule_names[CFG_SCHEDULE_COUNT];

typedef enum {
    CFG_METRIC_L2_WEIGHT = 0,
    CFG_METRIC_L1_WEIGHT,
    CFG_METRIC_L2_BN,
    CFG_METRIC_L2_BN_PARAM,
    CFG_METRIC_COUNT
} CfgMetric;
/* (names: prune_metric_names) */

typedef enum { CFG_FITNESS_VAL_LOSS = 0, CFG_FITNESS_VAL_ACC, CFG_FITNESS_COUNT } CfgFitness;
extern const char *const cfg_fitness_names[CFG_FITNESS_COUNT];

typedef enum { CFG_BATCHES_SHARED = 0, CFG_BATCHES_PER_CANDIDATE, CFG_BATCHES_COUNT } CfgBatches;
extern const char *const cfg_batches_names[CFG_BATCHES_COUNT];

typedef enum { CFG_MODE_ASYNC = 0, CFG_MODE_DETERMINISTIC, CFG_MODE_COUNT } CfgMode;
extern const char *const cfg_mode_names[CFG_MODE_COUNT];

/* family.ranking and family.baselines; baselines may not use CFG_RANKING_LEGR. */
typedef enum {
    CFG_RANKING_LEGR = 0,
    CFG_RANKING_IDENTITY,
    CFG_RANKING_UNIFORM,
    CFG_RANKING_RANDOM,
    CFG_RANKING_COUNT
} CfgRanking;
/* (names: prune_method_names) */

typedef struct {
    struct {
        char name[CONFIG_NAME_MAX];    /* non-empty, no '/' */
        int seed;                      /* >= 0: every random stream derives from it */
        char out_dir[CONFIG_PATH_MAX]; /* non-empty */
        int threads;                   /* BLAS threads per rank; 0 = auto */
        int log_every;                 /* steps or evaluations between progress lines */
    } run;
    struct {
        CfgDataset dataset;
        char dir[CONFIG_PATH_MAX];
        double val_fraction; /* [0, 0.9] of the training set held out for validation */
        int split_seed;      /* >= 0: seed of the train/validation split; -1: job_split_seed */
        int augment;         /* bool: crop/flip during training */
        int crop_pad;        /* [0, 16] */
        int flip;            /* bool */
        int train_limit;     /* 0 = all, else the first N training images */
        int test_limit;      /* 0 = all, else the first N test images */
        int synthetic_n;     /* synthetic: training images (>= 2) */
        int synthetic_size;  /* synthetic: image side [4, 512] */
        int synthetic_classes; /* synthetic: [2, 256] */
        char file[CONFIG_PATH_MAX]; /* hdf5: the legr-images file ("" otherwise) */
        int crop;            /* hdf5: side of the images given to the network, 0 = as stored */
        int resize;          /* hdf5: evaluation's short side before the centre crop, 0 = auto */
        int channels;        /* hdf5: 0 = the file's; else must match it */
        int classes;         /* hdf5: 0 = the file's; else must match it */
        int cache_mb;        /* hdf5: per-rank cache of stored images, MiB */
    } data;
    struct {
        CfgArch arch;
        int depth;    /* 6n+2 >= 8 */
        double width; /* (0, 8] channel multiplier */
        char init[CONFIG_PATH_MAX]; /* legr-model HDF5 file to start from; "" = pretrain */
    } model;
    struct {
        int epochs; /* >= 0 */
        int batch;  /* >= 1 */
        double lr;  /* > 0 */
        double momentum;     /* [0, 1) */
        double weight_decay; /* >= 0 */
        int nesterov;        /* bool */
        CfgSchedule schedule;
        int n_milestones;
        int milestones[CONFIG_MAX_MILESTONES]; /* strictly ascending, each in [1, epochs) */
        double gamma;                          /* (0, 1] multistep factor */
    } pretrain;
    struct {
        int enabled;          /* bool */
        int n_target_flops;   /* >= 1 */
        double target_flops[CONFIG_MAX_LEVELS]; /* each in (0, 1), fractions of the unpruned
                                                   FLOPs; several: the fitness is the mean of a
                                                   candidate's fitness at each */
        CfgMetric metric;
        int evaluations;      /* >= population */
        int population;       /* >= 2 */
        int sample;           /* [1, population] tournament size */
        double mutate_fraction; /* (0, 1] of the layers mutated per child */
        double sigma;         /* > 0 mutation scale */
        int tau;              /* >= 0 fine-tune steps per candidate */
        double lr;            /* > 0 */
        double momentum;      /* [0, 1) */
        double weight_decay;  /* >= 0 */
        int batch;            /* >= 1 */
        CfgFitness fitness;
        CfgBatches batches;
        CfgMode mode;
        int sync_batch;       /* >= 1 candidates per deterministic batch */
        int checkpoint_every; /* >= 1 evaluations */
        int val_limit;        /* 0 = whole validation split */
        int train_subset;     /* 0 = every training image; else a seeded subset for the tau steps */
        double safeguard;     /* [0, 1) minimum kept fraction per layer */
        int round_to;         /* [1, 64] channels leave groups this many at a time (PruneGraph) */
        int null_eval;        /* bool: benchmark the master; candidates are not evaluated */
        int reuse_fitness;    /* bool: a candidate pruned to an evaluated network takes its
                                 fitness (shared batches only) */
        int rescore_top;      /* >= 0: re-score this many best distinct candidates (0: off) */
        int rescore_sequences; /* >= 1 more batch sequences each is re-scored on */
    } search;
    struct {
        int enabled; /* bool */
        int n_flops;
        double flops[CONFIG_MAX_LEVELS]; /* each in (0, 1); at least one when enabled */
        int epochs;                      /* >= 0 fine-tune epochs per level */
        double lr;                       /* > 0 */
        double momentum;                 /* [0, 1) */
        double weight_decay;             /* >= 0 */
        int nesterov;                    /* bool */
        int batch;                       /* >= 1 */
        CfgRanking ranking;
        int n_baselines;
        CfgRanking baselines[CFG_RANKING_COUNT]; /* distinct, none is CFG_RANKING_LEGR */
        int latency_repeats;                     /* >= 1 */
        int ranks_per_level; /* >= 0; 0 = automatic (job_family); must divide the rank count */
    } family;
} Config;

/* The defaults of every key (docs/CONFIG.md). */
void config_defaults(Config *c);

/* Defaults, then the settings of the file at `path`. Unknown groups or keys, wrong types,
 * out-of-range or inconsistent values and syntax errors return -1 with err (LEGR_EXIT_USAGE)
 * as "path:line: what is wrong", naming the full key, e.g. "pretrain.epochs". */
int config_load_file(Config *c, const char *path, Err *err);

/* As config_load_file for text in memory; `name` stands for the file name in messages. */
int config_load_string(Config *c, const char *text, const char *name, Err *err);

/* The resolved config as libconfig text (every key, in table order), newly malloc'd. Loading it
 * back gives an identical Config. */
char *config_to_string(const Config *c);

/* config_to_string, written to f. */
void config_print(const Config *c, FILE *f);

#endif
