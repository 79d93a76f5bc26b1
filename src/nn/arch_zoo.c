/* Built-in networks: the CIFAR ResNet, torchvision's ImageNet ResNets and MobileNetV2 (and LeGR's CIFAR variant). */
#include "legr/arch.h"

#include <stdio.h>

/* conv3x3 -> BN (-> ReLU when relu != 0), named <prefix>.conv<i>, <prefix>.bn<i>. */
static int add_conv_bn(Arch *a, const char *prefix, int i, int in, int oc, int stride, int relu,
                       Err *err)
{
    char name[ARCH_NAME_MAX];
    snprintf(name, sizeof name, "%s%sconv%d", prefix, *prefix ? "." : "", i);
    int x = arch_add_conv(a, name, in, oc, 3, stride, 1, 1, err);
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
    if (x >= 0) x = add_conv_bn(a, "", 1, x, widths[0], 1, 1, err);
    for (int s = 0; s < 3 && x >= 0; s++) {
        for (int b = 0; b < blocks && x >= 0; b++) {
            char prefix[32], name[ARCH_NAME_MAX];
            snprintf(prefix, sizeof prefix, "layer%d.%d", s + 1, b);
            int stride = (s > 0 && b == 0) ? 2 : 1;
            int block_in = x;
            int y = add_conv_bn(a, prefix, 1, x, widths[s], stride, 1, err);
            if (y >= 0) y = add_conv_bn(a, prefix, 2, y, widths[s], 1, 0, err);
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
