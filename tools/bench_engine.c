/* Engine benchmark (built and driven by tools/bench): sgemm peak, or images/s of a training step and of evaluation for one network. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "legr/arch.h"
#include "legr/net.h"
#include "legr/prune.h"
#include "legr/rng.h"
#include "legr/train.h"
#include "../src/nn/kernels.h" /* conv_forward_affine: the eval path of a conv + BN (+ ReLU) */

/* Wall-clock time, or with BENCH_CPUTIME set the process's CPU time: on a busy machine that
 * compares single-threaded builds fairly (it is not the wall time of a multi-threaded run). */
static double bench_now(void)
{
    static int cpu = -1;
    if (cpu < 0) cpu = getenv("BENCH_CPUTIME") != NULL;
    struct timespec t;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* GFLOP/s of a square sgemm of size n (best of `reps`): the machine's practical fp32 peak. */
static double bench_sgemm_peak(int n, int reps)
{
    float *a = xalloc_floats((size_t)n * n), *b = xalloc_floats((size_t)n * n);
    float *c = xalloc_floats((size_t)n * n);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
        c[i] = 0.0f;
    }
    double best = 0.0;
    for (int r = 0; r <= reps; r++) {
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        double g = 2.0 * n * n * (double)n / (bench_now() - t0) * 1e-9;
        if (r > 0 && g > best) best = g; /* r = 0 warms up */
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* Peak resident set size of this process so far, in KiB (Linux's unit for ru_maxrss). */
static long bench_peak_rss_kib(void)
{
    struct rusage u;
    return getrusage(RUSAGE_SELF, &u) == 0 ? u.ru_maxrss : -1;
}

/* The benchmark networks and their batch sizes: "r20" ResNet-20 on 1x28x28 and "r56" ResNet-56
 * on 3x32x32 (10 classes), "mbv2c" LeGR's CIFAR MobileNetV2 on 3x32x32 (100 classes), all at
 * batch 128; "r50" torchvision's ResNet-50 on 3x224x224 (1000 classes) at batch 32: a training
 * Net of it needs about 7.5 GB there, so 128 would not fit a 24 GB machine. */
static int bench_arch(Arch *a, const char *name, int *batch, Err *err)
{
    *batch = 128;
    if (strcmp(name, "r20") == 0) return arch_resnet_cifar(a, 20, 1, 28, 28, 10, 1.0, err);
    if (strcmp(name, "r56") == 0) return arch_resnet_cifar(a, 56, 3, 32, 32, 10, 1.0, err);
    if (strcmp(name, "mbv2c") == 0) return arch_mobilenetv2(a, 1, 3, 32, 32, 100, 1.0, err);
    if (strcmp(name, "r50") == 0) {
        *batch = 32;
        return arch_resnet_imagenet(a, 50, 3, 224, 224, 1000, 1.0, err);
    }
    return err_set(err, LEGR_EXIT_USAGE, "unknown network '%s' (r20, r56, mbv2c, r50)", name);
}

/* Replace `*net` by its identity-ranked (alpha 1, kappa 0) pruning to `target` of its FLOPs,
 * channels leaving round_to at a time (search.round_to). */
static int bench_prune(Net *net, double target, int round_to, Err *err)
{
    PruneGraph g;
    if (prune_graph_build(&g, &net->arch, err) != 0) return -1;
    g.round_to = round_to;
    double *norm = xmalloc((size_t)g.n_filters * sizeof(double));
    KeepMask m;
    Net small;
    int rc = prune_norms(&g, net, PRUNE_METRIC_L2_WEIGHT, norm, err);
    if (rc == 0) rc = prune_identity(&g, norm, target, 0.0, &m, err);
    if (rc == 0) {
        rc = prune_apply(net, &m, &small, err);
        prune_mask_free(&m);
    }
    free(norm);
    prune_graph_free(&g);
    if (rc != 0) return -1;
    net_free(net);
    *net = small;
    return 0;
}

/* The Arch as JSON for tools/bench_torch.py: one object per node (its input shape is node 0's),
 * the batch size of `run` and the MACs per image. */
static void bench_print_arch_json(const Arch *a, int batch, FILE *f)
{
    fprintf(f, "{\"nodes\": [");
    for (int i = 0; i < a->n_nodes; i++) {
        const Node *n = &a->nodes[i];
        fprintf(f, "%s\n {\"kind\": \"%s\", \"in\": [%d, %d], \"c\": %d, \"h\": %d, \"w\": %d, "
                   "\"k\": %d, \"stride\": %d, \"pad\": %d, \"groups\": %d, \"bias\": %d, "
                   "\"drop_p\": %.9g, \"map\": [",
                i ? "," : "", op_kind_names[n->kind], n->in[0], n->in[1], n->c, n->h, n->w, n->k,
                n->stride, n->pad, n->groups, n->bias, (double)n->drop_p);
        for (int j = 0; j < n->map_len; j++) fprintf(f, "%s%d", j ? ", " : "", n->chan_map[j]);
        fprintf(f, "]}");
    }
    fprintf(f, "],\n \"batch\": %d, \"flops\": %lld}\n", batch, arch_flops(a));
}

/* Median seconds of a training step (forward, loss, backward, SGD) and of an eval forward. */
static void bench_run(Net *net, int reps, double *t_train, double *t_eval)
{
    const Node *in = &net->arch.nodes[0];
    int n = net->batch;
    size_t img = (size_t)in->c * in->h * in->w;
    float *x = xalloc_floats((size_t)n * img);
    int *y = xmalloc((size_t)n * sizeof(int));
    Rng r;
    rng_init(&r, 1, 2);
    for (size_t i = 0; i < (size_t)n * img; i++) x[i] = (float)(2 * rng_uniform(&r) - 1);
    for (int i = 0; i < n; i++) y[i] = i % net->arch.num_classes;
    SgdCfg sgd = {0.9f, 5e-4f, 1};
    double *tt = xmalloc((size_t)(reps + 1) * sizeof(double));
    double *te = xmalloc((size_t)(reps + 1) * sizeof(double));
    for (int k = 0; k <= reps; k++) {
        double t0 = bench_now();
        train_step(net, NULL, x, y, n, n, &sgd, 0.01f, NULL);
        tt[k] = bench_now() - t0;
    }
    for (int k = 0; k <= reps; k++) {
        double t0 = bench_now();
        net_forward(net, x, n, 0);
        te[k] = bench_now() - t0;
    }
    *t_train = bench_median(tt + 1, reps); /* the first of each is a warm-up */
    *t_eval = bench_median(te + 1, reps);
    free(tt);
    free(te);
    free(x);
    free(y);
}

/* Each conv of the network alone, as the eval pass runs it (conv_forward_affine with an identity
 * BN and the clamp of the activation after its BN): median ms of `reps` calls on random input,
 * GFLOP/s and share of the convs' total, one line per conv, to see where evaluation spends. */
static void bench_convs(const Net *net, int reps)
{
    const Arch *a = &net->arch;
    int n = net->batch;
    double *t = xmalloc((size_t)(reps + 1) * sizeof(double));
    double total = 0.0;
    double *ms = xmalloc((size_t)a->n_nodes * sizeof(double));
    for (int i = 0; i < a->n_nodes; i++) {
        const Node *nd = &a->nodes[i];
        ms[i] = 0.0;
        if (nd->kind != OP_CONV) continue;
        const Node *p = &a->nodes[nd->in[0]];
        size_t ni = (size_t)n * p->c * p->h * p->w, no = (size_t)n * nd->c * nd->h * nd->w;
        size_t nw = (size_t)nd->c * (p->c / nd->groups) * nd->k * nd->k;
        long long nws = conv_workspace_floats(n, p->c, p->h, p->w, nd->c, nd->k, nd->stride,
                                              nd->pad, nd->groups);
        float *x = xalloc_floats(ni), *y = xalloc_floats(no), *w = xalloc_floats(nw);
        float *ws = xalloc_floats(nws > 0 ? (size_t)nws : 1);
        float *zero = xalloc_floats((size_t)nd->c), *one = xalloc_floats((size_t)nd->c);
        Rng r;
        rng_init(&r, 1, (uint64_t)i);
        for (size_t e = 0; e < ni; e++) x[e] = (float)(2 * rng_uniform(&r) - 1);
        for (size_t e = 0; e < nw; e++) w[e] = (float)(0.1 * (2 * rng_uniform(&r) - 1));
        for (int c = 0; c < nd->c; c++) zero[c] = 0.0f, one[c] = 1.0f;
        int k = i + 2 < a->n_nodes ? a->nodes[i + 2].kind : OP_INPUT;
        float cap = k == OP_RELU6 ? 6.0f : k == OP_RELU ? INFINITY : 0.0f;
        for (int rep = 0; rep <= reps; rep++) {
            double t0 = bench_now();
            conv_forward_affine(y, ws, x, w, n, p->c, p->h, p->w, nd->c, nd->k, nd->stride, nd->pad,
                                nd->groups, zero, one, zero, NULL, cap);
            t[rep] = bench_now() - t0;
        }
        ms[i] = 1e3 * bench_median(t + 1, reps);
        total += ms[i];
        free(x), free(y), free(w), free(ws), free(zero), free(one);
    }
    printf("%-28s %5s %5s %7s %2s %2s %4s %9s %8s %6s\n", "conv", "C", "OC", "HxW", "K", "S", "G",
           "ms", "GFLOP/s", "share");
    for (int i = 0; i < a->n_nodes; i++) {
        const Node *nd = &a->nodes[i];
        if (nd->kind != OP_CONV) continue;
        const Node *p = &a->nodes[nd->in[0]];
        double flops = 2.0 * n * nd->h * nd->w * (double)nd->c * (p->c / nd->groups) * nd->k * nd->k;
        printf("%-28s %5d %5d %3dx%-3d %2d %2d %4d %9.3f %8.1f %5.1f%%\n", nd->name, p->c, nd->c,
               p->h, p->w, nd->k, nd->stride, nd->groups, ms[i], flops / ms[i] * 1e-6,
               100.0 * ms[i] / total);
    }
    printf("total %.3f ms\n", total);
    free(ms);
    free(t);
}

static void bench_usage(void)
{
    fprintf(stderr,
            "usage: bench_engine peak THREADS   (prints GFLOP/s and OpenBLAS's kernel name)\n"
            "       bench_engine run NET THREADS REPS [PRUNE_TARGET [ROUND_TO]]\n"
            "       bench_engine arch NET [PRUNE_TARGET [ROUND_TO]]\n"
            "       bench_engine convs NET THREADS REPS [PRUNE_TARGET [ROUND_TO]]\n"
            "NET is r20 (ResNet-20, 1x28x28), r56 (ResNet-56, 3x32x32), mbv2c (CIFAR\n"
            "MobileNetV2, 3x32x32, 100 classes), all batch 128, or r50 (ResNet-50, 3x224x224,\n"
            "1000 classes, batch 32).\n"
            "run prints: train_img_s eval_img_s macs_per_image rss_before_net_kib peak_rss_kib\n"
            "convs times every conv alone as evaluation runs it (ms, GFLOP/s, share).\n");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        bench_usage();
        return 2;
    }
    Err err = {0};
    if (strcmp(argv[1], "peak") == 0) {
        openblas_set_num_threads(atoi(argv[2]));
        printf("%.2f %s\n", bench_sgemm_peak(2048, 3), openblas_get_corename());
        return 0;
    }
    int is_convs = strcmp(argv[1], "convs") == 0;
    int is_run = is_convs || strcmp(argv[1], "run") == 0;
    if (!is_run && strcmp(argv[1], "arch") != 0) {
        bench_usage();
        return 2;
    }
    if (is_run && argc < 5) {
        bench_usage();
        return 2;
    }
    double target = 0.0;
    int round_to = 1;
    if (argc > (is_run ? 5 : 3)) target = atof(argv[is_run ? 5 : 3]);
    if (argc > (is_run ? 6 : 4)) round_to = atoi(argv[is_run ? 6 : 4]);
    long rss_before = bench_peak_rss_kib();
    Arch a;
    Net net;
    int batch;
    if (bench_arch(&a, argv[2], &batch, &err) != 0 || net_build(&net, &a, batch, &err) != 0) {
        fprintf(stderr, "bench_engine: %s\n", err.msg);
        return 1;
    }
    arch_free(&a);
    net_init_params(&net, 42);
    if (target > 0.0 && bench_prune(&net, target, round_to, &err) != 0) {
        fprintf(stderr, "bench_engine: %s\n", err.msg);
        return 1;
    }
    if (!is_run) {
        bench_print_arch_json(&net.arch, net.batch, stdout);
    } else {
        openblas_set_num_threads(atoi(argv[3]));
        double tt, te;
        if (is_convs) {
            bench_convs(&net, atoi(argv[4]));
            net_free(&net);
            return 0;
        }
        bench_run(&net, atoi(argv[4]), &tt, &te);
        printf("%.2f %.2f %lld %ld %ld\n", net.batch / tt, net.batch / te, arch_flops(&net.arch),
               rss_before, bench_peak_rss_kib());
    }
    net_free(&net);
    return 0;
}
