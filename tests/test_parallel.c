/* The fork-join pool: every share runs once and concurrently, wake-ups are never lost (fast calls, calls after the helpers went to sleep, callers that sleep while helpers finish), nested and concurrent calls fall back to the caller, and helpers block signals. */
#include "harness.h"
#include "../src/nn/parallel.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    atomic_int runs[PAR_MAX_THREADS]; /* times share t ran */
    atomic_int started;               /* shares that have begun */
    atomic_int helper_unblocked;      /* shares t >= 1 that ran with SIGUSR1 unblocked */
    atomic_int bad_T;                 /* calls that saw another T than posted */
    int T;
    int wait_all;                     /* each share waits (5 s at most) until all have begun */
    int nested;                       /* each share makes a nested par_run of 2 */
    int slow_helpers;                 /* shares t >= 1 take 2 ms (the caller's wait sleeps) */
    atomic_int nested_runs;
} Job;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void nested_share(void *ctx, int t, int T)
{
    (void)t;
    (void)T;
    atomic_fetch_add(&((Job *)ctx)->nested_runs, 1);
}

static void share(void *ctx, int t, int T)
{
    Job *j = ctx;
    if (T != j->T) atomic_fetch_add(&j->bad_T, 1);
    atomic_fetch_add(&j->runs[t], 1);
    atomic_fetch_add(&j->started, 1);
    if (t >= 1) {
        sigset_t cur;
        pthread_sigmask(SIG_BLOCK, NULL, &cur);
        if (!sigismember(&cur, SIGUSR1)) atomic_fetch_add(&j->helper_unblocked, 1);
    }
    if (j->wait_all) {
        double t0 = now_s();
        while (atomic_load(&j->started) < T && now_s() - t0 < 5.0) {
        }
    }
    if (j->nested) par_run(2, nested_share, j);
    if (j->slow_helpers && t >= 1) {
        struct timespec ms2 = {0, 2000000};
        nanosleep(&ms2, NULL);
    }
}

/* Run one job of T shares; returns 1 when each share ran exactly once with the right T. */
static int run_job(Job *j, int T, int wait_all, int nested, int slow_helpers)
{
    *j = (Job){.T = T, .wait_all = wait_all, .nested = nested, .slow_helpers = slow_helpers};
    par_run(T, share, j);
    int ok = atomic_load(&j->bad_T) == 0;
    for (int t = 0; t < PAR_MAX_THREADS; t++) ok &= atomic_load(&j->runs[t]) == (t < T);
    return ok;
}

/* A job whose share 0 waits (5 s at most) until another thread's par_run has returned: that
 * call must not wait for this job to end. */
static atomic_int other_returned;

static void wait_for_other(void *ctx, int t, int T)
{
    (void)ctx;
    (void)T;
    double t0 = now_s();
    while (t == 0 && !atomic_load(&other_returned) && now_s() - t0 < 5.0) {
    }
}

static void *call_during_job(void *arg)
{
    Job *j = arg;
    struct timespec ms20 = {0, 20000000}; /* let the first job start */
    nanosleep(&ms20, NULL);
    *j = (Job){.T = 2};
    par_run(2, share, j);
    atomic_store(&other_returned, 1);
    return NULL;
}

static void *other_caller(void *arg)
{
    int *ok = arg;
    Job j;
    for (int k = 0; k < 2000; k++) *ok &= run_job(&j, 2 + k % 2, 0, 0, 0);
    return NULL;
}

int main(void)
{
    alarm(120); /* a lost wake-up hangs: fail on SIGALRM instead of at ctest's timeout */
    Job j;
    /* Concurrency: every share waits until all T have begun, which only ends early when they run
     * at once (run one after another, share 0 would wait out its 5 s). */
    for (int T = 2; T <= PAR_MAX_THREADS; T++) {
        double t0 = now_s();
        EXPECT(run_job(&j, T, 1, 0, 0), "T=%d: each share once", T);
        EXPECT(atomic_load(&j.started) == T && now_s() - t0 < 4.0,
               "T=%d: shares ran concurrently (%.2f s)", T, now_s() - t0);
        EXPECT(atomic_load(&j.helper_unblocked) == 0, "T=%d: helpers block SIGUSR1", T);
    }

    /* Back-to-back calls of changing T (helpers spinning, some sitting jobs out), then calls
     * after a pause longer than the helpers' spin (helpers asleep and woken). */
    int ok = 1;
    for (int k = 0; k < 4000; k++) ok &= run_job(&j, 1 + k % PAR_MAX_THREADS, 0, 0, 0);
    EXPECT(ok, "4000 back-to-back jobs: each share once with its T");
    ok = 1;
    for (int k = 0; k < 100; k++) {
        struct timespec pause = {0, 1000000}; /* 1 ms */
        nanosleep(&pause, NULL);
        ok &= run_job(&j, 2 + k % 3, 1, 0, k % 2);
    }
    EXPECT(ok, "100 jobs after 1 ms pauses, half with slow helpers: each share once");

    /* A par_run inside a job runs its shares in that thread: T jobs x 2 nested shares. */
    EXPECT(run_job(&j, 2, 0, 1, 0) && atomic_load(&j.nested_runs) == 4,
           "nested calls: %d nested shares ran (want 4)", atomic_load(&j.nested_runs));

    /* A call made while another thread's job runs does its shares itself, at once. */
    Job during;
    pthread_t th;
    EXPECT(pthread_create(&th, NULL, call_during_job, &during) == 0, "second caller started");
    double t0 = now_s();
    par_run(2, wait_for_other, NULL);
    pthread_join(th, NULL);
    EXPECT(now_s() - t0 < 4.0 && atomic_load(&during.runs[0]) == 1 &&
               atomic_load(&during.runs[1]) == 1,
           "a call during another thread's job ran its shares without waiting (%.2f s)",
           now_s() - t0);

    /* Two application threads calling at once, many times: every share runs once. */
    int ok_a = 1, ok_b = 1;
    pthread_t other;
    EXPECT(pthread_create(&other, NULL, other_caller, &ok_b) == 0, "second caller started");
    other_caller(&ok_a);
    pthread_join(other, NULL);
    EXPECT(ok_a && ok_b, "concurrent callers: each share once (%d %d)", ok_a, ok_b);
    return harness_finish("test_parallel");
}
