/* Net: an Arch built for a batch size, owning flat parameter/gradient/momentum/statistics buffers. */
#ifndef LEGR_NET_H
#define LEGR_NET_H

#include <stdint.h>
#include "legr/arch.h"
#include "legr/layers.h"

/* One tensor in a flat buffer. Names follow PyTorch's state_dict: "<node>.weight", ".bias",
 * ".running_mean", ".running_var". Shapes are PyTorch's (conv weight (OC, C/G, K, K)). */
typedef struct {
    char name[ARCH_NAME_MAX + 16];
    int node;          /* the node that owns it */
    size_t offset;     /* in floats, into the flat buffer */
    size_t count;      /* product of shape */
    int ndim;
    int shape[4];
} ParamSpec;

typedef struct {
    Arch arch;      /* a private copy */
    int batch;      /* maximum images per forward */

    /* Learnable parameters: one table, three buffers with the same layout. */
    int n_params;
    ParamSpec *params;
    size_t n_param_floats;
    float *param, *grad, *mom;

    /* Non-learned state (BN running mean/var), its own table and buffer. */
    int n_bufs;
    ParamSpec *bufs;
    size_t n_buf_floats;
    float *buf;

    /* Per node: index of its first entry in params (weight, then bias/beta) and bufs, or -1. */
    int *node_param, *node_buf;

    /* Per node: the fusion decisions (NET_FUSE_* bits) and, for a conv folded into an add in
     * eval mode, that add's index (else -1); computed once by net_build from the graph, so the
     * passes read them instead of re-deriving them from node adjacency. */
    unsigned char *fuse;
    int *fold_add;

    /* Activation arena and its gradient: node i has c*batch*h*w floats (channel-major) at
     * act + act_off[i]. Fused nodes skip their intermediate output: a BN or add followed by a
     * ReLU writes only the ReLU's region (and has no region of its own), and in eval mode a conv followed by BN(+ReLU), or by
     * BN, an add (as its first input) and a ReLU, writes only the last of them; every ReLU output
     * and the logits are always written. Outputs that backward reads (inputs of convs, BNs,
     * max pools and the FC; outputs of ReLUs, ReLU6s and max pools; the logits) have regions of
     * their own; the others live only during forward and share memory by liveness.
     * dact holds the activation gradients during backward: node i's at dact + dact_off[i]
     * (SIZE_MAX for the input and fused nodes, which have none); regions of nodes whose
     * gradients are never alive at the same backward step share memory, so dact_floats is
     * about the widest cut of the graph, not the sum of all activations. dzero_head[s] starts
     * the list (through dzero_next) of regions zeroed at the start of backward step s.
     * saved: per-node BN mean/rstd (2*c floats). */
    size_t *act_off, act_floats;
    size_t *dact_off, dact_floats;
    int *dzero_head, *dzero_next;
    float *act, *dact;
    size_t *saved_off, saved_floats;
    float *saved;

    float *work;            /* conv workspace, sized for the largest conv */
    size_t work_floats;
    float *probs;           /* (batch, classes) softmax output of the last forward */

    int cur_n;              /* images in the last forward */
    int train_mode;         /* mode of the last forward */
    float bn_momentum, bn_eps; /* 0.1 and 1e-5, as PyTorch */
    BnReduce bn_reduce;     /* optional cross-replica BN statistics (set by the MPI layer) */

    /* Dropout masks of the next training forward: image j of the batch has the global index
     * drop_image0 + j of step drop_step, under drop_seed (set by the training loop, so masks do
     * not depend on how the global batch is split across ranks). */
    uint64_t drop_seed, drop_step;
    long long drop_image0;
} Net;

/* Fusion bits of Net.fuse (see net.c for each rule). */
enum {
    NET_FUSE_BN_RELU = 1,   /* BN i writes max(bn, 0) into the ReLU i+1, its only consumer */
    NET_FUSE_ADD_RELU = 2,  /* add i writes max(a + b, 0) into the ReLU i+1, its only consumer */
    NET_FUSE_GRAD_SET = 4,  /* node i's gradient is overwritten by its only consumer */
    NET_FUSE_EVAL_BN = 8    /* eval: conv i runs the BN i+1 (and its fused ReLU) as epilogue */
};

/* Build a Net for `batch` images: copies arch, lays out every buffer, allocates everything that
 * forward/backward will touch. Parameters are zero until net_init_params or a load. */
int net_build(Net *net, const Arch *arch, int batch, Err *err);
void net_free(Net *net);

/* The most threads the engine's kernels use, whatever OpenBLAS's thread count says. */
int net_max_threads(void);

/* PyTorch-default initialisation from (seed, RNG_PURPOSE_INIT): conv and FC weights
 * Kaiming-uniform with a=sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)); FC bias the same bound;
 * BN gamma 1, beta 0, running mean 0, running var 1. Draws depend only on the seed and the
 * tensor's name, not on other layers. */
void net_init_params(Net *net, uint64_t seed);

/* Lookup by name; NULL when absent. */
const ParamSpec *net_find_param(const Net *net, const char *name);
const ParamSpec *net_find_buf(const Net *net, const char *name);

/* Forward n <= batch images. x is (n, C, H, W) row-major (the usual NCHW).
 * train != 0: BN uses batch statistics and updates running stats. Returns the logits, (n, classes). */
const float *net_forward(Net *net, const float *x, int n, int train);

/* Softmax cross-entropy of the last forward's logits: returns the sum of per-sample losses;
 * adds argmax hits to *ncorrect when non-NULL. */
double net_loss(Net *net, const int *labels, int *ncorrect);

/* Backward of the last (training) forward: grad += d(loss_scale * sum of losses)/d(params).
 * loss_scale is usually 1/(global batch size). Call net_zero_grad before. */
void net_backward(Net *net, const int *labels, float loss_scale);

void net_zero_grad(Net *net);

/* FNV-1a hash of parameters and buffers, to compare replicas and models. */
unsigned long long net_hash(const Net *net);

#endif
