/* Surgery and metrics on real Nets: identity surgery is bit-exact, a pruned net computes what
 * the original computes with the pruned channels zeroed, weights land where the mask says. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "legr/prune.h"
#include "legr/rng.h"

/* Default init plus random BN parameters and running statistics, so misplaced channels show. */
static void init_net(Net *net, uint64_t seed)
{
    net_init_params(net, seed);
    Rng r;
    rng_init(&r, seed, rng_stream_id(RNG_PURPOSE_TEST, 20));
    for (int n = 0; n < net->arch.n_nodes; n++) {
        if (net->arch.nodes[n].kind != OP_BN) continue;
        int c = net->arch.nodes[n].c;
        float *gamma = net->param + net->params[net->node_param[n]].offset;
        float *beta = net->param + net->params[net->node_param[n] + 1].offset;
        float *mean = net->buf + net->bufs[net->node_buf[n]].offset;
        float *var = net->buf + net->bufs[net->node_buf[n] + 1].offset;
        for (int j = 0; j < c; j++) {
            gamma[j] = (float)(0.5 + rng_uniform(&r));
            beta[j] = (float)(0.4 * rng_uniform(&r) - 0.2);
            mean[j] = (float)(0.2 * rng_uniform(&r) - 0.1);
            var[j] = (float)(0.5 + rng_uniform(&r));
        }
    }
}

static float *random_input(const Arch *a, int n, uint64_t seed)
{
    size_t count = (size_t)n * a->nodes[0].c * a->nodes[0].h * a->nodes[0].w;
    float *x = xmalloc(count * sizeof(float));
    Rng r;
    rng_init(&r, seed, rng_stream_id(RNG_PURPOSE_TEST, 21));
    for (size_t i = 0; i < count; i++) x[i] = (float)rng_normal(&r);
    return x;
}

/* A copy of src whose BN channels outside the mask have gamma = beta = 0. */
static void zeroed_copy(const Net *src, const KeepMask *m, Net *dst)
{
    Err err;
    CHECK(net_build(dst, &src->arch, src->batch, &err) == 0, "build: %s", err.msg);
    memcpy(dst->param, src->param, src->n_param_floats * sizeof(float));
    memcpy(dst->buf, src->buf, src->n_buf_floats * sizeof(float));
    for (int n = 0; n < src->arch.n_nodes; n++) {
        if (src->arch.nodes[n].kind != OP_BN) continue;
        int k, c = src->arch.nodes[n].c;
        const int *kept = prune_mask_kept(m, n, &k);
        float *gamma = dst->param + dst->params[dst->node_param[n]].offset;
        float *beta = dst->param + dst->params[dst->node_param[n] + 1].offset;
        for (int j = 0, p = 0; j < c; j++) {
            if (p < k && kept[p] == j) {
                p++;
                continue;
            }
            gamma[j] = beta[j] = 0;
        }
    }
}

/* dst's tensors equal src's at the kept indices (conv rows/columns, BN vectors, FC columns). */
static void check_copied(const Net *src, const Net *dst, const KeepMask *m)
{
    int bad = 0;
    for (int n = 0; n < src->arch.n_nodes; n++) {
        const Node *nd = &src->arch.nodes[n];
        if (nd->kind != OP_CONV && nd->kind != OP_FC) continue;
        int ko, ki;
        const int *kout = prune_mask_kept(m, n, &ko);
        const int *kin = prune_mask_kept(m, nd->in[0], &ki);
        const ParamSpec *sw = &src->params[src->node_param[n]];
        const ParamSpec *dw = &dst->params[dst->node_param[n]];
        size_t kk = nd->kind == OP_CONV ? (size_t)nd->k * nd->k : 1;
        int grouped = nd->kind == OP_CONV && nd->groups > 1;
        for (int o = 0; o < dw->shape[0]; o++)
            for (int i = 0; i < dw->shape[1]; i++)
                for (size_t t = 0; t < kk; t++) {
                    int so = kout[o], si = grouped ? i : kin[i];
                    float a = src->param[sw->offset + ((size_t)so * sw->shape[1] + si) * kk + t];
                    float b = dst->param[dw->offset + ((size_t)o * dw->shape[1] + i) * kk + t];
                    bad += a != b;
                }
    }
    EXPECT(bad == 0, "%d weights copied from the wrong place", bad);
}

/* Prune, compare with the zeroed original in eval mode, check the copied weights. */
static void check_equivalence(Net *src, const KeepMask *m, const float *x, int n,
                              const char *what)
{
    Err err;
    Net pruned, zeroed;
    if (prune_apply(src, m, &pruned, &err) != 0) {
        EXPECT(0, "%s: prune_apply: %s", what, err.msg);
        return;
    }
    EXPECT(arch_flops(&pruned.arch) == m->flops && arch_params(&pruned.arch) == m->params,
           "%s: pruned net counts %lld/%lld, mask %lld/%lld", what, arch_flops(&pruned.arch),
           arch_params(&pruned.arch), m->flops, m->params);
    check_copied(src, &pruned, m);
    zeroed_copy(src, m, &zeroed);
    int classes = src->arch.num_classes;
    float *want = xmalloc((size_t)n * classes * sizeof(float));
    memcpy(want, net_forward(&zeroed, x, n, 0), (size_t)n * classes * sizeof(float));
    float *orig = xmalloc((size_t)n * classes * sizeof(float));
    memcpy(orig, net_forward(src, x, n, 0), (size_t)n * classes * sizeof(float));
    const float *got = net_forward(&pruned, x, n, 0);
    double scale = 0;
    for (int i = 0; i < n * classes; i++) scale = fmax(scale, fabs(want[i]));
    double d = harness_max_abs_err(got, want, (long long)n * classes);
    printf("%s: %lld MACs (%.1f%%), max |logit diff| %.3g (logits up to %.3g)\n", what, m->flops,
           100.0 * (double)m->flops / (double)arch_flops(&src->arch), d, scale);
    EXPECT(d <= 1e-5 * fmax(1.0, scale), "%s: pruned logits differ by %g", what, d);
    /* The comparison is only meaningful if pruning changed the function. */
    double moved = harness_max_abs_err(orig, want, (long long)n * classes);
    EXPECT(moved > 1e3 * d && moved > 1e-4, "%s: pruning moved the logits only by %g", what,
           moved);
    free(orig);
    free(want);
    net_free(&zeroed);
    net_free(&pruned);
}

static void test_identity_surgery(void)
{
    Arch a;
    Net net, copy;
    PruneGraph g;
    Err err;
    CHECK(arch_resnet_cifar(&a, 56, 3, 32, 32, 10, 1.0, &err) == 0, "%s", err.msg);
    CHECK(net_build(&net, &a, 2, &err) == 0, "%s", err.msg);
    init_net(&net, 1);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    unsigned char *removed = xcalloc((size_t)g.n_entries, 1);
    KeepMask m;
    prune_mask_from_removed(&g, removed, &m);
    EXPECT(m.flops == g.flops0 && m.params == g.params0, "empty mask counts");
    EXPECT(prune_apply(&net, &m, &copy, &err) == 0, "apply: %s", err.msg);
    EXPECT(net_hash(&copy) == net_hash(&net), "identity surgery changed the net");
    EXPECT(copy.batch == net.batch && copy.n_param_floats == net.n_param_floats, "layout");
    float *x = random_input(&a, 2, 3);
    float *want = xmalloc(20 * sizeof(float));
    memcpy(want, net_forward(&net, x, 2, 0), 20 * sizeof(float));
    const float *got = net_forward(&copy, x, 2, 0);
    EXPECT(memcmp(got, want, 20 * sizeof(float)) == 0, "identity surgery changed the outputs");
    free(want);
    free(x);
    net_free(&copy);
    prune_mask_free(&m);
    free(removed);
    prune_graph_free(&g);
    net_free(&net);
    arch_free(&a);
}

static void test_pruned_equivalence(void)
{
    Arch a;
    Net net;
    PruneGraph g;
    Err err;
    CHECK(arch_resnet_cifar(&a, 20, 3, 32, 32, 10, 1.0, &err) == 0, "%s", err.msg);
    CHECK(net_build(&net, &a, 3, &err) == 0, "%s", err.msg);
    init_net(&net, 5);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    double *norm = xmalloc((size_t)g.n_filters * sizeof(double));
    EXPECT(prune_norms(&g, &net, PRUNE_METRIC_L2_WEIGHT, norm, &err) == 0, "norms: %s", err.msg);
    float *x = random_input(&a, 3, 7);
    const double targets[] = {0.8, 0.4, 0.1};
    for (int t = 0; t < 3; t++) {
        KeepMask m;
        char what[64];
        EXPECT(prune_identity(&g, norm, targets[t], 0.1, &m, &err) == 0, "identity: %s", err.msg);
        snprintf(what, sizeof what, "identity ranking at %g", targets[t]);
        check_equivalence(&net, &m, x, 3, what);
        prune_mask_free(&m);
    }
    /* Random entries including stream channels of every stage (through the shortcuts). */
    Rng r;
    rng_init(&r, 9, rng_stream_id(RNG_PURPOSE_TEST, 22));
    unsigned char *removed = xcalloc((size_t)g.n_entries, 1);
    for (int trial = 0; trial < 3; trial++) {
        for (int e = 0; e < g.n_entries; e++)
            removed[e] = g.entry_ord[e] > 1 && rng_uniform(&r) < 0.5;
        KeepMask m;
        prune_mask_from_removed(&g, removed, &m);
        int stage1 = 0;
        for (int e = 0; e < 16; e++) stage1 += removed[e];
        EXPECT(g.entry_group[0] == 0 && stage1 > 0, "the trial prunes stage-1 stream channels");
        check_equivalence(&net, &m, x, 3, "random entries");
        prune_mask_free(&m);
    }
    free(removed);
    free(x);
    free(norm);
    prune_graph_free(&g);
    net_free(&net);
    arch_free(&a);
}

/* Depthwise conv, shortcut and FC on a small DAG. */
static void test_depthwise_surgery(void)
{
    Arch a;
    Err err;
    arch_init(&a);
    int x = arch_add_input(&a, "input", 2, 6, 6, &err);
    int c1 = arch_add_conv(&a, "c1", x, 8, 3, 1, 1, 1, &err);
    int r1 = arch_add_relu(&a, "r1", arch_add_bn(&a, "b1", c1, &err), &err);
    int dw = arch_add_conv(&a, "dw", r1, 8, 3, 2, 1, 8, &err);
    int b2 = arch_add_bn(&a, "b2", dw, &err);
    int pw = arch_add_conv(&a, "pw", b2, 12, 1, 1, 0, 1, &err);
    int b3 = arch_add_bn(&a, "b3", pw, &err);
    int sc = arch_add_shortcut(&a, "sc", r1, 12, 2, &err);
    int ad = arch_add_relu(&a, "r3", arch_add_add(&a, "add", b3, sc, &err), &err);
    int c4 = arch_add_conv(&a, "c4", ad, 6, 3, 1, 1, 1, &err);
    int fc = arch_add_fc(&a, "fc", arch_add_gap(&a, "gap", arch_add_bn(&a, "b4", c4, &err), &err),
                         4, &err);
    CHECK(fc >= 0, "build: %s", err.msg);
    Net net;
    PruneGraph g;
    CHECK(net_build(&net, &a, 2, &err) == 0, "%s", err.msg);
    init_net(&net, 17);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    float *in = random_input(&a, 2, 19);
    Rng r;
    rng_init(&r, 4, rng_stream_id(RNG_PURPOSE_TEST, 23));
    unsigned char *removed = xcalloc((size_t)g.n_entries, 1);
    for (int trial = 0; trial < 4; trial++) {
        for (int e = 0; e < g.n_entries; e++) removed[e] = g.entry_ord[e] > 0 && rng_below(&r, 2);
        KeepMask m;
        prune_mask_from_removed(&g, removed, &m);
        check_equivalence(&net, &m, in, 2, "depthwise DAG");
        prune_mask_free(&m);
    }
    free(removed);
    free(in);
    prune_graph_free(&g);
    net_free(&net);
    arch_free(&a);
}

static void test_metrics(void)
{
    Arch a;
    Net net;
    PruneGraph g;
    Err err;
    CHECK(arch_resnet_cifar(&a, 20, 3, 32, 32, 10, 1.0, &err) == 0, "%s", err.msg);
    CHECK(net_build(&net, &a, 1, &err) == 0, "%s", err.msg);
    init_net(&net, 23);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    double *norm[PRUNE_METRIC_COUNT];
    for (int k = 0; k < PRUNE_METRIC_COUNT; k++) {
        norm[k] = xmalloc((size_t)g.n_filters * sizeof(double));
        EXPECT(prune_norms(&g, &net, (PruneMetric)k, norm[k], &err) == 0, "%s: %s",
               prune_metric_names[k], err.msg);
    }
    /* By name, as a reader of the state_dict would. */
    const char *convs[] = {"conv1", "layer2.0.conv1", "layer3.2.conv2"};
    const char *bns[] = {"bn1", "layer2.0.bn1", "layer3.2.bn2"};
    for (int i = 0; i < 3; i++) {
        char name[96];
        snprintf(name, sizeof name, "%s.weight", convs[i]);
        const ParamSpec *w = net_find_param(&net, name);
        snprintf(name, sizeof name, "%s.weight", bns[i]);
        const ParamSpec *gm = net_find_param(&net, name);
        CHECK(w && gm, "missing %s", name);
        int l = 0;
        while (g.conv_node[l] != arch_find(&a, convs[i])) l++;
        size_t fan = w->count / (size_t)w->shape[0];
        for (int j = 0; j < w->shape[0]; j += 5) {
            double l2 = 0, l1 = 0, gj = net.param[gm->offset + j];
            for (size_t t = 0; t < fan; t++) {
                double v = net.param[w->offset + j * fan + t];
                l2 += v * v;
                l1 += fabs(v);
            }
            int f = g.conv_off[l] + j;
            EXPECT(fabs(norm[PRUNE_METRIC_L2_WEIGHT][f] - l2) <= 1e-9 * l2, "l2 %s[%d]", convs[i], j);
            EXPECT(fabs(norm[PRUNE_METRIC_L1_WEIGHT][f] - l1) <= 1e-9 * l1, "l1 %s[%d]", convs[i], j);
            EXPECT(norm[PRUNE_METRIC_L2_BN][f] == gj * gj, "l2_bn %s[%d]", convs[i], j);
            EXPECT(norm[PRUNE_METRIC_L2_BN_PARAM][f] == gj * gj * (double)fan, "l2_bn_param %s[%d]",
                   convs[i], j);
        }
    }
    double *std = xmalloc((size_t)g.n_convs * sizeof(double));
    prune_norm_std(&g, norm[PRUNE_METRIC_L2_BN], std);
    EXPECT(std[0] > 0.05 && std[0] < 1, "BN gamma^2 std %g", std[0]);
    free(std);
    for (int k = 0; k < PRUNE_METRIC_COUNT; k++) free(norm[k]);
    prune_graph_free(&g);
    net_free(&net);
    arch_free(&a);
}

/* Ranking + greedy + surgery of ResNet-56; printed, not asserted. */
static void test_speed(void)
{
    Arch a;
    Net net;
    PruneGraph g;
    Err err;
    CHECK(arch_resnet_cifar(&a, 56, 3, 32, 32, 10, 1.0, &err) == 0, "%s", err.msg);
    CHECK(net_build(&net, &a, 1, &err) == 0, "%s", err.msg);
    net_init_params(&net, 3);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    double *norm = xmalloc((size_t)g.n_filters * sizeof(double));
    EXPECT(prune_norms(&g, &net, PRUNE_METRIC_L2_WEIGHT, norm, &err) == 0, "norms: %s", err.msg);
    double *alpha = xmalloc((size_t)g.n_convs * sizeof(double));
    double *kappa = xcalloc((size_t)g.n_convs, sizeof(double));
    for (int l = 0; l < g.n_convs; l++) alpha[l] = 1.0 / (1 + l % 7);
    const int reps = 10;
    double t_rank = 0, t_apply = 0;
    for (int i = 0; i < reps; i++) {
        KeepMask m;
        Net pruned;
        double t0 = time_now();
        EXPECT(prune_legr(&g, norm, alpha, kappa, g.n_convs, 0.2, 0.1, &m, &err) == 0, "legr");
        double t1 = time_now();
        EXPECT(prune_apply(&net, &m, &pruned, &err) == 0, "apply: %s", err.msg);
        t_apply += time_now() - t1;
        t_rank += t1 - t0;
        net_free(&pruned);
        prune_mask_free(&m);
    }
    printf("ResNet-56 to 20%% FLOPs (batch 1): rank + greedy %.3f ms, surgery %.3f ms\n",
           1e3 * t_rank / reps, 1e3 * t_apply / reps);
    free(alpha);
    free(kappa);
    free(norm);
    prune_graph_free(&g);
    net_free(&net);
    arch_free(&a);
}

static void test_bad_mask(void)
{
    Arch a, b;
    Net net, out;
    PruneGraph g;
    Err err;
    CHECK(arch_resnet_cifar(&a, 20, 3, 32, 32, 10, 1.0, &err) == 0, "%s", err.msg);
    CHECK(arch_resnet_cifar(&b, 20, 3, 32, 32, 10, 2.0, &err) == 0, "%s", err.msg);
    CHECK(net_build(&net, &b, 1, &err) == 0, "%s", err.msg);
    EXPECT(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    unsigned char *removed = xcalloc((size_t)g.n_entries, 1);
    KeepMask m;
    prune_mask_from_removed(&g, removed, &m);
    EXPECT(prune_apply(&net, &m, &out, &err) == -1 && err.code == LEGR_EXIT_USAGE &&
           strstr(err.msg, "does not fit"), "mask of another net accepted: %s", err.msg);
    double *norm = xmalloc((size_t)g.n_filters * sizeof(double));
    EXPECT(prune_norms(&g, &net, PRUNE_METRIC_L2_WEIGHT, norm, &err) == -1, "norms of another net");
    free(norm);
    prune_mask_free(&m);
    free(removed);
    prune_graph_free(&g);
    net_free(&net);
    arch_free(&a);
    arch_free(&b);
}

int main(void)
{
    test_identity_surgery();
    test_pruned_equivalence();
    test_depthwise_surgery();
    test_metrics();
    test_speed();
    test_bad_mask();
    return harness_finish("test_prune_apply");
}
