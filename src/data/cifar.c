/* CIFAR-10 / CIFAR-100 binary record files into a Dataset (3 x 32 x 32, channel-major). */
#include "legr/data.h"
#include "data_read.h"

#include <stdlib.h>
#include <string.h>

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE)

/* Validate one file's records and append them to d (growing pix and labels). */
static int cifar_append(Dataset *d, const char *path, int cifar100, Err *err)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    if (data_read_whole(path, &buf, &len, err) != 0) return -1;
    size_t label_bytes = cifar100 ? 2 : 1;
    size_t rec = label_bytes + CIFAR_PIXELS;
    const char *kind = cifar100 ? "CIFAR-100" : "CIFAR-10";
    int ret = -1;
    if (len == 0) {
        err_set(err, LEGR_EXIT_DATA, "%s: empty file, expected %s records of %zu bytes", path,
                kind, rec);
        goto out;
    }
    if (len % rec != 0) {
        err_set(err, LEGR_EXIT_DATA,
                "%s: truncated or wrong format: size %zu is not a multiple of the %zu-byte "
                "%s record",
                path, len, rec, kind);
        goto out;
    }
    size_t count = len / rec;
    if (count > (size_t)(INT32_MAX - d->n)) {
        err_set(err, LEGR_EXIT_DATA, "%s: too many records (%zu)", path, count);
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        const unsigned char *r = buf + i * rec;
        if (cifar100 && r[0] >= 20) {
            err_set(err, LEGR_EXIT_DATA,
                    "%s: coarse label %u of record %zu is out of range [0, 20)", path, r[0], i);
            goto out;
        }
        unsigned label = r[label_bytes - 1];
        if ((int)label >= d->num_classes) {
            err_set(err, LEGR_EXIT_DATA, "%s: label %u of record %zu is out of range [0, %d)",
                    path, label, i, d->num_classes);
            goto out;
        }
    }
    size_t total = (size_t)d->n + count;
    d->pix = xrealloc(d->pix, total * CIFAR_PIXELS);
    d->labels = xrealloc(d->labels, sizeof(int) * total);
    for (size_t i = 0; i < count; i++) {
        const unsigned char *r = buf + i * rec;
        size_t k = (size_t)d->n + i;
        d->labels[k] = r[label_bytes - 1];
        memcpy(d->pix + k * CIFAR_PIXELS, r + label_bytes, CIFAR_PIXELS);
    }
    d->n += (int)count;
    ret = 0;
out:
    free(buf);
    return ret;
}

int dataset_load_cifar(Dataset *d, const char *const *paths, int n_paths, int cifar100, Err *err)
{
    memset(d, 0, sizeof *d);
    d->c = 3;
    d->h = CIFAR_SIDE;
    d->w = CIFAR_SIDE;
    d->num_classes = cifar100 ? 100 : 10;
    if (n_paths <= 0) return err_set(err, LEGR_EXIT_DATA, "no CIFAR files given");
    for (int i = 0; i < n_paths; i++) {
        if (cifar_append(d, paths[i], cifar100, err) != 0) {
            dataset_free(d);
            return -1;
        }
    }
    return 0;
}
