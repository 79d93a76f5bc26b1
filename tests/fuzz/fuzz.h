/* Shared pieces of the libFuzzer harnesses: temporary files and the HDF5 edit interpreter. */
#ifndef LEGR_FUZZ_H
#define LEGR_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* The entry point every harness defines (libFuzzer's contract: return 0, never keep state that
 * changes the next input's outcome). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A per-process scratch path "<dir>/legr-fuzz-<pid>-<tag>" (dir: $TMPDIR, else /dev/shm when it
 * exists, else /tmp), valid until the next call with the same tag. */
const char *fuzz_path(const char *tag);

/* Write size bytes to path (truncating); aborts on an I/O error (not the input's fault). */
void fuzz_write_file(const char *path, const void *data, size_t size);

/* Read a whole file into *data (malloc'ed) and *size; aborts on an I/O error. */
void fuzz_read_file(const char *path, uint8_t **data, size_t *size);

/* Structure-aware mutation of a valid HDF5 file: interpret `prog` as a list of edits on the
 * objects of the file at path (opened read-write) and apply them. Each edit is one byte of
 * operation, one byte choosing the object (datasets and attributes, in a stable order) and 8
 * bytes of operand; the operations overwrite bytes, plant special numbers (NaN, infinities,
 * extreme integers), delete, reshape, retype or add objects. Raw byte flips of the file itself
 * would mostly exercise the HDF5 library's own decoder, which is not ours to fix; this reaches
 * the loaders' validation of what a well-formed file says. With LEGR_FUZZ_LIST set in the
 * environment it lists the objects with their numbers (for writing regression inputs). */
void fuzz_h5_edit(const char *path, const uint8_t *prog, size_t size);

/* With LEGR_FUZZ_LIST set, print why a reader refused the input (err->msg). */
void fuzz_note(const char *msg);

#endif
