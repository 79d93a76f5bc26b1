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
    const size_t img = (size_t)d->c * d->h * d->w;
    float *x = xalloc_floats((size_t)net->batch * img);
    int *y = xmalloc((size_t)net->batch * sizeof(int));
    int correct = 0;
    for (int i = 0; i < n; i += net->batch) {
        int b = n - i < net->batch ? n - i : net->batch;
        data_fill_batch(x, y, d, idx + i, b, norm, NULL, NULL);
        net_forward(net, x, b, 0);
        r.loss += net_loss(net, y, &correct);
    }
    free(x);
    free(y);
    if (n > 0) {
        r.loss /= n;
        r.acc = (double)correct / n;
    }
    return r;
}
