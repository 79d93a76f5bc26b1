/* Arch: building and validating the layer DAG, counting FLOPs and parameters, the CIFAR ResNet. */
#include "legr/arch.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

const char *const op_kind_names[OP_COUNT] = {"input", "conv",    "bn",    "relu",    "add",
                                             "shortcut", "gap", "fc", "maxpool", "relu6",
                                             "dropout"};
_Static_assert(OP_COUNT == 11, "op_kind_names must name every OpKind");

void arch_init(Arch *a) { memset(a, 0, sizeof *a); }

void arch_free(Arch *a)
{
    for (int i = 0; i < a->n_nodes; i++) free(a->nodes[i].chan_map);
    free(a->nodes);
    memset(a, 0, sizeof *a);
}

int arch_copy(Arch *dst, const Arch *src)
{
    arch_init(dst);
    dst->n_nodes = dst->cap = src->n_nodes;
    dst->num_classes = src->num_classes;
    dst->nodes = xcalloc((size_t)src->n_nodes, sizeof(Node));
    memcpy(dst->nodes, src->nodes, (size_t)src->n_nodes * sizeof(Node));
    for (int i = 0; i < src->n_nodes; i++) {
        const Node *s = &src->nodes[i];
        if (s->chan_map) {
            dst->nodes[i].chan_map = xmalloc((size_t)s->map_len * sizeof(int));
            memcpy(dst->nodes[i].chan_map, s->chan_map, (size_t)s->map_len * sizeof(int));
        }
    }
    return 0;
}

int arch_find(const Arch *a, const char *name)
{
    for (int i = 0; i < a->n_nodes; i++)
        if (strcmp(a->nodes[i].name, name) == 0) return i;
    return -1;
}

/* Append a node with the given kind, name and inputs; shapes are filled by the caller. */
static Node *push_node(Arch *a, OpKind kind, const char *name, int x, int y)
{
    if (a->n_nodes == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        a->nodes = xrealloc(a->nodes, (size_t)a->cap * sizeof(Node));
    }
    Node *n = &a->nodes[a->n_nodes++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    snprintf(n->name, sizeof n->name, "%s", name);
    n->in[0] = x;
    n->in[1] = y;
    n->groups = 1;
    n->stride = 1;
    return n;
}

static int check_input(const Arch *a, const char *name, const char *kind, int in, Err *err)
{
    if (in < 0 || in >= a->n_nodes)
        return err_set(err, LEGR_EXIT_USAGE, "layer '%s' (%s): input node %d does not exist",
                       name, kind, in);
    return 0;
}

/* Shape rules of one node given its producers' shapes; fills c/h/w (c is kept for conv/fc,
 * whose output width is a property of the node). */
static int shape_rules(Arch *a, int idx, Err *err)
{
    Node *n = &a->nodes[idx];
    const char *kind = n->kind >= 0 && n->kind < OP_COUNT ? op_kind_names[n->kind] : "?";
    const Node *p = n->kind == OP_INPUT ? NULL : &a->nodes[n->in[0]];
    switch (n->kind) {
    case OP_INPUT:
        if (n->c <= 0 || n->h <= 0 || n->w <= 0)
            return err_set(err, LEGR_EXIT_USAGE, "layer '%s' (input): shape %dx%dx%d must be positive",
                           n->name, n->c, n->h, n->w);
        return 0;
    case OP_CONV: {
        if (n->c <= 0 || n->k <= 0 || n->stride <= 0 || n->pad < 0 || n->groups <= 0)
            return err_set(err, LEGR_EXIT_USAGE,
                           "layer '%s' (conv): out channels %d, kernel %d, stride %d, padding %d, "
                           "groups %d: sizes must be positive (padding >= 0)",
                           n->name, n->c, n->k, n->stride, n->pad, n->groups);
        if (p->c % n->groups || n->c % n->groups)
            return err_set(err, LEGR_EXIT_USAGE,
                           "layer '%s' (conv): %d input and %d output channels do not divide "
                           "into %d groups", n->name, p->c, n->c, n->groups);
        if (p->h + 2 * n->pad < n->k || p->w + 2 * n->pad < n->k)
            return err_set(err, LEGR_EXIT_USAGE,
                           "layer '%s' (conv): kernel %d with padding %d leaves no output from a "
                           "%dx%d input", n->name, n->k, n->pad, p->h, p->w);
        n->h = (p->h + 2 * n->pad - n->k) / n->stride + 1;
        n->w = (p->w + 2 * n->pad - n->k) / n->stride + 1;
        return 0;
    }
    case OP_MAXPOOL:
        if (n->k <= 0 || n->stride <= 0 || n->pad < 0 || 2 * n->pad > n->k)
            return err_set(err, LEGR_EXIT_USAGE,
                           "layer '%s' (maxpool): kernel %d, stride %d, padding %d: sizes must "
                           "be positive and padding at most half the kernel", n->name, n->k,
                           n->stride, n->pad);
        if (p->h + 2 * n->pad < n->k || p->w + 2 * n->pad < n->k)
            return err_set(err, LEGR_EXIT_USAGE,
                           "layer '%s' (maxpool): kernel %d with padding %d leaves no output "
                           "from a %dx%d input", n->name, n->k, n->pad, p->h, p->w);
        n->c = p->c;
        n->h = (p->h + 2 * n->pad - n->k) / n->stride + 1;
        n->w = (p->w + 2 * n->pad - n->k) / n->stride + 1;
        return 0;
    case OP_DROPOUT:
        if (!(n->drop_p >= 0 && n->drop_p < 1))
            return err_set(err, LEGR_EXIT_USAGE,
                           "layer '%s' (dropout): probability %g is not in [0, 1)", n->name,
                           (double)n->drop_p);
        n->c = p->c;
        n->h = p->h;
        n->w = p->w;
        return 0;
    case OP_BN:
    case OP_RELU:
    case OP_RELU6:
        n->c = p->c;
        n->h = p->h;
        n->w = p->w;
        return 0;
    case OP_ADD: {
        const Node *q = &a->nodes[n->in[1]];
        if (p->c != q->c || p->h != q->h || p->w != q->w)
            return err_set(err, LEGR_EXIT_USAGE,
                           "layer '%s' (add): inputs '%s' (%dx%dx%d) and '%s' (%dx%dx%d) differ",
                           n->name, p->name, p->c, p->h, p->w, q->name, q->c, q->h, q->w);
        n->c = p->c;
        n->h = p->h;
        n->w = p->w;
        return 0;
    }
    case OP_SHORTCUT:
        if (n->stride <= 0 || n->c <= 0)
            return err_set(err, LEGR_EXIT_USAGE, "layer '%s' (shortcut): stride %d, channels %d "
                           "must be positive", n->name, n->stride, n->c);
        if (n->map_len != p->c)
            return err_set(err, LEGR_EXIT_USAGE,
                           "layer '%s' (shortcut): channel map has %d entries but input '%s' has "
                           "%d channels", n->name, n->map_len, p->name, p->c);
        for (int i = 0; i < n->map_len; i++) {
            int m = n->chan_map[i];
            if (m < 0 || m >= n->c || (i > 0 && m <= n->chan_map[i - 1]))
                return err_set(err, LEGR_EXIT_USAGE,
                               "layer '%s' (shortcut): channel map entry %d -> %d is not an "
                               "increasing index below %d", n->name, i, m, n->c);
        }
        n->h = (p->h + n->stride - 1) / n->stride;
        n->w = (p->w + n->stride - 1) / n->stride;
        return 0;
    case OP_GAP:
        n->c = p->c;
        n->h = n->w = 1;
        return 0;
    case OP_FC:
        if (n->c <= 0)
            return err_set(err, LEGR_EXIT_USAGE, "layer '%s' (fc): %d outputs must be positive",
                           n->name, n->c);
        if (p->h != 1 || p->w != 1)
            return err_set(err, LEGR_EXIT_USAGE,
                           "layer '%s' (fc): input '%s' is %dx%d spatially; pool it to 1x1 first",
                           n->name, p->name, p->h, p->w);
        n->h = n->w = 1;
        return 0;
    case OP_COUNT: break;
    }
    return err_set(err, LEGR_EXIT_INTERNAL, "layer '%s': unknown kind %s", n->name, kind);
}

/* Bound of every size field (channels, sides, kernel, stride, padding, groups): far above any
 * real network, and low enough that no shape arithmetic overflows an int. */
#define ARCH_SIZE_MAX (1 << 20)

/* Validate node idx and fill its output shape: the size bounds, then shape_rules, then at most
 * INT_MAX values per image. Used by the builder and by revalidation (stored architectures). */
static int derive_shape(Arch *a, int idx, Err *err)
{
    Node *n = &a->nodes[idx];
    const int size[7] = {n->c, n->h, n->w, n->k, n->stride, n->pad, n->groups};
    for (int i = 0; i < 7; i++)
        if (size[i] > ARCH_SIZE_MAX)
            return err_set(err, LEGR_EXIT_USAGE,
                           "layer '%s': a size of %d is over the limit of %d (channels, sides, "
                           "kernel, stride, padding, groups)", n->name, size[i], ARCH_SIZE_MAX);
    if (shape_rules(a, idx, err) != 0) return -1;
    if ((long long)n->c * n->h * n->w > INT_MAX)
        return err_set(err, LEGR_EXIT_USAGE,
                       "layer '%s': its %dx%dx%d output has more than 2^31 values per image",
                       n->name, n->c, n->h, n->w);
    return 0;
}

/* Finish adding node idx: validate, or drop it again on error. */
static int finish_node(Arch *a, Err *err)
{
    if (derive_shape(a, a->n_nodes - 1, err) != 0) {
        free(a->nodes[a->n_nodes - 1].chan_map);
        a->n_nodes--;
        return -1;
    }
    return a->n_nodes - 1;
}

int arch_add_input(Arch *a, const char *name, int c, int h, int w, Err *err)
{
    Node *n = push_node(a, OP_INPUT, name, -1, -1);
    n->c = c;
    n->h = h;
    n->w = w;
    return finish_node(a, err);
}

int arch_add_conv(Arch *a, const char *name, int in, int oc, int k, int stride, int pad,
                  int groups, Err *err)
{
    if (check_input(a, name, "conv", in, err)) return -1;
    Node *n = push_node(a, OP_CONV, name, in, -1);
    n->c = oc;
    n->k = k;
    n->stride = stride;
    n->pad = pad;
    n->groups = groups;
    return finish_node(a, err);
}

int arch_add_bn(Arch *a, const char *name, int in, Err *err)
{
    if (check_input(a, name, "bn", in, err)) return -1;
    push_node(a, OP_BN, name, in, -1);
    return finish_node(a, err);
}

int arch_add_relu(Arch *a, const char *name, int in, Err *err)
{
    if (check_input(a, name, "relu", in, err)) return -1;
    push_node(a, OP_RELU, name, in, -1);
    return finish_node(a, err);
}

int arch_add_relu6(Arch *a, const char *name, int in, Err *err)
{
    if (check_input(a, name, "relu6", in, err)) return -1;
    push_node(a, OP_RELU6, name, in, -1);
    return finish_node(a, err);
}

int arch_add_maxpool(Arch *a, const char *name, int in, int k, int stride, int pad, Err *err)
{
    if (check_input(a, name, "maxpool", in, err)) return -1;
    Node *n = push_node(a, OP_MAXPOOL, name, in, -1);
    n->k = k;
    n->stride = stride;
    n->pad = pad;
    return finish_node(a, err);
}

int arch_add_dropout(Arch *a, const char *name, int in, double p, Err *err)
{
    if (check_input(a, name, "dropout", in, err)) return -1;
    Node *n = push_node(a, OP_DROPOUT, name, in, -1);
    n->drop_p = (float)p;
    return finish_node(a, err);
}

int arch_set_conv_bias(Arch *a, int idx, Err *err)
{
    if (idx < 0 || idx >= a->n_nodes || a->nodes[idx].kind != OP_CONV)
        return err_set(err, LEGR_EXIT_USAGE, "node %d is not a conv and cannot take a bias", idx);
    a->nodes[idx].bias = 1;
    return 0;
}

int arch_add_add(Arch *a, const char *name, int x, int y, Err *err)
{
    if (check_input(a, name, "add", x, err) || check_input(a, name, "add", y, err)) return -1;
    push_node(a, OP_ADD, name, x, y);
    return finish_node(a, err);
}

int arch_add_shortcut(Arch *a, const char *name, int in, int oc, int stride, Err *err)
{
    if (check_input(a, name, "shortcut", in, err)) return -1;
    int ic = a->nodes[in].c;
    if (oc < ic)
        return err_set(err, LEGR_EXIT_USAGE,
                       "layer '%s' (shortcut): %d output channels cannot hold %d input channels",
                       name, oc, ic);
    Node *n = push_node(a, OP_SHORTCUT, name, in, -1);
    n->c = oc;
    n->stride = stride;
    n->map_len = ic;
    n->chan_map = xmalloc((size_t)(ic ? ic : 1) * sizeof(int));
    for (int i = 0; i < ic; i++) n->chan_map[i] = i;
    return finish_node(a, err);
}

int arch_add_gap(Arch *a, const char *name, int in, Err *err)
{
    if (check_input(a, name, "gap", in, err)) return -1;
    push_node(a, OP_GAP, name, in, -1);
    return finish_node(a, err);
}

int arch_add_fc(Arch *a, const char *name, int in, int out, Err *err)
{
    if (check_input(a, name, "fc", in, err)) return -1;
    Node *n = push_node(a, OP_FC, name, in, -1);
    n->c = out;
    int idx = finish_node(a, err);
    if (idx >= 0) a->num_classes = out;
    return idx;
}

int arch_revalidate(Arch *a, Err *err)
{
    if (a->n_nodes == 0 || a->nodes[0].kind != OP_INPUT)
        return err_set(err, LEGR_EXIT_USAGE, "network has no input node");
    for (int i = 0; i < a->n_nodes; i++) {
        Node *n = &a->nodes[i];
        for (int j = 0; j < 2; j++)
            if (n->in[j] >= i)
                return err_set(err, LEGR_EXIT_USAGE,
                               "layer '%s': input %d is not an earlier node", n->name, n->in[j]);
        if (n->kind != OP_INPUT && n->in[0] < 0)
            return err_set(err, LEGR_EXIT_USAGE, "layer '%s' has no input", n->name);
        if (n->kind == OP_ADD && n->in[1] < 0)
            return err_set(err, LEGR_EXIT_USAGE, "layer '%s' (add) needs two inputs", n->name);
        if (derive_shape(a, i, err) != 0) return -1;
    }
    const Node *last = &a->nodes[a->n_nodes - 1];
    a->num_classes = last->kind == OP_FC ? last->c : 0;
    return 0;
}

/* Multiply-accumulates of one node (conv and FC only). */
static long long node_flops(const Arch *a, const Node *n)
{
    if (n->kind == OP_CONV) {
        const Node *p = &a->nodes[n->in[0]];
        return (long long)n->h * n->w * n->c * (p->c / n->groups) * n->k * n->k;
    }
    if (n->kind == OP_FC) return (long long)a->nodes[n->in[0]].c * n->c;
    return 0;
}

/* Learnable parameters of one node. */
static long long node_params(const Arch *a, const Node *n)
{
    const Node *p = n->in[0] >= 0 ? &a->nodes[n->in[0]] : NULL;
    switch (n->kind) {
    case OP_CONV: return (long long)n->c * (p->c / n->groups) * n->k * n->k + (n->bias ? n->c : 0);
    case OP_BN: return 2LL * n->c;
    case OP_FC: return (long long)p->c * n->c + n->c;
    case OP_INPUT:
    case OP_RELU:
    case OP_RELU6:
    case OP_ADD:
    case OP_SHORTCUT:
    case OP_GAP:
    case OP_MAXPOOL:
    case OP_DROPOUT:
    case OP_COUNT: return 0;
    }
    return 0;
}

long long arch_flops(const Arch *a)
{
    long long f = 0;
    for (int i = 0; i < a->n_nodes; i++) f += node_flops(a, &a->nodes[i]);
    return f;
}

long long arch_params(const Arch *a)
{
    long long s = 0;
    for (int i = 0; i < a->n_nodes; i++) s += node_params(a, &a->nodes[i]);
    return s;
}

void arch_print(const Arch *a, FILE *f)
{
    fprintf(f, "%-4s %-22s %-9s %-16s %-14s %10s %12s\n", "#", "layer", "kind", "inputs",
            "output (CxHxW)", "params", "MACs");
    for (int i = 0; i < a->n_nodes; i++) {
        const Node *n = &a->nodes[i];
        char ins[32] = "-", shape[32];
        if (n->in[1] >= 0) snprintf(ins, sizeof ins, "%d,%d", n->in[0], n->in[1]);
        else if (n->in[0] >= 0) snprintf(ins, sizeof ins, "%d", n->in[0]);
        snprintf(shape, sizeof shape, "%dx%dx%d", n->c, n->h, n->w);
        fprintf(f, "%-4d %-22s %-9s %-16s %-14s %10lld %12lld\n", i, n->name,
                op_kind_names[n->kind], ins, shape, node_params(a, n), node_flops(a, n));
    }
    fprintf(f, "total: %lld parameters, %lld MACs (conv + fc)\n", arch_params(a), arch_flops(a));
}
