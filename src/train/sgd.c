/* torch.optim.SGD semantics over the flat parameter buffer, and learning-rate schedules. */
#include "legr/train.h"

#include <math.h>

void sgd_step(Net *net, const SgdCfg *cfg, float lr)
{
    const float mu = cfg->momentum, wd = cfg->weight_decay;
    float *p = net->param, *g = net->grad, *m = net->mom;
    const size_t n = net->n_param_floats; /* alignment padding is zero and stays zero */
    if (mu == 0.0f) {
        for (size_t i = 0; i < n; i++) p[i] -= lr * (g[i] + wd * p[i]);
        return;
    }
    /* A zero momentum buffer makes the first step mom = d, exactly as PyTorch initialises it. */
    if (cfg->nesterov) {
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            m[i] = mu * m[i] + d;
            p[i] -= lr * (d + mu * m[i]);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float d = g[i] + wd * p[i];
            m[i] = mu * m[i] + d;
            p[i] -= lr * m[i];
        }
    }
}

float lr_at(const LrSchedule *s, int epoch)
{
    switch (s->kind) {
    case LR_MULTISTEP: {
        float lr = s->base_lr;
        for (int i = 0; i < s->n_milestones; i++)
            if (epoch >= s->milestones[i]) lr *= s->gamma;
        return lr;
    }
    case LR_COSINE: {
        if (s->total <= 0) return s->base_lr;
        int e = epoch < s->total ? epoch : s->total;
        return s->eta_min +
               (s->base_lr - s->eta_min) * 0.5f * (1.0f + (float)cos(M_PI * e / s->total));
    }
    default: return s->base_lr;
    }
}
