/* Prune groups of the ImageNet ResNets and MobileNetV2 against LeGR's hand-written chains, exact
 * FLOP accounting, and surgery equivalence. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "legr/prune.h"
#include "legr/rng.h"

/* ---- the expected groups, written from the rules of the official LeGR code ----
 *
 * LeGR does not trace graphs: its pruners list, per network, which convs must lose the same
 * channels (the "chains"). The rules below are those lists restated per block from the
 * networks' layouts, with no reference to the DAG, so they check prune_graph_build's tracing.
 * Each conv, by name, gets a group number; two convs share a group iff the rules tie them. */
#define MAX_RULE_CONVS 256

typedef struct {
    int n, n_groups;
    char name[MAX_RULE_CONVS][ARCH_NAME_MAX];
    int group[MAX_RULE_CONVS];
} Rules;

static int new_group(Rules *r) { return r->n_groups++; }

/* Conv `fmt...` belongs to group q. */
static void rule(Rules *r, int q, const char *fmt, ...)
{
    CHECK(r->n < MAX_RULE_CONVS, "too many convs in the rules");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->name[r->n], ARCH_NAME_MAX, fmt, ap);
    va_end(ap);
    r->group[r->n++] = q;
}

/* torchvision ResNet. Bottleneck (LeGR's ResNet-50 chains): per stage, every block's conv3 and
 * the stage's downsample conv are one group, since their outputs meet at the adds; conv1 and
 * conv2 of every block stand alone; so does the stem, whose consumers (layer1.0.conv1 and
 * layer1.0.downsample.0) read its channels without tying them. BasicBlock (ResNet-18/34, not in
 * LeGR; the same rule one conv earlier): each block's conv2 joins the stage's group, and stage 1,
 * with identity shortcuts only, adds its conv2s to the stem's channels. */
static void resnet_rules(Rules *r, int bottleneck, const int blocks[4])
{
    memset(r, 0, sizeof *r);
    int stem = new_group(r);
    rule(r, stem, "conv1");
    for (int s = 1; s <= 4; s++) {
        int projected = bottleneck || s > 1;
        int stage = projected ? new_group(r) : stem;
        for (int b = 0; b < blocks[s - 1]; b++) {
            rule(r, new_group(r), "layer%d.%d.conv1", s, b);
            if (bottleneck) {
                rule(r, new_group(r), "layer%d.%d.conv2", s, b);
                rule(r, stage, "layer%d.%d.conv3", s, b);
            } else {
                rule(r, stage, "layer%d.%d.conv2", s, b);
            }
            if (b == 0 && projected) rule(r, stage, "layer%d.0.downsample.0", s);
        }
    }
}

/* MobileNetV2 (LeGR's chains, valid for widths where only stride-1 blocks after a stage's
 * first block have residuals, e.g. 0.5 and 1): a depthwise conv is tied to its producer, the
 * block's expansion 1x1, or the stem for the t = 1 block; per stage, the projections of the
 * residual blocks (all but the first) are tied to the projection of the first block, whose
 * output they are added to; everything else (the last 1x1 conv, projections of one-block
 * stages) stands alone. */
static void mobilenet_rules(Rules *r)
{
    static const int t[7] = {1, 6, 6, 6, 6, 6, 6}, n[7] = {1, 2, 3, 4, 3, 3, 1};
    memset(r, 0, sizeof *r);
    int stem = new_group(r);
    rule(r, stem, "features.0.0");
    for (int s = 0, f = 1; s < 7; s++) {
        int stage = new_group(r);
        for (int b = 0; b < n[s]; b++, f++) {
            if (t[s] == 1) {
                rule(r, stem, "features.%d.conv.0.0", f);
                rule(r, stage, "features.%d.conv.1", f);
            } else {
                int q = new_group(r);
                rule(r, q, "features.%d.conv.0.0", f);
                rule(r, q, "features.%d.conv.1.0", f);
                rule(r, stage, "features.%d.conv.2", f);
            }
        }
    }
    rule(r, new_group(r), "features.18.0");
}

/* The traced groups equal the rules' as a partition of the convs (by name); the entry count is
 * the sum of the rule groups' widths, and every entry holds one filter of every member. */
static void compare_groups(const Arch *a, const PruneGraph *g, const Rules *r, const char *what)
{
    EXPECT(g->n_convs == r->n, "%s: %d convs, the rules name %d", what, g->n_convs, r->n);
    int *rule_of = xmalloc((size_t)g->n_convs * sizeof(int));
    for (int l = 0; l < g->n_convs; l++) {
        rule_of[l] = -1;
        for (int i = 0; i < r->n; i++)
            if (strcmp(a->nodes[g->conv_node[l]].name, r->name[i]) == 0) rule_of[l] = i;
        EXPECT(rule_of[l] >= 0, "%s: conv %s is not in the rules", what,
               a->nodes[g->conv_node[l]].name);
    }
    int bad = 0;
    for (int l = 0; l < g->n_convs; l++)
        for (int m = l + 1; m < g->n_convs; m++) {
            if (rule_of[l] < 0 || rule_of[m] < 0) continue;
            int traced = g->conv_group[l] == g->conv_group[m];
            int want = r->group[rule_of[l]] == r->group[rule_of[m]];
            if (traced != want && bad++ < 10)
                EXPECT(0, "%s: %s and %s are %s by the graph, %s by the rules", what,
                       a->nodes[g->conv_node[l]].name, a->nodes[g->conv_node[m]].name,
                       traced ? "tied" : "apart", want ? "tied" : "apart");
        }
    EXPECT(bad == 0, "%s: %d pairs of convs grouped differently", what, bad);
    EXPECT(g->n_groups == r->n_groups, "%s: %d groups, the rules have %d", what, g->n_groups,
           r->n_groups);

    /* Width of each rule group (its members' channels, all equal in these networks). */
    int *width = xcalloc((size_t)r->n_groups, sizeof(int));
    int *size = xcalloc((size_t)r->n_groups, sizeof(int));
    for (int i = 0; i < r->n; i++) {
        int k = arch_find(a, r->name[i]);
        CHECK(k >= 0, "%s: the rules name %s, which the network lacks", what, r->name[i]);
        int q = r->group[i];
        EXPECT(width[q] == 0 || width[q] == a->nodes[k].c, "%s: group of %s mixes widths", what,
               r->name[i]);
        width[q] = a->nodes[k].c;
        size[q]++;
    }
    int entries = 0;
    for (int q = 0; q < r->n_groups; q++) entries += width[q];
    EXPECT(g->n_entries == entries, "%s: %d ranking entries, the rules give %d", what,
           g->n_entries, entries);
    int odd = 0;
    for (int e = 0; e < g->n_entries; e++) {
        int l = g->group_conv[g->group_off[g->entry_group[e]]];
        int members = g->entry_mem_off[e + 1] - g->entry_mem_off[e];
        odd += rule_of[l] < 0 || members != size[r->group[rule_of[l]]];
    }
    EXPECT(odd == 0, "%s: %d entries do not hold one filter of every group member", what, odd);
    printf("%s: %d convs in %d groups, %d ranking entries, as LeGR's chains\n", what, g->n_convs,
           g->n_groups, g->n_entries);
    free(size);
    free(width);
    free(rule_of);
}

static void test_groups(void)
{
    static const int r50[4] = {3, 4, 6, 3}, r101[4] = {3, 4, 23, 3}, r18[4] = {2, 2, 2, 2};
    static const struct {
        const char *what;
        int resnet, depth, cifar, h;
        double width;
        const int *blocks;
        int print; /* show prune_print_groups (what --dry-run prints) */
    } cases[] = {
        {"resnet50", 1, 50, 0, 224, 1.0, r50, 1},
        {"resnet101", 1, 101, 0, 224, 1.0, r101, 0},
        {"resnet18", 1, 18, 0, 224, 1.0, r18, 0},
        {"mobilenetv2_cifar", 0, 0, 1, 32, 1.0, NULL, 1},
        {"mobilenetv2_cifar w0.5", 0, 0, 1, 32, 0.5, NULL, 0},
        {"mobilenetv2", 0, 0, 0, 224, 1.0, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Arch a;
        PruneGraph g;
        Rules r;
        Err err;
        int rc = cases[i].resnet
                     ? arch_resnet_imagenet(&a, cases[i].depth, 3, cases[i].h, cases[i].h, 1000,
                                            cases[i].width, &err)
                     : arch_mobilenetv2(&a, cases[i].cifar, 3, cases[i].h, cases[i].h, 100,
                                        cases[i].width, &err);
        CHECK(rc == 0, "%s: %s", cases[i].what, err.msg);
        CHECK(prune_graph_build(&g, &a, &err) == 0, "%s graph: %s", cases[i].what, err.msg);
        if (cases[i].resnet) resnet_rules(&r, cases[i].depth >= 50, cases[i].blocks);
        else mobilenet_rules(&r);
        compare_groups(&a, &g, &r, cases[i].what);
        if (cases[i].print) {
            printf("%s prune groups:\n", cases[i].what);
            prune_print_groups(stdout, &g, &a);
        }
        prune_graph_free(&g);
        arch_free(&a);
    }
}

/* Random removals: the mask's incremental counts equal the counts of the pruned Arch, and every
 * pruned depthwise conv stays depthwise (groups = its channels = its input's), so it costs
 * H*W*9*C, not H*W*9*C^2. */
static void check_accounting(const Arch *a, uint64_t seed, const char *what)
{
    PruneGraph g;
    Err err;
    CHECK(prune_graph_build(&g, a, &err) == 0, "%s graph: %s", what, err.msg);
    EXPECT(g.flops0 == arch_flops(a) && g.params0 == arch_params(a), "%s: graph totals", what);
    Rng r;
    rng_init(&r, seed, rng_stream_id(RNG_PURPOSE_TEST, 40));
    unsigned char *removed = xcalloc((size_t)g.n_entries, 1);
    int bad = 0, depthwise = 0;
    long long lowest = g.flops0;
    for (int trial = 0; trial < 12; trial++) {
        /* Position 0 of every group stays, so no conv loses all its filters. */
        double p = trial == 11 ? 1.0 : (trial + 1) / 12.0;
        for (int e = 0; e < g.n_entries; e++)
            removed[e] = g.entry_ord[e] > 0 && rng_uniform(&r) < p;
        KeepMask m;
        Arch pa;
        prune_mask_from_removed(&g, removed, &m);
        if (prune_arch_apply(a, &m, &pa, &err) != 0) {
            EXPECT(0, "%s trial %d: %s", what, trial, err.msg);
            prune_mask_free(&m);
            continue;
        }
        bad += m.flops != arch_flops(&pa) || m.params != arch_params(&pa);
        if (m.flops != arch_flops(&pa) || m.params != arch_params(&pa))
            printf("%s trial %d: mask %lld MACs %lld params, pruned Arch %lld, %lld\n", what,
                   trial, m.flops, m.params, arch_flops(&pa), arch_params(&pa));
        for (int n = 0; n < a->n_nodes; n++) {
            const Node *s = &a->nodes[n], *d = &pa.nodes[n];
            if (s->kind != OP_CONV || s->groups == 1) continue;
            depthwise++;
            bad += !(d->groups == d->c && d->c == pa.nodes[d->in[0]].c);
        }
        if (m.flops < lowest) lowest = m.flops;
        arch_free(&pa);
        prune_mask_free(&m);
    }
    EXPECT(bad == 0, "%s: %d mismatches between the mask's counts and the pruned Arch", what, bad);
    printf("%s: 12 random removals down to %.2f%% of %lld MACs, incremental counts exact",
           what, 100.0 * (double)lowest / (double)g.flops0, g.flops0);
    if (depthwise) printf(", its %d depthwise convs stay depthwise", depthwise / 12);
    putchar('\n');
    free(removed);
    prune_graph_free(&g);
}

static void test_accounting(void)
{
    Arch a;
    Err err;
    CHECK(arch_resnet_imagenet(&a, 50, 3, 224, 224, 1000, 1.0, &err) == 0, "%s", err.msg);
    check_accounting(&a, 1, "resnet50");
    arch_free(&a);
    CHECK(arch_resnet_imagenet(&a, 18, 3, 224, 224, 200, 1.0, &err) == 0, "%s", err.msg);
    check_accounting(&a, 2, "resnet18");
    arch_free(&a);
    CHECK(arch_mobilenetv2(&a, 1, 3, 32, 32, 100, 1.0, &err) == 0, "%s", err.msg);
    check_accounting(&a, 3, "mobilenetv2_cifar");
    arch_free(&a);
    CHECK(arch_mobilenetv2(&a, 0, 3, 224, 224, 1000, 1.0, &err) == 0, "%s", err.msg);
    check_accounting(&a, 4, "mobilenetv2");
    arch_free(&a);
}

/* ---- surgery equivalence ---- */

/* PyTorch-default weights plus random BN parameters and running statistics, so a channel that
 * lands in the wrong place changes the logits. */
static void init_net(Net *net, uint64_t seed)
{
    net_init_params(net, seed);
    Rng r;
    rng_init(&r, seed, rng_stream_id(RNG_PURPOSE_TEST, 41));
    for (int n = 0; n < net->arch.n_nodes; n++) {
        if (net->arch.nodes[n].kind != OP_BN) continue;
        float *gamma = net->param + net->params[net->node_param[n]].offset;
        float *beta = net->param + net->params[net->node_param[n] + 1].offset;
        float *mean = net->buf + net->bufs[net->node_buf[n]].offset;
        float *var = net->buf + net->bufs[net->node_buf[n] + 1].offset;
        for (int j = 0; j < net->arch.nodes[n].c; j++) {
            gamma[j] = (float)(0.5 + rng_uniform(&r));
            beta[j] = (float)(0.4 * rng_uniform(&r) - 0.2);
            mean[j] = (float)(0.2 * rng_uniform(&r) - 0.1);
            var[j] = (float)(0.5 + rng_uniform(&r));
        }
    }
}

/* The original with gamma = beta = 0 in every BN channel the mask drops. Every pruned channel
 * of these networks passes a BN, so it is 0 after it, and so is everything that reads it: a
 * ReLU/ReLU6 of 0, a max pool over zeros, a depthwise filter over a zero channel (no bias), an
 * add of two zeroed channels; ungrouped consumers get nothing from it. */
static void zeroed_copy(const Net *src, const KeepMask *m, Net *dst)
{
    Err err;
    CHECK(net_build(dst, &src->arch, src->batch, &err) == 0, "build: %s", err.msg);
    memcpy(dst->param, src->param, src->n_param_floats * sizeof(float));
    memcpy(dst->buf, src->buf, src->n_buf_floats * sizeof(float));
    for (int n = 0; n < src->arch.n_nodes; n++) {
        if (src->arch.nodes[n].kind != OP_BN) continue;
        int k;
        const int *kept = prune_mask_kept(m, n, &k);
        float *gamma = dst->param + dst->params[dst->node_param[n]].offset;
        float *beta = dst->param + dst->params[dst->node_param[n] + 1].offset;
        for (int j = 0, p = 0; j < src->arch.nodes[n].c; j++) {
            if (p < k && kept[p] == j) p++;
            else gamma[j] = beta[j] = 0;
        }
    }
}

/* Random removals of up to half of every group's entries (position 0 stays); the pruned net's
 * eval-mode logits equal the zeroed original's, and differ from the unpruned net's. */
static void check_surgery(const Arch *a, int batch, uint64_t seed, const char *what)
{
    Net net;
    PruneGraph g;
    Err err;
    CHECK(net_build(&net, a, batch, &err) == 0, "%s: %s", what, err.msg);
    init_net(&net, seed);
    CHECK(prune_graph_build(&g, a, &err) == 0, "%s graph: %s", what, err.msg);
    Rng r;
    rng_init(&r, seed, rng_stream_id(RNG_PURPOSE_TEST, 42));
    size_t in_count = (size_t)batch * a->nodes[0].c * a->nodes[0].h * a->nodes[0].w;
    float *x = xmalloc(in_count * sizeof(float));
    for (size_t i = 0; i < in_count; i++) x[i] = (float)rng_normal(&r);
    int classes = a->num_classes;
    size_t out_count = (size_t)batch * classes;
    float *orig = xmalloc(out_count * sizeof(float)), *want = xmalloc(out_count * sizeof(float));
    memcpy(orig, net_forward(&net, x, batch, 0), out_count * sizeof(float));
    unsigned char *removed = xcalloc((size_t)g.n_entries, 1);
    for (int trial = 0; trial < 3; trial++) {
        for (int e = 0; e < g.n_entries; e++)
            removed[e] = g.entry_ord[e] > 0 && rng_uniform(&r) < 0.5;
        KeepMask m;
        Net pruned, zeroed;
        prune_mask_from_removed(&g, removed, &m);
        if (prune_apply(&net, &m, &pruned, &err) != 0) {
            EXPECT(0, "%s: prune_apply: %s", what, err.msg);
            prune_mask_free(&m);
            continue;
        }
        EXPECT(arch_flops(&pruned.arch) == m.flops && arch_params(&pruned.arch) == m.params,
               "%s: pruned net counts %lld/%lld, mask %lld/%lld", what,
               arch_flops(&pruned.arch), arch_params(&pruned.arch), m.flops, m.params);
        zeroed_copy(&net, &m, &zeroed);
        memcpy(want, net_forward(&zeroed, x, batch, 0), out_count * sizeof(float));
        const float *got = net_forward(&pruned, x, batch, 0);
        double scale = 0;
        for (size_t i = 0; i < out_count; i++) scale = fmax(scale, fabs(want[i]));
        double d = harness_max_abs_err(got, want, (long long)out_count);
        double moved = harness_max_abs_err(orig, want, (long long)out_count);
        printf("%s trial %d: %lld MACs (%.1f%%), max |logit diff| %.3g (logits up to %.3g, "
               "pruning moved them by %.3g)\n", what, trial, m.flops,
               100.0 * (double)m.flops / (double)g.flops0, d, scale, moved);
        EXPECT(d <= 1e-5 * fmax(1.0, scale), "%s: pruned logits differ by %g", what, d);
        EXPECT(moved > 1e3 * d && moved > 1e-4, "%s: pruning moved the logits only by %g", what,
               moved);
        net_free(&zeroed);
        net_free(&pruned);
        prune_mask_free(&m);
    }
    free(removed);
    free(want);
    free(orig);
    free(x);
    prune_graph_free(&g);
    net_free(&net);
}

static void test_surgery(void)
{
    Arch a;
    Err err;
    CHECK(arch_resnet_imagenet(&a, 50, 3, 64, 64, 10, 0.25, &err) == 0, "%s", err.msg);
    check_surgery(&a, 2, 7, "resnet50 w0.25 3x64x64");
    arch_free(&a);
    CHECK(arch_mobilenetv2(&a, 1, 3, 32, 32, 10, 0.5, &err) == 0, "%s", err.msg);
    check_surgery(&a, 2, 8, "mobilenetv2_cifar w0.5 3x32x32");
    arch_free(&a);
}

int main(void)
{
    test_groups();
    test_accounting();
    test_surgery();
    return harness_finish("test_prune_zoo");
}
