/* Prune graph: channel classes traced through the Arch DAG, prune groups, ranking entries and
 * the per-entry cost events used for exact incremental FLOP/parameter accounting. */
#include "legr/prune.h"

#include <stdlib.h>
#include <string.h>

/* Union-find with path halving; the smaller index becomes the root so roots are stable. */
static int uf_find(int *parent, int x)
{
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

static void uf_union(int *parent, int a, int b)
{
    a = uf_find(parent, a);
    b = uf_find(parent, b);
    if (a < b) parent[b] = a;
    else if (b < a) parent[a] = b;
}

/* Convs that tie output channel j to input channel j. */
static int conv_is_depthwise(const Arch *a, const Node *n)
{
    return n->groups > 1 && n->groups == n->c && n->groups == a->nodes[n->in[0]].c;
}

/* Grouped convs other than depthwise: their channel counts must stay divisible by the groups,
 * so their inputs and outputs are never pruned. */
static int conv_is_grouped(const Arch *a, const Node *n)
{
    return n->groups > 1 && !conv_is_depthwise(a, n);
}

/* Tie slots into classes following each node's channel rule; mark fixed slots. */
static void trace_slots(PruneGraph *g, const Arch *a, int *parent, unsigned char *fixed)
{
    for (int i = 0; i < g->n_slots; i++) parent[i] = i;
    for (int n = 0; n < a->n_nodes; n++) {
        const Node *nd = &a->nodes[n];
        int s = g->node_slot[n], s0 = nd->in[0] >= 0 ? g->node_slot[nd->in[0]] : -1;
        int s1 = nd->in[1] >= 0 ? g->node_slot[nd->in[1]] : -1;
        switch (nd->kind) {
        case OP_INPUT:
        case OP_FC:
            memset(fixed + s, 1, (size_t)nd->c);
            break;
        case OP_CONV:
            if (conv_is_depthwise(a, nd)) {
                for (int j = 0; j < nd->c; j++) uf_union(parent, s + j, s0 + j);
            } else if (conv_is_grouped(a, nd)) {
                memset(fixed + s, 1, (size_t)nd->c);
                memset(fixed + s0, 1, (size_t)a->nodes[nd->in[0]].c);
            }
            break;
        case OP_BN:
        case OP_RELU:
        case OP_RELU6:
        case OP_GAP:
        case OP_MAXPOOL:
        case OP_DROPOUT:
            for (int j = 0; j < nd->c; j++) uf_union(parent, s + j, s0 + j);
            break;
        case OP_ADD:
            for (int j = 0; j < nd->c; j++) {
                uf_union(parent, s + j, s0 + j);
                uf_union(parent, s + j, s1 + j);
            }
            break;
        case OP_SHORTCUT:
            for (int i = 0; i < nd->map_len; i++) uf_union(parent, s + nd->chan_map[i], s0 + i);
            break;
        case OP_COUNT:
            break;
        }
    }
}

/* Number classes in slot order; an entry is a class with a conv filter and no fixed slot. */
static void number_classes(PruneGraph *g, int *parent, const unsigned char *fixed)
{
    g->slot_class = xmalloc((size_t)g->n_slots * sizeof(int));
    int *root_class = xmalloc((size_t)g->n_slots * sizeof(int));
    g->n_classes = 0;
    for (int s = 0; s < g->n_slots; s++) {
        int r = uf_find(parent, s);
        if (r == s) root_class[s] = g->n_classes++;
        g->slot_class[s] = root_class[r];
    }
    free(root_class);
    unsigned char *has_conv = xcalloc((size_t)g->n_classes, 1);
    unsigned char *is_fixed = xcalloc((size_t)g->n_classes, 1);
    for (int s = 0; s < g->n_slots; s++)
        if (fixed[s]) is_fixed[g->slot_class[s]] = 1;
    for (int l = 0; l < g->n_convs; l++)
        for (int j = 0; j < g->conv_c[l]; j++)
            has_conv[g->slot_class[g->node_slot[g->conv_node[l]] + j]] = 1;
    g->class_entry = xmalloc((size_t)g->n_classes * sizeof(int));
    /* -2 marks a future entry; list_entries numbers them. */
    for (int k = 0; k < g->n_classes; k++) g->class_entry[k] = has_conv[k] && !is_fixed[k] ? -2 : -1;
    free(has_conv);
    free(is_fixed);
}

/* Groups: convs joined by a shared class, numbered by their first conv. */
static void find_groups(PruneGraph *g)
{
    int *parent = xmalloc((size_t)g->n_convs * sizeof(int));
    int *first_conv = xmalloc((size_t)g->n_classes * sizeof(int));
    for (int l = 0; l < g->n_convs; l++) parent[l] = l;
    for (int k = 0; k < g->n_classes; k++) first_conv[k] = -1;
    for (int l = 0; l < g->n_convs; l++)
        for (int j = 0; j < g->conv_c[l]; j++) {
            int k = g->slot_class[g->node_slot[g->conv_node[l]] + j];
            if (first_conv[k] < 0) first_conv[k] = l;
            else uf_union(parent, l, first_conv[k]);
        }
    free(first_conv);
    g->conv_group = xmalloc((size_t)g->n_convs * sizeof(int));
    int *root_group = xmalloc((size_t)g->n_convs * sizeof(int));
    g->n_groups = 0;
    for (int l = 0; l < g->n_convs; l++) {
        int r = uf_find(parent, l);
        if (r == l) root_group[l] = g->n_groups++;
        g->conv_group[l] = root_group[r];
    }
    free(root_group);
    free(parent);
    g->group_off = xcalloc((size_t)g->n_groups + 1, sizeof(int));
    g->group_conv = xmalloc((size_t)(g->n_convs ? g->n_convs : 1) * sizeof(int));
    for (int l = 0; l < g->n_convs; l++) g->group_off[g->conv_group[l] + 1]++;
    for (int q = 0; q < g->n_groups; q++) g->group_off[q + 1] += g->group_off[q];
    int *fill = xmalloc((size_t)(g->n_groups ? g->n_groups : 1) * sizeof(int));
    memcpy(fill, g->group_off, (size_t)g->n_groups * sizeof(int));
    for (int l = 0; l < g->n_convs; l++) g->group_conv[fill[g->conv_group[l]]++] = l;
    free(fill);
}

/* Entries in (group, position) order, and the member filters of each. */
static void list_entries(PruneGraph *g)
{
    g->n_entries = 0;
    int cap = g->n_classes ? g->n_classes : 1;
    g->entry_class = xmalloc((size_t)cap * sizeof(int));
    g->entry_group = xmalloc((size_t)cap * sizeof(int));
    g->entry_ord = xmalloc((size_t)cap * sizeof(int));
    g->group_entry_off = xcalloc((size_t)g->n_groups + 1, sizeof(int));
    for (int q = 0; q < g->n_groups; q++) {
        int ord = 0;
        for (int i = g->group_off[q]; i < g->group_off[q + 1]; i++) {
            int l = g->group_conv[i];
            for (int j = 0; j < g->conv_c[l]; j++) {
                int k = g->slot_class[g->node_slot[g->conv_node[l]] + j];
                if (g->class_entry[k] != -2) continue;
                int e = g->n_entries++;
                g->class_entry[k] = e;
                g->entry_class[e] = k;
                g->entry_group[e] = q;
                g->entry_ord[e] = ord++;
            }
        }
        g->group_entry_off[q + 1] = g->n_entries;
    }
    g->filter_conv = xmalloc((size_t)(g->n_filters ? g->n_filters : 1) * sizeof(int));
    g->entry_mem_off = xcalloc((size_t)g->n_entries + 1, sizeof(int));
    for (int l = 0; l < g->n_convs; l++)
        for (int j = 0; j < g->conv_c[l]; j++) {
            g->filter_conv[g->conv_off[l] + j] = l;
            int e = g->class_entry[g->slot_class[g->node_slot[g->conv_node[l]] + j]];
            if (e >= 0) g->entry_mem_off[e + 1]++;
        }
    for (int e = 0; e < g->n_entries; e++) g->entry_mem_off[e + 1] += g->entry_mem_off[e];
    g->entry_mem = xmalloc((size_t)(g->entry_mem_off[g->n_entries] + 1) * sizeof(int));
    int *fill = xmalloc((size_t)(g->n_entries + 1) * sizeof(int));
    memcpy(fill, g->entry_mem_off, (size_t)g->n_entries * sizeof(int));
    for (int l = 0; l < g->n_convs; l++)
        for (int j = 0; j < g->conv_c[l]; j++) {
            int e = g->class_entry[g->slot_class[g->node_slot[g->conv_node[l]] + j]];
            if (e >= 0) g->entry_mem[fill[e]++] = g->conv_off[l] + j;
        }
    free(fill);
}

/* Cost terms of convs and FCs; returns node -> term (or -1), owned by the caller. */
static int *make_terms(PruneGraph *g, const Arch *a)
{
    int *node_term = xmalloc((size_t)a->n_nodes * sizeof(int));
    int cap = 0;
    for (int n = 0; n < a->n_nodes; n++) cap += a->nodes[n].kind == OP_CONV || a->nodes[n].kind == OP_FC;
    if (cap == 0) cap = 1;
    g->term_fmul = xmalloc((size_t)cap * sizeof(long long));
    g->term_pmul = xmalloc((size_t)cap * sizeof(long long));
    g->term_in0 = xmalloc((size_t)cap * sizeof(int));
    g->term_out0 = xmalloc((size_t)cap * sizeof(int));
    g->term_fixed_in = xcalloc((size_t)cap, 1);
    g->n_terms = 0;
    long long flops = 0;
    for (int n = 0; n < a->n_nodes; n++) {
        const Node *nd = &a->nodes[n];
        node_term[n] = -1;
        if (nd->kind != OP_CONV && nd->kind != OP_FC) continue;
        int t = node_term[n] = g->n_terms++;
        int in_c = a->nodes[nd->in[0]].c;
        g->term_out0[t] = nd->c;
        if (nd->kind == OP_CONV) {
            g->term_fmul[t] = (long long)nd->h * nd->w * nd->k * nd->k;
            g->term_pmul[t] = (long long)nd->k * nd->k;
            g->term_in0[t] = nd->groups > 1 ? in_c / nd->groups : in_c;
            g->term_fixed_in[t] = nd->groups > 1;
        } else {
            g->term_fmul[t] = g->term_pmul[t] = 1;
            g->term_in0[t] = in_c;
        }
        flops += g->term_fmul[t] * g->term_in0[t] * g->term_out0[t];
    }
    g->flops0 = arch_flops(a);
    g->params0 = arch_params(a);
    CHECK(flops == g->flops0, "prune cost terms count %lld MACs, the Arch %lld", flops, g->flops0);
    return node_term;
}

/* Count (pass 0) or store (pass 1) one cost event of entry e. */
static void emit_event(PruneGraph *g, int pass, int e, int code, int *pos)
{
    if (pass) g->entry_ev[pos[e]++] = code;
    else g->entry_ev_off[e + 1]++;
}

/* The cost events of every entry: each slot of the entry's class removes a conv output, a BN
 * channel, a conv bias, and one input channel of every consumer conv (not grouped) or FC. */
static void make_events(PruneGraph *g, const Arch *a, const int *node_term)
{
    int *cons_off = xcalloc((size_t)a->n_nodes + 1, sizeof(int));
    for (int n = 0; n < a->n_nodes; n++)
        for (int i = 0; i < 2; i++)
            if (a->nodes[n].in[i] >= 0) cons_off[a->nodes[n].in[i] + 1]++;
    for (int n = 0; n < a->n_nodes; n++) cons_off[n + 1] += cons_off[n];
    int *cons = xmalloc((size_t)(cons_off[a->n_nodes] + 1) * sizeof(int));
    int *fill = xmalloc((size_t)(a->n_nodes + 1) * sizeof(int));
    memcpy(fill, cons_off, (size_t)a->n_nodes * sizeof(int));
    for (int n = 0; n < a->n_nodes; n++)
        for (int i = 0; i < 2; i++)
            if (a->nodes[n].in[i] >= 0) cons[fill[a->nodes[n].in[i]]++] = n;

    /* Two passes: count (pass 0), then fill (pass 1). */
    g->entry_ev_off = xcalloc((size_t)g->n_entries + 1, sizeof(int));
    g->entry_ev = NULL;
    int *pos = xcalloc((size_t)g->n_entries + 1, sizeof(int));
    for (int pass = 0; pass < 2; pass++) {
        for (int n = 0; n < a->n_nodes; n++) {
            const Node *nd = &a->nodes[n];
            for (int ch = 0; ch < nd->c; ch++) {
                int e = g->class_entry[g->slot_class[g->node_slot[n] + ch]];
                if (e < 0) continue;
                if (nd->kind == OP_CONV) emit_event(g, pass, e, 2 * node_term[n], pos);
                if (nd->kind == OP_CONV && nd->bias) emit_event(g, pass, e, -2, pos);
                if (nd->kind == OP_BN) emit_event(g, pass, e, -1, pos);
                for (int i = cons_off[n]; i < cons_off[n + 1]; i++) {
                    const Node *c = &a->nodes[cons[i]];
                    if ((c->kind == OP_CONV && c->groups == 1) || c->kind == OP_FC)
                        emit_event(g, pass, e, 2 * node_term[cons[i]] + 1, pos);
                }
            }
        }
        if (pass == 0) {
            for (int e = 0; e < g->n_entries; e++) g->entry_ev_off[e + 1] += g->entry_ev_off[e];
            g->entry_ev = xmalloc((size_t)(g->entry_ev_off[g->n_entries] + 1) * sizeof(int));
            memcpy(pos, g->entry_ev_off, (size_t)g->n_entries * sizeof(int));
        }
    }
    free(pos);
    free(fill);
    free(cons);
    free(cons_off);
}

int prune_graph_build(PruneGraph *g, const Arch *a, Err *err)
{
    memset(g, 0, sizeof *g);
    g->round_to = 1;
    if (a->n_nodes == 0 || a->nodes[0].kind != OP_INPUT)
        return err_set(err, LEGR_EXIT_USAGE, "prune: the network has no input node");
    g->n_nodes = a->n_nodes;
    g->node_slot = xcalloc((size_t)a->n_nodes + 1, sizeof(int));
    for (int n = 0; n < a->n_nodes; n++) {
        g->node_slot[n + 1] = g->node_slot[n] + a->nodes[n].c;
        if (a->nodes[n].kind == OP_CONV) g->n_convs++;
    }
    g->n_slots = g->node_slot[a->n_nodes];
    int nc = g->n_convs ? g->n_convs : 1;
    g->conv_node = xmalloc((size_t)nc * sizeof(int));
    g->conv_c = xmalloc((size_t)nc * sizeof(int));
    g->conv_off = xcalloc((size_t)g->n_convs + 1, sizeof(int));
    for (int n = 0, l = 0; n < a->n_nodes; n++) {
        if (a->nodes[n].kind != OP_CONV) continue;
        g->conv_node[l] = n;
        g->conv_c[l] = a->nodes[n].c;
        g->conv_off[l + 1] = g->conv_off[l] + a->nodes[n].c;
        l++;
    }
    g->n_filters = g->conv_off[g->n_convs];

    int *parent = xmalloc((size_t)(g->n_slots ? g->n_slots : 1) * sizeof(int));
    unsigned char *fixed = xcalloc((size_t)g->n_slots + 1, 1);
    trace_slots(g, a, parent, fixed);
    number_classes(g, parent, fixed);
    free(parent);
    free(fixed);
    find_groups(g);
    list_entries(g);
    int *node_term = make_terms(g, a);
    make_events(g, a, node_term);
    free(node_term);
    return 0;
}

void prune_graph_free(PruneGraph *g)
{
    void *ptrs[] = {g->conv_node, g->conv_c, g->conv_off, g->conv_group, g->group_off,
                    g->group_conv, g->group_entry_off, g->node_slot, g->slot_class,
                    g->class_entry, g->entry_class, g->entry_group, g->entry_ord,
                    g->entry_mem_off, g->entry_mem, g->filter_conv, g->term_fmul, g->term_pmul,
                    g->term_in0, g->term_out0, g->term_fixed_in, g->entry_ev_off, g->entry_ev};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) free(ptrs[i]);
    memset(g, 0, sizeof *g);
}

void prune_print_groups(FILE *f, const PruneGraph *g, const Arch *a)
{
    fprintf(f, "prune groups: %d groups of %d convs, %d ranking entries\n", g->n_groups,
            g->n_convs, g->n_entries);
    for (int q = 0; q < g->n_groups; q++) {
        int members = g->group_off[q + 1] - g->group_off[q];
        int entries = g->group_entry_off[q + 1] - g->group_entry_off[q];
        int col = fprintf(f, "  group %3d: %4d entries, %2d conv%s:", q, entries, members,
                          members == 1 ? " " : "s");
        int indent = col;
        if (entries == 0) col += fprintf(f, " (fixed)");
        for (int i = g->group_off[q]; i < g->group_off[q + 1]; i++) {
            int l = g->group_conv[i];
            char item[ARCH_NAME_MAX + 16];
            int len = snprintf(item, sizeof item, " %s(%d)", a->nodes[g->conv_node[l]].name,
                               g->conv_c[l]);
            if (col + len > 100) {
                fprintf(f, "\n%*s", indent, "");
                col = indent;
            }
            col += fprintf(f, "%s", item);
        }
        fputc('\n', f);
    }
}
