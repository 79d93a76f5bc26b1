/* Fork-join for the engine's kernels on a persistent pool of POSIX threads, sized by OpenBLAS's thread setting. */
#include "parallel.h"

#include <cblas.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PAR_RELAX() _mm_pause()
#else
#define PAR_RELAX() ((void)0)
#endif

int par_threads(void)
{
    int t = openblas_get_num_threads();
    if (t < 1) return 1;
    return t < PAR_MAX_THREADS ? t : PAR_MAX_THREADS;
}

/* The pool. An evaluation of ResNet-20 makes ~20 kernel calls of 1-2 ms each, and creating
 * threads per call cost 2-5% of it (the create, and the helper starting late). Helpers live for
 * the process instead, spin on `gen` for PAR_SPIN_NS after each job, so that the next kernel
 * call of the same step starts them within a microsecond, then sleep on a condition variable.
 *
 * `gen` is the job's word: a sequence number times 8 plus the number of threads taking part, so a
 * helper learns from one atomic load both that there is a new job and whether it takes part
 * (helper h runs share h of job_T when h < that number). Only participants read `job_fn`,
 * `job_ctx` and `job_T`, and the caller does not
 * post again before `pending` (participants still running) is 0, so those stay valid. Sleepers
 * register in `sleepers` before their last look at `gen` and the caller reads `sleepers` after
 * publishing `gen` (both sequentially consistent), so a wake-up is never lost; the caller's own
 * wait for `pending` works the same way with `caller_sleeping`. */
enum { PAR_SPIN_NS = 200000, PAR_T_BITS = 3 };
_Static_assert(PAR_MAX_THREADS < (1 << PAR_T_BITS), "a job's thread count must fit in gen's low bits");

static pthread_mutex_t pool_use = PTHREAD_MUTEX_INITIALIZER; /* one fork-join at a time */
static pthread_mutex_t pool_mx = PTHREAD_MUTEX_INITIALIZER;  /* guards the two sleeps */
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;  /* helpers: a new job */
static pthread_cond_t pool_done = PTHREAD_COND_INITIALIZER;  /* caller: the job is done */
static int pool_helpers;                                     /* helpers 1..pool_helpers run */
static int pool_full;                                        /* a create failed: grow no more */
static atomic_uint gen;
static atomic_int pending, sleepers, caller_sleeping;
static void (*job_fn)(void *ctx, int t, int T);
static void *job_ctx;
static int job_T;
static _Thread_local int in_par_run; /* set in helpers and in a caller during its job */

static long long par_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Spin until *word differs from `old` or PAR_SPIN_NS pass; returns its last value. */
static unsigned par_spin_uint(atomic_uint *word, unsigned old)
{
    long long t0 = par_now_ns();
    for (unsigned i = 1;; i++) {
        unsigned v = atomic_load_explicit(word, memory_order_acquire);
        if (v != old) return v;
        PAR_RELAX();
        if (i % 64 == 0 && par_now_ns() - t0 > PAR_SPIN_NS) return v;
    }
}

/* Helper h's first `gen` to wait past: the word when it was created, set by its creator (a
 * helper that read `gen` itself could start after the job it was made for was posted). */
static unsigned helper_gen0[PAR_MAX_THREADS];

static void *par_helper(void *arg)
{
    const int h = (int)(size_t)arg;
    in_par_run = 1;
    unsigned seen = helper_gen0[h];
    for (;;) {
        unsigned g = par_spin_uint(&gen, seen);
        if (g == seen) {
            pthread_mutex_lock(&pool_mx);
            atomic_fetch_add(&sleepers, 1);
            while ((g = atomic_load(&gen)) == seen) pthread_cond_wait(&pool_wake, &pool_mx);
            atomic_fetch_sub(&sleepers, 1);
            pthread_mutex_unlock(&pool_mx);
        }
        seen = g;
        if (h >= (int)(g & ((1u << PAR_T_BITS) - 1))) continue;
        job_fn(job_ctx, h, job_T);
        if (atomic_fetch_sub(&pending, 1) == 1 && atomic_load(&caller_sleeping)) {
            pthread_mutex_lock(&pool_mx);
            pthread_cond_signal(&pool_done);
            pthread_mutex_unlock(&pool_mx);
        }
    }
    return NULL;
}

/* Start helpers up to T-1 (pool_use held); returns how many run. After a failed create it
 * stops trying (the caller does the missing shares). Helpers block every signal, so a
 * process-directed one (SLURM's SIGUSR1, SIGTERM) is never delivered to a helper. */
static int par_grow(int T)
{
    if (pool_helpers >= T - 1 || pool_full) return pool_helpers;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    while (pool_helpers < T - 1) {
        pthread_t tid;
        helper_gen0[pool_helpers + 1] = atomic_load(&gen);
        if (pthread_create(&tid, NULL, par_helper, (void *)(size_t)(pool_helpers + 1)) != 0) {
            pool_full = 1;
            break;
        }
        pthread_detach(tid);
        pool_helpers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return pool_helpers;
}

static void par_serial(int T, void (*fn)(void *ctx, int t, int T), void *ctx)
{
    for (int t = 0; t < T; t++) fn(ctx, t, T);
}

void par_run(int T, void (*fn)(void *ctx, int t, int T), void *ctx)
{
    if (T > PAR_MAX_THREADS) T = PAR_MAX_THREADS;
    /* T <= 1, a nested call (from inside a job), or another thread's job in progress: run the
     * shares here, which gives the same results since every split depends on T only. */
    if (T <= 1 || in_par_run || pthread_mutex_trylock(&pool_use) != 0) {
        par_serial(T, fn, ctx);
        return;
    }
    int helpers = par_grow(T);
    int nh = helpers < T - 1 ? helpers : T - 1;
    job_fn = fn;
    job_ctx = ctx;
    job_T = T;
    atomic_store(&pending, nh);
    unsigned seq = (atomic_load(&gen) >> PAR_T_BITS) + 1;
    atomic_store(&gen, (seq << PAR_T_BITS) | (unsigned)(nh + 1));
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&pool_mx);
        pthread_cond_broadcast(&pool_wake);
        pthread_mutex_unlock(&pool_mx);
    }
    in_par_run = 1;
    fn(ctx, 0, T);
    for (int t = nh + 1; t < T; t++) fn(ctx, t, T); /* shares of helpers that failed to start */
    in_par_run = 0;
    long long t0 = par_now_ns();
    for (unsigned i = 1; atomic_load_explicit(&pending, memory_order_acquire) > 0; i++) {
        PAR_RELAX();
        if (i % 64 == 0 && par_now_ns() - t0 > PAR_SPIN_NS) {
            pthread_mutex_lock(&pool_mx);
            atomic_store(&caller_sleeping, 1);
            while (atomic_load(&pending) > 0) pthread_cond_wait(&pool_done, &pool_mx);
            atomic_store(&caller_sleeping, 0);
            pthread_mutex_unlock(&pool_mx);
            break;
        }
    }
    pthread_mutex_unlock(&pool_use);
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
