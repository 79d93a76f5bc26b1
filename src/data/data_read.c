/* Whole-file reader for dataset files, transparent to gzip, that reports truncation. */
#include "data_read.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Peek at the first two bytes so errors can say whether the file is gzip; gzopen alone would
 * also read raw files, but a truncated gzip header would then silently pass as raw data. */
static int data_is_gzip(const char *path, int *is_gzip, Err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(err, LEGR_EXIT_DATA, "%s: cannot open: %s", path, strerror(errno));
    unsigned char m[2] = {0, 0};
    size_t got = fread(m, 1, 2, f);
    fclose(f);
    *is_gzip = got == 2 && m[0] == 0x1f && m[1] == 0x8b;
    return 0;
}

int data_read_whole(const char *path, unsigned char **buf, size_t *len, Err *err)
{
    int is_gzip = 0;
    if (data_is_gzip(path, &is_gzip, err) != 0) return -1;
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return err_set(err, LEGR_EXIT_DATA, "%s: cannot open: %s", path,
                       errno ? strerror(errno) : "zlib failure");
    size_t cap = 1 << 20;
    size_t n = 0;
    unsigned char *p = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            p = xrealloc(p, cap);
        }
        size_t want = cap - n;
        if (want > (1u << 30)) want = 1u << 30;
        int got = gzread(gz, p + n, (unsigned)want);
        if (got < 0) break;
        if (got == 0) break;
        n += (size_t)got;
    }
    int zerr;
    const char *zmsg = gzerror(gz, &zerr);
    size_t plen = strlen(path);
    if (strncmp(zmsg, path, plen) == 0 && strncmp(zmsg + plen, ": ", 2) == 0)
        zmsg += plen + 2; /* zlib prefixes its message with the path, which we print anyway */
    int ret = 0;
    if (zerr == Z_BUF_ERROR)
        ret = err_set(err, LEGR_EXIT_DATA, "%s: truncated gzip stream (%s)", path, zmsg);
    else if (zerr == Z_ERRNO)
        ret = err_set(err, LEGR_EXIT_DATA, "%s: cannot read: %s", path, strerror(errno));
    else if (zerr != Z_OK)
        ret = err_set(err, LEGR_EXIT_DATA, "%s: corrupt %s data: %s", path,
                      is_gzip ? "gzip" : "file", zmsg);
    gzclose(gz);
    if (ret != 0) {
        free(p);
        return -1;
    }
    *buf = p;
    *len = n;
    return 0;
}
