/* Pruning core: prune groups traced from the Arch DAG, exact FLOP accounting, LeGR global ranking
 * with a greedy FLOP target, baselines, and surgery that builds the smaller Net. */
#ifndef LEGR_PRUNE_H
#define LEGR_PRUNE_H

#include <stdint.h>
#include <stdio.h>
#include "legr/arch.h"
#include "legr/net.h"

/*
 * Vocabulary (docs/ALGORITHM.md sections 2-4).
 *
 * Every output channel of every node is a "slot". Slots that must be removed together form a
 * channel CLASS: BN, ReLU and global pooling pass a channel through, an add ties its two inputs'
 * channels by index, an option-A shortcut ties input channel i to output channel chan_map[i],
 * and a depthwise conv (groups == in channels == out channels) ties its output j to its input j.
 * The channels of the network input, of an FC's output and around a grouped (not depthwise)
 * conv are fixed. A class that holds at least one conv filter and nothing fixed is one ranking
 * ENTRY; its members are the conv filters (l, j) in it.
 *
 * A prune GROUP is a set of convs joined by shared classes. For ResNet-56 (option A) the stem
 * and every block's conv2 form one group of 28 convs with 64 entries (entry j holds filter j of
 * every member with C_l > j) and each block conv1 is a group of its own: 1072 entries.
 * Groups are numbered by their first conv, members and entries are in conv/channel order.
 */
typedef struct {
    int n_nodes;       /* of the Arch the graph was built for */
    int n_convs;       /* conv nodes, in node (topological) order: the "conv order" */
    int *conv_node;    /* [n_convs] node index of each conv */
    int *conv_c;       /* [n_convs] output channels C_l */
    int *conv_off;     /* [n_convs+1] first global filter index of each conv */
    int n_filters;     /* total conv filters = conv_off[n_convs] */
    int *conv_group;   /* [n_convs] group of each conv */

    int n_groups;
    int *group_off;    /* [n_groups+1] into group_conv */
    int *group_conv;   /* members (conv indices) of each group, ascending */
    int *group_entry_off; /* [n_groups+1] the group's entries are entry_off..entry_off+count-1 */

    /* Slots and classes: slot of (node n, channel ch) is node_slot[n] + ch. */
    int *node_slot;    /* [n_nodes+1] */
    int n_slots;
    int *slot_class;   /* [n_slots] class of every slot */
    int n_classes;
    int *class_entry;  /* [n_classes] entry index, or -1 for a class that is never pruned */

    int n_entries;
    int *entry_class;  /* [n_entries] */
    int *entry_group;  /* [n_entries] */
    int *entry_ord;    /* [n_entries] position j of the entry within its group */
    int *entry_mem_off; /* [n_entries+1] into entry_mem: the member filters */
    int *entry_mem;    /* global filter indices (conv_off[l] + j) */
    int *filter_conv;  /* [n_filters] conv of each global filter index */

    /* Cost terms (one per conv and FC) and the removal events of every entry (docs/ALGORITHM.md section 5).
     * FLOPs = sum_t fmul[t]*in_eff*out[t], params = sum_t pmul[t]*in_eff*out[t] + BN 2C + FC bias,
     * with in_eff = term_in0[t] when the input is fixed, the current in[t] otherwise. */
    int n_terms;
    long long *term_fmul, *term_pmul; /* conv: OH*OW*K*K and K*K; FC: 1 and 1 */
    int *term_in0, *term_out0; /* unpruned input/output channels (in_eff when in is fixed) */
    unsigned char *term_fixed_in; /* depthwise or grouped conv: in_eff never changes */
    int *entry_ev_off;  /* [n_entries+1] into entry_ev */
    int *entry_ev;      /* 2*term: the term loses an output; 2*term+1: it loses an input;
                           -1: one BN channel goes (2 params); -2: one conv bias (1 param).
                           Applied in order, each update
                           uses the current counts, so the result is exact. */
    long long flops0, params0; /* of the unpruned Arch */

    /* Pruning granularity (1 after prune_graph_build; set it before pruning): the entries of a
     * band (a run of a group's entries with the same member convs) leave in batches, the first
     * of band size mod round_to, then round_to at a time, so a conv whose bands have multiples
     * of round_to entries keeps a multiple of round_to channels (docs/ALGORITHM.md section 3). */
    int round_to;
} PruneGraph;

/* Build the graph of `a` (any DAG of the kinds in arch.h). Returns 0, or -1 with err. */
int prune_graph_build(PruneGraph *g, const Arch *a, Err *err);
void prune_graph_free(PruneGraph *g);

/* --dry-run: one line per group (entries, members with their channel counts). */
void prune_print_groups(FILE *f, const PruneGraph *g, const Arch *a);

/* ---- importance metrics (docs/ALGORITHM.md section 1) ---- */
typedef enum {
    PRUNE_METRIC_L2_WEIGHT = 0, /* sum of squared filter weights (the default) */
    PRUNE_METRIC_L1_WEIGHT,     /* sum of absolute filter weights */
    PRUNE_METRIC_L2_BN,         /* gamma^2 of the BN that consumes the conv */
    PRUNE_METRIC_L2_BN_PARAM,   /* gamma^2 times the filter's fan-in (C/G*K*K) */
    PRUNE_METRIC_COUNT
} PruneMetric;
extern const char *const prune_metric_names[PRUNE_METRIC_COUNT];

/* norm[g->n_filters] = the metric of every filter of `net` (whose Arch the graph was built from),
 * conv-major (norm[conv_off[l] + j]). -1 with err if a BN metric finds a conv without a BN. */
int prune_norms(const PruneGraph *g, const Net *net, PruneMetric metric, double *norm, Err *err);

/* Population standard deviation of each conv's norms: std[n_convs] (delta_l, docs/ALGORITHM.md section 6). */
void prune_norm_std(const PruneGraph *g, const double *norm, double *std);

/* ---- the result of a pruning decision ---- */
typedef struct {
    int n_nodes;
    int *node_c0;       /* [n_nodes] unpruned channels, to check the mask fits an Arch */
    int *node_keep_off; /* [n_nodes+1] into node_keep */
    int *node_keep;     /* kept original output channels of every node, ascending */
    int n_entries;
    unsigned char *entry_removed; /* [n_entries]; group q's are group_entry_off[q]..[q+1]-1 */
    long long flops, params;      /* of the pruned network (exact, incremental) */
} KeepMask;

void prune_mask_free(KeepMask *m);
/* Kept original channel indices of node `node`; *count receives their number. */
const int *prune_mask_kept(const KeepMask *m, int node, int *count);
/* Kept channels of conv l (conv order). */
int prune_mask_conv_c(const KeepMask *m, const PruneGraph *g, int l);
/* A mask removing exactly the entries with removed[e] != 0 (no floors, no target): tests and
 * tools. Fills m (free with prune_mask_free). */
void prune_mask_from_removed(const PruneGraph *g, const unsigned char *removed, KeepMask *m);

/* ---- ranking and the greedy FLOP target (docs/ALGORITHM.md sections 2-3) ---- */

/* Filters a conv of C channels must keep under `safeguard` in [0, 1): max(ceil(sg*C), 2)
 * (1 when sg == 0), at most C. */
int prune_min_keep(int c, double safeguard);

/* Entries in ascending order of S = sum over members of alpha_l*norm + kappa_l; ties (and NaN,
 * sorted last) by group then position. alpha/kappa have n_ak == g->n_convs values (conv order).
 * order[g->n_entries]. Returns 0 or -1 with err (wrong length). */
int prune_rank(const PruneGraph *g, const double *norm, const double *alpha,
               const double *kappa, int n_ak, int *order, Err *err);

/* Remove entries in `order` while every member conv keeps its floor, until FLOPs fall strictly
 * below target*flops0 (target in (0,1)). An entry whose members lack quota is skipped whole.
 * Fills m, or returns -1 with err (bad target or safeguard, or target unreachable). */
int prune_greedy(const PruneGraph *g, const int *order, double target, double safeguard,
                 KeepMask *m, Err *err);

/* LeGR: prune_rank + prune_greedy. */
int prune_legr(const PruneGraph *g, const double *norm, const double *alpha,
               const double *kappa, int n_ak, double target, double safeguard, KeepMask *m,
               Err *err);

/* ---- baselines ---- */
typedef enum {
    PRUNE_METHOD_LEGR = 0, /* learned (alpha, kappa) */
    PRUNE_METHOD_IDENTITY, /* alpha 1, kappa 0: global norm ranking */
    PRUNE_METHOD_UNIFORM,  /* the same fraction of every conv */
    PRUNE_METHOD_RANDOM,   /* a seeded random order of entries */
    PRUNE_METHOD_COUNT
} PruneMethod;
extern const char *const prune_method_names[PRUNE_METHOD_COUNT];

int prune_identity(const PruneGraph *g, const double *norm, double target, double safeguard,
                   KeepMask *m, Err *err);
/* Random order from (seed, RNG_PURPOSE_BASELINE, index), then the greedy target. */
int prune_random(const PruneGraph *g, uint64_t seed, uint64_t index, double target,
                 double safeguard, KeepMask *m, Err *err);
/* Every conv keeps max(ceil(f*C), floor) filters, the largest kept fraction f (found by
 * bisection) whose FLOPs are below target; which filters go follows the identity ranking. */
int prune_uniform(const PruneGraph *g, const double *norm, double target, double safeguard,
                  KeepMask *m, Err *err);

/* The mask of `method` at `target`: LeGR with (alpha, kappa) (g->n_convs values each; unused
 * by the baselines), or a baseline; random draws its order from (seed, index). The family stage
 * and the tools that rebuild its networks both call this, so they cannot disagree. */
int prune_method_mask(const PruneGraph *g, PruneMethod method, const double *norm,
                      const double *alpha, const double *kappa, uint64_t seed, uint64_t index,
                      double target, double safeguard, KeepMask *m, Err *err);

/* --dry-run: per conv, the channels the identity ranking keeps at each target, then the FLOPs
 * and parameters reached. Returns -1 with err on a bad or unreachable target. */
int prune_print_targets(FILE *f, const PruneGraph *g, const Arch *a, const double *norm,
                        const double *targets, int n_targets, double safeguard, Err *err);

/* ---- surgery (docs/ALGORITHM.md section 3) ---- */

/* The Arch with only the kept channels: conv widths, depthwise groups, shortcut channel maps
 * rebuilt from the kept slots of its input and output. dst is initialised here. */
int prune_arch_apply(const Arch *src, const KeepMask *m, Arch *dst, Err *err);

/* Build dst (same batch) from src keeping only the surviving filters, BN channels, running
 * statistics, consumers' input channels and FC input columns, in their original order.
 * Gradients and momentum start at zero. With nothing removed dst equals src bit for bit. */
int prune_apply(const Net *src, const KeepMask *m, Net *dst, Err *err);

#endif
