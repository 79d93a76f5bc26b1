/* HDF5 files of legr-mpi: the model file (architecture + tensors) and the search checkpoint. */
#ifndef LEGR_H5IO_H
#define LEGR_H5IO_H

#include "legr/arch.h"
#include "legr/evolution.h"
#include "legr/net.h"
#include "legr/prune.h"
#include "legr/util.h"

/* Schema versions written by this build; readers accept files with the same format and a
 * format_version <= these. The schemas are documented in docs/FORMAT.md. */
#define H5IO_MODEL_FORMAT "legr-model"
#define H5IO_MODEL_VERSION 1
#define H5IO_CHECKPOINT_FORMAT "legr-checkpoint"
#define H5IO_CHECKPOINT_VERSION 1
#define H5IO_FAMILY_FORMAT "legr-family"
#define H5IO_FAMILY_VERSION 1

/* Every writer builds its file in memory, writes it to "<path>.tmp", fsyncs it and renames it
 * over path, so a crash, a kill or a full disk at any moment leaves the previous file intact; a
 * failed write returns LEGR_EXIT_OUTPUT naming the file and the system's reason. Every reader
 * rejects missing, non-HDF5, truncated and wrong-format files with LEGR_EXIT_DATA and a message
 * naming the file; HDF5's own error stack printing is silenced while these functions run. */

/* Write the network's architecture, parameters (/params/<name>) and BN statistics
 * (/buffers/<name>) in PyTorch layout, plus the config text (may be NULL). */
int h5_model_save(const char *path, const Net *net, const char *config_text, Err *err);

/* Rebuild the Arch stored in a model file into arch (arch_init'ed here; arch_free it after). */
int h5_model_load_arch(const char *path, Arch *arch, Err *err);

/* Load tensors into a Net built for the file's architecture. Every tensor of the net must be
 * in the file with the same shape and the file must hold no other tensors; a mismatch names the
 * tensor, the expected and found shapes, with a hint. */
int h5_model_load_params(const char *path, Net *net, Err *err);

/* The config text stored with a model file (its `config` attribute) into a malloc'ed string,
 * "" when the file has none (e.g. a network traced from PyTorch). -1 with err as the loaders. */
int h5_model_load_config(const char *path, char **config_text, Err *err);

/* The `format` root attribute of a legr-mpi HDF5 file into buf (e.g. "legr-checkpoint"); -1 with
 * LEGR_EXIT_DATA naming the file when it is missing, not HDF5 or has no format. */
int h5_file_format(const char *path, char *buf, size_t size, Err *err);

/* Training checkpoint (pretrain.h5 and family-level-NN.h5): a legr-model file (so any model
 * reader can use it) plus the SGD momentum of every parameter (/momentum/<name>) and the root
 * attributes epochs_done and steps_done and, for a family level, level_key (what the level is:
 * method, target, base network and kept channels, so a resume never continues another level)
 * and train_seconds (fine-tuning wall time so far). */
typedef struct {
    long long steps_done; /* training steps completed; loads: -1 for a file written before
                           * steps were recorded (it holds epochs_done whole epochs) */
    int epochs_done;      /* whole epochs completed */
    double train_seconds; /* family levels */
} TrainCkpt;
/* level_key is NULL for pretraining. */
int h5_train_ckpt_save(const char *path, const Net *net, const TrainCkpt *ck,
                       const char *level_key, const char *config_text, Err *err);
/* Load parameters, statistics and momentum into net (built for the file's architecture) and
 * what was saved into *ck; *level_key (NULL if the file has none) and *config_text receive
 * malloc'd strings; either pointer may be NULL. */
int h5_train_ckpt_load(const char *path, Net *net, TrainCkpt *ck, char **level_key,
                       char **config_text, Err *err);

/* Write the full search state (evolution_get_state), its params, L, kappa_std and seed, the
 * config text (may be NULL), the base network's net_hash and a short stage label (may be NULL,
 * e.g. "search"). */
int h5_checkpoint_save(const char *path, const Evolution *e, const char *config_text,
                       unsigned long long base_hash, const char *stage, Err *err);

/* Read a checkpoint: e is evolution_init'ed from the stored params and restored (the caller
 * evolution_free's it). *config_text and *stage receive malloc'ed strings (free them); any of
 * config_text, base_hash, stage may be NULL. On failure e is left freed/zeroed. */
int h5_checkpoint_load(const char *path, Evolution *e, char **config_text,
                       unsigned long long *base_hash, char **stage, Err *err);

/* One member of a model family: a pruned, fine-tuned network and what was measured on it. */
typedef struct {
    const char *method;     /* "legr", "identity", "uniform", "random" */
    double target;          /* requested FLOP fraction */
    const Net *net;         /* its tensors and architecture */
    const KeepMask *mask;   /* kept original channels of every node */
    const Arch *base_arch;  /* the unpruned architecture (conv names) */
    double loss_before, acc_before; /* test set, right after surgery */
    double loss, acc;               /* test set, after fine-tuning */
    double latency_b1_ms, latency_b64_ms; /* median eval-mode forward time of this engine */
    double seconds;                 /* fine-tuning wall time */
} FamilyLevel;

/* A family file written level by level (so only one level is in memory at a time). */
typedef struct FamilyWriter FamilyWriter;

/* Start "<path>.tmp" with the root attributes (also those of `data`), /base (the legr-model
 * content of base) and, when alpha != NULL, /search/alpha and /search/kappa (n_layers each, conv
 * order). */
/* How the stored accuracies were measured, so other tools can reproduce them. */
typedef struct {
    const char *dataset;  /* config name, e.g. "fashion-mnist" */
    const char *data_dir;
    int test_images;      /* the first test_images of the test set */
    int channels;
    const float *norm_mean, *norm_std; /* per channel, applied to pixel/255 */
    double base_loss, base_acc;        /* the base network on that test set */
} FamilyData;

FamilyWriter *h5_family_begin(const char *path, const Net *base, const double *alpha,
                              const double *kappa, int n_layers, const FamilyData *data,
                              const char *config_text, Err *err);
/* Append /levels/<NN> (NN = 00, 01, ... in call order). */
int h5_family_add(FamilyWriter *w, const FamilyLevel *level, Err *err);
/* Close, fsync and rename over path; frees w. */
int h5_family_commit(FamilyWriter *w, Err *err);
/* Abandon the write (removes the temporary file); frees w. */
void h5_family_discard(FamilyWriter *w);

#endif
