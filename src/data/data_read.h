/* Private to src/data: read a whole dataset file (gzip or raw) into memory with clear errors. */
#ifndef LEGR_DATA_READ_H
#define LEGR_DATA_READ_H

#include <stddef.h>
#include "legr/util.h"

/* Read all of `path` into a new buffer (*buf, *len), decompressing if it starts with the gzip
 * magic 1f 8b. A missing file, a read error, a gzip stream cut short (even just its trailer)
 * or corrupt gzip data return -1 with err (LEGR_EXIT_DATA) naming the file. */
int data_read_whole(const char *path, unsigned char **buf, size_t *len, Err *err);

#endif
