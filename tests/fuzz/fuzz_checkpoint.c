/* Fuzz target: the two resume readers, driven by structure-aware edits (fuzz_h5_edit) of valid
 * files. The first input byte picks the file: even, a search checkpoint (legr-checkpoint) that
 * must then run on to its end without hanging; odd, a training checkpoint (pretrain.h5 or a
 * family level) whose counters and tensors must be in range once loaded. */
#include "fuzz.h"

#include <math.h>
#include <string.h>

#include "fuzz_seed_net.h"
#include "legr/h5io.h"

static uint8_t *seed[2];
static size_t seed_size[2];

/* A search of 12 evaluations over 3 layers stopped with 5 results and 2 candidates in flight. */
static void write_search_seed(const char *path)
{
    EvoParams p = {.population = 4, .sample = 2, .evaluations = 12, .mutate_fraction = 0.5,
                   .sigma = 1.0};
    double kstd[3] = {0.5, 1.0, 2.0};
    Evolution e;
    Candidate c[7];
    Err err;
    evolution_init(&e, &p, 3, kstd, 42);
    for (int i = 0; i < 7; i++) {
        evolution_candidate_alloc(&c[i], 3);
        if (evolution_next(&e, &c[i]) != EVO_NEXT_CANDIDATE) abort();
        if (i == 4 || i == 5) continue; /* left in flight */
        EvoResult r = {.id = c[i].id, .fitness = 1.0 / (1 + i), .accuracy = 0.5, .flops = 1e6,
                       .seconds = 2.0, .rank = 1};
        if (evolution_report(&e, &r, &err) != 0) abort();
    }
    if (h5_checkpoint_save(path, &e, "# seed", 0x1234, "search", &err) != 0) abort();
    for (int i = 0; i < 7; i++) evolution_candidate_free(&c[i]);
    evolution_free(&e);
}

static void write_train_seed(const char *path)
{
    Net net;
    Err err;
    fuzz_seed_net(&net);
    for (size_t i = 0; i < net.n_param_floats; i++) net.mom[i] = 0.01f * (float)(i % 7);
    TrainCkpt ck = {.steps_done = 7, .epochs_done = 1, .train_seconds = 3.5};
    if (h5_train_ckpt_save(path, &net, &ck, "legr 0.5", "# seed", &err) != 0) abort();
    net_free(&net);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *path = fuzz_path("seed");
    write_search_seed(path);
    fuzz_read_file(path, &seed[0], &seed_size[0]);
    write_train_seed(path);
    fuzz_read_file(path, &seed[1], &seed_size[1]);
    return 0;
}

static int finite_all(const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* A restored search hands out and takes back every remaining candidate: each child finite, no
 * WAIT while nothing is outstanding, DONE after at most E hand-outs. */
static void run_search(const char *path)
{
    Evolution e;
    Err err;
    if (h5_checkpoint_load(path, &e, NULL, NULL, NULL, &err) != 0) {
        fuzz_note(err.msg);
        if (err.code != LEGR_EXIT_DATA) abort();
        return;
    }
    size_t L = (size_t)e.n_layers;
    if (!finite_all(e.kappa_std, L) || !finite_all(e.history_alpha, (size_t)e.n_history * L) ||
        !finite_all(e.history_kappa, (size_t)e.n_history * L))
        abort();
    for (int i = 0; i < e.n_history; i++)
        if (isnan(e.history[i].fitness)) abort();
    Candidate c;
    evolution_candidate_alloc(&c, e.n_layers);
    /* Long searches (E is accepted up to 10^7) are followed for their first 10^4 hand-outs. */
    int budget = e.p.evaluations < 10000 ? e.p.evaluations + 1 : 10000, r;
    while ((r = evolution_next(&e, &c)) == EVO_NEXT_CANDIDATE && --budget > 0) {
        if (!finite_all(c.alpha, L) || !finite_all(c.kappa, L)) abort();
        EvoResult res = {.id = c.id, .fitness = (double)(c.id % 5), .rank = 1};
        if (evolution_report(&e, &res, &err) != 0) abort();
    }
    if (r == EVO_NEXT_WAIT || (r == EVO_NEXT_CANDIDATE && e.p.evaluations < 10000)) abort();
    evolution_candidate_free(&c);
    evolution_free(&e);
}

static void run_train(const char *path)
{
    Arch a;
    Net net;
    Err err;
    if (h5_model_load_arch(path, &a, &err) != 0) {
        fuzz_note(err.msg);
        return;
    }
    if (a.n_nodes > 64 || net_build(&net, &a, 1, &err) != 0) {
        arch_free(&a);
        return;
    }
    TrainCkpt ck;
    char *key = NULL, *cfg = NULL;
    if (h5_train_ckpt_load(path, &net, &ck, &key, &cfg, &err) == 0) {
        if (ck.steps_done < -1 || ck.epochs_done < 0 || !(ck.train_seconds >= 0) ||
            !isfinite(ck.train_seconds))
            abort();
        for (size_t i = 0; i < net.n_param_floats; i++)
            if (!isfinite(net.param[i]) || !isfinite(net.mom[i])) abort();
    } else {
        fuzz_note(err.msg);
        if (err.code != LEGR_EXIT_DATA) abort();
    }
    free(key);
    free(cfg);
    net_free(&net);
    arch_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int which = data[0] & 1;
    const char *path = fuzz_path("ckpt");
    fuzz_write_file(path, seed[which], seed_size[which]);
    fuzz_h5_edit(path, data + 1, size - 1);
    if (which)
        run_train(path);
    else
        run_search(path);
    return 0;
}
