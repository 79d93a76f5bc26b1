/* The stage driver: config, data, base network (pretrain or load), LeGR search, on every rank. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "legr/job.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "job_internal.h"
#include "job_params.h"
#include "legr/h5io.h"
#include "legr/jsonl.h"
#include "legr/prune.h"
#include "legr/search_eval.h"
#include "legr/search_mpi.h"

_Static_assert((int)CFG_SCHEDULE_COUNT == 3 && (int)LR_COSINE == (int)CFG_SCHEDULE_COSINE &&
                   (int)LR_MULTISTEP == (int)CFG_SCHEDULE_MULTISTEP,
               "CfgSchedule and LrKind must list the same schedules in the same order");

/* Rank 0 reports err; every rank learns the code. Returns the agreed code (0 = go on). */
static int agree(const Job *job, int code, const Err *err)
{
    if (job->d->rank == 0 && code != 0) fprintf(stderr, "legr-mpi: error: %s\n", err->msg);
    return dist_bcast_int(code, 0);
}

/* mkdir -p for the run directory. */
static int make_dirs(const char *path, Err *err)
{
    Path dir = path_fmt("%s", path);
    char *tmp = dir.s;
    for (char *p = tmp + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
                return err_set(err, LEGR_EXIT_OUTPUT, "run.out_dir: cannot create directory %s: %s",
                               tmp, strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
    }
    return 0;
}

/* CPUs this process may run on (its affinity mask), or 0 when unknown. */
static int job_cpus_allowed(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    return CPU_COUNT(&set);
}

/* Engine threads per rank: run.threads, else one when ranks share a node and OpenBLAS's default
 * for a single rank; but never more than the engine's kernels use (net_max_threads: more ranks
 * per node use a big node better) nor than the CPUs the rank may run on, where the extra threads
 * would only take turns on one core (mpirun binds each rank to a core unless told otherwise).
 * Results do not depend on the count. */
static void job_set_threads(Job *job)
{
    if (job->cfg.run.threads > 0) openblas_set_num_threads(job->cfg.run.threads);
    else if (job->d->size > 1) openblas_set_num_threads(1);
    const int asked = openblas_get_num_threads(), cpus = job_cpus_allowed();
    const int most = net_max_threads(), want = asked < most ? asked : most;
    const char *from = job->cfg.run.threads > 0 ? "run.threads" : "OpenBLAS's default";
    if (asked > most) {
        openblas_set_num_threads(most);
        if (job->d->rank == 0)
            fprintf(stderr, "legr-mpi: %d threads per rank asked (%s), but the engine runs at "
                    "most %d per rank; using %d. To use more cores, start more ranks (e.g. one "
                    "per %d cores).\n", asked, from, most, most, most);
    }
    if (cpus <= 0 || want <= cpus) return;
    openblas_set_num_threads(cpus);
    if (job->d->rank == 0)
        fprintf(stderr,
                "legr-mpi: %d threads per rank asked (%s), but rank 0 may run on %d CPU(s) only "
                "(its affinity mask: mpirun binds each rank to a core by default); using %d. "
                "Start it with mpirun --bind-to none (or --map-by slot:PE=%d) to use %d.\n",
                asked, from, cpus, cpus, want, want);
}

int job_same_config(const Job *job, const char *stored, int search_only)
{
    if (!stored) return 0;
    if (strcmp(stored, job->config_text) == 0) return 1;
    /* Written text never includes files; a crafted one must not make this read any. */
    if (strstr(stored, "@include")) return 0;
    Config c;
    Err err;
    if (config_load_string(&c, stored, "the checkpoint's config", &err) != 0) return 0;
    /* Re-scoring acts after the last evaluation and is redone on every resume: it may change. */
    c.search.rescore_top = job->cfg.search.rescore_top;
    c.search.rescore_sequences = job->cfg.search.rescore_sequences;
    /* The family stage starts after the search: a search checkpoint does not depend on it. */
    if (search_only) c.family = job->cfg.family;
    char *text = config_to_string(&c);
    int same = strcmp(text, job->config_text) == 0;
    free(text);
    return same;
}

/* Rank 0 reads the config file, then every rank gets the same Config (plain data). */
static int stage_config(Job *job)
{
    Err err = {0, ""};
    int code = 0;
    if (job->d->rank == 0 && config_load_file(&job->cfg, job->opts->config_path, &err) != 0)
        code = err.code;
    if ((code = agree(job, code, &err)) != 0) return code;
    dist_bcast(&job->cfg, sizeof job->cfg, 0);
    job->config_text = config_to_string(&job->cfg);
    job->out_dir = path_fmt("%s/%s", job->cfg.run.out_dir, job->cfg.run.name);
    job_set_threads(job);
    /* Rank 0 sizes the network from the dataset (an hdf5 file's header); a dry run without the
     * file goes on with the configured or usual shape and says so. */
    if (job->d->rank == 0 && job_data_shape(&job->cfg, &job->shape, &err) != 0) {
        code = err.code;
        if (job->opts->dry_run) {
            snprintf(job->shape_note, sizeof job->shape_note, "%s", err.msg);
            code = job_data_shape_assumed(&job->cfg, &job->shape, &err) != 0 ? err.code : 0;
        }
    }
    if ((code = agree(job, code, &err)) != 0) return code;
    dist_bcast(&job->shape, sizeof job->shape, 0);
    code = job_arch_build(&job->cfg, &job->shape, &job->arch, &err) != 0 ? err.code : 0;
    /* A dry run shows a file's network even for other data (it warns instead). */
    if (code == 0 && !job->opts->dry_run &&
        job_arch_check_data(&job->cfg, &job->shape, &job->arch, &err))
        code = err.code;
    return agree(job, code, &err);
}

/* Every rank may have failed on its own (each opens the data file): the lowest failing rank
 * reports, and every rank returns its code (0 when none failed). */
static int agree_all(const Job *job, int code, const Err *err)
{
    const int size = job->d->size;
    const int first = size - dist_max_int(code != 0 ? size - job->d->rank : 0);
    if (first == size) return 0;
    if (job->d->rank == first) fprintf(stderr, "legr-mpi: error: %s\n", err->msg);
    return dist_bcast_int(code, first);
}

/* The datasets: rank 0 reads an in-memory set and broadcasts it, while every rank opens an
 * hdf5 file itself (labels only: images are read per batch). Every rank derives the same
 * split, search subset and normalisation. */
static int stage_data(Job *job)
{
    Err err = {0, ""};
    int code = 0;
    const Config *c = &job->cfg;
    const int hdf5 = c->data.dataset == CFG_DATASET_HDF5;
    double t0 = time_now();
    if (hdf5) {
        if (job_data_load(c, &job->train, &job->test, &err) != 0) code = err.code;
        if ((code = agree_all(job, code, &err)) != 0) return code;
    } else {
        if (job->d->rank == 0 && job_data_load(c, &job->train, &job->test, &err) != 0)
            code = err.code;
        if ((code = agree(job, code, &err)) != 0) return code;
        dist_bcast_dataset(&job->train, 0);
        dist_bcast_dataset(&job->test, 0);
    }
    char note[256];
    job_data_norm(&job->train, &job->norm, note, sizeof note);
    if (job->d->rank == 0) {
        fprintf(stderr, "data: %s, %d training and %d test images of %dx%dx%d (%.1fs)\n",
                cfg_dataset_names[c->data.dataset], job->train.n, job->test.n, job->train.c,
                job->train.h, job->train.w, time_now() - t0);
        if (hdf5) {
            char d1[1400], d2[1400], tf[200];
            if (c->data.crop)
                snprintf(tf, sizeof tf, "training %s, evaluation Resize %d + CenterCrop %d",
                         c->data.augment ? (c->data.flip ? "RandomResizedCrop + flip"
                                                         : "RandomResizedCrop")
                                         : "as evaluation",
                         dataset_resize(&job->train), c->data.crop);
            else
                snprintf(tf, sizeof tf, "images at their stored size");
            fprintf(stderr, "data: read per rank: %s; test %s; %s; cache %d MiB per rank; "
                    "batches prefetched by a helper thread (HDF5 %sthread-safe: one lock "
                    "orders its calls); normalised with %s\n",
                    dataset_describe(&job->train, d1, sizeof d1),
                    dataset_describe(&job->test, d2, sizeof d2), tf, c->data.cache_mb,
                    data_hdf5_threadsafe() ? "" : "not ", note);
        }
    }
    char split_note[1024];
    JobSplit sp;
    job_split(c, job->train.n, &sp, split_note, sizeof split_note);
    if (job->d->rank == 0 && split_note[0]) fprintf(stderr, "data: %s\n", split_note);
    job->train_idx = sp.train_idx;
    job->n_train = sp.n_train;
    job->val_idx = sp.val_idx;
    job->n_val = sp.n_val;
    job->subset_idx = sp.subset_idx;
    job->n_subset = sp.n_subset;
    job->n_test = job->test.n;
    job->test_idx = xmalloc((size_t)(job->n_test ? job->n_test : 1) * sizeof(int));
    for (int i = 0; i < job->n_test; i++) job->test_idx[i] = i;
    return 0;
}

/* Load model.init (or the run's own base.h5 on resume) into base on rank 0 and broadcast it. */
static int load_base(Job *job, Net *base, const char *path)
{
    Err err = {0, ""};
    int code = 0;
    if (job->d->rank == 0 && h5_model_load_params(path, base, &err) != 0) code = err.code;
    if ((code = agree(job, code, &err)) != 0) return code;
    dist_bcast_net(base, 0);
    if (job->d->rank == 0) fprintf(stderr, "base: loaded %s\n", path);
    return 0;
}

/* After every pretraining step: rank 0 decides, for all ranks, whether a signal asked to stop;
 * it saves pretrain.h5 at every epoch end and when stopping (then after this step). */
typedef struct {
    const Job *job;
    const Net *net;
    Path path;
    int per_epoch;       /* steps per epoch */
    int stopped;
    int failed; /* the exit code of a checkpoint that could not be written, else 0 */
} PretrainCkpt;

static int pretrain_step_end(void *ctx, long long steps_done)
{
    PretrainCkpt *pc = ctx;
    Err err = {0, ""};
    int verdict = 0; /* 1: stop after a clean checkpoint; -code: the checkpoint failed */
    if (pc->job->d->rank == 0) {
        int stop = dist_stop_requested();
        TrainCkpt ck = {steps_done, (int)(steps_done / pc->per_epoch), 0.0};
        if ((stop || steps_done % pc->per_epoch == 0) &&
            h5_train_ckpt_save(pc->path.s, pc->net, &ck, NULL, pc->job->config_text, &err) != 0) {
            fprintf(stderr, "legr-mpi: error: %s\n", err.msg);
            verdict = -err.code;
        } else if (stop) {
            verdict = 1;
        }
    }
    verdict = dist_bcast_int(verdict, 0);
    pc->stopped = verdict == 1;
    pc->failed = verdict < 0 ? -verdict : 0;
    if (pc->stopped && pc->job->d->rank == 0)
        fprintf(stderr, "pretrain: stopped by a signal after step %lld (%lld per epoch); state "
                "saved in %s; continue with: legr-mpi --resume %s %s\n", steps_done,
                (long long)pc->per_epoch, pc->path.s, pc->path.s, pc->job->opts->config_path);
    return verdict;
}

/* Rank 0 loads --resume's pretraining checkpoint into net (it must come from this config);
 * every rank gets its tensors, momentum and step count. */
static int load_pretrain(Job *job, Net *net, int per_epoch, long long *steps_done)
{
    Err err = {0, ""};
    int code = 0;
    if (job->d->rank == 0) {
        char *text = NULL;
        TrainCkpt ck;
        if (h5_train_ckpt_load(job->resume_pretrain, net, &ck, NULL, &text, &err) != 0) {
            code = err.code;
        } else if (!job_same_config(job, text, 0)) {
            err_set(&err, LEGR_EXIT_DATA, "%s: this pretraining checkpoint belongs to a "
                    "different config; resume with the config it was written with",
                    job->resume_pretrain);
            code = err.code;
        }
        /* Files written before steps were recorded hold whole epochs. */
        *steps_done = ck.steps_done >= 0 ? ck.steps_done : (long long)ck.epochs_done * per_epoch;
        free(text);
    }
    if ((code = agree(job, code, &err)) != 0) return code;
    dist_bcast_net(net, 0);
    dist_bcast(net->mom, net->n_param_floats * sizeof(float), 0);
    dist_bcast(steps_done, sizeof *steps_done, 0);
    if (job->d->rank == 0)
        fprintf(stderr, "pretrain: resuming %s after step %lld (epoch %lld)\n",
                job->resume_pretrain, *steps_done, *steps_done / per_epoch);
    return 0;
}

/* Train the base network data-parallel over all ranks (checkpointing every epoch to
 * pretrain.h5, from which --resume continues) and save it as base.h5 (rank 0). */
static int pretrain_base(Job *job, Net *base)
{
    const Config *c = &job->cfg;
    const int size = job->d->size;
    Err err = {0, ""};
    int code = 0;
    if (c->pretrain.batch < size || c->pretrain.batch > job->n_train) {
        err_set(&err, LEGR_EXIT_USAGE,
                "pretrain.batch = %d must be between the rank count %d and the %d training images",
                c->pretrain.batch, size, job->n_train);
        code = LEGR_EXIT_USAGE;
    }
    if ((code = agree(job, code, &err)) != 0) return code;

    /* A replica holds at most ceil(B/size) images of each global batch. */
    Net net;
    if (net_build(&net, &job->arch, (c->pretrain.batch + size - 1) / size, &err) != 0)
        return agree(job, err.code, &err);
    net_init_params(&net, (uint64_t)c->run.seed);
    TrainParams p;
    job_train_params(&job->cfg, &job->norm, job->jsonl, &p);
    const int per_epoch = job->n_train / c->pretrain.batch;
    if (job->resume_pretrain && (code = load_pretrain(job, &net, per_epoch, &p.start_step)) != 0) {
        net_free(&net);
        return code;
    }
    p.epochs = c->pretrain.epochs;
    p.batch = c->pretrain.batch;
    p.sgd.momentum = (float)c->pretrain.momentum;
    p.sgd.weight_decay = (float)c->pretrain.weight_decay;
    p.sgd.nesterov = c->pretrain.nesterov;
    p.sched.kind = (LrKind)c->pretrain.schedule;
    p.sched.base_lr = (float)c->pretrain.lr;
    p.sched.n_milestones = c->pretrain.n_milestones;
    memcpy(p.sched.milestones, c->pretrain.milestones, sizeof p.sched.milestones);
    p.sched.gamma = (float)c->pretrain.gamma;
    p.sched.total = c->pretrain.epochs;
    p.tag = "pretrain";
    PretrainCkpt ck = {job, &net, path_fmt("%s/pretrain.h5", job->out_dir.s), per_epoch, 0, 0};
    p.step_end = pretrain_step_end;
    p.step_ctx = &ck;
    Collective col = dist_collective();
    train_attach_collective(&net, &col);
    Replicas rep = {job->d->rank, size, &col};
    if (job->d->rank == 0)
        fprintf(stderr, "pretrain: %d epochs of %d images, batch %d over %d rank(s)\n",
                c->pretrain.epochs, job->n_train, c->pretrain.batch, size);
    train_run(&net, &job->train, job->train_idx, job->n_train, &job->test, job->test_idx,
              job->n_test, &p, &rep);
    memcpy(base->param, net.param, net.n_param_floats * sizeof(float));
    memcpy(base->buf, net.buf, net.n_buf_floats * sizeof(float));
    net_free(&net);
    if (ck.failed) return ck.failed;
    if (ck.stopped) return LEGR_EXIT_STOPPED;

    Path path = path_fmt("%s/base.h5", job->out_dir.s);
    if (job->d->rank == 0 && h5_model_save(path.s, base, job->config_text, &err) != 0)
        code = err.code;
    if ((code = agree(job, code, &err)) != 0) return code;
    if (job->d->rank == 0) fprintf(stderr, "pretrain: saved %s\n", path.s);
    return 0;
}

/* Which stage --resume continues: a search checkpoint or a pretraining checkpoint. */
static int classify_resume(Job *job)
{
    Err err = {0, ""};
    int kind = 0, code = 0; /* kind 1: search, 2: pretraining */
    if (job->d->rank == 0) {
        char fmt[64];
        if (h5_file_format(job->opts->resume_path, fmt, sizeof fmt, &err) != 0) code = err.code;
        else if (!strcmp(fmt, H5IO_CHECKPOINT_FORMAT)) kind = 1;
        else if (!strcmp(fmt, H5IO_MODEL_FORMAT) && job->cfg.model.init[0]) {
            err_set(&err, LEGR_EXIT_USAGE, "--resume %s: this job does not pretrain (model.init "
                    "is set), so it has no pretraining checkpoint to resume; --resume takes its "
                    "search checkpoint (search.h5)", job->opts->resume_path);
            code = err.code;
        } else if (!strcmp(fmt, H5IO_MODEL_FORMAT)) kind = 2;
        else {
            err_set(&err, LEGR_EXIT_DATA, "%s: a '%s' file cannot be resumed; --resume takes a "
                    "search checkpoint (search.h5) or a pretraining checkpoint (pretrain.h5)",
                    job->opts->resume_path, fmt);
            code = LEGR_EXIT_DATA;
        }
    }
    if ((code = agree(job, code, &err)) != 0) return code;
    kind = dist_bcast_int(kind, 0);
    if (kind == 1) job->resume_search = job->opts->resume_path;
    else job->resume_pretrain = job->opts->resume_path;
    return 0;
}

/* The base network, built for the search batch: loaded, resumed or pretrained. */
static int stage_base(Job *job, Net *base)
{
    Err err = {0, ""};
    const Config *c = &job->cfg;
    int batch = c->search.batch > c->family.batch ? c->search.batch : c->family.batch;
    if (net_build(base, &job->arch, batch, &err) != 0) return agree(job, err.code, &err);
    int code;
    if (c->model.init[0]) {
        code = load_base(job, base, c->model.init);
    } else if (job->resume_search) {
        Path path = path_fmt("%s/base.h5", job->out_dir.s);
        code = load_base(job, base, path.s);
    } else {
        code = pretrain_base(job, base);
    }
    if (code != 0) return code;
    if (job->d->rank == 0) {
        EvalResult r = train_evaluate(base, &job->test, job->test_idx, job->n_test, &job->norm);
        fprintf(stderr, "base: %.2f MFLOPs, %lld parameters, test loss %.4f top-1 %.2f%%\n",
                arch_flops(&base->arch) / 1e6, arch_params(&base->arch), r.loss, 100.0 * r.acc);
        JsonLine j;
        jl_begin(&j, job->jsonl, "base");
        jl_int(&j, "flops", arch_flops(&base->arch));
        jl_int(&j, "params", arch_params(&base->arch));
        jl_num(&j, "test_loss", r.loss, 7);
        jl_num(&j, "test_acc", r.acc, 7);
        jl_end(&j);
    }
    return 0;
}

typedef struct {
    const Job *job;
    unsigned long long base_hash;
    Path path;
} SaveCtx;

static int save_checkpoint(const Evolution *e, void *ctx, Err *err)
{
    const SaveCtx *s = ctx;
    return h5_checkpoint_save(s->path.s, e, s->job->config_text, s->base_hash,
                              evolution_finished(e) ? "done" : "search", err);
}

/* Rank 0: a fresh evolution, or the one saved in --resume's checkpoint after checking that it
 * belongs to this config and base network. */
static int start_evolution(Job *job, Evolution *e, const EvoParams *ep, int L, const double *std,
                           unsigned long long base_hash, Err *err)
{
    if (!job->resume_search) {
        evolution_init(e, ep, L, std, (uint64_t)job->cfg.run.seed);
        return 0;
    }
    char *text = NULL;
    unsigned long long hash = 0;
    if (h5_checkpoint_load(job->resume_search, e, &text, &hash, NULL, err) != 0) return -1;
    int bad_cfg = !job_same_config(job, text, 1);
    free(text);
    if (bad_cfg || hash != base_hash || e->n_layers != L) {
        evolution_free(e);
        return err_set(err, LEGR_EXIT_DATA,
                       "%s: this checkpoint belongs to a different %s; resume with the config "
                       "and base network it was written with", job->resume_search,
                       bad_cfg ? "config" : "base network");
    }
    /* The config text matched; the stored settings must say the same (an edited file would
     * otherwise resume silently with its own). */
    const char *field = e->p.population != ep->population     ? "population"
                        : e->p.sample != ep->sample           ? "sample"
                        : e->p.evaluations != ep->evaluations ? "evaluations"
                        : e->p.mutate_fraction != ep->mutate_fraction ? "mutate_fraction"
                        : e->p.sigma != ep->sigma             ? "sigma"
                        : e->seed != (uint64_t)job->cfg.run.seed ? "seed"
                                                                  : NULL;
    if (field) {
        evolution_free(e);
        return err_set(err, LEGR_EXIT_DATA,
                       "%s: the stored /search attribute '%s' differs from the config the file "
                       "was written with (the file was altered); start the search again",
                       job->resume_search, field);
    }
    fprintf(stderr, "search: resuming %s at %d/%d evaluations (%d in flight are redone)\n",
            job->resume_search, e->n_history, e->p.evaluations, e->n_inflight);
    return 0;
}

/* The LeGR search. On success every rank holds the best (alpha, kappa) in alpha/kappa: the
 * lowest recorded fitness, or with search.rescore_top the lowest re-scored mean. */
static int stage_search(Job *job, const Net *base, const PruneGraph *g, const double *norm,
                        double *alpha, double *kappa)
{
    const Config *c = &job->cfg;
    const int L = g->n_convs;
    Err err = {0, ""};
    double *std = xmalloc((size_t)L * sizeof(double));
    prune_norm_std(g, norm, std);

    EvoParams ep;
    job_evo_params(c, &ep);

    SearchEval se;
    job_search_eval(c, &job->norm, &se);
    se.base = base;
    se.graph = g;
    se.norm = norm;
    se.data = &job->train;
    se.train_idx = job->subset_idx;
    se.n_train = job->n_subset;
    se.val_idx = job->val_idx;
    se.n_val = job_val_count(c, job->n_val);

    int code = 0;
    if (se.n_val < 1 || (c->search.tau > 0 && c->search.batch > se.n_train)) {
        err_set(&err, LEGR_EXIT_USAGE,
                "the search needs a validation split (data.val_fraction > 0) and search.batch = "
                "%d <= %d training images%s", c->search.batch, se.n_train,
                se.n_train < job->n_train ? " (search.train_subset)" : "");
        code = LEGR_EXIT_USAGE;
    }
    if ((code = agree(job, code, &err)) != 0) {
        free(std);
        return code;
    }

    SaveCtx save = {job, net_hash(base), path_fmt("%s/search.h5", job->out_dir.s)};
    Evolution e;
    memset(&e, 0, sizeof e);
    if (job->d->rank == 0 && start_evolution(job, &e, &ep, L, std, save.base_hash, &err) != 0)
        code = err.code;
    free(std);
    if ((code = agree(job, code, &err)) != 0) return code;

    SearchRun run;
    memset(&run, 0, sizeof run);
    run.evaluate = search_evaluate;
    run.eval_ctx = &se;
    run.save = save_checkpoint;
    run.save_ctx = &save;
    run.n_layers = L;
    run.deterministic = c->search.mode == CFG_MODE_DETERMINISTIC;
    run.sync_batch = c->search.sync_batch;
    run.checkpoint_every = c->search.checkpoint_every;
    run.jsonl = job->jsonl;
    /* The master evaluates too, serving the workers between its own steps (se.poll). */
    run.master_evaluates = 1;
    run.poll = &se.poll;
    /* With shared batches a candidate's fitness is a function of its pruned network alone. */
    if (c->search.reuse_fitness && !se.per_candidate_batches && !se.null_eval) {
        run.arch_key = search_arch_key;
        run.key_bytes = (size_t)se.n_targets * (size_t)g->n_entries;
    }
    if (job->d->rank == 0) {
        /* "%g" of a percentage in (0, 100) is at most 6 digits, a point and "%, ": 16 bytes per
         * target always suffice, so the list is never cut. */
        char at[CONFIG_MAX_LEVELS * 16];
        size_t used = 0;
        for (int t = 0; t < se.n_targets && used < sizeof at; t++)
            used += (size_t)snprintf(at + used, sizeof at - used, "%s%g%%", t ? ", " : "",
                                     100 * se.targets[t]);
        fprintf(stderr, "search: %d evaluations at %s FLOPs%s, tau %d, %s mode, %d evaluating "
                "rank(s)\n",
                ep.evaluations, at, se.n_targets > 1 ? " (fitness: the mean over them)" : "",
                c->search.tau, cfg_mode_names[c->search.mode],
                job->d->size - 1 + run.master_evaluates);
    }
    code = search_run(&e, &run, job->d, &err);
    if (job->d->rank == 0 && code == LEGR_EXIT_STOPPED) {
        fprintf(stderr, "search: stopped by a signal; state saved in %s (%d/%d evaluations); "
                "continue with: legr-mpi --resume %s %s\n", save.path.s, e.n_history,
                e.p.evaluations, save.path.s, job->opts->config_path);
        fflush(NULL);
    }
    if (job->d->rank == 0 && code != LEGR_EXIT_OK && code != LEGR_EXIT_STOPPED)
        fprintf(stderr, "legr-mpi: error: %s\n", err.msg);
    if (code == LEGR_EXIT_STOPPED && job->d->rank == 0 && job->d->size > 1) {
        /* Workers may be busy inside a candidate: end the job now, the state is safe. Open MPI
         * prints an MPI_ABORT notice for this; say beforehand that it is expected. */
        fprintf(stderr, "search: ending the ranks still inside a candidate (MPI_Abort with exit "
                "code 4, resumable: the notice below is expected)\n");
        fflush(NULL);
        dist_abort(LEGR_EXIT_STOPPED);
    }
    code = dist_bcast_int(code, 0);
    if (code == LEGR_EXIT_OK && job->d->rank == 0) {
        const double *ba, *bk;
        const EvoRecord *best = evolution_best(&e, &ba, &bk);
        memcpy(alpha, ba, (size_t)L * sizeof(double));
        memcpy(kappa, bk, (size_t)L * sizeof(double));
        fprintf(stderr, "search: done; best fitness %.5f (candidate %d, val top-1 %.2f%%, %.2f "
                "MFLOPs%s); state in %s\n", best->fitness, best->id, 100 * best->accuracy,
                best->flops / 1e6,
                se.n_targets > 1 ? "; top-1 the mean over the targets, MFLOPs at the first" : "",
                save.path.s);
        JsonLine j;
        jl_begin(&j, job->jsonl, "search_done");
        jl_int(&j, "best_id", best->id);
        jl_num(&j, "fitness", best->fitness, 6);
        jl_num(&j, "accuracy", best->accuracy, 6);
        jl_num(&j, "flops", best->flops, 15);
        jl_nums(&j, "alpha", alpha, L, 9);
        jl_nums(&j, "kappa", kappa, L, 9);
        jl_end(&j);
    }
    /* Re-scores are not saved, and with --stop-after search nothing would use them: the run
     * that resumes the finished search to build the family re-scores. */
    const int rescore = c->search.rescore_top > 0;
    const int deferred = rescore && job->opts->stop_after == JOB_STOP_SEARCH;
    if (code == LEGR_EXIT_OK && deferred && job->d->rank == 0)
        fprintf(stderr, "search: re-scoring left to the run that builds the family (--stop-after "
                "search; re-scores are not saved)\n");
    if (code == LEGR_EXIT_OK && rescore && !deferred)
        code = job_rescore(job, &se, job->d->rank == 0 ? &e : NULL, alpha, kappa);
    else if (code == LEGR_EXIT_OK) {
        dist_bcast(alpha, (size_t)L * sizeof(double), 0);
        dist_bcast(kappa, (size_t)L * sizeof(double), 0);
    }
    if (job->d->rank == 0) evolution_free(&e);
    return code;
}

/* Filter norms and prune groups of the base network, then the search and the family. */
static int stage_prune(Job *job, const Net *base)
{
    Err err = {0, ""};
    PruneGraph g;
    /* The graph and the norms are the same on every rank: the base network is. */
    if (prune_graph_build(&g, &base->arch, &err) != 0) return agree(job, err.code, &err);
    g.round_to = job->cfg.search.round_to;
    double *norm = xmalloc((size_t)g.n_filters * sizeof(double));
    double *alpha = xmalloc((size_t)g.n_convs * sizeof(double));
    double *kappa = xmalloc((size_t)g.n_convs * sizeof(double));
    int code = 0;
    if (prune_norms(&g, base, (PruneMetric)job->cfg.search.metric, norm, &err) != 0)
        code = agree(job, err.code, &err);
    if (code == 0 && job->cfg.search.enabled)
        code = stage_search(job, base, &g, norm, alpha, kappa);
    if (code == 0 && job->cfg.family.enabled && job->opts->stop_after != JOB_STOP_SEARCH)
        code = job_family(job, base, &g, norm, job->cfg.search.enabled ? alpha : NULL,
                          job->cfg.search.enabled ? kappa : NULL);
    free(alpha);
    free(kappa);
    free(norm);
    prune_graph_free(&g);
    return code;
}

/* Rank 0 logs the peak resident memory (ru_maxrss) of rank 0 and the largest over the ranks;
 * every rank takes part. */
static void report_memory(const Job *job)
{
    struct rusage ru;
    int kib = getrusage(RUSAGE_SELF, &ru) == 0 ? (int)ru.ru_maxrss : 0;
    int max_kib = dist_max_int(kib);
    if (job->d->rank == 0)
        fprintf(stderr, "memory: peak resident %.1f MiB on rank 0, %.1f MiB at most over %d "
                "rank(s)\n", kib / 1024.0, max_kib / 1024.0, job->d->size);
}

static void job_free(Job *job)
{
    free(job->config_text);
    arch_free(&job->arch);
    dataset_free(&job->train);
    dataset_free(&job->test);
    if (job->subset_idx != job->train_idx) free(job->subset_idx);
    free(job->train_idx);
    free(job->val_idx);
    free(job->test_idx);
    if (job->jsonl) fclose(job->jsonl);
}

int job_run(const JobOptions *opts, const Dist *d)
{
    Job job;
    memset(&job, 0, sizeof job);
    job.opts = opts;
    job.d = d;
    int code = stage_config(&job);
    if (code == 0 && opts->dry_run) {
        code = d->rank == 0 ? job_dry_run(&job) : 0;
        code = dist_bcast_int(code, 0);
    } else if (code == 0) {
        Err err = {0, ""};
        int c2 = d->rank == 0 ? (make_dirs(job.out_dir.s, &err) ? err.code : 0) : 0;
        if (d->rank == 0 && c2 == 0) {
            config_print(&job.cfg, stderr);
            Path path = path_fmt("%s/log.jsonl", job.out_dir.s);
            job.jsonl = fopen(path.s, "a");
            if (!job.jsonl) {
                err_set(&err, LEGR_EXIT_OUTPUT, "run.out_dir: cannot write %s: %s", path.s,
                        strerror(errno));
                c2 = LEGR_EXIT_OUTPUT;
            }
        }
        code = agree(&job, c2, &err);
        if (code == 0 && opts->resume_path) code = classify_resume(&job);
        if (code == 0) code = stage_data(&job);
        Net base;
        memset(&base, 0, sizeof base);
        if (code == 0) code = stage_base(&job, &base);
        if (code == 0 && opts->stop_after != JOB_STOP_PRETRAIN &&
            (job.cfg.search.enabled || job.cfg.family.enabled))
            code = stage_prune(&job, &base);
        net_free(&base);
        if (code == 0) report_memory(&job);
    }
    job_free(&job);
    return code;
}
