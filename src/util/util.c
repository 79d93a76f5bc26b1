/* Error reporting, checked allocation, timers and hashing. */
#include "legr/util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void (*fail_hook)(int code) = NULL;

int err_set(Err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void legr_set_fail_hook(void (*hook)(int code)) { fail_hook = hook; }

_Noreturn void legr_fail(int code, const char *file, int line, const char *fmt, ...)
{
    /* The line goes out in one write: under mpirun a rank's stderr is a pipe that mpirun
     * forwards, and a message written in pieces could be cut by mpirun's own abort banner. */
    char msg[1024], tail[256] = "";
    va_list ap;
    fflush(stdout);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (code == LEGR_EXIT_INTERNAL) snprintf(tail, sizeof tail, " (at %s:%d)", file, line);
    fprintf(stderr, "legr-mpi: error: %s%s\n", msg, tail);
    fflush(stderr);
    if (fail_hook) fail_hook(code);
    exit(code);
}

void *xmalloc_at(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p) legr_fail(LEGR_EXIT_INTERNAL, file, line, "out of memory allocating %zu bytes", n);
    return p;
}

void *xcalloc_at(size_t count, size_t size, const char *file, int line)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        legr_fail(LEGR_EXIT_INTERNAL, file, line, "out of memory allocating %zu x %zu bytes",
                  count, size);
    return p;
}

void *xrealloc_at(void *p, size_t n, const char *file, int line)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) legr_fail(LEGR_EXIT_INTERNAL, file, line, "out of memory reallocating %zu bytes", n);
    return q;
}

char *xstrdup_at(const char *s, const char *file, int line)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc_at(n, file, line);
    memcpy(p, s, n);
    return p;
}

float *xalloc_floats_at(size_t n, const char *file, int line)
{
    void *p = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    if (posix_memalign(&p, 64, bytes) != 0)
        legr_fail(LEGR_EXIT_INTERNAL, file, line, "out of memory allocating %zu floats", n);
    return p;
}

Path path_fmt(const char *fmt, ...)
{
    Path p;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p.s, sizeof p.s, fmt, ap);
    va_end(ap);
    CHECK(n >= 0 && n < LEGR_PATH_MAX, "path longer than %d bytes: %.80s...", LEGR_PATH_MAX - 1,
          p.s);
    return p;
}

double time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *format_duration(double s, char *buf, size_t size)
{
    if (!(s >= 0)) snprintf(buf, size, "?");
    else if (s < 60) snprintf(buf, size, "%.1fs", s);
    else if (s < 3600) snprintf(buf, size, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, size, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    return buf;
}

unsigned long long hash_fnv1a(unsigned long long h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
