/* Prune groups, exact FLOP/parameter accounting, ranking, the greedy target, floors, baselines
 * and bad input, on Arch alone (synthetic filter norms, no weights). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "legr/prune.h"
#include "legr/rng.h"

static void build_resnet(Arch *a, int depth, int classes)
{
    Err err;
    int rc = arch_resnet_cifar(a, depth, 3, 32, 32, classes, 1.0, &err);
    CHECK(rc == 0, "resnet: %s", err.msg);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Positive synthetic norms, one per filter. */
static double *random_norms(const PruneGraph *g, uint64_t seed)
{
    Rng r;
    rng_init(&r, seed, rng_stream_id(RNG_PURPOSE_TEST, 1));
    double *norm = xmalloc((size_t)g->n_filters * sizeof(double));
    for (int f = 0; f < g->n_filters; f++) norm[f] = 0.05 + rng_uniform(&r);
    return norm;
}

static void test_counts(void)
{
    Arch a;
    PruneGraph g;
    Err err;
    build_resnet(&a, 56, 10);
    EXPECT(arch_flops(&a) == 125485696LL, "ResNet-56 C10 MACs %lld", arch_flops(&a));
    EXPECT(arch_params(&a) == 853018LL, "ResNet-56 C10 params %lld", arch_params(&a));
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    EXPECT(g.flops0 == 125485696LL && g.params0 == 853018LL, "graph totals %lld %lld", g.flops0,
           g.params0);
    prune_graph_free(&g);
    arch_free(&a);

    build_resnet(&a, 56, 100);
    EXPECT(arch_flops(&a) == 125491456LL, "ResNet-56 C100 MACs %lld", arch_flops(&a));
    EXPECT(arch_params(&a) == 858868LL, "ResNet-56 C100 params %lld", arch_params(&a));
    arch_free(&a);

    build_resnet(&a, 20, 10);
    EXPECT(arch_params(&a) == 269722LL, "ResNet-20 params %lld", arch_params(&a));
    arch_free(&a);
}

static void test_groups(void)
{
    Arch a;
    PruneGraph g;
    Err err;
    build_resnet(&a, 56, 10);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    EXPECT(g.n_convs == 55, "convs %d", g.n_convs);
    EXPECT(g.n_entries == 1072, "entries %d (docs/ALGORITHM.md section 4: 1072)", g.n_entries);
    EXPECT(g.n_groups == 28, "groups %d", g.n_groups);
    int g0 = g.group_off[1] - g.group_off[0];
    EXPECT(g0 == 28, "first group has %d members", g0);
    EXPECT(g.group_entry_off[1] == 64, "first group has %d entries", g.group_entry_off[1]);
    for (int i = g.group_off[0]; i < g.group_off[1]; i++) {
        const char *name = a.nodes[g.conv_node[g.group_conv[i]]].name;
        EXPECT(strcmp(name, "conv1") == 0 || ends_with(name, ".conv2"), "stream member %s", name);
    }
    for (int q = 1; q < g.n_groups; q++) {
        int l = g.group_conv[g.group_off[q]];
        EXPECT(g.group_off[q + 1] - g.group_off[q] == 1, "group %d is not a singleton", q);
        EXPECT(ends_with(a.nodes[g.conv_node[l]].name, ".conv1"), "singleton %s",
               a.nodes[g.conv_node[l]].name);
        EXPECT(g.group_entry_off[q + 1] - g.group_entry_off[q] == g.conv_c[l],
               "group %d entries", q);
    }
    /* Stream entry j sums 28 members for j < 16, 18 for j < 32 and 9 above (docs/ALGORITHM.md section 4). */
    for (int e = 0; e < 64; e++) {
        int members = g.entry_mem_off[e + 1] - g.entry_mem_off[e];
        int want = e < 16 ? 28 : e < 32 ? 18 : 9;
        EXPECT(g.entry_group[e] == 0 && g.entry_ord[e] == e && members == want,
               "stream entry %d: group %d ord %d members %d", e, g.entry_group[e], g.entry_ord[e],
               members);
        for (int i = g.entry_mem_off[e]; i < g.entry_mem_off[e + 1]; i++) {
            int f = g.entry_mem[i];
            EXPECT(f - g.conv_off[g.filter_conv[f]] == e, "entry %d holds filter index %d", e,
                   f - g.conv_off[g.filter_conv[f]]);
        }
    }
    printf("ResNet-56 prune groups:\n");
    prune_print_groups(stdout, &g, &a);
    prune_graph_free(&g);
    arch_free(&a);
}

/* FLOPs saved by removing one entry alone (counted by hand from section 5 of docs/ALGORITHM.md). */
static long long saving_of(const PruneGraph *g, int e)
{
    unsigned char *removed = xcalloc((size_t)g->n_entries, 1);
    removed[e] = 1;
    KeepMask m;
    prune_mask_from_removed(g, removed, &m);
    long long s = g->flops0 - m.flops;
    prune_mask_free(&m);
    free(removed);
    return s;
}

/* Entry of filter j of the conv named `name`. */
static int entry_of(const PruneGraph *g, const Arch *a, const char *name, int j)
{
    int n = arch_find(a, name);
    CHECK(n >= 0, "no layer %s", name);
    return g->class_entry[g->slot_class[g->node_slot[n] + j]];
}

static void test_savings(void)
{
    Arch a;
    PruneGraph g;
    Err err;
    build_resnet(&a, 56, 100);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    EXPECT(saving_of(&g, entry_of(&g, &a, "layer1.3.conv1", 5)) == 294912, "stage-1 conv1 saves "
           "%lld", saving_of(&g, entry_of(&g, &a, "layer1.3.conv1", 5)));
    EXPECT(saving_of(&g, entry_of(&g, &a, "layer2.4.conv1", 20)) == 147456, "stage-2 conv1");
    EXPECT(saving_of(&g, entry_of(&g, &a, "layer3.8.conv1", 63)) == 73728, "stage-3 conv1");
    long long s = saving_of(&g, entry_of(&g, &a, "conv1", 3));
    EXPECT(s == 4672612, "stream channel j<16 saves %lld, expected 4,672,612", s);
    EXPECT(entry_of(&g, &a, "layer3.2.conv2", 3) == entry_of(&g, &a, "conv1", 3),
           "stream channel 3 is one entry");
    prune_graph_free(&g);
    arch_free(&a);
}

/* Check a mask against the Arch it produces: incremental counts equal a fresh count of the
 * pruned Arch, every conv keeps its floor, and each shortcut maps kept channels to the kept
 * images of their original targets. */
static void check_mask(const PruneGraph *g, const Arch *a, const KeepMask *m, double safeguard,
                       const char *what)
{
    Arch p;
    Err err;
    if (prune_arch_apply(a, m, &p, &err) != 0) {
        EXPECT(0, "%s: arch apply: %s", what, err.msg);
        return;
    }
    EXPECT(arch_flops(&p) == m->flops, "%s: incremental MACs %lld, pruned Arch %lld", what,
           m->flops, arch_flops(&p));
    EXPECT(arch_params(&p) == m->params, "%s: incremental params %lld, pruned Arch %lld", what,
           m->params, arch_params(&p));
    for (int l = 0; l < g->n_convs; l++) {
        int c = prune_mask_conv_c(m, g, l);
        EXPECT(c >= prune_min_keep(g->conv_c[l], safeguard), "%s: conv %d keeps %d of %d", what,
               l, c, g->conv_c[l]);
    }
    for (int n = 0; n < a->n_nodes; n++) {
        if (a->nodes[n].kind != OP_SHORTCUT) continue;
        int ki, ko;
        const int *kin = prune_mask_kept(m, a->nodes[n].in[0], &ki);
        const int *kout = prune_mask_kept(m, n, &ko);
        EXPECT(p.nodes[n].map_len == ki, "%s: shortcut map length", what);
        for (int i = 0; i < ki && i < p.nodes[n].map_len; i++)
            EXPECT(kout[p.nodes[n].chan_map[i]] == a->nodes[n].chan_map[kin[i]],
                   "%s: shortcut %s misaligns channel %d", what, a->nodes[n].name, kin[i]);
    }
    arch_free(&p);
}

/* Random subsets of entries, always keeping the first entry of every group. */
static void test_incremental(void)
{
    Arch a;
    PruneGraph g;
    Err err;
    Rng r;
    build_resnet(&a, 56, 10);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    rng_init(&r, 7, rng_stream_id(RNG_PURPOSE_TEST, 2));
    unsigned char *removed = xcalloc((size_t)g.n_entries, 1);
    for (int trial = 0; trial < 20; trial++) {
        double p = (trial + 1) / 21.0;
        for (int e = 0; e < g.n_entries; e++)
            removed[e] = g.entry_ord[e] > 0 && rng_uniform(&r) < p;
        KeepMask m;
        prune_mask_from_removed(&g, removed, &m);
        check_mask(&g, &a, &m, 0, "random subset");
        prune_mask_free(&m);
    }
    free(removed);
    prune_graph_free(&g);
    arch_free(&a);
}

/* The greedy walk recomputed naively: remove entries in order (same quota rule), counting the
 * pruned Arch from scratch each time. */
static long long naive_greedy(const PruneGraph *g, const Arch *a, const int *order, double target,
                              double sg, unsigned char *removed)
{
    int *quota = xmalloc((size_t)g->n_convs * sizeof(int));
    for (int l = 0; l < g->n_convs; l++) quota[l] = g->conv_c[l] - prune_min_keep(g->conv_c[l], sg);
    memset(removed, 0, (size_t)g->n_entries);
    long long flops = -1;
    for (int i = 0; i < g->n_entries; i++) {
        int e = order[i], ok = 1;
        for (int k = g->entry_mem_off[e]; k < g->entry_mem_off[e + 1]; k++)
            if (quota[g->filter_conv[g->entry_mem[k]]] <= 0) ok = 0;
        if (!ok) continue;
        for (int k = g->entry_mem_off[e]; k < g->entry_mem_off[e + 1]; k++)
            quota[g->filter_conv[g->entry_mem[k]]]--;
        removed[e] = 1;
        KeepMask m;
        Arch p;
        Err err;
        prune_mask_from_removed(g, removed, &m);
        CHECK(prune_arch_apply(a, &m, &p, &err) == 0, "naive: %s", err.msg);
        flops = arch_flops(&p);
        arch_free(&p);
        prune_mask_free(&m);
        if ((double)flops < target * (double)g->flops0) break;
    }
    free(quota);
    return flops;
}

static void test_greedy_matches_naive(void)
{
    Arch a;
    PruneGraph g;
    Err err;
    build_resnet(&a, 20, 10);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    double *norm = random_norms(&g, 3);
    double alpha[64], kappa[64];
    Rng r;
    rng_init(&r, 11, rng_stream_id(RNG_PURPOSE_TEST, 3));
    for (int l = 0; l < g.n_convs; l++) {
        alpha[l] = exp(rng_normal(&r));
        kappa[l] = 0.3 * rng_normal(&r);
    }
    int *order = xmalloc((size_t)g.n_entries * sizeof(int));
    EXPECT(prune_rank(&g, norm, alpha, kappa, g.n_convs, order, &err) == 0, "rank: %s", err.msg);
    unsigned char *removed = xmalloc((size_t)g.n_entries);
    const double targets[] = {0.2, 0.5, 0.8};
    for (int t = 0; t < 3; t++) {
        KeepMask m;
        long long naive = naive_greedy(&g, &a, order, targets[t], 0.1, removed);
        EXPECT(prune_greedy(&g, order, targets[t], 0.1, &m, &err) == 0, "greedy: %s", err.msg);
        EXPECT(m.flops == naive, "target %g: incremental %lld, naive %lld", targets[t], m.flops,
               naive);
        EXPECT(memcmp(m.entry_removed, removed, (size_t)g.n_entries) == 0,
               "target %g: incremental and naive remove different entries", targets[t]);
        prune_mask_free(&m);
    }
    free(removed);
    free(order);
    free(norm);
    prune_graph_free(&g);
    arch_free(&a);
}

/* Ranking order: ascending sums, ties by group then position. */
static void test_rank_order(void)
{
    Arch a;
    PruneGraph g;
    Err err;
    build_resnet(&a, 20, 10);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    double *norm = random_norms(&g, 5);
    double alpha[64], kappa[64];
    for (int l = 0; l < g.n_convs; l++) {
        alpha[l] = 0.5 + 0.1 * l;
        kappa[l] = l % 3 - 1.0;
    }
    int *order = xmalloc((size_t)g.n_entries * sizeof(int));
    EXPECT(prune_rank(&g, norm, alpha, kappa, g.n_convs, order, &err) == 0, "rank: %s", err.msg);
    double prev = -INFINITY;
    for (int i = 0; i < g.n_entries; i++) {
        int e = order[i];
        double s = 0;
        for (int k = g.entry_mem_off[e]; k < g.entry_mem_off[e + 1]; k++) {
            int f = g.entry_mem[k], l = g.filter_conv[f];
            s += alpha[l] * norm[f] + kappa[l];
        }
        EXPECT(s >= prev - 1e-12, "order not ascending at %d", i);
        prev = s;
    }
    /* All-equal scores: the order is the (group, position) order. */
    for (int l = 0; l < g.n_convs; l++) {
        alpha[l] = 0;
        kappa[l] = 0;
    }
    EXPECT(prune_rank(&g, norm, alpha, kappa, g.n_convs, order, &err) == 0, "rank: %s", err.msg);
    int sorted = 1;
    for (int i = 0; i < g.n_entries; i++) sorted &= order[i] == i;
    EXPECT(sorted, "ties are not broken by group then position");
    free(order);
    free(norm);
    prune_graph_free(&g);
    arch_free(&a);
}

/* 50 random (alpha, kappa) draws at targets 5%..95%: target met, floors kept, counts exact. */
static void test_random_draws(void)
{
    Arch a;
    PruneGraph g;
    Err err;
    build_resnet(&a, 56, 10);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    double *norm = random_norms(&g, 9), *std = xmalloc((size_t)g.n_convs * sizeof(double));
    prune_norm_std(&g, norm, std);
    double *alpha = xmalloc((size_t)g.n_convs * sizeof(double));
    double *kappa = xmalloc((size_t)g.n_convs * sizeof(double));
    Rng r;
    rng_init(&r, 13, rng_stream_id(RNG_PURPOSE_TEST, 4));
    int failures = 0;
    for (int d = 0; d < 50; d++) {
        for (int l = 0; l < g.n_convs; l++) {
            alpha[l] = exp(rng_normal(&r));
            kappa[l] = std[l] * rng_normal(&r);
        }
        for (int t = 5; t <= 95; t += 10) {
            double target = t / 100.0;
            KeepMask m;
            if (prune_legr(&g, norm, alpha, kappa, g.n_convs, target, 0.1, &m, &err) != 0) {
                EXPECT(0, "draw %d target %g: %s", d, target, err.msg);
                continue;
            }
            failures += !((double)m.flops < target * (double)g.flops0);
            if (d % 10 == 0) check_mask(&g, &a, &m, 0.1, "legr draw");
            else {
                for (int l = 0; l < g.n_convs; l++)
                    failures += prune_mask_conv_c(&m, &g, l) < prune_min_keep(g.conv_c[l], 0.1);
            }
            prune_mask_free(&m);
        }
    }
    EXPECT(failures == 0, "%d target or floor violations over 50 draws", failures);
    free(alpha);
    free(kappa);
    free(std);
    free(norm);
    prune_graph_free(&g);
    arch_free(&a);
}

static void test_floors(void)
{
    EXPECT(prune_min_keep(16, 0.1) == 2 && prune_min_keep(32, 0.1) == 4 &&
           prune_min_keep(64, 0.1) == 7, "ResNet-56 floors (2, 4, 7)");
    EXPECT(prune_min_keep(10, 0.1) == 2 && prune_min_keep(30, 0.1) == 3, "ceil floors");
    EXPECT(prune_min_keep(16, 0) == 1 && prune_min_keep(1, 0.1) == 1, "minimal floors");
    /* Extreme pruning: every conv ends exactly at its floor, the stream group too (the reference
     * code would misalign it here). */
    Arch a;
    PruneGraph g;
    Err err;
    build_resnet(&a, 56, 10);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    double *norm = random_norms(&g, 21);
    KeepMask m;
    EXPECT(prune_identity(&g, norm, 0.05, 0.1, &m, &err) == 0, "identity 5%%: %s", err.msg);
    check_mask(&g, &a, &m, 0.1, "identity 5%");
    prune_mask_free(&m);
    const double tiny = 0.004;
    EXPECT(prune_identity(&g, norm, tiny, 0.1, &m, &err) == -1 && err.code == LEGR_EXIT_USAGE &&
           strstr(err.msg, "unreachable"), "unreachable target: %s", err.msg);
    free(norm);
    prune_graph_free(&g);
    arch_free(&a);
}

static void test_baselines(void)
{
    Arch a;
    PruneGraph g;
    Err err;
    build_resnet(&a, 56, 10);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    double *norm = random_norms(&g, 31);
    const double targets[] = {0.2, 0.5, 0.8};
    for (int t = 0; t < 3; t++) {
        KeepMask u, r1, r2, r3;
        EXPECT(prune_uniform(&g, norm, targets[t], 0.1, &u, &err) == 0, "uniform: %s", err.msg);
        EXPECT((double)u.flops < targets[t] * (double)g.flops0, "uniform misses %g", targets[t]);
        check_mask(&g, &a, &u, 0.1, "uniform");
        /* Same fraction everywhere: the block conv1s of a stage keep the same count. */
        for (int l = 3; l < g.n_convs; l += 2) {
            int c = g.conv_c[l];
            if (c == g.conv_c[l - 2])
                EXPECT(prune_mask_conv_c(&u, &g, l) == prune_mask_conv_c(&u, &g, l - 2),
                       "uniform: conv %d keeps %d, conv %d keeps %d", l,
                       prune_mask_conv_c(&u, &g, l), l - 2, prune_mask_conv_c(&u, &g, l - 2));
        }
        EXPECT(prune_random(&g, 5, 0, targets[t], 0.1, &r1, &err) == 0, "random: %s", err.msg);
        EXPECT(prune_random(&g, 5, 0, targets[t], 0.1, &r2, &err) == 0, "random: %s", err.msg);
        EXPECT(prune_random(&g, 5, 1, targets[t], 0.1, &r3, &err) == 0, "random: %s", err.msg);
        EXPECT((double)r1.flops < targets[t] * (double)g.flops0, "random misses %g", targets[t]);
        EXPECT(memcmp(r1.entry_removed, r2.entry_removed, (size_t)g.n_entries) == 0,
               "random baseline not reproducible");
        EXPECT(memcmp(r1.entry_removed, r3.entry_removed, (size_t)g.n_entries) != 0,
               "random baseline ignores its index");
        check_mask(&g, &a, &r1, 0.1, "random");
        prune_mask_free(&u);
        prune_mask_free(&r1);
        prune_mask_free(&r2);
        prune_mask_free(&r3);
    }
    /* The identity ranking sums stream scores, so conv1 filters go first (docs/ALGORITHM.md section 4). */
    KeepMask m;
    EXPECT(prune_identity(&g, norm, 0.5, 0.1, &m, &err) == 0, "identity: %s", err.msg);
    EXPECT(prune_mask_conv_c(&m, &g, 0) == 16, "identity at 50%% pruned the stream (%d left)",
           prune_mask_conv_c(&m, &g, 0));
    prune_mask_free(&m);
    const double tg[] = {0.7, 0.47, 0.2};
    EXPECT(prune_print_targets(stdout, &g, &a, norm, tg, 3, 0.1, &err) == 0, "print: %s",
           err.msg);
    free(norm);
    prune_graph_free(&g);
    arch_free(&a);
}

static void test_errors(void)
{
    Arch a;
    PruneGraph g;
    Err err;
    build_resnet(&a, 20, 10);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    double *norm = random_norms(&g, 1);
    double alpha[64], kappa[64];
    for (int l = 0; l < 64; l++) {
        alpha[l] = 1;
        kappa[l] = 0;
    }
    const double bad[] = {0, 1, -0.5, 1.5, NAN};
    for (int i = 0; i < 5; i++) {
        KeepMask m;
        memset(&err, 0, sizeof err);
        EXPECT(prune_legr(&g, norm, alpha, kappa, g.n_convs, bad[i], 0.1, &m, &err) == -1 &&
               err.code == LEGR_EXIT_USAGE && strstr(err.msg, "outside (0, 1)"),
               "target %g accepted: %s", bad[i], err.msg);
        EXPECT(prune_uniform(&g, norm, bad[i], 0.1, &m, &err) == -1 && err.code == LEGR_EXIT_USAGE,
               "uniform target %g accepted", bad[i]);
    }
    KeepMask m;
    EXPECT(prune_legr(&g, norm, alpha, kappa, g.n_convs - 1, 0.5, 0.1, &m, &err) == -1 &&
           err.code == LEGR_EXIT_USAGE && strstr(err.msg, "19 convs"),
           "short alpha accepted: %s", err.msg);
    EXPECT(prune_legr(&g, norm, alpha, kappa, g.n_convs, 0.5, 1.0, &m, &err) == -1 &&
           strstr(err.msg, "safeguard"), "safeguard 1 accepted: %s", err.msg);
    free(norm);
    prune_graph_free(&g);
    arch_free(&a);
}

/* A small DAG with a depthwise conv, a grouped conv and a widening shortcut. */
static void test_generic_dag(void)
{
    Arch a;
    Err err;
    arch_init(&a);
    int x = arch_add_input(&a, "input", 3, 8, 8, &err);
    int c1 = arch_add_conv(&a, "c1", x, 8, 3, 1, 1, 1, &err);
    int b1 = arch_add_bn(&a, "b1", c1, &err);
    int r1 = arch_add_relu(&a, "r1", b1, &err);
    int dw = arch_add_conv(&a, "dw", r1, 8, 3, 1, 1, 8, &err);
    int b2 = arch_add_bn(&a, "b2", dw, &err);
    int pw = arch_add_conv(&a, "pw", b2, 12, 1, 1, 0, 1, &err);
    int b3 = arch_add_bn(&a, "b3", pw, &err);
    int sc = arch_add_shortcut(&a, "sc", r1, 12, 1, &err);
    int ad = arch_add_add(&a, "add", b3, sc, &err);
    int gc = arch_add_conv(&a, "gc", ad, 6, 3, 2, 1, 2, &err);
    int gp = arch_add_gap(&a, "gap", gc, &err);
    int fc = arch_add_fc(&a, "fc", gp, 5, &err);
    EXPECT(fc >= 0, "build: %s", err.msg);
    PruneGraph g;
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    /* c1, dw, pw tied (dw to c1, pw to c1 through the add); gc fixed: the add's channels feed a
     * grouped conv, so nothing in that class can go. Entries: none. Without the grouped conv the
     * DAG would have 12 entries. */
    EXPECT(g.n_convs == 4 && g.n_groups == 2, "convs %d groups %d", g.n_convs, g.n_groups);
    EXPECT(g.conv_group[0] == g.conv_group[1] && g.conv_group[1] == g.conv_group[2],
           "c1, dw, pw not tied");
    EXPECT(g.n_entries == 0, "grouped conv input pruned: %d entries", g.n_entries);
    prune_graph_free(&g);
    arch_free(&a);

    /* Same DAG with an ordinary conv at the end: 12 entries, the first 8 tie c1, dw and pw. */
    arch_init(&a);
    x = arch_add_input(&a, "input", 3, 8, 8, &err);
    c1 = arch_add_conv(&a, "c1", x, 8, 3, 1, 1, 1, &err);
    r1 = arch_add_relu(&a, "r1", arch_add_bn(&a, "b1", c1, &err), &err);
    dw = arch_add_conv(&a, "dw", r1, 8, 3, 1, 1, 8, &err);
    b2 = arch_add_bn(&a, "b2", dw, &err);
    pw = arch_add_conv(&a, "pw", b2, 12, 1, 1, 0, 1, &err);
    b3 = arch_add_bn(&a, "b3", pw, &err);
    sc = arch_add_shortcut(&a, "sc", r1, 12, 1, &err);
    ad = arch_add_add(&a, "add", b3, sc, &err);
    gc = arch_add_conv(&a, "c4", ad, 6, 3, 2, 1, 1, &err);
    gp = arch_add_gap(&a, "gap", arch_add_bn(&a, "b4", gc, &err), &err);
    fc = arch_add_fc(&a, "fc", gp, 5, &err);
    EXPECT(fc >= 0, "build: %s", err.msg);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    EXPECT(g.n_entries == 12 + 6, "entries %d", g.n_entries);
    int e0 = g.class_entry[g.slot_class[g.node_slot[dw] + 2]];
    EXPECT(e0 >= 0 && g.entry_mem_off[e0 + 1] - g.entry_mem_off[e0] == 3,
           "dw channel 2 ties c1, dw, pw");
    Rng r;
    rng_init(&r, 3, rng_stream_id(RNG_PURPOSE_TEST, 5));
    unsigned char *removed = xcalloc((size_t)g.n_entries, 1);
    for (int trial = 0; trial < 10; trial++) {
        for (int e = 0; e < g.n_entries; e++) removed[e] = g.entry_ord[e] > 0 && rng_below(&r, 2);
        KeepMask m;
        prune_mask_from_removed(&g, removed, &m);
        check_mask(&g, &a, &m, 0, "generic DAG");
        prune_mask_free(&m);
    }
    free(removed);
    prune_graph_free(&g);
    arch_free(&a);
}

static void test_speed(void)
{
    Arch a;
    PruneGraph g;
    Err err;
    build_resnet(&a, 56, 10);
    double t0 = time_now();
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    double t1 = time_now();
    double *norm = random_norms(&g, 2);
    double *alpha = xmalloc((size_t)g.n_convs * sizeof(double));
    double *kappa = xcalloc((size_t)g.n_convs, sizeof(double));
    for (int l = 0; l < g.n_convs; l++) alpha[l] = 1 + 0.01 * l;
    const int reps = 20;
    double t2 = time_now();
    for (int i = 0; i < reps; i++) {
        KeepMask m;
        EXPECT(prune_legr(&g, norm, alpha, kappa, g.n_convs, 0.2, 0.1, &m, &err) == 0, "legr");
        prune_mask_free(&m);
    }
    double t3 = time_now();
    printf("ResNet-56: prune graph %.3f ms (once), rank + greedy to 20%% FLOPs %.3f ms\n",
           1e3 * (t1 - t0), 1e3 * (t3 - t2) / reps);
    free(alpha);
    free(kappa);
    free(norm);
    prune_graph_free(&g);
    arch_free(&a);
}

int main(void)
{
    test_counts();
    test_groups();
    test_savings();
    test_incremental();
    test_greedy_matches_naive();
    test_rank_order();
    test_random_draws();
    test_floors();
    test_baselines();
    test_errors();
    test_generic_dag();
    test_speed();
    return harness_finish("test_prune_graph");
}
