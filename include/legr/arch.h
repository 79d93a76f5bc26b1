/* Arch: a network described as a small DAG of layer nodes with names, channel counts and shapes. */
#ifndef LEGR_ARCH_H
#define LEGR_ARCH_H

#include "legr/util.h"

/* Node kinds. Nodes are stored in topological order (a node's inputs precede it). */
typedef enum {
    OP_INPUT = 0, /* the network input, (C,H,W) per image */
    OP_CONV,      /* 2-D convolution; weight (OC, C/G, K, K), optional bias (OC) */
    OP_BN,        /* batch norm over the channels of its input; gamma, beta, running stats */
    OP_RELU,      /* max(x, 0) */
    OP_ADD,       /* elementwise sum of two inputs of equal shape */
    OP_SHORTCUT,  /* option-A shortcut: subsample by `stride`, place input channel i at output
                     channel chan_map[i], zeros elsewhere */
    OP_GAP,       /* global average pooling to (C,1,1) */
    OP_FC,        /* fully connected with bias; weight (OUT, IN), bias (OUT) */
    OP_MAXPOOL,   /* max pooling over k x k windows at `stride`, `pad` (padding never wins) */
    OP_RELU6,     /* min(max(x, 0), 6) */
    OP_DROPOUT,   /* training: zero each value with probability `drop_p`, scale the rest by
                     1/(1 - drop_p); evaluation: identity */
    OP_COUNT
} OpKind;

extern const char *const op_kind_names[OP_COUNT];

#define ARCH_NAME_MAX 48

typedef struct {
    OpKind kind;
    char name[ARCH_NAME_MAX]; /* PyTorch-style module name, e.g. "layer1.0.conv1" */
    int in[2];                /* producer node indices; -1 when unused */
    int c, h, w;              /* output shape per image */
    int k, stride, pad, groups; /* OP_CONV, OP_MAXPOOL (groups 1); OP_SHORTCUT uses stride */
    int bias;                 /* OP_CONV: 1 when the conv has a bias vector (OC) */
    float drop_p;             /* OP_DROPOUT: probability in [0, 1) */
    int *chan_map;            /* OP_SHORTCUT: output channel of each input channel; owned */
    int map_len;              /* OP_SHORTCUT: length of chan_map = the producer's channels */
} Node;

typedef struct {
    int n_nodes, cap;
    Node *nodes;
    int num_classes; /* output width of the final FC (0 until one is added) */
} Arch;

/* Builder. Every arch_add_* validates its shapes and returns the new node's index, or -1 with
 * err naming the layer and the problem (zero/negative sizes, no output left after the stride
 * or padding, channel counts that do not connect). */
void arch_init(Arch *a);
void arch_free(Arch *a);
int arch_copy(Arch *dst, const Arch *src); /* deep copy; returns 0 */
int arch_add_input(Arch *a, const char *name, int c, int h, int w, Err *err);
int arch_add_conv(Arch *a, const char *name, int in, int oc, int k, int stride, int pad,
                  int groups, Err *err);
int arch_add_bn(Arch *a, const char *name, int in, Err *err);
int arch_add_relu(Arch *a, const char *name, int in, Err *err);
int arch_add_relu6(Arch *a, const char *name, int in, Err *err);
/* Max pooling, output (H + 2P - K)/S + 1 (PyTorch's floor mode); K > P required. */
int arch_add_maxpool(Arch *a, const char *name, int in, int k, int stride, int pad, Err *err);
int arch_add_dropout(Arch *a, const char *name, int in, double p, Err *err);
/* Give conv node `idx` a bias vector (it has none by default). Returns 0, or -1 with err when
 * the node is not a conv. */
int arch_set_conv_bias(Arch *a, int idx, Err *err);
int arch_add_add(Arch *a, const char *name, int x, int y, Err *err);
/* Option-A shortcut to `oc` channels (>= input channels); chan_map is the identity. */
int arch_add_shortcut(Arch *a, const char *name, int in, int oc, int stride, Err *err);
int arch_add_gap(Arch *a, const char *name, int in, Err *err);
int arch_add_fc(Arch *a, const char *name, int in, int out, Err *err);

/* Re-derive every node's output shape from the input node and the per-node channel counts
 * (after a pruning pass changed conv `c` or shortcut maps); checks that everything connects. */
int arch_revalidate(Arch *a, Err *err);

/* Index of the node named `name`, or -1. */
int arch_find(const Arch *a, const char *name);

/* CIFAR-style ResNet (as in the LeGR experiments): depth = 6n+2, stem conv3x3-BN-ReLU with 16*w channels,
 * three stages of n post-activation BasicBlocks with widths 16w/32w/64w (stride 2 at the first
 * block of stages 2 and 3), option-A shortcuts, global average pooling, FC to num_classes.
 * Names follow the usual PyTorch module names: conv1, bn1, layer{1,2,3}.{b}.{conv1,bn1,conv2,bn2},
 * fc. Returns 0 or -1 with err. */
int arch_resnet_cifar(Arch *a, int depth, int in_c, int in_h, int in_w, int num_classes,
                      double width_mult, Err *err);

/* torchvision ResNet for ImageNet-sized inputs (src/nn/arch_zoo.c): depth 18 or 34 (BasicBlock)
 * or 50 or 101 (Bottleneck, stride on the 3x3 conv); stem conv 7x7/2 (64*w), BN, ReLU, max pool
 * 3x3/2 pad 1; four stages of widths 64w/128w/256w/512w (x4 out for Bottleneck), stride 2 at the
 * first block of stages 2-4; 1x1 projection shortcuts (conv + BN, "downsample.0"/".1") where the
 * shape changes; global average pooling; FC. torchvision's module names. Returns 0 or -1 with err. */
int arch_resnet_imagenet(Arch *a, int depth, int in_c, int in_h, int in_w, int num_classes,
                         double width_mult, Err *err);

/* MobileNetV2 with torchvision's layout and module names (features.*, classifier.1), channels
 * rounded to multiples of 8 after width_mult. cifar = 0: torchvision's (stem stride 2, stage
 * strides 1,2,2,2,1,2,1, dropout 0.2); cifar = 1: LeGR's CIFAR variant (stem stride 1, stage
 * strides 1,1,2,1,1,2,1, dropout 0.5). Returns 0 or -1 with err. */
int arch_mobilenetv2(Arch *a, int cifar, int in_c, int in_h, int in_w, int num_classes,
                     double width_mult, Err *err);

/* Multiply-accumulates of conv + FC layers (docs/ALGORITHM.md section 5) and learnable parameter count
 * (conv + BN gamma/beta + FC weight/bias). */
long long arch_flops(const Arch *a);
long long arch_params(const Arch *a);

/* Print the network layer by layer (name, kind, output shape, params, MACs). */
void arch_print(const Arch *a, FILE *f);

#endif
