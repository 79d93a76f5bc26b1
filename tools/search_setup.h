/* The search's fitness outside a search: what the offline tools load to compute it. */
#ifndef LEGR_TOOLS_SEARCH_SETUP_H
#define LEGR_TOOLS_SEARCH_SETUP_H

#include "job_internal.h"
#include "job_params.h"
#include "legr/search_eval.h"

/* Everything a job's search evaluates with, built as the search builds it: the config, the
 * training set's train/validation split (and search.train_subset), the base network, its prune
 * graph (with search.round_to), filter norms (search.metric) and their per-conv spread, and
 * `se` set to prune to the config's first target only. `se` points into the struct, which must
 * therefore stay where it was set up. */
typedef struct {
    Config cfg;
    Dataset train, test;
    Arch arch;
    Net base;
    PruneGraph graph;
    double *norm;      /* [graph.n_filters] */
    double *norm_std;  /* [graph.n_convs] */
    int *train_idx, *val_idx, n_train, n_val;
    Normalize input_norm;
    double target;     /* se.targets points here */
    SearchEval se;
} SearchSetup;

/* Loads cfg_path and base_path into *s; on any error prints "PROG: error: ..." and exits with
 * the error's code. */
void search_setup(SearchSetup *s, const char *prog, const char *cfg_path, const char *base_path);

#endif
