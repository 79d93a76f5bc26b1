/* The small network whose files seed the HDF5 harnesses: one node of every kind. */
#ifndef LEGR_FUZZ_SEED_NET_H
#define LEGR_FUZZ_SEED_NET_H

#include <stdlib.h>

#include "legr/arch.h"
#include "legr/net.h"

/* conv (with bias) -> bn -> relu -> depthwise conv -> bn -> relu6 -> maxpool -> 1x1 conv, an
 * option-A shortcut around it, add -> relu -> gap -> dropout -> fc; input 3x8x8, 10 classes. */
static inline void fuzz_seed_net(Net *net)
{
    Arch a;
    Err err;
    arch_init(&a);
    int x = arch_add_input(&a, "input", 3, 8, 8, &err);
    x = arch_add_conv(&a, "conv1", x, 8, 3, 1, 1, 1, &err);
    if (arch_set_conv_bias(&a, x, &err) != 0) abort();
    x = arch_add_bn(&a, "bn1", x, &err);
    x = arch_add_relu(&a, "relu1", x, &err);
    x = arch_add_conv(&a, "dw", x, 8, 3, 1, 1, 8, &err);
    x = arch_add_bn(&a, "bn2", x, &err);
    x = arch_add_relu6(&a, "relu2", x, &err);
    int p = arch_add_maxpool(&a, "pool", x, 3, 2, 1, &err);
    int y = arch_add_conv(&a, "conv3", p, 16, 1, 1, 0, 1, &err);
    int s = arch_add_shortcut(&a, "short", p, 16, 1, &err);
    x = arch_add_add(&a, "add", y, s, &err);
    x = arch_add_relu(&a, "relu3", x, &err);
    x = arch_add_gap(&a, "gap", x, &err);
    x = arch_add_dropout(&a, "drop", x, 0.2, &err);
    if (arch_add_fc(&a, "fc", x, 10, &err) < 0 || net_build(net, &a, 1, &err) != 0) abort();
    net_init_params(net, 1);
    arch_free(&a);
}

#endif
