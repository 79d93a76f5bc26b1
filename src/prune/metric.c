/* Filter importance metrics (docs/ALGORITHM.md section 1) computed from a Net's weights, with no data. */
#include "legr/prune.h"

#include <math.h>

const char *const prune_metric_names[PRUNE_METRIC_COUNT] = {"l2_weight", "l1_weight", "l2_bn",
                                                            "l2_bn_param"};
_Static_assert(PRUNE_METRIC_COUNT == 4, "prune_metric_names must name every PruneMetric");

/* The BN node whose input is node `conv`, or -1. */
static int consuming_bn(const Arch *a, int conv)
{
    for (int n = conv + 1; n < a->n_nodes; n++)
        if (a->nodes[n].kind == OP_BN && a->nodes[n].in[0] == conv) return n;
    return -1;
}

int prune_norms(const PruneGraph *g, const Net *net, PruneMetric metric, double *norm, Err *err)
{
    const Arch *a = &net->arch;
    if (a->n_nodes != g->n_nodes)
        return err_set(err, LEGR_EXIT_USAGE, "prune: the network has %d layers, the prune graph "
                       "was built for %d", a->n_nodes, g->n_nodes);
    if ((unsigned)metric >= PRUNE_METRIC_COUNT)
        return err_set(err, LEGR_EXIT_USAGE, "unknown importance metric %d", (int)metric);
    for (int l = 0; l < g->n_convs; l++) {
        int n = g->conv_node[l], c = g->conv_c[l];
        const Node *nd = &a->nodes[n];
        if (nd->kind != OP_CONV || nd->c != c)
            return err_set(err, LEGR_EXIT_USAGE, "prune: layer '%s' does not match the prune "
                           "graph (a conv of %d channels)", nd->name, c);
        const ParamSpec *w = &net->params[net->node_param[n]];
        size_t fan_in = w->count / (size_t)c;
        const float *wp = net->param + w->offset;
        double *out = norm + g->conv_off[l];
        if (metric == PRUNE_METRIC_L2_WEIGHT || metric == PRUNE_METRIC_L1_WEIGHT) {
            for (int j = 0; j < c; j++) {
                double s = 0;
                for (size_t i = 0; i < fan_in; i++) {
                    double v = wp[(size_t)j * fan_in + i];
                    s += metric == PRUNE_METRIC_L2_WEIGHT ? v * v : fabs(v);
                }
                out[j] = s;
            }
            continue;
        }
        int bn = consuming_bn(a, n);
        if (bn < 0)
            return err_set(err, LEGR_EXIT_USAGE, "metric %s needs a batch norm after conv '%s', "
                           "which has none", prune_metric_names[metric], nd->name);
        const float *gamma = net->param + net->params[net->node_param[bn]].offset;
        for (int j = 0; j < c; j++) {
            double gj = gamma[j];
            out[j] = gj * gj * (metric == PRUNE_METRIC_L2_BN_PARAM ? (double)fan_in : 1.0);
        }
    }
    return 0;
}

void prune_norm_std(const PruneGraph *g, const double *norm, double *std)
{
    for (int l = 0; l < g->n_convs; l++) {
        const double *v = norm + g->conv_off[l];
        int c = g->conv_c[l];
        double mean = 0, var = 0;
        for (int j = 0; j < c; j++) mean += v[j];
        mean /= c;
        for (int j = 0; j < c; j++) var += (v[j] - mean) * (v[j] - mean);
        std[l] = sqrt(var / c);
    }
}
