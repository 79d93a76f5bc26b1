/* The base network's architecture: a built-in builder chosen by model.arch, or model.init's own. */
#include <string.h>

#include "job_internal.h"
#include "legr/h5io.h"

int job_arch_check_data(const Config *cfg, const Arch *a, Err *err)
{
    int c, h, w, k;
    job_data_shape(cfg, &c, &h, &w, &k);
    const Node *in = &a->nodes[0];
    if (in->c != c || in->h != h || in->w != w)
        return err_set(err, LEGR_EXIT_USAGE,
                       "model.init = \"%s\" holds a network for %dx%dx%d inputs, but the "
                       "configured dataset (%s) gives %dx%dx%d images",
                       cfg->model.init, in->c, in->h, in->w, cfg_dataset_names[cfg->data.dataset],
                       c, h, w);
    if (a->num_classes != k)
        return err_set(err, LEGR_EXIT_USAGE,
                       "model.init = \"%s\" holds a network with %d classes, but the configured "
                       "dataset (%s) has %d", cfg->model.init, a->num_classes,
                       cfg_dataset_names[cfg->data.dataset], k);
    return 0;
}

int job_arch_build(const Config *cfg, Arch *a, Err *err)
{
    int c, h, w, k;
    job_data_shape(cfg, &c, &h, &w, &k);
    const double wm = cfg->model.width;
    switch (cfg->model.arch) {
    case CFG_ARCH_RESNET: return arch_resnet_cifar(a, cfg->model.depth, c, h, w, k, wm, err);
    case CFG_ARCH_RESNET18: return arch_resnet_imagenet(a, 18, c, h, w, k, wm, err);
    case CFG_ARCH_RESNET34: return arch_resnet_imagenet(a, 34, c, h, w, k, wm, err);
    case CFG_ARCH_RESNET50: return arch_resnet_imagenet(a, 50, c, h, w, k, wm, err);
    case CFG_ARCH_RESNET101: return arch_resnet_imagenet(a, 101, c, h, w, k, wm, err);
    case CFG_ARCH_MOBILENETV2: return arch_mobilenetv2(a, 0, c, h, w, k, wm, err);
    case CFG_ARCH_MOBILENETV2_CIFAR: return arch_mobilenetv2(a, 1, c, h, w, k, wm, err);
    case CFG_ARCH_FILE: return h5_model_load_arch(cfg->model.init, a, err);
    case CFG_ARCH_COUNT: break;
    }
    arch_init(a);
    return err_set(err, LEGR_EXIT_INTERNAL, "model.arch %d has no builder", cfg->model.arch);
}
