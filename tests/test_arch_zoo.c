/* The built-in ImageNet ResNets and MobileNetV2: exact counts against torchvision, layout, names,
 * bad arguments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "legr/arch.h"
#include "legr/net.h"

/* A network by its config name: resnet18/34/50/101, mobilenetv2, mobilenetv2_cifar. */
static int build(Arch *a, const char *kind, int c, int h, int w, int classes, double width,
                 Err *err)
{
    if (strncmp(kind, "resnet", 6) == 0)
        return arch_resnet_imagenet(a, atoi(kind + 6), c, h, w, classes, width, err);
    if (strcmp(kind, "mobilenetv2") == 0)
        return arch_mobilenetv2(a, 0, c, h, w, classes, width, err);
    if (strcmp(kind, "mobilenetv2_cifar") == 0)
        return arch_mobilenetv2(a, 1, c, h, w, classes, width, err);
    arch_init(a);
    return err_set(err, LEGR_EXIT_USAGE, "unknown network %s", kind);
}

/* Conv + FC multiply-accumulates and parameters, all as torchvision 0.14 counts them (forward hooks on every Conv2d/Linear, sum of
 * p.numel()), the CIFAR variant as torchvision's MobileNetV2 with strides 1,1,2,1,1,2,1, a
 * stride-1 stem and dropout 0.5. */
static void test_counts(void)
{
    static const struct {
        const char *kind;
        int h, classes;
        double width;
        long long flops, params;
    } cases[] = {
        {"resnet50", 224, 1000, 1.0, 4089184256LL, 25557032LL},
        {"resnet50", 224, 200, 1.0, 4087545856LL, 23917832LL},
        {"resnet18", 224, 1000, 1.0, 1814073344LL, 11689512LL},
        {"mobilenetv2", 224, 1000, 1.0, 300774272LL, 3504872LL},
        {"mobilenetv2_cifar", 32, 100, 1.0, 265806848LL, 2351972LL},
        {"resnet34", 224, 1000, 1.0, 3663761408LL, 21797672LL},
        {"resnet101", 224, 1000, 1.0, 7801405440LL, 44549160LL},
        /* Width multipliers: 0.5 rounds every width to a multiple of 8; 0.35 takes the "not
         * below 90%" step (32*0.35 = 11.2 -> 8 is too small -> 16); 1.4 widens the last conv
         * to 1792. */
        {"mobilenetv2", 224, 1000, 0.5, 97131840LL, 1968680LL},
        {"mobilenetv2", 224, 1000, 0.35, 59285808LL, 1677128LL},
        {"mobilenetv2", 224, 1000, 1.4, 582195824LL, 6108776LL},
        {"mobilenetv2_cifar", 32, 10, 0.5, 78930432LL, 700490LL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Arch a;
        Err err = {0};
        int rc = build(&a, cases[i].kind, 3, cases[i].h, cases[i].h, cases[i].classes,
                       cases[i].width, &err);
        EXPECT(rc == 0, "%s: %s", cases[i].kind, err.msg);
        if (rc) continue;
        long long f = arch_flops(&a), p = arch_params(&a);
        printf("%s width %g, 3x%dx%d, %d classes: %lld MACs, %lld parameters\n", cases[i].kind,
               cases[i].width, cases[i].h, cases[i].h, cases[i].classes, f, p);
        EXPECT(f == cases[i].flops, "%s w%g/%d: %lld MACs, torchvision %lld", cases[i].kind,
               cases[i].width, cases[i].classes, f, cases[i].flops);
        EXPECT(p == cases[i].params, "%s w%g/%d: %lld parameters, torchvision %lld",
               cases[i].kind, cases[i].width, cases[i].classes, p, cases[i].params);
        EXPECT(a.num_classes == cases[i].classes, "num_classes %d", a.num_classes);
        arch_free(&a);
    }
}

typedef struct {
    const char *name;
    OpKind kind;
    int c, h, w, stride, groups;
} Want;

/* Every listed node exists with that kind, shape, stride and groups (stride/groups 0: any). */
static void check_nodes(const Arch *a, const char *what, const Want *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int k = arch_find(a, want[i].name);
        EXPECT(k >= 0, "%s: no node named %s", what, want[i].name);
        if (k < 0) continue;
        const Node *nd = &a->nodes[k];
        EXPECT(nd->kind == want[i].kind && nd->c == want[i].c && nd->h == want[i].h &&
                   nd->w == want[i].w,
               "%s %s: %s %dx%dx%d, expected %s %dx%dx%d", what, want[i].name,
               op_kind_names[nd->kind], nd->c, nd->h, nd->w, op_kind_names[want[i].kind],
               want[i].c, want[i].h, want[i].w);
        if (want[i].stride)
            EXPECT(nd->stride == want[i].stride, "%s %s: stride %d, expected %d", what,
                   want[i].name, nd->stride, want[i].stride);
        if (want[i].groups)
            EXPECT(nd->groups == want[i].groups, "%s %s: groups %d, expected %d", what,
                   want[i].name, nd->groups, want[i].groups);
    }
}

/* Names of node k's inputs are x and y (y NULL: one input). */
static void check_inputs(const Arch *a, const char *name, const char *x, const char *y)
{
    int k = arch_find(a, name);
    EXPECT(k >= 0, "no node named %s", name);
    if (k < 0) return;
    const Node *nd = &a->nodes[k];
    const char *nx = nd->in[0] >= 0 ? a->nodes[nd->in[0]].name : "-";
    const char *ny = nd->in[1] >= 0 ? a->nodes[nd->in[1]].name : "-";
    EXPECT(strcmp(nx, x) == 0 && strcmp(ny, y ? y : "-") == 0, "%s reads %s, %s; expected %s, %s",
           name, nx, ny, x, y ? y : "-");
}

/* Every node name is unique (parameterless nodes included). */
static void check_unique(const Arch *a, const char *what)
{
    int dup = 0;
    for (int i = 0; i < a->n_nodes; i++)
        dup += arch_find(a, a->nodes[i].name) != i;
    EXPECT(dup == 0, "%s: %d duplicate node names", what, dup);
}

static void test_resnet_layout(void)
{
    Arch a;
    Err err = {0};
    CHECK(arch_resnet_imagenet(&a, 50, 3, 224, 224, 1000, 1.0, &err) == 0, "%s", err.msg);
    static const Want r50[] = {
        {"input", OP_INPUT, 3, 224, 224, 0, 0},
        {"conv1", OP_CONV, 64, 112, 112, 2, 1},
        {"bn1", OP_BN, 64, 112, 112, 0, 0},
        {"maxpool", OP_MAXPOOL, 64, 56, 56, 2, 0},
        {"layer1.0.conv1", OP_CONV, 64, 56, 56, 1, 1},
        {"layer1.0.conv3", OP_CONV, 256, 56, 56, 1, 1},
        {"layer1.0.downsample.0", OP_CONV, 256, 56, 56, 1, 1},
        {"layer1.0.downsample.1", OP_BN, 256, 56, 56, 0, 0},
        {"layer1.0.add", OP_ADD, 256, 56, 56, 0, 0},
        {"layer1.2.relu", OP_RELU, 256, 56, 56, 0, 0},
        /* Bottleneck: the stride is on the 3x3 conv (torchvision >= 0.2, "ResNet v1.5"). */
        {"layer2.0.conv1", OP_CONV, 128, 56, 56, 1, 1},
        {"layer2.0.conv2", OP_CONV, 128, 28, 28, 2, 1},
        {"layer2.0.downsample.0", OP_CONV, 512, 28, 28, 2, 1},
        {"layer3.5.bn3", OP_BN, 1024, 14, 14, 0, 0},
        {"layer4.0.downsample.0", OP_CONV, 2048, 7, 7, 2, 1},
        {"layer4.2.relu", OP_RELU, 2048, 7, 7, 0, 0},
        {"avgpool", OP_GAP, 2048, 1, 1, 0, 0},
        {"fc", OP_FC, 1000, 1, 1, 0, 0},
    };
    check_nodes(&a, "resnet50", r50, sizeof r50 / sizeof r50[0]);
    int mp = arch_find(&a, "maxpool"), c1 = arch_find(&a, "conv1");
    if (mp >= 0 && c1 >= 0)
        EXPECT(a.nodes[mp].k == 3 && a.nodes[mp].pad == 1 && a.nodes[c1].k == 7 &&
                   a.nodes[c1].pad == 3 && !a.nodes[c1].bias,
               "stem: conv k%d pad %d, maxpool k%d pad %d", a.nodes[c1].k, a.nodes[c1].pad,
               a.nodes[mp].k, a.nodes[mp].pad);
    check_inputs(&a, "layer1.0.conv1", "maxpool", NULL);
    check_inputs(&a, "layer1.0.downsample.0", "maxpool", NULL);
    check_inputs(&a, "layer1.0.add", "layer1.0.bn3", "layer1.0.downsample.1");
    check_inputs(&a, "layer1.1.add", "layer1.1.bn3", "layer1.0.relu");
    check_inputs(&a, "layer1.1.relu", "layer1.1.add", NULL);
    /* Projections only where the shape changes: the first block of each stage. */
    int projections = 0;
    for (int i = 0; i < a.n_nodes; i++)
        projections += strstr(a.nodes[i].name, "downsample.0") != NULL;
    EXPECT(projections == 4, "resnet50 has %d projection shortcuts", projections);
    check_unique(&a, "resnet50");
    arch_free(&a);

    CHECK(arch_resnet_imagenet(&a, 18, 3, 224, 224, 10, 1.0, &err) == 0, "%s", err.msg);
    static const Want r18[] = {
        {"layer1.0.conv1", OP_CONV, 64, 56, 56, 1, 1},
        {"layer1.1.conv2", OP_CONV, 64, 56, 56, 1, 1},
        /* BasicBlock: the stride is on conv1. */
        {"layer2.0.conv1", OP_CONV, 128, 28, 28, 2, 1},
        {"layer2.0.conv2", OP_CONV, 128, 28, 28, 1, 1},
        {"layer2.0.downsample.0", OP_CONV, 128, 28, 28, 2, 1},
        {"layer4.1.relu", OP_RELU, 512, 7, 7, 0, 0},
        {"fc", OP_FC, 10, 1, 1, 0, 0},
    };
    check_nodes(&a, "resnet18", r18, sizeof r18 / sizeof r18[0]);
    EXPECT(arch_find(&a, "layer1.0.downsample.0") < 0, "resnet18 stage 1 needs no projection");
    EXPECT(arch_find(&a, "layer1.0.conv3") < 0, "resnet18 has no conv3");
    check_inputs(&a, "layer1.0.add", "layer1.0.bn2", "maxpool");
    check_unique(&a, "resnet18");
    arch_free(&a);

    /* Width 0.5 halves every width (the stem too); the Bottleneck still expands by 4. */
    CHECK(arch_resnet_imagenet(&a, 101, 3, 64, 64, 7, 0.5, &err) == 0, "%s", err.msg);
    static const Want r101[] = {
        {"conv1", OP_CONV, 32, 32, 32, 2, 1},
        {"layer1.0.conv1", OP_CONV, 32, 16, 16, 1, 1},
        {"layer1.0.conv3", OP_CONV, 128, 16, 16, 1, 1},
        {"layer3.22.conv2", OP_CONV, 128, 4, 4, 1, 1},
        {"layer3.22.relu", OP_RELU, 512, 4, 4, 0, 0},
        {"layer4.2.conv3", OP_CONV, 1024, 2, 2, 1, 1},
        {"fc", OP_FC, 7, 1, 1, 0, 0},
    };
    check_nodes(&a, "resnet101 w0.5", r101, sizeof r101 / sizeof r101[0]);
    EXPECT(arch_find(&a, "layer3.23.conv1") < 0, "resnet101 stage 3 has 23 blocks");
    arch_free(&a);
}

static void test_mobilenet_layout(void)
{
    Arch a;
    Err err = {0};
    CHECK(arch_mobilenetv2(&a, 0, 3, 224, 224, 1000, 1.0, &err) == 0, "%s", err.msg);
    static const Want m[] = {
        {"features.0.0", OP_CONV, 32, 112, 112, 2, 1},
        {"features.0.1", OP_BN, 32, 112, 112, 0, 0},
        {"features.0.2", OP_RELU6, 32, 112, 112, 0, 0},
        /* t = 1: depthwise first, projection conv.1, BN conv.2. */
        {"features.1.conv.0.0", OP_CONV, 32, 112, 112, 1, 32},
        {"features.1.conv.0.2", OP_RELU6, 32, 112, 112, 0, 0},
        {"features.1.conv.1", OP_CONV, 16, 112, 112, 1, 1},
        {"features.1.conv.2", OP_BN, 16, 112, 112, 0, 0},
        /* t = 6: expansion conv.0, depthwise conv.1 with the stride, projection conv.2. */
        {"features.2.conv.0.0", OP_CONV, 96, 112, 112, 1, 1},
        {"features.2.conv.1.0", OP_CONV, 96, 56, 56, 2, 96},
        {"features.2.conv.2", OP_CONV, 24, 56, 56, 1, 1},
        {"features.2.conv.3", OP_BN, 24, 56, 56, 0, 0},
        {"features.3.add", OP_ADD, 24, 56, 56, 0, 0},
        {"features.7.conv.1.0", OP_CONV, 192, 14, 14, 2, 192},
        {"features.14.conv.1.0", OP_CONV, 576, 7, 7, 2, 576},
        {"features.17.conv.2", OP_CONV, 320, 7, 7, 1, 1},
        {"features.18.0", OP_CONV, 1280, 7, 7, 1, 1},
        {"features.18.2", OP_RELU6, 1280, 7, 7, 0, 0},
        {"avgpool", OP_GAP, 1280, 1, 1, 0, 0},
        {"classifier.0", OP_DROPOUT, 1280, 1, 1, 0, 0},
        {"classifier.1", OP_FC, 1000, 1, 1, 0, 0},
    };
    check_nodes(&a, "mobilenetv2", m, sizeof m / sizeof m[0]);
    /* Residual adds: stride 1 and equal channels only; no activation after them. */
    static const int adds[] = {3, 5, 6, 8, 9, 10, 12, 13, 15, 16};
    int n_adds = 0;
    for (int i = 0; i < a.n_nodes; i++) n_adds += a.nodes[i].kind == OP_ADD;
    EXPECT(n_adds == (int)(sizeof adds / sizeof adds[0]), "mobilenetv2 has %d adds", n_adds);
    for (size_t i = 0; i < sizeof adds / sizeof adds[0]; i++) {
        /* The block's input is the previous block's add, or its projection BN if it has none. */
        int prev_add = i > 0 && adds[i - 1] == adds[i] - 1;
        char name[ARCH_NAME_MAX], bn[ARCH_NAME_MAX], prev[ARCH_NAME_MAX];
        snprintf(name, sizeof name, "features.%d.add", adds[i]);
        snprintf(bn, sizeof bn, "features.%d.conv.3", adds[i]);
        snprintf(prev, sizeof prev, "features.%d.%s", adds[i] - 1, prev_add ? "add" : "conv.3");
        check_inputs(&a, name, bn, prev);
    }
    check_inputs(&a, "features.4.conv.0.0", "features.3.add", NULL);
    check_inputs(&a, "features.2.conv.0.0", "features.1.conv.2", NULL);
    int k = arch_find(&a, "classifier.0");
    if (k >= 0) EXPECT(fabsf(a.nodes[k].drop_p - 0.2f) < 1e-7f, "dropout p %g", a.nodes[k].drop_p);
    k = arch_find(&a, "features.0.0");
    if (k >= 0) EXPECT(a.nodes[k].k == 3 && a.nodes[k].pad == 1, "stem k%d pad %d", a.nodes[k].k,
                       a.nodes[k].pad);
    check_unique(&a, "mobilenetv2");
    arch_free(&a);

    /* LeGR's CIFAR variant: stem stride 1, stages 3 and 6 halve the map, dropout 0.5. */
    CHECK(arch_mobilenetv2(&a, 1, 3, 32, 32, 100, 1.0, &err) == 0, "%s", err.msg);
    static const Want mc[] = {
        {"features.0.0", OP_CONV, 32, 32, 32, 1, 1},
        {"features.2.conv.1.0", OP_CONV, 96, 32, 32, 1, 96},
        {"features.4.conv.1.0", OP_CONV, 144, 16, 16, 2, 144},
        {"features.7.conv.1.0", OP_CONV, 192, 16, 16, 1, 192},
        {"features.14.conv.1.0", OP_CONV, 576, 8, 8, 2, 576},
        {"features.18.0", OP_CONV, 1280, 8, 8, 1, 1},
        {"classifier.1", OP_FC, 100, 1, 1, 0, 0},
    };
    check_nodes(&a, "mobilenetv2_cifar", mc, sizeof mc / sizeof mc[0]);
    /* Same blocks, so the same residual adds as torchvision's (strides change, not channels). */
    EXPECT(arch_find(&a, "features.3.add") >= 0 && arch_find(&a, "features.2.add") < 0 &&
               arch_find(&a, "features.7.add") < 0 && arch_find(&a, "features.17.add") < 0,
           "cifar variant residual adds");
    k = arch_find(&a, "classifier.0");
    if (k >= 0) EXPECT(fabsf(a.nodes[k].drop_p - 0.5f) < 1e-7f, "dropout p %g", a.nodes[k].drop_p);
    arch_free(&a);
}

/* Parameter tensors and running statistics of net_build: one per torchvision state_dict key
 * (num_batches_tracked aside), spot-checked by name and shape. The full lists (at width 1) are
 * compared with torchvision's by tests/test_arch_zoo_names.sh. */
static void test_param_names(void)
{
    static const struct {
        const char *kind;
        int n_params, n_bufs; /* len(named_parameters()), named_buffers() less num_batches */
        const char *name;
        int ndim, shape[4];
    } cases[] = {
        {"resnet18", 62, 40, "layer2.0.downsample.0.weight", 4, {32, 16, 1, 1}},
        {"resnet34", 110, 72, "layer3.5.conv2.weight", 4, {64, 64, 3, 3}},
        {"resnet50", 161, 106, "layer4.0.downsample.1.bias", 1, {512}},
        {"resnet101", 314, 208, "layer3.22.conv3.weight", 4, {256, 64, 1, 1}},
        {"mobilenetv2", 158, 104, "features.5.conv.1.0.weight", 4, {48, 1, 3, 3}},
        {"mobilenetv2_cifar", 158, 104, "classifier.1.weight", 2, {1000, 1280}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Arch a;
        Net net;
        Err err = {0};
        /* Width 0.25 keeps the tables small; torchvision's counts hold at any width. */
        int rc = build(&a, cases[i].kind, 3, 64, 64, 1000, 0.25, &err);
        if (rc == 0) rc = net_build(&net, &a, 1, &err);
        EXPECT(rc == 0, "%s: %s", cases[i].kind, err.msg);
        if (rc) continue;
        EXPECT(net.n_params == cases[i].n_params && net.n_bufs == cases[i].n_bufs,
               "%s: %d parameter tensors and %d buffers, torchvision %d and %d", cases[i].kind,
               net.n_params, net.n_bufs, cases[i].n_params, cases[i].n_bufs);
        const ParamSpec *s = net_find_param(&net, cases[i].name);
        EXPECT(s != NULL, "%s: no parameter %s", cases[i].kind, cases[i].name);
        if (s) {
            int same = s->ndim == cases[i].ndim;
            for (int d = 0; same && d < s->ndim; d++) same = s->shape[d] == cases[i].shape[d];
            EXPECT(same, "%s: %s has the wrong shape", cases[i].kind, cases[i].name);
        }
        net_free(&net);
        arch_free(&a);
    }
}

/* rc must be a usage error whose message contains `needle`, with the Arch left empty. */
static void expect_error(int rc, const Err *err, const Arch *a, const char *needle,
                         const char *what)
{
    EXPECT(rc < 0 && err->code == LEGR_EXIT_USAGE && strstr(err->msg, needle) != NULL,
           "%s: rc %d, error (code %d) \"%s\" does not name \"%s\"", what, rc, err->code,
           err->msg, needle);
    EXPECT(a->n_nodes == 0 && a->nodes == NULL, "%s: the Arch is not left empty", what);
    if (rc < 0) printf("  %-36s -> %s\n", what, err->msg);
}

static void test_errors(void)
{
    Arch a;
    Err err;
    for (int depth = 0; depth <= 152; depth++) {
        int valid = depth == 18 || depth == 34 || depth == 50 || depth == 101;
        memset(&err, 0, sizeof err);
        int rc = arch_resnet_imagenet(&a, depth, 3, 64, 64, 10, 1.0, &err);
        EXPECT(valid ? rc == 0 : rc < 0 && strstr(err.msg, "18, 34, 50, 101") != NULL,
               "ImageNet ResNet depth %d: rc %d, \"%s\"", depth, rc, err.msg);
        if (rc == 0) arch_free(&a);
    }
    memset(&err, 0, sizeof err);
    expect_error(arch_resnet_imagenet(&a, 19, 3, 224, 224, 10, 1.0, &err), &err, &a, "19",
                 "ResNet depth 19");
    memset(&err, 0, sizeof err);
    expect_error(arch_resnet_imagenet(&a, 50, 3, 224, 224, 10, 0.0, &err), &err, &a, "width",
                 "ResNet-50 width 0");
    memset(&err, 0, sizeof err);
    expect_error(arch_resnet_imagenet(&a, 50, 3, 224, 224, 10, NAN, &err), &err, &a, "width",
                 "ResNet-50 width NaN");
    memset(&err, 0, sizeof err);
    expect_error(arch_resnet_imagenet(&a, 18, 3, 224, 224, 0, 1.0, &err), &err, &a, "class",
                 "ResNet-18 with 0 classes");
    memset(&err, 0, sizeof err);
    expect_error(arch_resnet_imagenet(&a, 18, 0, 224, 224, 10, 1.0, &err), &err, &a, "input",
                 "ResNet-18 on 0 input channels");
    memset(&err, 0, sizeof err);
    expect_error(arch_mobilenetv2(&a, 0, 3, 224, 224, 1000, 0.0, &err), &err, &a, "width",
                 "MobileNetV2 width 0");
    memset(&err, 0, sizeof err);
    expect_error(arch_mobilenetv2(&a, 1, 3, 32, 32, 1000, -0.5, &err), &err, &a, "width",
                 "MobileNetV2 width -0.5");
    memset(&err, 0, sizeof err);
    expect_error(arch_mobilenetv2(&a, 1, 3, 32, 32, 0, 1.0, &err), &err, &a, "class",
                 "MobileNetV2 with 0 classes");
    memset(&err, 0, sizeof err);
    expect_error(arch_mobilenetv2(&a, 0, 3, 0, 32, 10, 1.0, &err), &err, &a, "input",
                 "MobileNetV2 on a 0x32 input");
}

/* --names KIND CLASSES WIDTH: print "P name shape" per parameter tensor, then "B name shape"
 * per running statistic, in net_build's order (for tests/test_arch_zoo_names.sh). */
static int print_names(const char *kind, int classes, double width)
{
    Arch a;
    Net net;
    Err err = {0};
    if (build(&a, kind, 3, 64, 64, classes, width, &err)) {
        fprintf(stderr, "test_arch_zoo: %s\n", err.msg);
        return 1;
    }
    int rc = net_build(&net, &a, 1, &err);
    arch_free(&a);
    if (rc) {
        fprintf(stderr, "test_arch_zoo: %s\n", err.msg);
        return 1;
    }
    for (int t = 0; t < 2; t++) {
        const ParamSpec *tab = t ? net.bufs : net.params;
        for (int i = 0; i < (t ? net.n_bufs : net.n_params); i++) {
            printf("%c %s ", t ? 'B' : 'P', tab[i].name);
            for (int d = 0; d < tab[i].ndim; d++) printf("%s%d", d ? "x" : "", tab[i].shape[d]);
            putchar('\n');
        }
    }
    net_free(&net);
    return 0;
}

/* The activation-gradient arena shares memory between gradients never alive together, so for
 * these deep networks it is a small fraction of the activations (measured at 224x224, batch 32:
 * ResNet-50 294 MiB against 3430 MiB, MobileNetV2-CIFAR 190 against 3331 at batch 128); that the
 * gradients stay right is test_net_grad's and test_reference's job. */
static void test_grad_arena(void)
{
    static const struct { const char *kind; int h, classes; } nets[] = {
        {"resnet50", 64, 10}, {"mobilenetv2_cifar", 32, 100}};
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++) {
        Arch a;
        Net net;
        Err err = {0, ""};
        int rc = build(&a, nets[i].kind, 3, nets[i].h, nets[i].h, nets[i].classes, 1.0, &err);
        if (rc == 0) rc = net_build(&net, &a, 4, &err);
        EXPECT(rc == 0, "%s: %s", nets[i].kind, err.msg);
        arch_free(&a);
        if (rc != 0) continue;
        EXPECT(net.dact_floats * 4 <= net.act_floats, "%s: gradient arena %zu floats, more than "
               "a quarter of the activations' %zu", nets[i].kind, net.dact_floats, net.act_floats);
        /* Forward-only outputs share memory: ResNet-50's third BN of every block and its
         * projection BNs are a fifth of all outputs (measured: 2769 MiB against 3430). */
        size_t all = 0;
        for (int j = 0; j < net.arch.n_nodes; j++) {
            const Node *nd = &net.arch.nodes[j];
            if (!(net.fuse[j] & (NET_FUSE_BN_RELU | NET_FUSE_ADD_RELU)))
                all += (size_t)nd->c * 4 * nd->h * nd->w;
        }
        if (strcmp(nets[i].kind, "resnet50") == 0)
            EXPECT(net.act_floats * 100 <= all * 85, "resnet50: activation arena %zu floats, "
                   "more than 85%% of all outputs' %zu", net.act_floats, all);
        net_free(&net);
    }
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--names") == 0)
        return print_names(argv[2], atoi(argv[3]), atof(argv[4]));
    test_counts();
    test_resnet_layout();
    test_mobilenet_layout();
    test_param_names();
    test_errors();
    test_grad_arena();
    return harness_finish("test_arch_zoo");
}
