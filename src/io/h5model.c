/* The "legr-model" HDF5 file: a network's architecture, parameters and BN statistics. */
#include "legr/h5io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "h5util.h"

#define HINT_MISMATCH                                                                        \
    "\n---> HINT: the file holds a different network than the one built here. Build the Net " \
    "from the file's own architecture (h5_model_load_arch), or fix model.* in the config; "   \
    "the config that wrote the file is its 'config' attribute (h5dump -a config FILE)."

/* One row of /arch/nodes. Strings are NUL-terminated, fixed length. */
typedef struct {
    char name[ARCH_NAME_MAX];
    char kind[16];
    int in0, in1, c, h, w, k, stride, pad, groups;
    int bias;     /* conv: 1 with a bias vector; absent in files written before conv biases */
    float drop_p; /* dropout probability; absent in files written before dropout nodes */
} NodeRow;

/* The compound type of /arch/nodes; fields are matched by name when reading, and a field the
 * file lacks (bias and drop_p in files written before them) is left as it was in the zeroed
 * rows, so it reads as 0. */
static hid_t node_row_type(void)
{
    hid_t name_t = H5Tcopy(H5T_C_S1);
    H5Tset_size(name_t, ARCH_NAME_MAX);
    H5Tset_strpad(name_t, H5T_STR_NULLTERM);
    hid_t kind_t = H5Tcopy(H5T_C_S1);
    H5Tset_size(kind_t, 16);
    H5Tset_strpad(kind_t, H5T_STR_NULLTERM);
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(NodeRow));
    H5Tinsert(t, "name", HOFFSET(NodeRow, name), name_t);
    H5Tinsert(t, "kind", HOFFSET(NodeRow, kind), kind_t);
    H5Tinsert(t, "in0", HOFFSET(NodeRow, in0), H5T_NATIVE_INT);
    H5Tinsert(t, "in1", HOFFSET(NodeRow, in1), H5T_NATIVE_INT);
    H5Tinsert(t, "c", HOFFSET(NodeRow, c), H5T_NATIVE_INT);
    H5Tinsert(t, "h", HOFFSET(NodeRow, h), H5T_NATIVE_INT);
    H5Tinsert(t, "w", HOFFSET(NodeRow, w), H5T_NATIVE_INT);
    H5Tinsert(t, "k", HOFFSET(NodeRow, k), H5T_NATIVE_INT);
    H5Tinsert(t, "stride", HOFFSET(NodeRow, stride), H5T_NATIVE_INT);
    H5Tinsert(t, "pad", HOFFSET(NodeRow, pad), H5T_NATIVE_INT);
    H5Tinsert(t, "groups", HOFFSET(NodeRow, groups), H5T_NATIVE_INT);
    H5Tinsert(t, "bias", HOFFSET(NodeRow, bias), H5T_NATIVE_INT);
    H5Tinsert(t, "drop_p", HOFFSET(NodeRow, drop_p), H5T_NATIVE_FLOAT);
    H5Tclose(name_t);
    H5Tclose(kind_t);
    return t;
}

static int write_arch(hid_t fid, const Arch *a, Err *err)
{
    int rc = -1;
    hid_t g = H5Gcreate2(fid, "arch", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t gm = g >= 0 ? H5Gcreate2(g, "chan_map", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    hid_t t = node_row_type();
    NodeRow *rows = xcalloc((size_t)a->n_nodes, sizeof *rows);
    if (gm < 0) {
        err_set(err, LEGR_EXIT_INTERNAL, "HDF5: cannot create group /arch");
        goto out;
    }
    for (int i = 0; i < a->n_nodes; i++) {
        const Node *n = &a->nodes[i];
        NodeRow *r = &rows[i];
        snprintf(r->name, sizeof r->name, "%s", n->name);
        snprintf(r->kind, sizeof r->kind, "%s", op_kind_names[n->kind]);
        r->in0 = n->in[0];
        r->in1 = n->in[1];
        r->c = n->c;
        r->h = n->h;
        r->w = n->w;
        r->k = n->k;
        r->stride = n->stride;
        r->pad = n->pad;
        r->groups = n->groups;
        r->bias = n->bias;
        r->drop_p = n->drop_p;
        if (n->kind == OP_SHORTCUT) {
            hsize_t dims[1] = {(hsize_t)n->map_len};
            if (h5u_write(gm, n->name, H5T_NATIVE_INT, H5T_STD_I32LE, 1, dims, n->chan_map, err))
                goto out;
        }
    }
    hsize_t dims[1] = {(hsize_t)a->n_nodes};
    if (h5u_write(g, "nodes", t, t, 1, dims, rows, err)) goto out;
    if (h5u_set_attr(g, ".", "num_classes", H5T_NATIVE_INT, &a->num_classes, err)) goto out;
    rc = 0;
out:
    free(rows);
    H5Tclose(t);
    if (gm >= 0) H5Gclose(gm);
    if (g >= 0) H5Gclose(g);
    return rc;
}

/* One group of tensors (/params or /buffers) from a spec table over a flat buffer. */
static int write_tensors(hid_t fid, const char *group, const ParamSpec *specs, int n,
                         const float *flat, Err *err)
{
    hid_t g = H5Gcreate2(fid, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return err_set(err, LEGR_EXIT_INTERNAL, "HDF5: cannot create group /%s", group);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        hsize_t dims[4];
        for (int d = 0; d < specs[i].ndim; d++) dims[d] = (hsize_t)specs[i].shape[d];
        rc = h5u_write(g, specs[i].name, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, specs[i].ndim, dims,
                       flat + specs[i].offset, err);
    }
    H5Gclose(g);
    return rc;
}

/* Names become HDF5 link names, where '/' would create groups. */
static int check_names(const Net *net, Err *err)
{
    for (int i = 0; i < net->arch.n_nodes; i++)
        if (strchr(net->arch.nodes[i].name, '/') || net->arch.nodes[i].name[0] == '\0')
            return err_set(err, LEGR_EXIT_INTERNAL,
                           "layer name '%s' cannot be stored in HDF5 (empty or contains '/')",
                           net->arch.nodes[i].name);
    return 0;
}

int h5u_write_model(hid_t loc, const Net *net, Err *err)
{
    long long flops = arch_flops(&net->arch), nparams = arch_params(&net->arch);
    if (check_names(net, err) || h5u_set_attr(loc, ".", "flops", H5T_NATIVE_LLONG, &flops, err) ||
        h5u_set_attr(loc, ".", "params", H5T_NATIVE_LLONG, &nparams, err) ||
        write_arch(loc, &net->arch, err) ||
        write_tensors(loc, "params", net->params, net->n_params, net->param, err) ||
        write_tensors(loc, "buffers", net->bufs, net->n_bufs, net->buf, err))
        return -1;
    return 0;
}

/* A legr-model file; with ck != NULL a training checkpoint (momentum, epochs_done, steps_done
 * and, with level_key != NULL, level_key and train_seconds). */
static int save_model_file(const char *path, const Net *net, const TrainCkpt *ck,
                           const char *level_key, const char *config_text, Err *err)
{
    H5Quiet q;
    h5u_quiet_begin(&q);
    Path tmp;
    int rc = -1;
    hid_t fid = h5u_create_tmp(path, &tmp, H5IO_MODEL_FORMAT, H5IO_MODEL_VERSION,
                               config_text, err);
    if (fid < 0) goto out;
    if (h5u_write_model(fid, net, err) ||
        (ck &&
         (write_tensors(fid, "momentum", net->params, net->n_params, net->mom, err) ||
          h5u_set_attr(fid, ".", "epochs_done", H5T_NATIVE_INT, &ck->epochs_done, err) ||
          h5u_set_attr(fid, ".", "steps_done", H5T_NATIVE_LLONG, &ck->steps_done, err))) ||
        (ck && level_key &&
         (h5u_set_attr_string(fid, ".", "level_key", level_key, err) ||
          h5u_set_attr(fid, ".", "train_seconds", H5T_NATIVE_DOUBLE, &ck->train_seconds, err)))) {
        h5u_discard(fid, tmp.s);
        goto out;
    }
    rc = h5u_commit(fid, tmp.s, path, err);
out:
    h5u_quiet_end(&q);
    return rc;
}

int h5_model_save(const char *path, const Net *net, const char *config_text, Err *err)
{
    return save_model_file(path, net, NULL, NULL, config_text, err);
}

static int parse_kind(const char *s)
{
    for (int k = 0; k < OP_COUNT; k++)
        if (strcmp(s, op_kind_names[k]) == 0) return k;
    return -1;
}

/* Append node row r as node i of a; a failure from the builder becomes a data error. */
static int rebuild_node(Arch *a, hid_t gm, const NodeRow *r, int i, const char *path, Err *err)
{
    Err sub = {0};
    int kind = parse_kind(r->kind), idx = -1;
    switch (kind) {
    case OP_INPUT: idx = arch_add_input(a, r->name, r->c, r->h, r->w, &sub); break;
    case OP_CONV:
        idx = arch_add_conv(a, r->name, r->in0, r->c, r->k, r->stride, r->pad, r->groups, &sub);
        break;
    case OP_BN: idx = arch_add_bn(a, r->name, r->in0, &sub); break;
    case OP_RELU: idx = arch_add_relu(a, r->name, r->in0, &sub); break;
    case OP_RELU6: idx = arch_add_relu6(a, r->name, r->in0, &sub); break;
    case OP_MAXPOOL:
        idx = arch_add_maxpool(a, r->name, r->in0, r->k, r->stride, r->pad, &sub);
        break;
    case OP_DROPOUT: idx = arch_add_dropout(a, r->name, r->in0, r->drop_p, &sub); break;
    case OP_ADD: idx = arch_add_add(a, r->name, r->in0, r->in1, &sub); break;
    case OP_SHORTCUT: idx = arch_add_shortcut(a, r->name, r->in0, r->c, r->stride, &sub); break;
    case OP_GAP: idx = arch_add_gap(a, r->name, r->in0, &sub); break;
    case OP_FC: idx = arch_add_fc(a, r->name, r->in0, r->c, &sub); break;
    default: /* not a kind name (parse_kind gave -1) */
        return err_set(err, LEGR_EXIT_DATA, "%s: node %d '%.*s' has unknown kind '%.*s'", path,
                       i, ARCH_NAME_MAX, r->name, 16, r->kind);
    }
    if (idx == i && r->bias && (kind != OP_CONV || arch_set_conv_bias(a, i, &sub) != 0))
        idx = -1;
    if (idx != i)
        return err_set(err, LEGR_EXIT_DATA, "%s: stored architecture is invalid at node %d: %s",
                       path, i, sub.msg[0] ? sub.msg : "a bias on a node that is not a conv");
    if (kind == OP_SHORTCUT) {
        Node *n = &a->nodes[i];
        hsize_t dims[1] = {(hsize_t)n->map_len};
        if (h5u_read(gm, r->name, H5T_NATIVE_INT, 1, dims, n->chan_map, path, err)) return -1;
    }
    return 0;
}

int h5_model_load_arch(const char *path, Arch *arch, Err *err)
{
    H5Quiet q;
    h5u_quiet_begin(&q);
    arch_init(arch);
    int rc = -1, ndim;
    hsize_t dims[4];
    NodeRow *rows = NULL;
    hid_t t = node_row_type(), g = -1, gm = -1;
    hid_t fid = h5u_open_read(path, H5IO_MODEL_FORMAT, H5IO_MODEL_VERSION, err);
    if (fid < 0) goto out;
    g = H5Gopen2(fid, "arch", H5P_DEFAULT);
    gm = g >= 0 ? H5Gopen2(g, "chan_map", H5P_DEFAULT) : -1;
    if (gm < 0) {
        err_set(err, LEGR_EXIT_DATA, "%s: groups /arch and /arch/chan_map are missing", path);
        goto out;
    }
    if (h5u_shape(g, "nodes", &ndim, dims, path, err)) goto out;
    if (ndim != 1 || dims[0] < 2 || dims[0] > 100000) {
        err_set(err, LEGR_EXIT_DATA, "%s: /arch/nodes must be a list of 2..100000 nodes", path);
        goto out;
    }
    rows = xcalloc((size_t)dims[0], sizeof *rows);
    if (h5u_read(g, "nodes", t, 1, dims, rows, path, err)) goto out;
    for (int i = 0; i < (int)dims[0]; i++) {
        rows[i].name[ARCH_NAME_MAX - 1] = rows[i].kind[15] = '\0';
        if (rebuild_node(arch, gm, &rows[i], i, path, err)) goto out;
    }
    Err sub = {0};
    if (arch_revalidate(arch, &sub) != 0) {
        err_set(err, LEGR_EXIT_DATA, "%s: stored architecture is invalid: %s", path, sub.msg);
        goto out;
    }
    for (int i = 0; i < arch->n_nodes; i++) {
        const Node *n = &arch->nodes[i];
        if (n->c != rows[i].c || n->h != rows[i].h || n->w != rows[i].w) {
            err_set(err, LEGR_EXIT_DATA,
                    "%s: node '%s' is stored as %dx%dx%d but its inputs give %dx%dx%d", path,
                    n->name, rows[i].c, rows[i].h, rows[i].w, n->c, n->h, n->w);
            goto out;
        }
    }
    rc = 0;
out:
    free(rows);
    H5Tclose(t);
    if (gm >= 0) H5Gclose(gm);
    if (g >= 0) H5Gclose(g);
    if (fid >= 0) H5Fclose(fid);
    if (rc) arch_free(arch);
    h5u_quiet_end(&q);
    return rc;
}

/* Every spec must be in the group with its shape, and the group must hold nothing else. */
static int read_tensors(hid_t fid, const char *group, const ParamSpec *specs, int n, float *flat,
                        const char *path, Err *err)
{
    if (H5Lexists(fid, group, H5P_DEFAULT) <= 0)
        return err_set(err, LEGR_EXIT_DATA, "%s: group /%s is missing", path, group);
    hid_t g = H5Gopen2(fid, group, H5P_DEFAULT);
    if (g < 0) return err_set(err, LEGR_EXIT_DATA, "%s: /%s is not a group", path, group);
    int rc = -1;
    for (int i = 0; i < n; i++) {
        const ParamSpec *s = &specs[i];
        hsize_t want[4], got[4];
        int ndim;
        char ws[96], gs[96];
        for (int d = 0; d < s->ndim; d++) want[d] = (hsize_t)s->shape[d];
        h5u_format_shape(ws, sizeof ws, s->ndim, want);
        if (H5Lexists(g, s->name, H5P_DEFAULT) <= 0) {
            err_set(err, LEGR_EXIT_DATA, "%s: tensor '%s/%s' with shape %s is missing" HINT_MISMATCH,
                    path, group, s->name, ws);
            goto out;
        }
        if (h5u_shape(g, s->name, &ndim, got, path, err)) goto out;
        int same = ndim == s->ndim;
        for (int d = 0; same && d < ndim; d++) same = got[d] == want[d];
        if (!same) {
            err_set(err, LEGR_EXIT_DATA,
                    "%s: tensor '%s/%s' has shape %s in the file, expected %s" HINT_MISMATCH,
                    path, group, s->name, h5u_format_shape(gs, sizeof gs, ndim, got), ws);
            goto out;
        }
        if (h5u_read(g, s->name, H5T_NATIVE_FLOAT, s->ndim, want, flat + s->offset, path, err))
            goto out;
        /* A NaN or infinite weight would train on as NaN losses; a negative running variance
         * gives NaN in evaluation. */
        size_t len = strlen(s->name);
        int var = len >= 12 && strcmp(s->name + len - 12, ".running_var") == 0;
        for (size_t k = 0; k < s->count; k++) {
            float v = flat[s->offset + k];
            if (!isfinite(v) || (var && v < 0)) {
                err_set(err, LEGR_EXIT_DATA, "%s: tensor '%s/%s' holds %g at element %zu: %s",
                        path, group, s->name, (double)v, k,
                        isfinite(v) ? "a running variance must be >= 0"
                                    : "every value must be finite (no NaN or infinity)");
                goto out;
            }
        }
    }
    H5G_info_t info;
    if (H5Gget_info(g, &info) < 0) {
        err_set(err, LEGR_EXIT_DATA, "%s: cannot list group /%s (corrupt file?)", path, group);
        goto out;
    }
    if (info.nlinks != (hsize_t)n) {
        /* Name one tensor the net does not have. */
        char extra[256] = "?";
        for (hsize_t k = 0; k < info.nlinks; k++) {
            char name[256];
            if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, k, name, sizeof name,
                                   H5P_DEFAULT) < 0)
                continue;
            int known = 0;
            for (int i = 0; i < n && !known; i++) known = strcmp(specs[i].name, name) == 0;
            if (!known) {
                snprintf(extra, sizeof extra, "%s", name);
                break;
            }
        }
        err_set(err, LEGR_EXIT_DATA,
                "%s: /%s holds %llu tensors, the network has %d; '%s' is not in the "
                "network" HINT_MISMATCH,
                path, group, (unsigned long long)info.nlinks, n, extra);
        goto out;
    }
    rc = 0;
out:
    H5Gclose(g);
    return rc;
}

/* The network's parameters and buffers (BN running statistics) from an open model file. */
static int read_weights(hid_t fid, Net *net, const char *path, Err *err)
{
    return read_tensors(fid, "params", net->params, net->n_params, net->param, path, err) ||
           read_tensors(fid, "buffers", net->bufs, net->n_bufs, net->buf, path, err);
}

int h5_model_load_params(const char *path, Net *net, Err *err)
{
    H5Quiet q;
    h5u_quiet_begin(&q);
    int rc = -1;
    hid_t fid = h5u_open_read(path, H5IO_MODEL_FORMAT, H5IO_MODEL_VERSION, err);
    if (fid < 0) goto out;
    if (read_weights(fid, net, path, err)) goto out;
    rc = 0;
out:
    if (fid >= 0) H5Fclose(fid);
    h5u_quiet_end(&q);
    return rc;
}

int h5_train_ckpt_save(const char *path, const Net *net, const TrainCkpt *ck,
                       const char *level_key, const char *config_text, Err *err)
{
    return save_model_file(path, net, ck, level_key, config_text, err);
}

int h5_train_ckpt_load(const char *path, Net *net, TrainCkpt *ck, char **level_key,
                       char **config_text, Err *err)
{
    H5Quiet q;
    h5u_quiet_begin(&q);
    int rc = -1;
    memset(ck, 0, sizeof *ck);
    ck->steps_done = -1;
    if (level_key) *level_key = NULL;
    if (config_text) *config_text = NULL;
    hid_t fid = h5u_open_read(path, H5IO_MODEL_FORMAT, H5IO_MODEL_VERSION, err);
    if (fid < 0) goto out;
    if (H5Aexists(fid, "epochs_done") <= 0) {
        err_set(err, LEGR_EXIT_DATA, "%s: a model file, not a training checkpoint (no "
                "epochs_done); pass it as model.init instead", path);
        goto out;
    }
    /* Files written before steps were recorded have epochs_done only (steps_done stays -1). */
    int has_steps = H5Aexists(fid, "steps_done") > 0;
    if (read_weights(fid, net, path, err) ||
        read_tensors(fid, "momentum", net->params, net->n_params, net->mom, path, err) ||
        h5u_get_attr(fid, ".", "epochs_done", H5T_NATIVE_INT, &ck->epochs_done, path, err) ||
        (has_steps &&
         h5u_get_attr(fid, ".", "steps_done", H5T_NATIVE_LLONG, &ck->steps_done, path, err)))
        goto out;
    if (ck->epochs_done < 0 || ck->steps_done < (has_steps ? 0 : -1)) {
        err_set(err, LEGR_EXIT_DATA, "%s: epochs_done = %d, steps_done = %lld: a training "
                "checkpoint counts from 0", path, ck->epochs_done, ck->steps_done);
        goto out;
    }
    if (config_text && h5u_get_attr_string(fid, ".", "config", config_text, path, err)) goto out;
    if (level_key && H5Aexists(fid, "level_key") > 0 &&
        (h5u_get_attr_string(fid, ".", "level_key", level_key, path, err) ||
         h5u_get_attr(fid, ".", "train_seconds", H5T_NATIVE_DOUBLE, &ck->train_seconds, path,
                      err)))
        goto out;
    if (!(isfinite(ck->train_seconds) && ck->train_seconds >= 0)) {
        err_set(err, LEGR_EXIT_DATA, "%s: train_seconds = %g: must be finite and >= 0", path,
                ck->train_seconds);
        goto out;
    }
    rc = 0;
out:
    if (fid >= 0) H5Fclose(fid);
    h5u_quiet_end(&q);
    return rc;
}

int h5_model_load_config(const char *path, char **config_text, Err *err)
{
    H5Quiet q;
    h5u_quiet_begin(&q);
    *config_text = NULL;
    int rc = -1;
    hid_t fid = h5u_open_read(path, H5IO_MODEL_FORMAT, H5IO_MODEL_VERSION, err);
    if (fid >= 0) {
        if (H5Aexists(fid, "config") > 0)
            rc = h5u_get_attr_string(fid, ".", "config", config_text, path, err);
        else {
            *config_text = xstrdup("");
            rc = 0;
        }
        H5Fclose(fid);
    }
    h5u_quiet_end(&q);
    return rc;
}

int h5_file_format(const char *path, char *buf, size_t size, Err *err)
{
    H5Quiet q;
    h5u_quiet_begin(&q);
    int rc = -1;
    char *fmt = NULL;
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fid < 0)
        err_set(err, LEGR_EXIT_DATA, "%s: cannot open as HDF5 (missing, truncated or not HDF5)",
                path);
    else if (h5u_get_attr_string(fid, ".", "format", &fmt, path, err) == 0) {
        snprintf(buf, size, "%s", fmt);
        rc = 0;
    }
    free(fmt);
    if (fid >= 0) H5Fclose(fid);
    h5u_quiet_end(&q);
    return rc;
}
