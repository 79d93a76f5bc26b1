/* The search's last step when search.rescore_top > 0: its best candidates scored again on every rank. */
#include <stdlib.h>
#include <string.h>

#include "job_internal.h"
#include "legr/jsonl.h"
#include "legr/search_rescore.h"

/* Rank 0's progress line after each of its own evaluations, with an ETA from their pace. */
typedef struct {
    double t0;
    int done; /* rank 0's evaluations so far */
} Progress;

static void progress(int done, int total, void *ctx)
{
    Progress *p = ctx;
    p->done = done;
    const double spent = time_now() - p->t0;
    char eta[32];
    fprintf(stderr, "search: re-scoring: %d/%d evaluation(s) on rank 0, ETA %s\n", done, total,
            format_duration(spent / done * (total - done), eta, sizeof eta));
}

/* Every rank gets rank 0's selection (the ids, recorded fitness and rankings). */
static void share_selection(Rescore *r, const Job *job, int L, int sequences)
{
    int n = dist_bcast_int(job->d->rank == 0 ? r->n : 0, 0);
    if (job->d->rank != 0) rescore_alloc(r, n, L, sequences);
    if (n == 0) return;
    dist_bcast(r->id, (size_t)n * sizeof(int), 0);
    dist_bcast(r->recorded, (size_t)n * sizeof(double), 0);
    dist_bcast(r->alpha, (size_t)n * (size_t)L * sizeof(double), 0);
    dist_bcast(r->kappa, (size_t)n * (size_t)L * sizeof(double), 0);
}

int job_rescore(Job *job, SearchEval *se, const Evolution *e, double *alpha, double *kappa)
{
    const Config *c = &job->cfg;
    const int L = se->graph->n_convs, R = c->search.rescore_sequences;
    const int rank = job->d->rank, size = job->d->size;
    Rescore r;
    memset(&r, 0, sizeof r);
    if (rank == 0) rescore_select(&r, e, c->search.rescore_top, R, se);
    share_selection(&r, job, L, R);
    if (r.n == 0) {
        if (rank == 0)
            fprintf(stderr, "search: re-scoring skipped: no candidate has a finite fitness\n");
        rescore_free(&r);
        return LEGR_EXIT_OK;
    }
    if (rank == 0)
        fprintf(stderr, "search: re-scoring the %d best distinct candidates on %d more batch "
                "sequence(s) each: %d evaluations over %d rank(s)\n", r.n, R, r.n * R, size);
    /* No worker waits for this rank any more: nothing to serve between steps. */
    se->poll.fn = NULL;
    Collective col = dist_collective();
    Progress p = {time_now(), 0};
    /* A SIGTERM/SIGUSR1 stops every rank before its next evaluation; the search checkpoint is
     * final already, so nothing else needs saving, and a resume re-scores from the start. */
    int stopped = rescore_run(&r, se, (unsigned long long)c->run.seed, rank, size, &col,
                              rank == 0 ? progress : NULL, &p, dist_stop_requested);
    if (dist_max_int(stopped)) {
        if (rank == 0) {
            Path ck = path_fmt("%s/search.h5", job->out_dir.s);
            fprintf(stderr, "search: re-scoring stopped by a signal after %d of rank 0's %d "
                    "evaluation(s); the finished search is saved in %s and a resume re-scores "
                    "from the start; continue with: legr-mpi --resume %s %s\n", p.done,
                    rescore_share(&r, 0, size), ck.s, ck.s, job->opts->config_path);
            JsonLine j;
            jl_begin(&j, job->jsonl, "rescore_stopped");
            jl_int(&j, "rank0_done", p.done);
            jl_end(&j);
            fflush(NULL);
        }
        rescore_free(&r);
        return LEGR_EXIT_STOPPED;
    }

    const int ch = r.chosen;
    memcpy(alpha, r.alpha + (size_t)ch * L, (size_t)L * sizeof(double));
    memcpy(kappa, r.kappa + (size_t)ch * L, (size_t)L * sizeof(double));
    if (rank == 0) {
        char took[32];
        for (int i = 0; i < r.n; i++) {
            fprintf(stderr, "search: re-scored candidate %d: recorded %.5f, mean over %d "
                    "sequences %.5f%s\n", r.id[i], r.recorded[i], 1 + R, r.mean[i],
                    i == ch ? " (chosen)" : "");
            JsonLine j;
            jl_begin(&j, job->jsonl, "rescore");
            jl_int(&j, "id", r.id[i]);
            jl_num(&j, "recorded", r.recorded[i], 9);
            jl_nums(&j, "fitness", r.fitness + (size_t)i * R, R, 9);
            jl_num(&j, "mean", r.mean[i], 9);
            jl_end(&j);
        }
        fprintf(stderr, "search: re-scoring chose candidate %d (the search's own choice: %d) in "
                "%s\n", r.id[ch], r.id[0], format_duration(time_now() - p.t0, took, sizeof took));
        JsonLine j;
        jl_begin(&j, job->jsonl, "rescore_done");
        jl_int(&j, "chosen_id", r.id[ch]);
        jl_int(&j, "search_best_id", r.id[0]);
        jl_num(&j, "mean", r.mean[ch], 9);
        jl_nums(&j, "alpha", alpha, L, 9);
        jl_nums(&j, "kappa", kappa, L, 9);
        jl_end(&j);
    }
    rescore_free(&r);
    return LEGR_EXIT_OK;
}
