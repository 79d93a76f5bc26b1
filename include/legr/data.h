/* Datasets in memory (IDX, CIFAR binary, synthetic), splits, epoch order and batch assembly. */
#ifndef LEGR_DATA_H
#define LEGR_DATA_H

#include <stdint.h>
#include "legr/rng.h"
#include "legr/util.h"

/* Images are kept as uint8 (N, C, H, W); batches are converted to normalised floats on demand. */
typedef struct {
    int n, c, h, w;
    int num_classes;
    uint8_t *pix;   /* n*c*h*w */
    int *labels;    /* n, each in [0, num_classes) */
} Dataset;

void dataset_free(Dataset *d);

/* IDX image + label files (MNIST / Fashion-MNIST), gzip-compressed or raw (detected by magic).
 * Errors (missing, truncated, wrong magic, wrong dims, label >= num_classes, count mismatch)
 * name the file and return -1 with err->code = LEGR_EXIT_DATA. */
int dataset_load_idx(Dataset *d, const char *images_path, const char *labels_path,
                     int num_classes, Err *err);

/* CIFAR-10 (1 label byte + 3072 pixels per record) or CIFAR-100 (coarse, fine, 3072 pixels; the
 * fine label is used) binary files; `paths` are concatenated in order. */
int dataset_load_cifar(Dataset *d, const char *const *paths, int n_paths, int cifar100, Err *err);

/* Deterministic synthetic classification data from (seed): class-dependent patterns plus noise,
 * learnable by a small CNN. */
void dataset_synthetic(Dataset *d, int n, int c, int h, int w, int num_classes, uint64_t seed);

/* Per-channel mean and std of pixel/255 over the whole set (double accumulation). */
void dataset_channel_stats(const Dataset *d, float *mean, float *std);

/* Hold out round(val_fraction*n) samples, chosen by a permutation from (seed, RNG_PURPOSE_SPLIT).
 * Both index lists are sorted ascending and newly allocated. */
void data_split(int n, double val_fraction, uint64_t seed, int **train_idx, int *n_train,
                int **val_idx, int *n_val);

/* order = a permutation of idx[0..n) derived from (seed, epoch) only. */
void data_epoch_order(int *order, const int *idx, int n, uint64_t seed, int epoch);

typedef struct {
    int crop_pad;  /* random crop with this zero padding (0 = none) */
    int flip;      /* random horizontal flip */
} Augment;

typedef struct {
    float mean[4], std[4]; /* per channel, applied to pixel/255 */
} Normalize;

/* Assemble a batch: x (n, C, H, W) normalised floats, y (n) labels, from samples idx[0..n).
 * Augmentation (if aug != NULL and enabled) draws from rng; pass NULL aug for evaluation. */
void data_fill_batch(float *x, int *y, const Dataset *d, const int *idx, int n,
                     const Normalize *norm, const Augment *aug, Rng *rng);

#endif
