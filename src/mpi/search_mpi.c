/* Master/worker protocol of the search: self-scheduled candidates, ids inside the messages. */
#include "legr/search_mpi.h"

#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "legr/jsonl.h"

/* Message kinds. Ids travel inside the payload, never in the tag. */
enum { TAG_WORK = 1, TAG_RESULT = 2, TAG_STOP = 3 };

/* A result on the wire: id, fitness, accuracy, flops, seconds, rank, and the seconds of pruning,
 * tau steps and validation. */
#define RESULT_DOUBLES 9

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
    msg[6] = r->prune_seconds;
    msg[7] = r->train_seconds;
    msg[8] = r->val_seconds;
}

static void unpack_result(EvoResult *r, const double *msg)
{
    r->id = (int)msg[0];
    r->fitness = msg[1];
    r->accuracy = msg[2];
    r->flops = msg[3];
    r->seconds = msg[4];
    r->rank = (int)msg[5];
    r->prune_seconds = msg[6];
    r->train_seconds = msg[7];
    r->val_seconds = msg[8];
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

/* Fitness reuse (SearchRun.arch_key), every array indexed by candidate id (ids are below E). */
enum { MEMO_NONE = 0, MEMO_KEYED = 1, MEMO_KNOWN = 2 };
typedef struct {
    unsigned char *key;  /* [E][key_bytes]: the pruned network of every keyed id */
    unsigned long long *hash; /* [E] of the key, to skip most comparisons */
    unsigned char *state; /* [E] MEMO_*: not keyed (or cannot be pruned), handed out, result in */
    EvoResult *result;   /* [E] the results of MEMO_KNOWN ids */
    int *from;           /* [E] the id whose result an id took, -1: evaluated */
} Memo;

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
    double *busy;          /* per rank: seconds spent evaluating this run's results */
    int *count;            /* per rank: results of this run */
    Memo memo;             /* all NULL when reuse is off */
    int reused;            /* results of this run taken from an earlier candidate */
} Master;

static void log_result(Master *m, const EvoResult *r)
{
    const Evolution *e = m->e;
    const EvoRecord *best = evolution_best(e, NULL, NULL);
    const int from = m->memo.from ? m->memo.from[r->id] : -1;
    if (from >= 0) {
        m->reused++;
    } else if (r->rank >= 0 && r->rank < m->size) {
        m->busy[r->rank] += r->seconds;
        m->count[r->rank]++;
    }
    JsonLine j;
    jl_begin(&j, m->s->jsonl, "candidate");
    jl_int(&j, "id", r->id);
    jl_num(&j, "fitness", r->fitness, 6); /* null when it diverged */
    jl_num(&j, "accuracy", r->accuracy, 6);
    jl_num(&j, "flops", r->flops, 15);
    jl_num(&j, "seconds", r->seconds, 6);
    jl_int(&j, "rank", r->rank);
    jl_num(&j, "prune_s", r->prune_seconds, 4);
    jl_num(&j, "train_s", r->train_seconds, 4);
    jl_num(&j, "val_s", r->val_seconds, 4);
    jl_num(&j, "best", best ? best->fitness : NAN, 6);
    if (from >= 0) jl_int(&j, "reused_from", from);
    jl_end(&j);
    if (!isfinite(r->fitness) && !m->s->quiet)
        fprintf(stderr, "search: candidate %d diverged (loss %g); it gets the worst fitness\n",
                r->id, r->fitness);
    double now = time_now();
    int done = e->n_history;
    if (!m->s->quiet && (now - m->last_progress > 5.0 || done == e->p.evaluations)) {
        m->last_progress = now;
        /* Reused results count in the rate: their share grows as the population converges, so
         * the ETA errs on the long side late in a search; the reuse count shows why. Until this
         * run has computed a result of its own the rate is unknown: a resumed search's first
         * results can all be instant reuses, which would claim an ETA of seconds. */
        int computed = 0;
        for (int k = 0; k < m->size; k++) computed += m->count[k];
        double rate = computed > 0 ? (done - m->done_at_start) / (now - m->t0) : -1; /* per s */
        char eta[32], per_hour[32] = "?", reused[40] = "";
        if (rate > 0) snprintf(per_hour, sizeof per_hour, "%.0f", rate * 3600.0);
        if (m->memo.from) snprintf(reused, sizeof reused, " (%d reused)", m->reused);
        fprintf(stderr, "search: %d/%d evaluations%s, best fitness %.5f (id %d), %s evals/h, "
                "ETA %s\n",
                done, e->p.evaluations, reused, best ? best->fitness : NAN, best ? best->id : -1,
                per_hour,
                format_duration(rate > 0 ? (e->p.evaluations - done) / rate : -1, eta, sizeof eta));
    }
}

/* The exit code of a failed absorb or flush: the error's own (a checkpoint that cannot be
 * written is LEGR_EXIT_OUTPUT), else an internal error. */
static int failure_code(const Err *err)
{
    return err->code ? err->code : LEGR_EXIT_INTERNAL;
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

/* Either apply a result now (async) or hold it until its batch is complete (deterministic). Its
 * fitness is reusable from now on: a batch's later duplicates would compute the same bits. */
static int absorb(Master *m, const EvoResult *r, Err *err)
{
    if (m->memo.state && m->memo.state[r->id] == MEMO_KEYED) {
        m->memo.state[r->id] = MEMO_KNOWN;
        m->memo.result[r->id] = *r;
    }
    if (!m->s->deterministic) return apply_result(m, r, err);
    m->pending[m->n_pending++] = *r;
    return 0;
}

/* Key candidate c (its pruned network under its id, with the key's hash): 0, or -1 when it
 * cannot be pruned. */
static int memo_key(Master *m, const Candidate *c)
{
    Memo *mo = &m->memo;
    const size_t n = m->s->key_bytes;
    unsigned char *key = mo->key + (size_t)c->id * n;
    if (m->s->arch_key(c, key, m->s->eval_ctx) != 0) return -1;
    mo->hash[c->id] = hash_fnv1a(0, key, n);
    return 0;
}

/* Key candidate c. If its pruned network already has a result (MEMO_KNOWN), absorb a copy under
 * c's id and return 1, or -1 with err when absorbing fails; 0: c must be evaluated. */
static int memo_reuse(Master *m, const Candidate *c, Err *err)
{
    Memo *mo = &m->memo;
    if (!mo->state) return 0;
    const size_t n = m->s->key_bytes;
    const int E = m->e->p.evaluations;
    double t0 = time_now();
    if (memo_key(m, c) != 0) return 0;
    const unsigned char *key = mo->key + (size_t)c->id * n;
    mo->state[c->id] = MEMO_KEYED;
    for (int j = 0; j < E; j++) {
        if (mo->state[j] != MEMO_KNOWN || mo->from[j] >= 0 || mo->hash[j] != mo->hash[c->id] ||
            memcmp(mo->key + (size_t)j * n, key, n) != 0)
            continue;
        EvoResult r = mo->result[j]; /* fitness, accuracy, FLOPs */
        r.id = c->id;
        r.rank = 0; /* it never left the master */
        r.seconds = r.prune_seconds = time_now() - t0;
        r.train_seconds = r.val_seconds = 0.0;
        mo->from[c->id] = j;
        return absorb(m, &r, err) != 0 ? -1 : 1;
    }
    return 0;
}

/* Reuse on: every result of the history (a resumed search's) is known under its network. */
static void memo_init(Master *m)
{
    const SearchRun *s = m->s;
    const Evolution *e = m->e;
    if (!s->arch_key) return;
    const int E = e->p.evaluations, L = s->n_layers;
    Memo *mo = &m->memo;
    mo->key = xmalloc((size_t)E * s->key_bytes + 1);
    mo->hash = xcalloc((size_t)E, sizeof *mo->hash);
    mo->state = xcalloc((size_t)E, 1);
    mo->result = xcalloc((size_t)E, sizeof *mo->result);
    mo->from = xmalloc((size_t)E * sizeof(int));
    for (int i = 0; i < E; i++) mo->from[i] = -1;
    for (int row = 0; row < e->n_history; row++) {
        const EvoRecord *h = &e->history[row];
        Candidate c = {h->id, h->parent, e->history_alpha + (size_t)row * L,
                       e->history_kappa + (size_t)row * L};
        if (memo_key(m, &c) != 0) continue;
        mo->state[h->id] = MEMO_KNOWN;
        EvoResult r = {h->id, h->fitness, h->accuracy, h->flops, h->seconds, h->rank, 0, 0, 0};
        mo->result[h->id] = r;
    }
}

static void memo_free(Memo *mo)
{
    free(mo->key);
    free(mo->hash);
    free(mo->state);
    free(mo->result);
    free(mo->from);
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
            if (flush_batch(m, err) != 0) return failure_code(err);
            continue;
        }
        int reused = memo_reuse(m, c, err);
        if (reused < 0) return failure_code(err);
        if (!reused) {
            EvoResult r;
            memset(&r, 0, sizeof r);
            s->evaluate(c, &r, s->eval_ctx);
            r.id = c->id;
            r.rank = 0;
            if (absorb(m, &r, err) != 0) return failure_code(err);
        }
        if (s->deterministic && m->n_pending == s->sync_batch && flush_batch(m, err) != 0)
            return failure_code(err);
    }
    if (flush_batch(m, err) != 0) return failure_code(err);
    return LEGR_EXIT_OK;
}

/*
 * Several ranks: keep every rank busy. The master hands a candidate to each idle worker and
 * evaluates candidates itself as well; while it does, the evaluation calls back into
 * master_poll after every fine-tuning step and validation chunk, which receives the results
 * that arrived and hands out new work, so a worker that finishes waits at most one of the
 * master's steps, never a whole candidate. In deterministic mode a batch is closed when
 * sync_batch ids have been handed out (the master's own included) or the evolution cannot produce
 * more without results; once all its results are in they are applied in id order. Batch contents
 * therefore do not depend on the number of ranks.
 */
typedef struct {
    Master *m;
    Candidate work;     /* for dispatch: the master's own candidate stays untouched meanwhile */
    double *msg;
    int *idle;          /* stack of idle worker ranks */
    int n_idle, busy, issued, closed, exhausted, failed;
    Err *err;
} Dispatch;

/* Hand out work while workers are idle and the evolution has a candidate; a candidate whose
 * result is known already (memo_reuse) takes no worker. */
static void dispatch(Dispatch *d)
{
    const SearchRun *s = d->m->s;
    const int L = s->n_layers;
    while (d->n_idle > 0 && !d->exhausted && !d->closed && !d->failed && !dist_stop_requested()) {
        int k = evolution_next(d->m->e, &d->work);
        if (k == EVO_NEXT_DONE) d->exhausted = 1;
        if (k != EVO_NEXT_CANDIDATE) {
            d->closed = s->deterministic;
            break;
        }
        int reused = memo_reuse(d->m, &d->work, d->err);
        if (reused < 0) {
            d->failed = 1;
            break;
        }
        if (!reused) {
            pack_candidate(d->msg, &d->work, L);
            MPI_Send(d->msg, 2 + 2 * L, MPI_DOUBLE, d->idle[--d->n_idle], TAG_WORK,
                     MPI_COMM_WORLD);
            d->busy++;
        }
        if (s->deterministic && ++d->issued == s->sync_batch) d->closed = 1;
    }
}

/* A worker's result came in: its rank is idle again. */
static void collect(Dispatch *d, const EvoResult *r)
{
    d->busy--;
    d->idle[d->n_idle++] = r->rank;
    if (!d->failed && absorb(d->m, r, d->err) != 0) d->failed = 1;
}

/* SearchPoll callback of the master's own evaluations: take in every waiting result, refill the
 * idle workers. An error is kept for the main loop (the evaluation cannot be interrupted). */
static void master_poll(void *ctx)
{
    Dispatch *d = ctx;
    while (d->busy > 0 && result_waiting()) {
        EvoResult r;
        if (receive_result(&r)) return;
        collect(d, &r);
    }
    if (!d->failed) dispatch(d);
}

static int master_parallel(Master *m, Candidate *c, Err *err)
{
    const SearchRun *s = m->s;
    const int L = s->n_layers, workers = m->size - 1;
    Dispatch d = {m, {0, 0, NULL, NULL}, xmalloc((size_t)(2 + 2 * L) * sizeof(double)),
                  xmalloc((size_t)workers * sizeof(int)), 0, 0, 0, 0, 0, 0, err};
    evolution_candidate_alloc(&d.work, L);
    for (int w = workers; w >= 1; w--) d.idle[d.n_idle++] = w;
    int code = LEGR_EXIT_OK;
    if (s->poll) {
        s->poll->fn = master_poll;
        s->poll->ctx = &d;
    }
    for (;;) {
        dispatch(&d);
        /* The master evaluates too, while every worker is busy and no result is waiting. */
        if (s->master_evaluates && d.n_idle == 0 && !d.exhausted && !d.closed &&
            !dist_stop_requested() && !result_waiting()) {
            int k = evolution_next(m->e, c);
            if (k == EVO_NEXT_DONE) d.exhausted = 1;
            if (k != EVO_NEXT_CANDIDATE) {
                d.closed = s->deterministic;
            } else {
                if (s->deterministic && ++d.issued == s->sync_batch) d.closed = 1;
                int reused = memo_reuse(m, c, err);
                if (reused < 0) {
                    code = failure_code(err);
                    break;
                }
                if (reused) continue;
                EvoResult r;
                memset(&r, 0, sizeof r);
                s->evaluate(c, &r, s->eval_ctx);
                r.id = c->id;
                r.rank = 0;
                if (d.failed || absorb(m, &r, err) != 0) {
                    code = failure_code(err);
                    break;
                }
                continue;
            }
        }
        if (d.failed) {
            code = failure_code(err);
            break;
        }
        if (d.busy == 0) {
            if (dist_stop_requested() || (d.exhausted && m->n_pending == 0)) break;
            if (m->n_pending == 0 && !s->deterministic)
                CHECK(0, "search stalled: nothing to hand out and nothing in flight");
        } else {
            EvoResult r;
            if (receive_result(&r)) break; /* stop requested */
            collect(&d, &r);
            if (d.failed) {
                code = failure_code(err);
                break;
            }
        }
        if (s->deterministic && d.busy == 0 && (d.closed || d.exhausted)) {
            if (flush_batch(m, err) != 0) {
                code = failure_code(err);
                break;
            }
            d.issued = d.closed = 0;
        }
    }
    if (s->poll) s->poll->fn = NULL;
    evolution_candidate_free(&d.work);
    free(d.msg);
    free(d.idle);
    if (code != LEGR_EXIT_OK) return code;
    /* After a stop, busy workers' results are dropped on purpose: their ids stay in flight in
     * the checkpoint and are evaluated again after the resume. */
    if (dist_stop_requested()) return LEGR_EXIT_STOPPED;
    stop_workers(m->size);
    return LEGR_EXIT_OK;
}

/* Every rank's share of the search: results, and seconds spent evaluating against the search's
 * wall time (what the scheduling must keep near 100%), on stderr and in the log. */
static void report_ranks(const Master *m)
{
    double wall = time_now() - m->t0;
    if (!m->s->quiet)
        for (int r = 0; r < m->size; r++)
            fprintf(stderr, "search: rank %d: %d candidate(s), busy %.1f s of %.1f s (%.0f%%)\n",
                    r, m->count[r], m->busy[r], wall, wall > 0 ? 100 * m->busy[r] / wall : 0);
    if (!m->s->quiet && m->reused > 0)
        fprintf(stderr, "search: %d candidate(s) were pruned to a network evaluated before and "
                "took its fitness without fine-tuning\n", m->reused);
    JsonLine j;
    jl_begin(&j, m->s->jsonl, "search_ranks");
    jl_num(&j, "wall_seconds", wall, 6);
    jl_ints(&j, "candidates", m->count, m->size);
    jl_nums(&j, "busy_seconds", m->busy, m->size, 6);
    jl_int(&j, "reused", m->reused);
    jl_end(&j);
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
    m.busy = xcalloc((size_t)d->size, sizeof(double));
    m.count = xcalloc((size_t)d->size, sizeof(int));
    memo_init(&m);
    Candidate c;
    evolution_candidate_alloc(&c, s->n_layers);
    int code = d->size == 1 ? master_serial(&m, &c, err) : master_parallel(&m, &c, err);
    evolution_candidate_free(&c);
    if (code == LEGR_EXIT_OK || code == LEGR_EXIT_STOPPED) report_ranks(&m);
    free(m.pending);
    free(m.busy);
    free(m.count);
    memo_free(&m.memo);
    if (code == LEGR_EXIT_OK || code == LEGR_EXIT_STOPPED) {
        if (s->save && s->save(e, s->save_ctx, err) != 0) return err->code;
    }
    return code;
}
