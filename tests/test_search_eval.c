/* One candidate's evaluation: reproducible, batch modes, and diverging candidates get the worst fitness. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "legr/search_eval.h"

int main(void)
{
    Err err;
    Dataset d;
    dataset_synthetic(&d, 512, 3, 12, 12, 4, 7);
    Arch a;
    Net base;
    EXPECT(arch_resnet_cifar(&a, 8, 3, 12, 12, 4, 0.5, &err) == 0, "arch: %s", err.msg);
    EXPECT(net_build(&base, &a, 32, &err) == 0, "build: %s", err.msg);
    net_init_params(&base, 3);
    PruneGraph g;
    EXPECT(prune_graph_build(&g, &base.arch, &err) == 0, "graph: %s", err.msg);
    double *norm = xmalloc((size_t)g.n_filters * sizeof(double));
    EXPECT(prune_norms(&g, &base, PRUNE_METRIC_L2_WEIGHT, norm, &err) == 0, "norms");

    int *tr, *va, ntr, nva;
    data_split(d.n, 0.25, 1, &tr, &ntr, &va, &nva);
    SearchEval se;
    memset(&se, 0, sizeof se);
    se.base = &base;
    se.graph = &g;
    se.norm = norm;
    const double half = 0.5;
    se.targets = &half;
    se.n_targets = 1;
    se.safeguard = 0.1;
    se.data = &d;
    se.train_idx = tr;
    se.n_train = ntr;
    se.val_idx = va;
    se.n_val = nva;
    se.ft.steps = 4;
    se.ft.batch = 32;
    se.ft.sgd.momentum = 0.9f;
    se.ft.sgd.weight_decay = 5e-4f;
    se.ft.sched.kind = LR_CONSTANT;
    se.ft.sched.base_lr = 0.01f;
    se.ft.aug.crop_pad = 2;
    se.ft.aug.flip = 1;
    for (int c = 0; c < 3; c++) {
        se.ft.norm.mean[c] = 0.5f;
        se.ft.norm.std[c] = 0.25f;
    }
    se.run_seed = 11;

    Candidate c;
    evolution_candidate_alloc(&c, g.n_convs);
    for (int l = 0; l < g.n_convs; l++) {
        c.alpha[l] = 1.0;
        c.kappa[l] = 0.0;
    }
    c.id = 5;
    c.parent = -1;
    long long flops0 = arch_flops(&a);

    /* Same candidate twice: bit-identical, whatever ran before (the base is never modified). */
    EvoResult r1, r2, r3;
    search_evaluate(&c, &r1, &se);
    search_evaluate(&c, &r2, &se);
    EXPECT(isfinite(r1.fitness) && r1.fitness == r2.fitness && r1.accuracy == r2.accuracy,
           "re-evaluation differs: %.9g vs %.9g", r1.fitness, r2.fitness);
    EXPECT(r1.flops > 0 && r1.flops < 0.5 * flops0, "flops %.0f not below 50%% of %lld", r1.flops,
           flops0);

    /* Shared batches: another id with the same transform sees the same batches. */
    c.id = 6;
    search_evaluate(&c, &r3, &se);
    EXPECT(r3.fitness == r1.fitness, "shared batches: id 6 got %.9g, id 5 %.9g", r3.fitness,
           r1.fitness);
    /* Per-candidate batches: the id changes the batches, hence the fitness. */
    se.per_candidate_batches = 1;
    EvoResult r4, r5;
    search_evaluate(&c, &r4, &se);
    c.id = 5;
    search_evaluate(&c, &r5, &se);
    EXPECT(r4.fitness != r5.fitness, "per-candidate batches gave equal fitness %.9g", r4.fitness);
    se.per_candidate_batches = 0;

    /* Accuracy as fitness: 1 - top-1. */
    se.fitness_acc = 1;
    EvoResult r6;
    search_evaluate(&c, &r6, &se);
    EXPECT(fabs(r6.fitness - (1.0 - r6.accuracy)) < 1e-12, "val_acc fitness %.6f, acc %.6f",
           r6.fitness, r6.accuracy);
    se.fitness_acc = 0;

    /* A learning rate that blows the weights up: the loss is not finite, the fitness is +inf. */
    se.ft.sched.base_lr = 1e30f;
    EvoResult r7;
    search_evaluate(&c, &r7, &se);
    EXPECT(isinf(r7.fitness) && r7.fitness > 0, "diverged candidate got fitness %g", r7.fitness);
    se.ft.sched.base_lr = 0.01f;

    /* Several targets: fitness and accuracy are the means of the single-target results, flops
     * those of the first target; the key is the single-target keys one after the other. */
    const double pair[2] = {0.5, 0.3}, third = 0.3;
    EvoResult r30, r_pair;
    se.targets = &third;
    search_evaluate(&c, &r30, &se);
    unsigned char *key_half = xmalloc((size_t)g.n_entries);
    unsigned char *key_third = xmalloc((size_t)g.n_entries);
    unsigned char *key_pair = xmalloc(2 * (size_t)g.n_entries);
    EXPECT(search_arch_key(&c, key_third, &se) == 0, "key at 30%%");
    se.targets = &half;
    EXPECT(search_arch_key(&c, key_half, &se) == 0, "key at 50%%");
    se.targets = pair;
    se.n_targets = 2;
    search_evaluate(&c, &r_pair, &se);
    EXPECT(search_arch_key(&c, key_pair, &se) == 0, "key at 50%% and 30%%");
    EXPECT(r_pair.fitness == (r1.fitness + r30.fitness) / 2 &&
               r_pair.accuracy == (r1.accuracy + r30.accuracy) / 2,
           "two targets: fitness %.9g accuracy %.6f, not the means of %.9g, %.9g and %.6f, %.6f",
           r_pair.fitness, r_pair.accuracy, r1.fitness, r30.fitness, r1.accuracy, r30.accuracy);
    EXPECT(r30.flops < r1.flops && r_pair.flops == r1.flops, "flops %.0f (50%%) %.0f (30%%) %.0f",
           r1.flops, r30.flops, r_pair.flops);
    EXPECT(memcmp(key_pair, key_half, (size_t)g.n_entries) == 0 &&
               memcmp(key_pair + g.n_entries, key_third, (size_t)g.n_entries) == 0 &&
               memcmp(key_half, key_third, (size_t)g.n_entries) != 0,
           "the two-target key is not the 50%% key followed by the 30%% key");
    free(key_half);
    free(key_third);
    free(key_pair);
    se.targets = &half;
    se.n_targets = 1;

    /* The base network is untouched by all of this. */
    unsigned long long h = net_hash(&base);
    search_evaluate(&c, &r7, &se);
    EXPECT(net_hash(&base) == h, "evaluation modified the base network");

    evolution_candidate_free(&c);
    free(norm);
    free(tr);
    free(va);
    prune_graph_free(&g);
    net_free(&base);
    arch_free(&a);
    dataset_free(&d);
    return harness_finish("test_search_eval");
}
