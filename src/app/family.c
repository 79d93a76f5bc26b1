/* The family stage: prune the base network at every FLOP level, fine-tune, measure, write one file. */
#include <glob.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job_internal.h"
#include "job_params.h"
#include "legr/h5io.h"
#include "legr/jsonl.h"
#include "legr/prune.h"

/* Message kind of a finished level sent to rank 0. */
#define TAG_LEVEL 11

/* What a level's owner measured, sent ahead of its tensors. */
typedef struct {
    double loss_before, acc_before, loss, acc, lat1, lat64, seconds;
} LevelStats;

/* How the ranks share the levels: groups of `per` consecutive ranks (per = family.ranks_per_level),
 * level j fine-tuned by group j % n_groups, data-parallel inside the group exactly as pretraining
 * is across all ranks, so a level's result depends on the group size only through summation
 * order. The group's first rank (its leader) measures the level, writes its checkpoints and sends
 * it to rank 0. */
typedef struct {
    int per, n_groups, group, grank;
    DistGroup *dg;  /* NULL when per == 1 */
    Collective col; /* sums over the group */
} LevelTeams;

/* The world rank that holds level j's result: its group's leader. */
static int level_owner(const LevelTeams *t, int j)
{
    return (j % t->n_groups) * t->per;
}

/* Whether any rank of this rank's group was asked to stop (the group must agree: a rank that
 * stopped alone would leave the others waiting in the step's allreduce). */
static int team_stop_requested(const LevelTeams *t)
{
    int stop = dist_stop_requested();
    return t->dg ? dist_group_max_int(t->dg, stop) : stop;
}

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
    return prune_method_mask(g, lj->method, norm, alpha, kappa, (uint64_t)job->cfg.run.seed,
                             (uint64_t)index, lj->target, job->cfg.search.safeguard, m, err);
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

/* A hash of the kept channels of every node: a level's identity in its checkpoint's key. */
static unsigned long long mask_hash(const KeepMask *m)
{
    unsigned long long h = hash_fnv1a(HASH_FNV_INIT, m->node_keep_off,
                                      (size_t)(m->n_nodes + 1) * sizeof(int));
    return hash_fnv1a(h, m->node_keep, (size_t)m->node_keep_off[m->n_nodes] * sizeof(int));
}

/*
 * Fine-tuning checkpoints. The owner of level j saves it to out_dir/family-level-<j>.h5 after
 * every epoch (the last one included, which marks the level finished) and, when a signal asked
 * to stop (dist_stop_requested), after the step in progress, and stops there. A later run of
 * the same job (same config, base network and search result: the file's level_key and config
 * must match) continues each level from its file at that step, whichever rank now owns it;
 * files that do not match, or cannot be read, are reported and the level starts over. The
 * files are removed once family.h5 is written.
 */
typedef struct {
    const Job *job;
    const LevelTeams *team;
    const Net *net;
    const char *path, *key;
    int per_epoch;       /* steps per epoch */
    double t0, seconds0; /* this run's fine-tuning start; fine-tuning time of earlier runs */
    int stopped;         /* a signal stopped the level after a checkpoint */
} LevelCkpt;

/* After every step: checkpoint at epoch ends and when asked to stop (then stop). A checkpoint
 * that cannot be written ends the job at once (the files already written stay valid). */
static int level_step_end(void *ctx, long long steps_done)
{
    LevelCkpt *lc = ctx;
    int stop = team_stop_requested(lc->team);
    if (!stop && steps_done % lc->per_epoch != 0) return 0;
    TrainCkpt ck = {steps_done, (int)(steps_done / lc->per_epoch),
                    lc->seconds0 + (time_now() - lc->t0)};
    Err err = {0, ""};
    /* The group's replicas are identical: its leader writes for all. */
    if (lc->team->grank == 0 &&
        h5_train_ckpt_save(lc->path, lc->net, &ck, lc->key, lc->job->config_text, &err) != 0) {
        fprintf(stderr, "legr-mpi: error: %s\n", err.msg);
        dist_abort(err.code);
    }
    lc->stopped = stop;
    return stop;
}

/* Continue from the level's checkpoint when it matches: *start and *seconds receive its step
 * count and fine-tuning time. On any mismatch or read error net is rebuilt from the mask and
 * the level starts over. */
static void level_resume(const Job *job, const Net *base, const KeepMask *m, int index,
                         const LevelCkpt *lc, Net *net, long long *start, double *seconds)
{
    *start = 0;
    *seconds = 0.0;
    if (access(lc->path, F_OK) != 0) return;
    Err err = {0, ""};
    TrainCkpt ck;
    char *key = NULL, *text = NULL;
    long long total = (long long)job->cfg.family.epochs * lc->per_epoch;
    if (h5_train_ckpt_load(lc->path, net, &ck, &key, &text, &err) == 0) {
        if (!key || strcmp(key, lc->key) != 0 || !job_same_config(job, text, 0))
            err_set(&err, LEGR_EXIT_DATA, "%s belongs to another level, base network, search "
                    "result or config", lc->path);
        else if (ck.steps_done < 0 || ck.steps_done > total)
            err_set(&err, LEGR_EXIT_DATA, "%s: steps_done = %lld is not within the level's "
                    "%lld steps", lc->path, ck.steps_done, total);
    }
    const int leader = lc->team->grank == 0;
    if (err.code != 0) {
        /* The first line only: a reader's hints are about model files given by the user. */
        if (leader)
            fprintf(stderr, "family: level %d: %.*s; fine-tuning it from the start\n", index + 1,
                    (int)strcspn(err.msg, "\n"), err.msg);
        net_free(net);
        if (prune_apply(base, m, net, &err) != 0)
            legr_fail(LEGR_EXIT_INTERNAL, __FILE__, __LINE__, "family level %d surgery: %s",
                      index, err.msg);
    } else {
        *start = ck.steps_done;
        *seconds = ck.train_seconds;
        if (leader)
            fprintf(stderr, "family: level %d: resuming %s after step %lld of %lld\n",
                    index + 1, lc->path, ck.steps_done, total);
    }
    free(key);
    free(text);
}

/* The checkpoint path of level index. */
static Path level_path(const Job *job, int index)
{
    return path_fmt("%s/family-level-%02d.h5", job->out_dir.s, index);
}

/* Once family.h5 holds every level: each group leader removes its levels' checkpoints, and rank
 * 0 any other family-level-*.h5 of the run directory (left by a run with more levels). */
static void remove_level_files(const Job *job, const LevelTeams *t, int n_jobs)
{
    for (int j = t->group; j < n_jobs && t->grank == 0; j += t->n_groups)
        unlink(level_path(job, j).s);
    if (job->d->rank != 0) return;
    glob_t g;
    if (glob(path_fmt("%s/family-level-*.h5", job->out_dir.s).s, 0, NULL, &g) == 0)
        for (size_t i = 0; i < g.gl_pathc; i++) unlink(g.gl_pathv[i]);
    globfree(&g);
}

/* Prune, measure, fine-tune (from the level's checkpoint if there is one) and measure one level
 * with this rank's group; on the group's leader params/bufs receive copies of the fine-tuned
 * tensors (malloc'd; NULL on the other ranks, which measure nothing). Returns 0, or
 * LEGR_EXIT_STOPPED when a signal stopped it after a checkpoint (the outputs are then unset). */
static int run_level(const Job *job, const LevelTeams *t, const Net *base,
                     unsigned long long base_hash, const KeepMask *m, const LevelJob *lj,
                     int index, int n_jobs, LevelStats *st, float **params, float **bufs,
                     size_t *n_params, size_t *n_bufs)
{
    const int leader = t->grank == 0;
    const Config *c = &job->cfg;
    Err err;
    Net net;
    if (prune_apply(base, m, &net, &err) != 0)
        legr_fail(LEGR_EXIT_INTERNAL, __FILE__, __LINE__, "family level %d surgery: %s", index,
                  err.msg);
    EvalResult before = {0, 0, 0};
    if (leader) before = train_evaluate(&net, &job->test, job->test_idx, job->n_test, &job->norm);
    Path path = level_path(job, index);
    char key[256];
    snprintf(key, sizeof key, "%s %.6g, %d epochs, base network %016llx, kept channels %016llx",
             prune_method_names[lj->method], lj->target, c->family.epochs, base_hash,
             mask_hash(m));
    LevelCkpt lc = {job, t, &net, path.s, key, job->n_train / c->family.batch, 0.0, 0.0, 0};
    TrainParams p;
    job_train_params(&job->cfg, &job->norm, job->jsonl, &p);
    level_resume(job, base, m, index, &lc, &net, &p.start_step, &lc.seconds0);
    const long long total = (long long)c->family.epochs * lc.per_epoch;
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
    p.step_end = level_step_end;
    p.step_ctx = &lc;
    Replicas team = {t->grank, t->per, t->dg ? &t->col : NULL};
    train_attach_collective(&net, team.col);
    if (leader && t->per > 1)
        fprintf(stderr, "family: level %d/%d on ranks %d-%d\n", index + 1, n_jobs,
                level_owner(t, index), level_owner(t, index) + t->per - 1);
    lc.t0 = time_now();
    if (p.start_step < total)
        train_run(&net, &job->train, job->train_idx, job->n_train, NULL, NULL, 0, &p, &team);
    train_attach_collective(&net, NULL); /* evaluation below is the leader's alone */
    if (lc.stopped) {
        net_free(&net);
        return LEGR_EXIT_STOPPED;
    }
    if (!leader) {
        *params = *bufs = NULL;
        net_free(&net);
        return 0;
    }
    st->seconds = lc.seconds0 + (p.start_step < total ? time_now() - lc.t0 : 0.0);
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
    return 0;
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

/* Rank 0: receive the other ranks' levels (in table order) and write out_dir/family.h5, one
 * level at a time; prints the family table. Returns 0 or an error code (reported here). */
static int write_family(Job *job, const LevelTeams *t, const Net *base, const PruneGraph *g,
                        const double *alpha, const double *kappa, const LevelJob *jobs,
                        KeepMask *masks, LevelStats *stats, float **params, float **bufs,
                        int n_jobs)
{
    const Config *c = &job->cfg;
    Err err = {0, ""};
    int code = 0;
    Path path = path_fmt("%s/family.h5", job->out_dir.s);
    /* A batch-1 copy of the base: for the file and to rebuild each level's shell. */
    Net base1;
    CHECK(net_build(&base1, &base->arch, 1, &err) == 0, "base copy: %s", err.msg);
    memcpy(base1.param, base->param, base->n_param_floats * sizeof(float));
    memcpy(base1.buf, base->buf, base->n_buf_floats * sizeof(float));
    EvalResult br = train_evaluate(&base1, &job->test, job->test_idx, job->n_test, &job->norm);
    FamilyData fd = {cfg_dataset_names[c->data.dataset],
                     c->data.dataset == CFG_DATASET_HDF5 ? c->data.file : c->data.dir, job->n_test,
                     job->test.c, job->norm.mean, job->norm.std, br.loss, br.acc};
    FamilyWriter *w = h5_family_begin(path.s, base, alpha, kappa, g->n_convs, &fd,
                                      job->config_text, &err);
    if (!w) code = err.code;
    fprintf(stderr, "\n%-9s %7s %9s %9s %9s %9s %9s %9s\n", "method", "target", "MFLOPs",
            "params", "top1-pre", "top1", "ms@b1", "ms@b64");
    /* The unpruned base first, so every level reads against it. */
    fprintf(stderr, "%-9s %6.0f%% %9.3f %9lld %9s %8.2f%% %9s %9s\n", "base", 100.0,
            arch_flops(&base->arch) / 1e6, arch_params(&base->arch), "-", 100 * br.acc, "-", "-");
    for (int j = 0; j < n_jobs; j++) {
        /* A batch-1 shell of the level's architecture receives its tensors. */
        Net shell;
        CHECK(prune_apply(&base1, &masks[j], &shell, &err) == 0, "family shell: %s", err.msg);
        int owner = level_owner(t, j);
        if (owner != 0) {
            dist_recv(&stats[j], sizeof(LevelStats), owner, TAG_LEVEL);
            dist_recv(shell.param, shell.n_param_floats * sizeof(float), owner, TAG_LEVEL);
            dist_recv(shell.buf, shell.n_buf_floats * sizeof(float), owner, TAG_LEVEL);
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
        JsonLine jl;
        jl_begin(&jl, job->jsonl, "family_level");
        jl_str(&jl, "method", lv.method);
        jl_num(&jl, "target", lv.target, 6);
        jl_int(&jl, "flops", masks[j].flops);
        jl_int(&jl, "params", masks[j].params);
        jl_num(&jl, "test_top1_before", lv.acc_before, 7);
        jl_num(&jl, "test_top1", lv.acc, 7);
        jl_num(&jl, "test_loss", lv.loss, 7);
        jl_num(&jl, "latency_b1_ms", lv.latency_b1_ms, 5);
        jl_num(&jl, "latency_b64_ms", lv.latency_b64_ms, 5);
        jl_end(&jl);
        net_free(&shell);
    }
    if (w && code == 0 && h5_family_commit(w, &err) != 0) code = err.code;
    else if (w && code != 0) h5_family_discard(w);
    net_free(&base1);
    if (code == 0) fprintf(stderr, "\nfamily: wrote %s\n", path.s);
    else fprintf(stderr, "legr-mpi: error: %s\n", err.msg);
    return code;
}

/* family.ranks_per_level resolved for `size` ranks and n levels: as given when it divides the
 * ranks, else an error; 0 = the largest divisor R of size that still gives every level a group
 * of its own (size / R >= n), at least 1. Returns R, or -1 with err. */
static int ranks_per_level(int want, int size, int n, Err *err)
{
    if (want > 0) {
        if (want > size || size % want != 0)
            return err_set(err, LEGR_EXIT_USAGE, "family.ranks_per_level = %d does not divide "
                           "the job's %d rank(s) into groups", want, size);
        return want;
    }
    int best = 1;
    for (int r = 1; r <= size; r++)
        if (size % r == 0 && size / r >= n) best = r;
    return best;
}

/* Rank 0, after a stop: where the state is and how to continue. */
static void print_stop_hint(const Job *job)
{
    const Config *c = &job->cfg;
    Path hint = {""};
    if (c->search.enabled)
        hint = path_fmt("--resume %s/search.h5 ", job->out_dir.s);
    else if (!c->model.init[0])
        hint = path_fmt("--resume %s/pretrain.h5 ", job->out_dir.s);
    fprintf(stderr, "family: stopped by a signal; finished levels and the fine-tuning state are "
            "saved in %s/family-level-*.h5; continue with: legr-mpi %s%s\n", job->out_dir.s, hint.s,
            job->opts->config_path);
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
    LevelTeams t = {0, 0, 0, 0, NULL, {NULL, NULL, NULL}};
    if ((t.per = ranks_per_level(c->family.ranks_per_level, size, n_jobs, &err)) < 0) {
        if (rank == 0) fprintf(stderr, "legr-mpi: error: %s\n", err.msg);
        for (int j = 0; j < n_jobs; j++) prune_mask_free(&masks[j]);
        free(jobs);
        free(masks);
        return err.code;
    }
    t.n_groups = size / t.per;
    t.group = rank / t.per;
    if (t.per > 1) {
        int gsize;
        t.dg = dist_group_split(t.group, &t.grank, &gsize);
        t.col = dist_group_collective(t.dg);
    }
    if (rank == 0)
        fprintf(stderr, "family: %d level(s) over %d rank(s) (%d group(s) of %d), %d fine-tune "
                "epoch(s) each\n", n_jobs, size, t.n_groups, t.per, c->family.epochs);

    /* Levels are dealt round-robin; each rank runs its own, keeping only the tensors. */
    LevelStats *stats = xcalloc((size_t)n_jobs, sizeof(LevelStats));
    float **params = xcalloc((size_t)n_jobs, sizeof(float *));
    float **bufs = xcalloc((size_t)n_jobs, sizeof(float *));
    size_t *np = xcalloc((size_t)n_jobs, sizeof(size_t)), *nb = xcalloc((size_t)n_jobs, sizeof(size_t));
    unsigned long long base_hash = net_hash(base);
    int stopped = 0;
    for (int j = t.group; j < n_jobs && !stopped; j += t.n_groups)
        stopped = team_stop_requested(&t) ||
                  run_level(job, &t, base, base_hash, &masks[j], &jobs[j], j, n_jobs, &stats[j],
                            &params[j], &bufs[j], &np[j], &nb[j]) == LEGR_EXIT_STOPPED;
    /* A stop anywhere stops the job: every level's state is in its checkpoint. */
    if (dist_max_int(stopped)) {
        if (rank == 0) print_stop_hint(job);
        code = LEGR_EXIT_STOPPED;
    } else {
        /* Sent only once all are done: rank 0 receives after finishing its own levels. */
        for (int j = t.group; j < n_jobs && t.grank == 0 && rank != 0; j += t.n_groups) {
            dist_send(&stats[j], sizeof(LevelStats), 0, TAG_LEVEL);
            dist_send(params[j], np[j] * sizeof(float), 0, TAG_LEVEL);
            dist_send(bufs[j], nb[j] * sizeof(float), 0, TAG_LEVEL);
        }
        if (rank == 0)
            code = write_family(job, &t, base, g, alpha, kappa, jobs, masks, stats, params,
                                bufs, n_jobs);
        code = dist_bcast_int(code, 0);
        if (code == 0) remove_level_files(job, &t, n_jobs);
    }
    dist_group_free(t.dg);
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
    return code;
}
