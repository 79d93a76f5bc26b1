/* Arch and net_build bookkeeping: exact counts, names, shape errors, the ParamSpec layout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "legr/arch.h"
#include "legr/net.h"

/* Exact counts of the CIFAR ResNets (docs/ALGORITHM.md section 5; recomputed by hand). */
static void test_counts(void)
{
    static const struct {
        int depth, classes;
        long long flops, params; /* flops < 0: not checked */
    } cases[] = {
        {56, 10, 125485696LL, 853018LL},
        {56, 100, 125491456LL, 858868LL},
        {20, 10, -1, 269722LL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Arch a;
        Err err = {0};
        int rc = arch_resnet_cifar(&a, cases[i].depth, 3, 32, 32, cases[i].classes, 1.0, &err);
        EXPECT(rc == 0, "ResNet-%d: %s", cases[i].depth, err.msg);
        if (rc) continue;
        long long f = arch_flops(&a), p = arch_params(&a);
        printf("ResNet-%d, %d classes: %lld MACs, %lld parameters\n", cases[i].depth,
               cases[i].classes, f, p);
        if (cases[i].flops >= 0)
            EXPECT(f == cases[i].flops, "ResNet-%d/%d: %lld MACs, expected %lld",
                   cases[i].depth, cases[i].classes, f, cases[i].flops);
        EXPECT(p == cases[i].params, "ResNet-%d/%d: %lld parameters, expected %lld",
               cases[i].depth, cases[i].classes, p, cases[i].params);
        EXPECT(a.num_classes == cases[i].classes, "num_classes %d", a.num_classes);
        arch_free(&a);
    }
}

/* Node names, kinds, shapes and wiring of ResNet-20. */
static void test_names(void)
{
    Arch a;
    Err err = {0};
    int rc = arch_resnet_cifar(&a, 20, 3, 32, 32, 10, 1.0, &err);
    EXPECT(rc == 0, "ResNet-20: %s", err.msg);
    if (rc) return;
    /* input + stem (3) + 9 blocks x (conv,bn,relu,conv,bn,add,relu) + 2 shortcuts + gap + fc */
    EXPECT(a.n_nodes == 1 + 3 + 9 * 7 + 2 + 2, "ResNet-20 has %d nodes", a.n_nodes);
    static const struct {
        const char *name;
        OpKind kind;
        int c, h, w;
    } want[] = {
        {"input", OP_INPUT, 3, 32, 32},
        {"conv1", OP_CONV, 16, 32, 32},
        {"bn1", OP_BN, 16, 32, 32},
        {"layer1.0.conv1", OP_CONV, 16, 32, 32},
        {"layer1.2.bn2", OP_BN, 16, 32, 32},
        {"layer2.0.conv1", OP_CONV, 32, 16, 16},
        {"layer2.0.shortcut", OP_SHORTCUT, 32, 16, 16},
        {"layer2.0.add", OP_ADD, 32, 16, 16},
        {"layer3.0.shortcut", OP_SHORTCUT, 64, 8, 8},
        {"layer3.2.conv2", OP_CONV, 64, 8, 8},
        {"layer3.2.relu", OP_RELU, 64, 8, 8},
        {"avgpool", OP_GAP, 64, 1, 1},
        {"fc", OP_FC, 10, 1, 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int k = arch_find(&a, want[i].name);
        EXPECT(k >= 0, "no node named %s", want[i].name);
        if (k < 0) continue;
        const Node *n = &a.nodes[k];
        EXPECT(n->kind == want[i].kind && n->c == want[i].c && n->h == want[i].h &&
                   n->w == want[i].w,
               "%s: %s %dx%dx%d, expected %s %dx%dx%d", want[i].name, op_kind_names[n->kind],
               n->c, n->h, n->w, op_kind_names[want[i].kind], want[i].c, want[i].h, want[i].w);
    }
    /* Identity shortcuts need no node; the stride-2 convs are the first of stages 2 and 3. */
    EXPECT(arch_find(&a, "layer1.0.shortcut") < 0, "stage 1 must use identity shortcuts");
    EXPECT(arch_find(&a, "layer2.1.shortcut") < 0, "layer2.1 must use an identity shortcut");
    int c = arch_find(&a, "layer2.0.conv1"), s = arch_find(&a, "layer2.0.shortcut");
    if (c >= 0 && s >= 0) {
        EXPECT(a.nodes[c].stride == 2 && a.nodes[s].stride == 2, "stage-2 stride");
        EXPECT(a.nodes[s].map_len == 16 && a.nodes[s].chan_map[15] == 15,
               "option-A map must place input channel i at output channel i");
        EXPECT(strcmp(a.nodes[a.nodes[s].in[0]].name, "layer1.2.relu") == 0,
               "layer2.0.shortcut reads %s", a.nodes[a.nodes[s].in[0]].name);
    }
    int add = arch_find(&a, "layer1.1.add");
    if (add >= 0)
        EXPECT(strcmp(a.nodes[a.nodes[add].in[0]].name, "layer1.1.bn2") == 0 &&
                   strcmp(a.nodes[a.nodes[add].in[1]].name, "layer1.0.relu") == 0,
               "layer1.1.add adds %s and %s", a.nodes[a.nodes[add].in[0]].name,
               a.nodes[a.nodes[add].in[1]].name);
    /* A deep copy and a revalidation keep every count. */
    Arch b;
    arch_copy(&b, &a);
    EXPECT(arch_revalidate(&b, &err) == 0, "revalidate: %s", err.msg);
    EXPECT(arch_params(&b) == arch_params(&a) && arch_flops(&b) == arch_flops(&a),
           "copy changed the counts");
    /* A pruning pass that empties a layer is caught by revalidation, which names the layer. */
    int k = arch_find(&b, "layer2.1.conv1");
    if (k >= 0) {
        b.nodes[k].c = 0;
        memset(&err, 0, sizeof err);
        int bad = arch_revalidate(&b, &err);
        EXPECT(bad < 0 && strstr(err.msg, "layer2.1.conv1") != NULL,
               "revalidating a conv with 0 filters: rc %d, \"%s\"", bad, err.msg);
        printf("  %-36s -> %s\n", "conv pruned to 0 filters", err.msg);
    }
    arch_free(&b);
    arch_free(&a);
}

/* rc must be a failure whose usage error message contains `needle` (the layer's name). */
static void expect_error(int rc, const Err *err, const char *needle, const char *what)
{
    EXPECT(rc < 0, "%s: accepted", what);
    EXPECT(rc >= 0 || (err->code == LEGR_EXIT_USAGE && strstr(err->msg, needle) != NULL),
           "%s: error (code %d) \"%s\" does not name \"%s\"", what, err->code, err->msg, needle);
    if (rc < 0) printf("  %-36s -> %s\n", what, err->msg);
}

/* Bad shapes give a clear error naming the layer, and leave the Arch usable. */
static void test_errors(void)
{
    Arch a;
    Err err;
    arch_init(&a);
    int x = arch_add_input(&a, "input", 3, 4, 4, NULL);
    EXPECT(x == 0, "input node");

    memset(&err, 0, sizeof err);
    expect_error(arch_add_conv(&a, "big", x, 8, 7, 1, 1, 1, &err), &err, "big",
                 "7x7 kernel on a padded 6x6 input");
    memset(&err, 0, sizeof err);
    expect_error(arch_add_conv(&a, "none", x, 0, 3, 1, 1, 1, &err), &err, "none",
                 "conv with 0 output channels");
    memset(&err, 0, sizeof err);
    expect_error(arch_add_conv(&a, "grp", x, 8, 3, 1, 1, 2, &err), &err, "grp",
                 "2 groups over 3 input channels");
    memset(&err, 0, sizeof err);
    expect_error(arch_add_conv(&a, "grp2", x, 5, 1, 1, 0, 3, &err), &err, "grp2",
                 "3 groups over 5 output channels");
    memset(&err, 0, sizeof err);
    expect_error(arch_add_conv(&a, "zs", x, 8, 3, 0, 1, 1, &err), &err, "zs", "stride 0");
    memset(&err, 0, sizeof err);
    expect_error(arch_add_conv(&a, "dangling", 17, 8, 3, 1, 1, 1, &err), &err, "dangling",
                 "conv reading a missing node");
    memset(&err, 0, sizeof err);
    Arch z;
    arch_init(&z);
    expect_error(arch_add_input(&z, "input0", 0, 4, 4, &err), &err, "input0",
                 "input with zero channels");
    arch_free(&z);

    int c = arch_add_conv(&a, "conv", x, 8, 3, 2, 1, 1, NULL); /* 8x2x2 */
    EXPECT(c >= 0 && a.nodes[c].h == 2, "strided conv");
    memset(&err, 0, sizeof err);
    expect_error(arch_add_add(&a, "sum", x, c, &err), &err, "sum", "add of 3x4x4 and 8x2x2");
    memset(&err, 0, sizeof err);
    expect_error(arch_add_shortcut(&a, "sc", c, 4, 1, &err), &err, "sc",
                 "shortcut to fewer channels");
    memset(&err, 0, sizeof err);
    expect_error(arch_add_fc(&a, "fc", c, 10, &err), &err, "fc", "FC on a 2x2 map");
    int n_before = a.n_nodes;
    /* Failed adds left nothing behind; a valid head still attaches. */
    int g = arch_add_gap(&a, "gap", c, NULL);
    int f = arch_add_fc(&a, "fc", g, 10, NULL);
    EXPECT(n_before == 2 && g == 2 && f == 3, "failed adds must not leave nodes (%d, %d, %d)",
           n_before, g, f);

    Arch r;
    for (int depth = -1; depth <= 21; depth++) {
        int valid = depth >= 8 && (depth - 2) % 6 == 0;
        memset(&err, 0, sizeof err);
        int rc = arch_resnet_cifar(&r, depth, 3, 32, 32, 10, 1.0, &err);
        EXPECT(valid ? rc == 0 : rc < 0 && strstr(err.msg, "6n+2") != NULL,
               "ResNet depth %d: rc %d, \"%s\"", depth, rc, err.msg);
        if (rc == 0) arch_free(&r);
    }
    memset(&err, 0, sizeof err);
    expect_error(arch_resnet_cifar(&r, 10, 3, 32, 32, 10, 1.0, &err), &err, "6n+2",
                 "ResNet depth 10");
    memset(&err, 0, sizeof err);
    expect_error(arch_resnet_cifar(&r, 20, 3, 32, 32, 0, 1.0, &err), &err, "classes",
                 "ResNet with 0 classes");

    /* net_build refuses a network without an FC head and a zero batch. */
    Arch nofc;
    arch_init(&nofc);
    int i0 = arch_add_input(&nofc, "input", 3, 4, 4, NULL);
    arch_add_conv(&nofc, "conv", i0, 4, 3, 1, 1, 1, NULL);
    Net net;
    memset(&err, 0, sizeof err);
    expect_error(net_build(&net, &nofc, 2, &err), &err, "fully connected", "net without FC");
    memset(&err, 0, sizeof err);
    expect_error(net_build(&net, &a, 0, &err), &err, "batch", "batch size 0");
    arch_free(&nofc);
    arch_free(&a);
}

/* Compare for qsort: specs by offset. */
static int by_offset(const void *x, const void *y)
{
    size_t a = ((const ParamSpec *)x)->offset, b = ((const ParamSpec *)y)->offset;
    return (a > b) - (a < b);
}

/* One table: counts are products of shapes, tensors are aligned and disjoint, inside the buffer.
 * Returns the sum of counts. */
static size_t check_table(const char *what, const ParamSpec *tab, int n, size_t floats)
{
    ParamSpec *sorted = xmalloc((size_t)(n ? n : 1) * sizeof(ParamSpec));
    memcpy(sorted, tab, (size_t)n * sizeof(ParamSpec));
    qsort(sorted, (size_t)n, sizeof(ParamSpec), by_offset);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const ParamSpec *s = &sorted[i];
        size_t prod = 1;
        for (int d = 0; d < s->ndim; d++) prod *= (size_t)s->shape[d];
        EXPECT(s->ndim >= 1 && s->ndim <= 4 && prod == s->count, "%s %s: count %zu, shape "
               "product %zu", what, s->name, s->count, prod);
        EXPECT(s->offset % 16 == 0, "%s %s: offset %zu not 16-float aligned", what, s->name,
               s->offset);
        EXPECT(s->offset + s->count <= floats, "%s %s ends past the buffer", what, s->name);
        if (i > 0)
            EXPECT(sorted[i - 1].offset + sorted[i - 1].count <= s->offset,
                   "%s %s overlaps %s", what, s->name, sorted[i - 1].name);
        for (int j = 0; j < i; j++)
            EXPECT(strcmp(sorted[j].name, s->name) != 0, "%s: duplicate name %s", what, s->name);
        total += s->count;
    }
    free(sorted);
    return total;
}

static void test_param_table(void)
{
    Arch a;
    Err err = {0};
    int rc = arch_resnet_cifar(&a, 20, 3, 32, 32, 10, 1.0, &err);
    EXPECT(rc == 0, "ResNet-20: %s", err.msg);
    if (rc) return;
    Net net;
    rc = net_build(&net, &a, 4, &err);
    EXPECT(rc == 0, "net_build: %s", err.msg);
    if (rc) {
        arch_free(&a);
        return;
    }
    /* 19 convs, 19 BNs (weight, bias), the FC (weight, bias); 19 x 2 running stats. */
    EXPECT(net.n_params == 19 + 2 * 19 + 2, "%d parameter tensors", net.n_params);
    EXPECT(net.n_bufs == 2 * 19, "%d buffers", net.n_bufs);
    size_t p = check_table("param", net.params, net.n_params, net.n_param_floats);
    size_t b = check_table("buffer", net.bufs, net.n_bufs, net.n_buf_floats);
    EXPECT((long long)p == arch_params(&a), "parameter tensors hold %zu values, arch_params %lld",
           p, arch_params(&a));
    EXPECT(b == 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64), "running stats hold %zu values", b);

    static const struct {
        const char *name;
        int ndim, shape[4];
    } want[] = {
        {"conv1.weight", 4, {16, 3, 3, 3}},
        {"bn1.weight", 1, {16}},
        {"bn1.bias", 1, {16}},
        {"layer1.0.conv1.weight", 4, {16, 16, 3, 3}},
        {"layer2.0.conv1.weight", 4, {32, 16, 3, 3}},
        {"layer3.2.bn2.bias", 1, {64}},
        {"fc.weight", 2, {10, 64}},
        {"fc.bias", 1, {10}},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const ParamSpec *s = net_find_param(&net, want[i].name);
        EXPECT(s != NULL, "no parameter %s", want[i].name);
        if (!s) continue;
        int same = s->ndim == want[i].ndim;
        for (int d = 0; same && d < s->ndim; d++) same = s->shape[d] == want[i].shape[d];
        EXPECT(same, "%s has the wrong shape", want[i].name);
        const char *owner = net.arch.nodes[s->node].name;
        size_t len = strlen(owner);
        EXPECT(strncmp(want[i].name, owner, len) == 0 && want[i].name[len] == '.',
               "%s owned by node %s", want[i].name, owner);
    }
    EXPECT(net_find_buf(&net, "layer2.1.bn1.running_var") != NULL, "missing running_var");
    EXPECT(net_find_param(&net, "layer2.0.shortcut.weight") == NULL, "shortcut has no weight");
    EXPECT(net_find_param(&net, "conv1.bias") == NULL, "convs have no bias");
    net_free(&net);
    arch_free(&a);
}

int main(void)
{
    test_counts();
    test_names();
    test_errors();
    test_param_table();
    return harness_finish("test_arch");
}
