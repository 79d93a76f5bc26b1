/* The base network's architecture: a built-in builder chosen by model.arch, or model.init's own. */
#include <string.h>

#include "job_internal.h"
#include "legr/h5io.h"

/* "the configured dataset (fashion-mnist)" or "data.file = \"x.h5\"" for messages. */
static const char *data_name(const Config *cfg, char *buf, size_t size)
{
    if (cfg->data.dataset == CFG_DATASET_HDF5)
        snprintf(buf, size, "data.file = \"%s\"", cfg->data.file);
    else
        snprintf(buf, size, "the configured dataset (%s)", cfg_dataset_names[cfg->data.dataset]);
    return buf;
}

int job_arch_check_data(const Config *cfg, const DataShape *s, const Arch *a, Err *err)
{
    const Node *in = &a->nodes[0];
    char name[CONFIG_PATH_MAX + 64];
    if (in->c != s->c || in->h != s->h || in->w != s->w)
        return err_set(err, LEGR_EXIT_USAGE,
                       "model.init = \"%s\" holds a network for %dx%dx%d inputs, but %s gives "
                       "%dx%dx%d images",
                       cfg->model.init, in->c, in->h, in->w, data_name(cfg, name, sizeof name),
                       s->c, s->h, s->w);
    if (a->num_classes != s->classes)
        return err_set(err, LEGR_EXIT_USAGE,
                       "model.init = \"%s\" holds a network with %d classes, but %s has %d",
                       cfg->model.init, a->num_classes, data_name(cfg, name, sizeof name),
                       s->classes);
    return 0;
}

int job_arch_build(const Config *cfg, const DataShape *s, Arch *a, Err *err)
{
    const int c = s->c, h = s->h, w = s->w, k = s->classes;
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
