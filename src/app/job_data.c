/* Where each configured dataset lives, how it is read, and which split validates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job_internal.h"
#include "legr/h5io.h"

/* The fixed shapes of the built-in datasets. */
static void builtin_shape(const Config *cfg, DataShape *s)
{
    s->n_train = s->n_test = -1;
    switch (cfg->data.dataset) {
    case CFG_DATASET_FASHION_MNIST:
    case CFG_DATASET_MNIST:
        s->c = 1;
        s->h = s->w = 28;
        s->classes = 10;
        s->n_train = 60000;
        s->n_test = 10000;
        break;
    case CFG_DATASET_CIFAR10:
    case CFG_DATASET_CIFAR100:
        s->c = 3;
        s->h = s->w = 32;
        s->classes = cfg->data.dataset == CFG_DATASET_CIFAR10 ? 10 : 100;
        s->n_train = 50000;
        s->n_test = 10000;
        break;
    default:
        s->c = 3;
        s->h = s->w = cfg->data.synthetic_size;
        s->classes = cfg->data.synthetic_classes;
        s->n_train = cfg->data.synthetic_n;
    }
}

int job_data_shape(const Config *cfg, DataShape *s, Err *err)
{
    memset(s, 0, sizeof *s);
    if (cfg->data.dataset != CFG_DATASET_HDF5) {
        builtin_shape(cfg, s);
        return 0;
    }
    const char *path = cfg->data.file;
    ImagesInfo in;
    if (images_probe(path, &in, err) != 0) return -1;
    if (cfg->data.channels && cfg->data.channels != in.channels)
        return err_set(err, LEGR_EXIT_DATA, "%s: the file's images have %d channel(s), but "
                       "data.channels = %d", path, in.channels, cfg->data.channels);
    if (cfg->data.classes && cfg->data.classes != in.classes)
        return err_set(err, LEGR_EXIT_DATA, "%s: the file lists %d classes, but data.classes = "
                       "%d", path, in.classes, cfg->data.classes);
    if (in.jpeg && cfg->data.crop == 0)
        return err_set(err, LEGR_EXIT_DATA, "%s: the images are JPEG of any size; set data.crop "
                       "(and data.resize) to give the network one size", path);
    s->c = in.channels;
    s->h = cfg->data.crop ? cfg->data.crop : in.height;
    s->w = cfg->data.crop ? cfg->data.crop : in.width;
    s->classes = in.classes;
    s->n_train = in.n_train;
    s->n_test = in.n_test;
    return 0;
}

int job_data_shape_assumed(const Config *cfg, DataShape *s, Err *err)
{
    memset(s, 0, sizeof *s);
    if (cfg->data.crop == 0)
        return err_set(err, LEGR_EXIT_DATA, "the network's input size comes from data.file's "
                       "images when data.crop is 0; set data.crop for a dry run without the "
                       "file");
    s->c = cfg->data.channels ? cfg->data.channels : 3;
    s->h = s->w = cfg->data.crop;
    s->classes = cfg->data.classes ? cfg->data.classes : 1000;
    s->n_train = s->n_test = -1;
    return 0;
}

/* dir/name, preferring the gzip-compressed file when both exist. */
static Path idx_path(const char *dir, const char *name)
{
    Path p = path_fmt("%s/%s.gz", dir, name);
    return access(p.s, R_OK) == 0 ? p : path_fmt("%s/%s", dir, name);
}

/* Keep only the first `limit` samples (0 = all). */
static void apply_limit(Dataset *d, int limit)
{
    if (limit > 0 && limit < d->n) d->n = limit;
}

/* Synthetic data: one draw of synthetic_n + synthetic_n/4 samples (same class prototypes),
 * the first synthetic_n for training and the rest as the test set. */
static void synthetic_split(const Config *cfg, Dataset *train, Dataset *test)
{
    DataShape s;
    builtin_shape(cfg, &s);
    const int c = s.c, h = s.h, w = s.w, k = s.classes;
    int n = cfg->data.synthetic_n, nt = n / 4 > 2 ? n / 4 : 2;
    Dataset all;
    dataset_synthetic(&all, n + nt, c, h, w, k, (uint64_t)cfg->run.seed);
    size_t img = (size_t)c * h * w;
    *train = all;
    train->n = n;
    *test = all;
    test->n = nt;
    test->pix = xmalloc((size_t)nt * img);
    test->labels = xmalloc((size_t)nt * sizeof(int));
    memcpy(test->pix, all.pix + (size_t)n * img, (size_t)nt * img);
    memcpy(test->labels, all.labels + n, (size_t)nt * sizeof(int));
}

/* The training group and the test group (/test, else /val) of data.file, opened on this rank;
 * the per-rank image cache gets data.cache_mb. */
static int load_hdf5(const Config *cfg, Dataset *train, Dataset *test, Err *err)
{
    const char *path = cfg->data.file;
    ImagesInfo in;
    if (images_probe(path, &in, err) != 0) return -1;
    images_cache_limit((size_t)cfg->data.cache_mb << 20);
    ImagesOpen o = {cfg->data.crop, cfg->data.resize, cfg->data.train_limit};
    if (cfg->data.resize == 0)
        o.resize = (int)(cfg->data.crop / 0.875 + 0.5); /* 224 -> 256 */
    if (dataset_open_images(train, path, "train", &o, err) != 0) return -1;
    o.limit = cfg->data.test_limit;
    if (dataset_open_images(test, path, in.test_group, &o, err) != 0) {
        dataset_free(train);
        return -1;
    }
    return 0;
}

void job_data_norm(const Dataset *train, Normalize *norm, char *note, size_t note_size)
{
    static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
    static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};
    memset(norm, 0, sizeof *norm);
    for (int i = 0; i < DATA_MAX_CHANNELS; i++) norm->std[i] = 1.0f;
    note[0] = '\0';
    if (!train->src) {
        dataset_channel_stats(train, norm->mean, norm->std);
        for (int i = 0; i < train->c; i++)
            if (!(norm->std[i] > 0)) norm->std[i] = 1.0f;
    } else if (dataset_images_stats(train, norm->mean, norm->std)) {
        snprintf(note, note_size, "the file's mean and std");
    } else if (train->c == 3) {
        memcpy(norm->mean, imagenet_mean, sizeof imagenet_mean);
        memcpy(norm->std, imagenet_std, sizeof imagenet_std);
        snprintf(note, note_size, "ImageNet's mean and std (the file has no mean/std "
                 "attributes)");
    } else {
        for (int i = 0; i < train->c; i++) norm->mean[i] = norm->std[i] = 0.5f;
        snprintf(note, note_size, "mean 0.5 and std 0.5 for each of the %d channels (the file "
                 "has no mean/std attributes)", train->c);
    }
}

int job_data_load(const Config *cfg, Dataset *train, Dataset *test, Err *err)
{
    const char *dir = cfg->data.dir;
    Path a, b;
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    if (cfg->data.dataset == CFG_DATASET_HDF5) return load_hdf5(cfg, train, test, err);
    switch (cfg->data.dataset) {
    case CFG_DATASET_FASHION_MNIST:
    case CFG_DATASET_MNIST:
        a = idx_path(dir, "train-images-idx3-ubyte");
        b = idx_path(dir, "train-labels-idx1-ubyte");
        if (dataset_load_idx(train, a.s, b.s, 10, err) != 0) return -1;
        a = idx_path(dir, "t10k-images-idx3-ubyte");
        b = idx_path(dir, "t10k-labels-idx1-ubyte");
        if (dataset_load_idx(test, a.s, b.s, 10, err) != 0) return -1;
        if (train->h != 28 || train->w != 28 || test->h != 28 || test->w != 28)
            return err_set(err, LEGR_EXIT_DATA, "%s: images are %dx%d, expected 28x28", dir,
                           train->h, train->w);
        break;
    case CFG_DATASET_CIFAR10: {
        Path p[5];
        const char *paths[5];
        for (int i = 0; i < 5; i++) {
            p[i] = path_fmt("%s/data_batch_%d.bin", dir, i + 1);
            paths[i] = p[i].s;
        }
        if (dataset_load_cifar(train, paths, 5, 0, err) != 0) return -1;
        a = path_fmt("%s/test_batch.bin", dir);
        const char *tp[1] = {a.s};
        if (dataset_load_cifar(test, tp, 1, 0, err) != 0) return -1;
        break;
    }
    case CFG_DATASET_CIFAR100: {
        a = path_fmt("%s/train.bin", dir);
        b = path_fmt("%s/test.bin", dir);
        const char *p1[1] = {a.s}, *p2[1] = {b.s};
        if (dataset_load_cifar(train, p1, 1, 1, err) != 0) return -1;
        if (dataset_load_cifar(test, p2, 1, 1, err) != 0) return -1;
        break;
    }
    default:
        synthetic_split(cfg, train, test);
    }
    apply_limit(train, cfg->data.train_limit);
    apply_limit(test, cfg->data.test_limit);
    return 0;
}

/* The split seed of the pretraining that produced model.init, or -1 when model.init is not a
 * network pretrained by this program on this job's data (no stored config, another dataset,
 * limit or validation fraction, synthetic data, or itself loaded from a file). */
static int base_split_seed(const Config *cfg)
{
    char *text = NULL;
    Err err = {0, ""};
    Config b;
    int seed = -1;
    if (h5_model_load_config(cfg->model.init, &text, &err) == 0 && text[0] &&
        config_load_string(&b, text, cfg->model.init, &err) == 0 && !b.model.init[0] &&
        b.pretrain.epochs > 0 && b.data.dataset == cfg->data.dataset &&
        b.data.dataset != CFG_DATASET_SYNTHETIC && b.data.train_limit == cfg->data.train_limit &&
        b.data.val_fraction == cfg->data.val_fraction)
        seed = b.data.split_seed >= 0 ? b.data.split_seed : b.run.seed;
    free(text);
    return seed;
}

int job_split_seed(const Config *cfg, char *note, size_t note_size)
{
    note[0] = '\0';
    int base = cfg->model.init[0] && cfg->data.val_fraction > 0 ? base_split_seed(cfg) : -1;
    if (cfg->data.split_seed >= 0) {
        if (base >= 0 && base != cfg->data.split_seed)
            snprintf(note, note_size,
                     "warning: data.split_seed = %d, but model.init = \"%s\" was pretrained "
                     "with the split of seed %d: most validation images were its training "
                     "images, so validation overstates it (set data.split_seed = %d, or -1)",
                     cfg->data.split_seed, cfg->model.init, base, base);
        return cfg->data.split_seed;
    }
    if (base >= 0 && base != cfg->run.seed) {
        snprintf(note, note_size,
                 "train/validation split of seed %d, the one model.init = \"%s\" was "
                 "pretrained with (data.split_seed = -1), so validation images are unseen by it",
                 base, cfg->model.init);
        return base;
    }
    return cfg->run.seed;
}

void job_split(const Config *cfg, int n, JobSplit *s, char *note, size_t note_size)
{
    int split_seed = job_split_seed(cfg, note, note_size);
    data_split(n, cfg->data.val_fraction, (uint64_t)split_seed, &s->train_idx, &s->n_train,
               &s->val_idx, &s->n_val);
    s->subset_idx = s->train_idx;
    s->n_subset = s->n_train;
    if (cfg->search.train_subset > 0 && cfg->search.train_subset < s->n_train) {
        data_subset(s->train_idx, s->n_train, cfg->search.train_subset, (uint64_t)cfg->run.seed,
                    &s->subset_idx);
        s->n_subset = cfg->search.train_subset;
    }
}
