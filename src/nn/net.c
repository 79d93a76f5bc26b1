/* Net: lays out flat buffers and arenas for an Arch and runs forward/backward over its nodes. */
#include "legr/net.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "legr/rng.h"
#include "kernels.h"
#include "parallel.h"

/* Append a tensor spec to a table; returns its index. */
static int spec_push(ParamSpec **tab, int *n, size_t *total, int node, const char *node_name,
                     const char *suffix, int ndim, const int *shape)
{
    *tab = xrealloc(*tab, (size_t)(*n + 1) * sizeof(ParamSpec));
    ParamSpec *s = &(*tab)[*n];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s.%s", node_name, suffix);
    s->node = node;
    s->offset = *total;
    s->ndim = ndim;
    s->count = 1;
    for (int i = 0; i < ndim; i++) {
        s->shape[i] = shape[i];
        s->count *= (size_t)shape[i];
    }
    /* Keep every tensor 16-float (64-byte) aligned inside the flat buffer. */
    *total += (s->count + 15) & ~(size_t)15;
    return (*n)++;
}

static void plan_fusion(Net *net);
static void plan_act_arena(Net *net);
static void plan_grad_arena(Net *net);

/* The parameter and buffer tables: one place decides the layout of all four flat buffers. */
static void layout_params(Net *net)
{
    const Arch *a = &net->arch;
    for (int i = 0; i < a->n_nodes; i++) {
        const Node *n = &a->nodes[i];
        const Node *p = n->in[0] >= 0 ? &a->nodes[n->in[0]] : NULL;
        net->node_param[i] = net->node_buf[i] = -1;
        if (n->kind == OP_CONV) {
            int shape[4] = {n->c, p->c / n->groups, n->k, n->k};
            net->node_param[i] = spec_push(&net->params, &net->n_params, &net->n_param_floats, i,
                                           n->name, "weight", 4, shape);
            if (n->bias)
                spec_push(&net->params, &net->n_params, &net->n_param_floats, i, n->name, "bias",
                          1, shape);
        } else if (n->kind == OP_BN) {
            int shape[1] = {n->c};
            net->node_param[i] = spec_push(&net->params, &net->n_params, &net->n_param_floats, i,
                                           n->name, "weight", 1, shape);
            spec_push(&net->params, &net->n_params, &net->n_param_floats, i, n->name, "bias", 1,
                      shape);
            net->node_buf[i] = spec_push(&net->bufs, &net->n_bufs, &net->n_buf_floats, i,
                                         n->name, "running_mean", 1, shape);
            spec_push(&net->bufs, &net->n_bufs, &net->n_buf_floats, i, n->name, "running_var", 1,
                      shape);
        } else if (n->kind == OP_FC) {
            int wshape[2] = {n->c, p->c}, bshape[1] = {n->c};
            net->node_param[i] = spec_push(&net->params, &net->n_params, &net->n_param_floats, i,
                                           n->name, "weight", 2, wshape);
            spec_push(&net->params, &net->n_params, &net->n_param_floats, i, n->name, "bias", 1,
                      bshape);
        }
    }
}

int net_build(Net *net, const Arch *arch, int batch, Err *err)
{
    memset(net, 0, sizeof *net);
    if (batch < 1) return err_set(err, LEGR_EXIT_USAGE, "batch size %d must be positive", batch);
    arch_copy(&net->arch, arch);
    if (arch_revalidate(&net->arch, err) != 0) {
        arch_free(&net->arch);
        return -1;
    }
    const Arch *a = &net->arch;
    if (a->n_nodes < 2 || a->nodes[a->n_nodes - 1].kind != OP_FC) {
        arch_free(&net->arch);
        return err_set(err, LEGR_EXIT_USAGE, "network must end with a fully connected layer");
    }
    net->batch = batch;
    net->bn_momentum = 0.1f;
    net->bn_eps = 1e-5f;
    net->node_param = xmalloc((size_t)a->n_nodes * sizeof(int));
    net->node_buf = xmalloc((size_t)a->n_nodes * sizeof(int));
    layout_params(net);
    net->fuse = xmalloc((size_t)a->n_nodes);
    net->fold_add = xmalloc((size_t)a->n_nodes * sizeof(int));
    plan_fusion(net);
    net->param = xalloc_floats(net->n_param_floats);
    net->grad = xalloc_floats(net->n_param_floats);
    net->mom = xalloc_floats(net->n_param_floats);
    net->buf = xalloc_floats(net->n_buf_floats);
    memset(net->param, 0, net->n_param_floats * sizeof(float));
    memset(net->grad, 0, net->n_param_floats * sizeof(float));
    memset(net->mom, 0, net->n_param_floats * sizeof(float));
    memset(net->buf, 0, net->n_buf_floats * sizeof(float));

    net->act_off = xmalloc((size_t)a->n_nodes * sizeof(size_t));
    net->saved_off = xmalloc((size_t)a->n_nodes * sizeof(size_t));
    for (int i = 0; i < a->n_nodes; i++) {
        const Node *n = &a->nodes[i];
        net->saved_off[i] = net->saved_floats;
        if (n->kind == OP_BN) net->saved_floats += 2 * (size_t)n->c;
        if (n->kind == OP_CONV) {
            const Node *p = &a->nodes[n->in[0]];
            size_t w = (size_t)conv_workspace_floats(batch, p->c, p->h, p->w, n->c, n->k,
                                                     n->stride, n->pad, n->groups);
            if (w > net->work_floats) net->work_floats = w;
        }
    }
    net->dact_off = xmalloc((size_t)a->n_nodes * sizeof(size_t));
    net->dzero_head = xmalloc(((size_t)a->n_nodes + 1) * sizeof(int));
    net->dzero_next = xmalloc((size_t)a->n_nodes * sizeof(int));
    for (int i = 0; i <= a->n_nodes; i++) net->dzero_head[i] = -1;
    plan_act_arena(net);
    plan_grad_arena(net);
    net->act = xalloc_floats(net->act_floats);
    net->dact = xalloc_floats(net->dact_floats);
    net->saved = xalloc_floats(net->saved_floats);
    net->work = xalloc_floats(net->work_floats);
    net->probs = xalloc_floats((size_t)batch * a->num_classes);
    /* act and dact are not cleared: forward overwrites every output before it is read and
     * backward zeroes each gradient region before accumulating, so clearing ~1 GB here would only
     * cost time (prune_apply builds a Net per search candidate). */
    return 0;
}

int net_max_threads(void) { return PAR_MAX_THREADS; }

void net_free(Net *net)
{
    arch_free(&net->arch);
    free(net->params);
    free(net->bufs);
    free(net->node_param);
    free(net->node_buf);
    free(net->fuse);
    free(net->fold_add);
    free(net->param);
    free(net->grad);
    free(net->mom);
    free(net->buf);
    free(net->act_off);
    free(net->dact_off);
    free(net->dzero_head);
    free(net->dzero_next);
    free(net->saved_off);
    free(net->act);
    free(net->dact);
    free(net->saved);
    free(net->work);
    free(net->probs);
    memset(net, 0, sizeof *net);
}

/* Fill a tensor with U(-bound, bound) from a stream keyed by the seed and the tensor's name. */
static void init_uniform(float *p, const ParamSpec *s, uint64_t seed, double bound)
{
    Rng r;
    rng_init(&r, seed, rng_stream_id(RNG_PURPOSE_INIT, hash_fnv1a(HASH_FNV_INIT, s->name,
                                                                  strlen(s->name))));
    for (size_t i = 0; i < s->count; i++) p[s->offset + i] = (float)((2 * rng_uniform(&r) - 1) * bound);
}

void net_init_params(Net *net, uint64_t seed)
{
    const Arch *a = &net->arch;
    for (int i = 0; i < a->n_nodes; i++) {
        const Node *n = &a->nodes[i];
        int pi = net->node_param[i];
        if (pi < 0) continue;
        const ParamSpec *w = &net->params[pi];
        if (n->kind == OP_CONV || n->kind == OP_FC) {
            /* kaiming_uniform_(a=sqrt(5)) gives bound = 1/sqrt(fan_in), as does the FC bias. */
            size_t fan_in = w->count / (size_t)w->shape[0];
            double bound = 1.0 / sqrt((double)fan_in);
            init_uniform(net->param, w, seed, bound);
            if (n->kind == OP_FC || n->bias)
                init_uniform(net->param, &net->params[pi + 1], seed, bound);
        } else if (n->kind == OP_BN) {
            const ParamSpec *b = &net->params[pi + 1];
            const ParamSpec *rm = &net->bufs[net->node_buf[i]];
            const ParamSpec *rv = &net->bufs[net->node_buf[i] + 1];
            for (size_t j = 0; j < w->count; j++) {
                net->param[w->offset + j] = 1.0f;
                net->param[b->offset + j] = 0.0f;
                net->buf[rm->offset + j] = 0.0f;
                net->buf[rv->offset + j] = 1.0f;
            }
        }
    }
}

static const ParamSpec *find_spec(const ParamSpec *tab, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(tab[i].name, name) == 0) return &tab[i];
    return NULL;
}

const ParamSpec *net_find_param(const Net *net, const char *name)
{
    return find_spec(net->params, net->n_params, name);
}

const ParamSpec *net_find_buf(const Net *net, const char *name)
{
    return find_spec(net->bufs, net->n_bufs, name);
}

/* Copy x (n, C, H, W) into the channel-major input activation (C, n, H, W). */
static void load_input(float *dst, const float *x, int n, int c, int hw)
{
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            memcpy(dst + ((size_t)ch * n + i) * hw, x + ((size_t)i * c + ch) * hw,
                   (size_t)hw * sizeof(float));
}

/* The one node that reads node i's output, or -1 when none or several do. */
static int sole_consumer(const Arch *a, int i)
{
    int found = -1;
    for (int j = i + 1; j < a->n_nodes; j++) {
        const Node *nd = &a->nodes[j];
        int uses = (nd->in[0] == i) + (nd->in[1] == i);
        if (!uses) continue;
        if (uses > 1 || found >= 0) return -1;
        found = j;
    }
    return found;
}

/* In eval mode a conv folds at most this many BN channels into its epilogue (a stack array). */
enum { NET_FOLD_MAX = 2048 };

/* The fusion plan, decided once per Net from the graph:
 * - BN+ReLU: a BN i whose only consumer is the ReLU (or ReLU6) i+1 writes max(bn(x), 0)
 *   (clamped at 6) straight into the activation's output and never stores its own; backward
 *   runs bn_relu_backward from the activation's gradient. Two passes over the activations fewer
 *   each way.
 * - add+ReLU: the same for an add whose only consumer is the ReLU i+1.
 * - grad set: node i's gradient is written once, by overwriting, instead of being zeroed and
 *   accumulated, when a single node consumes it and that node's backward has an overwriting form
 *   (a BN, fused or not; a ReLU that is not fused into its producer; an add; a conv).
 * - eval BN fold: in eval mode a conv i whose only consumer is the BN i+1 (of at most
 *   NET_FOLD_MAX channels) runs that BN, and the ReLU fused into it if any, as its epilogue.
 * - eval add fold: a folded conv whose BN is read only by an add j, as that add's first input,
 *   with the add fused with its ReLU, takes the add and the ReLU into its epilogue too; it runs
 *   when the net reaches the add (whose second input may come later) and fold_add[i] = j. */
static void plan_fusion(Net *net)
{
    const Arch *a = &net->arch;
    const int n = a->n_nodes;
    int *cons = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) {
        cons[i] = sole_consumer(a, i);
        net->fuse[i] = 0;
        net->fold_add[i] = -1;
    }
    for (int i = 0; i + 1 < n; i++) {
        const Node *r = &a->nodes[i + 1];
        int act_next = r->in[0] == i && cons[i] == i + 1;
        if (act_next && (r->kind == OP_RELU || r->kind == OP_RELU6) && a->nodes[i].kind == OP_BN)
            net->fuse[i] |= NET_FUSE_BN_RELU;
        if (act_next && r->kind == OP_RELU && a->nodes[i].kind == OP_ADD)
            net->fuse[i] |= NET_FUSE_ADD_RELU;
    }
    for (int i = 0; i < n; i++) {
        int j = cons[i];
        if (j < 0) continue;
        switch (a->nodes[j].kind) {
        case OP_BN:
        case OP_ADD:
        case OP_CONV: net->fuse[i] |= NET_FUSE_GRAD_SET; break;
        case OP_RELU:
            if (!(net->fuse[i] & (NET_FUSE_BN_RELU | NET_FUSE_ADD_RELU)))
                net->fuse[i] |= NET_FUSE_GRAD_SET;
            break;
        case OP_RELU6: /* no overwriting form; fused into its BN when it follows one */
        case OP_INPUT:
        case OP_SHORTCUT:
        case OP_GAP:
        case OP_FC:
        case OP_MAXPOOL:
        case OP_DROPOUT:
        case OP_COUNT: break;
        }
    }
    for (int i = 0; i + 1 < n; i++) {
        const Node *bn = &a->nodes[i + 1];
        if (a->nodes[i].kind != OP_CONV || bn->kind != OP_BN || bn->in[0] != i ||
            bn->c > NET_FOLD_MAX || cons[i] != i + 1)
            continue;
        net->fuse[i] |= NET_FUSE_EVAL_BN;
        int j = cons[i + 1];
        if (j >= 0 && a->nodes[j].in[0] == i + 1 && (net->fuse[j] & NET_FUSE_ADD_RELU))
            net->fold_add[i] = j;
    }
    free(cons);
}

/* Region sizes are rounded to 16 floats (64 bytes) so that every region starts aligned. */
static size_t region_floats(const Node *nd, int batch)
{
    return ((size_t)nd->c * batch * nd->h * nd->w + 15) & ~(size_t)15;
}

/*
 * Place regions[0..n) (node indices, in the order they come alive) at offsets from `base`:
 * region j is alive over the steps lo[j]..hi[j], and two regions alive at a common step never
 * share memory. First fit: the lowest offset clear of every placed region alive with j (retried
 * past each overlap until a pass finds none; networks have a few hundred nodes). Returns the end
 * of the highest region.
 */
static size_t place_regions(const int *regions, int n, const int *lo, const int *hi,
                            const size_t *size, size_t base, size_t *off)
{
    size_t end = base;
    for (int i = 0; i < n; i++) {
        int j = regions[i];
        size_t o = base;
        for (int moved = 1; moved;) {
            moved = 0;
            for (int k = 0; k < i; k++) {
                int q = regions[k];
                if (lo[q] > hi[j] || lo[j] > hi[q]) continue;
                if (o < off[q] + size[q] && off[q] < o + size[j]) {
                    o = off[q] + size[q];
                    moved = 1;
                }
            }
        }
        off[j] = o;
        if (o + size[j] > end) end = o + size[j];
    }
    return end;
}

/* Stable insertion sort of regions by key, ascending (desc = 0) or descending (desc = 1). */
static void sort_regions(int *regions, int n, const int *key, int desc)
{
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0; k--) {
            int a = key[regions[k - 1]], b = key[regions[k]];
            if (desc ? a >= b : a <= b) break;
            int t = regions[k];
            regions[k] = regions[k - 1];
            regions[k - 1] = t;
        }
}

/* The last node that reads node j's output (j itself when none does). */
static int last_consumer(const Arch *a, int j)
{
    int last = j;
    for (int c = j + 1; c < a->n_nodes; c++)
        if (a->nodes[c].in[0] == j || a->nodes[c].in[1] == j) last = c;
    return last;
}

/*
 * Activation arena layout. Backward reads the input of every conv, BN, max pool and FC, the
 * output of every ReLU, ReLU6 and max pool (the gradient masks), and the logits are the
 * result: those activations are kept for the whole step, each in a region of its own. The
 * others (a BN feeding only an add, a shortcut, an add whose output only another add reads...)
 * are alive only in forward, from their producer's step (a conv writes its BN's output in eval
 * mode) to their last consumer's; they share memory by liveness above the kept ones. A BN or
 * add fused with its ReLU never writes its output: it points at the ReLU's region. In a
 * bottleneck ResNet the third BN of every block is such a forward-only output.
 */
static void plan_act_arena(Net *net)
{
    const Arch *a = &net->arch;
    const int n = a->n_nodes;
    unsigned char *kept = xcalloc((size_t)n, 1);
    int *lo = xmalloc((size_t)n * sizeof(int)), *hi = xmalloc((size_t)n * sizeof(int));
    int *regions = xmalloc((size_t)n * sizeof(int));
    size_t *size = xmalloc((size_t)n * sizeof(size_t));
    kept[n - 1] = 1;
    for (int i = 0; i < n; i++) {
        const Node *nd = &a->nodes[i];
        switch (nd->kind) {
        case OP_CONV:
        case OP_BN:
        case OP_FC: kept[nd->in[0]] = 1; break;
        case OP_MAXPOOL: kept[nd->in[0]] = kept[i] = 1; break;
        case OP_RELU:
        case OP_RELU6: kept[i] = 1; break;
        case OP_INPUT:
        case OP_ADD:
        case OP_SHORTCUT:
        case OP_GAP:
        case OP_DROPOUT: break;
        case OP_COUNT: CHECK(0, "node kind %d in a network", nd->kind);
        }
    }
    net->act_floats = 0;
    int n_temp = 0;
    for (int j = 0; j < n; j++) {
        size[j] = region_floats(&a->nodes[j], net->batch);
        if (net->fuse[j] & (NET_FUSE_BN_RELU | NET_FUSE_ADD_RELU)) continue;
        if (kept[j]) {
            net->act_off[j] = net->act_floats;
            net->act_floats += size[j];
        } else {
            lo[j] = a->nodes[j].kind == OP_BN ? a->nodes[j].in[0] : j;
            hi[j] = last_consumer(a, j);
            regions[n_temp++] = j;
        }
    }
    sort_regions(regions, n_temp, lo, 0);
    net->act_floats = place_regions(regions, n_temp, lo, hi, size, net->act_floats, net->act_off);
    for (int j = n - 2; j >= 0; j--)
        if (net->fuse[j] & (NET_FUSE_BN_RELU | NET_FUSE_ADD_RELU))
            net->act_off[j] = net->act_off[j + 1];
    free(kept);
    free(lo);
    free(hi);
    free(regions);
    free(size);
}

/*
 * Gradient arena layout by liveness. Backward visits nodes from last to first; node j's
 * activation gradient is alive from the step of its highest-numbered consumer, which writes it
 * first (the softmax, before step n-1, for the logits), down to the step that reads it last:
 * j itself, or j-1 when j-1 is a BN or add fused into j (it reads j's gradient in its place).
 * Regions alive at no common step share memory, so the arena holds about the widest cut of the
 * graph instead of every activation: for ResNet-50 a small fraction of the activations' size.
 * Nodes without a gradient of their own (the input, fused BNs and adds) get none. A region that
 * is accumulated into is zeroed at the start of the step that first writes it (dzero_head and
 * dzero_next list those per step).
 */
static void plan_grad_arena(Net *net)
{
    const Arch *a = &net->arch;
    const int n = a->n_nodes;
    int *lo = xmalloc((size_t)n * sizeof(int)), *hi = xmalloc((size_t)n * sizeof(int));
    int *regions = xmalloc((size_t)n * sizeof(int));
    size_t *size = xmalloc((size_t)n * sizeof(size_t));
    int n_regions = 0;
    for (int j = 0; j < n; j++) {
        const Node *nd = &a->nodes[j];
        net->dact_off[j] = SIZE_MAX;
        net->dzero_next[j] = -1;
        if (nd->kind == OP_INPUT || (net->fuse[j] & (NET_FUSE_BN_RELU | NET_FUSE_ADD_RELU)))
            continue;
        hi[j] = j == n - 1 ? n : last_consumer(a, j);
        lo[j] = j > 0 && (net->fuse[j - 1] & (NET_FUSE_BN_RELU | NET_FUSE_ADD_RELU)) ? j - 1 : j;
        size[j] = region_floats(nd, net->batch);
        regions[n_regions++] = j;
    }
    sort_regions(regions, n_regions, hi, 1);
    net->dact_floats = place_regions(regions, n_regions, lo, hi, size, 0, net->dact_off);
    for (int i = 0; i < n_regions; i++) {
        int j = regions[i];
        if (j < n - 1 && !(net->fuse[j] & NET_FUSE_GRAD_SET)) {
            net->dzero_next[j] = net->dzero_head[hi[j]];
            net->dzero_head[hi[j]] = j;
        }
    }
    free(lo);
    free(hi);
    free(regions);
    free(size);
}

/* The clamp of the activation fused into BN i (NET_FUSE_BN_RELU): ReLU or ReLU6. */
static float fused_cap(const Arch *a, int i)
{
    return a->nodes[i + 1].kind == OP_RELU6 ? 6.0f : INFINITY;
}

/* Eval-mode conv i with BN i+1 as epilogue, then with res the residual and the ReLU of an add
 * fold, or else the ReLU i+2 when fused; out is where the last of these writes. A conv bias
 * joins the BN's shift: (y + b - mean) * scale + beta. */
static void conv_bn_eval(Net *net, int i, const float *res, float *out, int n)
{
    const Arch *a = &net->arch;
    const Node *nd = &a->nodes[i], *p = &a->nodes[nd->in[0]], *bn = &a->nodes[i + 1];
    int pi = net->node_param[i + 1], bi = net->node_buf[i + 1];
    const float *w = net->param + net->params[net->node_param[i]].offset;
    const float *gamma = net->param + net->params[pi].offset;
    const float *beta = net->param + net->params[pi + 1].offset;
    const float *rm = net->buf + net->bufs[bi].offset;
    const float *rv = net->buf + net->bufs[bi + 1].offset;
    float scale[NET_FOLD_MAX], mean[NET_FOLD_MAX];
    for (int c = 0; c < bn->c; c++) scale[c] = (float)(gamma[c] / sqrt((double)rv[c] + net->bn_eps));
    if (nd->bias) {
        const float *b = net->param + net->params[net->node_param[i] + 1].offset;
        for (int c = 0; c < bn->c; c++) mean[c] = rm[c] - b[c];
        rm = mean;
    }
    /* The clamp: the add fold's ReLU, else the ReLU or ReLU6 fused into the BN, else none. */
    float cap = res ? INFINITY : (net->fuse[i + 1] & NET_FUSE_BN_RELU) ? fused_cap(a, i + 1) : 0.0f;
    conv_forward_affine(out, net->work, net->act + net->act_off[nd->in[0]], w, n, p->c, p->h,
                        p->w, nd->c, nd->k, nd->stride, nd->pad, nd->groups, rm, scale, beta, res,
                        cap);
}

/* Dropout key of node i in the current step: masks differ between nodes and steps. */
static uint64_t dropout_key(const Net *net, int i)
{
    uint64_t k[2] = {net->drop_step, (uint64_t)i};
    return hash_fnv1a(HASH_FNV_INIT, k, sizeof k);
}

const float *net_forward(Net *net, const float *x, int n, int train)
{
    const Arch *a = &net->arch;
    CHECK(n >= 1 && n <= net->batch, "forward of %d images on a net built for %d", n, net->batch);
    net->cur_n = n;
    net->train_mode = train;
    for (int i = 0; i < a->n_nodes; i++) {
        const Node *nd = &a->nodes[i];
        const unsigned fz = net->fuse[i];
        float *out = net->act + net->act_off[i];
        const Node *p = nd->in[0] >= 0 ? &a->nodes[nd->in[0]] : NULL;
        const float *inp = p ? net->act + net->act_off[nd->in[0]] : NULL;
        const float *w = net->node_param[i] >= 0 ? net->param + net->params[net->node_param[i]].offset : NULL;
        long long m = (long long)n * nd->h * nd->w;
        switch (nd->kind) {
        case OP_INPUT: load_input(out, x, n, nd->c, nd->h * nd->w); break;
        case OP_CONV:
            if (!train && net->fold_add[i] >= 0) break; /* done at the add */
            if (!train && (fz & NET_FUSE_EVAL_BN)) {
                int last = net->fuse[i + 1] & NET_FUSE_BN_RELU ? i + 2 : i + 1;
                conv_bn_eval(net, i, NULL, net->act + net->act_off[last], n);
                break;
            }
            conv_forward(out, net->work, inp, w, n, p->c, p->h, p->w, nd->c, nd->k, nd->stride,
                         nd->pad, nd->groups);
            if (nd->bias)
                bias_forward(out, net->param + net->params[net->node_param[i] + 1].offset, nd->c,
                             m);
            break;
        case OP_BN: {
            if (!train && (net->fuse[nd->in[0]] & NET_FUSE_EVAL_BN)) break; /* done by the conv */
            const float *beta = net->param + net->params[net->node_param[i] + 1].offset;
            float *rm = net->buf + net->bufs[net->node_buf[i]].offset;
            float *rv = net->buf + net->bufs[net->node_buf[i] + 1].offset;
            float *sv = net->saved + net->saved_off[i];
            const BnReduce *red = net->bn_reduce.fn ? &net->bn_reduce : NULL;
            if (fz & NET_FUSE_BN_RELU) {
                float *rout = net->act + net->act_off[i + 1];
                float cap = fused_cap(a, i);
                if (train)
                    bn_relu_forward_train(rout, sv, sv + nd->c, rm, rv, inp, w, beta, nd->c,
                                          (int)m, net->bn_momentum, net->bn_eps, red, cap);
                else
                    bn_relu_forward_eval(rout, inp, w, beta, rm, rv, nd->c, (int)m, net->bn_eps,
                                         cap);
            } else if (train) {
                bn_forward_train(out, sv, sv + nd->c, rm, rv, inp, w, beta, nd->c, (int)m,
                                 net->bn_momentum, net->bn_eps, red);
            } else {
                bn_forward_eval(out, inp, w, beta, rm, rv, nd->c, (int)m, net->bn_eps);
            }
            break;
        }
        case OP_RELU:
            if (!(net->fuse[nd->in[0]] & (NET_FUSE_BN_RELU | NET_FUSE_ADD_RELU)))
                relu_forward(out, inp, m * nd->c);
            break;
        case OP_RELU6:
            if (!(net->fuse[nd->in[0]] & NET_FUSE_BN_RELU)) relu6_forward(out, inp, m * nd->c);
            break;
        case OP_ADD: {
            const float *other = net->act + net->act_off[nd->in[1]];
            int conv = nd->in[0] - 1; /* the conv of a BN first input, when folded here */
            if (!train && conv >= 0 && net->fold_add[conv] == i)
                conv_bn_eval(net, conv, other, net->act + net->act_off[i + 1], n);
            else if (fz & NET_FUSE_ADD_RELU)
                add_relu_forward(net->act + net->act_off[i + 1], inp, other, m * nd->c);
            else
                add_forward(out, inp, other, m * nd->c);
            break;
        }
        case OP_SHORTCUT:
            shortcut_forward(out, inp, nd->chan_map, n, p->c, p->h, p->w, nd->c, nd->stride);
            break;
        case OP_GAP: gap_forward(out, inp, n, p->c, p->h, p->w); break;
        case OP_MAXPOOL:
            maxpool_forward(out, inp, n, p->c, p->h, p->w, nd->k, nd->stride, nd->pad);
            break;
        case OP_DROPOUT:
            if (train)
                dropout_forward(out, inp, n, nd->c, nd->h * nd->w, nd->drop_p, net->drop_seed,
                                dropout_key(net, i), net->drop_image0);
            else
                memcpy(out, inp, (size_t)(m * nd->c) * sizeof(float));
            break;
        case OP_FC:
            fc_forward(out, inp, w, net->param + net->params[net->node_param[i] + 1].offset, n,
                       p->c, nd->c);
            break;
        case OP_COUNT: CHECK(0, "unknown node kind %d", nd->kind);
        }
    }
    return net->act + net->act_off[a->n_nodes - 1];
}

double net_loss(Net *net, const int *labels, int *ncorrect)
{
    const Arch *a = &net->arch;
    int hits = 0;
    double s = softmax_ce_forward(net->probs, &hits, net->act + net->act_off[a->n_nodes - 1],
                                  labels, net->cur_n, a->num_classes);
    if (ncorrect) *ncorrect += hits;
    return s;
}

void net_zero_grad(Net *net) { memset(net->grad, 0, net->n_param_floats * sizeof(float)); }

void net_backward(Net *net, const int *labels, float loss_scale)
{
    const Arch *a = &net->arch;
    const int n = net->cur_n;
    CHECK(net->train_mode, "backward needs a training-mode forward");
    softmax_ce_backward(net->dact + net->dact_off[a->n_nodes - 1], net->probs, labels, n,
                        a->num_classes, loss_scale);
    for (int i = a->n_nodes - 1; i >= 1; i--) {
        const Node *nd = &a->nodes[i];
        const Node *p = &a->nodes[nd->in[0]];
        const unsigned pf = net->fuse[nd->in[0]];
        /* Gradients that this step is the first to write and that accumulate start at zero (the
         * region may have held another node's gradient earlier in the pass). */
        for (int j = net->dzero_head[i]; j >= 0; j = net->dzero_next[j]) {
            const Node *z = &a->nodes[j];
            memset(net->dact + net->dact_off[j], 0, (size_t)z->c * n * z->h * z->w * sizeof(float));
        }
        const float *dout = net->dact + net->dact_off[i];
        const float *out = net->act + net->act_off[i];
        const float *inp = net->act + net->act_off[nd->in[0]];
        /* The input node needs no gradient. */
        float *dinp = p->kind == OP_INPUT ? NULL : net->dact + net->dact_off[nd->in[0]];
        int pi = net->node_param[i];
        const float *w = pi >= 0 ? net->param + net->params[pi].offset : NULL;
        float *dw = pi >= 0 ? net->grad + net->params[pi].offset : NULL;
        long long m = (long long)n * nd->h * nd->w;
        switch (nd->kind) {
        case OP_CONV:
            if (nd->bias) bias_backward(net->grad + net->params[pi + 1].offset, dout, nd->c, m);
            if (dinp && (pf & NET_FUSE_GRAD_SET))
                conv_backward_set(dinp, dw, net->work, dout, inp, w, n, p->c, p->h, p->w, nd->c,
                                  nd->k, nd->stride, nd->pad, nd->groups);
            else
                conv_backward(dinp, dw, net->work, dout, inp, w, n, p->c, p->h, p->w, nd->c,
                              nd->k, nd->stride, nd->pad, nd->groups);
            break;
        case OP_BN: {
            const float *sv = net->saved + net->saved_off[i];
            const BnReduce *red = net->bn_reduce.fn ? &net->bn_reduce : NULL;
            float *db = net->grad + net->params[pi + 1].offset;
            int fused = net->fuse[i] & NET_FUSE_BN_RELU;
            const float *dy = fused ? net->dact + net->dact_off[i + 1] : dout;
            const float *mask = fused ? net->act + net->act_off[i + 1] : NULL;
            float cap = fused ? fused_cap(a, i) : 0.0f;
            if (dinp && (pf & NET_FUSE_GRAD_SET))
                bn_backward_set(dinp, dw, db, dy, mask, cap, inp, sv, sv + nd->c, w, nd->c,
                                (int)m, red);
            else if (fused)
                bn_relu_backward(dinp, dw, db, dy, mask, cap, inp, sv, sv + nd->c, w, nd->c,
                                 (int)m, red);
            else
                bn_backward(dinp, dw, db, dy, inp, sv, sv + nd->c, w, nd->c, (int)m, red);
            break;
        }
        case OP_RELU:
            if (!dinp || (pf & (NET_FUSE_BN_RELU | NET_FUSE_ADD_RELU))) break;
            if (pf & NET_FUSE_GRAD_SET)
                relu_backward_set(dinp, dout, out, m * nd->c);
            else
                relu_backward(dinp, dout, out, m * nd->c);
            break;
        case OP_RELU6:
            if (dinp && !(pf & NET_FUSE_BN_RELU)) relu6_backward(dinp, dout, out, m * nd->c);
            break;
        case OP_ADD: {
            const Node *q = &a->nodes[nd->in[1]];
            float *db = q->kind == OP_INPUT ? NULL : net->dact + net->dact_off[nd->in[1]];
            int set_a = (pf & NET_FUSE_GRAD_SET) != 0;
            int set_b = (net->fuse[nd->in[1]] & NET_FUSE_GRAD_SET) != 0;
            if (net->fuse[i] & NET_FUSE_ADD_RELU)
                add_relu_backward(dinp, db, net->dact + net->dact_off[i + 1],
                                  net->act + net->act_off[i + 1], m * nd->c, set_a, set_b);
            else
                add_backward_set(dinp, db, dout, m * nd->c, set_a, set_b);
            break;
        }
        case OP_SHORTCUT:
            if (dinp)
                shortcut_backward(dinp, dout, nd->chan_map, n, p->c, p->h, p->w, nd->c,
                                  nd->stride);
            break;
        case OP_GAP:
            if (dinp) gap_backward(dinp, dout, n, p->c, p->h, p->w);
            break;
        case OP_MAXPOOL:
            if (dinp)
                maxpool_backward(dinp, dout, inp, out, n, p->c, p->h, p->w, nd->k, nd->stride,
                                 nd->pad);
            break;
        case OP_DROPOUT:
            if (dinp)
                dropout_backward(dinp, dout, n, nd->c, nd->h * nd->w, nd->drop_p, net->drop_seed,
                                 dropout_key(net, i), net->drop_image0);
            break;
        case OP_FC:
            fc_backward(dinp, dw, net->grad + net->params[pi + 1].offset, dout, inp, w, n, p->c,
                        nd->c);
            break;
        case OP_INPUT:
        case OP_COUNT: CHECK(0, "node kind %d has no backward", nd->kind);
        }
    }
}

unsigned long long net_hash(const Net *net)
{
    unsigned long long h = HASH_FNV_INIT;
    for (int i = 0; i < net->n_params; i++)
        h = hash_fnv1a(h, net->param + net->params[i].offset,
                       net->params[i].count * sizeof(float));
    for (int i = 0; i < net->n_bufs; i++)
        h = hash_fnv1a(h, net->buf + net->bufs[i].offset, net->bufs[i].count * sizeof(float));
    return h;
}
