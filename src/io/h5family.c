/* The legr-family file: the base network, the learned ranking, and every pruned level. */
#include <stdlib.h>
#include <string.h>

#include "h5util.h"
#include "legr/h5io.h"

struct FamilyWriter {
    hid_t fid;
    Path tmp, path;
    int n_levels;
    H5Quiet quiet;
};

/* Root attributes describing the test data of the stored accuracies. */
static int write_data_attrs(hid_t fid, const FamilyData *d, Err *err)
{
    hsize_t dims[1] = {(hsize_t)d->channels};
    if (h5u_set_attr_string(fid, ".", "dataset", d->dataset, err) ||
        h5u_set_attr_string(fid, ".", "data_dir", d->data_dir, err) ||
        h5u_set_attr(fid, ".", "test_images", H5T_NATIVE_INT, &d->test_images, err) ||
        h5u_write(fid, "norm_mean", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 1, dims, d->norm_mean, err) ||
        h5u_write(fid, "norm_std", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 1, dims, d->norm_std, err))
        return -1;
    return 0;
}

FamilyWriter *h5_family_begin(const char *path, const Net *base, const double *alpha,
                              const double *kappa, int n_layers, const FamilyData *data,
                              const char *config_text, Err *err)
{
    FamilyWriter *w = xcalloc(1, sizeof *w);
    w->path = path_fmt("%s", path);
    h5u_quiet_begin(&w->quiet);
    w->fid = h5u_create_tmp(path, &w->tmp, H5IO_FAMILY_FORMAT, H5IO_FAMILY_VERSION,
                            config_text, err);
    if (w->fid < 0) goto fail;
    if (write_data_attrs(w->fid, data, err) != 0) {
        h5u_discard(w->fid, w->tmp.s);
        goto fail;
    }
    hid_t g = H5Gcreate2(w->fid, "base", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = g < 0 ? err_set(err, LEGR_EXIT_INTERNAL, "HDF5: cannot create /base")
                   : h5u_write_model(g, base, err);
    if (rc == 0)
        rc = h5u_set_attr(g, ".", "test_loss", H5T_NATIVE_DOUBLE, &data->base_loss, err) ||
                     h5u_set_attr(g, ".", "test_top1", H5T_NATIVE_DOUBLE, &data->base_acc, err)
                 ? -1 : 0;
    if (g >= 0) H5Gclose(g);
    if (rc == 0 && alpha) {
        hid_t s = H5Gcreate2(w->fid, "search", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hsize_t dims[1] = {(hsize_t)n_layers};
        rc = s < 0 ? err_set(err, LEGR_EXIT_INTERNAL, "HDF5: cannot create /search")
                   : (h5u_write(s, "alpha", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 1, dims, alpha, err) ||
                      h5u_write(s, "kappa", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 1, dims, kappa, err))
                         ? -1 : 0;
        if (s >= 0) H5Gclose(s);
    }
    if (rc == 0) {
        hid_t l = H5Gcreate2(w->fid, "levels", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (l < 0) rc = err_set(err, LEGR_EXIT_INTERNAL, "HDF5: cannot create /levels");
        else H5Gclose(l);
    }
    if (rc == 0) return w;
    h5u_discard(w->fid, w->tmp.s);
fail:
    h5u_quiet_end(&w->quiet);
    free(w);
    return NULL;
}

/* /levels/NN/kept/<conv>: the original indices of the filters each conv kept. */
static int write_kept(hid_t g, const FamilyLevel *lv, Err *err)
{
    hid_t k = H5Gcreate2(g, "kept", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (k < 0) return err_set(err, LEGR_EXIT_INTERNAL, "HDF5: cannot create kept/");
    int rc = 0;
    for (int i = 0; i < lv->base_arch->n_nodes && rc == 0; i++) {
        const Node *n = &lv->base_arch->nodes[i];
        if (n->kind != OP_CONV) continue;
        int count = 0;
        const int *kept = prune_mask_kept(lv->mask, i, &count);
        hsize_t dims[1] = {(hsize_t)count};
        rc = h5u_write(k, n->name, H5T_NATIVE_INT, H5T_STD_I32LE, 1, dims, kept, err);
    }
    H5Gclose(k);
    return rc;
}

int h5_family_add(FamilyWriter *w, const FamilyLevel *lv, Err *err)
{
    char name[64];
    snprintf(name, sizeof name, "levels/%02d", w->n_levels);
    hid_t g = H5Gcreate2(w->fid, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return err_set(err, LEGR_EXIT_INTERNAL, "HDF5: cannot create /%s", name);
    struct {
        const char *name;
        double value;
    } attrs[] = {{"target", lv->target},
                 {"test_loss_before", lv->loss_before},
                 {"test_top1_before", lv->acc_before},
                 {"test_loss", lv->loss},
                 {"test_top1", lv->acc},
                 {"latency_b1_ms", lv->latency_b1_ms},
                 {"latency_b64_ms", lv->latency_b64_ms},
                 {"finetune_seconds", lv->seconds}};
    int rc = h5u_set_attr_string(g, ".", "method", lv->method, err);
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0] && rc == 0; i++)
        rc = h5u_set_attr(g, ".", attrs[i].name, H5T_NATIVE_DOUBLE, &attrs[i].value, err);
    if (rc == 0) rc = h5u_write_model(g, lv->net, err);
    if (rc == 0) rc = write_kept(g, lv, err);
    H5Gclose(g);
    if (rc == 0) w->n_levels++;
    return rc;
}

int h5_family_commit(FamilyWriter *w, Err *err)
{
    int rc = h5u_set_attr(w->fid, ".", "n_levels", H5T_NATIVE_INT, &w->n_levels, err);
    if (rc == 0) rc = h5u_commit(w->fid, w->tmp.s, w->path.s, err);
    else h5u_discard(w->fid, w->tmp.s);
    h5u_quiet_end(&w->quiet);
    free(w);
    return rc;
}

void h5_family_discard(FamilyWriter *w)
{
    h5u_discard(w->fid, w->tmp.s);
    h5u_quiet_end(&w->quiet);
    free(w);
}
