/* Built-in networks: the CIFAR ResNet, torchvision's ImageNet ResNets and MobileNetV2 (and LeGR's
 * CIFAR variant). */
#include "legr/arch.h"

#include <stdio.h>

/* conv KxK (padding K/2) -> BN (-> ReLU when relu != 0), named <prefix>.conv<i>,
 * <prefix>.bn<i>, <prefix>.relu<i>. An `in` < 0 (an earlier step failed, err already set)
 * passes through as -1. */
static int add_conv_bn(Arch *a, const char *prefix, int i, int in, int oc, int k, int stride,
                       int relu, Err *err)
{
    if (in < 0) return -1;
    char name[ARCH_NAME_MAX];
    snprintf(name, sizeof name, "%s%sconv%d", prefix, *prefix ? "." : "", i);
    int x = arch_add_conv(a, name, in, oc, k, stride, k / 2, 1, err);
    if (x < 0) return -1;
    snprintf(name, sizeof name, "%s%sbn%d", prefix, *prefix ? "." : "", i);
    x = arch_add_bn(a, name, x, err);
    if (x < 0 || !relu) return x;
    snprintf(name, sizeof name, "%s%srelu%d", prefix, *prefix ? "." : "", i);
    return arch_add_relu(a, name, x, err);
}

int arch_resnet_cifar(Arch *a, int depth, int in_c, int in_h, int in_w, int num_classes,
                      double width_mult, Err *err)
{
    arch_init(a);
    if (depth < 8 || (depth - 2) % 6 != 0)
        return err_set(err, LEGR_EXIT_USAGE, "ResNet depth %d is not 6n+2 with n >= 1", depth);
    if (!(width_mult > 0) || num_classes < 1)
        return err_set(err, LEGR_EXIT_USAGE, "ResNet width %g or classes %d must be positive",
                       width_mult, num_classes);
    int blocks = (depth - 2) / 6;
    int widths[3];
    for (int s = 0; s < 3; s++) {
        widths[s] = (int)(16 * (1 << s) * width_mult + 0.5);
        if (widths[s] < 1) widths[s] = 1;
    }
    int x = arch_add_input(a, "input", in_c, in_h, in_w, err);
    x = add_conv_bn(a, "", 1, x, widths[0], 3, 1, 1, err);
    for (int s = 0; s < 3 && x >= 0; s++) {
        for (int b = 0; b < blocks && x >= 0; b++) {
            char prefix[32], name[ARCH_NAME_MAX];
            snprintf(prefix, sizeof prefix, "layer%d.%d", s + 1, b);
            int stride = (s > 0 && b == 0) ? 2 : 1;
            int block_in = x;
            int y = add_conv_bn(a, prefix, 1, x, widths[s], 3, stride, 1, err);
            y = add_conv_bn(a, prefix, 2, y, widths[s], 3, 1, 0, err);
            int sc = block_in;
            if (y >= 0 && (stride != 1 || a->nodes[block_in].c != widths[s])) {
                snprintf(name, sizeof name, "%s.shortcut", prefix);
                sc = arch_add_shortcut(a, name, block_in, widths[s], stride, err);
            }
            if (y >= 0 && sc >= 0) {
                snprintf(name, sizeof name, "%s.add", prefix);
                y = arch_add_add(a, name, y, sc, err);
            } else {
                y = -1;
            }
            if (y >= 0) {
                snprintf(name, sizeof name, "%s.relu", prefix);
                y = arch_add_relu(a, name, y, err);
            }
            x = y;
        }
    }
    if (x >= 0) x = arch_add_gap(a, "avgpool", x, err);
    if (x >= 0) x = arch_add_fc(a, "fc", x, num_classes, err);
    if (x < 0) {
        arch_free(a);
        return -1;
    }
    return 0;
}

/* Channels c scaled by the width multiplier, rounded to nearest, at least 1 (as the CIFAR
 * ResNet rounds). */
static int scale_channels(int c, double width_mult)
{
    int s = (int)(c * width_mult + 0.5);
    return s < 1 ? 1 : s;
}

/* One torchvision ResNet block <prefix> on `in`: BasicBlock (conv1 3x3 carrying the stride,
 * conv2 3x3) or Bottleneck (conv1 1x1, conv2 3x3 carrying the stride, conv3 1x1 to out), a
 * projection shortcut downsample.0/.1 (1x1 conv at the stride, BN) when the shape changes,
 * then <prefix>.add and <prefix>.relu. Returns the ReLU's index or -1. */
static int resnet_block(Arch *a, const char *prefix, int in, int bottleneck, int width, int out,
                        int stride, Err *err)
{
    if (in < 0) return -1;
    char name[ARCH_NAME_MAX];
    int y;
    if (bottleneck) {
        y = add_conv_bn(a, prefix, 1, in, width, 1, 1, 1, err);
        y = add_conv_bn(a, prefix, 2, y, width, 3, stride, 1, err);
        y = add_conv_bn(a, prefix, 3, y, out, 1, 1, 0, err);
    } else {
        y = add_conv_bn(a, prefix, 1, in, width, 3, stride, 1, err);
        y = add_conv_bn(a, prefix, 2, y, out, 3, 1, 0, err);
    }
    if (y < 0) return -1;
    int sc = in;
    if (stride != 1 || a->nodes[in].c != out) {
        snprintf(name, sizeof name, "%s.downsample.0", prefix);
        sc = arch_add_conv(a, name, in, out, 1, stride, 0, 1, err);
        if (sc < 0) return -1;
        snprintf(name, sizeof name, "%s.downsample.1", prefix);
        sc = arch_add_bn(a, name, sc, err);
        if (sc < 0) return -1;
    }
    snprintf(name, sizeof name, "%s.add", prefix);
    y = arch_add_add(a, name, y, sc, err);
    if (y < 0) return -1;
    snprintf(name, sizeof name, "%s.relu", prefix);
    return arch_add_relu(a, name, y, err);
}

int arch_resnet_imagenet(Arch *a, int depth, int in_c, int in_h, int in_w, int num_classes,
                         double width_mult, Err *err)
{
    static const struct {
        int depth, bottleneck, blocks[4];
    } specs[] = {
        {18, 0, {2, 2, 2, 2}},
        {34, 0, {3, 4, 6, 3}},
        {50, 1, {3, 4, 6, 3}},
        {101, 1, {3, 4, 23, 3}},
    };
    arch_init(a);
    int sp = -1;
    for (int i = 0; i < (int)(sizeof specs / sizeof specs[0]); i++)
        if (specs[i].depth == depth) sp = i;
    if (sp < 0)
        return err_set(err, LEGR_EXIT_USAGE,
                       "ImageNet ResNet depth %d is not one of 18, 34, 50, 101", depth);
    if (!(width_mult > 0))
        return err_set(err, LEGR_EXIT_USAGE, "ResNet-%d width multiplier %g must be positive",
                       depth, width_mult);
    if (num_classes < 1)
        return err_set(err, LEGR_EXIT_USAGE, "ResNet-%d needs at least 1 class, not %d", depth,
                       num_classes);
    int bottleneck = specs[sp].bottleneck, expansion = bottleneck ? 4 : 1;
    int x = arch_add_input(a, "input", in_c, in_h, in_w, err);
    x = add_conv_bn(a, "", 1, x, scale_channels(64, width_mult), 7, 2, 1, err);
    if (x >= 0) x = arch_add_maxpool(a, "maxpool", x, 3, 2, 1, err);
    for (int s = 0; s < 4; s++) {
        int width = scale_channels(64 << s, width_mult);
        for (int b = 0; b < specs[sp].blocks[s]; b++) {
            char prefix[32];
            snprintf(prefix, sizeof prefix, "layer%d.%d", s + 1, b);
            int stride = (s > 0 && b == 0) ? 2 : 1;
            x = resnet_block(a, prefix, x, bottleneck, width, expansion * width, stride, err);
        }
    }
    if (x >= 0) x = arch_add_gap(a, "avgpool", x, err);
    if (x >= 0) x = arch_add_fc(a, "fc", x, num_classes, err);
    if (x < 0) {
        arch_free(a);
        return -1;
    }
    return 0;
}

/* torchvision's _make_divisible(v, 8): nearest multiple of 8, at least 8, and not more than
 * 10% below v. */
static int make_divisible8(double v)
{
    int c = (int)(v + 4) / 8 * 8;
    if (c < 8) c = 8;
    if (c < 0.9 * v) c += 8;
    return c;
}

/* torchvision's Conv2dNormActivation with ReLU6: <prefix>.0 conv KxK (padding K/2, `groups`),
 * <prefix>.1 BN, <prefix>.2 ReLU6. -1 passes through. */
static int conv_bn_relu6(Arch *a, const char *prefix, int in, int oc, int k, int stride,
                         int groups, Err *err)
{
    if (in < 0) return -1;
    char name[ARCH_NAME_MAX];
    snprintf(name, sizeof name, "%s.0", prefix);
    int x = arch_add_conv(a, name, in, oc, k, stride, k / 2, groups, err);
    if (x < 0) return -1;
    snprintf(name, sizeof name, "%s.1", prefix);
    x = arch_add_bn(a, name, x, err);
    if (x < 0) return -1;
    snprintf(name, sizeof name, "%s.2", prefix);
    return arch_add_relu6(a, name, x, err);
}

/* Inverted residual block features.<i> on `in`: expansion 1x1 to t*C (absent when t == 1),
 * depthwise 3x3 carrying the stride, linear projection 1x1 to oc with BN, and features.<i>.add
 * (no activation) when the stride is 1 and the channels match. Its Sequential is numbered
 * conv.0, conv.1, ... in torchvision, so the projection is conv.2/conv.3 after an expansion
 * and conv.1/conv.2 without one. */
static int inverted_residual(Arch *a, int i, int in, int oc, int stride, int t, Err *err)
{
    if (in < 0) return -1;
    char name[ARCH_NAME_MAX];
    int ic = a->nodes[in].c, hidden = ic * t, j = 0, x = in;
    if (t != 1) {
        snprintf(name, sizeof name, "features.%d.conv.%d", i, j++);
        x = conv_bn_relu6(a, name, x, hidden, 1, 1, 1, err);
    }
    snprintf(name, sizeof name, "features.%d.conv.%d", i, j++);
    x = conv_bn_relu6(a, name, x, hidden, 3, stride, hidden, err);
    if (x < 0) return -1;
    snprintf(name, sizeof name, "features.%d.conv.%d", i, j++);
    x = arch_add_conv(a, name, x, oc, 1, 1, 0, 1, err);
    if (x < 0) return -1;
    snprintf(name, sizeof name, "features.%d.conv.%d", i, j);
    x = arch_add_bn(a, name, x, err);
    if (x < 0 || stride != 1 || ic != oc) return x;
    snprintf(name, sizeof name, "features.%d.add", i);
    return arch_add_add(a, name, x, in, err);
}

int arch_mobilenetv2(Arch *a, int cifar, int in_c, int in_h, int in_w, int num_classes,
                     double width_mult, Err *err)
{
    /* (expansion t, channels c, blocks n, stride s of the first block) per stage. */
    static const int settings[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2},
                                       {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2},
                                       {6, 320, 1, 1}};
    /* LeGR's CIFAR variant keeps the resolution longer: 32x32 reaches 8x8, not 1x1. */
    static const int cifar_strides[7] = {1, 1, 2, 1, 1, 2, 1};
    arch_init(a);
    if (!(width_mult > 0))
        return err_set(err, LEGR_EXIT_USAGE, "MobileNetV2 width multiplier %g must be positive",
                       width_mult);
    if (num_classes < 1)
        return err_set(err, LEGR_EXIT_USAGE, "MobileNetV2 needs at least 1 class, not %d",
                       num_classes);
    int x = arch_add_input(a, "input", in_c, in_h, in_w, err);
    x = conv_bn_relu6(a, "features.0", x, make_divisible8(32 * width_mult), 3, cifar ? 1 : 2, 1,
                      err);
    int f = 1;
    for (int s = 0; s < 7; s++) {
        int oc = make_divisible8(settings[s][1] * width_mult);
        for (int b = 0; b < settings[s][2]; b++, f++) {
            int stride = b > 0 ? 1 : cifar ? cifar_strides[s] : settings[s][3];
            x = inverted_residual(a, f, x, oc, stride, settings[s][0], err);
        }
    }
    char name[ARCH_NAME_MAX];
    snprintf(name, sizeof name, "features.%d", f);
    x = conv_bn_relu6(a, name, x, make_divisible8(1280 * (width_mult > 1 ? width_mult : 1.0)), 1,
                      1, 1, err);
    if (x >= 0) x = arch_add_gap(a, "avgpool", x, err);
    if (x >= 0) x = arch_add_dropout(a, "classifier.0", x, cifar ? 0.5 : 0.2, err);
    if (x >= 0) x = arch_add_fc(a, "classifier.1", x, num_classes, err);
    if (x < 0) {
        arch_free(a);
        return -1;
    }
    return 0;
}
