/* Datasets in memory (IDX, CIFAR binary, synthetic) or read per rank from a legr-images HDF5
 * file, splits, epoch order and batch assembly. */
#ifndef LEGR_DATA_H
#define LEGR_DATA_H

#include <stdint.h>
#include "legr/rng.h"
#include "legr/util.h"

/* Channels a dataset may have (Normalize's capacity). */
#define DATA_MAX_CHANNELS 256

/* An open group of a legr-images file (src/data/h5images.c): images are read on demand. */
typedef struct ImageSource ImageSource;

/* One handle for either backend. In memory, images are kept as uint8 (N, C, H, W); a file-backed
 * set keeps only its labels and reads, decodes and transforms the images a batch asks for.
 * Batches are converted to normalised floats (C, h, w) on demand: c, h, w are what
 * data_fill_batch produces (for a file with data.crop: channels x crop x crop). */
typedef struct {
    int n, c, h, w;
    int num_classes;
    uint8_t *pix;      /* in memory: n*c*h*w; NULL when src is set */
    int *labels;       /* n, each in [0, num_classes) */
    ImageSource *src;  /* file-backed: the open file group; NULL in memory */
} Dataset;

/* Frees the pixels and labels, or closes the file. */
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

/* *out = k of the n indices idx[] (0 < k <= n), chosen by a permutation from
 * (seed, RNG_PURPOSE_SPLIT, 1), sorted ascending and newly allocated. */
void data_subset(const int *idx, int n, int k, uint64_t seed, int **out);

/* order = a permutation of idx[0..n) derived from (seed, epoch) only. */
void data_epoch_order(int *order, const int *idx, int n, uint64_t seed, int epoch);

typedef struct {
    int crop_pad;  /* random crop with this zero padding (0 = none) */
    int flip;      /* random horizontal flip */
    int resized_crop; /* file-backed sets with a crop: RandomResizedCrop (else their
                       * evaluation transform); in-memory sets ignore it */
} Augment;

typedef struct {
    float mean[DATA_MAX_CHANNELS], std[DATA_MAX_CHANNELS]; /* per channel, applied to pixel/255 */
} Normalize;

/* Assemble a batch: x (n, C, H, W) normalised floats, y (n) labels, from samples idx[0..n).
 * Augmentation (if aug != NULL and enabled) draws from rng; pass NULL aug for evaluation.
 * For a file-backed set with a crop, training (aug != NULL) is RandomResizedCrop(crop, scale
 * [0.08, 1], ratio [3/4, 4/3]) then a flip when aug->flip (crop_pad is unused), evaluation is
 * Resize(short side) then CenterCrop(crop). A file that cannot be read or decoded ends the job
 * (exit 3, naming the file, group and image index). */
void data_fill_batch(float *x, int *y, const Dataset *d, const int *idx, int n,
                     const Normalize *norm, const Augment *aug, Rng *rng);

/* As data_fill_batch, but image i draws its augmentation from its own stream
 * (seed, RNG_PURPOSE_AUGMENT, stream0 + i), so the draws of an image depend on its key alone,
 * never on which batch or rank assembles it. */
void data_fill_keyed(float *x, int *y, const Dataset *d, const int *idx, int n,
                     const Normalize *norm, const Augment *aug, uint64_t seed, uint64_t stream0);

/* ---- legr-images files (docs/FORMAT.md) ---- */

/* What a legr-images file holds, from its header alone (no image is read). */
typedef struct {
    int channels, classes;
    int height, width;  /* stored size of the uint8 images; 0 when they are JPEG */
    int jpeg;           /* images are encoded JPEG of any size */
    int n_train, n_test; /* images of /train and of the test group (/test, else /val) */
    char test_group[8]; /* "test" or "val" */
    int has_stats;      /* the file has mean and std attributes */
} ImagesInfo;

/* Read the header of `path`: format, classes, channels, the groups and their image datasets'
 * types and shapes. -1 with err (LEGR_EXIT_DATA naming file and group) when it is not a readable
 * legr-images file with a /train group and a /test or /val group. */
int images_probe(const char *path, ImagesInfo *info, Err *err);

/* How a file-backed set transforms its images. */
typedef struct {
    int crop;      /* 0: images at their stored size (uint8 files only) */
    int resize;    /* evaluation's short side before the centre crop (>= crop) */
    int limit;     /* 0 = all, else the first `limit` images */
} ImagesOpen;

/* The stored (encoded) bytes of recently read images are kept in one cache per process, shared
 * by every open set, least recently used first out: at most `bytes` (default 0: none) beyond
 * the images of the batches being assembled. */
void images_cache_limit(size_t bytes);

/* Open group `group` ("train", "test", "val") of `path` as a file-backed Dataset: checks the
 * header, the dtypes and shapes, and reads every label (range-checked). -1 with err
 * (LEGR_EXIT_DATA naming file, group and, for a label, the image index). */
int dataset_open_images(Dataset *d, const char *path, const char *group, const ImagesOpen *o,
                        Err *err);

/* The file's mean and std attributes (per channel, of pixel/255) into mean/std: 1 when the
 * file has them, 0 when it has not. */
int dataset_images_stats(const Dataset *d, float *mean, float *std);

/* A line about a set for the log (where its images come from), into buf. */
const char *dataset_describe(const Dataset *d, char *buf, size_t size);
/* The evaluation's short side of a file-backed set with a crop. */
int dataset_resize(const Dataset *d);

/* Every HDF5 call of the readers runs under this process-wide lock, so the prefetch threads
 * and the main thread never call HDF5 at the same time (HDF5 builds are often not
 * thread-safe). Other code that calls HDF5 while a DataLoader may be reading (the training
 * loop's checkpoint callback) takes it too. */
void data_io_lock(void);
void data_io_unlock(void);
/* 1 when the HDF5 library was built thread-safe (the lock is needed either way for a library
 * that is not; for one that is, it only orders the calls). */
int data_hdf5_threadsafe(void);

/* ---- batches assembled ahead of use ---- */

/* A helper thread reads, decodes and transforms the next batch while the caller computes on
 * the current one (file-backed sets; for in-memory sets take fills the batch in the caller).
 * At most one batch is queued ahead of the one taken. */
typedef struct DataLoader DataLoader;

/* Batches of at most max_n images of d, with aug (NULL: evaluation) and norm (copied). */
DataLoader *data_loader_new(const Dataset *d, int max_n, const Normalize *norm,
                            const Augment *aug);
/* Queue the batch idx[0..n) (copied) with the keys of data_fill_keyed. */
void data_loader_submit(DataLoader *l, const int *idx, int n, uint64_t seed, uint64_t stream0);
/* Wait for the oldest queued batch; *x and *y stay valid until the next take. A read error of
 * that batch ends the job here (exit 3). */
void data_loader_take(DataLoader *l, const float **x, const int **y);
/* Waits for a batch in progress (its errors are dropped) and frees everything. */
void data_loader_free(DataLoader *l);

#endif
