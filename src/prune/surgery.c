/* Surgery: derive the pruned Arch from a keep-mask and copy the surviving weights into a new Net. */
#include "legr/prune.h"

#include <stdlib.h>
#include <string.h>

/* Position of original channel `ch` in the ascending kept list, or -1. */
static int kept_pos(const int *kept, int n, int ch)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (kept[mid] == ch) return mid;
        if (kept[mid] < ch) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* Does the mask describe a network with src's channel counts? */
static int mask_fits(const Arch *src, const KeepMask *m, Err *err)
{
    if (m->n_nodes != src->n_nodes)
        return err_set(err, LEGR_EXIT_USAGE, "keep-mask covers %d layers, the network has %d",
                       m->n_nodes, src->n_nodes);
    for (int n = 0; n < src->n_nodes; n++) {
        int k;
        prune_mask_kept(m, n, &k);
        if (m->node_c0[n] != src->nodes[n].c || k < 1 || k > m->node_c0[n])
            return err_set(err, LEGR_EXIT_USAGE, "keep-mask does not fit layer '%s': %d of %d "
                           "channels kept, the layer has %d", src->nodes[n].name, k,
                           m->node_c0[n], src->nodes[n].c);
    }
    return 0;
}

/* New channel map of shortcut n: kept input channel p goes where its original target went. */
static int rebuild_shortcut(Node *dn, const Node *sn, const KeepMask *m, int n, Err *err)
{
    int ki, ko;
    const int *kin = prune_mask_kept(m, sn->in[0], &ki);
    const int *kout = prune_mask_kept(m, n, &ko);
    int *map = xmalloc((size_t)ki * sizeof(int));
    for (int p = 0; p < ki; p++) {
        map[p] = kept_pos(kout, ko, sn->chan_map[kin[p]]);
        if (map[p] < 0) {
            free(map);
            return err_set(err, LEGR_EXIT_USAGE, "keep-mask keeps input channel %d of shortcut "
                           "'%s' but drops the output channel %d it feeds", kin[p], sn->name,
                           sn->chan_map[kin[p]]);
        }
    }
    free(dn->chan_map);
    dn->chan_map = map;
    dn->map_len = ki;
    return 0;
}

int prune_arch_apply(const Arch *src, const KeepMask *m, Arch *dst, Err *err)
{
    arch_init(dst);
    if (mask_fits(src, m, err)) return -1;
    arch_copy(dst, src);
    for (int n = 0; n < src->n_nodes; n++) {
        const Node *sn = &src->nodes[n];
        Node *dn = &dst->nodes[n];
        int k;
        prune_mask_kept(m, n, &k);
        if (sn->kind == OP_CONV) {
            /* A depthwise conv's groups follow its channels. */
            if (sn->groups > 1 && sn->groups == sn->c && sn->groups == src->nodes[sn->in[0]].c)
                dn->groups = k;
            dn->c = k;
        } else if (sn->kind == OP_SHORTCUT) {
            dn->c = k;
            if (rebuild_shortcut(dn, sn, m, n, err)) goto fail;
        }
    }
    if (arch_revalidate(dst, err)) goto fail;
    for (int n = 0; n < dst->n_nodes; n++) {
        int k;
        prune_mask_kept(m, n, &k);
        if (dst->nodes[n].c != k) {
            err_set(err, LEGR_EXIT_USAGE, "keep-mask keeps %d channels of layer '%s', its "
                    "inputs leave %d", k, dst->nodes[n].name, dst->nodes[n].c);
            goto fail;
        }
    }
    return 0;
fail:
    arch_free(dst);
    return -1;
}

/* Gather the kept entries of a per-channel vector. */
static void gather(float *d, const float *s, const int *kept, int k)
{
    for (int i = 0; i < k; i++) d[i] = s[kept[i]];
}

/* Conv weight (OC, C/G, K, K): kept filters; for an ungrouped conv also the kept input
 * channels of its producer, otherwise whole filters (their inputs are tied or fixed); the kept
 * entries of the bias. */
static void copy_conv(Net *dst, const Net *src, const KeepMask *m, int n)
{
    const ParamSpec *sw = &src->params[src->node_param[n]], *dw = &dst->params[dst->node_param[n]];
    const Node *nd = &src->arch.nodes[n];
    int ko, ki;
    const int *kout = prune_mask_kept(m, n, &ko);
    const int *kin = prune_mask_kept(m, nd->in[0], &ki);
    size_t kk = (size_t)nd->k * nd->k, cin0 = (size_t)sw->shape[1], cin = (size_t)dw->shape[1];
    const float *s = src->param + sw->offset;
    float *d = dst->param + dw->offset;
    for (int o = 0; o < ko; o++) {
        const float *so = s + (size_t)kout[o] * cin0 * kk;
        float *dout = d + (size_t)o * cin * kk;
        if (nd->groups > 1) {
            memcpy(dout, so, cin * kk * sizeof(float));
            continue;
        }
        for (int i = 0; i < ki; i++)
            memcpy(dout + (size_t)i * kk, so + (size_t)kin[i] * kk, kk * sizeof(float));
    }
    if (nd->bias)
        gather(dst->param + dst->params[dst->node_param[n] + 1].offset,
               src->param + src->params[src->node_param[n] + 1].offset, kout, ko);
}

/* BN gamma, beta, running mean and running var of node n. */
static void copy_bn(Net *dst, const Net *src, const KeepMask *m, int n)
{
    int k;
    const int *kept = prune_mask_kept(m, n, &k);
    for (int i = 0; i < 2; i++) {
        gather(dst->param + dst->params[dst->node_param[n] + i].offset,
               src->param + src->params[src->node_param[n] + i].offset, kept, k);
        gather(dst->buf + dst->bufs[dst->node_buf[n] + i].offset,
               src->buf + src->bufs[src->node_buf[n] + i].offset, kept, k);
    }
}

/* FC weight (OUT, IN): the kept input columns of every row; the bias whole. */
static void copy_fc(Net *dst, const Net *src, const KeepMask *m, int n)
{
    const ParamSpec *sw = &src->params[src->node_param[n]], *dw = &dst->params[dst->node_param[n]];
    int ki;
    const int *kin = prune_mask_kept(m, src->arch.nodes[n].in[0], &ki);
    for (int r = 0; r < dw->shape[0]; r++)
        gather(dst->param + dw->offset + (size_t)r * ki,
               src->param + sw->offset + (size_t)r * sw->shape[1], kin, ki);
    const ParamSpec *sb = &src->params[src->node_param[n] + 1];
    memcpy(dst->param + dst->params[dst->node_param[n] + 1].offset, src->param + sb->offset,
           sb->count * sizeof(float));
}

int prune_apply(const Net *src, const KeepMask *m, Net *dst, Err *err)
{
    memset(dst, 0, sizeof *dst);
    Arch a;
    if (prune_arch_apply(&src->arch, m, &a, err)) return -1;
    int rc = net_build(dst, &a, src->batch, err);
    arch_free(&a);
    if (rc) return -1;
    /* BN settings carry over; a cross-replica BN hook does not: the caller decides how the
     * pruned net is trained. */
    dst->bn_momentum = src->bn_momentum;
    dst->bn_eps = src->bn_eps;
    for (int n = 0; n < src->arch.n_nodes; n++) {
        switch (src->arch.nodes[n].kind) {
        case OP_CONV: copy_conv(dst, src, m, n); break;
        case OP_BN: copy_bn(dst, src, m, n); break;
        case OP_FC: copy_fc(dst, src, m, n); break;
        case OP_INPUT:
        case OP_RELU:
        case OP_RELU6:
        case OP_ADD:
        case OP_SHORTCUT:
        case OP_GAP:
        case OP_MAXPOOL:
        case OP_DROPOUT:
        case OP_COUNT: break; /* no tensors */
        }
    }
    return 0;
}
