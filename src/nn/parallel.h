/* A minimal fork-join helper: run one function on T threads (the caller is thread 0). */
#ifndef LEGR_NN_PARALLEL_H
#define LEGR_NN_PARALLEL_H

/* The most threads any engine kernel uses; workspaces are sized for this many. */
enum { PAR_MAX_THREADS = 4 };

/* Threads the engine may use now: OpenBLAS's thread setting (the app sets it from run.threads,
 * and to 1 when several ranks share the machine), clamped to [1, PAR_MAX_THREADS]. Kernels run
 * their own threads; no engine kernel calls OpenBLAS. */
int par_threads(void);

/* Call fn(ctx, t, T) for t = 0..T-1 concurrently and return when all are done: share 0 in the
 * caller, the others in helper threads that persist for the process. T <= 1, a failed thread
 * creation, a call from inside a job, or a call while another thread's job runs does the shares
 * in the caller instead, which gives the same results because every kernel's split of work
 * depends on T only. */
void par_run(int T, void (*fn)(void *ctx, int t, int T), void *ctx);

/* Split [0, n) into par_threads() contiguous ranges (fewer when n is small) and call
 * fn(ctx, lo, hi) on each concurrently; with less than PAR_MIN_FLOATS floats of work in all
 * the caller does the whole range alone (a few microseconds of work: waking a sleeping helper
 * costs about that). Each index is handled by exactly one call, so results do not depend on the
 * split when the work of different indices is independent. */
enum { PAR_MIN_FLOATS = 1 << 14 };
void par_for(int n, long long work_floats, void (*fn)(void *ctx, int lo, int hi), void *ctx);

#endif
