/* --dry-run: the resolved config, the network, its prune groups and an estimate of the work. */
#include <stdlib.h>
#include <string.h>

#include "job_internal.h"
#include "legr/prune.h"

/* Seconds per image of a training step (forward + backward + SGD) of `arch`, measured on a few
 * random images: the basis of the time estimate. A timed step of at most 8 images and about
 * 1e9 multiply-accumulates (8 ResNet-56 images), after a warm-up step when the step is that
 * small, keeps a dry run quick, also in the sanitizer build; a network beyond 1e9 per image
 * (ResNet-50 at 224x224: 4e9) is timed on one image without warm-up, whose first-touch page
 * faults are then a small share of the step. A small batch overestimates the per-image cost of
 * batch 128 a little, which suits an estimate. */
static double measure_step(const Arch *arch)
{
    long long macs = arch_flops(arch);
    int batch = macs > 0 && 1e9 / (double)macs < 8 ? (int)(1e9 / (double)macs) : 8;
    if (batch < 1) batch = 1;
    Net net;
    Err err;
    if (net_build(&net, arch, batch, &err) != 0) return -1;
    net_init_params(&net, 1);
    const Node *in = &arch->nodes[0];
    size_t n = (size_t)batch * in->c * in->h * in->w;
    float *x = xalloc_floats(n);
    int *y = xmalloc((size_t)batch * sizeof(int));
    Rng r;
    rng_init(&r, 1, rng_stream_id(RNG_PURPOSE_TEST, 0));
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_normal(&r);
    for (int i = 0; i < batch; i++) y[i] = i % arch->num_classes;
    SgdCfg sgd = {0.9f, 5e-4f, 0};
    if ((double)macs * batch <= 1e9) train_step(&net, NULL, x, y, batch, batch, &sgd, 0.01f, NULL);
    double t0 = time_now();
    train_step(&net, NULL, x, y, batch, batch, &sgd, 0.01f, NULL);
    double s = (time_now() - t0) / batch;
    free(x);
    free(y);
    net_free(&net);
    return s;
}

int job_dry_run(Job *job)
{
    const Config *c = &job->cfg;
    Err err = {0, ""};
    printf("# resolved config\n");
    config_print(c, stdout);
    if (c->model.arch == CFG_ARCH_RESNET)
        printf("\n# network (resnet, depth %d, width %g)\n", c->model.depth, c->model.width);
    else if (c->model.arch == CFG_ARCH_FILE)
        printf("\n# network (from %s)\n", c->model.init);
    if (job->shape_note[0])
        printf("\nwarning: %s; assuming %dx%dx%d inputs and %d classes (data.channels, "
               "data.crop, data.classes); a run would stop here\n", job->shape_note,
               job->shape.c, job->shape.h, job->shape.w, job->shape.classes);
    if (job_arch_check_data(c, &job->shape, &job->arch, &err) != 0)
        printf("warning: %s; a run would stop here\n", err.msg);
    else
        printf("\n# network (%s, width %g)\n", cfg_arch_names[c->model.arch], c->model.width);
    arch_print(&job->arch, stdout);
    long long flops = arch_flops(&job->arch), params = arch_params(&job->arch);
    printf("FLOPs (multiply-accumulates of conv + fc): %lld (%.2f M); parameters: %lld\n", flops,
           flops / 1e6, params);

    PruneGraph g;
    if (prune_graph_build(&g, &job->arch, &err) != 0) {
        fprintf(stderr, "legr-mpi: error: %s\n", err.msg);
        return err.code;
    }
    g.round_to = c->search.round_to;
    printf("\n# prune groups\n");
    prune_print_groups(stdout, &g, &job->arch);

    /* Norms of the seed-initialised network (or of model.init's weights would need a file
     * read; the dry run reads nothing). */
    Net net;
    if (net_build(&net, &job->arch, 1, &err) != 0) {
        fprintf(stderr, "legr-mpi: error: %s\n", err.msg);
        prune_graph_free(&g);
        return err.code;
    }
    net_init_params(&net, (uint64_t)c->run.seed);
    double *norm = xmalloc((size_t)g.n_filters * sizeof(double));
    double targets[2 * CONFIG_MAX_LEVELS];
    int nt = 0;
    if (c->search.enabled)
        for (int i = 0; i < c->search.n_target_flops; i++)
            targets[nt++] = c->search.target_flops[i];
    if (c->family.enabled)
        for (int i = 0; i < c->family.n_flops; i++) targets[nt++] = c->family.flops[i];
    int code = 0;
    if (prune_norms(&g, &net, (PruneMetric)c->search.metric, norm, &err) != 0) {
        code = err.code;
    } else if (nt > 0) {
        printf("\n# channels kept by the identity ranking (%s norms of the seed-initialised "
               "network) at each target\n", prune_metric_names[c->search.metric]);
        if (prune_print_targets(stdout, &g, &job->arch, norm, targets, nt, c->search.safeguard,
                                &err) != 0)
            code = err.code;
    }
    free(norm);
    net_free(&net);
    prune_graph_free(&g);
    if (code != 0) {
        fprintf(stderr, "legr-mpi: error: %s\n", err.msg);
        return code;
    }

    /* Work estimate from a measured training step at a small batch. */
    double n_train = job->shape.n_train >= 0 ? job->shape.n_train : 0;
    if (job->shape.n_train < 0)
        printf("\n(the training set's size is unknown without data.file: the pretraining and "
               "family estimates below count no images)\n");
    if (c->data.train_limit > 0 && c->data.train_limit < n_train) n_train = c->data.train_limit;
    double n_val = n_train * c->data.val_fraction;
    n_train -= n_val;
    if (c->search.val_limit > 0 && (c->search.val_limit < n_val || job->shape.n_train < 0))
        n_val = c->search.val_limit;
    double spi = measure_step(&job->arch);
    double pre = c->model.init[0] ? 0 : c->pretrain.epochs * n_train;
    /* Per candidate and target: tau training steps and one validation pass (a third of a
     * training image's cost) of the network pruned to that target. */
    double search_flops = 0;
    for (int i = 0; i < c->search.n_target_flops; i++) search_flops += c->search.target_flops[i];
    /* search.rescore_top: each re-score costs a candidate's evaluation. */
    const int rescores = c->search.rescore_top * c->search.rescore_sequences;
    const int evals = c->search.enabled ? c->search.evaluations + rescores : 0;
    double search = evals * (c->search.tau * (double)c->search.batch + n_val / 3.0) * search_flops;
    double family = 0;
    if (c->family.enabled)
        for (int i = 0; i < c->family.n_flops; i++)
            family += (1 + c->family.n_baselines) * c->family.epochs * n_train * c->family.flops[i];
    char b1[32], b2[32], b3[32];
    printf("\n# work estimate (one rank: %.2f ms per training image, measured here)\n",
           1e3 * spi);
    printf("pretrain: %.0f image-steps, ~%s\n", pre, format_duration(pre * spi, b1, sizeof b1));
    char with[64] = "";
    if (c->search.enabled && rescores > 0)
        snprintf(with, sizeof with, " (%d of them re-scores)", rescores);
    printf("search:   %d candidates%s x %d target(s) x (%d steps x %d images + %.0f validation "
           "images), ~%s of rank time (divide by the worker count)\n",
           evals, with, c->search.n_target_flops, c->search.tau, c->search.batch, n_val,
           format_duration(search * spi, b2, sizeof b2));
    printf("family:   %d level(s) x %d ranking(s) x %d epoch(s), ~%s of rank time\n",
           c->family.enabled ? c->family.n_flops : 0, 1 + c->family.n_baselines, c->family.epochs,
           format_duration(family * spi, b3, sizeof b3));
    return 0;
}
