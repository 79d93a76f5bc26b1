/* HDF5 helpers: quiet error stack, format-checked open, tmp + fsync + rename commit, typed I/O. */
#include "h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5_hl.h>

void h5u_quiet_begin(H5Quiet *q)
{
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5u_quiet_end(const H5Quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

const char *h5u_format_shape(char *buf, size_t size, int ndim, const hsize_t *dims)
{
    size_t used = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%llu", i ? ", " : "",
                                 (unsigned long long)dims[i]);
    if (used < size) snprintf(buf + used, size - used, ")");
    return buf;
}

hid_t h5u_open_read(const char *path, const char *format, int max_version, Err *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return err_set(err, LEGR_EXIT_DATA, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return err_set(err, LEGR_EXIT_DATA, "%s: not a regular file", path);
    if (H5Fis_hdf5(path) <= 0)
        return err_set(err, LEGR_EXIT_DATA,
                       "%s: not an HDF5 file (or its header is damaged); expected a %s file",
                       path, format);
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fid < 0)
        return err_set(err, LEGR_EXIT_DATA,
                       "%s: HDF5 cannot open it: the file is truncated or corrupt (%lld bytes)",
                       path, (long long)st.st_size);
    char *found = NULL;
    if (H5Aexists(fid, "format") <= 0) {
        H5Fclose(fid);
        return err_set(err, LEGR_EXIT_DATA,
                       "%s: HDF5 file without a 'format' attribute: not a %s file", path, format);
    }
    if (h5u_get_attr_string(fid, ".", "format", &found, path, err) != 0) {
        H5Fclose(fid);
        return -1;
    }
    if (strcmp(found, format) != 0) {
        err_set(err, LEGR_EXIT_DATA, "%s: format is '%s', expected '%s'", path, found, format);
        free(found);
        H5Fclose(fid);
        return -1;
    }
    free(found);
    int version = 0;
    if (h5u_get_attr(fid, ".", "format_version", H5T_NATIVE_INT, &version, path, err) != 0) {
        H5Fclose(fid);
        return -1;
    }
    if (version < 1 || version > max_version) {
        H5Fclose(fid);
        return err_set(err, LEGR_EXIT_DATA,
                       "%s: %s format_version %d is not supported by this build (reads 1..%d); "
                       "it was written by another legr-mpi version",
                       path, format, version, max_version);
    }
    return fid;
}

hid_t h5u_create_tmp(const char *path, Path *tmp, const char *format, int version,
                     const char *config_text, Err *err)
{
    *tmp = path_fmt("%s.tmp", path);
    /* HDF5's core driver without a backing store: the file lives in memory until h5u_commit. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t fid = -1;
    if (fapl >= 0 && H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) >= 0)
        fid = H5Fcreate(tmp->s, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (fid < 0)
        return err_set(err, LEGR_EXIT_INTERNAL, "%s: HDF5 cannot create the file in memory",
                       tmp->s);
    if (h5u_set_attr_string(fid, ".", "format", format, err) ||
        h5u_set_attr(fid, ".", "format_version", H5T_NATIVE_INT, &version, err) ||
        h5u_set_attr_string(fid, ".", "legr_version", LEGR_VERSION, err) ||
        h5u_set_attr_string(fid, ".", "config", config_text ? config_text : "", err)) {
        h5u_discard(fid, tmp->s);
        return -1;
    }
    return fid;
}

void h5u_discard(hid_t fid, const char *tmp)
{
    if (fid >= 0) {
        /* An error path may leave objects of the file open: close them with it. */
        ssize_t n = H5Fget_obj_count(fid, H5F_OBJ_ALL | H5F_OBJ_LOCAL);
        if (n > 1) {
            hid_t *ids = xmalloc((size_t)n * sizeof *ids);
            n = H5Fget_obj_ids(fid, H5F_OBJ_ALL | H5F_OBJ_LOCAL, (size_t)n, ids);
            for (ssize_t i = 0; i < n; i++) {
                H5I_type_t t = H5Iget_type(ids[i]);
                if (t == H5I_ATTR)
                    H5Aclose(ids[i]);
                else if (t == H5I_GROUP || t == H5I_DATASET || t == H5I_DATATYPE)
                    H5Oclose(ids[i]);
            }
            free(ids);
        }
        H5Fclose(fid);
    }
    unlink(tmp); /* only there when h5u_commit failed while writing it */
}

/* Write size bytes of buf to a new file tmp, fsync it and rename it over path, then fsync the
 * directory so that the rename itself survives a crash. Any failure removes tmp and reports the
 * system's reason with LEGR_EXIT_OUTPUT. */
static int write_durably(const char *tmp, const char *path, const void *buf, size_t size, Err *err)
{
    const char *step = "create";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    size_t done = 0;
    while (fd >= 0 && done < size) {
        step = "write";
        ssize_t n = write(fd, (const char *)buf + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += (size_t)n;
    }
    int ok = fd >= 0 && done == size && (step = "fsync", fsync(fd) == 0);
    int e = errno;
    if (fd >= 0 && close(fd) != 0 && ok) {
        ok = 0;
        e = errno;
        step = "close";
    }
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        e = errno;
        step = "rename";
    }
    if (!ok) {
        unlink(tmp);
        return err_set(err, LEGR_EXIT_OUTPUT,
                       "%s: cannot %s %s (%zu bytes): %s; %s is unchanged", path, step,
                       strcmp(step, "rename") == 0 ? "the new file over it" : tmp, size,
                       strerror(e), path);
    }
    Path dir = path_fmt("%s", path);
    char *slash = strrchr(dir.s, '/');
    if (slash) *slash = '\0';
    int dfd = open(slash ? (dir.s[0] ? dir.s : "/") : ".", O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd); /* best effort: some file systems refuse fsync on directories */
        close(dfd);
    }
    return 0;
}

int h5u_commit(hid_t fid, const char *tmp, const char *path, Err *err)
{
    void *image = NULL;
    ssize_t size = -1;
    if (H5Fflush(fid, H5F_SCOPE_LOCAL) >= 0) size = H5Fget_file_image(fid, NULL, 0);
    if (size > 0) {
        image = xmalloc((size_t)size);
        if (H5Fget_file_image(fid, image, (size_t)size) != size) size = -1;
    }
    h5u_discard(fid, tmp);
    int rc = size > 0 ? write_durably(tmp, path, image, (size_t)size, err)
                      : err_set(err, LEGR_EXIT_INTERNAL, "%s: HDF5 cannot serialise the file", tmp);
    free(image);
    return rc;
}

int h5u_set_attr_string(hid_t loc, const char *obj, const char *name, const char *value,
                        Err *err)
{
    if (H5LTset_attribute_string(loc, obj, name, value) < 0)
        return err_set(err, LEGR_EXIT_INTERNAL, "HDF5: cannot write attribute '%s'", name);
    return 0;
}

int h5u_set_attr(hid_t loc, const char *obj, const char *name, hid_t type, const void *value,
                 Err *err)
{
    int rc = -1;
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate_by_name(loc, obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT,
                                   H5P_DEFAULT);
    if (attr >= 0 && H5Awrite(attr, type, value) >= 0) rc = 0;
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    if (rc) err_set(err, LEGR_EXIT_INTERNAL, "HDF5: cannot write attribute '%s'", name);
    return rc;
}

int h5u_get_attr_string(hid_t loc, const char *obj, const char *name, char **out,
                        const char *path, Err *err)
{
    *out = NULL;
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) <= 0)
        return err_set(err, LEGR_EXIT_DATA, "%s: attribute '%s' of '%s' is missing", path, name,
                       obj);
    hid_t attr = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    hid_t ftype = attr >= 0 ? H5Aget_type(attr) : -1;
    hid_t space = attr >= 0 ? H5Aget_space(attr) : -1;
    hid_t mtype = -1;
    const char *problem = NULL;
    if (ftype < 0 || space < 0)
        problem = "is unreadable";
    else if (H5Tget_class(ftype) != H5T_STRING)
        problem = "is not a string";
    else if (H5Sget_simple_extent_npoints(space) != 1)
        problem = "is not one string (an array or empty)"; /* reading it would overrun */
    int vlen = !problem && H5Tis_variable_str(ftype) > 0;
    char *value = NULL;
    if (!problem) {
        /* Files written by other tools (h5py's default) may hold variable-length strings. */
        mtype = H5Tcopy(H5T_C_S1);
        H5Tset_cset(mtype, H5Tget_cset(ftype)); /* h5py writes UTF-8 */
        size_t size = vlen ? 0 : H5Tget_size(ftype);
        H5Tset_size(mtype, vlen ? H5T_VARIABLE : size + 1); /* + 1: always NUL-terminated */
        H5Tset_strpad(mtype, H5T_STR_NULLTERM);
        char *fixed = vlen ? NULL : xcalloc(size + 1, 1);
        if (H5Aread(attr, mtype, vlen ? (void *)&value : (void *)fixed) < 0 || (vlen && !value))
            problem = "is unreadable";
        else
            *out = xstrdup(vlen ? value : fixed);
        if (value) H5free_memory(value);
        free(fixed);
    }
    if (mtype >= 0) H5Tclose(mtype);
    if (space >= 0) H5Sclose(space);
    if (ftype >= 0) H5Tclose(ftype);
    if (attr >= 0) H5Aclose(attr);
    if (problem)
        return err_set(err, LEGR_EXIT_DATA, "%s: attribute '%s' of '%s' %s", path, name, obj,
                       problem);
    return 0;
}

int h5u_get_attr(hid_t loc, const char *obj, const char *name, hid_t mem_type, void *out,
                 const char *path, Err *err)
{
    if (H5Aexists_by_name(loc, obj, name, H5P_DEFAULT) <= 0)
        return err_set(err, LEGR_EXIT_DATA, "%s: attribute '%s' of '%s' is missing", path, name,
                       obj);
    int rc = -1;
    hid_t attr = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    hid_t space = attr >= 0 ? H5Aget_space(attr) : -1;
    hid_t ftype = attr >= 0 ? H5Aget_type(attr) : -1;
    H5T_class_t cls = ftype >= 0 ? H5Tget_class(ftype) : H5T_NO_CLASS;
    if (space >= 0 && H5Sget_simple_extent_npoints(space) == 1 &&
        (cls == H5T_INTEGER || cls == H5T_FLOAT) && H5Aread(attr, mem_type, out) >= 0)
        rc = 0;
    if (ftype >= 0) H5Tclose(ftype);
    if (space >= 0) H5Sclose(space);
    if (attr >= 0) H5Aclose(attr);
    if (rc)
        err_set(err, LEGR_EXIT_DATA, "%s: attribute '%s' of '%s' is not a single number", path,
                name, obj);
    return rc;
}

int h5u_write(hid_t loc, const char *name, hid_t mem_type, hid_t file_type, int ndim,
              const hsize_t *dims, const void *data, Err *err)
{
    hsize_t count = 1;
    for (int i = 0; i < ndim; i++) count *= dims[i];
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    hid_t dset = space >= 0 ? H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT,
                                         H5P_DEFAULT)
                            : -1;
    int rc = dset >= 0 && (count == 0 || H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                                  data) >= 0)
                 ? 0
                 : -1;
    if (dset >= 0) H5Dclose(dset);
    if (space >= 0) H5Sclose(space);
    if (rc) err_set(err, LEGR_EXIT_INTERNAL, "HDF5: cannot write dataset '%s' (out of memory?)",
                           name);
    return rc;
}

int h5u_shape(hid_t loc, const char *name, int *ndim, hsize_t dims[4], const char *path,
              Err *err)
{
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0)
        return err_set(err, LEGR_EXIT_DATA, "%s: dataset '%s' is missing", path, name);
    hid_t dset = H5Dopen2(loc, name, H5P_DEFAULT);
    hid_t space = dset >= 0 ? H5Dget_space(dset) : -1;
    int n = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    int rc = -1;
    if (n >= 0 && n <= 4 && H5Sget_simple_extent_dims(space, dims, NULL) >= 0) {
        *ndim = n;
        rc = 0;
    }
    if (space >= 0) H5Sclose(space);
    if (dset >= 0) H5Dclose(dset);
    if (rc)
        err_set(err, LEGR_EXIT_DATA, "%s: dataset '%s' is unreadable or has more than 4 "
                "dimensions", path, name);
    return rc;
}

int h5u_read(hid_t loc, const char *name, hid_t mem_type, int ndim, const hsize_t *dims,
             void *data, const char *path, Err *err)
{
    int fnd;
    hsize_t fdims[4];
    if (h5u_shape(loc, name, &fnd, fdims, path, err) != 0) return -1;
    int same = fnd == ndim;
    hsize_t count = 1;
    for (int i = 0; same && i < ndim; i++) {
        same = fdims[i] == dims[i];
        count *= dims[i];
    }
    if (!same) {
        char want[96], got[96];
        return err_set(err, LEGR_EXIT_DATA, "%s: dataset '%s' has shape %s, expected %s", path,
                       name, h5u_format_shape(got, sizeof got, fnd, fdims),
                       h5u_format_shape(want, sizeof want, ndim, dims));
    }
    if (count == 0) return 0;
    hid_t dset = H5Dopen2(loc, name, H5P_DEFAULT);
    int rc = dset >= 0 && H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0
                 ? 0
                 : -1;
    if (dset >= 0) H5Dclose(dset);
    if (rc)
        err_set(err, LEGR_EXIT_DATA, "%s: dataset '%s' cannot be read (corrupt file?)", path,
                name);
    return rc;
}
