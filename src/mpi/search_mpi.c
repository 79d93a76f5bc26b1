/* Master/worker protocol of the search: self-scheduled candidates, ids inside the messages. */
#include "legr/search_mpi.h"

#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Message kinds. Ids travel inside the payload, never in the tag. */
enum { TAG_WORK = 1, TAG_RESULT = 2, TAG_STOP = 3 };

/* A result on the wire: id, fitness, accuracy, flops, seconds, rank. */
#define RESULT_DOUBLES 6

/* Work message: id, parent, alpha[L], kappa[L]. */
static void pack_candidate(double *msg, const Candidate *c, int L)
{
    msg[0] = c->id;
    msg[1] = c->parent;
    memcpy(msg + 2, c->alpha, (size_t)L * sizeof(double));
    memcpy(msg + 2 + L, c->kappa, (size_t)L * sizeof(double));
}

static void unpack_candidate(Candidate *c, const double *msg, int L)
{
    c->id = (int)msg[0];
    c->parent = (int)msg[1];
    memcpy(c->alpha, msg + 2, (size_t)L * sizeof(double));
    memcpy(c->kappa, msg + 2 + L, (size_t)L * sizeof(double));
}

static void pack_result(double *msg, const EvoResult *r)
{
    msg[0] = r->id;
    msg[1] = r->fitness;
    msg[2] = r->accuracy;
    msg[3] = r->flops;
    msg[4] = r->seconds;
    msg[5] = r->rank;
}

static void unpack_result(EvoResult *r, const double *msg)
{
    r->id = (int)msg[0];
    r->fitness = msg[1];
    r->accuracy = msg[2];
    r->flops = msg[3];
    r->seconds = msg[4];
    r->rank = (int)msg[5];
}

/* Worker: evaluate candidates until told to stop. */
static void worker_loop(const SearchRun *s, int rank)
{
    const int L = s->n_layers;
    double *msg = xmalloc((size_t)(2 + 2 * L) * sizeof(double));
    Candidate c;
    evolution_candidate_alloc(&c, L);
    for (;;) {
        MPI_Status st;
        MPI_Recv(msg, 2 + 2 * L, MPI_DOUBLE, 0, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
        if (st.MPI_TAG == TAG_STOP) break;
        unpack_candidate(&c, msg, L);
        EvoResult r;
        memset(&r, 0, sizeof r);
        s->evaluate(&c, &r, s->eval_ctx);
        r.id = c.id;
        r.rank = rank;
        double out[RESULT_DOUBLES];
        pack_result(out, &r);
        MPI_Send(out, RESULT_DOUBLES, MPI_DOUBLE, 0, TAG_RESULT, MPI_COMM_WORLD);
    }
    evolution_candidate_free(&c);
    free(msg);
}

/* The master's bookkeeping. */
typedef struct {
    Evolution *e;
    const SearchRun *s;
    int size;
    double t0;
    int done_at_start;     /* results already in when this run started (resume) */
    int since_checkpoint;
    double last_progress;
    EvoResult *pending;    /* deterministic mode: results of the current batch */
    int n_pending;
} Master;

static void log_result(Master *m, const EvoResult *r)
{
    const Evolution *e = m->e;
    const EvoRecord *best = evolution_best(e, NULL, NULL);
    if (m->s->jsonl) {
        fprintf(m->s->jsonl,
                "{\"event\":\"candidate\",\"id\":%d,\"fitness\":%.6g,\"accuracy\":%.6f,"
                "\"flops\":%.0f,\"seconds\":%.3f,\"rank\":%d,\"best\":%.6g}\n",
                r->id, isfinite(r->fitness) ? r->fitness : 1e300, r->accuracy, r->flops,
                r->seconds, r->rank, best ? best->fitness : NAN);
    }
    if (!isfinite(r->fitness) && !m->s->quiet)
        fprintf(stderr, "search: candidate %d diverged (loss %g); it gets the worst fitness\n",
                r->id, r->fitness);
    double now = time_now();
    int done = e->n_history;
    if (!m->s->quiet && (now - m->last_progress > 5.0 || done == e->p.evaluations)) {
        m->last_progress = now;
        double rate = (done - m->done_at_start) / (now - m->t0); /* per second */
        char eta[32];
        fprintf(stderr, "search: %d/%d evaluations, best fitness %.5f (id %d), %.0f evals/h, ETA %s\n",
                done, e->p.evaluations, best ? best->fitness : NAN, best ? best->id : -1,
                rate * 3600.0,
                format_duration(rate > 0 ? (e->p.evaluations - done) / rate : -1, eta, sizeof eta));
    }
}

/* Write a checkpoint once checkpoint_every results have been applied since the last one. */
static int checkpoint_if_due(Master *m, Err *err)
{
    if (!m->s->save || m->since_checkpoint < m->s->checkpoint_every) return 0;
    m->since_checkpoint = 0;
    return m->s->save(m->e, m->s->save_ctx, err);
}

/* Apply one result. In deterministic mode checkpoints wait for the end of the batch
 * (flush_batch): a checkpoint inside a batch would hold part of it as applied and the rest as in
 * flight, and the resumed search would generate the next children from a population the
 * uninterrupted search never had, so its history would differ. */
static int apply_result(Master *m, const EvoResult *r, Err *err)
{
    if (evolution_report(m->e, r, err) != 0) return -1;
    log_result(m, r);
    m->since_checkpoint++;
    return m->s->deterministic ? 0 : checkpoint_if_due(m, err);
}

static int cmp_result_id(const void *a, const void *b)
{
    const EvoResult *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* Either apply a result now (async) or hold it until its batch is complete (deterministic). */
static int absorb(Master *m, const EvoResult *r, Err *err)
{
    if (!m->s->deterministic) return apply_result(m, r, err);
    m->pending[m->n_pending++] = *r;
    return 0;
}

static int flush_batch(Master *m, Err *err)
{
    qsort(m->pending, (size_t)m->n_pending, sizeof(EvoResult), cmp_result_id);
    for (int i = 0; i < m->n_pending; i++)
        if (apply_result(m, &m->pending[i], err) != 0) return -1;
    m->n_pending = 0;
    return checkpoint_if_due(m, err);
}

/* Probes of a waiting master before it starts to sleep between probes. */
#define SPIN_PROBES 4000

/* Receive one result, polling so that a signal is noticed while waiting. Returns 0, or 1 when a
 * stop was requested before a result arrived. The master first probes without sleeping (a
 * millisecond or so): fast evaluations (null_eval benchmarks, tiny networks) answer within
 * microseconds, and sleeping at once capped the master at a few thousand results per second.
 * After that it sleeps 0.2 ms between probes, so that waiting for real candidates, which take
 * seconds, costs no core. */
static int receive_result(EvoResult *r)
{
    for (int probes = 0;; probes++) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_RESULT, MPI_COMM_WORLD, &flag, &st);
        if (flag) {
            double msg[RESULT_DOUBLES];
            MPI_Recv(msg, RESULT_DOUBLES, MPI_DOUBLE, st.MPI_SOURCE, TAG_RESULT, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE);
            unpack_result(r, msg);
            return 0;
        }
        if (dist_stop_requested()) return 1;
        if (probes >= SPIN_PROBES) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
}

/* A worker's result is ready to be received. */
static int result_waiting(void)
{
    int flag = 0;
    MPI_Iprobe(MPI_ANY_SOURCE, TAG_RESULT, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
    return flag;
}

static void stop_workers(int size)
{
    for (int w = 1; w < size; w++) MPI_Send(NULL, 0, MPI_DOUBLE, w, TAG_STOP, MPI_COMM_WORLD);
}

/* One rank: evaluate in the master, through the same evaluate function. */
static int master_serial(Master *m, Candidate *c, Err *err)
{
    const SearchRun *s = m->s;
    for (;;) {
        if (dist_stop_requested()) return LEGR_EXIT_STOPPED;
        int k = evolution_next(m->e, c);
        if (k == EVO_NEXT_DONE) break;
        if (k == EVO_NEXT_WAIT) {
            CHECK(m->n_pending > 0, "evolution waits with nothing in flight");
            if (flush_batch(m, err) != 0) return LEGR_EXIT_INTERNAL;
            continue;
        }
        EvoResult r;
        memset(&r, 0, sizeof r);
        s->evaluate(c, &r, s->eval_ctx);
        r.id = c->id;
        r.rank = 0;
        if (absorb(m, &r, err) != 0) return LEGR_EXIT_INTERNAL;
        if (s->deterministic && m->n_pending == s->sync_batch && flush_batch(m, err) != 0)
            return LEGR_EXIT_INTERNAL;
    }
    if (flush_batch(m, err) != 0) return LEGR_EXIT_INTERNAL;
    return LEGR_EXIT_OK;
}

/* Several ranks: keep every worker busy. In deterministic mode a batch is closed when sync_batch
 * ids have been handed out or the evolution cannot produce more without results; once all its
 * results are in they are applied in id order. Batch contents therefore do not depend on the
 * number of workers. */
static int master_parallel(Master *m, Candidate *c, Err *err)
{
    const SearchRun *s = m->s;
    const int L = s->n_layers, workers = m->size - 1;
    double *msg = xmalloc((size_t)(2 + 2 * L) * sizeof(double));
    int *idle = xmalloc((size_t)workers * sizeof(int)); /* stack of idle worker ranks */
    int n_idle = 0, busy = 0, issued = 0, closed = 0, exhausted = 0, code = LEGR_EXIT_OK;
    for (int w = workers; w >= 1; w--) idle[n_idle++] = w;

    for (;;) {
        /* Hand out work while workers are idle and the evolution has a candidate. */
        while (n_idle > 0 && !exhausted && !closed && !dist_stop_requested()) {
            int k = evolution_next(m->e, c);
            if (k == EVO_NEXT_DONE) exhausted = 1;
            if (k != EVO_NEXT_CANDIDATE) {
                closed = s->deterministic;
                break;
            }
            pack_candidate(msg, c, L);
            MPI_Send(msg, 2 + 2 * L, MPI_DOUBLE, idle[--n_idle], TAG_WORK, MPI_COMM_WORLD);
            busy++;
            if (s->deterministic && ++issued == s->sync_batch) closed = 1;
        }
        /* With few workers the master evaluates too, while all of them are busy and no result
         * is waiting; with many it must not, since dispatch would stall while it computes. */
        if (s->master_evaluates && n_idle == 0 && !exhausted && !closed &&
            !dist_stop_requested() && !result_waiting()) {
            int k = evolution_next(m->e, c);
            if (k == EVO_NEXT_DONE) exhausted = 1;
            if (k != EVO_NEXT_CANDIDATE) {
                closed = s->deterministic;
            } else {
                EvoResult r;
                memset(&r, 0, sizeof r);
                s->evaluate(c, &r, s->eval_ctx);
                r.id = c->id;
                r.rank = 0;
                if (s->deterministic && ++issued == s->sync_batch) closed = 1;
                if (absorb(m, &r, err) != 0) {
                    code = LEGR_EXIT_INTERNAL;
                    break;
                }
                continue;
            }
        }
        if (busy == 0) {
            if (dist_stop_requested() || (exhausted && m->n_pending == 0)) break;
            if (m->n_pending == 0 && !s->deterministic)
                CHECK(0, "search stalled: nothing to hand out and nothing in flight");
        } else {
            EvoResult r;
            if (receive_result(&r)) break; /* stop requested */
            busy--;
            idle[n_idle++] = r.rank;
            if (absorb(m, &r, err) != 0) {
                code = LEGR_EXIT_INTERNAL;
                break;
            }
        }
        if (s->deterministic && busy == 0 && (closed || exhausted)) {
            if (flush_batch(m, err) != 0) {
                code = LEGR_EXIT_INTERNAL;
                break;
            }
            issued = closed = 0;
        }
    }
    free(msg);
    free(idle);
    if (code != LEGR_EXIT_OK) return code;
    /* After a stop, busy workers' results are dropped on purpose: their ids stay in flight in
     * the checkpoint and are evaluated again after the resume. */
    if (dist_stop_requested()) return LEGR_EXIT_STOPPED;
    stop_workers(m->size);
    return LEGR_EXIT_OK;
}

int search_run(Evolution *e, const SearchRun *s, const Dist *d, Err *err)
{
    if (d->rank != 0) {
        worker_loop(s, d->rank);
        return LEGR_EXIT_OK;
    }
    Master m;
    memset(&m, 0, sizeof m);
    m.e = e;
    m.s = s;
    m.size = d->size;
    m.t0 = time_now();
    m.done_at_start = e->n_history;
    m.pending = xmalloc((size_t)(s->sync_batch > 0 ? s->sync_batch : 1) * sizeof(EvoResult));
    Candidate c;
    evolution_candidate_alloc(&c, s->n_layers);
    int code = d->size == 1 ? master_serial(&m, &c, err) : master_parallel(&m, &c, err);
    evolution_candidate_free(&c);
    free(m.pending);
    if (code == LEGR_EXIT_OK || code == LEGR_EXIT_STOPPED) {
        if (s->save && s->save(e, s->save_ctx, err) != 0) return err->code;
    }
    return code;
}
