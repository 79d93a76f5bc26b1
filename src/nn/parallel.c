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
