/* The family stage: prune the base network at every FLOP level, fine-tune, measure, write one file. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "job_internal.h"
#include "legr/h5io.h"
#include "legr/prune.h"

/* Message kind of a finished level sent to rank 0. */
#define TAG_LEVEL 11

/* What a level's owner measured, sent ahead of its tensors. */
typedef struct {
    double loss_before, acc_before, loss, acc, lat1, lat64, seconds;
} LevelStats;

/* One (method, target) pair, in the order the file lists them. */
typedef struct {
    PruneMethod method;
    double target;
} LevelJob;

/* The keep-mask of a level: a pure function of the base network, the method and the target,
 * so every rank can compute any level's mask without communication. */
static int level_mask(const Job *job, const PruneGraph *g, const double *norm,
                      const double *alpha, const double *kappa, const LevelJob *lj, int index,
                      KeepMask *m, Err *err)
{
    double sg = job->cfg.search.safeguard;
    switch (lj->method) {
    case PRUNE_METHOD_LEGR:
        return prune_legr(g, norm, alpha, kappa, g->n_convs, lj->target, sg, m, err);
    case PRUNE_METHOD_IDENTITY: return prune_identity(g, norm, lj->target, sg, m, err);
    case PRUNE_METHOD_UNIFORM: return prune_uniform(g, norm, lj->target, sg, m, err);
    default:
        return prune_random(g, (uint64_t)job->cfg.run.seed, (uint64_t)index, lj->target, sg, m,
                            err);
    }
}

/* Median eval-mode forward time in ms of n images (real test images). */
static double latency_ms(Net *net, const Job *job, int n, int repeats)
{
    if (n > net->batch) n = net->batch;
    if (n > job->n_test) n = job->n_test;
    const Dataset *d = &job->test;
    float *x = xalloc_floats((size_t)n * d->c * d->h * d->w);
    int *y = xmalloc((size_t)n * sizeof(int));
    double *t = xmalloc((size_t)repeats * sizeof(double));
    data_fill_batch(x, y, d, job->test_idx, n, &job->norm, NULL, NULL);
    net_forward(net, x, n, 0); /* warm-up */
    for (int r = 0; r < repeats; r++) {
        double t0 = time_now();
        net_forward(net, x, n, 0);
        t[r] = 1e3 * (time_now() - t0);
    }
    /* insertion sort: repeats is small */
    for (int i = 1; i < repeats; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double s = t[j];
            t[j] = t[j - 1];
            t[j - 1] = s;
        }
    double med = repeats % 2 ? t[repeats / 2] : 0.5 * (t[repeats / 2 - 1] + t[repeats / 2]);
    free(x);
    free(y);
    free(t);
    return med;
}

/* Prune, measure, fine-tune and measure one level on this rank; params/bufs receive copies of
 * the fine-tuned tensors (malloc'd). */
static void run_level(const Job *job, const Net *base, const KeepMask *m, const LevelJob *lj,
                      int index, int n_jobs, LevelStats *st, float **params, float **bufs,
                      size_t *n_params, size_t *n_bufs)
{
    const Config *c = &job->cfg;
    Err err;
    Net net;
    if (prune_apply(base, m, &net, &err) != 0)
        legr_fail(LEGR_EXIT_INTERNAL, __FILE__, __LINE__, "family level %d surgery: %s", index,
                  err.msg);
    EvalResult before = train_evaluate(&net, &job->test, job->test_idx, job->n_test, &job->norm);
    TrainParams p;
    job_train_params(job, &p);
    p.epochs = c->family.epochs;
    p.batch = c->family.batch;
    p.sgd.momentum = (float)c->family.momentum;
    p.sgd.weight_decay = (float)c->family.weight_decay;
    p.sgd.nesterov = c->family.nesterov;
    p.sched.kind = LR_MULTISTEP;
    p.sched.base_lr = (float)c->family.lr;
    p.sched.gamma = 0.2f;
    /* LeGR's recipe: x0.2 at 30%, 60% and 80% of the epochs (milestones below 1 are dropped). */
    const double at[3] = {0.3, 0.6, 0.8};
    for (int i = 0; i < 3; i++) {
        int e = (int)(at[i] * c->family.epochs);
        if (e >= 1) p.sched.milestones[p.sched.n_milestones++] = e;
    }
    char tag[64];
    snprintf(tag, sizeof tag, "family %d/%d (%s %.0f%%)", index + 1, n_jobs,
             prune_method_names[lj->method], 100 * lj->target);
    p.tag = tag;
    p.log_every = c->run.log_every * 4;
    if (job->d->rank != 0) p.jsonl = NULL;
    Replicas single = {0, 1, NULL};
    double t0 = time_now();
    if (c->family.epochs > 0)
        train_run(&net, &job->train, job->train_idx, job->n_train, NULL, NULL, 0, &p, &single);
    st->seconds = time_now() - t0;
    EvalResult after = train_evaluate(&net, &job->test, job->test_idx, job->n_test, &job->norm);
    st->loss_before = before.loss;
    st->acc_before = before.acc;
    st->loss = after.loss;
    st->acc = after.acc;
    st->lat1 = latency_ms(&net, job, 1, c->family.latency_repeats);
    st->lat64 = latency_ms(&net, job, 64, c->family.latency_repeats);
    *n_params = net.n_param_floats;
    *n_bufs = net.n_buf_floats;
    *params = xmalloc(*n_params * sizeof(float));
    *bufs = xmalloc((*n_bufs ? *n_bufs : 1) * sizeof(float));
    memcpy(*params, net.param, *n_params * sizeof(float));
    memcpy(*bufs, net.buf, *n_bufs * sizeof(float));
    net_free(&net);
}

/* The list of levels: the configured ranking at every target, then each baseline. */
static int level_jobs(const Config *c, int have_search, LevelJob *jobs, Err *err)
{
    PruneMethod primary = (PruneMethod)c->family.ranking;
    if (primary == PRUNE_METHOD_LEGR && !have_search)
        return err_set(err, LEGR_EXIT_USAGE,
                       "family.ranking = \"legr\" needs the search (search.enabled = true); use "
                       "\"identity\" or another baseline to build a family without one");
    int n = 0;
    for (int b = -1; b < c->family.n_baselines; b++)
        for (int i = 0; i < c->family.n_flops; i++) {
            jobs[n].method = b < 0 ? primary : (PruneMethod)c->family.baselines[b];
            jobs[n].target = c->family.flops[i];
            n++;
        }
    return n;
}

static void print_table_row(const LevelJob *lj, const KeepMask *m, const LevelStats *st)
{
    fprintf(stderr, "%-9s %6.0f%% %9.3f %9lld %8.2f%% %8.2f%% %9.3f %9.3f\n",
            prune_method_names[lj->method], 100 * lj->target, m->flops / 1e6, m->params,
            100 * st->acc_before, 100 * st->acc, st->lat1, st->lat64);
}

int job_family(Job *job, const Net *base, const PruneGraph *g, const double *norm,
               const double *alpha, const double *kappa)
{
    const Config *c = &job->cfg;
    const int rank = job->d->rank, size = job->d->size;
    Err err = {0, ""};
    LevelJob *jobs = xmalloc(sizeof(LevelJob) * (size_t)c->family.n_flops *
                             (size_t)(c->family.n_baselines + 1));
    int n_jobs = level_jobs(c, alpha != NULL, jobs, &err);
    /* Every mask is computed up front on every rank: an impossible target fails before any
     * fine-tuning, with the same message everywhere. */
    KeepMask *masks = xcalloc((size_t)(n_jobs > 0 ? n_jobs : 1), sizeof(KeepMask));
    int code = n_jobs < 0 ? err.code : 0;
    for (int j = 0; j < n_jobs && code == 0; j++)
        if (level_mask(job, g, norm, alpha, kappa, &jobs[j], j, &masks[j], &err) != 0)
            code = err.code;
    if (code != 0) {
        if (rank == 0) fprintf(stderr, "legr-mpi: error: %s\n", err.msg);
        free(jobs);
        free(masks);
        return code;
    }
    if (rank == 0)
        fprintf(stderr, "family: %d level(s) over %d rank(s), %d fine-tune epoch(s) each\n",
                n_jobs, size, c->family.epochs);

    /* Levels are dealt round-robin; each rank runs its own, keeping only the tensors. */
    LevelStats *stats = xcalloc((size_t)n_jobs, sizeof(LevelStats));
    float **params = xcalloc((size_t)n_jobs, sizeof(float *));
    float **bufs = xcalloc((size_t)n_jobs, sizeof(float *));
    size_t *np = xcalloc((size_t)n_jobs, sizeof(size_t)), *nb = xcalloc((size_t)n_jobs, sizeof(size_t));
    for (int j = rank; j < n_jobs; j += size)
        run_level(job, base, &masks[j], &jobs[j], j, n_jobs, &stats[j], &params[j], &bufs[j],
                  &np[j], &nb[j]);
    /* Sent only once all are done: rank 0 receives after finishing its own levels. */
    for (int j = rank; j < n_jobs && rank != 0; j += size) {
        dist_send(&stats[j], sizeof(LevelStats), 0, TAG_LEVEL);
        dist_send(params[j], np[j] * sizeof(float), 0, TAG_LEVEL);
        dist_send(bufs[j], nb[j] * sizeof(float), 0, TAG_LEVEL);
    }

    if (rank == 0) {
        char path[1200];
        snprintf(path, sizeof path, "%s/family.h5", job->out_dir);
        /* A batch-1 copy of the base: for the file and to rebuild each level's shell. */
        Net base1;
        CHECK(net_build(&base1, &base->arch, 1, &err) == 0, "base copy: %s", err.msg);
        memcpy(base1.param, base->param, base->n_param_floats * sizeof(float));
        memcpy(base1.buf, base->buf, base->n_buf_floats * sizeof(float));
        EvalResult br = train_evaluate(&base1, &job->test, job->test_idx, job->n_test, &job->norm);
        FamilyData fd = {cfg_dataset_names[c->data.dataset], c->data.dir, job->n_test,
                         job->test.c, job->norm.mean, job->norm.std, br.loss, br.acc};
        FamilyWriter *w = h5_family_begin(path, base, alpha, kappa, g->n_convs, &fd,
                                          job->config_text, &err);
        if (!w) code = err.code;
        fprintf(stderr, "\n%-9s %7s %9s %9s %9s %9s %9s %9s\n", "method", "target", "MFLOPs",
                "params", "top1-pre", "top1", "ms@b1", "ms@b64");
        for (int j = 0; j < n_jobs; j++) {
            /* A batch-1 shell of the level's architecture receives its tensors. */
            Net shell;
            CHECK(prune_apply(&base1, &masks[j], &shell, &err) == 0, "family shell: %s", err.msg);
            if (j % size != 0) {
                dist_recv(&stats[j], sizeof(LevelStats), j % size, TAG_LEVEL);
                dist_recv(shell.param, shell.n_param_floats * sizeof(float), j % size, TAG_LEVEL);
                dist_recv(shell.buf, shell.n_buf_floats * sizeof(float), j % size, TAG_LEVEL);
            } else {
                memcpy(shell.param, params[j], shell.n_param_floats * sizeof(float));
                memcpy(shell.buf, bufs[j], shell.n_buf_floats * sizeof(float));
            }
            print_table_row(&jobs[j], &masks[j], &stats[j]);
            FamilyLevel lv = {prune_method_names[jobs[j].method], jobs[j].target, &shell,
                              &masks[j], &base->arch, stats[j].loss_before, stats[j].acc_before,
                              stats[j].loss, stats[j].acc, stats[j].lat1, stats[j].lat64,
                              stats[j].seconds};
            if (w && code == 0 && h5_family_add(w, &lv, &err) != 0) code = err.code;
            if (job->jsonl)
                fprintf(job->jsonl, "{\"event\":\"family_level\",\"method\":\"%s\",\"target\":%g,"
                        "\"flops\":%lld,\"params\":%lld,\"test_top1_before\":%.6f,"
                        "\"test_top1\":%.6f,\"test_loss\":%.6f,\"latency_b1_ms\":%.4f,"
                        "\"latency_b64_ms\":%.4f}\n", lv.method, lv.target, masks[j].flops,
                        masks[j].params, lv.acc_before, lv.acc, lv.loss, lv.latency_b1_ms,
                        lv.latency_b64_ms);
            net_free(&shell);
        }
        if (w && code == 0 && h5_family_commit(w, &err) != 0) code = err.code;
        else if (w && code != 0) h5_family_discard(w);
        net_free(&base1);
        if (code == 0) fprintf(stderr, "\nfamily: wrote %s\n", path);
        else fprintf(stderr, "legr-mpi: error: %s\n", err.msg);
    }
    for (int j = 0; j < n_jobs; j++) {
        free(params[j]);
        free(bufs[j]);
        prune_mask_free(&masks[j]);
    }
    free(params);
    free(bufs);
    free(np);
    free(nb);
    free(stats);
    free(masks);
    free(jobs);
    return dist_bcast_int(code, 0);
}
