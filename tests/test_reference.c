/* Compares the C engine tensor by tensor with the PyTorch fixture of tools/make_reference.py. */
#include <hdf5.h>
#include <hdf5_hl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "legr/arch.h"
#include "legr/net.h"
#include "legr/train.h"

/*
 * Tolerances. Both sides compute in float32 but sum in different orders (Winograd F(4,3) and
 * direct kernels here, oneDNN there), so every result carries rounding noise amplified by the
 * depth of the computation. The error of a tensor is max |c - ref| / max(|ref|, floor) with
 * floor = REL_FLOOR * max|ref| over the tensor: an entry a thousand times smaller than the
 * tensor's largest is judged against that scale, because its own relative error is pure
 * cancellation noise (e.g. a BN beta gradient, a sum of terms of both signs).
 * tools/make_reference.py prints how far float32 PyTorch itself is from float64 in this metric:
 * logits 3.8e-5, running stats 1.2e-5, gradients 3.5e-4, parameters after SGD 4.5e-5, eval
 * logits 4.7e-5. Two float32 implementations differ by about the sum of their noise, and the
 * Winograd transforms of our 3x3 convs (src/nn/wino_tile.h) about double that of a direct
 * conv (logits 1.0e-4 here, 5e-5 with direct 3x3 convs), so:
 *  - forward quantities (logits, losses, running stats): TOL_FWD = 2e-4;
 *  - gradients pass back through five batch norms, whose backward subtracts the mean of the
 *    incoming gradient and its correlation with x_hat, and through conv weight gradients that
 *    sum 128-1024 products of both signs: TOL_GRAD = 2e-3 (measured up to 1.35e-3, with 3x3
 *    forward, dX and dW all by Winograd; 5e-4 with direct 3x3 convs);
 *  - parameters after SGD and the eval forward through them inherit the gradients' noise
 *    scaled by lr: TOL_AFTER = 1e-3 (measured up to 1.6e-4);
 *  - a parameter moves little in three steps, so the update after - before is compared too: it
 *    exposes a wrong weight decay or momentum term that is tiny next to the parameter itself.
 *    It sums three steps of gradient noise: TOL_UPDATE = 5e-3 (measured up to 1e-3; dropping
 *    the weight decay gives 4, plain instead of Nesterov momentum 170).
 */
#define REL_FLOOR 1e-3
#define TOL_FWD 2e-4
#define TOL_GRAD 2e-3
#define TOL_AFTER 1e-3
#define TOL_UPDATE 5e-3

#define FIXTURE "tests/data/reference_resnet8.h5"

/* Largest error per tensor kind, for the summary. */
enum {
    K_LOGITS,
    K_LOSS,
    K_GRAD,
    K_BUF_FWD,
    K_STEP_LOSS,
    K_PARAM_AFTER,
    K_UPDATE,
    K_BUF_AFTER,
    K_EVAL,
    K_N
};
static const char *const kind_names[K_N] = {
    "logits", "loss", "gradients", "running stats (1 fwd)", "loss per step", "params after SGD",
    "SGD update (after-before)", "running stats after SGD", "eval logits after SGD"};
static double kind_worst[K_N];

/* Max |a - ref| / max(|ref|, REL_FLOOR * max|ref|); NaN or Inf anywhere gives +Inf. */
static double tensor_rel_err(const float *a, const float *ref, size_t n)
{
    double scale = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)ref[i]) > scale) scale = fabs((double)ref[i]);
    double floor = REL_FLOOR * scale > 1e-30 ? REL_FLOOR * scale : 1e-30;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(ref[i])) return INFINITY;
        double den = fabs((double)ref[i]) > floor ? fabs((double)ref[i]) : floor;
        double e = fabs((double)a[i] - (double)ref[i]) / den;
        if (e > worst) worst = e;
    }
    return worst;
}

static void check_tensor(int kind, const char *name, const float *a, const float *ref, size_t n,
                         double tol)
{
    double e = tensor_rel_err(a, ref, n);
    printf("  %-26s %-24s %6zu values  max rel err %.3g\n", kind_names[kind], name, n, e);
    if (!(e <= kind_worst[kind])) kind_worst[kind] = e;
    EXPECT(e <= tol, "%s %s: relative error %.3g exceeds %.1g", kind_names[kind], name, e, tol);
}

/* Read dataset `path` into dst after checking that it holds exactly `count` values of the given
 * shape (ndim < 0: only the count is checked). Returns 0, or -1 after a failed EXPECT. */
static int read_floats(hid_t f, const char *path, float *dst, size_t count, int ndim,
                       const int *shape)
{
    int rank = -1;
    hsize_t dims[8];
    if (H5LTget_dataset_ndims(f, path, &rank) < 0 || rank > 8 ||
        H5LTget_dataset_info(f, path, dims, NULL, NULL) < 0) {
        EXPECT(0, "fixture has no readable dataset %s", path);
        return -1;
    }
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
    int same = n == count && (ndim < 0 || rank == ndim);
    for (int i = 0; same && ndim >= 0 && i < rank; i++) same = (int)dims[i] == shape[i];
    if (!same) {
        EXPECT(0, "fixture dataset %s has %zu values (rank %d), the C net expects %zu (rank %d)",
               path, n, rank, count, ndim);
        return -1;
    }
    if (H5LTread_dataset_float(f, path, dst) < 0) {
        EXPECT(0, "cannot read fixture dataset %s", path);
        return -1;
    }
    return 0;
}

static int read_attr_int(hid_t f, const char *name)
{
    int v = -1;
    if (H5LTget_attribute_int(f, "/", name, &v) < 0) EXPECT(0, "fixture lacks attribute %s", name);
    return v;
}

static double read_attr_double(hid_t f, const char *name)
{
    double v = NAN;
    if (H5LTget_attribute_double(f, "/", name, &v) < 0)
        EXPECT(0, "fixture lacks attribute %s", name);
    return v;
}

/* Load group/<name> for every entry of a spec table into the matching flat buffer. */
static int load_table(hid_t f, const char *group, const ParamSpec *tab, int n, float *dst)
{
    char path[160];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "/%s/%s", group, tab[i].name);
        if (read_floats(f, path, dst + tab[i].offset, tab[i].count, tab[i].ndim, tab[i].shape))
            return -1;
    }
    return 0;
}

/* Compare every entry of a spec table with group/<name>. */
static void compare_table(hid_t f, int kind, const char *group, const ParamSpec *tab, int n,
                          const float *have, double tol)
{
    char path[160];
    for (int i = 0; i < n; i++) {
        float *ref = xmalloc(tab[i].count * sizeof(float));
        snprintf(path, sizeof path, "/%s/%s", group, tab[i].name);
        if (read_floats(f, path, ref, tab[i].count, tab[i].ndim, tab[i].shape) == 0)
            check_tensor(kind, tab[i].name, have + tab[i].offset, ref, tab[i].count, tol);
        free(ref);
    }
}

/* Compare the change of every parameter, have - before, with params_after/<name> - before
 * (before: the fixture's initial parameters, which the net started from bit for bit). */
static void compare_updates(hid_t f, const Net *net, const float *before)
{
    for (int i = 0; i < net->n_params; i++) {
        const ParamSpec *s = &net->params[i];
        char path[160];
        float *ref = xmalloc(s->count * sizeof(float));
        float *have = xmalloc(s->count * sizeof(float));
        snprintf(path, sizeof path, "/params_after/%s", s->name);
        if (read_floats(f, path, ref, s->count, s->ndim, s->shape) == 0) {
            for (size_t j = 0; j < s->count; j++) {
                ref[j] -= before[s->offset + j];
                have[j] = net->param[s->offset + j] - before[s->offset + j];
            }
            check_tensor(K_UPDATE, s->name, have, ref, s->count, TOL_UPDATE);
        }
        free(ref);
        free(have);
    }
}

/* Same keys on both sides: the fixture group holds exactly as many datasets as the table. */
static void check_group_size(hid_t f, const char *group, int expected)
{
    H5G_info_t info;
    int ok = H5Gget_info_by_name(f, group, &info, H5P_DEFAULT) >= 0;
    EXPECT(ok && (int)info.nlinks == expected, "fixture group %s has %d entries, the C net %d",
           group, ok ? (int)info.nlinks : -1, expected);
}

static void run_reference(hid_t f)
{
    int depth = read_attr_int(f, "depth"), in_c = read_attr_int(f, "in_c");
    int in_h = read_attr_int(f, "in_h"), in_w = read_attr_int(f, "in_w");
    int classes = read_attr_int(f, "num_classes"), batch = read_attr_int(f, "batch");
    int steps = read_attr_int(f, "n_steps");
    SgdCfg sgd = {(float)read_attr_double(f, "momentum"),
                  (float)read_attr_double(f, "weight_decay"), read_attr_int(f, "nesterov")};
    float lr = (float)read_attr_double(f, "lr");
    if (harness_failures) return;

    Err err = {0};
    Arch arch;
    Net net;
    int ok = arch_resnet_cifar(&arch, depth, in_c, in_h, in_w, classes, 1.0, &err) == 0;
    EXPECT(ok, "arch_resnet_cifar: %s", err.msg);
    if (!ok) return;
    ok = net_build(&net, &arch, batch, &err) == 0;
    EXPECT(ok, "net_build: %s", err.msg);
    arch_free(&arch);
    if (!ok) return;
    EXPECT(fabsf(net.bn_momentum - (float)read_attr_double(f, "bn_momentum")) < 1e-7f &&
               fabsf(net.bn_eps - (float)read_attr_double(f, "bn_eps")) < 1e-12f,
           "BN momentum/eps differ from the fixture's");

    size_t img = (size_t)in_c * in_h * in_w;
    int in_shape[5] = {steps, batch, in_c, in_h, in_w};
    int out_shape[2] = {batch, classes};
    int step_shape[1] = {steps};
    float *x = xmalloc((size_t)steps * batch * img * sizeof(float));
    int *labels = xmalloc((size_t)steps * batch * sizeof(int));
    float *ref_logits = xmalloc((size_t)batch * classes * sizeof(float));
    float *have_logits = xmalloc((size_t)batch * classes * sizeof(float));
    float *ref_step_loss = xmalloc((size_t)steps * sizeof(float));
    float *step_loss = xmalloc((size_t)steps * sizeof(float));
    float *before = xalloc_floats(net.n_param_floats);
    float ref_loss = 0.0f;

    check_group_size(f, "/params", net.n_params);
    check_group_size(f, "/grads", net.n_params);
    check_group_size(f, "/buffers", net.n_bufs);
    if (read_floats(f, "/inputs", x, (size_t)steps * batch * img, 5, in_shape) ||
        read_floats(f, "/step_loss", ref_step_loss, (size_t)steps, 1, step_shape) ||
        read_floats(f, "/loss", &ref_loss, 1, -1, NULL) ||
        H5LTread_dataset_int(f, "/labels", labels) < 0 ||
        load_table(f, "params", net.params, net.n_params, net.param) ||
        load_table(f, "buffers", net.bufs, net.n_bufs, net.buf))
        goto out;
    memcpy(before, net.param, net.n_param_floats * sizeof(float));
    for (int i = 0; i < steps * batch; i++)
        EXPECT(labels[i] >= 0 && labels[i] < classes, "label %d out of range", labels[i]);

    printf("train-mode forward/backward of batch 0 from the fixture's weights:\n");
    for (int s = 0; s < steps; s++) {
        const int *lab = labels + (size_t)s * batch;
        net_zero_grad(&net);
        const float *logits = net_forward(&net, x + (size_t)s * batch * img, batch, 1);
        step_loss[s] = (float)(net_loss(&net, lab, NULL) / batch);
        net_backward(&net, lab, 1.0f / (float)batch);
        if (s == 0) {
            if (read_floats(f, "/logits", ref_logits, (size_t)batch * classes, 2, out_shape))
                goto out;
            check_tensor(K_LOGITS, "logits", logits, ref_logits, (size_t)batch * classes,
                         TOL_FWD);
            check_tensor(K_LOSS, "loss", &step_loss[0], &ref_loss, 1, TOL_FWD);
            compare_table(f, K_GRAD, "grads", net.params, net.n_params, net.grad, TOL_GRAD);
            compare_table(f, K_BUF_FWD, "buffers_fwd", net.bufs, net.n_bufs, net.buf, TOL_FWD);
            printf("after %d SGD steps (lr %g, momentum %g, weight decay %g, nesterov %d):\n",
                   steps, lr, sgd.momentum, sgd.weight_decay, sgd.nesterov);
        }
        sgd_step(&net, &sgd, lr);
    }
    /* The losses of later steps see the updated weights: a wrong step shows up here first. */
    check_tensor(K_STEP_LOSS, "step_loss", step_loss, ref_step_loss, (size_t)steps, TOL_FWD);
    compare_table(f, K_PARAM_AFTER, "params_after", net.params, net.n_params, net.param,
                  TOL_AFTER);
    compare_updates(f, &net, before);
    compare_table(f, K_BUF_AFTER, "buffers_after", net.bufs, net.n_bufs, net.buf, TOL_AFTER);

    const float *eval = net_forward(&net, x, batch, 0);
    memcpy(have_logits, eval, (size_t)batch * classes * sizeof(float));
    if (read_floats(f, "/eval_logits", ref_logits, (size_t)batch * classes, 2, out_shape) == 0)
        check_tensor(K_EVAL, "eval_logits", have_logits, ref_logits, (size_t)batch * classes,
                     TOL_AFTER);

    printf("largest relative error per tensor kind (floor %.0e x tensor max):\n", REL_FLOOR);
    for (int k = 0; k < K_N; k++) printf("  %-26s %.3g\n", kind_names[k], kind_worst[k]);
out:
    free(x);
    free(labels);
    free(ref_logits);
    free(have_logits);
    free(ref_step_loss);
    free(step_loss);
    free(before);
    net_free(&net);
}

int main(void)
{
    const char *src = getenv("LEGR_SRC");
    if (!src || !*src) src = LEGR_SOURCE_DIR;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", src, FIXTURE);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* failures are reported by the checks below */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    EXPECT(f >= 0, "cannot open %s (regenerate with tools/make_reference.py)", path);
    if (f >= 0) {
        run_reference(f);
        H5Fclose(f);
    }
    return harness_finish("test_reference");
}
