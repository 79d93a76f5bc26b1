/* IDX (MNIST / Fashion-MNIST) image and label files, gzip-compressed or raw, into a Dataset. */
#include "legr/data.h"
#include "data_read.h"

#include <stdlib.h>
#include <string.h>

#define IDX_MAGIC_IMAGES 0x00000803u /* uint8 elements, 3 dimensions (N, H, W) */
#define IDX_MAGIC_LABELS 0x00000801u /* uint8 elements, 1 dimension (N) */
#define IDX_MAX_SIDE 65536u

static uint32_t idx_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Check the header of an IDX file of `ndims` dimensions and that the payload has exactly the
 * size the dimensions declare. dims[] receives the dimensions. */
static int idx_check(const char *path, const unsigned char *buf, size_t len, uint32_t magic,
                     int ndims, const char *what, uint32_t *dims, Err *err)
{
    size_t header = 4 + 4 * (size_t)ndims;
    /* The magic is checked before the rest of the header so that swapped files are reported as
     * such, not as truncated. */
    if (len >= 4 && idx_be32(buf) != magic)
        return err_set(err, LEGR_EXIT_DATA,
                       "%s: wrong magic 0x%08x, expected 0x%08x (IDX uint8 %s, %d dims)", path,
                       idx_be32(buf), magic, what, ndims);
    if (len < header)
        return err_set(err, LEGR_EXIT_DATA,
                       "%s: truncated: %zu bytes, shorter than the %zu-byte IDX %s header", path,
                       len, header, what);
    size_t payload = 1;
    for (int i = 0; i < ndims; i++) {
        dims[i] = idx_be32(buf + 4 + 4 * i);
        uint32_t limit = i == 0 ? (uint32_t)INT32_MAX : IDX_MAX_SIDE;
        if (dims[i] == 0 || dims[i] > limit)
            return err_set(err, LEGR_EXIT_DATA,
                           "%s: wrong dims: dimension %d is %u (must be in [1, %u])", path, i,
                           dims[i], limit);
        if (payload > ((size_t)1 << 40) / dims[i])
            return err_set(err, LEGR_EXIT_DATA, "%s: wrong dims: the %s would exceed 1 TiB",
                           path, what);
        payload *= dims[i];
    }
    if (len - header < payload)
        return err_set(err, LEGR_EXIT_DATA,
                       "%s: truncated: header declares %zu bytes of %s, file holds %zu", path,
                       payload, what, len - header);
    if (len - header > payload)
        return err_set(err, LEGR_EXIT_DATA,
                       "%s: %zu unexpected bytes after the %zu bytes of %s the header declares",
                       path, len - header - payload, payload, what);
    return 0;
}

int dataset_load_idx(Dataset *d, const char *images_path, const char *labels_path,
                     int num_classes, Err *err)
{
    CHECK(num_classes > 0, "dataset_load_idx: num_classes %d", num_classes);
    memset(d, 0, sizeof *d);
    unsigned char *img = NULL;
    unsigned char *lab = NULL;
    size_t img_len = 0;
    size_t lab_len = 0;
    uint32_t idim[3] = {0, 0, 0};
    uint32_t ldim[1] = {0};
    int ret = -1;
    if (data_read_whole(images_path, &img, &img_len, err) != 0) goto out;
    if (idx_check(images_path, img, img_len, IDX_MAGIC_IMAGES, 3, "images", idim, err) != 0)
        goto out;
    if (data_read_whole(labels_path, &lab, &lab_len, err) != 0) goto out;
    if (idx_check(labels_path, lab, lab_len, IDX_MAGIC_LABELS, 1, "labels", ldim, err) != 0)
        goto out;
    if (idim[0] != ldim[0]) {
        err_set(err, LEGR_EXIT_DATA,
                "image/label count mismatch: %s has %u images but %s has %u labels",
                images_path, idim[0], labels_path, ldim[0]);
        goto out;
    }
    const unsigned char *lp = lab + 8;
    for (uint32_t i = 0; i < ldim[0]; i++) {
        if (lp[i] >= num_classes) {
            err_set(err, LEGR_EXIT_DATA,
                    "%s: label %u of sample %u is out of range [0, %d)", labels_path, lp[i], i,
                    num_classes);
            goto out;
        }
    }
    d->n = (int)idim[0];
    d->c = 1;
    d->h = (int)idim[1];
    d->w = (int)idim[2];
    d->num_classes = num_classes;
    size_t npix = (size_t)idim[0] * idim[1] * idim[2];
    /* Reuse the file buffer for the pixels: shift them over the 16-byte header. */
    memmove(img, img + 16, npix);
    d->pix = xrealloc(img, npix);
    img = NULL;
    d->labels = xmalloc(sizeof(int) * ldim[0]);
    for (uint32_t i = 0; i < ldim[0]; i++) d->labels[i] = lp[i];
    ret = 0;
out:
    free(img);
    free(lab);
    return ret;
}
