/* Where each configured dataset lives and how it is read. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "job_internal.h"

void job_data_shape(const Config *cfg, int *c, int *h, int *w, int *classes)
{
    switch (cfg->data.dataset) {
    case CFG_DATASET_FASHION_MNIST:
    case CFG_DATASET_MNIST: *c = 1; *h = *w = 28; *classes = 10; break;
    case CFG_DATASET_CIFAR10: *c = 3; *h = *w = 32; *classes = 10; break;
    case CFG_DATASET_CIFAR100: *c = 3; *h = *w = 32; *classes = 100; break;
    default:
        *c = 3;
        *h = *w = cfg->data.synthetic_size;
        *classes = cfg->data.synthetic_classes;
    }
}

/* dir/name, preferring the gzip-compressed file when both exist. */
static void idx_path(char *out, size_t size, const char *dir, const char *name)
{
    snprintf(out, size, "%s/%s.gz", dir, name);
    if (access(out, R_OK) != 0) snprintf(out, size, "%s/%s", dir, name);
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
    int c, h, w, k;
    job_data_shape(cfg, &c, &h, &w, &k);
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

int job_data_load(const Config *cfg, Dataset *train, Dataset *test, Err *err)
{
    const char *dir = cfg->data.dir;
    char a[2200], b[2200];
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    switch (cfg->data.dataset) {
    case CFG_DATASET_FASHION_MNIST:
    case CFG_DATASET_MNIST:
        idx_path(a, sizeof a, dir, "train-images-idx3-ubyte");
        idx_path(b, sizeof b, dir, "train-labels-idx1-ubyte");
        if (dataset_load_idx(train, a, b, 10, err) != 0) return -1;
        idx_path(a, sizeof a, dir, "t10k-images-idx3-ubyte");
        idx_path(b, sizeof b, dir, "t10k-labels-idx1-ubyte");
        if (dataset_load_idx(test, a, b, 10, err) != 0) return -1;
        if (train->h != 28 || train->w != 28 || test->h != 28 || test->w != 28)
            return err_set(err, LEGR_EXIT_DATA, "%s: images are %dx%d, expected 28x28", dir,
                           train->h, train->w);
        break;
    case CFG_DATASET_CIFAR10: {
        char p[5][2200];
        const char *paths[5];
        for (int i = 0; i < 5; i++) {
            snprintf(p[i], sizeof p[i], "%s/data_batch_%d.bin", dir, i + 1);
            paths[i] = p[i];
        }
        if (dataset_load_cifar(train, paths, 5, 0, err) != 0) return -1;
        snprintf(a, sizeof a, "%s/test_batch.bin", dir);
        const char *tp[1] = {a};
        if (dataset_load_cifar(test, tp, 1, 0, err) != 0) return -1;
        break;
    }
    case CFG_DATASET_CIFAR100: {
        snprintf(a, sizeof a, "%s/train.bin", dir);
        snprintf(b, sizeof b, "%s/test.bin", dir);
        const char *p1[1] = {a}, *p2[1] = {b};
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
