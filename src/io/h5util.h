/* Private helpers shared by the HDF5 writers and readers: open/check, atomic commit, typed I/O. */
#ifndef LEGR_IO_H5UTIL_H
#define LEGR_IO_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>

#include "legr/net.h"
#include "legr/util.h"

/* HDF5 prints its error stack to stderr by default; readers of user files report their own
 * messages instead, so the public entry points bracket their work with quiet_begin/end. */
typedef struct {
    H5E_auto2_t func;
    void *data;
} H5Quiet;

void h5u_quiet_begin(H5Quiet *q);
void h5u_quiet_end(const H5Quiet *q);

/* Open path read-only and check its root attributes `format` == format and
 * `format_version` <= max_version. Returns a file id, or -1 with LEGR_EXIT_DATA naming the file
 * and the problem (missing, not HDF5 or truncated, another format, newer version). */
hid_t h5u_open_read(const char *path, const char *format, int max_version, Err *err);

/* Start the file that h5u_commit will write to path: it is built in memory (HDF5's core driver),
 * so no HDF5 call touches the disk and a full disk cannot leave HDF5 with a half-closed file.
 * tmp receives "<path>.tmp", the name the file is written under before its rename. The common
 * root attributes format, format_version, legr_version and config (NULL -> "") are set.
 * Returns a file id or -1. */
hid_t h5u_create_tmp(const char *path, Path *tmp, const char *format, int version,
                     const char *config_text, Err *err);
/* Serialise the file, write it to tmp with plain write(2), fsync it and rename it over path.
 * Closes fid in every case. On failure tmp is removed, path is untouched and -1 is returned
 * with LEGR_EXIT_OUTPUT and the system's reason (e.g. "No space left on device"). */
int h5u_commit(hid_t fid, const char *tmp, const char *path, Err *err);
/* Abandon a write: close fid (and any object of it still open) and remove tmp if present. */
void h5u_discard(hid_t fid, const char *tmp);
/* Scalar attributes on object `obj` (relative to loc, "." for loc itself). */
int h5u_set_attr_string(hid_t loc, const char *obj, const char *name, const char *value,
                        Err *err);
int h5u_set_attr(hid_t loc, const char *obj, const char *name, hid_t type, const void *value,
                 Err *err);
/* Read a string attribute into a malloc'ed string (*out). */
int h5u_get_attr_string(hid_t loc, const char *obj, const char *name, char **out,
                        const char *path, Err *err);
/* Read a one-element numeric attribute converted to mem_type. */
int h5u_get_attr(hid_t loc, const char *obj, const char *name, hid_t mem_type, void *out,
                 const char *path, Err *err);

/* Create dataset `name` (relative to loc) of file_type with the given shape and write data
 * (mem_type); zero-sized shapes create an empty dataset. */
int h5u_write(hid_t loc, const char *name, hid_t mem_type, hid_t file_type, int ndim,
              const hsize_t *dims, const void *data, Err *err);

/* Shape of dataset `name`: *ndim (<= 4) and dims. -1 with LEGR_EXIT_DATA if it is missing or
 * has more than 4 dimensions. */
int h5u_shape(hid_t loc, const char *name, int *ndim, hsize_t dims[4], const char *path,
              Err *err);

/* Read dataset `name` after checking that its shape is exactly (dims[0..ndim)). */
int h5u_read(hid_t loc, const char *name, hid_t mem_type, int ndim, const hsize_t *dims,
             void *data, const char *path, Err *err);

/* The legr-model content of one network into group (or file) loc: attributes flops and params,
 * arch/, params/, buffers/ (docs/FORMAT.md). Shared by model and family files. */
int h5u_write_model(hid_t loc, const Net *net, Err *err);

/* "(a, b, c)" into buf; returns buf. */
const char *h5u_format_shape(char *buf, size_t size, int ndim, const hsize_t *dims);

#endif
