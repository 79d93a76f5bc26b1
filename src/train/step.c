/* A data-parallel training step and an evaluation pass, independent of how replicas talk. */
#include <stdlib.h>

#include "legr/train.h"

void train_attach_collective(Net *net, const Collective *col)
{
    net->bn_reduce.fn = col && col->sum_doubles ? col->sum_doubles : NULL;
    net->bn_reduce.ctx = col ? col->ctx : NULL;
}

double train_step(Net *net, const Collective *col, const float *x, const int *y, int n_local,
                  int n_global, const SgdCfg *sgd, float lr, int *correct)
{
    /* Synchronised BN makes forward/backward collective: every replica must take part. */
    CHECK(n_local > 0, "replica got an empty slice of a %d-image batch", n_global);
    net_forward(net, x, n_local, 1);
    double loss = net_loss(net, y, correct);
    net_zero_grad(net);
    net_backward(net, y, 1.0f / (float)n_global);
    if (col && col->sum_floats) {
        col->sum_floats(net->grad, net->n_param_floats, col->ctx);
        col->sum_doubles(&loss, 1, col->ctx);
    }
    sgd_step(net, sgd, lr);
    return loss / n_global;
}

EvalResult train_evaluate(Net *net, const Dataset *d, const int *idx, int n,
                          const Normalize *norm)
{
    EvalResult r = {0.0, 0.0, n};
    DataLoader *ld = data_loader_new(d, net->batch, norm, NULL);
    int correct = 0;
    if (n > 0) data_loader_submit(ld, idx, n < net->batch ? n : net->batch, 0, 0);
    for (int i = 0; i < n; i += net->batch) {
        int b = n - i < net->batch ? n - i : net->batch;
        const float *x;
        const int *y;
        data_loader_take(ld, &x, &y);
        int next = i + net->batch;
        if (next < n) data_loader_submit(ld, idx + next, n - next < net->batch ? n - next : net->batch, 0, 0);
        net_forward(net, x, b, 0);
        r.loss += net_loss(net, y, &correct);
    }
    data_loader_free(ld);
    if (n > 0) {
        r.loss /= n;
        r.acc = (double)correct / n;
    }
    return r;
}
