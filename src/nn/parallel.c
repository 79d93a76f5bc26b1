/* Fork-join over POSIX threads for the engine's kernels, sized by OpenBLAS's thread setting. */
#include "parallel.h"

#include <cblas.h>
#include <pthread.h>

int par_threads(void)
{
    int t = openblas_get_num_threads();
    if (t < 1) return 1;
    return t < PAR_MAX_THREADS ? t : PAR_MAX_THREADS;
}

typedef struct {
    void (*fn)(void *ctx, int t, int T);
    void *ctx;
    int t, T;
} ParJob;

static void *par_trampoline(void *arg)
{
    ParJob *j = arg;
    j->fn(j->ctx, j->t, j->T);
    return NULL;
}

/* Threads are created per call: a kernel call does milliseconds of work, so the ~20 us of
 * pthread_create is noise, and no pool state outlives the call. */
void par_run(int T, void (*fn)(void *ctx, int t, int T), void *ctx)
{
    if (T > PAR_MAX_THREADS) T = PAR_MAX_THREADS;
    pthread_t tid[PAR_MAX_THREADS];
    ParJob job[PAR_MAX_THREADS];
    int started[PAR_MAX_THREADS] = {0};
    for (int t = 1; t < T; t++) {
        job[t] = (ParJob){fn, ctx, t, T};
        started[t] = pthread_create(&tid[t], NULL, par_trampoline, &job[t]) == 0;
    }
    fn(ctx, 0, T);
    for (int t = 1; t < T; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else fn(ctx, t, T); /* no thread: do its share here */
    }
}

typedef struct {
    void (*fn)(void *ctx, int lo, int hi);
    void *ctx;
    int n;
} ParFor;

static void par_for_worker(void *arg, int t, int T)
{
    const ParFor *f = arg;
    int lo = (int)((long long)f->n * t / T), hi = (int)((long long)f->n * (t + 1) / T);
    if (lo < hi) f->fn(f->ctx, lo, hi);
}

void par_for(int n, long long work_floats, void (*fn)(void *ctx, int lo, int hi), void *ctx)
{
    if (n <= 0) return;
    int T = work_floats < PAR_MIN_FLOATS ? 1 : par_threads();
    if (T > n) T = n;
    if (T <= 1) {
        fn(ctx, 0, n);
        return;
    }
    ParFor f = {fn, ctx, n};
    par_run(T, par_for_worker, &f);
}
