/* Scratch files and the HDF5 edit interpreter shared by the fuzz harnesses (see fuzz.h). */
#include "fuzz.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char paths[8][512];
static const char *tags[8];

static void remove_paths(void)
{
    for (int i = 0; i < 8 && tags[i]; i++) unlink(paths[i]);
}

const char *fuzz_path(const char *tag)
{
    int slot = 0;
    while (slot < 7 && tags[slot] && strcmp(tags[slot], tag) != 0) slot++;
    if (!tags[0]) atexit(remove_paths);
    tags[slot] = tag;
    const char *dir = getenv("TMPDIR");
    struct stat st;
    if (!dir || !*dir) dir = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(paths[slot], sizeof paths[slot], "%s/legr-fuzz-%ld-%s", dir, (long)getpid(), tag);
    return paths[slot];
}

void fuzz_note(const char *msg)
{
    if (getenv("LEGR_FUZZ_LIST")) fprintf(stderr, "refused: %s\n", msg);
}

void fuzz_write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

void fuzz_read_file(const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0) {
        perror(path);
        abort();
    }
    long n = ftell(f);
    rewind(f);
    *data = malloc((size_t)n + 1);
    if (!*data || fread(*data, 1, (size_t)n, f) != (size_t)n) abort();
    fclose(f);
    *size = (size_t)n;
}

/* One editable object: a dataset (attr[0] == 0) or an attribute of the object at obj. */
typedef struct {
    char obj[256];
    char attr[64];
} Target;

typedef struct {
    Target t[256];
    int n;
} Targets;

static herr_t collect(hid_t root, const char *name, const H5O_info_t *info, void *op_data)
{
    Targets *ts = op_data;
    if (info->type == H5O_TYPE_DATASET && ts->n < 256) {
        snprintf(ts->t[ts->n].obj, sizeof ts->t[0].obj, "%s", name);
        ts->t[ts->n++].attr[0] = '\0';
    }
    for (hsize_t k = 0; k < info->num_attrs && ts->n < 256; k++) {
        Target *t = &ts->t[ts->n];
        snprintf(t->obj, sizeof t->obj, "%s", name);
        if (H5Aget_name_by_idx(root, name, H5_INDEX_NAME, H5_ITER_INC, k, t->attr,
                               sizeof t->attr, H5P_DEFAULT) > 0)
            ts->n++;
    }
    return 0;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Special values that loaders must treat with care. */
static const double special_f[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0, 1e300, -1e300, 1e-310,
                                   3.4e38, -1.0, 2147483648.0, 1.5};
static const long long special_i[] = {0, -1, 1, 2, 127, 255, 65535, 2147483647LL, -2147483647LL - 1,
                                      2147483648LL, 4294967295LL, 9223372036854775807LL};

/* Open target t's dataset or attribute; its type, space and class through the out pointers. */
static hid_t open_target(hid_t fid, const Target *t, hid_t *type, hid_t *space)
{
    hid_t id = t->attr[0] ? H5Aopen_by_name(fid, t->obj, t->attr, H5P_DEFAULT, H5P_DEFAULT)
                          : H5Dopen2(fid, t->obj, H5P_DEFAULT);
    if (id < 0) return -1;
    *type = t->attr[0] ? H5Aget_type(id) : H5Dget_type(id);
    *space = t->attr[0] ? H5Aget_space(id) : H5Dget_space(id);
    return id;
}

static void close_target(const Target *t, hid_t id, hid_t type, hid_t space)
{
    H5Sclose(space);
    H5Tclose(type);
    if (t->attr[0])
        H5Aclose(id);
    else
        H5Dclose(id);
}

static herr_t rw(const Target *t, hid_t id, hid_t type, void *buf, int write)
{
    if (t->attr[0]) return write ? H5Awrite(id, type, buf) : H5Aread(id, type, buf);
    return write ? H5Dwrite(id, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf)
                 : H5Dread(id, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
}

/* Write buf (in mem's layout) over the target. An attribute is deleted and created again with
 * its type and shape: HDF5 1.10 cannot rewrite an attribute in dense storage (a group with
 * many attributes) in place ("can't locate open attribute"). */
static void write_back(hid_t fid, const Target *t, hid_t id, hid_t type, hid_t space, hid_t mem,
                       const void *buf)
{
    if (!t->attr[0]) {
        H5Dwrite(id, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        return;
    }
    H5Adelete_by_name(fid, t->obj, t->attr, H5P_DEFAULT);
    hid_t a = H5Acreate_by_name(fid, t->obj, t->attr, type, space, H5P_DEFAULT, H5P_DEFAULT,
                                H5P_DEFAULT);
    if (a >= 0) {
        H5Awrite(a, mem, buf);
        H5Aclose(a);
    }
}

/* A dataset of variable-length byte sequences (encoded images): overwrite two bytes of one
 * element (op 0) or cut it short (op 1). */
static void patch_vlen_bytes(hid_t id, hid_t space, int op, uint64_t v)
{
    hssize_t n = H5Sget_simple_extent_npoints(space);
    hid_t mem = H5Tvlen_create(H5T_NATIVE_UINT8);
    hvl_t *buf = n > 0 ? calloc((size_t)n, sizeof *buf) : NULL;
    if (buf && H5Dread(id, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0) {
        hvl_t *e = &buf[(v >> 8) % (uint64_t)n];
        if (e->len > 0 && op == 0) {
            size_t off = (size_t)(v >> 16) % e->len;
            for (int i = 0; i < 2 && off + (size_t)i < e->len; i++)
                ((uint8_t *)e->p)[off + (size_t)i] = (uint8_t)(v >> (40 + 8 * i));
        } else if (op == 1) {
            e->len = (size_t)(v >> 16) % (e->len + 1);
        }
        H5Dwrite(id, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        for (hssize_t i = 0; i < n; i++) H5free_memory(buf[i].p); /* also a cut-short one's */
    }
    free(buf);
    H5Tclose(mem);
}

/* Overwrite bytes (op 0) or plant a special number (op 1) in the target's data. Other
 * variable-length types hold pointers in memory: they are only replaced (op 3/4). */
static void patch(hid_t fid, const Target *t, int op, uint64_t v)
{
    hid_t type, space, id = open_target(fid, t, &type, &space);
    if (id < 0) return;
    if (!t->attr[0] && H5Tget_class(type) == H5T_VLEN) {
        hid_t base = H5Tget_super(type);
        if (base >= 0 && H5Tget_class(base) == H5T_INTEGER && H5Tget_size(base) == 1)
            patch_vlen_bytes(id, space, op, v);
        if (base >= 0) H5Tclose(base);
        close_target(t, id, type, space);
        return;
    }
    hid_t mem = H5Tget_native_type(type, H5T_DIR_DEFAULT);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    size_t esize = mem >= 0 ? H5Tget_size(mem) : 0;
    int vlen = H5Tdetect_class(type, H5T_VLEN) > 0 || H5Tis_variable_str(type) > 0;
    if (mem >= 0 && n > 0 && esize > 0 && !vlen && (size_t)n * esize <= (64u << 20)) {
        size_t bytes = (size_t)n * esize;
        uint8_t *buf = calloc(bytes, 1);
        if (buf && rw(t, id, mem, buf, 0) >= 0) {
            H5T_class_t cls = H5Tget_class(mem);
            size_t at = (size_t)(v >> 8) % (size_t)n;
            if (op == 1 && cls == H5T_FLOAT && esize == sizeof(double))
                ((double *)buf)[at] = special_f[v % 12];
            else if (op == 1 && cls == H5T_FLOAT && esize == sizeof(float))
                ((float *)buf)[at] = (float)special_f[v % 12];
            else if (op == 1 && cls == H5T_INTEGER) {
                long long s = special_i[v % 12];
                memcpy(buf + at * esize, &s, esize < 8 ? esize : 8); /* little-endian */
            } else {
                size_t off = (size_t)(v >> 16) % bytes;
                for (int i = 0; i < 2 && off + (size_t)i < bytes; i++)
                    buf[off + (size_t)i] = (uint8_t)(v >> (8 * i));
            }
            write_back(fid, t, id, type, space, mem, buf);
        }
        free(buf);
    }
    if (mem >= 0) H5Tclose(mem);
    close_target(t, id, type, space);
}

static void delete_target(hid_t fid, const Target *t)
{
    if (t->attr[0])
        H5Adelete_by_name(fid, t->obj, t->attr, H5P_DEFAULT);
    else
        H5Ldelete(fid, t->obj, H5P_DEFAULT);
}

/* Create a dataset or attribute named like t with the given type and shape, filled with v. */
static void create_like(hid_t fid, const Target *t, hid_t type, int ndim, const hsize_t *dims,
                        uint64_t v)
{
    hid_t space = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t id = t->attr[0] ? H5Acreate_by_name(fid, t->obj, t->attr, type, space, H5P_DEFAULT,
                                              H5P_DEFAULT, H5P_DEFAULT)
                          : H5Dcreate2(fid, t->obj, type, space, H5P_DEFAULT, H5P_DEFAULT,
                                       H5P_DEFAULT);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    size_t esize = H5Tget_size(type);
    if (id >= 0 && n > 0 && H5Tget_class(type) == H5T_VLEN) {
        /* Sequences of up to 8 elements (of at most 8 bytes each) holding v's bytes. */
        hvl_t *seqs = malloc((size_t)n * sizeof *seqs);
        uint64_t words[8];
        for (int i = 0; i < 8; i++) words[i] = v;
        for (hssize_t i = 0; i < n; i++) {
            seqs[i].len = (size_t)((v >> 4) + (uint64_t)i) % 9;
            seqs[i].p = words;
        }
        rw(t, id, type, seqs, 1);
        free(seqs);
    } else if (id >= 0 && n > 0 && H5Tis_variable_str(type) <= 0) {
        uint8_t *buf = malloc((size_t)n * esize);
        for (size_t i = 0; i < (size_t)n * esize; i++) buf[i] = (uint8_t)(v >> (8 * (i % 8)));
        rw(t, id, type, buf, 1);
        free(buf);
    } else if (id >= 0 && n > 0) {
        char text[9] = {0};
        memcpy(text, &v, 8);
        const char **ptrs = malloc((size_t)n * sizeof *ptrs);
        for (hssize_t i = 0; i < n; i++) ptrs[i] = text;
        rw(t, id, type, (void *)ptrs, 1);
        free(ptrs);
    }
    if (id >= 0) {
        if (t->attr[0])
            H5Aclose(id);
        else
            H5Dclose(id);
    }
    H5Sclose(space);
}

/* Replace the target with one of the same type and another shape (op 3) or of another type and
 * the same shape (op 4). */
static void replace(hid_t fid, const Target *t, int op, uint64_t v)
{
    hid_t type, space, id = open_target(fid, t, &type, &space);
    if (id < 0) return;
    int ndim = H5Sget_simple_extent_ndims(space);
    hsize_t dims[4] = {0, 0, 0, 0};
    if (ndim > 0 && ndim <= 4) H5Sget_simple_extent_dims(space, dims, NULL);
    if (ndim < 0 || ndim > 4) ndim = 0;
    hid_t newtype;
    if (op == 3) {
        newtype = H5Tcopy(type);
        ndim = (int)(v % 4);
        for (int d = 0; d < ndim; d++) dims[d] = (v >> (8 + 8 * d)) % 7;
    } else {
        /* HDF5's predefined type ids are run-time values: pick one by switch. */
        switch (v % 6) {
        case 0: newtype = H5Tcopy(H5T_NATIVE_INT); break;
        case 1: newtype = H5Tcopy(H5T_NATIVE_DOUBLE); break;
        case 2: newtype = H5Tcopy(H5T_NATIVE_FLOAT); break;
        case 3: newtype = H5Tcopy(H5T_NATIVE_LLONG); break;
        case 4: newtype = H5Tcopy(H5T_NATIVE_UCHAR); break;
        default: newtype = H5Tcopy(H5T_C_S1); break;
        }
        if (v % 6 == 5) {
            /* A string: fixed-size (1..16 bytes) or variable-length. */
            size_t len = (v >> 8) % 17;
            H5Tset_size(newtype, len ? len : H5T_VARIABLE);
        }
    }
    close_target(t, id, type, space);
    delete_target(fid, t);
    create_like(fid, t, newtype, ndim, dims, v);
    H5Tclose(newtype);
}

/* A new dataset or attribute beside the target (op 5): a tensor or attribute nobody expects. */
static void add_beside(hid_t fid, const Target *t, uint64_t v)
{
    Target extra = *t;
    if (t->attr[0]) {
        snprintf(extra.attr, sizeof extra.attr, "x%u", (unsigned)(v % 1000));
    } else {
        char *slash = strrchr(extra.obj, '/');
        size_t keep = slash ? (size_t)(slash - extra.obj) + 1 : 0;
        snprintf(extra.obj + keep, sizeof extra.obj - keep, "x%u", (unsigned)(v % 1000));
    }
    hsize_t dims[1] = {(v >> 16) % 5 + 1};
    create_like(fid, &extra, H5T_NATIVE_FLOAT, 1, dims, v);
}

void fuzz_h5_edit(const char *path, const uint8_t *prog, size_t size)
{
    H5E_auto2_t func;
    void *client;
    H5Eget_auto2(H5E_DEFAULT, &func, &client);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fid = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (fid < 0) abort(); /* the seed file is ours and valid */
    Targets *ts = malloc(sizeof *ts);
    ts->n = 0;
    H5Ovisit2(fid, H5_INDEX_NAME, H5_ITER_INC, collect, ts, H5O_INFO_BASIC | H5O_INFO_NUM_ATTRS);
    if (getenv("LEGR_FUZZ_LIST")) /* to write regression inputs by hand: the target numbers */
        for (int i = 0; i < ts->n; i++)
            fprintf(stderr, "%3d %s%s%s\n", i, ts->t[i].obj, ts->t[i].attr[0] ? " @" : "",
                    ts->t[i].attr);
    for (size_t at = 0; at + 10 <= size && ts->n > 0; at += 10) {
        int op = prog[at] % 6;
        const Target *t = &ts->t[prog[at + 1] % ts->n];
        uint64_t v = le64(prog + at + 2);
        if (getenv("LEGR_FUZZ_LIST"))
            fprintf(stderr, "edit %d on %s%s%s with 0x%llx\n", op, t->obj, t->attr[0] ? " @" : "",
                    t->attr, (unsigned long long)v);
        switch (op) {
        case 0:
        case 1: patch(fid, t, op, v); break;
        case 2: delete_target(fid, t); break;
        case 3:
        case 4: replace(fid, t, op, v); break;
        case 5: add_beside(fid, t, v); break;
        }
    }
    free(ts);
    if (H5Fclose(fid) < 0) abort();
    H5Eset_auto2(H5E_DEFAULT, func, client);
}
