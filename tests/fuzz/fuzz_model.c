/* Fuzz target: the legr-model reader (architecture, then tensors into a net built for it),
 * driven by structure-aware edits of a valid model file (fuzz_h5_edit). A file that loads must
 * hold only finite tensors and non-negative BN running variances. */
#include "fuzz.h"

#include <math.h>
#include <string.h>

#include "fuzz_seed_net.h"
#include "legr/h5io.h"

static uint8_t *seed;
static size_t seed_size;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    Net net;
    Err err;
    fuzz_seed_net(&net);
    const char *path = fuzz_path("seed");
    if (h5_model_save(path, &net, "# seed", &err) != 0) abort();
    fuzz_read_file(path, &seed, &seed_size);
    net_free(&net);
    return 0;
}

/* Networks too large to build here are a resource limit of the harness, not a reader bug. */
static int small_enough(const Arch *a)
{
    double floats = 0;
    for (int i = 0; i < a->n_nodes; i++)
        floats += (double)a->nodes[i].c * a->nodes[i].h * a->nodes[i].w;
    return floats < 1 << 22 && arch_params(a) < 1 << 22;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path("model");
    fuzz_write_file(path, seed, seed_size);
    fuzz_h5_edit(path, data, size);
    Arch a;
    Err err;
    if (h5_model_load_arch(path, &a, &err) != 0) {
        fuzz_note(err.msg);
        if (err.code != LEGR_EXIT_DATA) abort();
        return 0;
    }
    Net net;
    if (small_enough(&a) && net_build(&net, &a, 1, &err) == 0) {
        if (h5_model_load_params(path, &net, &err) == 0) {
            for (size_t i = 0; i < net.n_param_floats; i++)
                if (!isfinite(net.param[i])) abort();
            for (size_t i = 0; i < net.n_buf_floats; i++)
                if (!isfinite(net.buf[i])) abort();
            for (int b = 0; b < net.n_bufs; b++)
                if (strstr(net.bufs[b].name, "running_var"))
                    for (size_t i = 0; i < net.bufs[b].count; i++)
                        if (net.buf[net.bufs[b].offset + i] < 0) abort();
        } else {
            fuzz_note(err.msg);
            if (err.code != LEGR_EXIT_DATA) abort();
        }
        net_free(&net);
    }
    arch_free(&a);
    return 0;
}
