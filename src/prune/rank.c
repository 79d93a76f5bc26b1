/* Global ranking of prune entries, the greedy search for a FLOP target under per-conv floors,
 * the identity/uniform/random baselines and the keep-masks they produce. */
#include "legr/prune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "legr/rng.h"

const char *const prune_method_names[PRUNE_METHOD_COUNT] = {"legr", "identity", "uniform",
                                                            "random"};
_Static_assert(PRUNE_METHOD_COUNT == 4, "prune_method_names must name every PruneMethod");

/* ---- cost state: the counters of every term, updated by entry events ---- */

typedef struct {
    int *in, *out;
    long long flops, params;
} CostState;

static void cost_init(CostState *cs, const PruneGraph *g)
{
    int n = g->n_terms ? g->n_terms : 1;
    cs->in = xmalloc((size_t)n * sizeof(int));
    cs->out = xmalloc((size_t)n * sizeof(int));
    memcpy(cs->in, g->term_in0, (size_t)g->n_terms * sizeof(int));
    memcpy(cs->out, g->term_out0, (size_t)g->n_terms * sizeof(int));
    cs->flops = g->flops0;
    cs->params = g->params0;
}

static void cost_free(CostState *cs)
{
    free(cs->in);
    free(cs->out);
}

/* Remove entry e: apply its events in order (docs/ALGORITHM.md section 5), each with the current counts. */
static void cost_remove_entry(CostState *cs, const PruneGraph *g, int e)
{
    for (int i = g->entry_ev_off[e]; i < g->entry_ev_off[e + 1]; i++) {
        int ev = g->entry_ev[i];
        if (ev < 0) {
            cs->params -= ev == -1 ? 2 : 1; /* a BN channel, or a conv bias */
            continue;
        }
        int t = ev >> 1;
        long long in_eff = g->term_fixed_in[t] ? g->term_in0[t] : cs->in[t];
        if ((ev & 1) == 0) {
            cs->flops -= g->term_fmul[t] * in_eff;
            cs->params -= g->term_pmul[t] * in_eff;
            cs->out[t]--;
        } else {
            cs->flops -= g->term_fmul[t] * cs->out[t];
            cs->params -= g->term_pmul[t] * cs->out[t];
            cs->in[t]--;
        }
    }
}

/* ---- keep-masks ---- */

void prune_mask_free(KeepMask *m)
{
    free(m->node_c0);
    free(m->node_keep_off);
    free(m->node_keep);
    free(m->entry_removed);
    memset(m, 0, sizeof *m);
}

const int *prune_mask_kept(const KeepMask *m, int node, int *count)
{
    CHECK(node >= 0 && node < m->n_nodes, "mask has no node %d", node);
    *count = m->node_keep_off[node + 1] - m->node_keep_off[node];
    return m->node_keep + m->node_keep_off[node];
}

int prune_mask_conv_c(const KeepMask *m, const PruneGraph *g, int l)
{
    int n = g->conv_node[l];
    return m->node_keep_off[n + 1] - m->node_keep_off[n];
}

/* Fill m from the removed entries and the cost already computed for them. */
static void mask_fill(const PruneGraph *g, const unsigned char *removed, long long flops,
                      long long params, KeepMask *m)
{
    memset(m, 0, sizeof *m);
    m->n_nodes = g->n_nodes;
    m->n_entries = g->n_entries;
    m->flops = flops;
    m->params = params;
    m->entry_removed = xmalloc((size_t)g->n_entries + 1);
    memcpy(m->entry_removed, removed, (size_t)g->n_entries);
    m->node_c0 = xmalloc((size_t)g->n_nodes * sizeof(int));
    m->node_keep_off = xcalloc((size_t)g->n_nodes + 1, sizeof(int));
    m->node_keep = xmalloc((size_t)(g->n_slots + 1) * sizeof(int));
    int k = 0;
    for (int n = 0; n < g->n_nodes; n++) {
        m->node_c0[n] = g->node_slot[n + 1] - g->node_slot[n];
        for (int ch = 0; ch < m->node_c0[n]; ch++) {
            int e = g->class_entry[g->slot_class[g->node_slot[n] + ch]];
            if (e < 0 || !removed[e]) m->node_keep[k++] = ch;
        }
        m->node_keep_off[n + 1] = k;
    }
}

void prune_mask_from_removed(const PruneGraph *g, const unsigned char *removed, KeepMask *m)
{
    CostState cs;
    cost_init(&cs, g);
    for (int e = 0; e < g->n_entries; e++)
        if (removed[e]) cost_remove_entry(&cs, g, e);
    mask_fill(g, removed, cs.flops, cs.params, m);
    cost_free(&cs);
}

/* ---- ranking ---- */

int prune_min_keep(int c, double safeguard)
{
    /* The 1e-9 keeps ceil(0.1*10) at 1 despite binary rounding of 0.1. */
    int keep = safeguard > 0 ? (int)ceil(safeguard * c - 1e-9) : 1;
    if (safeguard > 0 && keep < 2) keep = 2;
    return keep < c ? keep : c;
}

typedef struct {
    double s;
    int e;
} Scored;

/* Ascending score, NaN last; ties by entry index, which is (group, position) order. */
static int cmp_scored(const void *pa, const void *pb)
{
    const Scored *a = pa, *b = pb;
    int na = isnan(a->s), nb = isnan(b->s);
    if (na != nb) return na - nb;
    if (!na && a->s != b->s) return a->s < b->s ? -1 : 1;
    return (a->e > b->e) - (a->e < b->e);
}

int prune_rank(const PruneGraph *g, const double *norm, const double *alpha,
               const double *kappa, int n_ak, int *order, Err *err)
{
    if (n_ak != g->n_convs)
        return err_set(err, LEGR_EXIT_USAGE,
                       "alpha/kappa have %d entries but the network has %d convs (one pair per "
                       "conv, in layer order)", n_ak, g->n_convs);
    Scored *sc = xmalloc((size_t)(g->n_entries + 1) * sizeof(Scored));
    for (int e = 0; e < g->n_entries; e++) {
        double s = 0;
        for (int i = g->entry_mem_off[e]; i < g->entry_mem_off[e + 1]; i++) {
            int f = g->entry_mem[i], l = g->filter_conv[f];
            s += alpha[l] * norm[f] + kappa[l];
        }
        sc[e].s = s;
        sc[e].e = e;
    }
    qsort(sc, (size_t)g->n_entries, sizeof(Scored), cmp_scored);
    for (int e = 0; e < g->n_entries; e++) order[e] = sc[e].e;
    free(sc);
    return 0;
}

/* ---- the greedy target ---- */

/* Take n filters from every member conv of entry e if each has that much quota left (counting
 * a conv once per member filter): entry e alone (n = 1), or a round_to batch of its band. */
static int take_entry(const PruneGraph *g, int e, int *quota, int n)
{
    int ok = 1, i;
    for (i = g->entry_mem_off[e]; i < g->entry_mem_off[e + 1]; i++)
        if ((quota[g->filter_conv[g->entry_mem[i]]] -= n) < 0) ok = 0;
    if (!ok)
        for (i = g->entry_mem_off[e]; i < g->entry_mem_off[e + 1]; i++)
            quota[g->filter_conv[g->entry_mem[i]]] += n;
    return ok;
}

/* Bands for round_to: maximal runs of a group's entries (in channel order) with the same member
 * convs, i.e. the same number of members (entry j of a group holds every member with C_l > j,
 * so the count only falls along the group). band[e] numbers them; size[b] entries each. Returns
 * the number of bands. */
static int make_bands(const PruneGraph *g, int *band, int *size)
{
    int nb = 0;
    for (int e = 0; e < g->n_entries; e++) {
        int mem = g->entry_mem_off[e + 1] - g->entry_mem_off[e];
        if (e == 0 || g->entry_group[e] != g->entry_group[e - 1] ||
            mem != g->entry_mem_off[e] - g->entry_mem_off[e - 1])
            size[nb++] = 0;
        band[e] = nb - 1;
        size[nb - 1]++;
    }
    return nb;
}

/* Walk `order`, removing entries under the quotas; stop once FLOPs < target_abs (never when
 * target_abs is negative). removed[] and cs are updated. Returns 1 iff the target was met.
 * With g->round_to = k > 1 a band's entries go in batches, the first of size mod k entries
 * (k when k divides the size), then k at a time: the first entry of a batch takes the quota of
 * the whole batch (or is skipped, like an entry without quota), the batch's entries wait, and
 * they go together when the last one comes. So every conv keeps a multiple of k channels when
 * its bands' sizes are multiples of k, and the FLOPs compared with the target are always those of
 * such a network. A batch still waiting at the end stays. */
static int greedy_walk(const PruneGraph *g, const int *order, int *quota, double target_abs,
                       unsigned char *removed, CostState *cs)
{
    const int k = g->round_to > 1 ? g->round_to : 1;
    size_t ne = (size_t)g->n_entries + 1;
    int *band = NULL, *size = NULL, *taken = NULL, *nwait = NULL, *batch = NULL, *wait = NULL;
    if (k > 1) {
        band = xmalloc(ne * sizeof(int));
        size = xmalloc(ne * sizeof(int));
        int nb = make_bands(g, band, size);
        taken = xcalloc((size_t)nb + 1, sizeof(int));
        nwait = xcalloc((size_t)nb + 1, sizeof(int));
        batch = xcalloc((size_t)nb + 1, sizeof(int));
        wait = xmalloc(((size_t)nb * k + 1) * sizeof(int));
    }
    int met = 0;
    for (int i = 0; i < g->n_entries && !met; i++) {
        int e = order[i];
        if (k > 1) {
            int b = band[e];
            if (nwait[b] == 0) { /* a new batch: n <= the band's entries still there */
                int n = (size[b] - taken[b]) % k ? (size[b] - taken[b]) % k : k;
                if (!take_entry(g, e, quota, n)) continue;
                batch[b] = n;
            }
            wait[(size_t)b * k + nwait[b]++] = e;
            taken[b]++;
            if (nwait[b] < batch[b]) continue;
            for (int j = 0; j < nwait[b]; j++) {
                removed[wait[(size_t)b * k + j]] = 1;
                cost_remove_entry(cs, g, wait[(size_t)b * k + j]);
            }
            nwait[b] = 0;
        } else {
            if (!take_entry(g, e, quota, 1)) continue;
            removed[e] = 1;
            cost_remove_entry(cs, g, e);
        }
        if ((double)cs->flops < target_abs) met = 1;
    }
    free(band);
    free(size);
    free(taken);
    free(nwait);
    free(batch);
    free(wait);
    return met;
}

static int check_target(double target, double safeguard, Err *err)
{
    if (!(target > 0 && target < 1))
        return err_set(err, LEGR_EXIT_USAGE,
                       "prune target %g is outside (0, 1): it is the fraction of FLOPs to keep",
                       target);
    if (!(safeguard >= 0 && safeguard < 1))
        return err_set(err, LEGR_EXIT_USAGE,
                       "prune safeguard %g is outside [0, 1): it is the fraction of each conv's "
                       "filters that must stay", safeguard);
    return 0;
}

/* Filters each conv may lose: it keeps max(ceil(keep_frac*C), its safeguard floor), at most C. */
static int *make_quota(const PruneGraph *g, double keep_frac, double safeguard)
{
    int *quota = xmalloc((size_t)(g->n_convs + 1) * sizeof(int));
    for (int l = 0; l < g->n_convs; l++) {
        int c = g->conv_c[l], keep = prune_min_keep(c, safeguard);
        int want = (int)ceil(keep_frac * c - 1e-9);
        if (want > keep) keep = want < c ? want : c;
        quota[l] = c - keep;
    }
    return quota;
}

static int unreachable(const PruneGraph *g, double target, double safeguard, long long best,
                       Err *err)
{
    char round[64] = "";
    if (g->round_to > 1)
        snprintf(round, sizeof round, " and round_to %d (channels leave %d at a time)",
                 g->round_to, g->round_to);
    return err_set(err, LEGR_EXIT_USAGE,
                   "prune target %g (%.0f MACs) is unreachable: with safeguard %g (each conv keeps "
                   "at least max(ceil(%g*C), 2) filters)%s the network goes no lower than %lld "
                   "MACs (%.4f of %lld)", target, target * (double)g->flops0, safeguard, safeguard,
                   round, best, (double)best / (double)g->flops0, g->flops0);
}

int prune_greedy(const PruneGraph *g, const int *order, double target, double safeguard,
                 KeepMask *m, Err *err)
{
    memset(m, 0, sizeof *m);
    if (check_target(target, safeguard, err)) return -1;
    int *quota = make_quota(g, 0, safeguard);
    unsigned char *removed = xcalloc((size_t)g->n_entries + 1, 1);
    CostState cs;
    cost_init(&cs, g);
    int met = greedy_walk(g, order, quota, target * (double)g->flops0, removed, &cs);
    int rc = 0;
    if (met) mask_fill(g, removed, cs.flops, cs.params, m);
    else rc = unreachable(g, target, safeguard, cs.flops, err);
    cost_free(&cs);
    free(removed);
    free(quota);
    return rc;
}

int prune_legr(const PruneGraph *g, const double *norm, const double *alpha,
               const double *kappa, int n_ak, double target, double safeguard, KeepMask *m,
               Err *err)
{
    memset(m, 0, sizeof *m);
    int *order = xmalloc((size_t)(g->n_entries + 1) * sizeof(int));
    int rc = prune_rank(g, norm, alpha, kappa, n_ak, order, err);
    if (rc == 0) rc = prune_greedy(g, order, target, safeguard, m, err);
    free(order);
    return rc;
}

/* ---- baselines ---- */

/* Identity-ranked order of entries (alpha 1, kappa 0). */
static int *identity_order(const PruneGraph *g, const double *norm)
{
    int nc = g->n_convs ? g->n_convs : 1;
    double *alpha = xmalloc((size_t)nc * sizeof(double)), *kappa = xcalloc((size_t)nc, sizeof(double));
    for (int l = 0; l < g->n_convs; l++) alpha[l] = 1;
    int *order = xmalloc((size_t)(g->n_entries + 1) * sizeof(int));
    int rc = prune_rank(g, norm, alpha, kappa, g->n_convs, order, NULL);
    CHECK(rc == 0, "identity ranking failed");
    free(alpha);
    free(kappa);
    return order;
}

int prune_identity(const PruneGraph *g, const double *norm, double target, double safeguard,
                   KeepMask *m, Err *err)
{
    int *order = identity_order(g, norm);
    int rc = prune_greedy(g, order, target, safeguard, m, err);
    free(order);
    return rc;
}

int prune_random(const PruneGraph *g, uint64_t seed, uint64_t index, double target,
                 double safeguard, KeepMask *m, Err *err)
{
    int *order = xmalloc((size_t)(g->n_entries + 1) * sizeof(int));
    for (int e = 0; e < g->n_entries; e++) order[e] = e;
    Rng r;
    rng_init(&r, seed, rng_stream_id(RNG_PURPOSE_BASELINE, index));
    rng_shuffle_int(&r, order, g->n_entries);
    int rc = prune_greedy(g, order, target, safeguard, m, err);
    free(order);
    return rc;
}

/* FLOPs when every conv is cut to max(ceil(f*C), floor) along `order`; fills removed/cs. */
static void uniform_eval(const PruneGraph *g, const int *order, double f, double safeguard,
                         unsigned char *removed, CostState *cs)
{
    int *quota = make_quota(g, f, safeguard);
    memset(removed, 0, (size_t)g->n_entries + 1);
    memcpy(cs->in, g->term_in0, (size_t)g->n_terms * sizeof(int));
    memcpy(cs->out, g->term_out0, (size_t)g->n_terms * sizeof(int));
    cs->flops = g->flops0;
    cs->params = g->params0;
    greedy_walk(g, order, quota, -1.0, removed, cs);
    free(quota);
}

int prune_uniform(const PruneGraph *g, const double *norm, double target, double safeguard,
                  KeepMask *m, Err *err)
{
    memset(m, 0, sizeof *m);
    if (check_target(target, safeguard, err)) return -1;
    int *order = identity_order(g, norm);
    unsigned char *removed = xcalloc((size_t)g->n_entries + 1, 1);
    CostState cs;
    cost_init(&cs, g);
    double target_abs = target * (double)g->flops0;
    int rc = 0;
    uniform_eval(g, order, 0, safeguard, removed, &cs);
    if ((double)cs.flops >= target_abs) {
        rc = unreachable(g, target, safeguard, cs.flops, err);
    } else {
        /* Invariant: fraction lo meets the target, hi (all kept) does not. Kept counts change
         * only at multiples of 1/C, so 40 halvings resolve every step. */
        double lo = 0, hi = 1;
        for (int it = 0; it < 40; it++) {
            double mid = 0.5 * (lo + hi);
            uniform_eval(g, order, mid, safeguard, removed, &cs);
            if ((double)cs.flops < target_abs) lo = mid;
            else hi = mid;
        }
        uniform_eval(g, order, lo, safeguard, removed, &cs);
        mask_fill(g, removed, cs.flops, cs.params, m);
    }
    cost_free(&cs);
    free(removed);
    free(order);
    return rc;
}

int prune_print_targets(FILE *f, const PruneGraph *g, const Arch *a, const double *norm,
                        const double *targets, int n_targets, double safeguard, Err *err)
{
    KeepMask *ms = xcalloc((size_t)(n_targets ? n_targets : 1), sizeof(KeepMask));
    int rc = 0, done = 0;
    for (; done < n_targets && rc == 0; done++)
        rc = prune_identity(g, norm, targets[done], safeguard, &ms[done], err);
    if (rc == 0) {
        fprintf(f, "channels kept by the identity ranking (safeguard %g):\n%-24s %6s", safeguard,
                "conv", "full");
        for (int t = 0; t < n_targets; t++) fprintf(f, " %7.0f%%", 100 * targets[t]);
        fputc('\n', f);
        for (int l = 0; l < g->n_convs; l++) {
            fprintf(f, "%-24s %6d", a->nodes[g->conv_node[l]].name, g->conv_c[l]);
            for (int t = 0; t < n_targets; t++) fprintf(f, " %8d", prune_mask_conv_c(&ms[t], g, l));
            fputc('\n', f);
        }
        fprintf(f, "%-24s %6s", "MACs (M)", "");
        for (int t = 0; t < n_targets; t++) fprintf(f, " %8.3f", (double)ms[t].flops / 1e6);
        fprintf(f, "\n%-24s %6s", "params (K)", "");
        for (int t = 0; t < n_targets; t++) fprintf(f, " %8.1f", (double)ms[t].params / 1e3);
        fputc('\n', f);
    }
    for (int t = 0; t < done; t++) prune_mask_free(&ms[t]);
    free(ms);
    return rc;
}

int prune_method_mask(const PruneGraph *g, PruneMethod method, const double *norm,
                      const double *alpha, const double *kappa, uint64_t seed, uint64_t index,
                      double target, double safeguard, KeepMask *m, Err *err)
{
    switch (method) {
    case PRUNE_METHOD_LEGR:
        return prune_legr(g, norm, alpha, kappa, g->n_convs, target, safeguard, m, err);
    case PRUNE_METHOD_IDENTITY: return prune_identity(g, norm, target, safeguard, m, err);
    case PRUNE_METHOD_UNIFORM: return prune_uniform(g, norm, target, safeguard, m, err);
    default: return prune_random(g, seed, index, target, safeguard, m, err);
    }
}
