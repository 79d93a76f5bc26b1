/* Central finite-difference check of net_backward on every parameter tensor of a whole ResNet-8, and of a small network with every other node kind (conv bias, max pooling, ReLU6, depthwise convs, an add without ReLU, dropout). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "legr/arch.h"
#include "legr/net.h"
#include "legr/rng.h"

/*
 * Setting: ResNet-8 (stem, three BasicBlocks with option-A shortcuts, GAP, FC) on N = 2 images of
 * 3x8x8 in training mode, so every BN normalises with the statistics of this batch and the loss
 * couples both images. (Each training forward also moves the running statistics; the training
 * loss does not read them.) L(p) = mean cross-entropy from the float engine.
 *
 * Kinks. L is smooth except where some ReLU input crosses zero, and a central difference across
 * such a kink is wrong by up to the jump in slope. With ~9,000 ReLU outputs even a step of 1e-2
 * often crosses one, and the two one-sided differences can agree while both are off (kinks on
 * both sides). So kinks are detected exactly instead: the test hashes which ReLU outputs are
 * positive after every forward and accepts a step h only if p - h, p and p + h all take the same
 * branches, so L is smooth between the two points. Steps are tried from 1e-2 down to 1e-4
 * (larger steps have less rounding noise); an entry that crosses a kink even at 1e-4 is skipped
 * and counted, and at most a quarter of a tensor's entries may be skipped. BN gamma ~ 0.5 and
 * beta ~ 0.8 (randomised) put fewer ReLU inputs next to zero than gamma 1, beta 0 would, so few
 * entries need the small, noisy steps; part of the ReLU outputs are still zero, so the masks are
 * exercised (the fraction is printed).
 *
 * Tolerance. L(p + h) and L(p - h) carry float rounding noise, measured up to 6e-7 (LOSS_NOISE;
 * rms 1.5e-7) on a loss of ~2.2, so the central difference is uncertain by up to
 * LOSS_NOISE / h. Truncation is O(h^2) times the third derivative; at h = 1e-2 it stays below
 * 1% here (3e-2 was too large for the stage-3 weights of |w| ~ 0.06, around which BN makes the
 * loss curve like 1/|w|^2). An entry's error is |analytic - numeric| / max(|analytic|,
 * |numeric|, floor) with floor = max(FLOOR_FRAC * the tensor's largest |gradient|,
 * LOSS_NOISE / (TOL * h)): entries smaller than the noise are judged against it. Over 12 seeds
 * the largest error was 2.8% (0.75% for this seed), so TOL = 5%: a backward off by 10% fails.
 */
#define BATCH 2
#define IN_C 3
#define IN_HW 8
#define CLASSES 10
#define SEED 42
#define GAMMA_MEAN 0.5
#define BETA_MEAN 0.8
#define TOL 5e-2
#define FLOOR_FRAC 1e-2
#define LOSS_NOISE 6e-7
#define SAMPLES 8 /* entries per tensor (all of them when the tensor is smaller) */

static float x_in[BATCH * IN_C * IN_HW * IN_HW];
static int labels[BATCH] = {3, 7};

/* Which input of every max-pooling window is its (first) maximum, hashed into h. */
static unsigned long long maxpool_pattern(const Net *net, int i, unsigned long long h)
{
    const Node *nd = &net->arch.nodes[i], *p = &net->arch.nodes[nd->in[0]];
    const float *x = net->act + net->act_off[nd->in[0]];
    for (int cn = 0; cn < nd->c * net->cur_n; cn++)
        for (int oh = 0; oh < nd->h; oh++)
            for (int ow = 0; ow < nd->w; ow++) {
                int best = -1;
                float m = 0.0f;
                for (int kh = 0; kh < nd->k; kh++)
                    for (int kw = 0; kw < nd->k; kw++) {
                        int ih = oh * nd->stride - nd->pad + kh, iw = ow * nd->stride - nd->pad + kw;
                        if (ih < 0 || iw < 0 || ih >= p->h || iw >= p->w) continue;
                        float v = x[((size_t)cn * p->h + ih) * p->w + iw];
                        if (best < 0 || v > m) {
                            best = kh * nd->k + kw;
                            m = v;
                        }
                    }
                h = hash_fnv1a(h, &best, sizeof best);
            }
    return h;
}

/* The branches every ReLU and ReLU6 took (output > 0, and < 6) and every max pool's choices,
 * hashed: two forwards with equal hashes took the same branch at every kink. */
static unsigned long long relu_pattern(const Net *net)
{
    unsigned long long h = HASH_FNV_INIT;
    for (int i = 0; i < net->arch.n_nodes; i++) {
        const Node *nd = &net->arch.nodes[i];
        if (nd->kind == OP_MAXPOOL) h = maxpool_pattern(net, i, h);
        if (nd->kind != OP_RELU && nd->kind != OP_RELU6) continue;
        const float *out = net->act + net->act_off[i];
        size_t n = (size_t)nd->c * net->cur_n * nd->h * nd->w;
        for (size_t j = 0; j < n; j += 32) {
            unsigned long long bits = 0;
            for (size_t k = j; k < n && k < j + 32; k++)
                bits |= (unsigned long long)(out[k] > 0 ? out[k] < 6 ? 1 : 2 : 0) << 2 * (k - j);
            h = hash_fnv1a(h, &bits, sizeof bits);
        }
    }
    return h;
}

/* Mean training loss at the current parameters; *pattern gets the ReLU branch pattern. */
static double loss_at(Net *net, unsigned long long *pattern)
{
    net_forward(net, x_in, BATCH, 1);
    *pattern = relu_pattern(net);
    return net_loss(net, labels, NULL) / BATCH;
}

/* Steps tried in turn, largest first: the largest step that crosses no ReLU kink has the least
 * rounding noise. */
static const float steps[] = {1e-2f, 3e-3f, 1e-3f, 3e-4f, 1e-4f};
#define N_STEPS ((int)(sizeof steps / sizeof steps[0]))

/* Central difference at parameter index i with the first step h for which every ReLU takes the
 * same branch at p - h, p and p + h (base_pattern): L is then smooth on the whole segment and
 * the difference is accurate to O(h^2) plus rounding. Returns 0 with *num and *step, or -1 when
 * even the smallest step crosses a kink. Restores the parameter. */
static int central_diff(Net *net, size_t i, unsigned long long base_pattern,
                        double *num, float *step)
{
    float saved = net->param[i];
    for (int k = 0; k < N_STEPS; k++) {
        unsigned long long pp, pm;
        float h = steps[k];
        net->param[i] = saved + h;
        float up = net->param[i] - saved; /* the step actually taken in float */
        double lp = loss_at(net, &pp);
        net->param[i] = saved - h;
        float down = saved - net->param[i];
        double lm = loss_at(net, &pm);
        net->param[i] = saved;
        if (pp == base_pattern && pm == base_pattern) {
            *num = (lp - lm) / ((double)up + down);
            *step = h;
            return 0;
        }
    }
    return -1;
}

/* |analytic - numeric| relative to the larger of the two, not below floor. */
static double rel_err(double ana, double num, double floor)
{
    return fabs(ana - num) / fmax(fmax(fabs(num), fabs(ana)), floor);
}

typedef struct {
    double worst;         /* largest relative error over the checked entries */
    int checked, skipped; /* entries compared / skipped at kinks */
} TensorResult;

/* Check SAMPLES entries of one tensor: its largest analytic gradient first, then random ones. */
static TensorResult check_tensor_grad(Net *net, const ParamSpec *s, const float *grad,
                                      unsigned long long base_pattern, Rng *rng)
{
    TensorResult r = {0.0, 0, 0};
    const float *g = grad + s->offset;
    size_t argmax = 0;
    double gmax = 0.0;
    for (size_t j = 0; j < s->count; j++) {
        if (fabs((double)g[j]) > gmax) {
            gmax = fabs((double)g[j]);
            argmax = j;
        }
    }
    double floor = FLOOR_FRAC * gmax;
    int n = s->count < SAMPLES ? (int)s->count : SAMPLES;
    for (int k = 0; k < n; k++) {
        size_t j = k == 0                  ? argmax
                   : s->count <= SAMPLES ? (size_t)k
                                         : rng_below(rng, (uint32_t)s->count);
        double num;
        float h;
        if (central_diff(net, s->offset + j, base_pattern, &num, &h) != 0) {
            r.skipped++;
            continue;
        }
        double e = rel_err(g[j], num, fmax(floor, LOSS_NOISE / (TOL * h)));
        if (!(e <= r.worst)) r.worst = e;
        r.checked++;
        EXPECT(e <= TOL, "%s[%zu]: backward %.6g, central difference %.6g at step %g "
               "(rel err %.3g)", s->name, j, g[j], num, h, e);
    }

    return r;
}

/* Every node kind after the CIFAR ResNet's, on 3x8x8: conv 3x3 with bias, BN, ReLU6, max pool
 * 3/2/1, an inverted residual (1x1 expansion, depthwise 3x3, ReLU6s, 1x1 projection with bias,
 * BN, add without ReLU), a stride-2 depthwise conv, ReLU, GAP, dropout, FC. */
static int build_zoo(Arch *a, Err *err)
{
    arch_init(a);
    int x = arch_add_input(a, "input", IN_C, IN_HW, IN_HW, err);
    int c = arch_add_conv(a, "stem", x, 8, 3, 1, 1, 1, err);
    if (c < 0 || arch_set_conv_bias(a, c, err)) return -1;
    x = arch_add_bn(a, "stem_bn", c, err);
    x = arch_add_relu6(a, "stem_act", x, err);
    int mp = arch_add_maxpool(a, "pool", x, 3, 2, 1, err);
    x = arch_add_conv(a, "expand", mp, 16, 1, 1, 0, 1, err);
    x = arch_add_bn(a, "expand_bn", x, err);
    x = arch_add_relu6(a, "expand_act", x, err);
    x = arch_add_conv(a, "dw", x, 16, 3, 1, 1, 16, err);
    x = arch_add_bn(a, "dw_bn", x, err);
    x = arch_add_relu6(a, "dw_act", x, err);
    c = arch_add_conv(a, "project", x, 8, 1, 1, 0, 1, err);
    if (c < 0 || arch_set_conv_bias(a, c, err)) return -1;
    x = arch_add_bn(a, "project_bn", c, err);
    x = arch_add_add(a, "add", x, mp, err);
    x = arch_add_conv(a, "dw2", x, 8, 3, 2, 1, 8, err);
    x = arch_add_bn(a, "dw2_bn", x, err);
    x = arch_add_relu(a, "dw2_act", x, err);
    x = arch_add_gap(a, "gap", x, err);
    x = arch_add_dropout(a, "drop", x, 0.3, err);
    return arch_add_fc(a, "fc", x, CLASSES, err) < 0 ? -1 : 0;
}

/* The whole check on one network: backward against central differences on every tensor. */
static void check_network(const char *what, Net *net)
{
    /* PyTorch-default conv/FC weights; BN gamma/beta random around GAMMA_MEAN/BETA_MEAN. */
    net_init_params(net, SEED);
    Rng rng;
    rng_init(&rng, SEED, rng_stream_id(RNG_PURPOSE_TEST, 1));
    for (int t = 0; t < net->n_params; t++) {
        const ParamSpec *s = &net->params[t];
        if (net->arch.nodes[s->node].kind != OP_BN) continue;
        int is_gamma = strstr(s->name, ".weight") != NULL;
        for (size_t j = 0; j < s->count; j++)
            net->param[s->offset + j] = (float)(is_gamma ? GAMMA_MEAN + 0.1 * rng_normal(&rng)
                                                         : BETA_MEAN + 0.2 * rng_normal(&rng));
    }
    for (size_t j = 0; j < sizeof x_in / sizeof x_in[0]; j++) x_in[j] = (float)rng_normal(&rng);
    /* Dropout masks stay fixed across the perturbed forwards: same seed, step and images. */
    net->drop_seed = SEED;

    unsigned long long base_pattern, pattern;
    double l0 = loss_at(net, &base_pattern);
    net_zero_grad(net);
    net_backward(net, labels, 1.0f / BATCH);
    float *grad = xalloc_floats(net->n_param_floats);
    memcpy(grad, net->grad, net->n_param_floats * sizeof(float));
    EXPECT(isfinite(l0) && l0 > 0, "%s: loss %g", what, l0);
    size_t relu_total = 0, relu_zero = 0;
    for (int i = 0; i < net->arch.n_nodes; i++) {
        const Node *nd = &net->arch.nodes[i];
        if (nd->kind != OP_RELU && nd->kind != OP_RELU6) continue;
        size_t n = (size_t)nd->c * BATCH * nd->h * nd->w;
        for (size_t j = 0; j < n; j++) relu_zero += net->act[net->act_off[i] + j] <= 0;
        relu_total += n;
    }
    printf("%s: loss %.6f; %zu of %zu ReLU/ReLU6 outputs are zero\n", what, l0, relu_zero,
           relu_total);
    EXPECT(relu_zero > relu_total / 50, "%s: too few ReLU outputs are zero to exercise the masks",
           what);

    double worst = 0.0;
    int checked = 0, skipped = 0;
    for (int t = 0; t < net->n_params; t++) {
        const ParamSpec *s = &net->params[t];
        TensorResult r = check_tensor_grad(net, s, grad, base_pattern, &rng);
        printf("  %-24s %d entries checked, %d skipped at a kink, max rel err %.3g\n", s->name,
               r.checked, r.skipped, r.worst);
        EXPECT(r.checked >= 1 && 4 * r.skipped <= r.checked + r.skipped,
               "%s: %d of %d entries skipped at ReLU kinks", s->name, r.skipped,
               r.checked + r.skipped);
        if (!(r.worst <= worst)) worst = r.worst;
        checked += r.checked;
        skipped += r.skipped;
    }
    printf("whole %s, train mode: %d entries checked, %d skipped, max rel err %.3g (tol %g)\n",
           what, checked, skipped, worst, TOL);
    /* The loss at the base point must come back exactly after all the perturbations. */
    EXPECT(loss_at(net, &pattern) == l0 && pattern == base_pattern,
           "%s: parameters were not restored", what);
    free(grad);
}

int main(void)
{
    Err err = {0};
    Arch arch;
    Net net;
    int ok = arch_resnet_cifar(&arch, 8, IN_C, IN_HW, IN_HW, CLASSES, 1.0, &err) == 0 &&
             net_build(&net, &arch, BATCH, &err) == 0;
    EXPECT(ok, "ResNet-8: %s", err.msg);
    arch_free(&arch);
    if (ok) {
        check_network("ResNet-8", &net);
        net_free(&net);
    }
    ok = build_zoo(&arch, &err) == 0 && net_build(&net, &arch, BATCH, &err) == 0;
    EXPECT(ok, "the other kinds' network: %s", err.msg);
    arch_free(&arch);
    if (ok) {
        check_network("network of the other kinds", &net);
        net_free(&net);
    }
    return harness_finish("test_net_grad");
}
