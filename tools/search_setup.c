/* Builds the search's fitness evaluation for the offline tools, as a job's search stage does. */
#include "search_setup.h"

#include <stdio.h>
#include <stdlib.h>

#include "legr/h5io.h"

static void die(const char *prog, const Err *e)
{
    fprintf(stderr, "%s: error: %s\n", prog, e->msg);
    exit(e->code ? e->code : 1);
}

void search_setup(SearchSetup *s, const char *prog, const char *cfg_path, const char *base_path)
{
    Err err = {0, ""};
    const Config *c = &s->cfg;
    if (config_load_file(&s->cfg, cfg_path, &err) != 0 ||
        job_data_load(c, &s->train, &s->test, &err) != 0 ||
        h5_model_load_arch(base_path, &s->arch, &err) != 0 ||
        net_build(&s->base, &s->arch, c->search.batch, &err) != 0 ||
        h5_model_load_params(base_path, &s->base, &err) != 0)
        die(prog, &err);

    char split_note[1024];
    JobSplit sp;
    job_split(c, s->train.n, &sp, split_note, sizeof split_note);
    if (split_note[0]) fprintf(stderr, "%s: data: %s\n", prog, split_note);
    /* The search trains on the subset only. */
    if (sp.subset_idx != sp.train_idx) free(sp.train_idx);
    s->train_idx = sp.subset_idx;
    s->n_train = sp.n_subset;
    s->val_idx = sp.val_idx;
    s->n_val = sp.n_val;
    if (prune_graph_build(&s->graph, &s->base.arch, &err) != 0) die(prog, &err);
    s->graph.round_to = c->search.round_to;
    s->norm = xmalloc((size_t)s->graph.n_filters * sizeof(double));
    s->norm_std = xmalloc((size_t)s->graph.n_convs * sizeof(double));
    if (prune_norms(&s->graph, &s->base, (PruneMetric)c->search.metric, s->norm, &err) != 0)
        die(prog, &err);
    prune_norm_std(&s->graph, s->norm, s->norm_std);

    char note[256];
    job_data_norm(&s->train, &s->input_norm, note, sizeof note);
    job_search_eval(c, &s->input_norm, &s->se);
    s->target = c->search.target_flops[0];
    s->se.base = &s->base;
    s->se.graph = &s->graph;
    s->se.norm = s->norm;
    s->se.targets = &s->target;
    s->se.n_targets = 1;
    s->se.data = &s->train;
    s->se.train_idx = s->train_idx;
    s->se.n_train = s->n_train;
    s->se.val_idx = s->val_idx;
    s->se.n_val = job_val_count(c, s->n_val);
}
