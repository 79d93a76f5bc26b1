/* The eval forward's folds (a conv taking its BN, ReLU, and residual add + ReLU as its epilogue) against the same network run layer by layer with the unfused kernels, bit for bit, on graphs where each fold applies and where it must not. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "layers_testutil.h"
#include "legr/arch.h"
#include "legr/layers.h"
#include "legr/net.h"
#include "legr/util.h"
#include "../src/nn/kernels.h"

/* Every node into its own buffer with the plain kernels (conv_forward, bn_forward_eval,
 * add_forward, relu_forward, ...), in node order; returns the last node's output, (n, classes)
 * for an FC head. The fast convs are the same code as the net's, so any difference is in the
 * folding. */
static float *eval_unfused(const Net *net, const float *x, int n)
{
    const Arch *a = &net->arch;
    float **out = xmalloc((size_t)a->n_nodes * sizeof(float *));
    for (int i = 0; i < a->n_nodes; i++) {
        const Node *nd = &a->nodes[i];
        const Node *p = nd->in[0] >= 0 ? &a->nodes[nd->in[0]] : NULL;
        const float *in0 = p ? out[nd->in[0]] : NULL;
        const float *in1 = nd->in[1] >= 0 ? out[nd->in[1]] : NULL;
        int pi = net->node_param[i];
        const float *w = pi >= 0 ? net->param + net->params[pi].offset : NULL;
        const float *w2 = pi >= 0 ? net->param + net->params[pi + 1].offset : NULL;
        long long m = (long long)n * nd->h * nd->w, size = m * nd->c;
        out[i] = xalloc_floats((size_t)size);
        switch (nd->kind) {
        case OP_INPUT:
            for (int img = 0; img < n; img++)
                for (int c = 0; c < nd->c; c++)
                    memcpy(out[i] + ((size_t)c * n + img) * nd->h * nd->w,
                           x + ((size_t)img * nd->c + c) * nd->h * nd->w,
                           (size_t)nd->h * nd->w * sizeof(float));
            break;
        case OP_CONV: {
            float *ws = xalloc_floats((size_t)conv_workspace_floats(
                n, p->c, p->h, p->w, nd->c, nd->k, nd->stride, nd->pad, nd->groups) + 1);
            conv_forward(out[i], ws, in0, w, n, p->c, p->h, p->w, nd->c, nd->k, nd->stride,
                         nd->pad, nd->groups);
            free(ws);
            break;
        }
        case OP_BN: {
            const float *rm = net->buf + net->bufs[net->node_buf[i]].offset;
            const float *rv = net->buf + net->bufs[net->node_buf[i] + 1].offset;
            bn_forward_eval(out[i], in0, w, w2, rm, rv, nd->c, (int)m, net->bn_eps);
            break;
        }
        case OP_RELU: relu_forward(out[i], in0, size); break;
        case OP_ADD: add_forward(out[i], in0, in1, size); break;
        case OP_SHORTCUT:
            shortcut_forward(out[i], in0, nd->chan_map, n, p->c, p->h, p->w, nd->c, nd->stride);
            break;
        case OP_GAP: gap_forward(out[i], in0, n, p->c, p->h, p->w); break;
        case OP_FC: fc_forward(out[i], in0, w, w2, n, p->c, nd->c); break;
        default: EXPECT(0, "node kind %d not handled", nd->kind);
        }
    }
    float *last = out[a->n_nodes - 1];
    for (int i = 0; i < a->n_nodes - 1; i++) free(out[i]);
    free(out);
    return last;
}

/* Random BN gammas, betas and running statistics, so that a fold that drops or misplaces any
 * of them changes the logits. */
static void randomise_bn(Net *net, Rng *r)
{
    for (int i = 0; i < net->arch.n_nodes; i++) {
        const Node *nd = &net->arch.nodes[i];
        if (nd->kind != OP_BN) continue;
        float *g = net->param + net->params[net->node_param[i]].offset;
        float *b = net->param + net->params[net->node_param[i] + 1].offset;
        float *rm = net->buf + net->bufs[net->node_buf[i]].offset;
        float *rv = net->buf + net->bufs[net->node_buf[i] + 1].offset;
        tu_fill_uniform(r, g, nd->c, 0.5, 1.5);
        tu_fill_uniform(r, b, nd->c, -0.5, 0.5);
        tu_fill_uniform(r, rm, nd->c, -0.3, 0.3);
        tu_fill_uniform(r, rv, nd->c, 0.5, 2.0);
    }
}

static void check_net(const char *what, const Arch *a, int batch, int n, Rng *r)
{
    Err err = {0};
    Net net;
    if (net_build(&net, a, batch, &err) != 0) {
        EXPECT(0, "%s: net_build: %s", what, err.msg);
        return;
    }
    net_init_params(&net, 7);
    randomise_bn(&net, r);
    const Node *in = &a->nodes[0];
    size_t nx = (size_t)n * in->c * in->h * in->w, nout = (size_t)n * a->num_classes;
    float *x = xalloc_floats(nx);
    tu_fill_uniform(r, x, (long long)nx, -1, 1);
    float *want = eval_unfused(&net, x, n);
    const float *got = net_forward(&net, x, n, 0);
    int same = memcmp(got, want, nout * sizeof(float)) == 0;
    double worst = 0;
    for (size_t i = 0; i < nout; i++) worst = fmax(worst, fabs((double)got[i] - want[i]));
    EXPECT(same, "%s: eval logits differ from the unfused layers (largest difference %.3g)", what,
           worst);
    printf("%s: %d images, %zu logits identical to the unfused layers: %s\n", what, n, nout,
           same ? "yes" : "no");
    free(want);
    free(x);
    net_free(&net);
}

/* A graph with each case next to the folds: a conv + BN + ReLU (folded), a BN read by its add as
 * the second input (conv + BN folded, add + ReLU a pass), an add not followed by a ReLU (conv +
 * BN folded only), and a conv read by its BN and by an add (no fold at all). */
static int build_mixed(Arch *a, Err *err)
{
    arch_init(a);
    int x = arch_add_input(a, "in", 2, 8, 8, err);
    int c1 = arch_add_conv(a, "c1", x, 4, 3, 1, 1, 1, err);
    int r1 = arch_add_relu(a, "r1", arch_add_bn(a, "b1", c1, err), err);
    int c2 = arch_add_conv(a, "c2", r1, 4, 3, 1, 1, 1, err);
    int b2 = arch_add_bn(a, "b2", c2, err);
    int r2 = arch_add_relu(a, "r2", arch_add_add(a, "a2", r1, b2, err), err);
    int c3 = arch_add_conv(a, "c3", r2, 4, 3, 1, 1, 1, err);
    int a3 = arch_add_add(a, "a3", arch_add_bn(a, "b3", c3, err), r2, err);
    int c4 = arch_add_conv(a, "c4", r2, 4, 3, 1, 1, 1, err);
    int b4 = arch_add_bn(a, "b4", c4, err);
    int r4 = arch_add_relu(a, "r4", arch_add_add(a, "a4", c4, b4, err), err);
    int g = arch_add_gap(a, "gap", arch_add_add(a, "a5", a3, r4, err), err);
    return arch_add_fc(a, "fc", g, 10, err) < 0 ? -1 : 0;
}

int main(void)
{
    Rng r;
    rng_init(&r, 11, 5);
    Err err = {0};
    Arch a;
    /* ResNet-14: identity blocks (add of the block input) and downsampling blocks (the
     * shortcut node comes after the conv, so the conv runs at its add); widths 12, 6, 3. */
    if (arch_resnet_cifar(&a, 14, 3, 12, 12, 10, 1.0, &err) == 0) {
        check_net("ResNet-14 3x12x12", &a, 4, 4, &r);
        check_net("ResNet-14 3x12x12, 3 of 4 images", &a, 4, 3, &r);
        arch_free(&a);
    } else {
        EXPECT(0, "arch_resnet_cifar: %s", err.msg);
    }
    if (build_mixed(&a, &err) == 0)
        check_net("mixed graph", &a, 3, 3, &r);
    else
        EXPECT(0, "build_mixed: %s", err.msg);
    arch_free(&a);
    return harness_finish("test_net_eval");
}
