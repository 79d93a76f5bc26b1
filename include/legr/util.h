/* Error reporting, checked allocation, timers and logging shared by every module. */
#ifndef LEGR_UTIL_H
#define LEGR_UTIL_H

#include <stddef.h>
#include <stdio.h>

/* Process exit codes (documented in README.md). */
enum {
    LEGR_EXIT_OK = 0,
    LEGR_EXIT_INTERNAL = 1, /* a bug or an environment failure (out of memory, MPI) */
    LEGR_EXIT_USAGE = 2,    /* bad command line or config */
    LEGR_EXIT_DATA = 3,     /* missing or corrupt dataset, model or checkpoint file */
    LEGR_EXIT_STOPPED = 4,  /* stopped by a signal after a clean checkpoint: resumable */
    LEGR_EXIT_OUTPUT = 5    /* an output file or directory cannot be written (full disk, quota,
                               permissions); the previous complete file is kept */
};

/* An error from the outside world (bad input), carried back to the caller.
 * Functions that can fail on user input take `Err *err`, fill it and return -1;
 * the application prints err->msg and exits with err->code. */
typedef struct {
    int code;       /* one of LEGR_EXIT_* */
    char msg[1024]; /* human-readable: names the file/line/layer and what is wrong */
} Err;

/* Fill err (if non-NULL) with code and a printf-style message; always returns -1. */
int err_set(Err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Print "legr-mpi: error: <msg>" to stderr and terminate with `code` via the fail hook. */
_Noreturn void legr_fail(int code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The MPI layer installs a hook so that a failure on one rank aborts the whole job
 * (MPI_Abort); without a hook legr_fail calls exit(code). */
void legr_set_fail_hook(void (*hook)(int code));

/* Broken invariant (a bug): report file:line and abort the job with LEGR_EXIT_INTERNAL. */
#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (!(cond)) legr_fail(LEGR_EXIT_INTERNAL, __FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

/* Checked allocation: never returns NULL; reports the call site and size on failure. */
void *xmalloc_at(size_t n, const char *file, int line);
void *xcalloc_at(size_t count, size_t size, const char *file, int line);
void *xrealloc_at(void *p, size_t n, const char *file, int line);
char *xstrdup_at(const char *s, const char *file, int line);
#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(c, s) xcalloc_at((c), (s), __FILE__, __LINE__)
#define xrealloc(p, n) xrealloc_at((p), (n), __FILE__, __LINE__)
#define xstrdup(s) xstrdup_at((s), __FILE__, __LINE__)

/* 64-byte aligned allocation for float arenas (free with free()). */
float *xalloc_floats_at(size_t n, const char *file, int line);
#define xalloc_floats(n) xalloc_floats_at((n), __FILE__, __LINE__)

/* A file path built by printf into LEGR_PATH_MAX bytes (Linux's PATH_MAX: no longer path can
 * be opened). The config bounds the directories and names that go into paths, so one that does
 * not fit is a bug, and path_fmt CHECKs it rather than truncating silently. */
#define LEGR_PATH_MAX 4096
typedef struct {
    char s[LEGR_PATH_MAX];
} Path;
Path path_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic wall clock in seconds. */
double time_now(void);

/* Format a duration in seconds as e.g. "1h02m", "3m05s", "12.3s" into buf. */
const char *format_duration(double seconds, char *buf, size_t size);

/* FNV-1a 64-bit hash of a byte buffer, chainable through `h` (start with HASH_FNV_INIT). */
#define HASH_FNV_INIT 0xcbf29ce484222325ULL
unsigned long long hash_fnv1a(unsigned long long h, const void *data, size_t n);

#endif
