/* search.round_to (PruneGraph.round_to): with every method, on an option-A ResNet (whose one
 * group mixes 16, 32 and 64 channels) and MobileNetV2 (depthwise convs, projection groups), every
 * conv keeps a multiple of k channels, the target is met and the mask's FLOP count is the pruned
 * network's own. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "legr/prune.h"
#include "legr/rng.h"

static const char *const method_names[4] = {"legr", "identity", "uniform", "random"};

static int prune_with(const PruneGraph *g, int method, const double *norm, const double *alpha,
                      const double *kappa, double target, KeepMask *m, Err *err)
{
    switch (method) {
    case 0: return prune_legr(g, norm, alpha, kappa, g->n_convs, target, 0.1, m, err);
    case 1: return prune_identity(g, norm, target, 0.1, m, err);
    case 2: return prune_uniform(g, norm, target, 0.1, m, err);
    default: return prune_random(g, 7, 3, target, 0.1, m, err);
    }
}

/* Every method at three targets and k = 4, 8 on the network of a; some conv must keep a count
 * that k = 1 did not (a rounding that changed nothing would fail). */
static void check_arch(const char *what, Arch *a)
{
    Net net;
    PruneGraph g;
    Err err;
    CHECK(net_build(&net, a, 1, &err) == 0, "%s", err.msg);
    net_init_params(&net, 5);
    CHECK(prune_graph_build(&g, a, &err) == 0, "graph: %s", err.msg);
    EXPECT(g.round_to == 1, "%s: a new graph prunes one channel at a time", what);
    double *norm = xmalloc((size_t)g.n_filters * sizeof(double));
    double *alpha = xmalloc((size_t)g.n_convs * sizeof(double));
    double *kappa = xmalloc((size_t)g.n_convs * sizeof(double));
    Rng r;
    rng_init(&r, 11, rng_stream_id(RNG_PURPOSE_TEST, 40));
    for (int f = 0; f < g.n_filters; f++) norm[f] = rng_uniform(&r);
    for (int l = 0; l < g.n_convs; l++) {
        alpha[l] = 0.5 + rng_uniform(&r);
        kappa[l] = 0.2 * rng_uniform(&r);
    }
    static const double targets[3] = {0.3, 0.5, 0.7};
    int changed = 0;
    for (int method = 0; method < 4; method++) {
        for (int ti = 0; ti < 3; ti++) {
            KeepMask m1;
            g.round_to = 1;
            CHECK(prune_with(&g, method, norm, alpha, kappa, targets[ti], &m1, &err) == 0,
                  "%s %s %.1f: %s", what, method_names[method], targets[ti], err.msg);
            for (int k = 4; k <= 8; k += 4) {
                KeepMask m;
                g.round_to = k;
                int rc = prune_with(&g, method, norm, alpha, kappa, targets[ti], &m, &err);
                EXPECT(rc == 0, "%s %s %.1f round_to %d: %s", what, method_names[method],
                       targets[ti], k, err.msg);
                if (rc != 0) continue;
                EXPECT((double)m.flops < targets[ti] * (double)g.flops0,
                       "%s %s %.1f round_to %d: %lld MACs miss the target", what,
                       method_names[method], targets[ti], k, m.flops);
                for (int l = 0; l < g.n_convs; l++) {
                    int c = prune_mask_conv_c(&m, &g, l);
                    EXPECT(c % k == 0, "%s %s %.1f round_to %d: conv %d keeps %d of %d", what,
                           method_names[method], targets[ti], k, l, c, g.conv_c[l]);
                    changed += c != prune_mask_conv_c(&m1, &g, l);
                }
                Net small;
                EXPECT(prune_apply(&net, &m, &small, &err) == 0, "apply: %s", err.msg);
                EXPECT(arch_flops(&small.arch) == m.flops,
                       "%s %s %.1f round_to %d: the mask counts %lld MACs, the network has %lld",
                       what, method_names[method], targets[ti], k, m.flops,
                       arch_flops(&small.arch));
                net_free(&small);
                prune_mask_free(&m);
            }
            prune_mask_free(&m1);
        }
    }
    EXPECT(changed > 0, "%s: round_to changed no conv's count", what);
    printf("%s: 4 methods x 3 targets x round_to 4 and 8: every conv a multiple; %d counts "
           "differ from round_to 1\n", what, changed);
    free(norm);
    free(alpha);
    free(kappa);
    prune_graph_free(&g);
    net_free(&net);
}

int main(void)
{
    Arch a;
    Err err;
    CHECK(arch_resnet_cifar(&a, 20, 1, 28, 28, 10, 1.0, &err) == 0, "%s", err.msg);
    check_arch("ResNet-20", &a);
    /* Channels leaving 16 at a time, no ResNet-20 conv goes below 16 channels (46.5% of its
     * FLOPs at best): a 30% target is refused, and the message names the rounding. */
    PruneGraph g;
    KeepMask m;
    CHECK(prune_graph_build(&g, &a, &err) == 0, "graph: %s", err.msg);
    double *norm = xcalloc((size_t)g.n_filters, sizeof(double));
    g.round_to = 16;
    EXPECT(prune_identity(&g, norm, 0.3, 0.1, &m, &err) != 0 && err.code == LEGR_EXIT_USAGE &&
               strstr(err.msg, "unreachable") && strstr(err.msg, "round_to 16"),
           "round_to 16, target 0.3: %s", err.msg);
    printf("round_to 16, target 0.3: %s\n", err.msg);
    /* ...and a 48% target is met: a batch that can never complete (the 16-channel convs'
     * floors stop it) must not hold quota that the other bands need (it did, and the walk
     * stopped at 58%). */
    EXPECT(prune_identity(&g, norm, 0.48, 0.1, &m, &err) == 0, "round_to 16, target 0.48: %s",
           err.msg);
    for (int l = 0; l < g.n_convs && m.entry_removed; l++)
        EXPECT(prune_mask_conv_c(&m, &g, l) % 16 == 0, "round_to 16: conv %d keeps %d", l,
               prune_mask_conv_c(&m, &g, l));
    prune_mask_free(&m);
    free(norm);
    prune_graph_free(&g);
    arch_free(&a);
    CHECK(arch_mobilenetv2(&a, 1, 3, 32, 32, 100, 1.0, &err) == 0, "%s", err.msg);
    check_arch("MobileNetV2-CIFAR", &a);
    arch_free(&a);
    return harness_finish("test_prune_round");
}
